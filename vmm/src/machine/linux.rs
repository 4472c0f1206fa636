//! The machine Linux-style kernels (PVH, vmlinux, bzImage) get: the PC
//! machine plus what `crate::linux` describes (ACPI tables, KVM's irqchip
//! and PIT with PC GSI routing, COM1's interrupt).

use super::pc::PcMachine;
use super::{Devices, Machine, Wiring};
use crate::config::VmConfig;
use crate::error::Result;
use crate::kick::Kicker;
use crate::{linux, pci};
use kvm_ioctls::VmFd;
use ukvm_devices::irq::IrqTrigger;
use ukvm_devices::Bus;
use vm_memory::GuestMemoryMmap;

/// A PC machine with Linux's additions, and COM1's irqfd once made.
pub(crate) struct LinuxMachine(PcMachine, Option<std::os::fd::RawFd>);

impl LinuxMachine {
    /// Opens the PC machine's device backends.
    pub(crate) fn new(cfg: &VmConfig) -> Result<Self> {
        // Linux always gets KVM's irqchip, whatever --irqchip says.
        PcMachine::new(cfg).map(|pc| LinuxMachine(pc.with_kvm_irqchip(), None))
    }
}

impl Machine for LinuxMachine {
    fn serves_queues(&self) -> bool {
        self.0.serves_queues()
    }

    fn device_fds(&self) -> ukvm_sandbox::Fds {
        self.0.device_fds()
    }

    fn create_chips(&mut self, vm: &VmFd) -> Result<bool> {
        // Linux needs its APICs even without devices.
        pci::create_irqchip(vm)?;
        linux::set_routing(vm)?;
        Ok(true)
    }

    fn write_tables(&self, mem: &GuestMemoryMmap) -> Result<Option<u64>> {
        linux::write_acpi(mem).map(Some)
    }

    fn serial_irq(&mut self, vm: &VmFd, _kicker: &Kicker) -> Result<IrqTrigger> {
        // Linux drives COM1 by interrupt once its 8250 driver is up.
        let irq = linux::serial_irq(vm)?;
        self.1 = irq.fd();
        Ok(irq)
    }

    fn attach(self: Box<Self>, wiring: Wiring<'_>) -> Result<Devices> {
        let mut devices = self.0.attach_to(Bus::new(), wiring, true)?;
        // The vCPU thread (guest output) and the console thread (input)
        // raise COM1's interrupt.
        devices.fds.events.extend(self.1);
        Ok(devices)
    }
}
