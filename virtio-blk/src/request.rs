//! A block request as the driver framed it (virtio 1.2 section 5.2.6):
//! a 16-byte header the device reads, data buffers, and a status byte the
//! device writes, each in its own descriptor (ANY_LAYOUT is not offered).
//!
//! Everything the guest controls is checked here, before any I/O: the
//! direction of each descriptor, that the chain ends (no loop, no chain
//! longer than the queue), that every buffer is in guest memory, and that
//! lengths add up without overflow.

use virtio_queue::desc::split::Descriptor;
use virtio_queue::DescriptorChain;
use vm_memory::{ByteValued, Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap};

/// Read sectors into the driver's buffers.
pub const T_IN: u32 = 0;
/// Write the driver's buffers to sectors.
pub const T_OUT: u32 = 1;
/// Make written data durable.
pub const T_FLUSH: u32 = 4;
/// Read the device's serial.
pub const T_GET_ID: u32 = 8;

/// Status: done.
pub const S_OK: u8 = 0;
/// Status: failed (bad request, I/O error, write to a read-only disk).
pub const S_IOERR: u8 = 1;
/// Status: request type not supported.
pub const S_UNSUPP: u8 = 2;

/// The request header (`struct virtio_blk_outhdr`).
#[derive(Debug, Default, Clone, Copy)]
#[repr(C)]
struct Header {
    kind: u32,
    reserved: u32,
    sector: u64,
}

// SAFETY: plain integers, no padding, any bit pattern is valid.
unsafe impl ByteValued for Header {}

const HEADER_LEN: u32 = 16;

/// A data buffer of the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    /// Guest address.
    pub addr: GuestAddress,
    /// Length in bytes.
    pub len: u32,
}

/// A well-formed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// `T_IN`, `T_OUT`, ...
    pub kind: u32,
    /// First sector.
    pub sector: u64,
    /// Data buffers, in order.
    pub data: Vec<Segment>,
    /// Total data length.
    pub data_len: u64,
    /// Where the status byte goes.
    pub status: GuestAddress,
}

/// A chain that is not a request. `status` is where the IOERR can still be
/// reported, if the chain ends in a writable byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Malformed {
    /// The status byte, if there is a usable one.
    pub status: Option<GuestAddress>,
}

fn in_memory(mem: &GuestMemoryMmap, d: &Descriptor) -> bool {
    d.len() == 0 || GuestMemoryBackend::check_range(mem, d.addr(), d.len() as usize)
}

impl Request {
    /// Parses the chain; `mem` is the guest memory the chain points into.
    pub fn parse(
        chain: DescriptorChain<&GuestMemoryMmap>,
        mem: &GuestMemoryMmap,
    ) -> Result<Request, Malformed> {
        let descs: Vec<Descriptor> = chain.collect();
        let bad = Malformed { status: None };
        let (Some(first), Some(last)) = (descs.first(), descs.last()) else {
            return Err(bad);
        };
        // The iterator stops early on a loop, a chain longer than the
        // queue, or an unreadable descriptor: the last one still says NEXT.
        if last.has_next() || !last.is_write_only() || last.len() < 1 || !in_memory(mem, last) {
            return Err(bad);
        }
        let bad = Malformed {
            status: Some(last.addr()),
        };
        if descs.len() < 2
            || first.is_write_only()
            || first.len() < HEADER_LEN
            || !in_memory(mem, first)
        {
            return Err(bad);
        }
        let header: Header = mem.read_obj(first.addr()).map_err(|_| bad)?;
        let kind = u32::from_le(header.kind);
        let mut data = Vec::with_capacity(descs.len() - 2);
        let mut data_len: u64 = 0;
        for d in &descs[1..descs.len() - 1] {
            let direction_ok = match kind {
                T_IN | T_GET_ID => d.is_write_only(),
                T_OUT => !d.is_write_only(),
                _ => true,
            };
            if !direction_ok || !in_memory(mem, d) {
                return Err(bad);
            }
            data_len = data_len.checked_add(u64::from(d.len())).ok_or(bad)?;
            data.push(Segment {
                addr: d.addr(),
                len: d.len(),
            });
        }
        Ok(Request {
            kind,
            sector: u64::from_le(header.sector),
            data,
            data_len,
            status: last.addr(),
        })
    }
}
