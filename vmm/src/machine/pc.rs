//! The PC machine Multiboot guests get: the legacy ports every such guest
//! touches (COM1, the exit ports, the i8042, the CMOS RTC, PIIX4's PM1a
//! registers, where S5 powers off), an interrupt controller and timer
//! (ukvm's 8259A pair and 8254, or with `--irqchip=kvm` KVM's), and PCI
//! bus 0 with one virtio device per `--disk` and `--net`, in that order.

use super::{Devices, Machine, Wiring};
use crate::config::VmConfig;
use crate::error::{Error, Result};
use crate::interrupts::pit_timer::{PitPorts, PitTimer};
use crate::interrupts::userspace::{IrqChip, PicPorts, Userspace};
use crate::interrupts::{self, Delivery, IrqChipKind};
use crate::kick::Kicker;
use crate::pci::{IrqSink, KvmLines};
use crate::{net, pci};
use kvm_ioctls::VmFd;
use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex};
use ukvm_devices::acpi_pm::{self, AcpiPm};
use ukvm_devices::exit_ports::{self, DebugExit, UkvmPorts};
use ukvm_devices::i8042::{self, I8042};
use ukvm_devices::irq::IrqTrigger;
use ukvm_devices::rtc::{self, Rtc};
use ukvm_devices::serial::{self, Serial};
use ukvm_devices::virtio::VirtioDevice;
use ukvm_devices::Bus;
use ukvm_devices::{pic, pit};
use ukvm_sandbox::allowlist::Irqchip;
use ukvm_sandbox::Fds;
use ukvm_virtio_blk::Block;
use ukvm_virtio_net::{Net, Tap};

/// The devices of a PC machine, made (backends opened) before the VM
/// exists.
pub(crate) struct PcMachine {
    disks: Vec<Block>,
    nets: Vec<Net<Tap>>,
    /// Their TAPs, disk images and queue eventfds.
    fds: Fds,
    irqchip: IrqChipKind,
    /// ukvm's PIC, made when COM1's line is wired to it.
    chip: Option<Arc<IrqChip>>,
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
        let disks = pci::open_disks(&pci::parse_disks(&cfg.disks)?)?;
        let taps = net::open_nets(net::parse_nets(&cfg.nets)?)?;
        let mut fds = Fds {
            disks: disks.iter().filter_map(|d| d.backend.fd()).collect(),
            taps: taps.iter().map(|(_, t)| t.as_raw_fd()).collect(),
            ..Default::default()
        };
        let disks = pci::make_blocks(disks)?;
        let nets = net::make_nics(taps)?;
        let devices = disks.iter().map(|d| d as &dyn VirtioDevice);
        fds.events = pci::queue_event_fds(devices.chain(nets.iter().map(|n| n as _)));
        // The filters allow the calls of this machine's interrupt
        // controller only (ukvm_sandbox::allowlist::Only).
        fds.irqchip = match cfg.irqchip {
            IrqChipKind::Kvm => Irqchip::Kvm,
            IrqChipKind::Userspace => Irqchip::Userspace,
        };
        Ok(PcMachine {
            disks,
            nets,
            fds,
            irqchip: cfg.irqchip,
            chip: None,
        })
    }

    /// The same machine with KVM's in-kernel irqchip, whatever
    /// `--irqchip` said (Linux-style guests need its APICs).
    pub(crate) fn with_kvm_irqchip(mut self) -> Self {
        self.irqchip = IrqChipKind::Kvm;
        self.fds.irqchip = Irqchip::Kvm;
        self
    }

    /// ukvm's PIC pair, made once: the PCI lines level-triggered.
    fn chip(&mut self, kicker: &Kicker) -> Arc<IrqChip> {
        let level = self.device_irqs();
        self.chip
            .get_or_insert_with(|| IrqChip::new(kicker.clone(), &level))
            .clone()
    }

    /// The interrupt lines the PCI devices get.
    fn device_irqs(&self) -> Vec<u8> {
        let mut irqs: Vec<u8> = (0..self.disks.len() + self.nets.len())
            .map(pci::device_irq)
            .collect();
        irqs.sort_unstable();
        irqs.dedup();
        irqs
    }

    /// Legacy ports, the interrupt controller and the PCI bus; `pio` may
    /// already hold other devices. `in_kernel`: KVM's irqchip exists and
    /// takes the device lines; otherwise ukvm's PIC and PIT go on the bus.
    pub(crate) fn attach_to(
        mut self,
        mut pio: Bus,
        wiring: Wiring<'_>,
        in_kernel: bool,
    ) -> Result<Devices> {
        legacy_devices(&mut pio, wiring.serial)?;
        let (sink, delivery): (Arc<dyn IrqSink>, Box<dyn Delivery>) = if in_kernel {
            (
                Arc::new(KvmLines(wiring.vm.clone())),
                Box::new(interrupts::InKernel::default()),
            )
        } else {
            let chip = self.chip(wiring.kicker);
            // Lines that can interrupt a halted guest: the PCI devices',
            // and COM1's when it is wired to the PIC.
            let mut wake = self.device_irqs();
            wake.push(COM1_IRQ);
            let delivery = userspace_chips(&mut pio, &chip, wiring.kicker, wake)?;
            (chip, Box::new(delivery))
        };
        let mut fds = self.fds.clone();
        let mut mmio = Bus::new();
        let mut pci_bus = pci::PciBuilder::new(wiring.vm, wiring.mem, &mut pio, &mut mmio, sink);
        pci::add_blocks(&mut pci_bus, self.disks)?;
        net::add_nets(&mut pci_bus, self.nets)?;
        let io = pci_bus.finish(wiring.io)?;
        if let Some(io) = &io {
            fds.events.extend(io.event_fds());
        }
        Ok(Devices {
            pio,
            mmio,
            io,
            delivery,
            fds,
        })
    }
}

