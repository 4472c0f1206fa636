//! What the `ukvm` command does before its own code, instead of Rust's
//! runtime start-up (`main.rs` is `#![no_main]`: the C library calls
//! `main` directly).
//!
//! Rust's start-up also finds the main thread's stack bounds (glibc reads
//! and parses `/proc/self/maps` for that) and installs a SIGSEGV/SIGBUS
//! handler with an alternate signal stack in every thread, to print
//! "has overflowed its stack" instead of dying of a plain SIGSEGV. That
//! is ~15 system calls and a procfs read at every start, plus three per
//! thread started, and it is most of what ukvm did before parsing its
//! command line: measured with the boot benchmark (see README,
//! *Performance*). A stack overflow now ends ukvm with a plain SIGSEGV,
//! which is what a C monitor (solo5-hvt, QEMU) does too.
//!
//! Kept from Rust's start-up, because behaviour depends on them:
//! - standard streams that were closed at exec are opened on /dev/null, so
//!   no file ukvm opens later (/dev/kvm, a disk image) becomes fd 1 or 2
//!   and receives guest output or messages;
//! - SIGPIPE is ignored, so a closed output pipe is a write error ukvm
//!   reports, not a silent death.
//!
//! `std::env::args` needs nothing from here: on glibc the C library hands
//! the arguments to Rust's standard library before `main`.

/// Prepares the process as Rust's runtime would for ukvm. Call first in
/// `main`, before any other thread exists.
pub fn init() {
    reopen_closed_std_fds();
    // SAFETY: sets a signal disposition; no handler code runs.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
}

/// Opens /dev/null on each of fds 0-2 that is not open. One `poll` tells
/// which are closed (POLLNVAL), as in Rust's runtime.
fn reopen_closed_std_fds() {
    let mut fds = [0, 1, 2].map(|fd| libc::pollfd {
        fd,
        events: 0,
        revents: 0,
    });
    // SAFETY: poll reads and writes the three entries of the array.
    if unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, 0) } < 0 {
        // Cannot tell (no memory for poll): check each fd instead.
        for p in &mut fds {
            // SAFETY: F_GETFD only queries the descriptor's flags.
            if unsafe { libc::fcntl(p.fd, libc::F_GETFD) } < 0 {
                p.revents = libc::POLLNVAL;
            }
        }
    }
    for p in fds.iter().filter(|p| p.revents & libc::POLLNVAL != 0) {
        // SAFETY: a NUL-terminated path; open returns the lowest free fd,
        // which is this one, since the lower ones are open by now.
        let fd = unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDWR) };
        if fd != p.fd {
            // As Rust's runtime: running with a standard stream that
            // could become another file is worse than not running.
            std::process::abort();
        }
    }
}
