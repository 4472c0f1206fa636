//! The shared network ring of Solo5 0.11+ (`hvt_ring.h`): the layout both
//! sides agree on. The monitor side, which serves it, is in the `ukvm`
//! crate; this module only says where each field is.
//!
//! ```text
//! 0    u32 ent_tail   guest: submissions produced
//! 4    u32 com_head   guest: commits consumed
//! 64   u32 ent_head   host: submissions consumed
//! 68   u32 com_tail   host: commits produced
//! 72   u32 needs_kick host: set before it sleeps on the kick eventfd
//! 128  entries[1024]  32 bytes each: operation, handle, data, len, id
//! ...  commits[1024]  16 bytes each: id, ret, len
//! ```
//!
//! Every field is in guest memory, so the guest can write all of them. A
//! monitor keeps its own copies of the host indices and only ever stores
//! them; it reads the guest's `ent_tail` once per pass and treats a value
//! more than [`SIZE`] ahead of its own head as a broken ring.

/// Entries in each array (`HVT_RING_SIZE`).
pub const SIZE: u32 = 1024;
/// Index mask (`HVT_RING_MASK`).
pub const MASK: u32 = SIZE - 1;
/// Per-slot buffer size the guest uses for writes (`HVT_RING_BUF_SIZE`).
pub const BUF_SIZE: u32 = 2048;

/// `ent_tail`, written by the guest.
pub const ENT_TAIL: u64 = 0;
/// `com_head`, written by the guest.
pub const COM_HEAD: u64 = 4;
/// `ent_head`, written by the host.
pub const ENT_HEAD: u64 = 64;
/// `com_tail`, written by the host.
pub const COM_TAIL: u64 = 68;
/// `needs_kick`, written by the host.
pub const NEEDS_KICK: u64 = 72;
/// Start of `entries[]`.
pub const ENTRIES: u64 = 128;
/// `sizeof(struct hvt_ring_entry)`.
pub const ENTRY_SIZE: u64 = 32;
/// Start of `commits[]`.
pub const COMMITS: u64 = ENTRIES + SIZE as u64 * ENTRY_SIZE;
/// `sizeof(struct hvt_ring_commit)`.
pub const COMMIT_SIZE: u64 = 16;
/// `sizeof(struct hvt_ring)`.
pub const BYTES: u64 = COMMITS + SIZE as u64 * COMMIT_SIZE;

/// Offsets inside `struct hvt_ring_entry`.
pub mod entry {
    /// `u32 operation`: [`super::OP_NET_WRITE`] or [`super::OP_NET_READ`].
    pub const OPERATION: u64 = 0;
    /// `u32 handle`: the manifest index of the NIC.
    pub const HANDLE: u64 = 4;
    /// `u64 data`: guest-physical buffer address.
    pub const DATA: u64 = 8;
    /// `u32 len`: bytes to send, or room to receive into.
    pub const LEN: u64 = 16;
    /// `u32 id`: copied into the commit.
    pub const ID: u64 = 20;
}

/// Offsets inside `struct hvt_ring_commit`.
pub mod commit {
    /// `u32 id` of the entry this completes.
    pub const ID: u64 = 0;
    /// `i32 ret`: a `solo5_result_t`.
    pub const RET: u64 = 4;
    /// `u32 len`: bytes received.
    pub const LEN: u64 = 8;
}

/// `HVT_RING_NET_WRITE`: send a frame; no commit is posted.
pub const OP_NET_WRITE: u32 = 1;
/// `HVT_RING_NET_READ`: receive a frame; a commit is posted.
pub const OP_NET_READ: u32 = 2;
/// Port the guest writes to wake a sleeping host (`HVT_RING_KICK_PIO_BASE`).
pub const KICK_PORT: u16 = 0x600;
/// Guest memory solo5-hvt sets aside for the ring: `sizeof(struct
/// hvt_ring)` rounded up to its 2 MiB guest page, at the top of RAM.
pub const RESERVE: u64 = 2 << 20;

#[cfg(test)]
mod tests {
    #[test]
    fn layout_matches_hvt_ring_h() {
        // _Static_asserts of hvt_ring.h, and sizeof(struct hvt_ring).
        assert_eq!(super::ENT_HEAD, 64);
        assert_eq!(super::ENTRIES, 128);
        assert_eq!(super::BYTES, 128 + 1024 * 32 + 1024 * 16);
        const { assert!(super::BYTES <= super::RESERVE) };
    }
}
