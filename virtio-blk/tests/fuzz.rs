//! Property test: random descriptor tables and rings fed to the block
//! device. It must never panic, never write guest memory the driver did not
//! mark device-writable (other than the used ring), never write past the
//! image, and never write a read-only image.

mod common;

use common::*;
use vm_memory::{Bytes, GuestAddress};

/// xorshift64*: deterministic, so a failure names its seed.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const HEADERS: u64 = 0x10000;

fn random_addr(r: &mut Rng) -> u64 {
    match r.below(6) {
        0 => HEADERS + 0x100 * r.below(8),
        1 => MEM_SIZE as u64 - r.below(1024),
        2 => r.next(),
        _ => 0x20000 + r.below(0x80000),
    }
}

fn random_len(r: &mut Rng) -> u32 {
    match r.below(5) {
        0 => 16,
        1 => 1,
        2 => r.next() as u32,
        _ => 512 * r.below(5) as u32 + r.below(2) as u32 * r.below(512) as u32,
    }
}

/// Fills the ring and the request headers at random; returns the ranges
/// the device may write.
fn scramble(rig: &mut Rig, r: &mut Rng, indirect: bool) -> Vec<(u64, u64)> {
    let mut writable = vec![(USED, USED + 6 + 8 * u64::from(QSIZE))];
    for k in 0..8 {
        let kind = [0u32, 1, 4, 8, r.next() as u32][r.below(5) as usize];
        let at = GuestAddress(HEADERS + 0x100 * k);
        rig.mem.write_obj(kind, at).unwrap();
        rig.mem
            .write_obj(r.below(12), GuestAddress(at.0 + 8))
            .unwrap();
    }
    for i in 0..QSIZE {
        let (addr, len) = (random_addr(r), random_len(r));
        let mut flags = (r.below(4) as u16) & (F_NEXT | F_WRITE);
        if indirect && r.below(8) == 0 {
            flags |= 4;
        }
        if flags & F_WRITE != 0 {
            writable.push((addr, addr.saturating_add(u64::from(len))));
        }
        rig.desc(i, addr, len, flags, r.below(u64::from(QSIZE) + 2) as u16);
    }
    // Half the time, a well-formed request at head 0 (header, data, status)
    // with one field possibly off, so the I/O paths are reached too.
    if r.below(2) == 0 {
        let header = HEADERS + 0x100 * r.below(8);
        let data = 0x20000 + 512 * r.below(0x100);
        let data_len = 512 * (1 + r.below(3)) as u32;
        let data_flags = F_NEXT | if r.below(2) == 0 { F_WRITE } else { 0 };
        let chain = [
            (header, 16, F_NEXT),
            (data, data_len, data_flags),
            (0x10f00 + r.below(0x100), 1, F_WRITE),
        ];
        for (i, &(addr, len, flags)) in chain.iter().enumerate() {
            let next = if r.below(10) == 0 {
                r.below(u64::from(QSIZE)) as u16
            } else {
                i as u16 + 1
            };
            if flags & F_WRITE != 0 {
                writable.push((addr, addr + u64::from(len)));
            }
            rig.desc(i as u16, addr, len, flags, next);
        }
        rig.publish(0);
    }
    let n = r.below(u64::from(QSIZE) + 1) as u16;
    for _ in 0..n {
        let head = r.below(u64::from(QSIZE) + 2) as u16;
        rig.publish(head);
    }
    writable
}

/// Runs one random ring; returns (requests, failed).
fn run(seed: u64, read_only: bool, indirect: bool) -> (u64, u64) {
    let mut r = Rng(seed);
    let mut rig = Rig::new(8, read_only);
    let image = rig.disk.data.lock().unwrap().clone();
    let writable = scramble(&mut rig, &mut r, indirect);
    let before = rig.guest(0, MEM_SIZE);
    rig.run();
    let stats = rig.dev.stats();
    assert_eq!(
        rig.disk.overruns.load(std::sync::atomic::Ordering::SeqCst),
        0
    );
    if read_only {
        assert_eq!(*rig.disk.data.lock().unwrap(), image, "seed {seed}");
    }
    if indirect {
        return (stats.requests, stats.failed); // writable set unknowable
    }
    let after = rig.guest(0, MEM_SIZE);
    for (i, (a, b)) in before.iter().zip(&after).enumerate() {
        let addr = i as u64;
        if a != b {
            assert!(
                writable.iter().any(|&(lo, hi)| (lo..hi).contains(&addr)),
                "seed {seed}: device wrote {addr:#x}, which the driver did not offer"
            );
        }
    }
    (stats.requests, stats.failed)
}

#[test]
fn random_rings_never_panic_nor_stray() {
    let (mut requests, mut failed) = (0, 0);
    for seed in 1..300u64 {
        let (n, f) = run(seed * 0x9e37_79b9, seed % 3 == 0, false);
        requests += n;
        failed += f;
    }
    eprintln!("fuzz: {requests} requests, {failed} failed");
    // The generator must reach the I/O paths, not only the rejections.
    assert!(
        requests > 1000 && failed < requests,
        "{requests} requests, {failed} failed"
    );
}

#[test]
fn random_rings_with_indirect_descriptors_never_panic() {
    for seed in 1..150u64 {
        run(seed * 0x85eb_ca6b, seed % 2 == 0, true);
    }
}
