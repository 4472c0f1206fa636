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

use super::posix_timer::{gettid, PosixTimer};
use super::userspace::IrqChip;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use ukvm_devices::bus::lock;
use ukvm_devices::pit::{self, Pit, PitStats};
use ukvm_devices::BusDevice;

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
            timer.set(
                next.map(|at| at.saturating_duration_since(Instant::now())),
                None,
            );
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
