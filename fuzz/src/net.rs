//! virtio-net: hostile transmit and receive chains against real guest
//! memory, over a fake TAP that checks every iovec it is handed lies in
//! guest RAM. Invariants: no panic; no iovec outside RAM; no write outside
//! device-writable buffers and the used ring.

use crate::queue::{Ring, DATA, F_NEXT, F_WRITE};
use crate::{signature, Rng, Target};
use std::io;
use ukvm_virtio_net::features::{negotiate, VERSION_1};
use ukvm_virtio_net::rx::Rx;
use ukvm_virtio_net::tx::Tx;
use ukvm_virtio_net::{Backend, Stats};
use vm_memory::{GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion};

/// A TAP with frames queued for the guest.
struct FakeTap {
    frames: Vec<Vec<u8>>,
    /// Host ranges of guest RAM.
    ram: Vec<(usize, usize)>,
    /// An iovec outside guest RAM.
    stray: Option<String>,
    sent: u64,
}

impl FakeTap {
    fn check(&mut self, iov: &[libc::iovec]) -> bool {
        for v in iov {
            let (lo, len) = (v.iov_base as usize, v.iov_len);
            let inside = self
                .ram
                .iter()
                .any(|&(a, n)| lo >= a && lo.checked_add(len).is_some_and(|e| e <= a + n));
            if !inside && len > 0 {
                self.stray = Some(format!("iovec {lo:#x}+{len:#x} outside guest RAM"));
                return false;
            }
        }
        true
    }
}

impl Backend for FakeTap {
    fn read_frame(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let f = self.frames.pop().ok_or(io::ErrorKind::WouldBlock)?;
        let n = f.len().min(buf.len());
        buf[..n].copy_from_slice(&f[..n]);
        Ok(n)
    }

    fn read_frame_iov(&mut self, iov: &[libc::iovec]) -> io::Result<usize> {
        // The last iovec is the device's own spare byte (it tells a frame
        // that filled the chain from one that did not fit).
        let guest = &iov[..iov.len().saturating_sub(1)];
        if !self.check(guest) {
            // Stops the receive loop; the stray is reported.
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let f = self.frames.pop().ok_or(io::ErrorKind::WouldBlock)?;
        let mut rest = &f[..];
        for v in iov {
            let n = rest.len().min(v.iov_len);
            // SAFETY: `check` found every iovec inside guest RAM, which the
            // Ring keeps mapped for the whole iteration.
            unsafe { std::ptr::copy_nonoverlapping(rest.as_ptr(), v.iov_base.cast(), n) };
            rest = &rest[n..];
        }
        Ok(f.len() - rest.len())
    }

    fn write_frame(&mut self, iov: &[libc::iovec]) -> io::Result<usize> {
        if !self.check(iov) {
            return Err(io::Error::from_raw_os_error(libc::EFAULT));
        }
        self.sent += 1;
        Ok(iov.iter().map(|v| v.iov_len).sum())
    }
}

fn host_ranges(mem: &GuestMemoryMmap) -> Vec<(usize, usize)> {
    mem.iter()
        .filter_map(|r| {
            let host = mem.get_host_address(r.start_addr()).ok()?;
            Some((host as usize, r.len() as usize))
        })
        .collect()
}

/// The virtio-net target: transmit or receive, legacy or merged buffers.
#[derive(Default)]
pub struct Net {
    ring: Ring,
}

impl Target for Net {
    fn name(&self) -> String {
        "virtio-net chains".into()
    }

    fn units(&self) -> Option<(&'static str, u64)> {
        Some(("chains", self.ring.published))
    }

    fn one(&mut self, rng: &mut Rng) -> Result<u64, String> {
        let transmit = rng.one_in(2);
        let acked = [0, VERSION_1, 1 << 15, rng.bits()][rng.below(4) as usize];
        let neg = negotiate(acked);
        let ring = &mut self.ring;
        ring.reset(rng);
        ring.scramble(rng);
        if rng.one_in(2) {
            // A plausible chain at head 0: header then frame.
            let flags = if transmit { 0 } else { F_WRITE };
            ring.desc(0, DATA, neg.hdr_len as u32, flags | F_NEXT, 1);
            let len = rng.below(2000) as u32;
            ring.desc(1, DATA + 0x100, len, flags, 2);
            ring.publish(0);
        }
        ring.publish_random(rng);
        let frames = (0..rng.below(4))
            .map(|_| {
                let n = [0, 10, 12, 60, 1514, 65550][rng.below(6) as usize] + rng.below(3) as usize;
                vec![rng.bits() as u8; n]
            })
            .collect();
        let mut tap = FakeTap {
            frames,
            ram: host_ranges(&ring.mem),
            stray: None,
            sent: 0,
        };
        let mut queue = ring.queue();
        let mut stats = Stats::default();
        let before = ring.snapshot();
        let outcome = if transmit {
            match Tx::default().process(&mut queue, &ring.mem, &mut tap, neg.hdr_len, &mut stats) {
                Ok(used) => u64::from(used),
                Err(_) => 2,
            }
        } else {
            let mut used = false;
            match Rx::default()
                .process(&mut queue, &ring.mem, &mut tap, &neg, &mut stats, &mut used)
            {
                Ok(stop) => 3 + stop as u64,
                Err(_) => 9,
            }
        };
        if let Some(s) = tap.stray {
            return Err(s);
        }
        ring.check_writes(&before)?;
        Ok(signature(&[
            u64::from(transmit),
            outcome,
            stats.rx_frames.min(2),
            stats.tx_frames.min(2),
            stats.rx_bad_chains.min(2),
            stats.tx_bad_chains.min(2),
            stats.rx_dropped_too_big.min(1),
            u64::from(neg.mrg_rxbuf),
        ]))
    }
}
