//! The VM's PCI bus and the virtio devices on it: opening disk images
//! before the VM exists, the in-kernel interrupt controllers devices need,
//! BAR and interrupt assignment, ioeventfds, and the I/O thread.
//!
//! Interrupts: PCI devices raise level-triggered INTx on an [`IrqSink`]:
//! ukvm's own PIC for Multiboot guests (`crate::interrupts`), or, for
//! Linux-style kernels and `--irqchip=kvm`, KVM's in-kernel PIC and IOAPIC
//! through `KVM_IRQ_LINE`.
//!
//! `KVM_IRQ_LINE` rather than an irqfd (with a resamplefd, as level INTx
//! needs) because it measured faster here: scripts/net-bench.sh, 7 rounds,
//! medians, UDP echo one datagram at a time 1,697 vs 1,401 pkt/s (64 B) and
//! 1,788 vs 1,488 (1400 B); 2,021 vs 2,097 with 16 in flight (noise). x86
//! KVM injects an irqfd into the PIC/IOAPIC from a work item (only MSIs go
//! in from the eventfd wakeup), so every interrupt waits for a kworker on
//! these 2-CPU machines, and each EOI wakes the I/O thread for the
//! resample; `KVM_IRQ_LINE` injects within the ioctl.

use crate::error::{Error, Result};
use crate::io_thread::{IoThread, Subscriber};
use kvm_bindings::{kvm_irqchip, kvm_pit_config, KVM_IRQCHIP_PIC_MASTER, KVM_IRQCHIP_PIC_SLAVE};
use kvm_ioctls::{IoEventAddress, NoDatamatch, VmFd};
use std::sync::{Arc, Mutex};
use ukvm_boot::layout::MMIO_HOLE_START;
use ukvm_devices::irq::LevelIrq;
use ukvm_devices::pci::{self, PciRoot};
use ukvm_devices::virtio::pci::{Resources, VirtioPci, IO_BAR_SIZE, MMIO_BAR_SIZE};
use ukvm_devices::virtio::VirtioDevice;
use ukvm_devices::Bus;
use ukvm_virtio_blk::{Block, Disk, DiskSpec};
use vm_memory::GuestMemoryMmap;

/// Devices that fit on bus 0 next to the host bridge.
pub const MAX_DEVICES: usize = pci::SLOTS - 1;

/// Interrupt lines for PCI devices, as SeaBIOS hands them out: 10 and 11
/// first (its PIIX PIRQ lines), then 9 and 5, so lines >= 8 come first.
/// Rumprun's hw platform accepts only 9, 10, 11, 14 and 15 and panics at
/// its first interrupt on any other. With more devices than lines, lines
/// are shared (INTx is level-triggered and shareable).
const PCI_IRQS: [u8; 4] = [10, 11, 9, 5];

/// The interrupt line of the `n`th device, which sits in slot `n + 1`
/// (the host bridge has slot 0).
pub fn device_irq(n: usize) -> u8 {
    PCI_IRQS[n % PCI_IRQS.len()]
}

/// `(slot, line)` of every slot a device can take: the routing the ACPI
/// `_PRT` describes, the same that `add_virtio` writes to Interrupt Line.
pub fn slot_irqs() -> Vec<(u8, u8)> {
    (0..MAX_DEVICES)
        .map(|n| ((n + 1) as u8, device_irq(n)))
        .collect()
}

/// First port of the legacy I/O BARs.
const IO_BASE: u16 = 0x6000;

/// Parses every `--disk` (no I/O).
pub fn parse_disks(specs: &[String]) -> Result<Vec<DiskSpec>> {
    specs
        .iter()
        .map(|s| DiskSpec::parse(s).map_err(|e| Error::Config(e.to_string())))
        .collect()
}

/// Opens every disk image, before any KVM object exists.
pub fn open_disks(specs: &[DiskSpec]) -> Result<Vec<Disk>> {
    specs
        .iter()
        .map(|s| Disk::open(s).map_err(|e| Error::Device(e.to_string())))
        .collect()
}

/// Creates the in-kernel PIC, IOAPIC and PIT. Must precede vCPU creation.
pub fn create_irqchip(vm: &VmFd) -> Result<()> {
    vm.create_irq_chip().map_err(|source| Error::Kvm {
        op: "KVM_CREATE_IRQCHIP",
        source,
    })?;
    mask_pic_lines(vm)?;
    // Guests that calibrate their clocks against the PIT need one.
    vm.create_pit2(kvm_pit_config::default())
        .map_err(|source| Error::Kvm {
            op: "KVM_CREATE_PIT2",
            source,
        })
}

