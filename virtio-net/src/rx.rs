//! Receive: frames from the backend into the guest's posted buffers.
//!
//! Nothing is read from the backend unless the guest has posted a buffer,
//! so a guest that stops receiving leaves frames queued in the TAP (where
//! the kernel drops them by its own rules) instead of having the monitor
//! read and drop them.
//!
//! Without MRG_RXBUF each frame goes into one chain, so it is read with
//! readv straight into that chain's buffers. With MRG_RXBUF how many
//! chains a frame takes depends on its length, so it is read into a
//! buffer first and copied; a frame read but not yet placed (spanning more
//! buffers than are posted) waits there for the next kick.

use crate::backend::{Backend, Stats};
use crate::features::Negotiated;
use crate::tx::is_fatal;
use std::io;
use std::num::Wrapping;
use std::sync::atomic::Ordering;
use virtio_queue::{Queue, QueueT};
use vm_memory::{Address, Bytes, GuestAddress, GuestMemory, Permissions};

/// Receive buffer: the largest frame the TAP can deliver (64 KiB GSO
/// frame plus Ethernet and virtio-net headers).
pub const RX_BUF_LEN: usize = 65_562;

/// Read errors in a row, neither "no frame" nor a dead TAP (EIO, EINVAL,
/// anything unforeseen), after which the receive side gives up and the
/// device stops: an error that lasts would otherwise be retried forever.
pub const RX_ERROR_LIMIT: u32 = 8;

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
    /// MRG_RXBUF frames, read whole before placing (allocated on first use).
    buf: Vec<u8>,
    /// The chain being read into, without MRG_RXBUF, and one spare byte
    /// after it: a frame that reaches the spare byte did not fit.
    iov: Vec<libc::iovec>,
    spare: Box<u8>,
    /// Length of a frame in `buf` not yet delivered.
    pending: Option<usize>,
    /// (head, bytes used) of the chains picked for the current frame.
    chains: Vec<(u16, u32)>,
    /// (address, length) of their writable descriptors, in order.
    segs: Vec<(GuestAddress, usize)>,
    /// Read errors since the last frame read (see [`RX_ERROR_LIMIT`]).
    errors_in_row: u32,
}

impl Default for Rx {
    fn default() -> Self {
        Rx {
            buf: Vec::new(),
            iov: Vec::new(),
            spare: Box::new(0),
            pending: None,
            chains: Vec::new(),
            segs: Vec::new(),
            errors_in_row: 0,
        }
    }
}

