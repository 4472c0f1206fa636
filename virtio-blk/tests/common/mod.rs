//! Guest memory, a split virtqueue written by hand, and an in-memory disk,
//! for driving the block device the way a guest driver would.
#![allow(dead_code)]

use std::io;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use ukvm_devices::irq::LevelIrq;
use ukvm_devices::virtio::{Interrupt, VirtioDevice};
use ukvm_virtio_blk::disk::{Backend, Disk};
use ukvm_virtio_blk::Block;
use virtio_queue::{Queue, QueueT};
use vm_memory::{Address, Bytes, GuestAddress, GuestMemoryMmap, VolatileSlice};

pub const MEM_SIZE: usize = 1 << 20;
pub const DESC: u64 = 0x1000;
pub const AVAIL: u64 = 0x2000;
pub const USED: u64 = 0x3000;
pub const QSIZE: u16 = 16;
pub const F_NEXT: u16 = 1;
pub const F_WRITE: u16 = 2;

/// A disk image in a vector, with a flush counter and an error switch.
#[derive(Clone, Default)]
pub struct MemDisk {
    pub data: Arc<Mutex<Vec<u8>>>,
    pub flushes: Arc<AtomicUsize>,
    pub fail: Arc<AtomicBool>,
    /// Writes that reached past the end of the image.
    pub overruns: Arc<AtomicUsize>,
}

impl Backend for MemDisk {
    fn read_vectored_at(&mut self, bufs: &[VolatileSlice<'_>], offset: u64) -> io::Result<usize> {
        if self.fail.load(Ordering::SeqCst) {
            return Err(io::Error::from_raw_os_error(libc::EIO));
        }
        let data = self.data.lock().unwrap();
        let mut at = offset as usize;
        for b in bufs {
            b.copy_from(&data[at..at + b.len()]);
            at += b.len();
        }
        Ok(at - offset as usize)
    }

    fn write_vectored_at(&mut self, bufs: &[VolatileSlice<'_>], offset: u64) -> io::Result<usize> {
        if self.fail.load(Ordering::SeqCst) {
            return Err(io::Error::from_raw_os_error(libc::EIO));
        }
        let mut data = self.data.lock().unwrap();
        let mut at = offset as usize;
        for b in bufs {
            if at + b.len() > data.len() {
                self.overruns.fetch_add(1, Ordering::SeqCst);
                return Err(io::Error::from_raw_os_error(libc::ENOSPC));
            }
            b.copy_to(&mut data[at..at + b.len()]);
            at += b.len();
        }
        Ok(at - offset as usize)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.flushes.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

/// Records the interrupt line.
#[derive(Clone, Default)]
pub struct Line(pub Arc<Mutex<Vec<bool>>>);
impl LevelIrq for Line {
    fn set_level(&self, high: bool) -> io::Result<()> {
        self.0.lock().unwrap().push(high);
        Ok(())
    }
}

/// A block device over a `sectors`-sector in-memory image filled with a
/// pattern, activated on a 16-entry queue.
pub struct Rig {
    pub mem: GuestMemoryMmap,
    pub dev: Block,
    pub disk: MemDisk,
    pub irq: Arc<Interrupt>,
    pub next_desc: u16,
    pub avail_idx: u16,
}

pub fn pattern(i: usize) -> u8 {
    (i * 7 + i / 512) as u8
}

impl Rig {
    pub fn new(sectors: u64, read_only: bool) -> Rig {
        let disk = MemDisk::default();
        *disk.data.lock().unwrap() = (0..sectors as usize * 512).map(pattern).collect();
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), MEM_SIZE)]).unwrap();
        let mut dev = Block::new(Disk {
            backend: Box::new(disk.clone()),
            sectors,
            read_only,
            serial: *b"ukvm-test-serial-000",
            name: "test".into(),
        })
        .unwrap();
        let mut q = Queue::new(QSIZE).unwrap();
        q.try_set_desc_table_address(GuestAddress(DESC)).unwrap();
        q.try_set_avail_ring_address(GuestAddress(AVAIL)).unwrap();
        q.try_set_used_ring_address(GuestAddress(USED)).unwrap();
        q.set_ready(true);
        let irq = Arc::new(Interrupt::new(Box::new(Line::default())));
        dev.activate(mem.clone(), dev.features(), vec![q], irq.clone())
            .unwrap();
        Rig {
            mem,
            dev,
            disk,
            irq,
            next_desc: 0,
            avail_idx: 0,
        }
    }

