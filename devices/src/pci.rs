//! PCI: configuration mechanism 1 on ports 0xCF8/0xCFC, a host bridge at
//! 00:00.0 and the type-0 configuration header the devices share.
//!
//! There is no firmware, so the monitor assigns BARs and fills Interrupt
//! Line itself, as a BIOS would. BARs stay where the monitor put them: a
//! guest may size them (write all-ones, read back the size mask) and write
//! the assigned address back, but any other address is ignored, because the
//! devices' bus ranges are fixed when the VM is built.

use crate::bus::{lock, BusDevice, Event};
use std::sync::{Arc, Mutex};
use thiserror::Error;

/// Port of CONFIG_ADDRESS; CONFIG_DATA follows at +4.
pub const CONFIG_PORT: u64 = 0xcf8;
/// Ports claimed by the configuration mechanism (0xCF8-0xCFF).
pub const CONFIG_PORTS_LEN: u64 = 8;
/// Device numbers on bus 0.
pub const SLOTS: usize = 32;
/// Size of a (conventional) configuration space.
pub const CONFIG_SIZE: usize = 256;

const COMMAND: usize = 0x04;
const STATUS: usize = 0x06;
const STATUS_CAP_LIST: u8 = 0x10;
const BAR0: usize = 0x10;
const SUBSYSTEM_VENDOR: usize = 0x2c;
const CAP_POINTER: usize = 0x34;
const INTERRUPT_LINE: usize = 0x3c;
const INTERRUPT_PIN: usize = 0x3d;
const FIRST_CAP: usize = 0x40;

/// Errors building the PCI bus.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum Error {
    /// Every device slot on bus 0 is taken.
    #[error("no free PCI slot (bus 0 has {SLOTS} slots)")]
    NoFreeSlot,
    /// A capability does not fit in the configuration space.
    #[error("PCI capability of {0} bytes does not fit in configuration space")]
    CapabilityTooLarge(usize),
}

/// What a base address register decodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BarKind {
    /// I/O ports.
    Io,
    /// 32-bit, non-prefetchable memory.
    Mem32,
}

/// A BAR as the monitor assigned it. `size` is a power of two and `addr`
/// is aligned to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bar {
    /// What it decodes.
    pub kind: BarKind,
    /// Assigned address.
    pub addr: u32,
    /// Size in bytes.
    pub size: u32,
}

impl Bar {
    fn flags(&self) -> u32 {
        match self.kind {
            BarKind::Io => 1,
            BarKind::Mem32 => 0,
        }
    }
}

/// Identity of a function: the read-only part of its header.
#[derive(Debug, Clone, Copy)]
pub struct Identity {
    /// Vendor ID.
    pub vendor: u16,
    /// Device ID.
    pub device: u16,
    /// Class code, subclass and programming interface (24 bits).
    pub class: u32,
    /// Revision ID.
    pub revision: u8,
    /// Subsystem vendor ID.
    pub subsystem_vendor: u16,
    /// Subsystem ID.
    pub subsystem: u16,
}

/// A type-0 configuration header with capabilities: the register file a
/// [`PciDevice`] exposes through the configuration mechanism.
pub struct PciConfig {
    bytes: [u8; CONFIG_SIZE],
    /// Bits the guest may change, byte by byte.
    writable: [u8; CONFIG_SIZE],
    bars: [Option<Bar>; 6],
    next_cap: usize,
    last_cap: Option<usize>,
}

impl PciConfig {
    /// A header for `id`, with no BARs, no interrupt and no capabilities.
    pub fn new(id: Identity) -> Self {
        let mut c = PciConfig {
            bytes: [0; CONFIG_SIZE],
            writable: [0; CONFIG_SIZE],
            bars: [None; 6],
            next_cap: FIRST_CAP,
            last_cap: None,
        };
        c.put(0x00, &id.vendor.to_le_bytes());
        c.put(0x02, &id.device.to_le_bytes());
        c.bytes[0x08] = id.revision;
        c.put(0x09, &id.class.to_le_bytes()[..3]);
        c.put(SUBSYSTEM_VENDOR, &id.subsystem_vendor.to_le_bytes());
        c.put(0x2e, &id.subsystem.to_le_bytes());
        // I/O space, memory space, bus master; INTx disable.
        c.writable[COMMAND] = 0x07;
        c.writable[COMMAND + 1] = 0x04;
        // Cache line size and latency timer are scratch registers.
        c.writable[0x0c] = 0xff;
        c.writable[0x0d] = 0xff;
        c.writable[INTERRUPT_LINE] = 0xff;
        c
    }

    fn put(&mut self, offset: usize, data: &[u8]) {
        self.bytes[offset..offset + data.len()].copy_from_slice(data);
    }

