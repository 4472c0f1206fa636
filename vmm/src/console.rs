//! Console input: a thread that reads the host's input (the CLI's stdin)
//! and hands it to COM1's receive side, where the guest sees LSR
//! data-ready and, if it enabled it, the receive interrupt.
//!
//! Ctrl-A x ends the run (as in QEMU); Ctrl-A Ctrl-A sends one Ctrl-A.
//! Input at end of file, or unreadable, just ends the thread: the guest
//! sees a quiet line, nothing else changes.

use crate::confine::Confinement;
use crate::error::{Error, Result};
use crate::stop::StopHandle;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;
use ukvm_devices::serial::Serial;
use ukvm_sandbox::{Fds, SeccompMode, ThreadKind};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

/// The escape character (Ctrl-A).
const ESCAPE: u8 = 0x01;

/// What the input parser makes of one byte.
#[derive(Debug, PartialEq, Eq)]
enum Key {
    /// Bytes for the guest (none while an escape is pending).
    Guest(Vec<u8>),
    /// Ctrl-A x: end the run.
    Quit,
}

/// Recognises Ctrl-A sequences across reads.
#[derive(Default)]
struct Escape {
    pending: bool,
}

impl Escape {
    fn feed(&mut self, b: u8) -> Key {
        if std::mem::take(&mut self.pending) {
            return match b {
                b'x' | b'X' => Key::Quit,
                ESCAPE => Key::Guest(vec![ESCAPE]),
                // Unknown commands pass through whole, so nothing typed
                // is lost.
                other => Key::Guest(vec![ESCAPE, other]),
            };
        }
        if b == ESCAPE {
            self.pending = true;
            return Key::Guest(Vec::new());
        }
        Key::Guest(vec![b])
    }
}

/// The running input thread; stops and joins on drop.
pub(crate) struct ConsoleInput {
    stop: Arc<EventFd>,
    thread: Option<JoinHandle<()>>,
}

impl ConsoleInput {
    /// Starts forwarding `input` to `serial`; Ctrl-A x calls `stop`. The
    /// thread installs its own system call filter first; the VM's run
    /// waits for it through the returned [`Confinement`].
    pub(crate) fn start(
        input: OwnedFd,
        serial: Arc<Mutex<Serial>>,
        stop: StopHandle,
        seccomp: SeccompMode,
        vm_fds: &Fds,
    ) -> Result<(ConsoleInput, Confinement)> {
        let quit = Arc::new(
            EventFd::new(EFD_NONBLOCK).map_err(|e| Error::Device(format!("console input: {e}")))?,
        );
        let q = quit.clone();
        // The VM's eventfds (the serial interrupt kicks the vCPU), its
        // own quit eventfd and input; no KVM fd, TAP or disk, and no
        // output but stderr (always allowed).
        let fds = Fds {
            events: [&vm_fds.events[..], &[quit.as_raw_fd()]].concat(),
            input: vec![input.as_raw_fd()],
            ..Fds::default()
        };
        let (confiner, confinement) = crate::confine::pair("console input");
        let thread = std::thread::Builder::new()
            .name("ukvm-console".into())
            .spawn(move || {
                if !confiner.install(ThreadKind::Console, seccomp, &fds) {
                    return;
                }
                forward(&input, &serial, &stop, &q);
            })
            .map_err(|e| Error::Device(format!("console input thread: {e}")))?;
        let console = ConsoleInput {
            stop: quit,
            thread: Some(thread),
        };
        Ok((console, confinement))
    }
}

impl ConsoleInput {
    /// The eventfd that ends the thread, written when the VM's run ends.
    pub(crate) fn quit_fd(&self) -> std::os::fd::RawFd {
        self.stop.as_raw_fd()
    }
}

impl Drop for ConsoleInput {
    fn drop(&mut self) {
        if self.stop.write(1).is_ok() {
            if let Some(t) = self.thread.take() {
                let _ = t.join();
            }
        }
    }
}

/// Waits until `fd` is readable or `quit` is signalled (or `timeout`
/// passes). Returns false when it is time to go.
fn wait(fd: &OwnedFd, quit: &EventFd, timeout: Option<Duration>) -> bool {
    let mut fds = [
        libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        },
        libc::pollfd {
            fd: quit.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        },
    ];
    let ts = timeout.map(|t| libc::timespec {
        tv_sec: t.as_secs() as libc::time_t,
        tv_nsec: t.subsec_nanos() as libc::c_long,
    });
    let ts_ptr = ts.as_ref().map_or(std::ptr::null(), |t| t as *const _);
    // SAFETY: two valid pollfds and a valid (or null) timeout.
    let n = unsafe { libc::ppoll(fds.as_mut_ptr(), 2, ts_ptr, std::ptr::null()) };
    if n < 0 {
        return std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted;
    }
    fds[1].revents == 0
}

fn forward(input: &OwnedFd, serial: &Mutex<Serial>, stop: &StopHandle, quit: &EventFd) {
    let mut escape = Escape::default();
    let mut buf = [0u8; 256];
    loop {
        if !wait(input, quit, None) {
            return;
        }
        // SAFETY: reads into our buffer from an fd we own.
        let n = unsafe { libc::read(input.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if matches!(
                e.kind(),
                std::io::ErrorKind::Interrupted | std::io::ErrorKind::WouldBlock
            ) {
                continue;
            }
            // Unreadable input: the guest just gets none.
            return;
        }
        if n == 0 {
            return; // end of file
        }
        let mut pending = Vec::with_capacity(n as usize);
        for &b in &buf[..n as usize] {
            match escape.feed(b) {
                Key::Guest(bytes) => pending.extend_from_slice(&bytes),
                Key::Quit => {
                    // What was typed before the escape still goes in.
                    ukvm_devices::bus::lock(serial).receive(&pending);
                    eprintln!("\r\nukvm: Ctrl-A x: ending the run\r");
                    stop.stop();
                    return;
                }
            }
        }
        let mut sent = 0;
        while sent < pending.len() {
            sent += ukvm_devices::bus::lock(serial).receive(&pending[sent..]);
            // The FIFO is full: the guest reads at its own pace.
            if sent < pending.len() && !wait_quit(quit, Duration::from_millis(2)) {
                return;
            }
        }
    }
}

/// Sleeps up to `t`; false if `quit` was signalled.
fn wait_quit(quit: &EventFd, t: Duration) -> bool {
    let mut pfd = libc::pollfd {
        fd: quit.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: t.as_nanos() as libc::c_long,
    };
    // SAFETY: one valid pollfd and timeout.
    unsafe { libc::ppoll(&mut pfd, 1, &ts, std::ptr::null()) };
    pfd.revents == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(s: &[u8]) -> (Vec<u8>, bool) {
        let mut e = Escape::default();
        let mut out = Vec::new();
        for &b in s {
            match e.feed(b) {
                Key::Guest(bytes) => out.extend(bytes),
                Key::Quit => return (out, true),
            }
        }
        (out, false)
    }

    #[test]
    fn ctrl_a_x_quits_and_other_bytes_pass() {
        assert_eq!(feed(b"ab\x01xcd"), (b"ab".to_vec(), true));
        assert_eq!(feed(b"a\x01\x01b"), (b"a\x01b".to_vec(), false));
        assert_eq!(feed(b"\x01q"), (b"\x01q".to_vec(), false));
        assert_eq!(feed(b"plain\r"), (b"plain\r".to_vec(), false));
    }
}
