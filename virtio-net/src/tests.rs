//! Data-path tests on a fake backend and mock queues: header layouts,
//! receive backpressure, oversized frames, malformed chains, and random
//! descriptor tables fed to both directions.

use crate::backend::{Backend, Stats};
use crate::features::{negotiate, Negotiated};
use crate::rx::{Rx, Stop};
use crate::tx::Tx;
use std::collections::VecDeque;
use std::io;
use virtio_bindings::virtio_net::VIRTIO_NET_F_MRG_RXBUF;
use virtio_queue::desc::{split::Descriptor, RawDescriptor};
use virtio_queue::mock::MockSplitQueue;
use virtio_queue::{Queue, QueueT};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

const MEM: usize = 0x20_0000;
const BUFS: u64 = 0x10_0000;
const WRITE: u16 = 2;

#[derive(Default)]
struct Fake {
    frames: VecDeque<Vec<u8>>,
    reads: usize,
    sent: Vec<Vec<u8>>,
    write_error: Option<i32>,
    /// (errno, n): the next n reads fail with errno.
    read_error: Option<(i32, usize)>,
}

impl Fake {
    /// A backend whose reads all fail with `errno` (an error that lasts).
    fn failing(errno: i32) -> Fake {
        Fake {
            read_error: Some((errno, usize::MAX)),
            ..Default::default()
        }
    }

    fn read_failure(&mut self) -> io::Result<()> {
        self.reads += 1;
        match &mut self.read_error {
            Some((errno, n)) if *n > 0 => {
                *n -= 1;
                Err(io::Error::from_raw_os_error(*errno))
            }
            _ => Ok(()),
        }
    }
}

impl Backend for Fake {
    fn read_frame(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.read_failure()?;
        let f = self
            .frames
            .pop_front()
            .ok_or_else(|| io::Error::from(io::ErrorKind::WouldBlock))?;
        buf[..f.len()].copy_from_slice(&f);
        Ok(f.len())
    }

    fn read_frame_iov(&mut self, iov: &[libc::iovec]) -> io::Result<usize> {
        self.read_failure()?;
        let f = self
            .frames
            .pop_front()
            .ok_or_else(|| io::Error::from(io::ErrorKind::WouldBlock))?;
        // Like a TAP: cut short to the iovecs, the bytes copied returned.
        let mut rest = &f[..];
        for v in iov {
            let n = rest.len().min(v.iov_len);
            // SAFETY: the iovecs point into the test's guest memory, which
            // outlives this call, and n is within each.
            unsafe { std::ptr::copy_nonoverlapping(rest.as_ptr(), v.iov_base as *mut u8, n) };
            rest = &rest[n..];
        }
        Ok(f.len() - rest.len())
    }

    fn write_frame(&mut self, iov: &[libc::iovec]) -> io::Result<usize> {
        if let Some(e) = self.write_error {
            return Err(io::Error::from_raw_os_error(e));
        }
        let mut f = Vec::new();
        for v in iov {
            // SAFETY: the iovecs point into the test's guest memory, which
            // outlives this call.
            let s = unsafe { std::slice::from_raw_parts(v.iov_base as *const u8, v.iov_len) };
            f.extend_from_slice(s);
        }
        self.sent.push(f);
        Ok(iov.iter().map(|v| v.iov_len).sum())
    }
}

fn mem() -> GuestMemoryMmap {
    GuestMemoryMmap::from_ranges(&[(GuestAddress(0), MEM)]).unwrap()
}

fn desc(addr: u64, len: u32, flags: u16) -> RawDescriptor {
    RawDescriptor::from(Descriptor::new(addr, len, flags, 0))
}

/// Chains of single writable buffers of `len` bytes, one per entry.
fn rx_buffers(q: &MockSplitQueue<GuestMemoryMmap>, lens: &[u32]) {
    let descs: Vec<_> = lens
        .iter()
        .enumerate()
        .map(|(i, &l)| desc(BUFS + i as u64 * 0x4000, l, WRITE))
        .collect();
    q.add_desc_chains(&descs, 0).unwrap();
}

fn frame(hdr_len: usize, payload: usize) -> Vec<u8> {
    let mut f = vec![0u8; hdr_len];
    f[0] = 1; // a header flag, passed through unchanged
    f.extend((0..payload).map(|i| (i * 3) as u8));
    f
}

fn used(q: &MockSplitQueue<GuestMemoryMmap>, i: u16) -> (u32, u32) {
    let e = q.used().ring().ref_at(i as usize).unwrap().load();
    (e.id(), e.len())
}

