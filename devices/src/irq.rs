//! Interrupt lines as devices see them: an eventfd the monitor registers
//! with KVM as an irqfd, a call into the monitor's own interrupt
//! controller, or nothing when the VM has no interrupt controller.

use std::io;
use std::sync::Arc;
use vmm_sys_util::eventfd::EventFd;

/// What an edge-triggered line is wired to.
#[derive(Default)]
enum Line {
    #[default]
    None,
    EventFd(EventFd),
    Call(Arc<dyn Fn() + Send + Sync>),
}

/// An edge-triggered interrupt line.
#[derive(Default)]
pub struct IrqTrigger(Line);

impl std::fmt::Debug for IrqTrigger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self.0 {
            Line::None => "IrqTrigger(disconnected)",
            Line::EventFd(_) => "IrqTrigger(eventfd)",
            Line::Call(_) => "IrqTrigger(call)",
        })
    }
}

impl IrqTrigger {
    /// A line that goes nowhere (no interrupt controller).
    pub fn disconnected() -> Self {
        IrqTrigger(Line::None)
    }

    /// A line that signals `fd` (registered as an irqfd by the monitor).
    pub fn eventfd(fd: EventFd) -> Self {
        IrqTrigger(Line::EventFd(fd))
    }

    /// A line that calls `edge` for each interrupt (the monitor's own
    /// interrupt controller).
    pub fn call(edge: Arc<dyn Fn() + Send + Sync>) -> Self {
        IrqTrigger(Line::Call(edge))
    }

    /// The eventfd the line signals, if it is one (the sandbox lets the
    /// threads that raise it write it).
    pub fn fd(&self) -> Option<std::os::fd::RawFd> {
        match &self.0 {
            Line::EventFd(fd) => Some(std::os::fd::AsRawFd::as_raw_fd(fd)),
            Line::Call(_) | Line::None => None,
        }
    }

    /// Raises the interrupt.
    pub fn trigger(&self) -> io::Result<()> {
        match &self.0 {
            Line::EventFd(fd) => fd.write(1),
            Line::Call(edge) => {
                edge();
                Ok(())
            }
            Line::None => Ok(()),
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
