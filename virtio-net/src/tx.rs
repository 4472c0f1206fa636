//! Transmit: each chain on the TX queue is one frame (header first),
//! handed to the backend with writev straight from guest memory.

use crate::backend::{Backend, Stats};
use std::io;
use virtio_queue::{Queue, QueueT};
use vm_memory::{GuestMemory, Permissions};

/// Largest chain accepted: a 64 KiB GSO frame plus header and Ethernet
/// framing. Anything longer is not a frame.
pub const MAX_TX_LEN: usize = 65_562;
/// More descriptors than writev takes are malformed too.
const MAX_IOV: usize = 1024;

/// Why a chain was not sent.
#[derive(Debug, PartialEq, Eq)]
enum Bad {
    Malformed,
    TooBig,
}

/// Transmit state kept between kicks (the iovec buffer is reused).
#[derive(Default)]
pub struct Tx {
    iov: Vec<libc::iovec>,
}

// SAFETY: the iovecs only hold pointers while `process` runs; between
// calls the vector is empty.
unsafe impl Send for Tx {}

/// The backend failed in a way that will not fix itself (TAP gone).
#[derive(Debug)]
pub struct BackendGone(pub io::Error);

impl Tx {
    /// Sends every available chain. Returns whether the used ring changed,
    /// or the backend's error when it stops taking frames for good.
    pub fn process<M: GuestMemory, B: Backend>(
        &mut self,
        queue: &mut Queue,
        mem: &M,
        backend: &mut B,
        hdr_len: usize,
        stats: &mut Stats,
    ) -> Result<bool, BackendGone> {
        let mut used = false;
        let mut gone = None;
        while let Some(chain) = queue.pop_descriptor_chain(mem) {
            let head = chain.head_index();
            match self.gather(chain, mem, hdr_len) {
                Ok(len) if gone.is_none() => match backend.write_frame(&self.iov) {
                    Ok(_) => {
                        stats.tx_frames += 1;
                        stats.tx_bytes += len as u64;
                    }
                    Err(e) => {
                        stats.tx_errors += 1;
                        if is_fatal(&e) {
                            gone = Some(e);
                        }
                    }
                },
                Ok(_) => stats.tx_errors += 1,
                Err(Bad::Malformed) => stats.tx_bad_chains += 1,
                Err(Bad::TooBig) => stats.tx_dropped_too_big += 1,
            }
            self.iov.clear();
            // The chain is returned either way: the driver may reuse it.
            if queue.add_used(mem, head, 0).is_err() {
                stats.tx_bad_chains += 1;
            }
            used = true;
        }
        match gone {
            Some(e) => Err(BackendGone(e)),
            None => Ok(used),
        }
    }

    /// Maps the chain's descriptors into `self.iov`; returns its length.
    fn gather<M: GuestMemory>(
        &mut self,
        chain: virtio_queue::DescriptorChain<&M>,
        mem: &M,
        hdr_len: usize,
    ) -> Result<usize, Bad> {
        let mut total = 0usize;
        for desc in chain {
            if desc.is_write_only() || self.iov.len() >= MAX_IOV {
                return Err(Bad::Malformed);
            }
            let len = desc.len() as usize;
            total = total.saturating_add(len);
            if total > MAX_TX_LEN {
                return Err(Bad::TooBig);
            }
            if len == 0 {
                continue;
            }
            // A buffer may straddle memory regions: one iovec per piece.
            let slices = mem
                .get_slices(desc.addr(), len, Permissions::Read)
                .map_err(|_| Bad::Malformed)?;
            for slice in slices {
                let slice = slice.map_err(|_| Bad::Malformed)?;
                if self.iov.len() >= MAX_IOV {
                    return Err(Bad::Malformed);
                }
                self.iov.push(libc::iovec {
                    iov_base: slice.ptr_guard().as_ptr() as *mut libc::c_void,
                    iov_len: slice.len(),
                });
            }
        }
        if total <= hdr_len {
            return Err(Bad::Malformed);
        }
        Ok(total)
    }
}

/// Errors after which the TAP will never take a frame again.
pub fn is_fatal(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EBADFD) | Some(libc::EBADF) | Some(libc::ENODEV) | Some(libc::ENXIO)
    )
}
