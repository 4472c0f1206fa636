//! Where frames go: the TAP, or a fake in tests.

use std::io;

/// A frame source and sink with a virtio-net header in front of each frame.
pub trait Backend: Send {
    /// Reads one frame (header included) into `buf`; `WouldBlock` when
    /// there is none.
    fn read_frame(&mut self, buf: &mut [u8]) -> io::Result<usize>;
    /// Reads one frame (header included) scattered over `iov`, the way
    /// a TAP's readv does: a frame longer than the iovecs is cut short,
    /// and the bytes copied are returned. `WouldBlock` when there is none.
    fn read_frame_iov(&mut self, iov: &[libc::iovec]) -> io::Result<usize>;
    /// Writes one frame gathered from `iov`.
    fn write_frame(&mut self, iov: &[libc::iovec]) -> io::Result<usize>;
}

/// Counters of one NIC, for tests and the exit report.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    /// Frames delivered to the guest.
    pub rx_frames: u64,
    /// Bytes delivered to the guest, headers included.
    pub rx_bytes: u64,
    /// Frames sent by the guest.
    pub tx_frames: u64,
    /// Bytes sent by the guest, headers included.
    pub tx_bytes: u64,
    /// Frames that did not fit the guest's posted buffers.
    pub rx_dropped_too_big: u64,
    /// Receive chains returned unused because they were malformed.
    pub rx_bad_chains: u64,
    /// Transmit chains dropped as malformed (bad address, no header,
    /// device-writable descriptor).
    pub tx_bad_chains: u64,
    /// Transmit chains larger than any frame.
    pub tx_dropped_too_big: u64,
    /// Frames the TAP refused.
    pub tx_errors: u64,
    /// Reads from the TAP that failed with an error other than "no
    /// frame" (each fails the receive request it was for).
    pub rx_errors: u64,
}