fn run_rx(
    rx: &mut Rx,
    queue: &mut Queue,
    m: &GuestMemoryMmap,
    be: &mut Fake,
    neg: &Negotiated,
    st: &mut Stats,
) -> Stop {
    let mut u = false;
    rx.process(queue, m, be, neg, st, &mut u).unwrap()
}

#[test]
fn no_buffers_means_nothing_is_read() {
    let m = mem();
    let q = MockSplitQueue::new(&m, 16);
    let mut queue: Queue = q.create_queue().unwrap();
    let mut be = Fake::default();
    be.frames.push_back(frame(10, 60));
    let mut st = Stats::default();
    let stop = run_rx(
        &mut Rx::default(),
        &mut queue,
        &m,
        &mut be,
        &negotiate(0),
        &mut st,
    );
    assert_eq!(stop, Stop::NoBuffers);
    assert_eq!(be.reads, 0, "the TAP must not be read without buffers");
    assert_eq!(be.frames.len(), 1);
}

#[test]
fn legacy_header_frame_lands_in_one_buffer() {
    let m = mem();
    let q = MockSplitQueue::new(&m, 16);
    rx_buffers(&q, &[2048, 2048]);
    let mut queue: Queue = q.create_queue().unwrap();
    let mut be = Fake::default();
    let f = frame(10, 100);
    be.frames.push_back(f.clone());
    let mut st = Stats::default();
    let stop = run_rx(
        &mut Rx::default(),
        &mut queue,
        &m,
        &mut be,
        &negotiate(0),
        &mut st,
    );
    assert_eq!(stop, Stop::BackendEmpty);
    assert_eq!(q.used().idx().load(), 1);
    assert_eq!(used(&q, 0), (0, 110));
    let mut got = vec![0u8; 110];
    m.read_slice(&mut got, GuestAddress(BUFS)).unwrap();
    assert_eq!(got, f);
    assert_eq!(st.rx_frames, 1);
}

#[test]
fn version_1_frame_is_read_into_a_scattered_chain_with_num_buffers_1() {
    let m = mem();
    let q = MockSplitQueue::new(&m, 16);
    // One chain of three writable pieces; the header's num_buffers field
    // (offset 10) falls in the second one.
    let (a, b, c) = (BUFS, BUFS + 0x1000, BUFS + 0x2000);
    let linked = |addr, len, next| RawDescriptor::from(Descriptor::new(addr, len, WRITE | 1, next));
    let chain = [linked(a, 8, 1), linked(b, 8, 2), desc(c, 2048, WRITE)];
    q.add_desc_chains(&chain, 0).unwrap();
    rx_buffers_after(&q, 3, &[2048]);
    let mut queue: Queue = q.create_queue().unwrap();
    let neg = negotiate(crate::features::VERSION_1);
    assert_eq!((neg.hdr_len, neg.mrg_rxbuf), (12, false));
    let mut be = Fake::default();
    let f = frame(12, 500);
    be.frames.push_back(f.clone());
    let mut st = Stats::default();
    let stop = run_rx(&mut Rx::default(), &mut queue, &m, &mut be, &neg, &mut st);
    assert_eq!(stop, Stop::BackendEmpty);
    assert_eq!(used(&q, 0), (0, 512));
    let mut got = vec![0u8; 512];
    m.read_slice(&mut got[..8], GuestAddress(a)).unwrap();
    m.read_slice(&mut got[8..16], GuestAddress(b)).unwrap();
    m.read_slice(&mut got[16..], GuestAddress(c)).unwrap();
    assert_eq!(got[10..12], [1, 0], "num_buffers");
    let mut want = f.clone();
    want[10] = 1;
    assert_eq!(got, want);
    assert_eq!(be.reads, 2, "one frame, then the read that found none");
    assert_eq!(queue.next_avail(), 1, "the second chain stays posted");
    assert_eq!(q.used().idx().load(), 1);
}

/// Single-buffer chains of `lens` bytes in descriptors from `first` on.
fn rx_buffers_after(q: &MockSplitQueue<GuestMemoryMmap>, first: u16, lens: &[u32]) {
    let descs: Vec<_> = lens
        .iter()
        .enumerate()
        .map(|(i, &l)| desc(BUFS + 0x10_000 + i as u64 * 0x4000, l, WRITE))
        .collect();
    q.add_desc_chains(&descs, first).unwrap();
}

