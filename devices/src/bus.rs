//! An address-range bus shared by port I/O and MMIO. Lookups happen on every
//! VM exit, so they are a binary search over a sorted vector: no allocation,
//! no hashing.

use std::sync::{Arc, Mutex};
use thiserror::Error;

/// What a device write asks the monitor to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// End the run; the guest asked for this process exit status.
    Exit(i32),
    /// The guest asked for a machine reset (ends the run).
    Reset,
    /// The guest powered the machine off (ACPI S5; ends the run).
    PowerOff,
    /// The guest signalled it is ready (boot-time measurement).
    Ready,
    /// The guest made a request the monitor cannot serve (a hypercall
    /// argument outside guest memory, an unknown call): end the run with a
    /// crash that says so.
    GuestFault(GuestFault),
}

/// What was wrong with a guest request (Copy, so events stay cheap).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuestFault {
    /// What the guest asked for ("puts data", "unknown hypercall").
    pub what: &'static str,
    /// The guest address (or number) at fault.
    pub addr: u64,
    /// Length of the range at fault; 0 when `addr` is not a range.
    pub len: u64,
}

impl std::fmt::Display for GuestFault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.len == 0 {
            write!(f, "{} ({:#x})", self.what, self.addr)
        } else {
            write!(
                f,
                "{}: [{:#x}, +{:#x}) lies outside guest memory",
                self.what, self.addr, self.len
            )
        }
    }
}

/// A device on a [`Bus`]. `base` is the start of the range the access hit
/// (a device may sit on several ranges), `offset` is relative to it.
pub trait BusDevice: Send {
    /// Fills `data` for a read. Devices must fill every byte.
    fn read(&mut self, base: u64, offset: u64, data: &mut [u8]);
    /// Handles a write.
    fn write(&mut self, base: u64, offset: u64, data: &[u8]) -> Option<Event>;
}

/// A device shared between the bus and whoever else drives it.
pub type SharedDevice = Arc<Mutex<dyn BusDevice>>;

/// Errors building a bus.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum Error {
    /// Two devices claim overlapping ranges.
    #[error("bus range [{base:#x}, +{len:#x}) overlaps an existing device")]
    Overlap {
        /// Start of the refused range.
        base: u64,
        /// Its length.
        len: u64,
    },
    /// A zero-length range.
    #[error("bus range at {0:#x} has length 0")]
    Empty(u64),
}

struct Range {
    base: u64,
    len: u64,
    device: SharedDevice,
}

/// Accesses that no device claimed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Unclaimed {
    /// Reads answered with all-ones.
    pub reads: u64,
    /// Writes ignored.
    pub writes: u64,
}

/// A set of non-overlapping address ranges, each owned by a device.
#[derive(Default)]
pub struct Bus {
    ranges: Vec<Range>,
    unclaimed: Unclaimed,
}

impl Bus {
    /// An empty bus.
    pub fn new() -> Self {
        Self::default()
    }

    /// Puts `device` at `[base, base + len)`.
    pub fn insert(&mut self, base: u64, len: u64, device: SharedDevice) -> Result<(), Error> {
        if len == 0 {
            return Err(Error::Empty(base));
        }
        let end = base.checked_add(len).ok_or(Error::Overlap { base, len })?;
        let pos = self.ranges.partition_point(|r| r.base < base);
        let overlaps_prev = pos > 0 && {
            let p = &self.ranges[pos - 1];
            p.base + p.len > base
        };
        let overlaps_next = self.ranges.get(pos).is_some_and(|n| n.base < end);
        if overlaps_prev || overlaps_next {
            return Err(Error::Overlap { base, len });
        }
        self.ranges.insert(pos, Range { base, len, device });
        Ok(())
    }

    fn find(&self, addr: u64, len: usize) -> Option<&Range> {
        let pos = self.ranges.partition_point(|r| r.base <= addr);
        let r = self.ranges.get(pos.checked_sub(1)?)?;
        (addr - r.base + len as u64 <= r.len).then_some(r)
    }