// SAFETY: the iovecs only hold pointers while `read_direct` runs; between
// calls the vector is empty.
unsafe impl Send for Rx {}

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
        self.errors_in_row = 0;
    }

    /// Counts a read error that is neither "no frame" nor a dead TAP, and
    /// returns it once [`RX_ERROR_LIMIT`] came in a row.
    fn read_error(&mut self, e: io::Error, stats: &mut Stats) -> io::Result<()> {
        stats.rx_errors += 1;
        self.errors_in_row += 1;
        if self.errors_in_row >= RX_ERROR_LIMIT {
            self.errors_in_row = 0;
            return Err(e);
        }
        Ok(())
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
        if !mrg_rxbuf && self.pending.is_none() {
            return self.read_direct(queue, mem, backend, hdr_len, stats, used);
        }
        if self.buf.is_empty() {
            self.buf = vec![0; RX_BUF_LEN];
        }
        loop {
            let len = match self.pending {
                Some(len) => len,
                None => {
                    if avail_count(queue, mem) == 0 {
                        return Ok(Stop::NoBuffers);
                    }
                    match backend.read_frame(&mut self.buf).and_then(not_empty) {
                        Ok(n) => {
                            self.errors_in_row = 0;
                            n
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                            return Ok(Stop::BackendEmpty)
                        }
                        Err(e) if is_fatal(&e) => return Err(e),
                        // Interrupted, or an error that loses one frame at
                        // most: tried again, a bounded number of times.
                        Err(e) => {
                            self.read_error(e, stats)?;
                            continue;
                        }
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

    /// One chain per frame: reads each frame with readv straight into the
    /// next chain's buffers, until the backend or the guest runs dry.
    fn read_direct<M: GuestMemory, B: Backend>(
        &mut self,
        queue: &mut Queue,
        mem: &M,
        backend: &mut B,
        hdr_len: usize,
        stats: &mut Stats,
        used: &mut bool,
    ) -> io::Result<Stop> {
        loop {
            let start = queue.next_avail();
            let Some(chain) = queue.pop_descriptor_chain(mem) else {
                return Ok(Stop::NoBuffers);
            };
            let head = chain.head_index();
            self.segs.clear();
            // A chain no longer than the header can hold no frame (and a
            // TAP refuses to read into one: EINVAL, every time).
            let room = match self.collect(chain, mem, RX_BUF_LEN) {
                Some(room) if room > hdr_len && self.map_segs(mem) => room,
                _ => {
                    stats.rx_bad_chains += 1;
                    let _ = queue.add_used(mem, head, 0);
                    *used = true;
                    continue;
                }
            };
            // A TAP cuts a frame short to the buffers it is given (and says
            // how much it copied), so one byte more tells a frame that
            // filled the chain exactly from one that did not fit.
            self.iov.push(libc::iovec {
                iov_base: &mut *self.spare as *mut u8 as *mut libc::c_void,
                iov_len: 1,
            });
            let r = backend.read_frame_iov(&self.iov).and_then(not_empty);
            self.iov.clear();
            let len = match r {
                Ok(n) => {
                    self.errors_in_row = 0;
                    n
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock || is_fatal(&e) => {
                    // The chain was not used: it stays posted.
                    queue.set_next_avail(start);
                    return match e.kind() {
                        io::ErrorKind::WouldBlock => Ok(Stop::BackendEmpty),
                        _ => Err(e),
                    };
                }
                Err(e) => {
                    // Interrupted, or an error that may last: this request
                    // fails (the chain goes back empty) rather than being
                    // retried with the same chain for ever, and a run of
                    // them stops the device.
                    let _ = queue.add_used(mem, head, 0);
                    *used = true;
                    self.read_error(e, stats)?;
                    continue;
                }
            };
            if len <= hdr_len || len > room {
                // Not a frame, or one larger than the chain (cut short by
                // the TAP): dropped, and the chain kept for the next frame.
                queue.set_next_avail(start);
                if len > room {
                    stats.rx_dropped_too_big += 1;
                }
                continue;
            }
            if hdr_len >= 12 {
                // num_buffers: the TAP leaves the header's last 2 bytes.
                self.write_at(mem, 10, &1u16.to_le_bytes());
            }
            let _ = queue.add_used(mem, head, len as u32);
            *used = true;
            stats.rx_frames += 1;
            stats.rx_bytes += len as u64;
        }
    }

    /// Turns `segs` into iovecs over guest memory (a buffer may straddle
    /// memory regions: one iovec per piece). False when one is not mapped.
    fn map_segs<M: GuestMemory>(&mut self, mem: &M) -> bool {
        self.iov.clear();
        for &(addr, len) in &self.segs {
            let Ok(slices) = mem.get_slices(addr, len, Permissions::Write) else {
                return false;
            };
            for slice in slices {
                let Ok(slice) = slice else {
                    self.iov.clear();
                    return false;
                };
                self.iov.push(libc::iovec {
                    iov_base: slice.ptr_guard_mut().as_ptr() as *mut libc::c_void,
                    iov_len: slice.len(),
                });
            }
        }
        true
    }

    /// Writes `bytes` at offset `off` of the frame laid out over `segs`.
    fn write_at<M: GuestMemory>(&self, mem: &M, mut off: usize, bytes: &[u8]) {
        let mut bytes = bytes;
        for &(addr, n) in &self.segs {
            if bytes.is_empty() {
                return;
            }
            if off >= n {
                off -= n;
                continue;
            }
            let k = bytes.len().min(n - off);
            // Checked in `collect`; a failure loses only this field.
            let _ = mem.write_slice(&bytes[..k], addr.unchecked_add(off as u64));
            bytes = &bytes[k..];
            off = 0;
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

/// A read of no bytes is an error: a TAP never returns an empty frame,
/// and taking it for one could loop without end.
fn not_empty(n: usize) -> io::Result<usize> {
    if n == 0 {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "read returned no bytes",
        ));
    }
    Ok(n)
}

/// Chains the driver has posted and we have not taken.
pub fn avail_count<M: GuestMemory>(queue: &Queue, mem: &M) -> u16 {
    match queue.avail_idx(mem, Ordering::Acquire) {
        Ok(idx) => (idx - Wrapping(queue.next_avail())).0,
        Err(_) => 0,
    }
}