/// Masks every 8259 line but the cascade (IRQ 2), as SeaBIOS's `pic_reset`
/// leaves them: a device's interrupt reaches the guest only once its
/// driver unmasks the line. KVM's PIC starts with every line open; Solo5's
/// virtio bindings keep the masks they find and poll virtio-blk without a
/// handler, so an open line 10 meant "unhandled irq 10" and a stall.
fn mask_pic_lines(vm: &VmFd) -> Result<()> {
    for (chip_id, imr) in [
        (KVM_IRQCHIP_PIC_MASTER, 0xfb),
        (KVM_IRQCHIP_PIC_SLAVE, 0xff),
    ] {
        let mut chip = kvm_irqchip {
            chip_id,
            ..Default::default()
        };
        let kvm = |op| move |source| Error::Kvm { op, source };
        vm.get_irqchip(&mut chip).map_err(kvm("KVM_GET_IRQCHIP"))?;
        // For a PIC chip_id, KVM fills (and reads) the `pic` member of the
        // union; only its mask byte changes.
        chip.chip.pic.imr = imr;
        vm.set_irqchip(&chip).map_err(kvm("KVM_SET_IRQCHIP"))?;
    }
    Ok(())
}

/// Where PCI interrupt lines go: KVM's irqchip or ukvm's own PIC.
pub trait IrqSink: Send + Sync {
    /// Drives ISA line `irq` high or low.
    fn set_line(&self, irq: u8, high: bool) -> std::io::Result<()>;
}

/// KVM's in-kernel PIC and IOAPIC, through `KVM_IRQ_LINE`.
pub struct KvmLines(pub Arc<VmFd>);

impl IrqSink for KvmLines {
    fn set_line(&self, irq: u8, high: bool) -> std::io::Result<()> {
        self.0
            .set_irq_line(u32::from(irq), high)
            .map_err(|e| std::io::Error::from_raw_os_error(e.errno()))
    }
}

/// An interrupt line shared by devices: high while any of them holds it.
struct IrqPin {
    sink: Arc<dyn IrqSink>,
    gsi: u8,
    /// One bit per device on this line.
    holders: Mutex<u32>,
}

/// One device's hold on an [`IrqPin`].
struct PinHold {
    pin: Arc<IrqPin>,
    bit: u32,
}

impl LevelIrq for PinHold {
    fn set_level(&self, high: bool) -> std::io::Result<()> {
        let mut holders = ukvm_devices::bus::lock(&self.pin.holders);
        let before = *holders != 0;
        if high {
            *holders |= self.bit;
        } else {
            *holders &= !self.bit;
        }
        let after = *holders != 0;
        if before != after {
            self.pin.sink.set_line(self.pin.gsi, after)?;
        }
        Ok(())
    }
}

/// Builds bus 0 and puts devices on it, in order.
pub struct PciBuilder<'a> {
    vm: &'a Arc<VmFd>,
    mem: &'a GuestMemoryMmap,
    pio: &'a mut Bus,
    mmio: &'a mut Bus,
    root: PciRoot,
    pins: Vec<Arc<IrqPin>>,
    count: usize,
    subscribers: Vec<Subscriber>,
    /// The devices, for their refusal counters.
    devices: Vec<Arc<Mutex<dyn VirtioDevice>>>,
}

fn bus_err(e: impl std::fmt::Display) -> Error {
    Error::Device(format!("PCI: {e}"))
}

impl<'a> PciBuilder<'a> {
    /// A bus with only the host bridge; device interrupts go to `sink`.
    pub fn new(
        vm: &'a Arc<VmFd>,
        mem: &'a GuestMemoryMmap,
        pio: &'a mut Bus,
        mmio: &'a mut Bus,
        sink: Arc<dyn IrqSink>,
    ) -> Self {
        let pins = PCI_IRQS
            .iter()
            .map(|&irq| {
                Arc::new(IrqPin {
                    sink: sink.clone(),
                    gsi: irq,
                    holders: Mutex::new(0),
                })
            })
            .collect();
        PciBuilder {
            vm,
            mem,
            pio,
            mmio,
            root: PciRoot::new(),
            pins,
            count: 0,
            subscribers: Vec::new(),
            devices: Vec::new(),
        }
    }

