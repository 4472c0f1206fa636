//! The PC machine Multiboot guests get: the legacy ports every such guest
//! touches (COM1, the exit ports, the i8042, the CMOS RTC, PIIX4's PM1a
//! registers, where S5 powers off) and PCI bus 0
//! with one virtio device per `--disk` and `--net`, in that order.

use super::{Devices, Machine};
use crate::config::VmConfig;
use crate::error::{Error, Result};
use crate::{net, pci};
use kvm_ioctls::VmFd;
use std::sync::{Arc, Mutex};
use ukvm_devices::acpi_pm::{self, AcpiPm};
use ukvm_devices::exit_ports::{self, DebugExit, UkvmPorts};
use ukvm_devices::i8042::{self, I8042};
use ukvm_devices::rtc::{self, Rtc};
use ukvm_devices::serial::{self, Serial};
use ukvm_devices::Bus;
use ukvm_virtio_blk::Disk;
use ukvm_virtio_net::{NetSpec, Tap};
use vm_memory::GuestMemoryMmap;

/// The device backends of a PC machine, opened before the VM exists.
pub(crate) struct PcMachine {
    disks: Vec<Disk>,
    nets: Vec<(NetSpec, Tap)>,
}

impl PcMachine {
    /// Opens every `--disk` image and `--net` TAP.
    pub(crate) fn new(cfg: &VmConfig) -> Result<Self> {
        if cfg.disks.len() + cfg.nets.len() > pci::MAX_DEVICES {
            return Err(Error::Config(format!(
                "too many devices: {} disks and {} NICs, but the PCI bus has {} free slots",
                cfg.disks.len(),
                cfg.nets.len(),
                pci::MAX_DEVICES
            )));
        }
        Ok(PcMachine {
            disks: pci::open_disks(&pci::parse_disks(&cfg.disks)?)?,
            nets: net::open_nets(net::parse_nets(&cfg.nets)?)?,
        })
    }

    /// Whether any PCI device will interrupt.
    pub(crate) fn has_devices(&self) -> bool {
        !self.disks.is_empty() || !self.nets.is_empty()
    }

    /// Legacy ports and the PCI bus; `pio` may already hold other devices.
    pub(crate) fn attach_to(
        self,
        mut pio: Bus,
        vm: &Arc<VmFd>,
        mem: &GuestMemoryMmap,
        serial: Arc<Mutex<Serial>>,
    ) -> Result<Devices> {
        legacy_devices(&mut pio, serial)?;
        let mut mmio = Bus::new();
        let mut pci_bus = pci::PciBuilder::new(vm, mem, &mut pio, &mut mmio);
        pci::add_disks(&mut pci_bus, self.disks)?;
        net::add_nets(&mut pci_bus, self.nets)?;
        let io = pci_bus.finish()?;
        Ok(Devices { pio, mmio, io })
    }
}

impl Machine for PcMachine {
    fn create_chips(&mut self, vm: &VmFd) -> Result<bool> {
        // PCI devices interrupt; VMs without any skip the irqchip and its
        // teardown cost.
        if self.has_devices() {
            pci::create_irqchip(vm)?;
        }
        Ok(self.has_devices())
    }

    fn attach(
        self: Box<Self>,
        vm: &Arc<VmFd>,
        mem: &GuestMemoryMmap,
        serial: Arc<Mutex<Serial>>,
    ) -> Result<Devices> {
        self.attach_to(Bus::new(), vm, mem, serial)
    }
}

/// Puts the legacy devices every PC guest gets on the port bus.
fn legacy_devices(pio: &mut Bus, serial: Arc<Mutex<Serial>>) -> Result<()> {
    let i8042 = Arc::new(Mutex::new(I8042::default()));
    let devices: [(u64, u64, ukvm_devices::bus::SharedDevice); 7] = [
        (serial::COM1_BASE, serial::COM1_LEN, serial),
        (
            exit_ports::DEBUG_EXIT_PORT,
            exit_ports::DEBUG_EXIT_LEN,
            Arc::new(Mutex::new(DebugExit)),
        ),
        (
            exit_ports::UKVM_PORT_BASE,
            exit_ports::UKVM_PORT_LEN,
            Arc::new(Mutex::new(UkvmPorts)),
        ),
        (i8042::DATA_PORT, 1, i8042.clone()),
        (i8042::COMMAND_PORT, 1, i8042),
        (
            rtc::INDEX_PORT,
            rtc::PORTS_LEN,
            Arc::new(Mutex::new(Rtc::default())),
        ),
        // S5 through PIIX4's PM1a_CNT powers off, for Linux's ACPI and for
        // QEMU-targeted guests (Unikraft) alike.
        (
            acpi_pm::PM1A_EVT_PORT,
            acpi_pm::PORTS_LEN,
            Arc::new(Mutex::new(AcpiPm::default())),
        ),
    ];
    for (base, len, device) in devices {
        pio.insert(base, len, device)
            .map_err(|e| Error::Device(format!("port bus: {e}")))?;
    }
    Ok(())
}