    /// Dispatches a read; unclaimed addresses read as all-ones.
    pub fn read(&mut self, addr: u64, data: &mut [u8]) {
        match self.find(addr, data.len()) {
            Some(r) => lock(&r.device).read(r.base, addr - r.base, data),
            None => {
                self.unclaimed.reads += 1;
                data.fill(0xff);
            }
        }
    }

    /// Dispatches a write; unclaimed writes are ignored (and counted).
    pub fn write(&mut self, addr: u64, data: &[u8]) -> Option<Event> {
        match self.find(addr, data.len()) {
            Some(r) => lock(&r.device).write(r.base, addr - r.base, data),
            None => {
                self.unclaimed.writes += 1;
                None
            }
        }
    }

    /// How many accesses hit no device so far.
    pub fn unclaimed(&self) -> Unclaimed {
        self.unclaimed
    }
}

/// Locks a device. A device whose lock is poisoned panicked while handling
/// an access; its state is still the best we have, so keep using it rather
/// than taking the monitor down.
pub fn lock<T: ?Sized>(device: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    device
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Reads a little-endian value of 1, 2, 4 or 8 bytes.
pub fn le_value(data: &[u8]) -> u64 {
    let mut bytes = [0u8; 8];
    let n = data.len().min(8);
    bytes[..n].copy_from_slice(&data[..n]);
    u64::from_le_bytes(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Reg(Vec<(u64, u64, u8)>);
    impl BusDevice for Reg {
        fn read(&mut self, _base: u64, offset: u64, data: &mut [u8]) {
            data.fill(offset as u8);
        }
        fn write(&mut self, base: u64, offset: u64, data: &[u8]) -> Option<Event> {
            self.0.push((base, offset, data[0]));
            (data[0] == 0xee).then_some(Event::Reset)
        }
    }

    #[test]
    fn dispatches_by_range_and_counts_unclaimed() {
        let mut bus = Bus::new();
        let dev: Arc<Mutex<Reg>> = Arc::new(Mutex::new(Reg(vec![])));
        bus.insert(0x3f8, 8, dev.clone()).unwrap();
        bus.insert(0x100, 4, dev.clone()).unwrap();
        let mut b = [0u8; 1];
        bus.read(0x3fd, &mut b);
        assert_eq!(b[0], 5);
        assert_eq!(bus.write(0x101, &[1]), None);
        assert_eq!(bus.write(0x3f8, &[0xee]), Some(Event::Reset));
        assert_eq!(dev.lock().unwrap().0, vec![(0x100, 1, 1), (0x3f8, 0, 0xee)]);
        let mut w = [0u8; 2];
        bus.read(0x400, &mut w);
        assert_eq!(w, [0xff, 0xff]);
        // An access straddling the end of a range is not the device's.
        bus.read(0x3ff, &mut w);
        assert_eq!(w, [0xff, 0xff]);
        assert_eq!(bus.write(0x50, &[1]), None);
        assert_eq!(
            bus.unclaimed(),
            Unclaimed {
                reads: 2,
                writes: 1
            }
        );
    }

    #[test]
    fn overlapping_ranges_are_refused() {
        let mut bus = Bus::new();
        let dev: SharedDevice = Arc::new(Mutex::new(Reg(vec![])));
        bus.insert(0x10, 0x10, dev.clone()).unwrap();
        assert!(bus.insert(0x18, 4, dev.clone()).is_err());
        assert!(bus.insert(0x8, 9, dev.clone()).is_err());
        assert!(bus.insert(0x0, 0, dev.clone()).is_err());
        assert!(bus.insert(u64::MAX, 2, dev.clone()).is_err());
        bus.insert(0x20, 1, dev.clone()).unwrap();
        bus.insert(0x0, 0x10, dev).unwrap();
    }
}
