//! Guest memory with a hole, a split virtqueue written the way a hostile
//! driver would, and the check that the device wrote only where the driver
//! let it.

use crate::Rng;
use virtio_queue::{Queue, QueueT};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

/// Queue size.
pub const QSIZE: u16 = 16;
/// Descriptor table, available ring, used ring.
pub const DESC: u64 = 0x1000;
/// The available ring.
pub const AVAIL: u64 = 0x2000;
/// The used ring.
pub const USED: u64 = 0x3000;
/// Where well-formed buffers go.
pub const DATA: u64 = 0x10000;
/// RAM: [0, HOLE) and [HOLE_END, RAM_END); the gap is an MMIO hole.
pub const HOLE: u64 = 0x30000;
/// End of the hole.
pub const HOLE_END: u64 = 0x40000;
/// End of RAM.
pub const RAM_END: u64 = 0x50000;
/// Descriptor flags.
pub const F_NEXT: u16 = 1;
/// Device-writable.
pub const F_WRITE: u16 = 2;
/// Indirect table.
pub const F_INDIRECT: u16 = 4;

/// Guest memory with a ring in it.
pub struct Ring {
    /// The guest's RAM (two regions around a hole).
    pub mem: GuestMemoryMmap,
    avail_idx: u16,
    /// Ranges the device may write: device-writable buffers, the used ring.
    pub writable: Vec<(u64, u64)>,
    /// Whether an indirect table, or a buffer over the rings the device
    /// reads, was offered: the writes are then not checked.
    pub indirect: bool,
    /// Chains made available since the ring was created.
    pub published: u64,
}

impl Ring {
    /// Fresh memory and an empty ring.
    pub fn new() -> Ring {
        let mem = GuestMemoryMmap::from_ranges(&[
            (GuestAddress(0), HOLE as usize),
            (GuestAddress(HOLE_END), (RAM_END - HOLE_END) as usize),
        ])
        .expect("guest memory");
        Ring {
            mem,
            avail_idx: 0,
            writable: vec![(USED, USED + 6 + 8 * u64::from(QSIZE))],
            indirect: false,
            published: 0,
        }
    }

    /// Clears RAM and the ring state for the next iteration.
    pub fn reset(&mut self, rng: &mut Rng) {
        let fill = if rng.one_in(2) { 0 } else { rng.bits() as u8 };
        for (start, end) in [(0, HOLE), (HOLE_END, RAM_END)] {
            let _ = self
                .mem
                .write_slice(&vec![fill; (end - start) as usize], GuestAddress(start));
        }
        let _ = self.mem.write_obj(0u64, GuestAddress(AVAIL));
        let _ = self.mem.write_obj(0u64, GuestAddress(USED));
        self.avail_idx = 0;
        self.writable.truncate(1);
        self.indirect = false;
    }

    /// The queue a device reads, set up as a driver would.
    pub fn queue(&self) -> Queue {
        let mut q = Queue::new(QSIZE).expect("queue size");
        q.try_set_desc_table_address(GuestAddress(DESC))
            .expect("desc");
        q.try_set_avail_ring_address(GuestAddress(AVAIL))
            .expect("avail");
        q.try_set_used_ring_address(GuestAddress(USED))
            .expect("used");
        q.set_ready(true);
        q
    }

    /// Writes descriptor `i`, recording what it lets the device write.
    pub fn desc(&mut self, i: u16, addr: u64, len: u32, flags: u16, next: u16) {
        let at = DESC + 16 * u64::from(i % QSIZE);
        let _ = self.mem.write_obj(addr, GuestAddress(at));
        let _ = self.mem.write_obj(len, GuestAddress(at + 8));
        let _ = self.mem.write_obj(flags, GuestAddress(at + 12));
        let _ = self.mem.write_obj(next, GuestAddress(at + 14));
        let end = addr.saturating_add(u64::from(len));
        if flags & F_WRITE != 0 {
            self.writable.push((addr, end));
            // A buffer over the descriptor table or the available ring lets
            // the device rewrite what it reads next: legal, but then the
            // offered ranges are no longer those written here.
            if addr < AVAIL + 0x1000 && end > DESC {
                self.indirect = true;
            }
        }
        if flags & F_INDIRECT != 0 {
            self.indirect = true;
        }
    }

