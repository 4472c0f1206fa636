//! The transitional virtio-pci transport (virtio 1.2 section 4.1).
//!
//! - BAR0, I/O ports: the legacy register block (section 4.1.4.8) that
//!   Rumprun, Solo5 and Unikraft drive. No MSI-X, so device configuration
//!   starts at offset 20.
//! - BAR1, 32-bit memory: the modern structures, found through vendor
//!   capabilities: common configuration, ISR, device configuration and
//!   notifications (one 4-byte slot per queue).
//!
//! VERSION_1 is offered only through the modern interface; the legacy
//! feature register holds the low 32 bits. Interrupts are legacy INTx, level
//! triggered through [`Interrupt`]. MSI-X is not offered, so drivers fall
//! back to INTx (the MSI-X vector registers read as NO_VECTOR).

use super::{status, ActivateError, Interrupt, VirtioDevice, F_VERSION_1, VENDOR_ID};
use crate::bus::{le_value, lock, BusDevice, Event};
use crate::irq::LevelIrq;
use crate::pci::{self, Bar, BarKind, Identity, PciConfig, PciDevice};
use std::sync::{Arc, Mutex};
use virtio_queue::{Queue, QueueT};
use vm_memory::{GuestAddress, GuestMemoryMmap};

/// Size of the legacy I/O BAR.
pub const IO_BAR_SIZE: u32 = 0x100;
/// Size of the modern memory BAR.
pub const MMIO_BAR_SIZE: u32 = 0x4000;
/// Offset of the legacy QUEUE_NOTIFY register in BAR0.
pub const LEGACY_NOTIFY: u64 = 16;

const COMMON_OFFSET: u64 = 0x0000;
const COMMON_LEN: u64 = 0x40;
const ISR_OFFSET: u64 = 0x1000;
const DEVICE_OFFSET: u64 = 0x2000;
const DEVICE_LEN: u64 = 0x1000;
/// Offset of the notification area in BAR1.
pub const NOTIFY_OFFSET: u64 = 0x3000;
const NOTIFY_LEN: u64 = 0x1000;
/// Bytes between two queues' notification addresses.
pub const NOTIFY_MULTIPLIER: u32 = 4;
const MODERN_BAR: u8 = 1;
const LEGACY_HEADER: u64 = 20;
const NO_VECTOR: u16 = 0xffff;

// Legacy registers (BAR0 offsets).
const L_GUEST_FEATURES: u64 = 4;
const L_QUEUE_PFN: u64 = 8;
const L_QUEUE_SELECT: u64 = 14;
const L_STATUS: u64 = 18;
const L_ISR: u64 = 19;
/// Legacy rings: page-sized units and alignment (VIRTIO_PCI_VRING_ALIGN).
const LEGACY_PAGE: u64 = 4096;

/// Where the monitor put the function's BARs and which line it interrupts.
#[derive(Debug, Clone, Copy)]
pub struct Resources {
    /// First port of the legacy I/O BAR ([`IO_BAR_SIZE`] aligned).
    pub io_base: u16,
    /// Start of the modern memory BAR ([`MMIO_BAR_SIZE`] aligned).
    pub mmio_base: u32,
    /// Interrupt line (GSI) written to the Interrupt Line register.
    pub irq: u8,
}

impl Resources {
    /// The legacy notification port (16-bit writes of a queue index).
    pub fn legacy_notify_port(&self) -> u64 {
        u64::from(self.io_base) + LEGACY_NOTIFY
    }

    /// The modern notification address of `queue`.
    pub fn notify_addr(&self, queue: usize) -> u64 {
        u64::from(self.mmio_base) + NOTIFY_OFFSET + queue as u64 * u64::from(NOTIFY_MULTIPLIER)
    }
}

/// A queue as the driver configured it; a `Queue` is built from it when the
/// device starts.
#[derive(Debug, Default, Clone, Copy)]
struct QueueConfig {
    size: u16,
    ready: bool,
    desc: u64,
    avail: u64,
    used: u64,
}

/// A virtio device on the PCI bus.
pub struct VirtioPci {
    config: PciConfig,
    device: Arc<Mutex<dyn VirtioDevice>>,
    mem: GuestMemoryMmap,
    interrupt: Arc<Interrupt>,
    res: Resources,
    offered: u64,
    max_sizes: Vec<u16>,
    queues: Vec<QueueConfig>,
    queue_select: u16,
    device_feature_select: u32,
    driver_feature_select: u32,
    driver_features: u64,
    status: u8,
    active: bool,
}