impl Machine for PcMachine {
    fn serves_queues(&self) -> bool {
        !self.disks.is_empty() || !self.nets.is_empty()
    }

    fn device_fds(&self) -> Fds {
        self.fds.clone()
    }

    fn create_chips(&mut self, vm: &VmFd) -> Result<bool> {
        // ukvm's own PIC and PIT cost nothing until used; KVM's cost
        // milliseconds of creation and teardown (see crate::interrupts).
        let in_kernel = self.irqchip == IrqChipKind::Kvm;
        if in_kernel {
            pci::create_irqchip(vm)?;
        }
        Ok(in_kernel)
    }

    fn serial_irq(&mut self, _vm: &VmFd, kicker: &Kicker) -> Result<IrqTrigger> {
        if self.irqchip == IrqChipKind::Kvm {
            // As before ukvm had a PIC of its own: polled COM1.
            return Ok(IrqTrigger::disconnected());
        }
        // Masked at start, as firmware leaves it: free until a driver
        // unmasks it.
        let chip = self.chip(kicker);
        Ok(IrqTrigger::call(Arc::new(move || chip.pulse(COM1_IRQ))))
    }

    fn attach(self: Box<Self>, wiring: Wiring<'_>) -> Result<Devices> {
        let in_kernel = self.irqchip == IrqChipKind::Kvm;
        self.attach_to(Bus::new(), wiring, in_kernel)
    }
}

/// COM1's ISA interrupt line.
const COM1_IRQ: u8 = 4;

fn port_err(e: impl std::fmt::Display) -> Error {
    Error::Device(format!("port bus: {e}"))
}

/// Puts ukvm's PIC pair and PIT on the port bus; `wake` are the lines
/// that can interrupt a halted guest besides the PIT's.
fn userspace_chips(
    pio: &mut Bus,
    chip: &Arc<IrqChip>,
    kicker: &Kicker,
    wake: Vec<u8>,
) -> Result<Userspace> {
    let timer = PitTimer::new(chip.clone());
    let pic_ports = Arc::new(Mutex::new(PicPorts(chip.clone())));
    for base in [pic::MASTER_PORT, pic::SLAVE_PORT, pic::ELCR_PORT] {
        pio.insert(u64::from(base), 2, pic_ports.clone())
            .map_err(port_err)?;
    }
    let pit_ports = Arc::new(Mutex::new(PitPorts(timer.clone())));
    pio.insert(
        u64::from(pit::COUNTER0_PORT),
        u64::from(pit::PORTS_LEN),
        pit_ports.clone(),
    )
    .map_err(port_err)?;
    pio.insert(u64::from(pit::PORT_61), 1, pit_ports)
        .map_err(port_err)?;
    Ok(Userspace::new(chip.clone(), timer, wake, kicker.clone()))
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
        pio.insert(base, len, device).map_err(port_err)?;
    }
    Ok(())
}