    /// Writes descriptor `i`.
    pub fn desc(&self, i: u16, addr: u64, len: u32, flags: u16, next: u16) {
        let at = GuestAddress(DESC + 16 * u64::from(i));
        self.mem.write_obj(addr, at).unwrap();
        self.mem.write_obj(len, at.unchecked_add(8)).unwrap();
        self.mem.write_obj(flags, at.unchecked_add(12)).unwrap();
        self.mem.write_obj(next, at.unchecked_add(14)).unwrap();
    }

    /// Makes head `head` available.
    pub fn publish(&mut self, head: u16) {
        let slot = AVAIL + 4 + 2 * u64::from(self.avail_idx % QSIZE);
        self.mem.write_obj(head, GuestAddress(slot)).unwrap();
        self.avail_idx = self.avail_idx.wrapping_add(1);
        self.mem
            .write_obj(self.avail_idx, GuestAddress(AVAIL + 2))
            .unwrap();
    }

    /// Adds a chain of (addr, len, device-writable) buffers; returns head.
    pub fn chain(&mut self, bufs: &[(u64, u32, bool)]) -> u16 {
        let head = self.next_desc;
        for (k, &(addr, len, write)) in bufs.iter().enumerate() {
            let i = self.next_desc;
            let last = k + 1 == bufs.len();
            let flags = if write { F_WRITE } else { 0 } | if last { 0 } else { F_NEXT };
            self.desc(i, addr, len, flags, (i + 1) % QSIZE);
            self.next_desc = (i + 1) % QSIZE;
        }
        self.publish(head);
        head
    }

    /// A request: header at 0x10000, status byte at 0x10100, data buffers.
    pub fn request(&mut self, kind: u32, sector: u64, data: &[(u64, u32)], write: bool) -> u16 {
        let hdr = GuestAddress(0x10000);
        self.mem.write_obj(kind, hdr).unwrap();
        self.mem.write_obj(0u32, hdr.unchecked_add(4)).unwrap();
        self.mem.write_obj(sector, hdr.unchecked_add(8)).unwrap();
        self.mem.write_obj(0xffu8, GuestAddress(0x10100)).unwrap();
        let mut bufs = vec![(0x10000, 16, false)];
        bufs.extend(data.iter().map(|&(a, l)| (a, l, write)));
        bufs.push((0x10100, 1, true));
        self.chain(&bufs)
    }

    pub fn status(&self) -> u8 {
        self.mem.read_obj(GuestAddress(0x10100)).unwrap()
    }

    pub fn used_idx(&self) -> u16 {
        self.mem.read_obj(GuestAddress(USED + 2)).unwrap()
    }

    /// The used element `n`: (head, len).
    pub fn used(&self, n: u16) -> (u32, u32) {
        let at = GuestAddress(USED + 4 + 8 * u64::from(n % QSIZE));
        (
            self.mem.read_obj(at).unwrap(),
            self.mem.read_obj(at.unchecked_add(4)).unwrap(),
        )
    }

    pub fn run(&mut self) {
        self.dev.process_queue();
    }

    pub fn guest(&self, addr: u64, len: usize) -> Vec<u8> {
        let mut v = vec![0u8; len];
        self.mem.read_slice(&mut v, GuestAddress(addr)).unwrap();
        v
    }
}
