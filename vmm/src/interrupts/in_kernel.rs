//! KVM's in-kernel irqchip (Linux-style guests, `--irqchip=kvm`): KVM
//! delivers interrupts and sleeps in `hlt` itself, so `KVM_EXIT_HLT` never
//! comes. A guest that ends with `cli; hlt` would sleep in KVM forever.
//!
//! A watchdog catches it: a POSIX timer kicks the vCPU every
//! [`WATCHDOG_PERIOD`] (one `EINTR`, a few microseconds), and each time the
//! vCPU is found halted (`KVM_GET_MP_STATE`) with RFLAGS.IF clear, the run
//! ends as halted. With IF clear only an NMI, INIT or SMI could wake it,
//! and ukvm's machines send none.

use super::posix_timer::PosixTimer;
use super::Delivery;
use crate::timings::Timings;
use kvm_bindings::KVM_MP_STATE_HALTED;
use kvm_ioctls::VcpuFd;
use std::time::Duration;

/// How often the watchdog looks: a `cli; hlt` ends the run within two.
pub const WATCHDOG_PERIOD: Duration = Duration::from_millis(100);

/// RFLAGS.IF.
const RFLAGS_IF: u64 = 1 << 9;

/// Delivery by KVM, with the halt watchdog.
#[derive(Default)]
pub(crate) struct InKernel {
    watchdog: Option<PosixTimer>,
}

impl Delivery for InKernel {
    fn start(&mut self) {
        // Without the timer a `cli; hlt` hangs as before; everything else
        // works.
        self.watchdog = PosixTimer::for_this_thread().ok();
        if let Some(timer) = &self.watchdog {
            timer.set(Some(WATCHDOG_PERIOD), Some(WATCHDOG_PERIOD));
        }
    }

    fn interrupted(&mut self, vcpu: &mut VcpuFd) -> bool {
        let halted = vcpu
            .get_mp_state()
            .is_ok_and(|s| s.mp_state == KVM_MP_STATE_HALTED);
        halted && vcpu.get_regs().is_ok_and(|r| r.rflags & RFLAGS_IF == 0)
    }

    fn finish(&mut self) {
        self.watchdog = None;
    }

    fn report(&self, t: &mut Timings) {
        t.interrupts.controller = "kvm";
    }
}
