//! ELF core files (placeholder)
