//! The Solo5 hvt hypercall handlers with guest-controlled argument
//! structures: pointers at the last byte of RAM, into the hole between
//! RAM regions and past RAM, 4 GiB lengths, bad handles and offsets, on a
//! read-write and a read-only disk. Invariants: no panic; a read-only
//! image unchanged; the disk backend never asked past the image.

use crate::blk::{pattern, MemDisk, SECTORS};
use crate::{signature, Rng, Target};
use std::sync::atomic::Ordering;
use ukvm_boot::hvt::call;
use ukvm_devices::Event;
use ukvm_virtio_blk::disk::Disk;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

/// RAM: [0, 1 MiB) and [2 MiB, 3 MiB).
const LOW_END: u64 = 1 << 20;
const HIGH: u64 = 2 << 20;
const RAM_END: u64 = 3 << 20;
/// Where argument structures usually go.
const ARGS: u64 = 0x8000;

/// The hypercall target.
pub struct Hvt {
    mem: GuestMemoryMmap,
    calls: u64,
}

impl Default for Hvt {
    fn default() -> Self {
        let mem = GuestMemoryMmap::from_ranges(&[
            (GuestAddress(0), LOW_END as usize),
            (GuestAddress(HIGH), (RAM_END - HIGH) as usize),
        ])
        .expect("guest memory");
        Hvt { mem, calls: 0 }
    }
}

fn pointer(rng: &mut Rng) -> u64 {
    match rng.below(8) {
        0 => RAM_END - 1,
        1 => RAM_END - rng.below(64),
        2 => LOW_END + rng.below(HIGH - LOW_END),
        3 => RAM_END + rng.below(1 << 20),
        4 => rng.edgy(),
        _ => 0x10000 + rng.below(0x10000),
    }
}

fn field(rng: &mut Rng) -> u64 {
    match rng.below(6) {
        0 => pointer(rng),
        1 => rng.below(4),
        2 => 512 * rng.below(SECTORS + 2),
        3 => [0, 1, 512, 4096, 1 << 32, u64::MAX][rng.below(6) as usize],
        _ => rng.edgy(),
    }
}

impl Target for Hvt {
    fn name(&self) -> String {
        "hvt hypercalls".into()
    }

    fn units(&self) -> Option<(&'static str, u64)> {
        Some(("hypercalls", self.calls))
    }

    fn one(&mut self, rng: &mut Rng) -> Result<u64, String> {
        let disks: Vec<(u64, MemDisk, bool)> = (0..2u64)
            .map(|h| {
                let d = MemDisk {
                    read_only: h == 1,
                    ..Default::default()
                };
                if let Ok(mut data) = d.data.lock() {
                    *data = pattern();
                }
                (h, d, h == 1)
            })
            .collect();
        let attached = disks
            .iter()
            .map(|(h, d, ro)| {
                let disk = Disk {
                    backend: Box::new(d.clone()),
                    sectors: SECTORS,
                    read_only: *ro,
                    serial: [0; 20],
                    name: format!("disk{h}"),
                };
                (*h, disk)
            })
            .collect();
        let mut dev =
            ukvm::fuzz_hooks::hvt_hypercalls(self.mem.clone(), Box::new(std::io::sink()), attached);
        let mut events = 0u64;
        for _ in 0..1 + rng.below(4) {
            let nr = rng.below(u64::from(call::HALT) + 3);
            // The port takes a 32-bit address.
            let gpa = u64::from(if rng.one_in(3) {
                pointer(rng)
            } else {
                ARGS + rng.below(64)
            } as u32);
            for k in 0..6 {
                let _ = self
                    .mem
                    .write_obj(field(rng), GuestAddress(gpa.wrapping_add(8 * k)));
            }
            if nr == u64::from(call::POLL) {
                // Keep the wait short: a timeout is the guest's to choose,
                // but the fuzzer has no time to sleep.
                let _ = self.mem.write_obj(rng.below(1000), GuestAddress(gpa));
            }
            let width = [4usize, 4, 4, 1, 2, 8][rng.below(6) as usize];
            let data = &(gpa as u32).to_le_bytes().repeat(2)[..width];
            self.calls += 1;
            match dev.write(0x500, nr, data) {
                None => {}
                Some(Event::GuestFault(_)) => events |= 1,
                Some(Event::Exit(_)) => events |= 2,
                Some(_) => events |= 4,
            }
        }
        for (_, d, ro) in &disks {
            if d.violations.load(Ordering::Relaxed) != 0 {
                return Err(
                    "the disk backend was asked past the image or to write a read-only one".into(),
                );
            }
            if *ro && *d.data.lock().map_err(|_| "poisoned")? != pattern() {
                return Err("read-only image changed".into());
            }
        }
        Ok(signature(&[events]))
    }
}
