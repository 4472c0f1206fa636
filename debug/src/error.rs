//! Errors of the debug crate.

use thiserror::Error;

/// What can go wrong setting up or serving a debugger, or writing a core.
#[derive(Debug, Error)]
pub enum Error {
    /// A bad or unusable `--gdb` address.
    #[error("{0}")]
    Address(String),
    /// gdb could not be accepted.
    #[error("waiting for gdb: {0}")]
    Accept(std::io::Error),
    /// A KVM call the debugger needs failed.
    #[error("KVM {op} failed: {source}")]
    Kvm {
        /// The operation.
        op: &'static str,
        /// The error.
        source: kvm_ioctls::Error,
    },
    /// The Ctrl-C watcher thread could not start.
    #[error("cannot start the gdb interrupt thread: {0}")]
    Thread(std::io::Error),
    /// A core file could not be written.
    #[error("cannot write core file {path}: {source}")]
    Core {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
}

/// Result alias of this crate.
pub type Result<T> = std::result::Result<T, Error>;
