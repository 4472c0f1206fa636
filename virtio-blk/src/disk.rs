//! Disk images: the `--disk` specification, opening and checking the file,
//! and the backend that performs the I/O.

use crate::SECTOR_SIZE;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use thiserror::Error;
use vm_memory::bitmap::Bitmap;
use vm_memory::VolatileSlice;

/// Length of the GET_ID serial (VIRTIO_BLK_ID_BYTES).
pub const ID_BYTES: usize = 20;

/// What is wrong with a `--disk`.
#[derive(Debug, Error)]
pub enum Error {
    /// `--disk ""` or `--disk ,ro`.
    #[error("--disk: no file given (expected FILE[,ro|rw])")]
    EmptyPath,
    /// An option other than `ro`/`rw`.
    #[error("--disk {spec}: unknown option '{option}' (expected FILE[,ro|rw])")]
    BadOption {
        /// The whole specification.
        spec: String,
        /// The option.
        option: String,
    },
    /// The file cannot be opened (missing, no permission, read-only file
    /// system for a read-write disk).
    #[error("--disk {}: cannot open for {}: {source}", path.display(), mode)]
    Open {
        /// The file.
        path: PathBuf,
        /// "reading" or "reading and writing".
        mode: &'static str,
        /// Why.
        source: io::Error,
    },
    /// A directory, FIFO, socket...
    #[error("--disk {}: not a regular file or block device", path.display())]
    NotAFile {
        /// The file.
        path: PathBuf,
    },
    /// The size cannot be expressed in sectors.
    #[error("--disk {}: size {size} bytes is not a multiple of 512", path.display())]
    Size {
        /// The file.
        path: PathBuf,
        /// Its size.
        size: u64,
    },
}

/// A parsed `FILE[,ro|rw]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskSpec {
    /// The image.
    pub path: PathBuf,
    /// Whether the guest may not write.
    pub read_only: bool,
}

impl DiskSpec {
    /// Parses `FILE[,ro|rw]`. Without an option, `.iso` files (any case)
    /// are read-only and everything else read-write.
    pub fn parse(spec: &str) -> Result<DiskSpec, Error> {
        let (file, option) = match spec.rsplit_once(',') {
            Some((file, option)) => (file, Some(option)),
            None => (spec, None),
        };
        if file.is_empty() {
            return Err(Error::EmptyPath);
        }
        let path = PathBuf::from(file);
        let read_only = match option {
            Some("ro") => true,
            Some("rw") => false,
            Some(other) => {
                return Err(Error::BadOption {
                    spec: spec.to_string(),
                    option: other.to_string(),
                })
            }
            None => is_iso(&path),
        };
        Ok(DiskSpec { path, read_only })
    }
}

fn is_iso(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("iso"))
}

