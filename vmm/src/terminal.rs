//! The `ukvm` command's terminal: raw mode while a guest owns the console,
//! so keys reach the guest as typed (Ctrl-C included; Ctrl-A x ends the
//! run), and the saved settings back on every way out: the guard's drop
//! (SIGTERM and SIGINT stop the guest through `signals.rs`, and the run
//! returns), a panic, and SIGHUP/SIGQUIT, which end the process here.
//!
//! The signal handler needs the saved settings without any object to
//! reach them through: they sit in one process-wide slot, set once, as
//! the terminal itself is process-wide.

use std::os::fd::RawFd;
use std::sync::OnceLock;

/// The settings to restore, for the panic hook and the signal handler.
static SAVED: OnceLock<(RawFd, libc::termios)> = OnceLock::new();

/// Signals that end the process and must not leave the terminal raw
/// (SIGTERM and SIGINT are blocked and read by `signals.rs`).
const SIGNALS: [libc::c_int; 2] = [libc::SIGHUP, libc::SIGQUIT];

/// Raw mode on a terminal; restores the saved settings when dropped.
pub struct RawTerminal {
    fd: RawFd,
    saved: libc::termios,
}

fn restore(fd: RawFd, saved: &libc::termios) {
    // SAFETY: tcsetattr with a termios tcgetattr filled; async-signal-safe.
    unsafe { libc::tcsetattr(fd, libc::TCSANOW, saved) };
}

extern "C" fn on_signal(sig: libc::c_int) {
    if let Some((fd, saved)) = SAVED.get() {
        restore(*fd, saved);
    }
    // SAFETY: back to the default action and raise again, so the process
    // ends the way the signal asked (status, core).
    unsafe {
        libc::signal(sig, libc::SIG_DFL);
        libc::raise(sig);
    }
}

impl RawTerminal {
    /// Puts `fd` in raw mode if it is a terminal; `None` if it is not (a
    /// pipe, a file). Output processing stays on, so a guest's bare `\n`
    /// still starts a new line.
    pub fn enter(fd: RawFd) -> Option<RawTerminal> {
        // SAFETY: isatty has no preconditions.
        if unsafe { libc::isatty(fd) } != 1 {
            return None;
        }
        // SAFETY: a zeroed termios is a valid buffer for tcgetattr.
        let mut saved: libc::termios = unsafe { std::mem::zeroed() };
        // SAFETY: fd is a terminal, saved a valid buffer.
        if unsafe { libc::tcgetattr(fd, &mut saved) } != 0 {
            return None;
        }
        let mut raw = saved;
        // SAFETY: cfmakeraw edits the struct it is given.
        unsafe { libc::cfmakeraw(&mut raw) };
        raw.c_oflag |= libc::OPOST | libc::ONLCR;
        if SAVED.set((fd, saved)).is_ok() {
            install_handlers();
        }
        // SAFETY: fd is a terminal; raw is a complete termios.
        if unsafe { libc::tcsetattr(fd, libc::TCSANOW, &raw) } != 0 {
            return None;
        }
        Some(RawTerminal { fd, saved })
    }
}

impl Drop for RawTerminal {
    fn drop(&mut self) {
        restore(self.fd, &self.saved);
    }
}

fn install_handlers() {
    for sig in SIGNALS {
        // SAFETY: a zeroed sigaction with our handler and an empty mask;
        // the handler only calls async-signal-safe functions.
        unsafe {
            let mut act: libc::sigaction = std::mem::zeroed();
            act.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as usize;
            libc::sigemptyset(&mut act.sa_mask);
            libc::sigaction(sig, &act, std::ptr::null_mut());
        }
    }
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if let Some((fd, saved)) = SAVED.get() {
            restore(*fd, saved);
        }
        previous(info);
    }));
}
