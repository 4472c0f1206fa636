//! ukvm's sandbox: what a compromised guest can reach through the monitor.
//!
//! Three layers, applied after the VM is set up and before the guest's
//! first instruction:
//! - [`jail`]: `--chroot DIR` and `--user UID:GID` (when started as root),
//!   then Landlock, which takes away all filesystem access: every file the
//!   VM needs is open by then.
//! - [`seccomp`]: one filter per thread kind ([`ThreadKind`]), built with
//!   `seccompiler` from the allowlist in [`allowlist`], where adding a
//!   system call for a thread kind is one line. [`bpf_tree`] lays the
//!   dispatch on the system call number out as a binary search and
//!   [`bpf_args`] each call's argument checks with shared comparisons,
//!   which keeps installing a filter cheap; [`bpf_eval`] runs a filter
//!   without the kernel, for tests and the install benchmark.
//! - a SIGSYS handler that names the refused system call on stderr before
//!   the process dies of SIGSYS.

#![deny(missing_docs)]

pub mod allowlist;
pub mod bpf_args;
pub mod bpf_eval;
pub mod bpf_tree;
pub mod fds;
pub mod jail;
pub mod seccomp;
mod sigsys;

pub use allowlist::ThreadKind;
pub use fds::Fds;
pub use jail::{Jail, LandlockStatus, User};
pub use seccomp::SeccompMode;

/// What can go wrong while entering the sandbox.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// seccompiler refused the filter (a bug in the allowlist).
    #[error("seccomp filter for the {kind} thread: {source}")]
    Filter {
        /// Thread kind whose filter failed.
        kind: ThreadKind,
        /// seccompiler's reason.
        source: seccompiler::BackendError,
    },
    /// The kernel refused the filter.
    #[error("installing the seccomp filter for the {kind} thread: {source}")]
    Install {
        /// Thread kind whose filter failed.
        kind: ThreadKind,
        /// seccompiler's reason.
        source: seccompiler::Error,
    },
    /// A host call of the jail failed (chroot, setresuid, ...).
    #[error("{what}: {source}")]
    Host {
        /// What was being done.
        what: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// Landlock is present but refused the ruleset.
    #[error("Landlock: {0}")]
    Landlock(String),
    /// A bad `--seccomp` or `--user` value.
    #[error("{0}")]
    Parse(String),
}

/// Result with this crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;