    /// Makes `head` available.
    pub fn publish(&mut self, head: u16) {
        let slot = AVAIL + 4 + 2 * u64::from(self.avail_idx % QSIZE);
        let _ = self.mem.write_obj(head, GuestAddress(slot));
        self.avail_idx = self.avail_idx.wrapping_add(1);
        self.published += 1;
        let _ = self.mem.write_obj(self.avail_idx, GuestAddress(AVAIL + 2));
    }

    /// The used ring's index.
    pub fn used_idx(&self) -> u16 {
        self.mem.read_obj(GuestAddress(USED + 2)).unwrap_or(0)
    }

    /// A copy of all RAM.
    pub fn snapshot(&self) -> Vec<u8> {
        let mut v = vec![0u8; (HOLE + RAM_END - HOLE_END) as usize];
        let (lo, hi) = v.split_at_mut(HOLE as usize);
        let _ = self.mem.read_slice(lo, GuestAddress(0));
        let _ = self.mem.read_slice(hi, GuestAddress(HOLE_END));
        v
    }

    /// Fails if RAM changed outside the writable ranges since `before`.
    pub fn check_writes(&self, before: &[u8]) -> Result<(), String> {
        if self.indirect {
            return Ok(()); // an indirect table's buffers are not tracked
        }
        let after = self.snapshot();
        for (i, (a, b)) in before.iter().zip(&after).enumerate() {
            let addr = if (i as u64) < HOLE {
                i as u64
            } else {
                i as u64 - HOLE + HOLE_END
            };
            if a != b
                && !self
                    .writable
                    .iter()
                    .any(|&(lo, hi)| (lo..hi).contains(&addr))
            {
                return Err(format!(
                    "device wrote {addr:#x}, which the driver did not offer"
                ));
            }
        }
        Ok(())
    }

    /// Random descriptors over the whole table: addresses in the data
    /// area, the hole, past RAM, the rings themselves or the last byte;
    /// lengths up to 4 GiB; loops through `next`; rare indirect flags.
    /// Then a random number of random heads made available.
    pub fn scramble(&mut self, rng: &mut Rng) {
        for i in 0..QSIZE {
            let addr = hostile_addr(rng);
            let len = hostile_len(rng);
            let mut flags = rng.below(4) as u16;
            if rng.one_in(16) {
                flags |= F_INDIRECT;
            }
            let next = rng.below(u64::from(QSIZE) + 2) as u16;
            self.desc(i, addr, len, flags, next);
        }
    }

    /// Publishes a few random heads (some out of range).
    pub fn publish_random(&mut self, rng: &mut Rng) {
        for _ in 0..rng.below(u64::from(QSIZE) + 1) {
            let head = rng.below(u64::from(QSIZE) + 2) as u16;
            self.publish(head);
        }
    }
}

impl Default for Ring {
    fn default() -> Self {
        Self::new()
    }
}

/// An address a compromised driver would try.
pub fn hostile_addr(rng: &mut Rng) -> u64 {
    match rng.below(9) {
        0 => HOLE + rng.below(HOLE_END - HOLE),
        1 => RAM_END - rng.below(64),
        2 => RAM_END + rng.below(1 << 20),
        3 => [DESC, AVAIL, USED][rng.below(3) as usize] + rng.below(64),
        4 => rng.bits(),
        5 => HOLE - rng.below(32),
        _ => DATA + rng.below(HOLE - DATA),
    }
}

/// A length a compromised driver would try.
pub fn hostile_len(rng: &mut Rng) -> u32 {
    match rng.below(7) {
        0 => u32::MAX,
        1 => 0,
        2 => 1,
        3 => rng.bits() as u32,
        _ => 16 * rng.below(512) as u32,
    }
}
