//! How the vCPU gets its interrupts, chosen by the machine:
//!
//! - [`None`]: no interrupt controller (hvt guests). `hlt` ends the run.
//! - [`userspace::Userspace`]: ukvm's own 8259A pair and 8254 (Multiboot
//!   guests by default). The vCPU loop injects with `KVM_INTERRUPT` when
//!   the guest can take an interrupt and asks KVM for an interrupt window
//!   otherwise; `hlt` sleeps until a source fires, or ends the run when
//!   nothing could ever wake the guest.
//! - [`InKernel`]: KVM's irqchip and PIT (Linux-style guests, and
//!   `--irqchip=kvm`). KVM delivers and handles `hlt` itself; a watchdog
//!   ends the run when the guest halts with interrupts off.
//!
//! Why userspace by default: creating KVM's irqchip costs 4.5-12 ms of VM
//! creation and 7-35 ms of teardown here (shared/README.md), most of a
//! unikernel's boot; the userspace pair costs nothing until used.

mod in_kernel;
pub(crate) mod pit_timer;
mod posix_timer;
pub(crate) mod userspace;

use crate::stop::StopHandle;
use crate::timings::Timings;
use kvm_ioctls::VcpuFd;

/// What the vCPU loop does about interrupts.
pub(crate) trait Delivery: Send {
    /// Called before every `KVM_RUN`: inject what is pending, or ask for
    /// the window. Must be cheap: it runs on every exit.
    fn before_run(&mut self, _vcpu: &mut VcpuFd) {}

    /// The guest executed `hlt` (`KVM_EXIT_HLT`). Returns `true` once the
    /// guest should run again (an interrupt is pending, or a stop was
    /// requested), `false` if nothing can ever wake it: the run ends as
    /// halted.
    fn halted(&mut self, _vcpu: &mut VcpuFd, _stop: &StopHandle) -> bool {
        false
    }

    /// The run starts, on the vCPU thread.
    fn start(&mut self) {}

    /// `KVM_RUN` returned `EINTR`: a kick, or a timer's signal. Returns
    /// `true` if the guest turns out to be halted for good.
    fn interrupted(&mut self, _vcpu: &mut VcpuFd) -> bool {
        false
    }

    /// The run is over: stop timers.
    fn finish(&mut self) {}

    /// Adds what was delivered and contained to the timings.
    fn report(&self, _t: &mut Timings) {}
}

/// No interrupt controller: nothing to deliver, `hlt` ends the run.
pub(crate) struct None;

impl Delivery for None {}

pub(crate) use in_kernel::InKernel;

/// Which interrupt controller a Multiboot guest gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IrqChipKind {
    /// ukvm's 8259A pair and 8254 (the default).
    #[default]
    Userspace,
    /// KVM's in-kernel PIC, IOAPIC and PIT (for comparison, or as a
    /// fallback).
    Kvm,
}

impl std::str::FromStr for IrqChipKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "userspace" => Ok(IrqChipKind::Userspace),
            "kvm" => Ok(IrqChipKind::Kvm),
            other => Err(format!("--irqchip {other}: expected 'userspace' or 'kvm'")),
        }
    }
}
