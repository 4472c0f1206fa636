//! Delivery through ukvm's own 8259A pair (`ukvm_devices::pic`): the shared
//! controller that device threads (and the vCPU thread, for the PIT's IRQ 0)
//! raise lines on, its ports on the guest's bus, and the vCPU side that
//! injects and sleeps.
//!
//! The vCPU loop checks for a pending interrupt on every exit, so the
//! PIC's output is mirrored in an atomic: no lock on the exit path unless
//! something is pending. A line raised from another thread that makes the
//! output go up kicks the vCPU (`crate::kick`), which is then either in
//! `KVM_RUN` (it exits), between two runs (`immediate_exit`), or asleep in
//! `hlt` (the wake eventfd).

use super::pit_timer::PitTimer;
use super::Delivery;
use crate::kick::Kicker;
use crate::stop::StopHandle;
use crate::timings::{InterruptStats, Timings};
use kvm_bindings::kvm_interrupt;
use kvm_ioctls::VcpuFd;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use ukvm_devices::bus::lock;
use ukvm_devices::pic::{Pic, PicStats};
use ukvm_devices::BusDevice;

vmm_sys_util::ioctl_iow_nr!(KVM_INTERRUPT, kvm_bindings::KVMIO, 0x86, kvm_interrupt);

/// The PIC pair, shared by the bus, device threads and the vCPU loop.
pub(crate) struct IrqChip {
    pic: Mutex<Pic>,
    /// The PIC's INTR output, as of its last change.
    pending: AtomicBool,
    /// A level line is held off as a storm, as of the PIC's last change.
    held: AtomicBool,
    kicker: Kicker,
    delivered: AtomicU64,
    /// When the output last went up, in ns after `origin` (0: not up):
    /// the start of the interrupt latency measured at the acknowledge.
    raised_at: AtomicU64,
    origin: Instant,
}

impl IrqChip {
    /// A PIC pair as firmware leaves it: `level` lines (the PCI lines it
    /// assigned) level-triggered in the ELCR, every line but the cascade
    /// masked.
    pub(crate) fn new(kicker: Kicker, level: &[u8]) -> Arc<IrqChip> {
        let mut pic = Pic::new();
        pic.set_level_triggered(level);
        pic.mask_as_firmware_leaves_it();
        Arc::new(IrqChip {
            pic: Mutex::new(pic),
            pending: AtomicBool::new(false),
            held: AtomicBool::new(false),
            kicker,
            delivered: AtomicU64::new(0),
            raised_at: AtomicU64::new(0),
            origin: Instant::now(),
        })
    }

    /// Runs `f` on the PIC and publishes its output. From threads other
    /// than the vCPU's (`kick`), a request that appears kicks the vCPU.
    fn with_pic<R>(&self, kick: bool, f: impl FnOnce(&mut Pic) -> R) -> R {
        let mut pic = lock(&self.pic);
        let result = f(&mut pic);
        let up = pic.output();
        let was = self.pending.swap(up, Ordering::SeqCst);
        self.held.store(pic.has_held(), Ordering::Relaxed);
        drop(pic);
        if up && !was {
            self.raised_at.store(self.now_ns(), Ordering::Relaxed);
        }
        if kick && up && !was {
            self.kicker.kick();
        }
        result
    }

    /// Drives input `irq` from a device thread.
    pub(crate) fn set_level(&self, irq: u8, high: bool) {
        self.with_pic(true, |pic| pic.set_level(irq, high));
    }

    /// One edge on `irq` (COM1), from any thread.
    pub(crate) fn pulse(&self, irq: u8) {
        self.with_pic(true, |pic| pic.pulse(irq));
    }

    /// One edge on `irq`, from the vCPU thread (nothing to kick).
    pub(crate) fn pulse_from_vcpu(&self, irq: u8) {
        self.with_pic(false, |pic| pic.pulse(irq));
    }

    fn now_ns(&self) -> u64 {
        (self.origin.elapsed().as_nanos() as u64).max(1)
    }

    /// Nanoseconds since the output went up, once per raise.
    fn take_latency(&self) -> Option<u64> {
        let at = self.raised_at.swap(0, Ordering::Relaxed);
        (at != 0).then(|| self.now_ns().saturating_sub(at))
    }

    fn pending(&self) -> bool {
        self.pending.load(Ordering::SeqCst)
    }

    fn acknowledge(&self) -> u8 {
        self.delivered.fetch_add(1, Ordering::Relaxed);
        self.with_pic(false, Pic::acknowledge)
    }

    /// Whether a level line is held off as a storm.
    fn held(&self) -> bool {
        self.held.load(Ordering::Relaxed)
    }

    /// Lets held lines request once more (see [`StormThrottle`]).
    fn release_held(&self) {
        self.with_pic(false, Pic::release_held);
    }

    fn can_interrupt(&self, irq: u8) -> bool {
        lock(&self.pic).can_interrupt(irq)
    }

    fn stats(&self) -> PicStats {
        lock(&self.pic).stats()
    }
}