/// A capability of type `cfg_type` pointing at `[offset, +len)` of BAR1.
fn virtio_cap(cfg_type: u8, offset: u64, len: u64, extra: Option<u32>) -> Vec<u8> {
    let cap_len: u8 = if extra.is_some() { 20 } else { 16 };
    let mut c = vec![0x09, 0, cap_len, cfg_type, MODERN_BAR, 0, 0, 0];
    c.extend_from_slice(&(offset as u32).to_le_bytes());
    c.extend_from_slice(&(len as u32).to_le_bytes());
    if let Some(x) = extra {
        c.extend_from_slice(&x.to_le_bytes());
    }
    c
}

/// PCI device ID: the transitional ID for net and block (0x1000 + type - 1),
/// the modern one (0x1040 + type) otherwise.
fn device_id(device_type: u32) -> u16 {
    match device_type {
        1..=9 => 0x1000 + device_type as u16 - 1,
        t => 0x1040 + t as u16,
    }
}

impl VirtioPci {
    /// Wraps `device` as a PCI function with the given resources; `line` is
    /// the INTx line for `res.irq`.
    pub fn new(
        device: Arc<Mutex<dyn VirtioDevice>>,
        mem: GuestMemoryMmap,
        res: Resources,
        line: Box<dyn LevelIrq>,
    ) -> Result<Self, pci::Error> {
        let d = lock(&device);
        let (dtype, class, offered) = (d.device_type(), d.pci_class(), d.features() | F_VERSION_1);
        let max_sizes = d.queue_max_sizes().to_vec();
        drop(d);
        let mut config = PciConfig::new(Identity {
            vendor: VENDOR_ID,
            device: device_id(dtype),
            class,
            revision: 0,
            subsystem_vendor: VENDOR_ID,
            subsystem: dtype as u16,
        });
        config.set_bar(
            0,
            Bar {
                kind: BarKind::Io,
                addr: u32::from(res.io_base),
                size: IO_BAR_SIZE,
            },
        );
        config.set_bar(
            1,
            Bar {
                kind: BarKind::Mem32,
                addr: res.mmio_base,
                size: MMIO_BAR_SIZE,
            },
        );
        config.set_interrupt(res.irq, 1);
        config.add_capability(&virtio_cap(1, COMMON_OFFSET, COMMON_LEN, None))?;
        config.add_capability(&virtio_cap(
            2,
            NOTIFY_OFFSET,
            NOTIFY_LEN,
            Some(NOTIFY_MULTIPLIER),
        ))?;
        config.add_capability(&virtio_cap(3, ISR_OFFSET, 4, None))?;
        config.add_capability(&virtio_cap(4, DEVICE_OFFSET, DEVICE_LEN, None))?;
        let queues = max_sizes
            .iter()
            .map(|&size| QueueConfig {
                size,
                ..Default::default()
            })
            .collect();
        Ok(VirtioPci {
            config,
            device,
            mem,
            interrupt: Arc::new(Interrupt::new(line)),
            res,
            offered,
            max_sizes,
            queues,
            queue_select: 0,
            device_feature_select: 0,
            driver_feature_select: 0,
            driver_features: 0,
            status: 0,
            active: false,
        })
    }

    /// Where the function's BARs are.
    pub fn resources(&self) -> Resources {
        self.res
    }

    /// The device's interrupt (ISR and line).
    pub fn interrupt(&self) -> &Arc<Interrupt> {
        &self.interrupt
    }

    /// Device status as the driver last wrote it.
    pub fn status(&self) -> u8 {
        self.status
    }

    fn selected(&mut self) -> Option<&mut QueueConfig> {
        self.queues.get_mut(usize::from(self.queue_select))
    }

    /// Signals the queue's event, as the ioeventfd would have.
    fn notify(&mut self, queue: u64) {
        let device = lock(&self.device);
        if let Some(evt) = device.queue_events().get(queue as usize) {
            // A full eventfd counter already means "kicked".
            let _ = evt.write(1);
        }
    }

    fn set_status(&mut self, value: u8) {
        if value == 0 {
            self.reset();
            return;
        }
        let mut value = value;
        let newly = value & !self.status;
        if newly & status::FEATURES_OK != 0 && self.driver_features & !self.offered != 0 {
            // The driver accepted something we never offered.
            value &= !status::FEATURES_OK;
        }
        self.status = value;
        if newly & status::DRIVER_OK != 0 && !self.active {
            if let Err(e) = self.activate() {
                eprintln!("ukvm: warning: virtio device cannot start: {e}");
                self.status |= status::DEVICE_NEEDS_RESET;
            }
        }
    }

