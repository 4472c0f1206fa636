//! virtio-blk (virtio 1.2 section 5.2) over a host file.
//!
//! - [`disk`]: `--disk FILE[,ro|rw]` parsing, opening the file once, and the
//!   [`disk::Backend`] that moves bytes between the file and guest memory
//!   with `preadv`/`pwritev` (no bounce buffer).
//! - [`request`]: turning a descriptor chain into a checked request.
//! - [`device`]: the [`Block`] device: a [`ukvm_devices::virtio::VirtioDevice`]
//!   for the transport and an event-manager subscriber that serves its
//!   queue on the I/O thread.
//!
//! `.iso` files are read-only (`VIRTIO_BLK_F_RO`) unless `,rw` says
//! otherwise; everything else is read-write unless `,ro`. A file whose size
//! is not a multiple of 512 bytes is refused: rounding down would hide the
//! tail of the image from the guest without anyone noticing.

pub mod device;
pub mod disk;
pub mod request;

pub use device::Block;
pub use disk::{Disk, DiskSpec, Error};

/// Bytes per sector, the unit of capacity and of request offsets.
pub const SECTOR_SIZE: u64 = 512;
