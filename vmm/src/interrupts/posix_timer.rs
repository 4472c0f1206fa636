//! A POSIX timer that sends the kick signal (`crate::kick`) to the vCPU
//! thread at a given time: no helper thread, and a guest spinning in
//! `KVM_RUN` is interrupted straight from the kernel's timer interrupt.

use crate::kick;
use std::time::Duration;

fn timespec(d: Option<Duration>) -> libc::timespec {
    d.map_or(
        libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        },
        |d| libc::timespec {
            tv_sec: d.as_secs() as libc::time_t,
            tv_nsec: libc::c_long::from(d.subsec_nanos() as i32),
        },
    )
}

/// A POSIX timer that sends the kick signal to one thread.
pub(crate) struct PosixTimer {
    id: libc::timer_t,
    pub tid: libc::pid_t,
}

// SAFETY: a timer_t is a kernel handle; any thread may set or delete it.
unsafe impl Send for PosixTimer {}

/// The calling thread's id.
pub(crate) fn gettid() -> libc::pid_t {
    // SAFETY: gettid has no preconditions.
    unsafe { libc::gettid() }
}

impl PosixTimer {
    /// A disarmed timer for the calling thread.
    pub(crate) fn for_this_thread() -> std::io::Result<PosixTimer> {
        let tid = gettid();
        // SAFETY: a zeroed sigevent is valid; we fill the fields
        // SIGEV_THREAD_ID reads.
        let mut sev: libc::sigevent = unsafe { std::mem::zeroed() };
        sev.sigev_notify = libc::SIGEV_THREAD_ID;
        sev.sigev_signo = kick::kick_signal();
        sev.sigev_notify_thread_id = tid;
        let mut id: libc::timer_t = std::ptr::null_mut();
        // SAFETY: valid pointers to a sigevent and to the id to fill.
        if unsafe { libc::timer_create(libc::CLOCK_MONOTONIC, &mut sev, &mut id) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(PosixTimer { id, tid })
    }

    /// Fires after `wait` (never: `None`), then every `interval` if given.
    pub(crate) fn set(&self, wait: Option<Duration>, interval: Option<Duration>) {
        // Zero would disarm: an edge already due fires after a nanosecond.
        let wait = wait.map(|w| w.max(Duration::from_nanos(1)));
        let spec = libc::itimerspec {
            it_interval: timespec(interval),
            it_value: timespec(wait),
        };
        // SAFETY: our timer id and a valid itimerspec. A timer that cannot
        // be set loses one signal: for the PIT one tick (a halted guest
        // still wakes on time, its sleep has the edge as timeout).
        unsafe { libc::timer_settime(self.id, 0, &spec, std::ptr::null_mut()) };
    }
}

impl Drop for PosixTimer {
    fn drop(&mut self) {
        // SAFETY: deletes our own timer once.
        unsafe { libc::timer_delete(self.id) };
    }
}
