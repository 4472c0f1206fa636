//! Errors of the monitor, each mapped to a documented process exit status so
//! scripts can tell a bad kernel from a missing `/dev/kvm` from a guest crash.

use std::path::PathBuf;
use thiserror::Error;

/// Exit status for configuration errors (`--mem`, `--cmdline`, devices).
pub const STATUS_CONFIG: i32 = 240;
/// Exit status when the kernel file cannot be read.
pub const STATUS_KERNEL_READ: i32 = 241;
/// Exit status when the kernel image is invalid.
pub const STATUS_KERNEL_INVALID: i32 = 242;
/// Exit status when KVM is missing or not accessible.
pub const STATUS_NO_KVM: i32 = 243;
/// Exit status when a KVM or host call fails while setting up or running.
pub const STATUS_HOST: i32 = 244;
/// Exit status when a device backend (disk, TAP) fails.
pub const STATUS_DEVICE: i32 = 245;
/// Exit status when the guest crashed (triple fault, emulation failure).
pub const STATUS_GUEST_CRASH: i32 = 246;
/// Exit status when the guest ran an instruction that neither KVM nor ukvm
/// can complete.
pub const STATUS_UNCOMPLETABLE: i32 = 247;

/// How a guest died.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CrashKind {
    /// The vCPU shut down (triple fault).
    TripleFault,
    /// KVM could not emulate an instruction (`KVM_EXIT_INTERNAL_ERROR`,
    /// suberror 1).
    EmulationFailure,
    /// Another `KVM_EXIT_INTERNAL_ERROR` suberror.
    InternalError(u32),
    /// KVM could not enter the guest (`KVM_EXIT_FAIL_ENTRY`).
    FailEntry(u64),
    /// An exit reason ukvm does not handle.
    UnexpectedExit(String),
    /// A request ukvm cannot serve (a Solo5 hvt hypercall whose argument
    /// lies outside guest memory, an unknown hypercall).
    GuestFault(String),
    /// KVM could not emulate an instruction and ukvm cannot complete it
    /// either: the one-line diagnosis (RIP, mode, bytes, mnemonic, reason).
    Uncompletable(String),
}

/// What ukvm knows about a guest crash: where it happened and what ran.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Crash {
    /// What happened.
    pub kind: CrashKind,
    /// Guest RIP at the exit.
    pub rip: u64,
    /// Instruction bytes at RIP, as KVM reported them (may be empty).
    pub insn: Vec<u8>,
}

impl std::fmt::Display for Crash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.kind {
            CrashKind::TripleFault => write!(f, "guest triple fault (shutdown)")?,
            CrashKind::EmulationFailure => write!(f, "KVM could not emulate a guest instruction")?,
            CrashKind::InternalError(sub) => write!(f, "KVM internal error, suberror {sub}")?,
            CrashKind::FailEntry(reason) => {
                write!(f, "KVM failed to enter the guest (reason {reason:#x})")?
            }
            CrashKind::UnexpectedExit(what) => write!(f, "unexpected VM exit: {what}")?,
            CrashKind::GuestFault(what) => write!(f, "bad guest request: {what}")?,
            // The diagnosis already names RIP and the bytes.
            CrashKind::Uncompletable(diagnosis) => return write!(f, "{diagnosis}"),
        }
        write!(f, " at rip {:#x}", self.rip)?;
        if !self.insn.is_empty() {
            let bytes: Vec<String> = self.insn.iter().map(|b| format!("{b:02x}")).collect();
            write!(f, ", instruction bytes {}", bytes.join(" "))?;
        }
        Ok(())
    }
}

/// Everything that can go wrong in ukvm.
#[derive(Debug, Error)]
pub enum Error {
    /// `--mem` out of range.
    #[error("--mem {mib} MiB: guest memory must be between {min} and {max} MiB")]
    MemSize {
        /// Requested size.
        mib: u64,
        /// Smallest size.
        min: u64,
        /// Largest size.
        max: u64,
    },
    /// No kernel configured.
    #[error("no kernel given (use --kernel FILE)")]
    NoKernel,
    /// A configuration value ukvm cannot use.
    #[error("{0}")]
    Config(String),
    /// A feature that is not implemented yet.
    #[error("{0} is not supported yet")]
    Unsupported(&'static str),
    /// The kernel (or a module) file cannot be read.
    #[error("cannot read {}: {source}", path.display())]
    KernelRead {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The kernel image is invalid.
    #[error("{}: {source}", name)]
    Kernel {
        /// File name (or "kernel" for in-memory images).
        name: String,
        /// What is wrong.
        source: ukvm_boot::Error,
    },
    /// `/dev/kvm` cannot be opened.
    #[error("cannot open /dev/kvm: {0} ({hint})", hint = kvm_hint(.0))]
    KvmOpen(kvm_ioctls::Error),
    /// A KVM ioctl failed.
    #[error("KVM {op} failed: {source}")]
    Kvm {
        /// The operation.
        op: &'static str,
        /// The error.
        source: kvm_ioctls::Error,
    },
    /// Guest memory could not be allocated.
    #[error("cannot allocate {mib} MiB of guest memory: {reason}")]
    Memory {
        /// Size.
        mib: u64,
        /// Why.
        reason: String,
    },
    /// A device could not be set up.
    #[error("{0}")]
    Device(String),
    /// The guest crashed.
    #[error("{0}")]
    GuestCrash(Crash),
    /// The sandbox (seccomp, Landlock, chroot, user) could not be entered.
    #[error("sandbox: {0}")]
    Sandbox(#[from] ukvm_sandbox::Error),
}

fn kvm_hint(e: &kvm_ioctls::Error) -> &'static str {
    match e.errno() {
        libc::ENOENT => {
            "KVM is not available: load the kvm module or run on a host with virtualisation"
        }
        libc::EACCES | libc::EPERM => "run as root or add your user to the 'kvm' group",
        _ => "is KVM usable on this host?",
    }
}

impl Error {
    /// The process exit status the CLI uses for this error.
    pub fn exit_status(&self) -> i32 {
        match self {
            Error::MemSize { .. } | Error::NoKernel | Error::Config(_) | Error::Unsupported(_) => {
                STATUS_CONFIG
            }
            Error::KernelRead { .. } => STATUS_KERNEL_READ,
            Error::Kernel { .. } => STATUS_KERNEL_INVALID,
            Error::KvmOpen(_) => STATUS_NO_KVM,
            Error::Kvm { .. } | Error::Memory { .. } | Error::Sandbox(_) => STATUS_HOST,
            Error::Device(_) => STATUS_DEVICE,
            Error::GuestCrash(crash) if matches!(crash.kind, CrashKind::Uncompletable(_)) => {
                STATUS_UNCOMPLETABLE
            }
            Error::GuestCrash(_) => STATUS_GUEST_CRASH,
        }
    }
}

/// Result alias of this crate.
pub type Result<T> = std::result::Result<T, Error>;
