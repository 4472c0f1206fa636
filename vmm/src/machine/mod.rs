//! The machines ukvm builds, one per kind of guest. `Vm::new` and the vCPU
//! loop know nothing of formats: everything that differs between guests
//! (which devices, an in-kernel irqchip or not, buses, ACPI, how the kernel
//! is loaded) sits behind [`Machine`], and a new format is one new module
//! here.
//!
//! - [`pc::PcMachine`]: Multiboot guests. The legacy ports (COM1, the exit
//!   ports, i8042, RTC, PIIX4's PM1a registers) and a PCI bus with the
//!   `--disk`/`--net` devices.
//! - [`linux::LinuxMachine`]: PVH, vmlinux and bzImage. The PC machine plus
//!   ACPI tables, KVM's irqchip and PIT, PC GSI routing and COM1's
//!   interrupt (`crate::linux`).
//! - [`hvt::HvtMachine`]: Solo5 hvt. Only the hypercall device
//!   (`crate::hvt`): no PCI, no UART, no legacy ports.

pub(crate) mod hvt;
pub(crate) mod linux;
pub(crate) mod pc;

use crate::config::VmConfig;
use crate::error::Result;
use crate::interrupts::Delivery;
use crate::io_thread::IoThread;
use crate::kick::Kicker;
use kvm_ioctls::{VcpuFd, VmFd};
use std::sync::{Arc, Mutex};
use ukvm_boot::{Boot, BootParams, Format};
use ukvm_devices::irq::IrqTrigger;
use ukvm_devices::serial::Serial;
use ukvm_devices::Bus;
use vm_memory::{GuestAddress, GuestMemoryMmap};

/// What a machine put on the VM's buses.
pub(crate) struct Devices {
    pub pio: Bus,
    pub mmio: Bus,
    /// Serves device queues; present only when there are devices.
    pub io: Option<IoThread>,
    /// How the vCPU loop delivers interrupts and treats `hlt`.
    pub delivery: Box<dyn Delivery>,
    /// The devices' fds the VM's threads use (TAPs, disks, eventfds),
    /// for the seccomp filters.
    pub fds: ukvm_sandbox::Fds,
}

/// What devices are wired to.
pub(crate) struct Wiring<'a> {
    pub vm: &'a Arc<VmFd>,
    pub mem: &'a GuestMemoryMmap,
    pub serial: Arc<Mutex<Serial>>,
    /// Brings the vCPU out of the guest when a device interrupts.
    pub kicker: &'a Kicker,
    /// The I/O thread, started if [`Machine::serves_queues`].
    pub io: Option<IoThread>,
}

/// The wiring of one kind of guest, called by `Vm::new` in this order.
pub(crate) trait Machine {
    /// Creates what KVM needs before guest memory and the vCPU (the
    /// in-kernel irqchip). Returns whether the VM has KVM's irqchip.
    fn create_chips(&mut self, _vm: &VmFd) -> Result<bool> {
        Ok(false)
    }

    /// Whether the machine has devices whose queues an I/O thread serves.
    /// `Vm::new` then starts that thread as soon as the VM exists, so that
    /// it confines itself while the kernel loads, and hands it to
    /// [`Machine::attach`] in [`Wiring::io`].
    fn serves_queues(&self) -> bool {
        false
    }

    /// The fds of those devices (TAPs, disk images, queue eventfds), for
    /// the I/O thread's filter, which is built before they are attached.
    fn device_fds(&self) -> ukvm_sandbox::Fds {
        ukvm_sandbox::Fds::default()
    }

    /// Guest RAM `(start, size)` ranges for `mem_bytes` of requested
    /// memory: by default split around the MMIO hole.
    fn ram_ranges(&self, mem_bytes: u64) -> Vec<(GuestAddress, usize)> {
        ukvm_boot::layout::ram_ranges(mem_bytes)
    }

    /// Writes firmware tables the loader points the kernel at; returns the
    /// ACPI RSDP's address if there is one.
    fn write_tables(&self, _mem: &GuestMemoryMmap) -> Result<Option<u64>> {
        Ok(None)
    }

    /// Loads the kernel into guest memory.
    fn load(
        &self,
        mem: &GuestMemoryMmap,
        image: &[u8],
        params: &BootParams,
    ) -> ukvm_boot::Result<Boot> {
        ukvm_boot::load(mem, image, params)
    }

    /// Machine-specific vCPU state, after the boot protocol's.
    fn configure_vcpu(&self, _vcpu: &VcpuFd, _mem: &GuestMemoryMmap) -> Result<()> {
        Ok(())
    }

    /// COM1's interrupt line (ISA IRQ 4). `kicker` brings the vCPU out of
    /// the guest for an interrupt controller of ukvm's own.
    fn serial_irq(&mut self, _vm: &VmFd, _kicker: &Kicker) -> Result<IrqTrigger> {
        Ok(IrqTrigger::disconnected())
    }

    /// Puts the devices on the buses and hands them to the I/O thread.
    fn attach(self: Box<Self>, wiring: Wiring<'_>) -> Result<Devices>;
}

/// The machine for `format`. Opens device backends (disk images, TAPs)
/// before any KVM object exists, so that a bad `--disk` or `--net` is one
/// line of error and costs nothing.
pub(crate) fn for_format(
    format: Format,
    name: &str,
    image: &[u8],
    cfg: &VmConfig,
) -> Result<Box<dyn Machine>> {
    Ok(match format {
        Format::Solo5Hvt => Box::new(hvt::HvtMachine::new(name, image, cfg)?),
        f if crate::linux::is_linux_style(f) => Box::new(linux::LinuxMachine::new(cfg)?),
        _ => Box::new(pc::PcMachine::new(cfg)?),
    })
}
