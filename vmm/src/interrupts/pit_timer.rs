//! The 8254 (`ukvm_devices::pit`) in the running VM: its ports on the bus,
//! and a timerfd that turns channel 0's next output edge into IRQ 0 on the
//! PIC.
//!
//! A small thread waits on the timerfd, so that a guest that spins (rather
//! than halts) waiting for its tick still gets it. The thread starts the
//! first time the guest arms channel 0: guests that never use the PIT (and
//! their boot time) pay nothing for it.

use super::userspace::IrqChip;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use ukvm_devices::bus::lock;
use ukvm_devices::pit::{self, Pit, PitStats};
use ukvm_devices::BusDevice;
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};
use vmm_sys_util::timerfd::TimerFd;

struct State {
    pit: Pit,
    /// Armed for channel 0's next output edge; non-blocking.
    timer: TimerFd,
}

/// The PIT and its timer, shared by the bus device, the timer thread and
/// the vCPU's `hlt` check.
pub(crate) struct PitTimer {
    state: Mutex<State>,
    chip: Arc<IrqChip>,
    /// Channel-0 edges that came while an earlier one was not yet raised.
    late: AtomicU64,
}

impl PitTimer {
    pub(crate) fn new(chip: Arc<IrqChip>) -> std::io::Result<Arc<PitTimer>> {
        let timer = TimerFd::new()?;
        // SAFETY: F_SETFL on a descriptor we own. Non-blocking, so that the
        // thread's read after a re-arm by the vCPU can never block.
        unsafe { libc::fcntl(timer.as_raw_fd(), libc::F_SETFL, libc::O_NONBLOCK) };
        Ok(Arc::new(PitTimer {
            state: Mutex::new(State {
                pit: Pit::new(Instant::now()),
                timer,
            }),
            chip,
            late: AtomicU64::new(0),
        }))
    }

    /// Whether channel 0 will raise IRQ 0 again.
    pub(crate) fn armed(&self) -> bool {
        lock(&self.state).pit.next_irq().is_some()
    }

    pub(crate) fn stats(&self) -> PitStats {
        lock(&self.state).pit.stats()
    }

    pub(crate) fn late_ticks(&self) -> u64 {
        self.late.load(Ordering::Relaxed)
    }

    /// Sets the timerfd to channel 0's next edge; returns whether there is
    /// one.
    fn arm(state: &mut State) -> bool {
        match state.pit.next_irq() {
            Some(at) => {
                // Zero would disarm the timerfd: an edge already due fires
                // after a nanosecond.
                let wait = at
                    .saturating_duration_since(Instant::now())
                    .max(Duration::from_nanos(1));
                // A timerfd that cannot be set loses this tick only.
                let _ = state.timer.reset(wait, None);
                true
            }
            None => {
                let _ = state.timer.clear();
                false
            }
        }
    }

    /// The timer fired: raise IRQ 0 for the edges that came, re-arm.
    fn fire(&self) {
        let mut state = lock(&self.state);
        let _ = state.timer.wait();
        let edges = state.pit.take_irqs(Instant::now());
        Self::arm(&mut state);
        drop(state);
        if edges > 0 {
            self.late.fetch_add(edges - 1, Ordering::Relaxed);
            self.chip.pulse(0);
        }
    }
}

/// The timer thread, stopped and joined on drop.
struct TimerThread {
    stop: EventFd,
    handle: Option<JoinHandle<()>>,
}

impl TimerThread {
    fn spawn(timer: Arc<PitTimer>) -> std::io::Result<TimerThread> {
        let stop = EventFd::new(EFD_NONBLOCK)?;
        let stop_fd = stop.as_raw_fd();
        let handle = std::thread::Builder::new()
            .name("ukvm-pit".into())
            .spawn(move || {
                let timer_fd = lock(&timer.state).timer.as_raw_fd();
                let mut fds = [timer_fd, stop_fd].map(|fd| libc::pollfd {
                    fd,
                    events: libc::POLLIN,
                    revents: 0,
                });
                loop {
                    // SAFETY: two valid pollfds that outlive the call.
                    let n = unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) };
                    if n < 0 || fds[1].revents != 0 {
                        // EINTR is not expected (no signals are sent to
                        // this thread); any error ends ticking rather
                        // than spinning.
                        if n < 0
                            && std::io::Error::last_os_error().kind()
                                == std::io::ErrorKind::Interrupted
                        {
                            continue;
                        }
                        break;
                    }
                    if fds[0].revents != 0 {
                        timer.fire();
                    }
                }
            })?;
        Ok(TimerThread {
            stop,
            handle: Some(handle),
        })
    }
}

impl Drop for TimerThread {
    fn drop(&mut self) {
        if let Some(handle) = self.handle.take() {
            if self.stop.write(1).is_ok() {
                let _ = handle.join();
            }
        }
    }
}

/// The PIT's ports (0x40-0x43 and 0x61) on the guest's bus.
pub(crate) struct PitPorts {
    timer: Arc<PitTimer>,
    thread: Option<TimerThread>,
    spawn_failed: bool,
}

impl PitPorts {
    pub(crate) fn new(timer: Arc<PitTimer>) -> Self {
        PitPorts {
            timer,
            thread: None,
            spawn_failed: false,
        }
    }
}

impl BusDevice for PitPorts {
    fn read(&mut self, base: u64, offset: u64, data: &mut [u8]) {
        let port = (base + offset) as u16;
        let mut state = lock(&self.timer.state);
        let now = Instant::now();
        for (i, b) in data.iter_mut().enumerate() {
            *b = state.pit.read(port.wrapping_add(i as u16), now);
        }
    }

    fn write(&mut self, base: u64, offset: u64, data: &[u8]) -> Option<ukvm_devices::Event> {
        let port = (base + offset) as u16;
        let mut state = lock(&self.timer.state);
        let now = Instant::now();
        for (i, b) in data.iter().enumerate() {
            state.pit.write(port.wrapping_add(i as u16), *b, now);
        }
        // Only counter 0 and control words change channel 0.
        if port != pit::COUNTER0_PORT && port != pit::CONTROL_PORT {
            return None;
        }
        let armed = PitTimer::arm(&mut state);
        drop(state);
        if armed && self.thread.is_none() && !self.spawn_failed {
            match TimerThread::spawn(self.timer.clone()) {
                Ok(thread) => self.thread = Some(thread),
                Err(e) => {
                    self.spawn_failed = true;
                    eprintln!("ukvm: warning: no PIT timer thread ({e}): IRQ 0 will not fire");
                }
            }
        }
        None
    }
}
