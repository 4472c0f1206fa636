//! The files a VM boots from (kernel, modules, initrd), read in full
//! before any KVM object exists, so that an unreadable file costs one
//! line of error and no VM set-up.

use crate::config::{Kernel, VmConfig};
use crate::error::{Error, Result};

fn read_file(path: &std::path::Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|source| Error::KernelRead {
        path: path.to_path_buf(),
        source,
    })
}

/// The files a VM boots from, read once before any KVM object exists.
pub(crate) struct Inputs {
    /// Kernel name for error messages.
    pub(crate) name: String,
    pub(crate) image: Vec<u8>,
    pub(crate) modules: Vec<Vec<u8>>,
    pub(crate) initrd: Option<Vec<u8>>,
}

impl Inputs {
    pub(crate) fn read(cfg: &VmConfig) -> Result<Inputs> {
        let (name, image) = match cfg.kernel.clone() {
            Some(Kernel::Path(path)) => (path.display().to_string(), read_file(&path)?),
            Some(Kernel::Bytes { name, bytes }) => (name, bytes),
            None => return Err(Error::NoKernel),
        };
        let modules = cfg
            .modules
            .iter()
            .map(|m| read_file(&m.path))
            .collect::<Result<Vec<_>>>()?;
        let initrd = cfg.initrd.as_deref().map(read_file).transpose()?;
        Ok(Inputs {
            name,
            image,
            modules,
            initrd,
        })
    }
}
