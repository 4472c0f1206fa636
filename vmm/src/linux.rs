//! What Linux-style kernels (PVH, vmlinux, bzImage) get on top of the
//! machine every guest has:
//!
//! - **ACPI tables** (`ukvm_boot::acpi`): distribution kernels read the
//!   APIC, the IOAPIC and PCI interrupt routing only from ACPI (Debian's
//!   has no MP-table parser). Their address goes to the zero page or
//!   `hvm_start_info`.
//! - **The in-kernel irqchip and PIT**, even without PCI devices: Linux
//!   programs the local APIC and IOAPIC and runs its timer from them;
//!   without KVM's, every APIC access is an unclaimed MMIO exit and the
//!   boot stalls.
//! - **GSI routing as on a PC**: the MADT says ISA IRQ 0 (the PIT) is
//!   IOAPIC pin 2, so KVM's GSI 0 goes to PIC pin 0 and IOAPIC pin 2, and
//!   GSI 2 (the cascade) nowhere; every other GSI keeps KVM's default.
//! - **COM1's interrupt** on ISA IRQ 4 (an irqfd): Linux's 8250 driver
//!   sends tty output (everything user space writes to the console) one
//!   FIFO load per THRE interrupt; without the interrupt that output
//!   stalls after the first character.
//!
//! Multiboot and Solo5 guests get none of this: their boot stays as short
//! as it was.

use crate::error::{Error, Result};
use crate::pci;
use kvm_bindings::{
    kvm_irq_routing_entry, KvmIrqRouting, KVM_IRQCHIP_IOAPIC, KVM_IRQCHIP_PIC_MASTER,
    KVM_IRQCHIP_PIC_SLAVE, KVM_IRQ_ROUTING_IRQCHIP,
};
use kvm_ioctls::VmFd;
use ukvm_boot::acpi::{self, Machine};
use ukvm_boot::Format;
use ukvm_devices::acpi_pm;
use ukvm_devices::irq::IrqTrigger;
use vm_memory::GuestMemoryMmap;
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

/// Pins of KVM's IOAPIC.
const IOAPIC_PINS: u32 = 24;
/// COM1's ISA interrupt line.
const COM1_IRQ: u32 = 4;
/// The SCI's line (as on QEMU's PC; shared with PCI slot 3's INTA).
const SCI_IRQ: u8 = 9;

/// Does a kernel of this format get ACPI, the irqchip and the PM device?
pub fn is_linux_style(format: Format) -> bool {
    matches!(format, Format::Pvh | Format::LinuxElf | Format::BzImage)
}

/// The machine the ACPI tables describe.
pub fn machine() -> Machine {
    Machine {
        pci_irqs: pci::slot_irqs(),
        sci_irq: SCI_IRQ,
        pm1a_evt: acpi_pm::PM1A_EVT_PORT as u16,
        pm1a_cnt: acpi_pm::PM1A_CNT_PORT as u16,
        slp_typ_s5: acpi_pm::SLP_TYP_S5 as u8,
    }
}

/// Writes the ACPI tables and returns the RSDP's address.
pub fn write_acpi(mem: &GuestMemoryMmap) -> Result<u64> {
    acpi::write(mem, &machine()).map_err(|e| Error::Device(format!("ACPI tables: {e}")))
}

fn route(gsi: u32, irqchip: u32, pin: u32) -> kvm_irq_routing_entry {
    let mut e = kvm_irq_routing_entry {
        gsi,
        type_: KVM_IRQ_ROUTING_IRQCHIP,
        ..Default::default()
    };
    e.u.irqchip.irqchip = irqchip;
    e.u.irqchip.pin = pin;
    e
}

/// KVM's default GSI routing with the PIT's GSI 0 moved from IOAPIC pin 0
/// to pin 2, as the MADT's interrupt source override says.
pub fn routes() -> Vec<kvm_irq_routing_entry> {
    let mut r = Vec::new();
    for gsi in (0..16).filter(|&g| g != 2) {
        let (chip, pin) = if gsi < 8 {
            (KVM_IRQCHIP_PIC_MASTER, gsi)
        } else {
            (KVM_IRQCHIP_PIC_SLAVE, gsi - 8)
        };
        r.push(route(gsi, chip, pin));
    }
    r.push(route(
        u32::from(acpi::TIMER_IRQ),
        KVM_IRQCHIP_IOAPIC,
        acpi::TIMER_GSI,
    ));
    for gsi in (1..IOAPIC_PINS).filter(|&g| g != acpi::TIMER_GSI) {
        r.push(route(gsi, KVM_IRQCHIP_IOAPIC, gsi));
    }
    r
}

/// Installs [`routes`]. Needs the irqchip.
pub fn set_routing(vm: &VmFd) -> Result<()> {
    let table = routes();
    let mut routing = KvmIrqRouting::new(table.len())
        .map_err(|e| Error::Device(format!("GSI routing table: {e:?}")))?;
    routing.as_mut_slice().copy_from_slice(&table);
    vm.set_gsi_routing(&routing).map_err(|source| Error::Kvm {
        op: "KVM_SET_GSI_ROUTING",
        source,
    })
}

/// COM1's interrupt: an eventfd registered as an irqfd on GSI 4 (edge:
/// each write is one pulse). Needs the irqchip.
pub fn serial_irq(vm: &VmFd) -> Result<IrqTrigger> {
    let fd = EventFd::new(EFD_NONBLOCK).map_err(|e| Error::Device(format!("COM1 irq: {e}")))?;
    vm.register_irqfd(&fd, COM1_IRQ)
        .map_err(|source| Error::Kvm {
            op: "KVM_IRQFD",
            source,
        })?;
    Ok(IrqTrigger::eventfd(fd))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pit_goes_to_ioapic_pin_2_and_nothing_else_moves() {
        let r = routes();
        // SAFETY: every entry is of type KVM_IRQ_ROUTING_IRQCHIP, whose
        // union member is `irqchip`.
        let to = |gsi: u32| -> Vec<(u32, u32)> {
            r.iter()
                .filter(|e| e.gsi == gsi)
                .map(|e| unsafe { (e.u.irqchip.irqchip, e.u.irqchip.pin) })
                .collect()
        };
        assert_eq!(
            to(0),
            [(KVM_IRQCHIP_PIC_MASTER, 0), (KVM_IRQCHIP_IOAPIC, 2)]
        );
        assert!(to(2).is_empty());
        for &(_, irq) in &pci::slot_irqs() {
            let gsi = u32::from(irq);
            let pic = if gsi < 8 {
                (KVM_IRQCHIP_PIC_MASTER, gsi)
            } else {
                (KVM_IRQCHIP_PIC_SLAVE, gsi - 8)
            };
            assert_eq!(to(gsi), [pic, (KVM_IRQCHIP_IOAPIC, gsi)]);
        }
        assert_eq!(to(23), [(KVM_IRQCHIP_IOAPIC, 23)]);
        assert_eq!(r.len(), 15 + 23);
    }

    #[test]
    fn prt_matches_the_lines_devices_get() {
        let m = machine();
        assert_eq!(m.pci_irqs.len(), pci::MAX_DEVICES);
        // SeaBIOS's lines first (Rumprun accepts only 9, 10, 11, 14, 15).
        assert_eq!(m.pci_irqs[..4], [(1, 10), (2, 11), (3, 9), (4, 5)]);
        assert_eq!(m.pci_irqs[4], (5, 10));
        for (n, &(slot, irq)) in m.pci_irqs.iter().enumerate() {
            assert_eq!((slot as usize, irq), (n + 1, pci::device_irq(n)));
        }
    }
}
