//! One timed run: from just before the parent spawns the monitor to the
//! moment `wait4` reaps it, and to the moment the guest's first line
//! reaches the parent's pipe. The same code times every monitor.

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
    let status = reap(child.id() as libc::pid_t)?;
    Ok(Sample {
        exit: start.elapsed(),
        ready,
        status,
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

/// Reaps `pid` and returns its exit status.
fn reap(pid: libc::pid_t) -> Result<i32, String> {
    let mut status = 0;
    // SAFETY: waits for our own child; the status is written to a local.
    let rc = unsafe { libc::waitpid(pid, &mut status, 0) };
    if rc != pid {
        return Err(format!("waitpid: {}", std::io::Error::last_os_error()));
    }
    Ok(if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        128 + libc::WTERMSIG(status)
    })
}
