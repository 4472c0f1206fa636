//! The SIGSYS handler: names the refused system call on stderr, then lets
//! the process die of SIGSYS.
//!
//! The filter traps (SECCOMP_RET_TRAP) instead of killing outright so that
//! the message can be written; the kernel's own record (audit) is not
//! there on every host. The handler is installed with SA_RESETHAND: after
//! the message it repeats the refused call, which the filter traps again,
//! and with the default disposition back the process ends by SIGSYS.

use crate::allowlist::{Sysno, ThreadKind};
use std::cell::Cell;

thread_local! {
    /// The filter kind of this thread, for the message (0: none).
    static KIND: Cell<u8> = const { Cell::new(0) };
}

/// Records `kind` for this thread and installs the handler.
pub(crate) fn prepare(kind: ThreadKind) -> std::io::Result<()> {
    KIND.with(|k| k.set(kind as u8 + 1));
    // SAFETY: a zeroed sigaction is valid; the handler is an extern "C" fn
    // with the SA_SIGINFO signature, and only async-signal-safe work runs
    // in it (a stack buffer, raw system calls).
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        let f: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) = handler;
        sa.sa_sigaction = f as usize;
        sa.sa_flags = libc::SA_SIGINFO | libc::SA_RESETHAND;
        libc::sigemptyset(&mut sa.sa_mask);
        if libc::sigaction(libc::SIGSYS, &sa, std::ptr::null_mut()) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// A fixed buffer that formats without allocating.
struct Line {
    buf: [u8; 256],
    len: usize,
}

impl Line {
    fn push(&mut self, s: &[u8]) {
        let n = s.len().min(self.buf.len() - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&s[..n]);
        self.len += n;
    }

    fn push_num(&mut self, mut v: u64) {
        let mut digits = [0u8; 20];
        let mut i = digits.len();
        loop {
            i -= 1;
            digits[i] = b'0' + (v % 10) as u8;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        self.push(&digits[i..]);
    }
}

/// The message for a refused call `nr` on a thread of `kind`, whose first
/// argument (the fd of the fd-taking calls) was `arg0`.
pub(crate) fn message(kind: u8, nr: i64, arg0: u64) -> ([u8; 256], usize) {
    let mut line = Line {
        buf: [0; 256],
        len: 0,
    };
    let thread: &[u8] = match kind {
        1 => b"vcpu",
        2 => b"io",
        3 => b"console",
        _ => b"unfiltered",
    };
    let name = usize::try_from(nr)
        .ok()
        .and_then(Sysno::new)
        .map_or("unknown", |s| s.name());
    line.push(b"ukvm: seccomp: the ");
    line.push(thread);
    line.push(b" thread made system call ");
    line.push(name.as_bytes());
    line.push(b" (");
    line.push_num(nr as u64);
    line.push(b") with arguments its filter does not allow (the first: ");
    line.push_num(arg0);
    line.push(b"); ukvm is killed (--seccomp=log only logs such calls)\n");
    (line.buf, line.len)
}

extern "C" fn handler(_sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo and ucontext for SA_SIGINFO
    // handlers. For SIGSYS, si_syscall is the int at byte 24 of siginfo
    // (after signo, errno, code, padding and the 8-byte call address).
    unsafe {
        let nr = i64::from(*(info as *const u8).add(24).cast::<i32>());
        let kind = KIND.with(Cell::get);
        let uc = &*(ctx as *const libc::ucontext_t);
        let g = &uc.uc_mcontext.gregs;
        let (buf, len) = message(kind, nr, g[libc::REG_RDI as usize] as u64);
        // fd 2 is in every thread's output fds ([`crate::Fds::output`]).
        libc::write(2, buf.as_ptr().cast(), len);
        // Repeat the refused call with its arguments: the filter traps it
        // again and, with the default disposition restored, SIGSYS ends
        // the process.
        libc::syscall(
            nr,
            g[libc::REG_RDI as usize],
            g[libc::REG_RSI as usize],
            g[libc::REG_RDX as usize],
            g[libc::REG_R10 as usize],
            g[libc::REG_R8 as usize],
            g[libc::REG_R9 as usize],
        );
        libc::_exit(128 + libc::SIGSYS);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn message_names_the_call_and_the_thread() {
        let (buf, len) = super::message(2, 1, 9);
        let s = std::str::from_utf8(&buf[..len]).unwrap();
        assert!(
            s.starts_with(
                "ukvm: seccomp: the io thread made system call write (1) with arguments its \
                 filter does not allow (the first: 9)"
            ),
            "{s}"
        );
        assert!(s.ends_with('\n'));
    }
}