/// Moves bytes between the image and guest memory.
pub trait Backend: Send {
    /// Reads into `bufs` from byte `offset`; returns the bytes read.
    fn read_vectored_at(&mut self, bufs: &[VolatileSlice<'_>], offset: u64) -> io::Result<usize>;
    /// Writes `bufs` at byte `offset`; returns the bytes written.
    fn write_vectored_at(&mut self, bufs: &[VolatileSlice<'_>], offset: u64) -> io::Result<usize>;
    /// Makes written data durable.
    fn flush(&mut self) -> io::Result<()>;
    /// The host fd the bytes move through, if any: the sandbox pins the
    /// disk calls to it.
    fn fd(&self) -> Option<std::os::unix::io::RawFd> {
        None
    }
}

/// `iovec`s over guest memory. The slices borrow the guest memory mapping,
/// which outlives the call that uses the iovecs.
fn iovecs(bufs: &[VolatileSlice<'_>]) -> Vec<libc::iovec> {
    bufs.iter()
        .map(|b| libc::iovec {
            iov_base: b.ptr_guard_mut().as_ptr().cast(),
            iov_len: b.len(),
        })
        .collect()
}

/// `preadv` or `pwritev` (`op`) of `bufs` at `offset` on `file`.
fn vectored_at(
    file: &File,
    bufs: &[VolatileSlice<'_>],
    offset: u64,
    op: unsafe extern "C" fn(
        libc::c_int,
        *const libc::iovec,
        libc::c_int,
        libc::off_t,
    ) -> libc::ssize_t,
) -> io::Result<usize> {
    let iov = iovecs(bufs);
    let offset = libc::off_t::try_from(offset).map_err(|_| io::ErrorKind::InvalidInput)?;
    // SAFETY: every iovec points into a VolatileSlice of guest memory,
    // valid (and, for preadv, writable) for its length while `bufs` is
    // borrowed; preadv/pwritev touch only those ranges.
    let n = unsafe {
        op(
            file.as_raw_fd(),
            iov.as_ptr(),
            iov.len() as libc::c_int,
            offset,
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}

impl Backend for File {
    fn read_vectored_at(&mut self, bufs: &[VolatileSlice<'_>], offset: u64) -> io::Result<usize> {
        let n = vectored_at(self, bufs, offset, libc::preadv)?;
        for b in bufs {
            b.bitmap().mark_dirty(0, b.len());
        }
        Ok(n)
    }

    fn write_vectored_at(&mut self, bufs: &[VolatileSlice<'_>], offset: u64) -> io::Result<usize> {
        vectored_at(self, bufs, offset, libc::pwritev)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.sync_data()
    }

    fn fd(&self) -> Option<std::os::unix::io::RawFd> {
        Some(self.as_raw_fd())
    }
}

/// An opened image, ready to become a [`crate::Block`].
pub struct Disk {
    /// Where the bytes are.
    pub backend: Box<dyn Backend>,
    /// Capacity in 512-byte sectors.
    pub sectors: u64,
    /// Whether writes are refused.
    pub read_only: bool,
    /// GET_ID answer (zero-padded).
    pub serial: [u8; ID_BYTES],
    /// Name for messages (the path).
    pub name: String,
}

impl Disk {
    /// Opens and checks the image of `spec`, once, before the VM exists.
    pub fn open(spec: &DiskSpec) -> Result<Disk, Error> {
        let path = &spec.path;
        let mode = if spec.read_only {
            "reading"
        } else {
            "reading and writing"
        };
        let open_err = |source| Error::Open {
            path: path.clone(),
            mode,
            source,
        };
        let mut file = OpenOptions::new()
            .read(true)
            .write(!spec.read_only)
            .open(path)
            .map_err(open_err)?;
        let meta = file.metadata().map_err(open_err)?;
        let kind = meta.file_type();
        let size = if kind.is_file() {
            meta.len()
        } else if kind.is_block_device() {
            io::Seek::seek(&mut file, io::SeekFrom::End(0)).map_err(open_err)?
        } else {
            return Err(Error::NotAFile { path: path.clone() });
        };
        if size % SECTOR_SIZE != 0 {
            return Err(Error::Size {
                path: path.clone(),
                size,
            });
        }
        Ok(Disk {
            backend: Box::new(file),
            sectors: size / SECTOR_SIZE,
            read_only: spec.read_only,
            serial: serial(meta.dev(), meta.ino()),
            name: path.display().to_string(),
        })
    }
}

/// A serial that stays the same for the same file across runs: its device
/// and inode numbers.
fn serial(dev: u64, ino: u64) -> [u8; ID_BYTES] {
    let text = format!("ukvm-{dev:x}-{ino:x}");
    let mut id = [0u8; ID_BYTES];
    let n = text.len().min(ID_BYTES);
    id[..n].copy_from_slice(&text.as_bytes()[..n]);
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_specs() {
        let p = |s| DiskSpec::parse(s).unwrap();
        assert_eq!(
            p("etc.iso"),
            DiskSpec {
                path: "etc.iso".into(),
                read_only: true
            }
        );
        assert!(p("a/b/DATA.ISO").read_only);
        assert!(!p("data.img").read_only);
        assert!(!p("etc.iso,rw").read_only);
        assert!(p("data.img,ro").read_only);
        assert!(p("with,comma.img,ro").read_only);
        assert!(matches!(DiskSpec::parse(""), Err(Error::EmptyPath)));
        assert!(matches!(DiskSpec::parse(",ro"), Err(Error::EmptyPath)));
        let e = DiskSpec::parse("x.img,rx").unwrap_err();
        assert_eq!(
            e.to_string(),
            "--disk x.img,rx: unknown option 'rx' (expected FILE[,ro|rw])"
        );
    }

    #[test]
    fn open_checks_the_file() {
        let dir = std::env::temp_dir().join(format!("ukvm-blk-open-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let spec = |p: &Path, ro| DiskSpec {
            path: p.to_path_buf(),
            read_only: ro,
        };
        let missing = dir.join("missing.img");
        let e = Disk::open(&spec(&missing, true)).err().unwrap();
        assert!(e.to_string().contains("cannot open"), "{e}");
        let e = Disk::open(&spec(&dir, true)).err().unwrap();
        assert!(e.to_string().contains("not a regular file"), "{e}");
        let odd = dir.join("odd.img");
        std::fs::write(&odd, [0u8; 1000]).unwrap();
        let e = Disk::open(&spec(&odd, false)).err().unwrap();
        assert!(e.to_string().contains("not a multiple of 512"), "{e}");
        let good = dir.join("good.img");
        std::fs::write(&good, [0u8; 2048]).unwrap();
        let d = Disk::open(&spec(&good, true)).unwrap();
        assert_eq!(d.sectors, 4);
        let again = Disk::open(&spec(&good, true)).unwrap();
        assert_eq!(d.serial, again.serial, "serial is stable");
        assert!(d.serial.starts_with(b"ukvm-"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