/// The PIC's ports (0x20-0x21, 0xA0-0xA1, 0x4D0-0x4D1) on the guest's bus.
pub(crate) struct PicPorts(pub Arc<IrqChip>);

impl BusDevice for PicPorts {
    fn read(&mut self, base: u64, offset: u64, data: &mut [u8]) {
        let port = (base + offset) as u16;
        self.0.with_pic(false, |pic| {
            for (i, b) in data.iter_mut().enumerate() {
                *b = pic.read(port.wrapping_add(i as u16));
            }
        });
    }

    fn write(&mut self, base: u64, offset: u64, data: &[u8]) -> Option<ukvm_devices::Event> {
        let port = (base + offset) as u16;
        self.0.with_pic(false, |pic| {
            for (i, b) in data.iter().enumerate() {
                pic.write(port.wrapping_add(i as u16), *b);
            }
        });
        None
    }
}

/// How often a level line held off as a storm gets through: the rate a
/// storm is limited to once detected (Linux polls a line it disabled as
/// "nobody cared" every 100 ms too).
pub(crate) const STORM_RELEASE_INTERVAL: Duration = Duration::from_millis(100);

/// Rate-limits a held level-line storm ([`Pic::release_held`]): a release
/// is due [`STORM_RELEASE_INTERVAL`] after a line was first seen held.
#[derive(Debug, Default)]
pub(crate) struct StormThrottle {
    due: Option<Instant>,
}

impl StormThrottle {
    /// With a line held (`held`) at `now`: whether to release it now, and
    /// otherwise when it is due (`None` without a held line).
    pub(crate) fn poll(&mut self, held: bool, now: Instant) -> (bool, Option<Instant>) {
        if !held {
            self.due = None;
            return (false, None);
        }
        let due = *self.due.get_or_insert(now + STORM_RELEASE_INTERVAL);
        if now >= due {
            self.due = None;
            return (true, None);
        }
        (false, Some(due))
    }
}

/// The vCPU side: injection, `hlt`, and the figures for `--timings`.
pub(crate) struct Userspace {
    chip: Arc<IrqChip>,
    throttle: StormThrottle,
    timer: Arc<PitTimer>,
    /// Lines devices can raise at any time (PCI INTx).
    device_irqs: Vec<u8>,
    kicker: Kicker,
    stats: InterruptStats,
}

impl Userspace {
    pub(crate) fn new(
        chip: Arc<IrqChip>,
        timer: Arc<PitTimer>,
        device_irqs: Vec<u8>,
        kicker: Kicker,
    ) -> Self {
        Userspace {
            chip,
            throttle: StormThrottle::default(),
            timer,
            device_irqs,
            kicker,
            stats: InterruptStats::default(),
        }
    }

    /// Whether anything could still interrupt the halted guest: the PIT
    /// will fire (`tick`) on an unmasked IRQ 0, or a device line is
    /// unmasked.
    fn can_wake(&self, tick: Option<Instant>) -> bool {
        (tick.is_some() && self.chip.can_interrupt(0))
            || self
                .device_irqs
                .iter()
                .any(|&irq| self.chip.can_interrupt(irq))
    }

    /// Lets a held storm through when due; returns when it is due next.
    fn throttle_storm(&mut self) -> Option<Instant> {
        if !self.chip.held() {
            self.throttle.due = None;
            return None;
        }
        let (release, due) = self.throttle.poll(true, Instant::now());
        if release {
            self.chip.release_held();
        }
        due
    }

    /// Sleeps until a kick (a device interrupt, a stop) or `until` (the
    /// PIT's next edge).
    fn sleep(&mut self, until: Option<Instant>) {
        let mut fd = libc::pollfd {
            fd: self.kicker.wake_fd().as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let timeout = until.map(|at| {
            let wait = at.saturating_duration_since(Instant::now());
            libc::timespec {
                tv_sec: wait.as_secs() as libc::time_t,
                tv_nsec: libc::c_long::from(wait.subsec_nanos() as i32),
            }
        });
        let timeout_ptr = timeout
            .as_ref()
            .map_or(std::ptr::null(), |t| t as *const libc::timespec);
        self.stats.sleeps += 1;
        // SAFETY: one valid pollfd and an optional valid timespec; EINTR
        // (the PIT timer's signal) just returns.
        unsafe { libc::ppoll(&mut fd, 1, timeout_ptr, std::ptr::null()) };
    }
}

impl Delivery for Userspace {
    fn before_run(&mut self, vcpu: &mut VcpuFd) {
        self.throttle_storm();
        let run = vcpu.get_kvm_run();
        if !self.chip.pending() {
            run.request_interrupt_window = 0;
            return;
        }
        if run.ready_for_interrupt_injection == 0 || run.if_flag == 0 {
            // KVM exits as soon as the guest can take it.
            run.request_interrupt_window = 1;
            return;
        }
        if let Some(ns) = self.chip.take_latency() {
            self.stats.latency_count += 1;
            self.stats.latency_sum_us += ns / 1000;
            self.stats.latency_max_us = self.stats.latency_max_us.max(ns / 1000);
        }
        let irq = kvm_interrupt {
            irq: u32::from(self.chip.acknowledge()),
        };
        // SAFETY: KVM_INTERRUPT reads one kvm_interrupt from a vCPU fd.
        let rc = unsafe { vmm_sys_util::ioctl::ioctl_with_ref(vcpu, KVM_INTERRUPT(), &irq) };
        if rc != 0 {
            self.stats.inject_failures += 1;
        }
        vcpu.get_kvm_run().request_interrupt_window = u8::from(self.chip.pending());
    }

