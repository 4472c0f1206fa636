//! Peak memory of a monitor process, less the guest's memory.
//!
//! The monitor runs under ptrace, every thread traced (QEMU exits from a
//! vCPU thread), stopping at each system call. At the first `munmap` of a
//! writable mapping at least as large as guest RAM (a monitor that unmaps
//! guest memory before it exits), or else at the first thread's exit stop
//! (`PTRACE_O_TRACEEXIT`, while the address space still exists), we read `/proc/TID/status` (VmHWM: peak resident set) and
//! `/proc/TID/smaps` (resident pages of the guest-RAM mappings: pages the
//! loader, firmware and guest touched). These runs are separate from the
//! timed ones, whose cost ptrace would change.

use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

/// Memory of one run, KiB.
#[derive(Debug, Clone, Copy, Default)]
pub struct Usage {
    /// Peak resident set of the whole process (VmHWM).
    pub peak: u64,
    /// Resident pages of the guest RAM at exit (pages the guest and the
    /// loader touched).
    pub guest: u64,
}

impl Usage {
    /// What the monitor itself needed.
    pub fn monitor(&self) -> u64 {
        self.peak.saturating_sub(self.guest)
    }
}

/// Runs `cmd` to its end and measures it. `guest_bytes` is the guest RAM
/// size: the anonymous mappings at least that large are guest RAM.
pub fn measure(mut cmd: Command, guest_bytes: u64) -> Result<Usage, String> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // SAFETY: PTRACE_TRACEME only changes the child's tracing state; it is
    // async-signal-safe, so fine between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            let rc = libc::ptrace(libc::PTRACE_TRACEME, 0, 0, 0);
            if rc == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = cmd.spawn().map_err(|e| format!("cannot start: {e}"))?;
    let pid = child.id() as libc::pid_t;
    let (_, status) = wait_any(pid)?;
    if !libc::WIFSTOPPED(status) {
        return Err("the traced program did not stop at exec".into());
    }
    let options = libc::PTRACE_O_TRACEEXIT
        | libc::PTRACE_O_TRACECLONE
        | libc::PTRACE_O_TRACESYSGOOD
        | libc::PTRACE_O_EXITKILL;
    // SAFETY: `pid` is our stopped tracee; the options are plain flags.
    unsafe { libc::ptrace(libc::PTRACE_SETOPTIONS, pid, 0, options) };
    resume(pid, 0);
    let mut usage = None;
    loop {
        let (tid, status) = wait_any(-1)?;
        if !libc::WIFSTOPPED(status) {
            if tid == pid {
                break;
            }
            continue;
        }
        let event = status >> 16;
        let sig = libc::WSTOPSIG(status);
        let syscall = sig == libc::SIGTRAP | 0x80;
        let unmaps_guest = syscall && unmaps_guest_ram(tid, guest_bytes);
        if (event == libc::PTRACE_EVENT_EXIT || unmaps_guest) && usage.is_none() {
            usage = Some(read_usage(tid, guest_bytes)?);
        }
        let forward = event == 0 && !syscall && sig != libc::SIGTRAP && sig != libc::SIGSTOP;
        resume(tid, if forward { sig } else { 0 });
    }
    usage.ok_or_else(|| "the program ended without an exit stop".into())
}

fn wait_any(pid: libc::pid_t) -> Result<(libc::pid_t, i32), String> {
    let mut status = 0;
    // SAFETY: waits for our own (traced) children; writes a local.
    let tid = unsafe { libc::waitpid(pid, &mut status, libc::__WALL) };
    if tid < 0 {
        return Err(format!("waitpid: {}", std::io::Error::last_os_error()));
    }
    Ok((tid, status))
}

/// Lets `tid` run to its next system call (or signal, or exit).
fn resume(tid: libc::pid_t, sig: i32) {
    // SAFETY: `tid` is a stopped thread we trace; a failure (it died
    // meanwhile) is reported by the next waitpid.
    unsafe { libc::ptrace(libc::PTRACE_SYSCALL, tid, 0, sig as libc::c_long) };
}

/// Whether `tid`, stopped at a system call, is calling `munmap` on a
/// readable and writable mapping of at least `bytes` that starts at the
/// address unmapped: guest RAM (true at the entry stop; the exit stop finds
/// it gone). glibc trims its 64 MiB malloc arena reservations with large
/// munmaps too, but those are inaccessible (`---p`).
fn unmaps_guest_ram(tid: libc::pid_t, bytes: u64) -> bool {
    // SAFETY: all-zero is a valid user_regs_struct (plain integers).
    let mut regs: libc::user_regs_struct = unsafe { std::mem::zeroed() };
    // SAFETY: `tid` is stopped under our trace; GETREGS fills `regs`.
    let rc = unsafe { libc::ptrace(libc::PTRACE_GETREGS, tid, 0, &mut regs) };
    if rc != 0 || regs.orig_rax != libc::SYS_munmap as u64 || regs.rsi < bytes {
        return false;
    }
    let maps = std::fs::read_to_string(format!("/proc/{tid}/maps")).unwrap_or_default();
    let start = format!("{:x}-", regs.rdi);
    maps.lines().any(|l| {
        l.starts_with(&start)
            && l.split_whitespace()
                .nth(1)
                .is_some_and(|p| p.starts_with("rw"))
            && mapping_size(l).is_some_and(|size| size >= bytes)
    })
}

fn read_usage(tid: libc::pid_t, guest_bytes: u64) -> Result<Usage, String> {
    let status = std::fs::read_to_string(format!("/proc/{tid}/status"))
        .map_err(|e| format!("/proc/{tid}/status: {e}"))?;
    let smaps = std::fs::read_to_string(format!("/proc/{tid}/smaps"))
        .map_err(|e| format!("/proc/{tid}/smaps: {e}"))?;
    let peak = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(kib)
        .ok_or("no VmHWM")?;
    Ok(Usage {
        peak,
        guest: guest_rss(&smaps, guest_bytes),
    })
}

/// "  1234 kB" -> 1234.
fn kib(field: &str) -> Option<u64> {
    field.trim().trim_end_matches("kB").trim().parse().ok()
}

/// Sums Rss over anonymous mappings of at least `guest_bytes`.
pub fn guest_rss(smaps: &str, guest_bytes: u64) -> u64 {
    let mut total = 0;
    let mut in_guest = false;
    for line in smaps.lines() {
        if let Some(rss) = line.strip_prefix("Rss:") {
            if in_guest {
                total += kib(rss).unwrap_or(0);
            }
        } else if let Some(size) = mapping_size(line) {
            let anonymous = line.split_whitespace().nth(5).is_none();
            in_guest = anonymous && size >= guest_bytes;
        }
    }
    total
}

/// The size of the mapping a smaps header line ("start-end perms ...")
/// describes.
fn mapping_size(line: &str) -> Option<u64> {
    let range = line.split_whitespace().next()?;
    let (a, b) = range.split_once('-')?;
    let a = u64::from_str_radix(a, 16).ok()?;
    let b = u64::from_str_radix(b, 16).ok()?;
    b.checked_sub(a)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guest_rss_counts_only_large_anonymous_mappings() {
        let smaps = "\
55a000000000-55a000100000 r-xp 00000000 08:01 1234 /usr/bin/x
Rss:                 512 kB
7f0000000000-7f0004000000 rw-p 00000000 00:00 0 
Rss:                  96 kB
7f0004000000-7f0004001000 rw-p 00000000 00:00 0 
Rss:                   4 kB
";
        assert_eq!(guest_rss(smaps, 64 << 20), 96);
    }
}