    /// Adds a virtio device in the next slot: assigns its BARs and line,
    /// puts it on the buses, registers its queue ioeventfds, and has the
    /// I/O thread serve it.
    pub fn add_virtio<D>(&mut self, device: D) -> Result<()>
    where
        D: VirtioDevice + event_manager::MutEventSubscriber + 'static,
    {
        let n = self.count;
        if n >= MAX_DEVICES {
            return Err(bus_err(pci::Error::NoFreeSlot));
        }
        let pin = &self.pins[n % self.pins.len()];
        let res = Resources {
            io_base: IO_BASE + (n as u16) * IO_BAR_SIZE as u16,
            mmio_base: (MMIO_HOLE_START + n as u64 * u64::from(MMIO_BAR_SIZE)) as u32,
            irq: pin.gsi,
        };
        let hold = PinHold {
            pin: pin.clone(),
            bit: 1 << (n / self.pins.len()),
        };
        let device = Arc::new(Mutex::new(device));
        let transport = VirtioPci::new(device.clone(), self.mem.clone(), res, Box::new(hold))
            .map_err(bus_err)?;
        let transport = Arc::new(Mutex::new(transport));
        self.root.add(transport.clone()).map_err(bus_err)?;
        self.pio
            .insert(
                u64::from(res.io_base),
                u64::from(IO_BAR_SIZE),
                transport.clone(),
            )
            .map_err(bus_err)?;
        self.mmio
            .insert(
                u64::from(res.mmio_base),
                u64::from(MMIO_BAR_SIZE),
                transport,
            )
            .map_err(bus_err)?;
        self.register_ioevents(&*ukvm_devices::bus::lock(&device), &res);
        self.devices.push(device.clone());
        self.subscribers.push(device);
        self.count += 1;
        Ok(())
    }

    /// Lets KVM complete queue notifications itself. Where it cannot, the
    /// write exits to ukvm and the transport signals the queue instead.
    fn register_ioevents(&self, device: &dyn VirtioDevice, res: &Resources) {
        for (q, evt) in device.queue_events().iter().enumerate() {
            let port = IoEventAddress::Pio(res.legacy_notify_port());
            let _ = self.vm.register_ioevent(evt, &port, q as u16);
            let addr = IoEventAddress::Mmio(res.notify_addr(q));
            let _ = self.vm.register_ioevent(evt, &addr, NoDatamatch);
        }
    }

    /// Puts the configuration ports on the bus and hands the devices to
    /// `io`, the I/O thread started for them (`None`: there are none).
    pub fn finish(self, io: Option<IoThread>) -> Result<Option<IoThread>> {
        self.pio
            .insert(
                pci::CONFIG_PORT,
                pci::CONFIG_PORTS_LEN,
                Arc::new(Mutex::new(self.root)),
            )
            .map_err(bus_err)?;
        match (io, self.subscribers.is_empty()) {
            (io, true) => Ok(io),
            (None, false) => Err(Error::Device(
                "PCI: devices but no I/O thread to serve them".into(),
            )),
            (Some(mut io), false) => {
                io.serve(self.subscribers, self.devices)?;
                Ok(Some(io))
            }
        }
    }
}

/// One virtio-blk device per disk, made before the VM exists.
pub fn make_blocks(disks: Vec<Disk>) -> Result<Vec<Block>> {
    disks
        .into_iter()
        .map(|disk| {
            let name = disk.name.clone();
            Block::new(disk).map_err(|e| Error::Device(format!("--disk {name}: {e}")))
        })
        .collect()
}

/// Attaches the virtio-blk devices, in command-line order.
pub fn add_blocks(pci: &mut PciBuilder<'_>, blocks: Vec<Block>) -> Result<()> {
    blocks.into_iter().try_for_each(|b| pci.add_virtio(b))
}

/// The queue eventfds of `devices`: the I/O thread reads them, and the
/// vCPU thread writes them where KVM could not take a notification.
pub fn queue_event_fds<'a>(
    devices: impl IntoIterator<Item = &'a dyn VirtioDevice>,
) -> Vec<std::os::fd::RawFd> {
    use std::os::fd::AsRawFd;
    devices
        .into_iter()
        .flat_map(|d| d.queue_events().iter().map(AsRawFd::as_raw_fd))
        .collect()
}
