//! Interrupt lines as devices see them: an eventfd the monitor registers
//! with KVM as an irqfd, or nothing when the VM has no interrupt controller.

use std::io;
use vmm_sys_util::eventfd::EventFd;

/// An edge-triggered interrupt line.
#[derive(Debug, Default)]
pub struct IrqTrigger(Option<EventFd>);

impl IrqTrigger {
    /// A line that goes nowhere (no in-kernel irqchip).
    pub fn disconnected() -> Self {
        IrqTrigger(None)
    }

    /// A line that signals `fd` (registered as an irqfd by the monitor).
    pub fn eventfd(fd: EventFd) -> Self {
        IrqTrigger(Some(fd))
    }

    /// Raises the interrupt.
    pub fn trigger(&self) -> io::Result<()> {
        match &self.0 {
            Some(fd) => fd.write(1),
            None => Ok(()),
        }
    }
}

impl vm_superio::Trigger for IrqTrigger {
    type E = io::Error;

    fn trigger(&self) -> io::Result<()> {
        IrqTrigger::trigger(self)
    }
}

/// A level-triggered interrupt line (PCI INTx): the device holds it high
/// while it has something to report. The monitor implements it with
/// `KVM_IRQ_LINE`; tests with a recorder.
pub trait LevelIrq: Send + Sync {
    /// Drives the line high (`true`) or low.
    fn set_level(&self, high: bool) -> io::Result<()>;
}