    fn build_queue(&self, i: usize, qc: &QueueConfig) -> Result<Queue, ActivateError> {
        let bad = |_| ActivateError::BadQueue(i);
        let mut q = Queue::new(self.max_sizes[i]).map_err(bad)?;
        if !qc.ready {
            return Ok(q);
        }
        q.try_set_size(qc.size).map_err(bad)?;
        q.try_set_desc_table_address(GuestAddress(qc.desc))
            .map_err(bad)?;
        q.try_set_avail_ring_address(GuestAddress(qc.avail))
            .map_err(bad)?;
        q.try_set_used_ring_address(GuestAddress(qc.used))
            .map_err(bad)?;
        q.set_ready(true);
        if !q.is_valid(&self.mem) {
            return Err(ActivateError::BadQueue(i));
        }
        Ok(q)
    }

    fn activate(&mut self) -> Result<(), ActivateError> {
        let queues = self
            .queues
            .iter()
            .enumerate()
            .map(|(i, qc)| self.build_queue(i, qc))
            .collect::<Result<Vec<_>, _>>()?;
        let features = self.driver_features & self.offered;
        lock(&self.device).activate(self.mem.clone(), features, queues, self.interrupt.clone())?;
        self.active = true;
        Ok(())
    }

    fn reset(&mut self) {
        lock(&self.device).reset();
        for (qc, &size) in self.queues.iter_mut().zip(&self.max_sizes) {
            *qc = QueueConfig {
                size,
                ..Default::default()
            };
        }
        self.queue_select = 0;
        self.device_feature_select = 0;
        self.driver_feature_select = 0;
        self.driver_features = 0;
        self.status = 0;
        self.active = false;
        self.interrupt.reset();
    }

    // ---- legacy interface (BAR0) ----

    fn legacy_read(&mut self, offset: u64, data: &mut [u8]) {
        if offset >= LEGACY_HEADER {
            lock(&self.device).read_config(offset - LEGACY_HEADER, data);
            return;
        }
        let mut regs = [0u8; LEGACY_HEADER as usize];
        regs[0..4].copy_from_slice(&(self.offered as u32).to_le_bytes());
        regs[4..8].copy_from_slice(&(self.driver_features as u32).to_le_bytes());
        if let Some(q) = self.queues.get(usize::from(self.queue_select)) {
            let pfn = if q.ready { q.desc / LEGACY_PAGE } else { 0 };
            regs[8..12].copy_from_slice(&(pfn as u32).to_le_bytes());
            let max = self.max_sizes[usize::from(self.queue_select)];
            regs[12..14].copy_from_slice(&max.to_le_bytes());
        }
        regs[14..16].copy_from_slice(&self.queue_select.to_le_bytes());
        regs[18] = self.status;
        let end = offset as usize + data.len();
        if (offset as usize..end).contains(&(L_ISR as usize)) {
            regs[L_ISR as usize] = self.interrupt.read_and_clear();
        }
        for (i, b) in data.iter_mut().enumerate() {
            *b = regs.get(offset as usize + i).copied().unwrap_or(0);
        }
    }

    fn legacy_write(&mut self, offset: u64, data: &[u8]) {
        if offset >= LEGACY_HEADER {
            lock(&self.device).write_config(offset - LEGACY_HEADER, data);
            return;
        }
        let v = le_value(data);
        match (offset, data.len()) {
            (L_GUEST_FEATURES, 4) => self.driver_features = v,
            (L_QUEUE_PFN, 4) => self.legacy_queue_pfn(v),
            (L_QUEUE_SELECT, 2) => self.queue_select = v as u16,
            (LEGACY_NOTIFY, 2) => self.notify(v),
            (L_STATUS, 1) => self.set_status(v as u8),
            _ => {} // host features (read-only) or unknown
        }
    }

    /// A legacy driver gives one page frame: descriptors, then the
    /// available ring, then the used ring on the next 4 KiB boundary.
    fn legacy_queue_pfn(&mut self, pfn: u64) {
        let sel = usize::from(self.queue_select);
        let Some(&max) = self.max_sizes.get(sel) else {
            return;
        };
        let size = u64::from(max);
        let desc = pfn * LEGACY_PAGE;
        let avail = desc + 16 * size;
        let used = (avail + 6 + 2 * size).div_ceil(LEGACY_PAGE) * LEGACY_PAGE;
        self.queues[sel] = QueueConfig {
            size: max,
            ready: pfn != 0,
            desc,
            avail,
            used,
        };
    }

    // ---- modern interface (BAR1) ----

