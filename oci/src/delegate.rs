//! Bundles that are not unikernels, and containers this runtime did not
//! create, go to runc with the engine's arguments unchanged. Which runc:
//! `$UKVM_OCI_RUNC`, else `runc` on PATH. The ukvm binary is found the
//! same way (`$UKVM_OCI_UKVM`, else next to `ukvm-oci`, else on PATH).

use crate::error::{Error, Result};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Environment variable naming the runc binary.
pub const RUNC_ENV: &str = "UKVM_OCI_RUNC";
/// Environment variable naming the ukvm binary.
pub const UKVM_ENV: &str = "UKVM_OCI_UKVM";

/// Replaces this process with runc, given our own arguments.
pub fn exec_runc() -> Error {
    let runc = std::env::var_os(RUNC_ENV).unwrap_or_else(|| "runc".into());
    let err = Command::new(&runc).args(std::env::args_os().skip(1)).exec();
    Error::io(
        format!(
            "not a unikernel bundle, and cannot execute runc ({}; set {RUNC_ENV})",
            Path::new(&runc).display()
        ),
        err,
    )
}

/// The ukvm binary for new containers, as an absolute path.
pub fn find_ukvm() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os(UKVM_ENV) {
        return Ok(PathBuf::from(p));
    }
    let sibling = std::env::current_exe()
        .ok()
        .and_then(|e| Some(e.parent()?.join("ukvm")));
    let on_path = std::env::var_os("PATH")
        .map(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join("ukvm"))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    sibling
        .into_iter()
        .chain(on_path)
        .find(|p| p.is_file())
        .ok_or_else(|| {
            Error::Usage(format!(
                "ukvm binary not found (next to ukvm-oci, on PATH, or in ${UKVM_ENV})"
            ))
        })
}
