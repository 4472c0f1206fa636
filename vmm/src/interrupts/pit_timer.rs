//! The 8254 (`ukvm_devices::pit`) in the running VM: its ports on the bus,
//! and a POSIX timer that brings the vCPU out of the guest when channel 0's
//! output next rises, so that IRQ 0 is raised on the PIC on time.
//!
//! The timer signals the vCPU thread itself (`SIGEV_THREAD_ID`, the kick
//! signal): a guest that spins waiting for its tick is interrupted by the
//! kernel's timer interrupt directly. A helper thread on a timerfd was
//! measured first and rejected: on these loaded 2-CPU machines the helper
//! often waited 2-18 ms for a CPU while the vCPU spun, so ticks came late;
//! ticks to a halted guest were on time either way. Everything here runs on
//! the vCPU thread: the timer is created the first time the guest arms
//! channel 0 (guests that never do pay nothing), re-armed on each PIT write
//! and each expiry, and a halted guest sleeps with the next edge as its
//! timeout.

use super::userspace::IrqChip;
use crate::kick;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use ukvm_devices::bus::lock;
use ukvm_devices::pit::{self, Pit, PitStats};
use ukvm_devices::BusDevice;

/// A POSIX timer that sends the kick signal to one thread.
struct PosixTimer {
    id: libc::timer_t,
    tid: libc::pid_t,
}

// SAFETY: a timer_t is a kernel handle; any thread may set or delete it.
unsafe impl Send for PosixTimer {}

fn gettid() -> libc::pid_t {
    // SAFETY: gettid has no preconditions.
    unsafe { libc::gettid() }
}

impl PosixTimer {
    /// A disarmed timer for the calling thread.
    fn for_this_thread() -> std::io::Result<PosixTimer> {
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

    /// Fires once after `wait`, or never (`None`).
    fn set(&self, wait: Option<Duration>) {
        // Zero would disarm: an edge already due fires after a nanosecond.
        let wait = wait.map(|w| w.max(Duration::from_nanos(1)));
        let value = wait.map_or(
            libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            |w| libc::timespec {
                tv_sec: w.as_secs() as libc::time_t,
                tv_nsec: libc::c_long::from(w.subsec_nanos() as i32),
            },
        );
        let spec = libc::itimerspec {
            it_interval: libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: value,
        };
        // SAFETY: our timer id and a valid itimerspec. A timer that cannot
        // be set loses this tick only; a halted guest still wakes on time
        // (its sleep has the edge as timeout).
        unsafe { libc::timer_settime(self.id, 0, &spec, std::ptr::null_mut()) };
    }
}

impl Drop for PosixTimer {
    fn drop(&mut self) {
        // SAFETY: deletes our own timer once.
        unsafe { libc::timer_delete(self.id) };
    }
}

struct State {
    pit: Pit,
    /// Created on first use, for the thread running the vCPU.
    timer: Option<PosixTimer>,
}

/// The PIT and its timer, shared by the bus device and the vCPU loop.
pub(crate) struct PitTimer {
    state: Mutex<State>,
    chip: Arc<IrqChip>,
    /// Channel-0 edges that came while an earlier one was not yet raised.
    late: AtomicU64,
}

impl PitTimer {
    pub(crate) fn new(chip: Arc<IrqChip>) -> Arc<PitTimer> {
        Arc::new(PitTimer {
            state: Mutex::new(State {
                pit: Pit::new(Instant::now()),
                timer: None,
            }),
            chip,
            late: AtomicU64::new(0),
        })
    }

    /// When channel 0 next raises IRQ 0, if it will.
    pub(crate) fn next_irq(&self) -> Option<Instant> {
        lock(&self.state).pit.next_irq()
    }

    pub(crate) fn stats(&self) -> PitStats {
        lock(&self.state).pit.stats()
    }

    pub(crate) fn late_ticks(&self) -> u64 {
        self.late.load(Ordering::Relaxed)
    }

    /// Sets the timer to channel 0's next edge (vCPU thread only).
    fn arm(state: &mut State) {
        let next = state.pit.next_irq();
        let tid = gettid();
        if state.timer.as_ref().is_none_or(|t| t.tid != tid) {
            if next.is_none() {
                return;
            }
            state.timer = match PosixTimer::for_this_thread() {
                Ok(timer) => Some(timer),
                Err(e) => {
                    eprintln!("ukvm: warning: no PIT timer ({e}): IRQ 0 only wakes a halted guest");
                    None
                }
            };
        }
        if let Some(timer) = &state.timer {
            timer.set(next.map(|at| at.saturating_duration_since(Instant::now())));
        }
    }

    /// Raises IRQ 0 for the edges that came, and re-arms (vCPU thread).
    pub(crate) fn poll(&self) {
        let mut state = lock(&self.state);
        let edges = state.pit.take_irqs(Instant::now());
        if edges == 0 {
            return;
        }
        Self::arm(&mut state);
        drop(state);
        self.late.fetch_add(edges - 1, Ordering::Relaxed);
        self.chip.pulse_from_vcpu(0);
    }

    /// Stops signalling: the run is over.
    pub(crate) fn disarm(&self) {
        lock(&self.state).timer = None;
    }
}

/// The PIT's ports (0x40-0x43 and 0x61) on the guest's bus.
pub(crate) struct PitPorts(pub Arc<PitTimer>);

impl BusDevice for PitPorts {
    fn read(&mut self, base: u64, offset: u64, data: &mut [u8]) {
        let port = (base + offset) as u16;
        let mut state = lock(&self.0.state);
        let now = Instant::now();
        for (i, b) in data.iter_mut().enumerate() {
            *b = state.pit.read(port.wrapping_add(i as u16), now);
        }
    }

    fn write(&mut self, base: u64, offset: u64, data: &[u8]) -> Option<ukvm_devices::Event> {
        let port = (base + offset) as u16;
        let mut state = lock(&self.0.state);
        let now = Instant::now();
        for (i, b) in data.iter().enumerate() {
            state.pit.write(port.wrapping_add(i as u16), *b, now);
        }
        // Only counter 0 and control words change channel 0.
        if port == pit::COUNTER0_PORT || port == pit::CONTROL_PORT {
            PitTimer::arm(&mut state);
        }
        None
    }
}