#[test]
fn mergeable_buffers_span_chains_and_count_them() {
    let m = mem();
    let q = MockSplitQueue::new(&m, 16);
    rx_buffers(&q, &[1024, 1024, 1024, 1024]);
    let mut queue: Queue = q.create_queue().unwrap();
    let neg = negotiate(1 << VIRTIO_NET_F_MRG_RXBUF);
    assert_eq!(neg.hdr_len, 12);
    let mut be = Fake::default();
    let f = frame(12, 2500);
    be.frames.push_back(f.clone());
    let mut st = Stats::default();
    run_rx(&mut Rx::default(), &mut queue, &m, &mut be, &neg, &mut st);
    assert_eq!(q.used().idx().load(), 3);
    assert_eq!(used(&q, 0), (0, 1024));
    assert_eq!(used(&q, 1), (1, 1024));
    assert_eq!(used(&q, 2), (2, 2512 - 2048));
    let num_buffers: u16 = m.read_obj(GuestAddress(BUFS + 10)).unwrap();
    assert_eq!(num_buffers, 3);
    let mut tail = vec![0u8; 2512 - 2048];
    m.read_slice(&mut tail, GuestAddress(BUFS + 2 * 0x4000))
        .unwrap();
    assert_eq!(tail, f[2048..]);
}

#[test]
fn mergeable_frame_waits_for_more_buffers() {
    let m = mem();
    let q = MockSplitQueue::new(&m, 16);
    rx_buffers(&q, &[1024]);
    let mut queue: Queue = q.create_queue().unwrap();
    let neg = negotiate(1 << VIRTIO_NET_F_MRG_RXBUF);
    let mut be = Fake::default();
    be.frames.push_back(frame(12, 2000));
    let mut st = Stats::default();
    let mut rx = Rx::default();
    assert_eq!(
        run_rx(&mut rx, &mut queue, &m, &mut be, &neg, &mut st),
        Stop::NoBuffers
    );
    assert!(rx.has_pending());
    assert_eq!(queue.next_avail(), 0, "the lone buffer is left for later");
    assert_eq!(q.used().idx().load(), 0);
}

#[test]
fn oversized_frame_is_dropped_and_the_buffer_kept() {
    let m = mem();
    let q = MockSplitQueue::new(&m, 16);
    rx_buffers(&q, &[1000]);
    let mut queue: Queue = q.create_queue().unwrap();
    let mut be = Fake::default();
    be.frames.push_back(frame(10, 1500));
    be.frames.push_back(frame(10, 50));
    let mut st = Stats::default();
    run_rx(
        &mut Rx::default(),
        &mut queue,
        &m,
        &mut be,
        &negotiate(0),
        &mut st,
    );
    assert_eq!(st.rx_dropped_too_big, 1);
    assert_eq!(st.rx_frames, 1);
    assert_eq!(used(&q, 0), (0, 60), "the small frame got the buffer");
}

#[test]
fn frame_exactly_filling_the_buffer_is_delivered() {
    let m = mem();
    let q = MockSplitQueue::new(&m, 16);
    rx_buffers(&q, &[1000, 1000]);
    let mut queue: Queue = q.create_queue().unwrap();
    let mut be = Fake::default();
    be.frames.push_back(frame(10, 990));
    be.frames.push_back(frame(10, 991));
    let mut st = Stats::default();
    run_rx(
        &mut Rx::default(),
        &mut queue,
        &m,
        &mut be,
        &negotiate(0),
        &mut st,
    );
    assert_eq!((st.rx_frames, st.rx_dropped_too_big), (1, 1));
    assert_eq!(used(&q, 0), (0, 1000));
    assert_eq!(queue.next_avail(), 1, "the second buffer stays posted");
}

#[test]
fn malformed_rx_chain_is_returned_empty() {
    let m = mem();
    let q = MockSplitQueue::new(&m, 16);
    // A device-readable buffer, then a good one.
    q.add_desc_chains(&[desc(BUFS, 2048, 0), desc(BUFS + 0x4000, 2048, WRITE)], 0)
        .unwrap();
    let mut queue: Queue = q.create_queue().unwrap();
    let mut be = Fake::default();
    be.frames.push_back(frame(10, 64));
    let mut st = Stats::default();
    run_rx(
        &mut Rx::default(),
        &mut queue,
        &m,
        &mut be,
        &negotiate(0),
        &mut st,
    );
    assert_eq!(st.rx_bad_chains, 1);
    assert_eq!(used(&q, 0), (0, 0));
    assert_eq!(used(&q, 1), (1, 74));
}

/// What one receive pass did: its result, the counters, the used ring's
/// entries (id, length) and the next chain it would take.
struct RxPass {
    result: io::Result<Stop>,
    stats: Stats,
    used: Vec<(u32, u32)>,
    next_avail: u16,
}

