//! One timed run: from just before the parent spawns the monitor to the
//! moment `wait4` reaps it, and to the moment the guest's first line
//! reaches the parent's pipe. The same code times every monitor.
//!
//! Also the CPU time (user + system) the run cost, from `wait4`'s
//! resource usage: the monitor's, and that of any process it left behind
//! (ukvm's fast-exit helper, in whose exit the kernel tears the VM down).
//! The benchmark is a child subreaper ([`become_subreaper`]), so those
//! are reparented to it; they are waited for after the run, outside its
//! timed part, and before the next one starts, so that one monitor's
//! deferred teardown does not run during the next monitor's boot. On a
//! machine shared with other work the CPU times are steadier than the
//! wall-clock ones: time spent waiting for a CPU is not in them.

use std::fs::File;
use std::io::Read;
use std::os::fd::AsRawFd;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// What one run measured.
pub struct Sample {
    /// Spawn to reaped.
    pub exit: Duration,
    /// Spawn to the guest's first line in our pipe.
    pub ready: Option<Duration>,
    /// Exit status (128 + signal when killed).
    pub status: i32,
    /// CPU time of the monitor and of what it left running.
    pub cpu: Duration,
    /// Everything the guest printed.
    pub output: Vec<u8>,
}

/// Runs `cmd` once, stderr to `stderr`, giving up after `limit`. "Ready"
/// is when a whole line containing `ready_marker` has arrived (firmware
/// may print before the guest, on the same line).
pub fn timed(
    cmd: &mut Command,
    ready_marker: Option<&str>,
    stderr: File,
    limit: Duration,
) -> Result<Sample, String> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(stderr));
    // Leftovers of runs not timed here (the memory runs) are not ours.
    reap_orphans(Duration::ZERO);
    std::thread::sleep(SETTLE);
    let start = Instant::now();
    let mut child = cmd.spawn().map_err(|e| format!("cannot start: {e}"))?;
    let mut stdout = child.stdout.take().ok_or("no stdout pipe")?;
    let mut output = Vec::new();
    let mut ready = None;
    let mut buf = [0u8; 4096];
    loop {
        let left = limit.saturating_sub(start.elapsed());
        if left.is_zero() || !readable(&stdout, left) {
            // Killing a child we started cannot hurt anyone else.
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("no exit within {} s", limit.as_secs()));
        }
        let n = stdout.read(&mut buf).map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            break;
        }
        output.extend_from_slice(&buf[..n]);
        if let (None, Some(m)) = (ready, ready_marker) {
            if line_arrived(&output, m.as_bytes()) {
                ready = Some(start.elapsed());
            }
        }
    }
    let (status, cpu) = reap(child.id() as libc::pid_t)?;
    let exit = start.elapsed();
    Ok(Sample {
        exit,
        ready,
        status,
        cpu: cpu + reap_orphans(ORPHAN_LIMIT),
        output,
    })
}

/// Whether `out` holds `marker` followed by the end of its line.
fn line_arrived(out: &[u8], marker: &[u8]) -> bool {
    out.windows(marker.len())
        .position(|w| w == marker)
        .is_some_and(|at| out[at + marker.len()..].contains(&b'\n'))
}

/// Waits until `pipe` has data or EOF, up to `limit`.
fn readable(pipe: &impl AsRawFd, limit: Duration) -> bool {
    let mut fd = libc::pollfd {
        fd: pipe.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = limit.as_millis().min(i32::MAX as u128) as i32;
    loop {
        // SAFETY: one valid pollfd, for the duration of the call.
        let rc = unsafe { libc::poll(&mut fd, 1, ms.max(1)) };
        if rc >= 0 || std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
            return rc > 0;
        }
    }
}

/// A pause before each run, so that it does not pay for the previous
/// one. What a process leaves to the kernel when it exits (RCU callbacks
/// freeing a TAP's queue or a VM, run in softirq time) is charged to
/// whatever runs next on that CPU: without the pause, the same ukvm binary
/// given as both --ukvm and --ukvm-b measured 0.93 (CPU) and 0.89 (wall)
/// against itself on hello-quiet-disk-nic, 150 rounds, because ukvm-b
/// always ran right after ukvm and its TAP; with it, 1.00 and 1.00.
const SETTLE: Duration = Duration::from_millis(20);

/// How long to wait for what a monitor left running (ukvm's helper exits
/// within milliseconds of ukvm).
const ORPHAN_LIMIT: Duration = Duration::from_secs(5);

/// Makes this process the reaper of its descendants' orphans (Linux 3.4+);
/// without it they go to init and their CPU time is not counted.
pub fn become_subreaper() {
    // SAFETY: sets a flag of this process; no memory is passed.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1) };
}

/// Reaps `pid`: its exit status and CPU time.
fn reap(pid: libc::pid_t) -> Result<(i32, Duration), String> {
    let mut status = 0;
    // SAFETY: a zeroed rusage is valid for wait4 to fill.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waits for our own child; status and usage are locals.
    let rc = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    if rc != pid {
        return Err(format!("wait4: {}", std::io::Error::last_os_error()));
    }
    let status = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        128 + libc::WTERMSIG(status)
    };
    Ok((status, cpu_time(&usage)))
}

/// Waits up to `limit` for every other child (orphans reparented to us)
/// to exit, reaps them and returns their total CPU time.
fn reap_orphans(limit: Duration) -> Duration {
    let start = Instant::now();
    let mut total = Duration::ZERO;
    loop {
        let mut status = 0;
        // SAFETY: a zeroed rusage is valid for wait4 to fill.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: any child of ours; status and usage are locals.
        let rc = unsafe { libc::wait4(-1, &mut status, libc::WNOHANG, &mut usage) };
        if rc > 0 {
            total += cpu_time(&usage);
        } else if rc < 0 || start.elapsed() >= limit {
            // ECHILD: none left.
            return total;
        } else {
            std::thread::sleep(Duration::from_micros(200));
        }
    }
}

fn cpu_time(u: &libc::rusage) -> Duration {
    let us = |t: libc::timeval| t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64;
    Duration::from_micros(us(u.ru_utime) + us(u.ru_stime))
}
