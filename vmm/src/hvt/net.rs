//! An hvt NIC: a TAP attached to a manifest entry, used by the net
//! hypercalls (vCPU thread) and by the network ring (its own thread), so
//! each one sits behind a mutex that is uncontended in practice (a guest
//! uses one path at a time).
//!
//! The TAP carries a virtio-net header before every frame; hvt frames have
//! none, so sends put a zeroed one in front and receives drop it.

use std::io;
use std::os::unix::io::{AsRawFd, RawFd};
use std::sync::{Arc, Mutex};
use ukvm_virtio_net::{Backend as _, Tap};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap, VolatileSlice};

/// Largest Ethernet frame ukvm moves for a guest (64 KiB, as a TAP can).
pub(crate) const MAX_FRAME: u64 = 65535;

/// The attached NICs by manifest handle, shared by both I/O paths.
pub(crate) type Nets = Arc<[(u64, Mutex<NetDev>)]>;

/// One NIC.
pub(crate) struct NetDev {
    tap: Tap,
    hdr_len: usize,
    buf: Vec<u8>,
}

/// What a receive got.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Recv {
    /// A frame of this many bytes is in the guest's buffer.
    Frame(u64),
    /// Nothing waiting (or a frame too large for the buffer, dropped as a
    /// NIC drops what does not fit).
    Again,
    /// The TAP failed.
    Failed,
}

impl NetDev {
    pub(crate) fn new(tap: Tap, mtu: u16) -> io::Result<Self> {
        let hdr_len = tap
            .vnet_hdr_size()
            .map_err(|e| io::Error::other(e.to_string()))?;
        // Room for the largest frame the TAP may hand us.
        let frame = (usize::from(mtu) + 14 + 4).max(MAX_FRAME as usize);
        Ok(NetDev {
            tap,
            hdr_len,
            buf: vec![0; hdr_len + frame],
        })
    }

    /// The TAP's fd, for the poll hypercall.
    pub(crate) fn fd(&self) -> RawFd {
        self.tap.as_raw_fd()
    }

    /// Sends one frame from guest memory (checked by the caller).
    pub(crate) fn send(&mut self, frame: &VolatileSlice) -> io::Result<()> {
        let header = [0u8; 12];
        let iov = [
            libc::iovec {
                iov_base: header.as_ptr() as *mut libc::c_void,
                iov_len: self.hdr_len.min(header.len()),
            },
            libc::iovec {
                iov_base: frame.ptr_guard_mut().as_ptr().cast(),
                iov_len: frame.len(),
            },
        ];
        self.tap.write_frame(&iov).map(|_| ())
    }

    /// Receives one frame into `room` bytes of guest memory at `data`
    /// (checked by the caller).
    pub(crate) fn recv(&mut self, mem: &GuestMemoryMmap, data: u64, room: u64) -> Recv {
        match self.tap.read_frame(&mut self.buf) {
            Ok(n) if n > self.hdr_len => {
                let frame = &self.buf[self.hdr_len..n];
                if frame.len() as u64 > room {
                    return Recv::Again;
                }
                match mem.write_slice(frame, GuestAddress(data)) {
                    Ok(()) => Recv::Frame(frame.len() as u64),
                    Err(_) => Recv::Failed,
                }
            }
            Ok(_) => Recv::Again,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Recv::Again,
            Err(_) => Recv::Failed,
        }
    }
}

/// Finds the NIC of manifest handle `handle`.
pub(crate) fn find(nets: &Nets, handle: u64) -> Option<&Mutex<NetDev>> {
    nets.iter().find(|(h, _)| *h == handle).map(|(_, d)| d)
}