    fn dword(&self, offset: usize) -> u32 {
        let mut b = [0u8; 4];
        b.copy_from_slice(&self.bytes[offset..offset + 4]);
        u32::from_le_bytes(b)
    }

    /// Assigns BAR `index` (0-5).
    pub fn set_bar(&mut self, index: usize, bar: Bar) {
        self.bars[index] = Some(bar);
        self.put(BAR0 + 4 * index, &(bar.addr | bar.flags()).to_le_bytes());
    }

    /// The BARs as assigned.
    pub fn bar(&self, index: usize) -> Option<Bar> {
        self.bars.get(index).copied().flatten()
    }

    /// Fills Interrupt Line and Interrupt Pin (1 = INTA#), as firmware would.
    pub fn set_interrupt(&mut self, line: u8, pin: u8) {
        self.bytes[INTERRUPT_LINE] = line;
        self.bytes[INTERRUPT_PIN] = pin;
    }

    /// Appends a capability. `body` starts with the capability ID; its
    /// "next" byte (body\[1\]) is filled in here.
    pub fn add_capability(&mut self, body: &[u8]) -> Result<usize, Error> {
        let offset = self.next_cap;
        let len = body.len().max(2);
        // Capabilities are dword-aligned.
        let end = (offset + len + 3) & !3;
        if end > CONFIG_SIZE {
            return Err(Error::CapabilityTooLarge(body.len()));
        }
        self.put(offset, body);
        self.bytes[offset + 1] = 0;
        match self.last_cap {
            Some(prev) => self.bytes[prev + 1] = offset as u8,
            None => self.bytes[CAP_POINTER] = offset as u8,
        }
        self.bytes[STATUS] |= STATUS_CAP_LIST;
        self.last_cap = Some(offset);
        self.next_cap = end;
        Ok(offset)
    }

    /// Reads `data.len()` bytes at `offset`; bytes past the end read as 0xFF.
    pub fn read(&self, offset: usize, data: &mut [u8]) {
        for (i, b) in data.iter_mut().enumerate() {
            *b = self.bytes.get(offset + i).copied().unwrap_or(0xff);
        }
    }

    /// Writes `data` at `offset`, keeping read-only bits.
    pub fn write(&mut self, offset: usize, data: &[u8]) {
        let mut i = 0;
        while i < data.len() {
            let at = offset + i;
            if at >= CONFIG_SIZE {
                return;
            }
            if (BAR0..BAR0 + 24).contains(&at) {
                // A BAR is judged on the whole value written to it.
                let reg = at & !3;
                let mut raw = self.dword(reg).to_le_bytes();
                let n = (reg + 4 - at).min(data.len() - i);
                raw[at - reg..at - reg + n].copy_from_slice(&data[i..i + n]);
                self.write_bar((reg - BAR0) / 4, u32::from_le_bytes(raw));
                i += n;
            } else {
                let mask = self.writable[at];
                self.bytes[at] = (self.bytes[at] & !mask) | (data[i] & mask);
                i += 1;
            }
        }
    }

    /// The guest sizes a BAR by writing all-ones and reading back the size
    /// mask, then writes the address back. Other addresses are ignored: the
    /// device's bus ranges are fixed.
    fn write_bar(&mut self, index: usize, raw: u32) {
        let Some(bar) = self.bars[index] else {
            return; // unimplemented BARs are hardwired to 0
        };
        let mask = !(bar.size - 1);
        let value = if raw & mask == mask { mask } else { bar.addr };
        self.put(BAR0 + 4 * index, &(value | bar.flags()).to_le_bytes());
    }
}

/// A function on the PCI bus: it exposes a configuration space.
pub trait PciDevice: Send {
    /// The configuration header.
    fn config(&self) -> &PciConfig;
    /// The configuration header, for writes.
    fn config_mut(&mut self) -> &mut PciConfig;
    /// Reads configuration space at `offset` (within 0-255).
    fn config_read(&mut self, offset: usize, data: &mut [u8]) {
        self.config().read(offset, data);
    }
    /// Writes configuration space at `offset` (within 0-255).
    fn config_write(&mut self, offset: usize, data: &[u8]) {
        self.config_mut().write(offset, data);
    }
}

/// A PCI function shared between the bus and its other users.
pub type SharedPciDevice = Arc<Mutex<dyn PciDevice>>;

/// The host bridge at 00:00.0 (Intel 440FX identity, which every OS knows).
pub struct HostBridge(PciConfig);

impl Default for HostBridge {
    fn default() -> Self {
        HostBridge(PciConfig::new(Identity {
            vendor: 0x8086,
            device: 0x1237,
            class: 0x06_00_00,
            revision: 0x02,
            subsystem_vendor: 0,
            subsystem: 0,
        }))
    }
}

