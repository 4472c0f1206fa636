//! `-t`: the container's stdio is a pseudo-terminal whose master goes to
//! the engine over `--console-socket` (SCM_RIGHTS, as runc sends it).

use crate::error::{Error, Result};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;
use vmm_sys_util::sock_ctrl_msg::ScmSocket;

/// Both ends of a new pseudo-terminal.
pub struct Pty {
    /// The engine's end.
    pub master: OwnedFd,
    /// The container's stdio.
    pub slave: OwnedFd,
}

/// Opens a pseudo-terminal.
pub fn open_pty() -> Result<Pty> {
    let (mut master, mut slave) = (-1, -1);
    // SAFETY: openpty writes two descriptors into the pointed-to ints; the
    // name, termios and winsize pointers may be null.
    let r = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    if r != 0 {
        return Err(Error::io("openpty", std::io::Error::last_os_error()));
    }
    // SAFETY: openpty succeeded, so both are open descriptors we own.
    let (master, slave) = unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
    for fd in [&master, &slave] {
        // SAFETY: FD_CLOEXEC on a descriptor we own; the container gets
        // the slave through dup2 onto its stdio, which clears the flag.
        unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC) };
    }
    Ok(Pty { master, slave })
}

/// Sends the master to the engine listening on `socket`.
pub fn send_master(socket: &Path, master: &OwnedFd) -> Result<()> {
    let op = || format!("--console-socket {}", socket.display());
    let stream = UnixStream::connect(socket).map_err(|e| Error::io(op(), e))?;
    stream
        .send_with_fd(&b"/dev/ptmx"[..], master.as_raw_fd())
        .map_err(|e| Error::io(op(), std::io::Error::from_raw_os_error(e.errno())))?;
    Ok(())
}
