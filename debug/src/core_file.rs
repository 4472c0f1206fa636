//! Where a core file goes, under the sandbox: `--dumpcore DIR` opens DIR
//! before the sandbox is in, and a dump creates the file relative to that
//! directory fd only when there is something to dump.
//!
//! Why this way: a core is needed after the guest ran, when ukvm opens no
//! file any more. Creating `core.ukvm.PID` up front and removing it when
//! no dump happens would leave an empty file behind whenever ukvm is
//! killed, and would need `unlink` under the filter; an `O_TMPFILE` named
//! at the end with `linkat(AT_EMPTY_PATH)` leaves nothing even then, but
//! naming it needs `CAP_DAC_READ_SEARCH`, which `--user` drops. So the
//! file is created at dump time with `openat(dirfd, name, O_WRONLY |
//! O_CREAT | O_EXCL | O_CLOEXEC)`: nothing exists unless a core is
//! written, and the seccomp filter pins the call to that directory fd and
//! those flags (never an existing file: O_EXCL), Landlock to creating
//! files beneath that directory. The new fd is moved onto one reserved
//! before the sandbox ([`CoreDir::slot_fd`]) with `dup3`, so that the
//! filter can pin the core's `write` and `lseek` to a known fd.

use crate::core::{write, Class};
use crate::error::{Error, Result};
use crate::regs::CpuState;
use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use vm_memory::GuestMemoryMmap;

/// The flags a core file is created with (the seccomp filter pins them).
pub const CREATE_FLAGS: i32 = libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_CLOEXEC;

/// The directory cores go to, opened before the sandbox.
#[derive(Debug)]
pub struct CoreDir {
    path: PathBuf,
    /// The directory (`O_PATH`): cores are created relative to it.
    dir: OwnedFd,
    /// The fd number the core will have: a copy of `dir` until then.
    slot: OwnedFd,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Core {
        path: path.display().to_string(),
        source,
    }
}

impl CoreDir {
    /// Opens `path`, which must be a directory.
    pub fn open(path: &Path) -> Result<CoreDir> {
        let c = CString::new(path.as_os_str().as_bytes()).map_err(|_| Error::Core {
            path: path.display().to_string(),
            source: std::io::ErrorKind::InvalidInput.into(),
        })?;
        let flags = libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC;
        // SAFETY: opens a NUL-terminated path; the fd is owned below.
        let fd = unsafe { libc::open(c.as_ptr(), flags) };
        if fd < 0 {
            return Err(io_err(path)(std::io::Error::last_os_error()));
        }
        // SAFETY: a new fd nothing else owns.
        let dir = unsafe { OwnedFd::from_raw_fd(fd) };
        let slot = dir.try_clone().map_err(io_err(path))?;
        Ok(CoreDir {
            path: path.to_path_buf(),
            dir,
            slot,
        })
    }

    /// The directory's fd: the only one a core may be created in.
    pub fn dir_fd(&self) -> RawFd {
        self.dir.as_raw_fd()
    }

    /// The fd the core is written through.
    pub fn slot_fd(&self) -> RawFd {
        self.slot.as_raw_fd()
    }

    /// Creates `core.ukvm.PID` (`.1`, `.2`, .. if taken: runs never
    /// overwrite each other's cores) and writes the core of a guest
    /// stopped with `state` there. Takes the directory: one core per run.
    pub fn dump(
        self,
        mem: &GuestMemoryMmap,
        state: &CpuState,
        class: Class,
        signal: u16,
    ) -> Result<PathBuf> {
        let base = format!("core.ukvm.{}", std::process::id());
        let mut n = 0;
        let (path, fd) = loop {
            let name = if n == 0 {
                base.clone()
            } else {
                format!("{base}.{n}")
            };
            let path = self.path.join(&name);
            let c = CString::new(name)
                .map_err(|_| io_err(&path)(std::io::ErrorKind::InvalidInput.into()))?;
            // SAFETY: a NUL-terminated name relative to our directory fd.
            let fd = unsafe { libc::openat(self.dir_fd(), c.as_ptr(), CREATE_FLAGS, 0o600) };
            if fd >= 0 {
                // SAFETY: a new fd nothing else owns.
                break (path, unsafe { OwnedFd::from_raw_fd(fd) });
            }
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::AlreadyExists && n < 1000 {
                n += 1;
            } else {
                return Err(io_err(&path)(e));
            }
        };
        // SAFETY: dup3 replaces what the slot fd (ours) refers to with the
        // new file; `fd` is closed when dropped.
        if unsafe { libc::dup3(fd.as_raw_fd(), self.slot_fd(), libc::O_CLOEXEC) } < 0 {
            return Err(io_err(&path)(std::io::Error::last_os_error()));
        }
        drop(fd);
        let mut w = std::io::BufWriter::new(std::fs::File::from(self.slot));
        write(&mut w, mem, state, class, signal).map_err(io_err(&path))?;
        Ok(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn dumps_never_overwrite_each_other_and_are_private() {
        let dir = std::env::temp_dir().join(format!("ukvm-core-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let m = GuestMemoryMmap::from_ranges(&[(vm_memory::GuestAddress(0), 2 << 20)]).unwrap();
        let st = CpuState::default();
        let a = CoreDir::open(&dir)
            .unwrap()
            .dump(&m, &st, Class::Elf64, 11)
            .unwrap();
        let b = CoreDir::open(&dir)
            .unwrap()
            .dump(&m, &st, Class::Elf64, 11)
            .unwrap();
        assert_ne!(a, b);
        assert_eq!(
            b.file_name().unwrap().to_string_lossy(),
            format!("core.ukvm.{}.1", std::process::id())
        );
        let meta = std::fs::metadata(&a).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        assert!(meta.len() > 2 << 20, "{}", meta.len());
        let e = CoreDir::open(&dir.join("missing")).unwrap_err();
        assert!(e.to_string().starts_with("cannot write core file"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