impl PciDevice for HostBridge {
    fn config(&self) -> &PciConfig {
        &self.0
    }
    fn config_mut(&mut self) -> &mut PciConfig {
        &mut self.0
    }
}

/// Bus 0 and the configuration mechanism on 0xCF8-0xCFF. Only function 0
/// of each slot exists; bus numbers other than 0 have no devices.
pub struct PciRoot {
    address: u32,
    slots: [Option<SharedPciDevice>; SLOTS],
}

impl Default for PciRoot {
    fn default() -> Self {
        Self::new()
    }
}

impl PciRoot {
    /// Bus 0 with the host bridge in slot 0.
    pub fn new() -> Self {
        let mut slots: [Option<SharedPciDevice>; SLOTS] = Default::default();
        slots[0] = Some(Arc::new(Mutex::new(HostBridge::default())));
        PciRoot { address: 0, slots }
    }

    /// Slots still free.
    pub fn free_slots(&self) -> usize {
        self.slots.iter().filter(|s| s.is_none()).count()
    }

    /// Puts `device` in the lowest free slot and returns the slot number.
    pub fn add(&mut self, device: SharedPciDevice) -> Result<u8, Error> {
        let slot = self
            .slots
            .iter()
            .position(Option::is_none)
            .ok_or(Error::NoFreeSlot)?;
        self.slots[slot] = Some(device);
        Ok(slot as u8)
    }

    /// The device and register the current CONFIG_ADDRESS selects.
    fn selected(&self) -> Option<(&SharedPciDevice, usize)> {
        let a = self.address;
        let enabled = a & 0x8000_0000 != 0;
        let bus = (a >> 16) & 0xff;
        let slot = ((a >> 11) & 0x1f) as usize;
        let function = (a >> 8) & 0x7;
        if !enabled || bus != 0 || function != 0 {
            return None;
        }
        let device = self.slots[slot].as_ref()?;
        Some((device, (a & 0xfc) as usize))
    }
}

impl BusDevice for PciRoot {
    fn read(&mut self, _base: u64, offset: u64, data: &mut [u8]) {
        match offset {
            // CONFIG_ADDRESS is a dword register; other widths reach
            // mechanism #2's ports on real chipsets, which we don't have.
            0 if data.len() == 4 => data.copy_from_slice(&self.address.to_le_bytes()),
            4..=7 => match self.selected() {
                Some((device, reg)) => {
                    let at = reg + (offset - 4) as usize;
                    lock(device).config_read(at, data);
                }
                None => data.fill(0xff),
            },
            _ => data.fill(0xff),
        }
    }