/// Posts one single-buffer chain per entry of `lens`, then runs the
/// receive side once over `be`.
fn rx_pass(lens: &[u32], be: &mut Fake, neg: &Negotiated) -> RxPass {
    let m = mem();
    let q = MockSplitQueue::new(&m, 16);
    rx_buffers(&q, lens);
    let mut queue: Queue = q.create_queue().unwrap();
    let mut stats = Stats::default();
    let mut changed = false;
    let result = Rx::default().process(&mut queue, &m, be, neg, &mut stats, &mut changed);
    let n = q.used().idx().load();
    assert_eq!(changed, n > 0, "the used-ring flag");
    RxPass {
        result,
        stats,
        used: (0..n).map(|i| used(&q, i)).collect(),
        next_avail: queue.next_avail(),
    }
}

#[test]
fn rx_chain_no_longer_than_the_header_is_refused_unread() {
    // 10 bytes hold the legacy header and nothing else (a TAP answers
    // EINVAL to a read into it); the next chain is good.
    let mut be = Fake::default();
    be.frames.push_back(frame(10, 64));
    let p = rx_pass(&[10, 2048], &mut be, &negotiate(0));
    assert_eq!(p.stats.rx_bad_chains, 1);
    assert_eq!(be.reads, 1, "only the good chain is read into");
    assert_eq!(p.used, [(0, 0), (1, 74)]);
}

/// A TAP read error that lasts fails one request per read and stops the
/// device after `RX_ERROR_LIMIT` of them, instead of retrying one chain
/// for ever (it did: the I/O thread spun at 100 %).
#[test]
fn lasting_rx_error_fails_requests_then_stops() {
    let mut be = Fake::failing(libc::EIO);
    let p = rx_pass(&[2048; 12], &mut be, &negotiate(0));
    let e = p
        .result
        .expect_err("a lasting error stops the receive side");
    assert_eq!(e.raw_os_error(), Some(libc::EIO));
    let limit = crate::rx::RX_ERROR_LIMIT;
    assert_eq!(be.reads, limit as usize);
    assert_eq!(p.stats.rx_errors, u64::from(limit));
    // Each failed read returned its chain, empty; the rest stay posted.
    let empty: Vec<_> = (0..limit).map(|i| (i, 0)).collect();
    assert_eq!(p.used, empty);
    assert_eq!(p.next_avail, limit as u16);
}

#[test]
fn lasting_rx_error_with_mergeable_buffers_stops() {
    let mut be = Fake::failing(libc::EINVAL);
    let p = rx_pass(&[2048; 4], &mut be, &negotiate(1 << VIRTIO_NET_F_MRG_RXBUF));
    assert_eq!(p.result.unwrap_err().raw_os_error(), Some(libc::EINVAL));
    assert_eq!(be.reads, crate::rx::RX_ERROR_LIMIT as usize);
    assert!(p.used.is_empty(), "no chain was taken");
}

/// Errors that pass (fewer than the limit in a row) cost the requests
/// they hit and no more: the frames after them are delivered.
#[test]
fn passing_rx_errors_are_counted_and_receiving_goes_on() {
    let mut be = Fake {
        read_error: Some((libc::EIO, 2)),
        ..Default::default()
    };
    be.frames.push_back(frame(10, 64));
    let p = rx_pass(&[2048; 4], &mut be, &negotiate(0));
    assert_eq!(p.result.unwrap(), Stop::BackendEmpty);
    assert_eq!(p.stats.rx_errors, 2);
    assert_eq!(p.stats.rx_frames, 1);
    assert_eq!(p.used, [(0, 0), (1, 0), (2, 74)]);
}

#[test]
fn tx_gathers_the_chain() {
    let m = mem();
    let q = MockSplitQueue::new(&m, 16);
    let hdr = [0u8; 10];
    let payload: Vec<u8> = (0..300).map(|i| i as u8).collect();
    m.write_slice(&hdr, GuestAddress(BUFS)).unwrap();
    m.write_slice(&payload, GuestAddress(BUFS + 0x1000))
        .unwrap();
    q.add_desc_chains(
        &[
            RawDescriptor::from(Descriptor::new(BUFS, 10, 1, 1)),
            desc(BUFS + 0x1000, 300, 0),
        ],
        0,
    )
    .unwrap();
    let mut queue: Queue = q.create_queue().unwrap();
    let mut be = Fake::default();
    let mut st = Stats::default();
    assert!(Tx::default()
        .process(&mut queue, &m, &mut be, 10, &mut st)
        .unwrap());
    assert_eq!(be.sent.len(), 1);
    assert_eq!(&be.sent[0][..10], &hdr);
    assert_eq!(&be.sent[0][10..], &payload[..]);
    assert_eq!(used(&q, 0), (0, 0));
    assert_eq!(st.tx_frames, 1);
}

