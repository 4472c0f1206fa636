//! Errors of the runtime. Each one is a single line that names the
//! container, file or interface at fault: engines show the last line of
//! the runtime's log to their user.

use std::path::PathBuf;

/// What went wrong.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The bundle's config.json is missing or not a runtime spec.
    #[error("bundle {bundle}: config.json: {source}")]
    Spec {
        /// Bundle directory.
        bundle: PathBuf,
        /// What oci-spec said.
        source: oci_spec::OciSpecError,
    },
    /// /ukvm.json or an org.ukvm.* annotation is wrong.
    #[error("{0}")]
    Unikernel(String),
    /// A path in ukvm.json leaves the rootfs or does not exist in it.
    #[error("{what} {path:?}: {reason}")]
    Path {
        /// "kernel", "disk", ...
        what: &'static str,
        /// The path as written.
        path: String,
        /// Why it was refused.
        reason: String,
    },
    /// A container with this id is already known to this root.
    #[error("container with id {0} already exists")]
    Exists(String),
    /// No container with this id.
    #[error("container {0} does not exist")]
    NotFound(String),
    /// The operation needs another state.
    #[error("container {id} is {status}: {wanted}")]
    BadState {
        /// Container id.
        id: String,
        /// Its current status.
        status: String,
        /// What the operation needed.
        wanted: &'static str,
    },
    /// The container's network could not be set up or read.
    #[error("network: {0}")]
    Network(String),
    /// An OCI hook failed.
    #[error("{kind} hook {path}: {reason}")]
    Hook {
        /// createRuntime, prestart, ...
        kind: &'static str,
        /// The hook's program.
        path: String,
        /// Exit status or spawn error.
        reason: String,
    },
    /// /dev/kvm cannot be used.
    #[error("/dev/kvm: {0} (ukvm needs KVM: load kvm and give the runtime access to /dev/kvm)")]
    Kvm(String),
    /// A host operation failed.
    #[error("{op}: {source}")]
    Io {
        /// What was being done.
        op: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The container's init process reported a failure.
    #[error("{0}")]
    Init(String),
    /// The subcommand does not apply to a unikernel.
    #[error("{0} is not supported: the container runs a unikernel, not processes")]
    Unsupported(&'static str),
    /// A bad argument.
    #[error("{0}")]
    Usage(String),
}

impl Error {
    /// An I/O error with what was being done.
    pub fn io(op: impl Into<String>, source: std::io::Error) -> Error {
        Error::Io {
            op: op.into(),
            source,
        }
    }
}

/// Result with this crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;