    fn halted(&mut self, vcpu: &mut VcpuFd, stop: &StopHandle) -> bool {
        if vcpu.get_kvm_run().if_flag == 0 {
            return false;
        }
        let kicker = self.kicker.clone();
        let _asleep = kicker.sleeping();
        loop {
            // Drain first: a kick after this wakes the poll below.
            let _ = kicker.wake_fd().read();
            self.timer.poll();
            let release = self.throttle_storm();
            if self.chip.pending() || stop.is_requested() {
                return true;
            }
            let next_tick = self.timer.next_irq();
            if !self.can_wake(next_tick) {
                return false;
            }
            let until = match (next_tick, release) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            self.sleep(until);
        }
    }

    fn interrupted(&mut self, _vcpu: &mut VcpuFd) -> bool {
        self.timer.poll();
        false
    }

    fn finish(&mut self) {
        self.timer.disarm();
    }

    fn report(&self, t: &mut Timings) {
        let pic = self.chip.stats();
        let pit = self.timer.stats();
        t.interrupts = InterruptStats {
            controller: "userspace",
            delivered: self.chip.delivered.load(Ordering::Relaxed),
            coalesced: pic.coalesced + self.timer.late_ticks(),
            level_storms: pic.level_storms,
            spurious: pic.spurious,
            pit_zero_counts: pit.zero_counts,
            pit_reserved_modes: pit.reserved_modes,
            pit_clamped_periods: pit.clamped_periods,
            ..self.stats
        };
    }
}

impl crate::pci::IrqSink for IrqChip {
    fn set_line(&self, irq: u8, high: bool) -> std::io::Result<()> {
        self.set_level(irq, high);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_storm_is_released_once_per_interval() {
        let mut t = StormThrottle::default();
        let start = Instant::now();
        assert_eq!(t.poll(false, start), (false, None));
        let due = start + STORM_RELEASE_INTERVAL;
        assert_eq!(t.poll(true, start), (false, Some(due)));
        // Exits before the interval is over release nothing.
        let soon = start + STORM_RELEASE_INTERVAL / 2;
        assert_eq!(t.poll(true, soon), (false, Some(due)));
        assert_eq!(t.poll(true, due), (true, None));
        // Held again at once: the next release is one interval later.
        assert_eq!(
            t.poll(true, due),
            (false, Some(due + STORM_RELEASE_INTERVAL))
        );
        // The line went low: nothing due any more, and a new storm
        // starts a fresh interval.
        assert_eq!(t.poll(false, due), (false, None));
        let later = due + STORM_RELEASE_INTERVAL * 5;
        assert_eq!(
            t.poll(true, later),
            (false, Some(later + STORM_RELEASE_INTERVAL))
        );
    }

    /// A storm the guest acknowledges as fast as it can (polled on every
    /// exit): once held, about 10 interrupts a second get through.
    #[test]
    fn a_held_storm_is_limited_to_ten_a_second() {
        let mut pic = Pic::new();
        for (port, vals) in [
            (ukvm_devices::pic::MASTER_PORT, [0x11, 0x20, 0x04, 0x01]),
            (ukvm_devices::pic::SLAVE_PORT, [0x11, 0x28, 0x02, 0x01]),
        ] {
            for (i, v) in vals.into_iter().enumerate() {
                pic.write(port + u16::from(i > 0), v);
            }
        }
        pic.write(0x21, 0);
        pic.set_level_triggered(&[10]);
        pic.set_level(10, true);
        let mut t = StormThrottle::default();
        let start = Instant::now();
        let (mut held_at, mut after) = (None, 0u32);
        // One exit every 10 us, for 1.5 simulated seconds.
        for us in (0..1_500_000u64).step_by(10) {
            let now = start + Duration::from_micros(us);
            if t.poll(pic.has_held(), now).0 {
                pic.release_held();
            }
            if pic.output() {
                pic.acknowledge();
                pic.write(0xa0, 0x20);
                pic.write(0x20, 0x20);
                if held_at.is_some_and(|at| now < at + Duration::from_secs(1)) {
                    after += 1;
                }
            }
            if pic.has_held() && held_at.is_none() {
                held_at = Some(now);
            }
        }
        assert!(held_at.is_some(), "the storm was never held");
        assert!((9..=10).contains(&after), "{after} in the second after");
        assert_eq!(pic.stats().level_storms, 1);
    }
}