    fn write(&mut self, _base: u64, offset: u64, data: &[u8]) -> Option<Event> {
        match offset {
            0 if data.len() == 4 => {
                let mut b = [0u8; 4];
                b.copy_from_slice(data);
                self.address = u32::from_le_bytes(b);
            }
            4..=7 => {
                if let Some((device, reg)) = self.selected() {
                    lock(device).config_write(reg + (offset - 4) as usize, data);
                }
            }
            _ => {}
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(slot: u32, reg: u32) -> [u8; 4] {
        (0x8000_0000 | (slot << 11) | reg).to_le_bytes()
    }

    fn read32(root: &mut PciRoot, slot: u32, reg: u32) -> u32 {
        root.write(0, 0, &addr(slot, reg));
        let mut d = [0u8; 4];
        root.read(0, 4, &mut d);
        u32::from_le_bytes(d)
    }

    fn device() -> PciConfig {
        let mut c = PciConfig::new(Identity {
            vendor: 0x1af4,
            device: 0x1001,
            class: 0x01_80_00,
            revision: 0,
            subsystem_vendor: 0x1af4,
            subsystem: 2,
        });
        c.set_bar(
            0,
            Bar {
                kind: BarKind::Io,
                addr: 0x6000,
                size: 0x100,
            },
        );
        c.set_bar(
            1,
            Bar {
                kind: BarKind::Mem32,
                addr: 0xc000_0000,
                size: 0x4000,
            },
        );
        c.set_interrupt(5, 1);
        c
    }

    #[test]
    fn host_bridge_and_absent_slots() {
        let mut root = PciRoot::new();
        assert_eq!(read32(&mut root, 0, 0), 0x1237_8086);
        assert_eq!(read32(&mut root, 0, 8) >> 8, 0x06_00_00);
        assert_eq!(read32(&mut root, 1, 0), 0xffff_ffff);
        // Disabled mechanism, other buses and functions read as absent.
        root.write(0, 0, &0u32.to_le_bytes());
        let mut d = [0u8; 2];
        root.read(0, 4, &mut d);
        assert_eq!(d, [0xff, 0xff]);
        root.write(0, 0, &(0x8001_0000u32).to_le_bytes());
        root.read(0, 4, &mut d);
        assert_eq!(d, [0xff, 0xff]);
        root.write(0, 0, &(0x8000_0100u32).to_le_bytes());
        root.read(0, 4, &mut d);
        assert_eq!(d, [0xff, 0xff]);
        // The address register reads back.
        let mut a = [0u8; 4];
        root.read(0, 0, &mut a);
        assert_eq!(u32::from_le_bytes(a), 0x8000_0100);
    }

    struct Dev(PciConfig);
    impl PciDevice for Dev {
        fn config(&self) -> &PciConfig {
            &self.0
        }
        fn config_mut(&mut self) -> &mut PciConfig {
            &mut self.0
        }
    }

    #[test]
    fn byte_word_dword_access_at_any_offset() {
        let mut root = PciRoot::new();
        assert_eq!(root.add(Arc::new(Mutex::new(Dev(device())))), Ok(1));
        assert_eq!(read32(&mut root, 1, 0), 0x1001_1af4);
        root.write(0, 0, &addr(1, 0x2c));
        let mut w = [0u8; 2];
        root.read(0, 6, &mut w);
        assert_eq!(u16::from_le_bytes(w), 2, "subsystem id through 0xCFE");
        let mut b = [0u8; 1];
        root.read(0, 5, &mut b);
        assert_eq!(b[0], 0x1a);
        root.write(0, 0, &addr(1, 0x3c));
        root.read(0, 4, &mut b);
        assert_eq!(b[0], 5, "interrupt line");
        root.read(0, 5, &mut b);
        assert_eq!(b[0], 1, "interrupt pin");
        // Interrupt line is writable, pin is not.
        root.write(0, 4, &[9, 3]);
        assert_eq!(read32(&mut root, 1, 0x3c) & 0xffff, 0x0109);
        // Vendor ID is read-only.
        root.write(0, 0, &addr(1, 0));
        root.write(0, 4, &[0, 0]);
        assert_eq!(read32(&mut root, 1, 0), 0x1001_1af4);
    }

    #[test]
    fn bar_sizing_and_write_back() {
        let mut c = device();
        let mut d = [0u8; 4];
        c.write(0x10, &[0xff; 4]);
        c.read(0x10, &mut d);
        assert_eq!(u32::from_le_bytes(d), 0xffff_ff01, "I/O BAR of 256 ports");
        c.write(0x10, &0x6000u32.to_le_bytes());
        c.read(0x10, &mut d);
        assert_eq!(u32::from_le_bytes(d), 0x6001);
        c.write(0x14, &[0xff; 4]);
        c.read(0x14, &mut d);
        assert_eq!(u32::from_le_bytes(d), 0xffff_c000, "16 KiB memory BAR");
        // Relocation is not honoured: the BAR stays where its device is.
        c.write(0x14, &0xd000_0000u32.to_le_bytes());
        c.read(0x14, &mut d);
        assert_eq!(u32::from_le_bytes(d), 0xc000_0000);
        // Unimplemented BARs size to 0.
        c.write(0x18, &[0xff; 4]);
        c.read(0x18, &mut d);
        assert_eq!(u32::from_le_bytes(d), 0);
    }

    #[test]
    fn capabilities_are_linked() {
        let mut c = device();
        assert_eq!(c.add_capability(&[0x09, 0xaa, 16, 1]).unwrap(), 0x40);
        assert_eq!(c.add_capability(&[0x09, 0, 20, 2, 0, 0]).unwrap(), 0x44);
        let mut b = [0u8; 2];
        c.read(0x34, &mut b[..1]);
        assert_eq!(b[0], 0x40);
        c.read(0x40, &mut b);
        assert_eq!(b, [0x09, 0x44]);
        c.read(0x44, &mut b);
        assert_eq!(b, [0x09, 0]);
        c.read(0x06, &mut b[..1]);
        assert_eq!(b[0] & 0x10, 0x10);
        assert!(c.add_capability(&[0u8; 200]).is_err());
    }

    #[test]
    fn slots_run_out() {
        let mut root = PciRoot::new();
        for _ in 1..SLOTS {
            root.add(Arc::new(Mutex::new(HostBridge::default())))
                .unwrap();
        }
        assert_eq!(root.free_slots(), 0);
        assert_eq!(
            root.add(Arc::new(Mutex::new(HostBridge::default()))),
            Err(Error::NoFreeSlot)
        );
    }
}