#[test]
fn malformed_tx_chains_are_dropped_and_counted() {
    let m = mem();
    let q = MockSplitQueue::new(&m, 16);
    q.add_desc_chains(
        &[
            desc(BUFS, 100, WRITE),        // device-writable
            desc(MEM as u64 - 10, 100, 0), // runs past memory
            desc(BUFS, 10, 0),             // header only
            desc(BUFS, 100_000, 0),        // longer than any frame
        ],
        0,
    )
    .unwrap();
    let mut queue: Queue = q.create_queue().unwrap();
    let mut be = Fake::default();
    let mut st = Stats::default();
    Tx::default()
        .process(&mut queue, &m, &mut be, 10, &mut st)
        .unwrap();
    assert!(be.sent.is_empty());
    assert_eq!(st.tx_bad_chains, 3);
    assert_eq!(st.tx_dropped_too_big, 1);
    assert_eq!(q.used().idx().load(), 4, "every chain is returned");
}

#[test]
fn tx_reports_a_dead_backend() {
    let m = mem();
    let q = MockSplitQueue::new(&m, 16);
    q.add_desc_chains(&[desc(BUFS, 100, 0), desc(BUFS, 100, 0)], 0)
        .unwrap();
    let mut queue: Queue = q.create_queue().unwrap();
    let mut be = Fake {
        write_error: Some(libc::EBADFD),
        ..Default::default()
    };
    let mut st = Stats::default();
    assert!(Tx::default()
        .process(&mut queue, &m, &mut be, 10, &mut st)
        .is_err());
    assert_eq!(st.tx_errors, 2);
    assert_eq!(q.used().idx().load(), 2);
}

/// xorshift64*: deterministic, no dependency.
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

/// Fills the descriptor table and available ring with random values:
/// any address (often inside memory, sometimes not), any length, any
/// flags including INDIRECT, any `next`, any avail index.
fn scramble(r: &mut Rng, m: &GuestMemoryMmap, q: &MockSplitQueue<GuestMemoryMmap>, size: u16) {
    for i in 0..size {
        let addr = match r.below(4) {
            0 => r.next(),
            1 => MEM as u64 - r.below(0x2000),
            _ => BUFS + r.below(0xf_0000),
        };
        let len = match r.below(3) {
            0 => r.next() as u32,
            _ => r.below(0x3000) as u32,
        };
        let flags = r.below(8) as u16;
        let next = r.below(u64::from(size) + 2) as u16;
        q.desc_table()
            .store(
                i,
                RawDescriptor::from(Descriptor::new(addr, len, flags, next)),
            )
            .unwrap();
        let slot = q.avail_addr().0 + 4 + 2 * u64::from(i);
        m.write_obj(r.below(u64::from(size) + 2) as u16, GuestAddress(slot))
            .unwrap();
    }
    let idx = r.below(u64::from(size) * 2) as u16;
    m.write_obj(idx, GuestAddress(q.avail_addr().0 + 2))
        .unwrap();
}

#[test]
fn random_descriptor_tables_never_panic() {
    let mut r = Rng(0x9e37_79b9_7f4a_7c15);
    for round in 0..300 {
        let m = mem();
        let size = 16;
        let q = MockSplitQueue::new(&m, size);
        scramble(&mut r, &m, &q, size);
        let neg = negotiate(if round % 2 == 0 {
            0
        } else {
            1 << VIRTIO_NET_F_MRG_RXBUF
        });
        let mut st = Stats::default();

        let mut rxq: Queue = q.create_queue().unwrap();
        let mut be = Fake::default();
        for _ in 0..8 {
            let len = neg.hdr_len + 1 + r.below(9000) as usize;
            be.frames.push_back(frame(neg.hdr_len, len - neg.hdr_len));
        }
        let mut rx = Rx::default();
        let mut u = false;
        let _ = rx.process(&mut rxq, &m, &mut be, &neg, &mut st, &mut u);
        // Used entries never exceed what the driver made available.
        let used_idx = q.used().idx().load();
        assert!(used_idx <= 2 * size, "round {round}: used idx {used_idx}");

        let mut txq: Queue = q.create_queue().unwrap();
        let mut be = Fake::default();
        let _ = Tx::default().process(&mut txq, &m, &mut be, neg.hdr_len, &mut st);
        for f in &be.sent {
            assert!(f.len() > neg.hdr_len && f.len() <= crate::tx::MAX_TX_LEN);
        }
    }
}