    fn common_regs(&self) -> [u8; COMMON_LEN as usize] {
        let mut r = [0u8; COMMON_LEN as usize];
        let mut put = |off: usize, bytes: &[u8]| r[off..off + bytes.len()].copy_from_slice(bytes);
        put(0, &self.device_feature_select.to_le_bytes());
        let dev = match self.device_feature_select {
            0 => self.offered as u32,
            1 => (self.offered >> 32) as u32,
            _ => 0,
        };
        put(4, &dev.to_le_bytes());
        put(8, &self.driver_feature_select.to_le_bytes());
        let drv = match self.driver_feature_select {
            0 => self.driver_features as u32,
            1 => (self.driver_features >> 32) as u32,
            _ => 0,
        };
        put(12, &drv.to_le_bytes());
        put(16, &NO_VECTOR.to_le_bytes());
        put(18, &(self.queues.len() as u16).to_le_bytes());
        put(20, &[self.status, 0]);
        put(22, &self.queue_select.to_le_bytes());
        if let Some(q) = self.queues.get(usize::from(self.queue_select)) {
            put(24, &q.size.to_le_bytes());
            put(26, &NO_VECTOR.to_le_bytes());
            put(28, &u16::from(q.ready).to_le_bytes());
            put(30, &self.queue_select.to_le_bytes());
            put(32, &q.desc.to_le_bytes());
            put(40, &q.avail.to_le_bytes());
            put(48, &q.used.to_le_bytes());
            put(56, &self.queue_select.to_le_bytes());
        }
        r
    }

    fn common_write(&mut self, offset: u64, data: &[u8]) {
        let v = le_value(data);
        match (offset, data.len()) {
            (0, 4) => self.device_feature_select = v as u32,
            (8, 4) => self.driver_feature_select = v as u32,
            (12, 4) => match self.driver_feature_select {
                0 => self.driver_features = (self.driver_features & !0xffff_ffff) | v,
                1 => self.driver_features = (self.driver_features & 0xffff_ffff) | (v << 32),
                _ => {}
            },
            (20, 1) => self.set_status(v as u8),
            (22, 2) => self.queue_select = v as u16,
            (24, 2) => {
                if let Some(q) = self.selected() {
                    q.size = v as u16;
                }
            }
            (28, 2) => {
                if let Some(q) = self.selected() {
                    q.ready = v == 1;
                }
            }
            (32..=55, 4 | 8) => self.queue_address(offset, v, data.len()),
            _ => {} // read-only, MSI-X vectors, or unknown
        }
    }

    /// queue_desc / queue_driver / queue_device, written whole or as two
    /// 32-bit halves.
    fn queue_address(&mut self, offset: u64, v: u64, len: usize) {
        let Some(q) = self.selected() else {
            return;
        };
        let field = match (offset - 32) / 8 {
            0 => &mut q.desc,
            1 => &mut q.avail,
            _ => &mut q.used,
        };
        *field = match (len, offset % 8) {
            (8, 0) => v,
            (4, 0) => (*field & !0xffff_ffff) | v,
            (4, 4) => (*field & 0xffff_ffff) | (v << 32),
            _ => *field,
        };
    }

    fn modern_read(&mut self, offset: u64, data: &mut [u8]) {
        data.fill(0);
        match offset {
            o if o < COMMON_LEN => {
                let regs = self.common_regs();
                for (i, b) in data.iter_mut().enumerate() {
                    *b = regs.get(o as usize + i).copied().unwrap_or(0);
                }
            }
            ISR_OFFSET => data[0] = self.interrupt.read_and_clear(),
            o if (DEVICE_OFFSET..DEVICE_OFFSET + DEVICE_LEN).contains(&o) => {
                lock(&self.device).read_config(o - DEVICE_OFFSET, data)
            }
            _ => {}
        }
    }

    fn modern_write(&mut self, offset: u64, data: &[u8]) {
        match offset {
            o if o < COMMON_LEN => self.common_write(o, data),
            o if (DEVICE_OFFSET..DEVICE_OFFSET + DEVICE_LEN).contains(&o) => {
                lock(&self.device).write_config(o - DEVICE_OFFSET, data)
            }
            o if (NOTIFY_OFFSET..NOTIFY_OFFSET + NOTIFY_LEN).contains(&o) => {
                self.notify((o - NOTIFY_OFFSET) / u64::from(NOTIFY_MULTIPLIER))
            }
            _ => {}
        }
    }
}

impl PciDevice for VirtioPci {
    fn config(&self) -> &PciConfig {
        &self.config
    }
    fn config_mut(&mut self) -> &mut PciConfig {
        &mut self.config
    }
}

impl BusDevice for VirtioPci {
    fn read(&mut self, base: u64, offset: u64, data: &mut [u8]) {
        if base == u64::from(self.res.io_base) {
            self.legacy_read(offset, data);
        } else {
            self.modern_read(offset, data);
        }
    }

    fn write(&mut self, base: u64, offset: u64, data: &[u8]) -> Option<Event> {
        if base == u64::from(self.res.io_base) {
            self.legacy_write(offset, data);
        } else {
            self.modern_write(offset, data);
        }
        None
    }
}

#[cfg(test)]
mod tests;
