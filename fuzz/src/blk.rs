//! virtio-blk: hostile chains against real guest memory and an in-memory
//! image. Invariants: no panic; no write outside device-writable buffers
//! and the used ring; a read-only image never written (the backend is
//! never even asked); no access past the image.

use crate::queue::{Ring, DATA, F_NEXT, F_WRITE};
use crate::{signature, Rng, Target};
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use ukvm_devices::irq::LevelIrq;
use ukvm_devices::virtio::{Interrupt, VirtioDevice};
use ukvm_virtio_blk::disk::{Backend, Disk};
use ukvm_virtio_blk::Block;
use vm_memory::{Bytes, GuestAddress, VolatileSlice};

/// Size of the fuzzed images, in sectors.
pub(crate) const SECTORS: u64 = 16;

/// An image in memory that records what should never happen.
#[derive(Clone, Default)]
pub(crate) struct MemDisk {
    pub(crate) data: Arc<Mutex<Vec<u8>>>,
    /// Accesses past the end, and writes while read-only.
    pub(crate) violations: Arc<AtomicU64>,
    pub(crate) read_only: bool,
}

impl MemDisk {
    fn range(&self, offset: u64, len: usize) -> Option<std::ops::Range<usize>> {
        let start = usize::try_from(offset).ok()?;
        let end = start.checked_add(len)?;
        (end as u64 <= SECTORS * 512).then_some(start..end)
    }
}

impl Backend for MemDisk {
    fn read_vectored_at(&mut self, bufs: &[VolatileSlice<'_>], offset: u64) -> io::Result<usize> {
        let total = bufs.iter().map(|b| b.len()).sum();
        let Some(r) = self.range(offset, total) else {
            self.violations.fetch_add(1, Ordering::Relaxed);
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        };
        let data = self.data.lock().map_err(|_| io::Error::other("poisoned"))?;
        let mut at = r.start;
        for b in bufs {
            b.copy_from(&data[at..at + b.len()]);
            at += b.len();
        }
        Ok(total)
    }

    fn write_vectored_at(&mut self, bufs: &[VolatileSlice<'_>], offset: u64) -> io::Result<usize> {
        let total = bufs.iter().map(|b| b.len()).sum();
        let range = self.range(offset, total);
        let (Some(r), false) = (range, self.read_only) else {
            self.violations.fetch_add(1, Ordering::Relaxed);
            return Err(io::Error::from_raw_os_error(libc::EIO));
        };
        let mut data = self.data.lock().map_err(|_| io::Error::other("poisoned"))?;
        let mut at = r.start;
        for b in bufs {
            b.copy_to(&mut data[at..at + b.len()]);
            at += b.len();
        }
        Ok(total)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The bytes every fuzzed image starts with.
pub(crate) fn pattern() -> Vec<u8> {
    (0..SECTORS * 512).map(|i| (i * 7) as u8).collect()
}

struct NoIrq;
impl LevelIrq for NoIrq {
    fn set_level(&self, _high: bool) -> io::Result<()> {
        Ok(())
    }
}

/// The virtio-blk target.
#[derive(Default)]
pub struct Blk {
    ring: Ring,
}

impl Target for Blk {
    fn name(&self) -> String {
        "virtio-blk chains".into()
    }

    fn units(&self) -> Option<(&'static str, u64)> {
        Some(("chains", self.ring.published))
    }

    fn one(&mut self, rng: &mut Rng) -> Result<u64, String> {
        let read_only = rng.one_in(3);
        let disk = MemDisk {
            read_only,
            ..Default::default()
        };
        let image = pattern();
        *disk.data.lock().map_err(|_| "poisoned")? = image.clone();
        let mut dev = Block::new(Disk {
            backend: Box::new(disk.clone()),
            sectors: SECTORS,
            read_only,
            serial: *b"ukvm-fuzz-serial-000",
            name: "fuzz".into(),
        })
        .map_err(|e| e.to_string())?;
        let ring = &mut self.ring;
        ring.reset(rng);
        ring.scramble(rng);
        if rng.one_in(2) {
            well_formed(ring, rng);
        }
        ring.publish_random(rng);
        let irq = Arc::new(Interrupt::new(Box::new(NoIrq)));
        let features = dev.features();
        dev.activate(ring.mem.clone(), features, vec![ring.queue()], irq)
            .map_err(|e| format!("activate: {e:?}"))?;
        let before = ring.snapshot();
        dev.process_queue();
        ring.check_writes(&before)?;
        if disk.violations.load(Ordering::Relaxed) != 0 {
            return Err("the backend was asked past the image or to write a read-only one".into());
        }
        if read_only && *disk.data.lock().map_err(|_| "poisoned")? != image {
            return Err("read-only image changed".into());
        }
        let st = dev.stats();
        Ok(signature(&[
            st.requests.min(3),
            st.failed.min(3),
            u64::from(ring.used_idx() % 4),
            u64::from(read_only),
        ]))
    }
}

/// A request at head 0 (header, data, status) with one field possibly
/// off, so that the I/O paths are reached as well as the refusals.
fn well_formed(ring: &mut Ring, rng: &mut Rng) {
    let header = DATA + 0x100 * rng.below(8);
    let kind = [0u32, 1, 4, 8, rng.bits() as u32][rng.below(5) as usize];
    let _ = ring.mem.write_obj(kind, GuestAddress(header));
    let _ = ring
        .mem
        .write_obj(rng.below(SECTORS + 4), GuestAddress(header + 8));
    let data = DATA + 0x1000 + 512 * rng.below(0x40);
    let data_len = 512 * (1 + rng.below(3)) as u32;
    let data_flags = F_NEXT | if rng.one_in(2) { F_WRITE } else { 0 };
    let status = DATA + 0x800 + rng.below(0x100);
    let chain = [
        (header, 16, F_NEXT),
        (data, data_len, data_flags),
        (status, 1, F_WRITE),
    ];
    for (i, &(addr, len, flags)) in chain.iter().enumerate() {
        let next = if rng.one_in(10) {
            rng.below(16) as u16
        } else {
            i as u16 + 1
        };
        ring.desc(i as u16, addr, len, flags, next);
    }
    ring.publish(0);
}
