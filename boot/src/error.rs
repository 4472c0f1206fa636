use thiserror::Error;

/// Errors found while loading a kernel. Each names the field or offset at
/// fault so a user can tell a truncated file from a hostile one.
#[derive(Debug, Error)]
pub enum Error {
    #[error("kernel image is empty")]
    EmptyImage,
    #[error("no supported kernel format found (no Multiboot header in the first 8 KiB, not an x86-64 ELF, no bzImage setup header)")]
    UnknownFormat,
    #[error("multiboot header at offset {offset:#x}: checksum mismatch (magic + flags + checksum = {sum:#x}, must be 0)")]
    BadChecksum { offset: usize, sum: u32 },
    #[error("multiboot header at offset {offset:#x}: truncated ({needed} bytes needed, file has {available})")]
    TruncatedHeader {
        offset: usize,
        needed: usize,
        available: usize,
    },
    #[error(
        "multiboot header at offset {offset:#x} lies past the first 8 KiB the specification allows"
    )]
    HeaderTooFar { offset: usize },
    #[error("multiboot header: required flag bits {bits:#x} are not supported")]
    UnsupportedFlags { bits: u32 },
    #[error("multiboot header: {field} = {value:#x}: {why}")]
    BadField {
        field: &'static str,
        value: u64,
        why: &'static str,
    },
    #[error("ELF: {0}")]
    Elf(String),
    #[error("{what} [{start:#x}, {end:#x}) does not fit in guest memory (RAM ends at {ram_end:#x}; raise --mem)")]
    DoesNotFit {
        what: String,
        start: u64,
        end: u64,
        ram_end: u64,
    },
    #[error("{what} [{start:#x}, {end:#x}) overlaps ukvm's boot structures [0, {boot_end:#x})")]
    OverlapsBootArea {
        what: String,
        start: u64,
        end: u64,
        boot_end: u64,
    },
    #[error("command line is {len} bytes; at most {max} are supported")]
    CmdlineTooLong { len: usize, max: usize },
    #[error(
        "command line is {len} bytes with the kernel name ({name_len} bytes and a space) \
         that Multiboot kernels get first; at most {max} are supported"
    )]
    MultibootCmdlineTooLong {
        len: usize,
        name_len: usize,
        max: usize,
    },
    #[error("command line contains a NUL byte at offset {0}")]
    CmdlineNul(usize),
    #[error("too many modules ({count}; at most {max})")]
    TooManyModules { count: usize, max: usize },
    #[error("module strings take {len} bytes; at most {max} are supported")]
    ModuleStringsTooLong { len: usize, max: usize },
    #[error("bzImage setup header: {field} = {value:#x}: {why}")]
    BadSetupHeader {
        field: &'static str,
        value: u64,
        why: &'static str,
    },
    #[error("{what}: file is {len} bytes, {needed} needed (truncated image?)")]
    Truncated {
        what: &'static str,
        len: usize,
        needed: u64,
    },
    #[error("{0}")]
    Unsupported(&'static str),
    #[error("linux-loader: {0}")]
    Loader(#[from] linux_loader::loader::Error),
    #[error("writing boot structures: {0}")]
    Configurator(#[from] linux_loader::configurator::Error),
    #[error("initrd of {size} bytes does not fit between the kernel's end {kernel_end:#x} and {limit:#x}, the highest address the protocol allows (raise --mem)")]
    InitrdDoesNotFit {
        size: u64,
        kernel_end: u64,
        limit: u64,
    },
    #[error(
        "--initrd is for Linux and PVH kernels; a Multiboot kernel gets files through --module"
    )]
    InitrdNotSupported,
    #[error("Solo5 hvt image: {0}")]
    Hvt(#[from] crate::hvt::Error),
    #[error("writing guest memory at {addr:#x}: {source}")]
    GuestMemory {
        addr: u64,
        source: vm_memory::GuestMemoryError,
    },
}

/// Result alias of this crate.
pub type Result<T> = std::result::Result<T, Error>;
