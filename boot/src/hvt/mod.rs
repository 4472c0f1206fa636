//! Solo5 `hvt` guests (MirageOS and the other Solo5-based unikernels built
//! for the hvt target): recognition, their two ELF notes, loading, the page
//! tables with segment permissions, and the boot information structure.
//!
//! Written from Solo5's public ABI headers (`include/solo5/hvt_abi.h`,
//! `elf_abi.h`, `mft_abi.h`):
//!
//! - An hvt image is an ELF64 x86-64 executable with a `.note.solo5.abi`
//!   note (owner "Solo5", type "ABI1") whose descriptor names the target
//!   (hvt = 1) and the ABI version (one of [`ABI_VERSIONS`]).
//! - Its `.note.solo5.manifest` note (type "MFT1") lists the devices the
//!   application wants, by name and type. The handle the guest passes in a
//!   block or net hypercall is the device's index in this list.
//! - The guest is entered in 64-bit long mode at `e_entry` with RDI
//!   pointing at `struct hvt_boot_info` and RSP at the top of memory.
//!
//! The module reads in that order: [`notes`] (finding the notes, the ABI
//! note), [`mod@manifest`] (the device list), [`loader`] (placement rules and
//! loading), `paging` (page tables with segment permissions) and
//! [`boot_info`] (what RDI points at); [`ring`] is the layout of the
//! network ring that boot info offers.
//!
//! Guest physical layout (below 1 MiB; the kernel loads at or above
//! [`GUEST_MIN_BASE`]):
//!
//! ```text
//! 0x0500  GDT (shared with every other mode, crate::cpu)
//! 0x9000  PML4, PDPT, page directories (crate::cpu::write_page_tables)
//! 0x10000 struct hvt_boot_info, then the manifest, then the command line
//!         (the guest sees nothing below this page, and this area
//!         read-only, as under solo5-hvt)
//! 0x14000 4 KiB page tables for the first 2 MiB and the kernel's regions
//! ```

pub mod boot_info;
mod error;
pub mod loader;
pub mod manifest;
pub mod notes;
mod paging;
pub mod ring;

pub use boot_info::{write_cycle_freq, HvtParams};
pub use error::Error;
pub use loader::{load, probe};
pub use manifest::{
    manifest, Attachment, Device, DeviceKind, Manifest, MFT_MAX_ENTRIES, MFT_NAME_SIZE,
    MFT_NOTE_MAX_SIZE, MFT_VERSION,
};
pub use notes::{abi_note, check_abi, is_solo5, AbiNote};

use crate::cpu;
use kvm_bindings::kvm_sregs;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

/// The hvt ABI versions ukvm implements (`HVT_ABI_VERSION`): 1 (Solo5
/// 0.6 to 0.7) and 2 (Solo5 0.8 and later). Version 2 changed the guest's
/// own memory layout (TLS sections), not what the monitor does; solo5-hvt
/// 0.11 then appended the ring I/O fields to the boot information without
/// a new version, so every version-2 guest may or may not use them.
pub const ABI_VERSIONS: [u32; 2] = [1, 2];
/// `enum abi_target` value of hvt.
pub const ABI_TARGET_HVT: u32 = 1;
/// Lowest address a segment may load at (`HVT_GUEST_MIN_BASE`).
pub const GUEST_MIN_BASE: u64 = 0x10_0000;
/// Where `struct hvt_boot_info` goes (RDI at entry), as solo5-hvt does
/// (`X86_BOOT_INFO_BASE`): the lowest page the guest can see.
pub const BOOT_INFO_ADDR: u64 = 0x10000;
/// End of the boot information area: the structure, the manifest (at most
/// [`MFT_NOTE_MAX_SIZE`]) and the command line ([`CMDLINE_SIZE`]).
pub const BOOT_INFO_AREA_END: u64 = 0x14000;
const _: () = assert!(
    BOOT_INFO_ADDR + BOOT_INFO_SIZE + MFT_NOTE_MAX_SIZE as u64 + 8 + CMDLINE_SIZE as u64
        <= BOOT_INFO_AREA_END
);
/// Size of `struct hvt_boot_info`: five 64-bit fields, then the ring I/O
/// fields solo5-hvt 0.11 appended (`host_features`, `guest_features`,
/// `net_ring`). Older guests read only the first 40 bytes; the manifest
/// follows wherever the `mft` field says.
pub const BOOT_INFO_SIZE: u64 = 56;
/// `HVT_FEATURE_RING_IO`: the tender offers the network ring (bit of
/// `host_features`).
pub const FEATURE_RING_IO: u32 = 1;
/// Longest guest command line, NUL included (`HVT_CMDLINE_SIZE`).
pub const CMDLINE_SIZE: usize = 8192;
/// First hypercall port (`HVT_HYPERCALL_PIO_BASE`); call N is port base + N.
pub const HYPERCALL_PIO_BASE: u16 = 0x500;
/// One past the last hypercall number (`HVT_HYPERCALL_MAX`).
pub const HYPERCALL_MAX: u16 = 9;
/// Largest guest memory (`X86_GUEST_MAX_MEM_SIZE`): hypercall arguments
/// are 32-bit addresses. An hvt machine has no MMIO, so its RAM is one
/// range from 0, as solo5-hvt maps it.
pub const MAX_MEM_SIZE: u64 = 4 << 30;

/// Hypercall numbers (`enum hvt_hypercall`).
pub mod call {
    /// Wall-clock time in nanoseconds.
    pub const WALLTIME: u16 = 1;
    /// Console output.
    pub const PUTS: u16 = 2;
    /// Wait for network input or a timeout.
    pub const POLL: u16 = 3;
    /// Write to a block device.
    pub const BLOCK_WRITE: u16 = 4;
    /// Read from a block device.
    pub const BLOCK_READ: u16 = 5;
    /// Send a frame.
    pub const NET_WRITE: u16 = 6;
    /// Receive a frame.
    pub const NET_READ: u16 = 7;
    /// End the guest with an exit status.
    pub const HALT: u16 = 8;
}

/// CR0.WP: ring 0 honours read-only pages (so a write to the text or
/// rodata of the guest faults in the guest).
pub const CR0_WP: u64 = 1 << 16;
/// CR0.NE: native x87 error reporting, as solo5-hvt sets.
pub const CR0_NE: u64 = 1 << 5;
/// CR4.OSFXSR and CR4.OSXMMEXCPT: SSE usable, as solo5-hvt sets (OCaml
/// code in MirageOS guests uses SSE).
pub const CR4_OSFXSR_OSXMMEXCPT: u64 = (1 << 9) | (1 << 10);
/// EFER.NXE: honour the no-execute bit of non-executable segments.
pub const EFER_NXE: u64 = 1 << 11;

/// Long mode as solo5-hvt enters it, plus write protection and NX so the
/// page permissions hold in ring 0.
pub fn setup_sregs(sregs: &mut kvm_sregs) {
    cpu::setup_sregs(sregs, cpu::Mode::Long64);
    sregs.cr0 |= CR0_WP | CR0_NE;
    sregs.cr4 |= CR4_OSFXSR_OSXMMEXCPT;
    sregs.efer |= EFER_NXE;
}

/// Writes `bytes` at guest-physical `addr`, naming the address on failure.
fn write(mem: &GuestMemoryMmap, addr: u64, bytes: &[u8]) -> crate::Result<()> {
    mem.write_slice(bytes, GuestAddress(addr))
        .map_err(|source| crate::Error::GuestMemory { addr, source })
}

#[cfg(test)]
pub(crate) mod tests;
