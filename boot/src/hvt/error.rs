//! What can be wrong with an hvt image, its notes or its placement.

use super::MFT_NAME_SIZE;
use thiserror::Error;

/// What is wrong with an hvt image, its notes or its placement.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum Error {
    /// The image carries no Solo5 ABI note.
    #[error("no Solo5 ABI note (.note.solo5.abi): not a Solo5 image")]
    NoAbiNote,
    /// The ABI note is for another Solo5 target.
    #[error("Solo5 ABI target {} ({target}) is not supported: ukvm runs hvt images, and virtio ones through their Multiboot header", target_name(*target))]
    UnsupportedTarget {
        /// The `abi_target` found.
        target: u32,
    },
    /// The hvt ABI version is not one of [`super::ABI_VERSIONS`].
    #[error("Solo5 hvt ABI version {found} is not supported (ukvm implements versions 1 and 2)")]
    UnsupportedAbiVersion {
        /// Version in the image.
        found: u32,
    },
    /// A Solo5 note whose header or size is malformed.
    #[error("{note} note: {why}")]
    BadNote {
        /// Which note.
        note: &'static str,
        /// What is wrong.
        why: String,
    },
    /// The image has no manifest note.
    #[error("no Solo5 manifest note (.note.solo5.manifest)")]
    NoManifest,
    /// Manifest version differs from ours.
    #[error("manifest version {found} is not supported (ukvm implements version {supported})")]
    ManifestVersion {
        /// Version in the image.
        found: u32,
        /// [`super::MFT_VERSION`].
        supported: u32,
    },
    /// More entries than the ABI allows.
    #[error("manifest declares {count} entries; at most {max} are allowed")]
    TooManyEntries {
        /// Declared count.
        count: u32,
        /// [`super::MFT_MAX_ENTRIES`].
        max: usize,
    },
    /// The descriptor size does not match the entry count.
    #[error("manifest is {size} bytes but {entries} entries need exactly {expected}")]
    ManifestSize {
        /// Bytes after the alignment padding.
        size: usize,
        /// Declared entries.
        entries: u32,
        /// What they need.
        expected: usize,
    },
    /// The first entry must be the reserved one with an empty name.
    #[error("manifest entry 0 must be the reserved entry with an empty name")]
    NoReservedEntry,
    /// A name fills its field with no terminating NUL.
    #[error("manifest entry {index}: name is not NUL-terminated within {MFT_NAME_SIZE} bytes")]
    NameNotTerminated {
        /// Entry index.
        index: usize,
    },
    /// A name is not valid UTF-8 (ukvm matches names from the command line).
    #[error("manifest entry {index}: name is not valid UTF-8")]
    NameNotUtf8 {
        /// Entry index.
        index: usize,
    },
    /// The `attached` flag is set in the image (only a monitor may set it).
    #[error("manifest entry {index} ('{name}') is marked attached in the image")]
    PreAttached {
        /// Entry index.
        index: usize,
        /// Its name.
        name: String,
    },
    /// A device type ukvm does not know.
    #[error("manifest entry {index} ('{name}'): unknown device type {kind:#x}")]
    UnknownDeviceType {
        /// Entry index.
        index: usize,
        /// Its name.
        name: String,
        /// The type found.
        kind: u32,
    },
    /// Two devices of one type share a name.
    #[error("manifest declares device '{name}' twice")]
    DuplicateName {
        /// The name.
        name: String,
    },
    /// Not an ELF64 x86-64 executable.
    #[error("not an ELF64 x86-64 executable")]
    NotX86_64,
    /// A segment starts below [`super::GUEST_MIN_BASE`].
    #[error("program header {index}: segment at {addr:#x} lies below {min:#x}, the lowest address the hvt ABI allows")]
    SegmentBelowMinBase {
        /// Program header index among PT_LOADs.
        index: usize,
        /// Its (page-aligned) start.
        addr: u64,
        /// [`super::GUEST_MIN_BASE`].
        min: u64,
    },
    /// A segment ends past guest memory.
    #[error("program header {index}: segment [{start:#x}, {end:#x}) ends past guest memory ({mem_size:#x}; raise --mem)")]
    SegmentPastMemory {
        /// Program header index among PT_LOADs.
        index: usize,
        /// Start.
        start: u64,
        /// End (page-aligned).
        end: u64,
        /// Guest memory size.
        mem_size: u64,
    },
    /// Segments overlap or are out of address order.
    #[error("program header {index}: segment at {start:#x} overlaps or precedes the previous one (ends {prev_end:#x})")]
    SegmentsOverlap {
        /// Program header index among PT_LOADs.
        index: usize,
        /// Its page-aligned start.
        start: u64,
        /// End of the segment before it.
        prev_end: u64,
    },
    /// A segment asks to be both writable and executable.
    #[error("program header {index}: segment at {addr:#x} is writable and executable, which the hvt ABI forbids")]
    WritableExecutable {
        /// Program header index among PT_LOADs.
        index: usize,
        /// Its address.
        addr: u64,
    },
    /// Physical and virtual addresses differ (hvt guests run identity-mapped).
    #[error("program header {index}: p_vaddr {vaddr:#x} differs from p_paddr {paddr:#x}; hvt guests run identity-mapped")]
    NotIdentityMapped {
        /// Program header index among PT_LOADs.
        index: usize,
        /// `p_vaddr`.
        vaddr: u64,
        /// `p_paddr`.
        paddr: u64,
    },
    /// `p_memsz < p_filesz`, or file bytes past the end of the file.
    #[error("program header {index}: {why}")]
    BadSegment {
        /// Program header index among PT_LOADs.
        index: usize,
        /// What is wrong.
        why: &'static str,
    },
    /// The entry point is outside the loaded image's range.
    #[error("entry point {entry:#x} lies outside [{min:#x}, {mem_size:#x})")]
    EntryOutside {
        /// `e_entry`.
        entry: u64,
        /// [`super::GUEST_MIN_BASE`].
        min: u64,
        /// Guest memory size.
        mem_size: u64,
    },
    /// Guest memory too large or too small for an hvt guest.
    #[error("hvt guests need between {min} and {max} MiB of memory (hypercall arguments are 32-bit addresses); --mem {mib} MiB")]
    MemSize {
        /// Requested MiB.
        mib: u64,
        /// Smallest.
        min: u64,
        /// Largest.
        max: u64,
    },
    /// The kernel spans more 2 MiB regions than there is room for 4 KiB
    /// page tables below 1 MiB.
    #[error("kernel spans {regions} 2 MiB regions; ukvm has room for page tables of {max}")]
    KernelTooLarge {
        /// Regions needed.
        regions: u64,
        /// Regions that fit.
        max: u64,
    },
    /// The monitor placed the network ring outside RAM (a monitor bug, or
    /// a library user's).
    #[error("network ring at {at:#x} does not fit page-aligned in {ram:#x} bytes of RAM above the guest's 2 MiB minimum")]
    RingOutside {
        /// Ring address asked for.
        at: u64,
        /// Bytes of RAM from 0.
        ram: u64,
    },
    /// The command line does not fit `HVT_CMDLINE_SIZE`.
    #[error("guest command line is {len} bytes; at most {max} fit")]
    CmdlineTooLong {
        /// Its length.
        len: usize,
        /// `HVT_CMDLINE_SIZE - 1`.
        max: usize,
    },
}

fn target_name(target: u32) -> &'static str {
    match target {
        1 => "hvt",
        2 => "spt",
        3 => "virtio",
        4 => "muen",
        5 => "genode",
        _ => "unknown",
    }
}
