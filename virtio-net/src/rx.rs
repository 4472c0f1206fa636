//! Receive: frames from the backend into the guest's posted buffers.
//!
//! Nothing is read from the backend unless the guest has posted a buffer,
//! so a guest that stops receiving leaves frames queued in the TAP (where
//! the kernel drops them by its own rules) instead of having the monitor
//! read and drop them. A frame read but not yet placed (MRG_RXBUF frames
//! spanning more buffers than are posted) waits for the next kick.

use crate::backend::{Backend, Stats};
use crate::features::Negotiated;
use crate::tx::is_fatal;
use std::io;
use std::num::Wrapping;
use std::sync::atomic::Ordering;
use virtio_queue::{Queue, QueueT};
use vm_memory::{Bytes, GuestAddress, GuestMemory, Permissions};

/// Receive buffer: the largest frame the TAP can deliver (64 KiB GSO
/// frame plus Ethernet and virtio-net headers).
pub const RX_BUF_LEN: usize = 65_562;

/// What stopped the receive loop.
#[derive(Debug, PartialEq, Eq)]
pub enum Stop {
    /// The backend has no more frames: wait for it to become readable.
    BackendEmpty,
    /// The guest has no (or too few) buffers: wait for a kick.
    NoBuffers,
}

/// Receive state kept between events.
pub struct Rx {
    buf: Vec<u8>,
    /// Length of a frame in `buf` not yet delivered.
    pending: Option<usize>,
    /// (head, bytes used) of the chains picked for the current frame.
    chains: Vec<(u16, u32)>,
    /// (address, length) of their writable descriptors, in order.
    segs: Vec<(GuestAddress, usize)>,
}

impl Default for Rx {
    fn default() -> Self {
        Rx {
            buf: vec![0; RX_BUF_LEN],
            pending: None,
            chains: Vec::new(),
            segs: Vec::new(),
        }
    }
}

/// Frame placement failed.
enum Place {
    /// Not enough buffers posted yet.
    Wait,
    /// The frame can never fit: drop it.
    Drop,
}

impl Rx {
    /// Whether a frame is waiting for buffers.
    pub fn has_pending(&self) -> bool {
        self.pending.is_some()
    }

    /// Forgets any pending frame (device reset).
    pub fn reset(&mut self) {
        self.pending = None;
    }

    /// Moves frames from `backend` into the queue until one side runs dry.
    /// `used` is set when the used ring changed. A backend error that will
    /// not go away is returned.
    pub fn process<M: GuestMemory, B: Backend>(
        &mut self,
        queue: &mut Queue,
        mem: &M,
        backend: &mut B,
        neg: &Negotiated,
        stats: &mut Stats,
        used: &mut bool,
    ) -> io::Result<Stop> {
        let (hdr_len, mrg_rxbuf) = (neg.hdr_len, neg.mrg_rxbuf);
        loop {
            let len = match self.pending {
                Some(len) => len,
                None => {
                    if avail_count(queue, mem) == 0 {
                        return Ok(Stop::NoBuffers);
                    }
                    match backend.read_frame(&mut self.buf) {
                        Ok(n) => n,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                            return Ok(Stop::BackendEmpty)
                        }
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(e) if is_fatal(&e) => return Err(e),
                        // Transient errors lose one frame at most.
                        Err(_) => continue,
                    }
                }
            };
            self.pending = Some(len);
            if len <= hdr_len {
                // Nothing after the header: not a frame.
                self.pending = None;
                continue;
            }
            match self.place(queue, mem, len, hdr_len, mrg_rxbuf, stats, used) {
                Ok(()) => {
                    self.pending = None;
                    stats.rx_frames += 1;
                    stats.rx_bytes += len as u64;
                }
                Err(Place::Wait) => return Ok(Stop::NoBuffers),
                Err(Place::Drop) => {
                    self.pending = None;
                    stats.rx_dropped_too_big += 1;
                }
            }
        }
    }

    /// Picks chains for a frame of `len` bytes and copies it in.
    #[allow(clippy::too_many_arguments)]
    fn place<M: GuestMemory>(
        &mut self,
        queue: &mut Queue,
        mem: &M,
        len: usize,
        hdr_len: usize,
        mrg_rxbuf: bool,
        stats: &mut Stats,
        used: &mut bool,
    ) -> Result<(), Place> {
        let mut start = queue.next_avail();
        let posted = avail_count(queue, mem);
        self.chains.clear();
        self.segs.clear();
        let mut room = 0usize;
        while room < len {
            if !mrg_rxbuf && !self.chains.is_empty() {
                // One chain per frame, and it was too small: leave the
                // chain for the next frame.
                queue.set_next_avail(start);
                return Err(Place::Drop);
            }
            let Some(chain) = queue.pop_descriptor_chain(mem) else {
                queue.set_next_avail(start);
                // All the ring's buffers are posted and still too few.
                let full = posted >= queue.size();
                return Err(if full { Place::Drop } else { Place::Wait });
            };
            let head = chain.head_index();
            match self.collect(chain, mem, len - room) {
                Some(n) => {
                    room += n;
                    self.chains.push((head, n as u32));
                }
                None => {
                    // A malformed chain goes back empty, and so do the
                    // chains picked before it (used entries are in ring
                    // order): the guest loses buffers, not the monitor.
                    stats.rx_bad_chains += 1;
                    for &(h, _) in &self.chains {
                        let _ = queue.add_used(mem, h, 0);
                    }
                    let _ = queue.add_used(mem, head, 0);
                    *used = true;
                    self.chains.clear();
                    self.segs.clear();
                    room = 0;
                    start = queue.next_avail();
                }
            }
        }
        if hdr_len >= 12 {
            let n = self.chains.len() as u16;
            self.buf[10..12].copy_from_slice(&n.to_le_bytes());
        }
        self.copy_out(mem, len);
        for &(head, n) in &self.chains {
            let _ = queue.add_used(mem, head, n);
        }
        *used = true;
        Ok(())
    }

    /// Adds the chain's writable descriptors to `segs`, up to `want`
    /// bytes. None when the chain is malformed (readable descriptors,
    /// addresses outside guest memory, no room at all).
    fn collect<M: GuestMemory>(
        &mut self,
        chain: virtio_queue::DescriptorChain<&M>,
        mem: &M,
        want: usize,
    ) -> Option<usize> {
        let mark = self.segs.len();
        let mut got = 0usize;
        for desc in chain {
            let len = desc.len() as usize;
            let ok = desc.is_write_only() && mem.check_range(desc.addr(), len, Permissions::Write);
            if !ok {
                self.segs.truncate(mark);
                return None;
            }
            if got < want {
                let n = len.min(want - got);
                self.segs.push((desc.addr(), n));
                got += n;
            }
        }
        (got > 0).then_some(got)
    }

    fn copy_out<M: GuestMemory>(&self, mem: &M, len: usize) {
        let mut off = 0;
        for &(addr, n) in &self.segs {
            let end = (off + n).min(len);
            // Checked in `collect`; a failure here loses only this frame.
            let _ = mem.write_slice(&self.buf[off..end], addr);
            off = end;
        }
    }
}

/// Chains the driver has posted and we have not taken.
pub fn avail_count<M: GuestMemory>(queue: &Queue, mem: &M) -> u16 {
    match queue.avail_idx(mem, Ordering::Acquire) {
        Ok(idx) => (idx - Wrapping(queue.next_avail())).0,
        Err(_) => 0,
    }
}
