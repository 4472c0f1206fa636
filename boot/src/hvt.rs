//! Solo5 `hvt` guests (MirageOS and the other Solo5-based unikernels built
//! for the hvt target): recognition, their two ELF notes, loading, the page
//! tables with segment permissions, and the boot information structure.
//!
//! Written from Solo5's public ABI headers (`include/solo5/hvt_abi.h`,
//! `elf_abi.h`, `mft_abi.h`):
//!
//! - An hvt image is an ELF64 x86-64 executable with a `.note.solo5.abi`
//!   note (owner "Solo5", type "ABI1") whose descriptor names the target
//!   (hvt = 1) and the ABI version ([`ABI_VERSION`]).
//! - Its `.note.solo5.manifest` note (type "MFT1") lists the devices the
//!   application wants, by name and type. The handle the guest passes in a
//!   block or net hypercall is the device's index in this list.
//! - The guest is entered in 64-bit long mode at `e_entry` with RDI
//!   pointing at `struct hvt_boot_info` and RSP at the top of memory.
//!
//! Guest physical layout (below 1 MiB; the kernel loads at or above
//! [`GUEST_MIN_BASE`]):
//!
//! ```text
//! 0x0500  GDT (shared with every other mode, crate::cpu)
//! 0x5000  struct hvt_boot_info, then the manifest, then the command line
//! 0x9000  PML4, PDPT, page directories (crate::cpu::write_page_tables)
//! 0x10000 4 KiB page tables for the 2 MiB regions holding the kernel
//! ```

use crate::{cpu, elf, layout, Boot, Format};
use kvm_bindings::{kvm_regs, kvm_sregs};
use thiserror::Error;
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion};

/// The hvt ABI version ukvm implements (`HVT_ABI_VERSION`).
pub const ABI_VERSION: u32 = 1;
/// `enum abi_target` value of hvt.
pub const ABI_TARGET_HVT: u32 = 1;
/// Lowest address a segment may load at (`HVT_GUEST_MIN_BASE`).
pub const GUEST_MIN_BASE: u64 = 0x10_0000;
/// Where `struct hvt_boot_info` goes (RDI at entry); as solo5-hvt does.
pub const BOOT_INFO_ADDR: u64 = 0x5000;
/// Size of `struct hvt_boot_info`: five 64-bit fields.
pub const BOOT_INFO_SIZE: u64 = 40;
/// Longest guest command line, NUL included (`HVT_CMDLINE_SIZE`).
pub const CMDLINE_SIZE: usize = 8192;
/// First hypercall port (`HVT_HYPERCALL_PIO_BASE`); call N is port base + N.
pub const HYPERCALL_PIO_BASE: u16 = 0x500;
/// One past the last hypercall number (`HVT_HYPERCALL_MAX`).
pub const HYPERCALL_MAX: u16 = 9;
/// Largest guest memory: hypercall arguments are 32-bit addresses, and RAM
/// must be contiguous below ukvm's MMIO hole.
pub const MAX_MEM_SIZE: u64 = layout::MMIO_HOLE_START;

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

const NOTE_OWNER: &[u8] = b"Solo5\0";
const ABI1_NOTE_TYPE: u32 = 0x3149_4241; // "ABI1"
const MFT1_NOTE_TYPE: u32 = 0x3154_464d; // "MFT1"
/// `struct abi1_info`: target, version, two reserved words.
const ABI1_INFO_SIZE: usize = 16;
/// The note header is 20 bytes; `struct mft` holds 64-bit fields, so the
/// compiler puts it at offset 24 and the descriptor starts with 4 bytes of
/// padding (`MFT1_NOTE_ALIGN`).
const MFT_DESC_PAD: usize = 4;
/// Manifest ABI version (`MFT_VERSION`).
pub const MFT_VERSION: u32 = 1;
/// Most manifest entries (`MFT_MAX_ENTRIES`).
pub const MFT_MAX_ENTRIES: usize = 64;
/// Bytes of an entry name, NUL included (`MFT_NAME_SIZE`).
pub const MFT_NAME_SIZE: usize = 68;
/// `struct mft` header: version, entries.
const MFT_HEADER_SIZE: usize = 8;
/// `sizeof(struct mft_entry)`: name[68], type, union u (16, 8-aligned),
/// union b (8), bool attached, padded to 8.
const MFT_ENTRY_SIZE: usize = 104;
const MFT_TYPE_AT: usize = 68;
const MFT_U_AT: usize = 72;
const MFT_ATTACHED_AT: usize = 96;
const MFT_DEV_BLOCK_BASIC: u32 = 1;
const MFT_DEV_NET_BASIC: u32 = 2;
const MFT_RESERVED_FIRST: u32 = 1 << 30;
/// Largest manifest descriptor a valid image can carry.
pub const MFT_NOTE_MAX_SIZE: usize =
    MFT_DESC_PAD + MFT_HEADER_SIZE + MFT_MAX_ENTRIES * MFT_ENTRY_SIZE;

/// Where the 4 KiB page tables for the kernel's 2 MiB regions go: after
/// the boot area, below the EBDA hole.
const PAGE_TABLES_4K_ADDR: u64 = layout::BOOT_AREA_END;
const PAGE_TABLES_4K_END: u64 = layout::EBDA_START & !0xfff;
const PAGE_SIZE: u64 = 0x1000;
const LARGE_PAGE: u64 = 2 << 20;
const PTE_PRESENT: u64 = 1;
const PTE_WRITABLE: u64 = 1 << 1;
const PTE_NX: u64 = 1 << 63;
const PF_X: u32 = 1;
const PF_W: u32 = 2;
const EM_X86_64: u16 = 62;

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
    /// The hvt ABI version differs from ours.
    #[error(
        "Solo5 hvt ABI version {found} is not supported (ukvm implements version {supported})"
    )]
    UnsupportedAbiVersion {
        /// Version in the image.
        found: u32,
        /// [`ABI_VERSION`].
        supported: u32,
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
        /// [`MFT_VERSION`].
        supported: u32,
    },
    /// More entries than the ABI allows.
    #[error("manifest declares {count} entries; at most {max} are allowed")]
    TooManyEntries {
        /// Declared count.
        count: u32,
        /// [`MFT_MAX_ENTRIES`].
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
    /// A segment starts below [`GUEST_MIN_BASE`].
    #[error("program header {index}: segment at {addr:#x} lies below {min:#x}, the lowest address the hvt ABI allows")]
    SegmentBelowMinBase {
        /// Program header index among PT_LOADs.
        index: usize,
        /// Its (page-aligned) start.
        addr: u64,
        /// [`GUEST_MIN_BASE`].
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
        /// [`GUEST_MIN_BASE`].
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

/// The descriptor of `.note.solo5.abi`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AbiNote {
    /// `enum abi_target` (hvt = 1, spt, virtio, muen, genode).
    pub target: u32,
    /// ABI version of that target.
    pub version: u32,
}

/// Device types of the manifest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceKind {
    /// `MFT_DEV_BLOCK_BASIC`.
    Block,
    /// `MFT_DEV_NET_BASIC`.
    Net,
}

impl DeviceKind {
    /// Name as Solo5 prints it.
    pub fn name(self) -> &'static str {
        match self {
            DeviceKind::Block => "BLOCK_BASIC",
            DeviceKind::Net => "NET_BASIC",
        }
    }
}

/// One device the application declares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    /// Its name (what `--disk NAME=FILE` / `--net NAME=TAP` refer to).
    pub name: String,
    /// Block or net.
    pub kind: DeviceKind,
    /// Index in the manifest: the handle the guest uses in hypercalls.
    pub handle: u64,
}

/// The application manifest, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// The `struct mft` bytes as in the image (copied to the guest with
    /// the attached devices filled in).
    raw: Vec<u8>,
    /// Declared devices, in manifest order (the reserved entry left out).
    pub devices: Vec<Device>,
}

/// What the monitor attached to a manifest device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attachment {
    /// A block device of `capacity` bytes in sectors of `block_size`.
    Block {
        /// Bytes.
        capacity: u64,
        /// Sector size in bytes.
        block_size: u16,
    },
    /// A network interface.
    Net {
        /// The guest's MAC address.
        mac: [u8; 6],
        /// Largest frame payload.
        mtu: u16,
    },
}

/// What an hvt guest gets besides its image.
#[derive(Debug, Clone, Default)]
pub struct HvtParams {
    /// The guest command line (solo5-hvt joins the arguments after the
    /// kernel with spaces).
    pub cmdline: String,
    /// Attached devices by handle (manifest index).
    pub attachments: Vec<(u64, Attachment)>,
    /// CPU cycle counter (TSC) frequency in Hz; 0 when not known yet (see
    /// [`write_cycle_freq`]).
    pub cpu_cycle_freq: u64,
}

fn note_err(note: &'static str, why: impl Into<String>) -> Error {
    Error::BadNote {
        note,
        why: why.into(),
    }
}

fn le32(bytes: &[u8], at: usize) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(b)
}

fn le64(bytes: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(b)
}

/// The PT_NOTE segments of an ELF64 little-endian image, as file slices.
/// Anything that is not such an image yields no segments.
fn note_segments(image: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    if image.len() < 64 || !elf::is_elf(image) || image[4] != 2 || image[5] != 1 {
        return out;
    }
    let phoff = le64(image, 32);
    let phentsize = u64::from(u16::from_le_bytes([image[54], image[55]]));
    let phnum = u64::from(u16::from_le_bytes([image[56], image[57]]));
    if phentsize < 56 {
        return out;
    }
    for i in 0..phnum {
        let Some(ph) = phoff
            .checked_add(i * phentsize)
            .and_then(|at| usize::try_from(at).ok())
            .and_then(|at| image.get(at..at.checked_add(56)?))
        else {
            break;
        };
        if le32(ph, 0) != 4 {
            continue;
        }
        let (offset, size) = (le64(ph, 8), le64(ph, 32));
        if let Some(seg) = usize::try_from(offset)
            .ok()
            .zip(usize::try_from(size).ok())
            .and_then(|(o, n)| image.get(o..o.checked_add(n)?))
        {
            out.push(seg);
        }
    }
    out
}

/// Finds the Solo5 note of `kind` and returns its descriptor. Notes are
/// walked the ELF way (4-byte aligned name and descriptor), so a Solo5
/// note is found wherever the linker put it among other notes.
fn find_note<'a>(
    image: &'a [u8],
    kind: u32,
    note: &'static str,
) -> Result<Option<&'a [u8]>, Error> {
    for seg in note_segments(image) {
        let mut at = 0usize;
        while at + 12 <= seg.len() {
            let namesz = le32(seg, at) as usize;
            let descsz = le32(seg, at + 4) as usize;
            let ntype = le32(seg, at + 8);
            let name_at = at + 12;
            let desc_at = name_at.saturating_add(namesz.next_multiple_of(4));
            let next = desc_at.saturating_add(descsz.next_multiple_of(4));
            let owner = seg.get(name_at..name_at.saturating_add(namesz));
            if owner == Some(NOTE_OWNER) && ntype == kind {
                return seg
                    .get(desc_at..desc_at.saturating_add(descsz))
                    .map(Some)
                    .ok_or_else(|| {
                        note_err(
                            note,
                            format!(
                                "descriptor of {descsz} bytes runs past the end of its segment"
                            ),
                        )
                    });
            }
            if next > seg.len() {
                break;
            }
            at = next;
        }
    }
    Ok(None)
}

/// Reads `.note.solo5.abi`, or `None` when the image has none.
pub fn abi_note(image: &[u8]) -> Result<Option<AbiNote>, Error> {
    const NOTE: &str = ".note.solo5.abi";
    let Some(desc) = find_note(image, ABI1_NOTE_TYPE, NOTE)? else {
        return Ok(None);
    };
    if desc.len() != ABI1_INFO_SIZE {
        return Err(note_err(
            NOTE,
            format!(
                "descriptor is {} bytes, expected {ABI1_INFO_SIZE}",
                desc.len()
            ),
        ));
    }
    Ok(Some(AbiNote {
        target: le32(desc, 0),
        version: le32(desc, 4),
    }))
}

/// Checks that an ABI note is for hvt at [`ABI_VERSION`].
pub fn check_abi(note: AbiNote) -> Result<(), Error> {
    if note.target != ABI_TARGET_HVT {
        return Err(Error::UnsupportedTarget {
            target: note.target,
        });
    }
    if note.version != ABI_VERSION {
        return Err(Error::UnsupportedAbiVersion {
            found: note.version,
            supported: ABI_VERSION,
        });
    }
    Ok(())
}

/// Reads and validates `.note.solo5.manifest` as solo5-hvt does: version,
/// entry count, exact size, the reserved first entry, NUL-terminated
/// names, no entry pre-attached, known device types.
pub fn manifest(image: &[u8]) -> Result<Manifest, Error> {
    const NOTE: &str = ".note.solo5.manifest";
    let desc = find_note(image, MFT1_NOTE_TYPE, NOTE)?.ok_or(Error::NoManifest)?;
    if desc.len() > MFT_NOTE_MAX_SIZE {
        return Err(note_err(
            NOTE,
            format!(
                "descriptor is {} bytes; at most {MFT_NOTE_MAX_SIZE} ({MFT_MAX_ENTRIES} entries) are allowed",
                desc.len()
            ),
        ));
    }
    if desc.len() < MFT_DESC_PAD + MFT_HEADER_SIZE {
        return Err(note_err(
            NOTE,
            format!(
                "descriptor is {} bytes, too small for a manifest",
                desc.len()
            ),
        ));
    }
    let raw = &desc[MFT_DESC_PAD..];
    let version = le32(raw, 0);
    if version != MFT_VERSION {
        return Err(Error::ManifestVersion {
            found: version,
            supported: MFT_VERSION,
        });
    }
    let entries = le32(raw, 4);
    if entries as usize > MFT_MAX_ENTRIES {
        return Err(Error::TooManyEntries {
            count: entries,
            max: MFT_MAX_ENTRIES,
        });
    }
    let expected = MFT_HEADER_SIZE + entries as usize * MFT_ENTRY_SIZE;
    if raw.len() != expected {
        return Err(Error::ManifestSize {
            size: raw.len(),
            entries,
            expected,
        });
    }
    let devices = parse_entries(raw, entries as usize)?;
    Ok(Manifest {
        raw: raw.to_vec(),
        devices,
    })
}

fn parse_entries(raw: &[u8], count: usize) -> Result<Vec<Device>, Error> {
    let mut devices: Vec<Device> = Vec::new();
    for index in 0..count {
        let e = &raw[MFT_HEADER_SIZE + index * MFT_ENTRY_SIZE..][..MFT_ENTRY_SIZE];
        let name_field = &e[..MFT_NAME_SIZE];
        let len = name_field
            .iter()
            .position(|&b| b == 0)
            .ok_or(Error::NameNotTerminated { index })?;
        let name = std::str::from_utf8(&name_field[..len])
            .map_err(|_| Error::NameNotUtf8 { index })?
            .to_string();
        let kind = le32(e, MFT_TYPE_AT);
        if index == 0 {
            if kind != MFT_RESERVED_FIRST || !name.is_empty() {
                return Err(Error::NoReservedEntry);
            }
            continue;
        }
        if e[MFT_ATTACHED_AT] != 0 {
            return Err(Error::PreAttached { index, name });
        }
        let kind = match kind {
            MFT_DEV_BLOCK_BASIC => DeviceKind::Block,
            MFT_DEV_NET_BASIC => DeviceKind::Net,
            k if k >= MFT_RESERVED_FIRST => continue,
            k => {
                return Err(Error::UnknownDeviceType {
                    index,
                    name,
                    kind: k,
                })
            }
        };
        if devices.iter().any(|d| d.name == name) {
            return Err(Error::DuplicateName { name });
        }
        devices.push(Device {
            name,
            kind,
            handle: index as u64,
        });
    }
    Ok(devices)
}

impl Manifest {
    /// The manifest as the guest sees it: the image's bytes with each
    /// attached device's properties and `attached` flag filled in.
    pub fn guest_bytes(&self, attachments: &[(u64, Attachment)]) -> Vec<u8> {
        let mut raw = self.raw.clone();
        for &(handle, attachment) in attachments {
            let Some(e) = usize::try_from(handle)
                .ok()
                .filter(|&h| h > 0 && MFT_HEADER_SIZE + (h + 1) * MFT_ENTRY_SIZE <= raw.len())
                .map(|h| &mut raw[MFT_HEADER_SIZE + h * MFT_ENTRY_SIZE..][..MFT_ENTRY_SIZE])
            else {
                continue;
            };
            let u = &mut e[MFT_U_AT..MFT_U_AT + 16];
            u.fill(0);
            match attachment {
                Attachment::Block {
                    capacity,
                    block_size,
                } => {
                    u[..8].copy_from_slice(&capacity.to_le_bytes());
                    u[8..10].copy_from_slice(&block_size.to_le_bytes());
                }
                Attachment::Net { mac, mtu } => {
                    u[..6].copy_from_slice(&mac);
                    u[6..8].copy_from_slice(&mtu.to_le_bytes());
                }
            }
            e[MFT_ATTACHED_AT] = 1;
        }
        raw
    }

    /// The devices of one kind.
    pub fn of_kind(&self, kind: DeviceKind) -> impl Iterator<Item = &Device> {
        self.devices.iter().filter(move |d| d.kind == kind)
    }
}

/// True if `image` carries a Solo5 ABI note (of any target).
pub fn is_solo5(image: &[u8]) -> bool {
    matches!(abi_note(image), Ok(Some(_)) | Err(_))
}

/// Checks an hvt image without guest memory: ABI note, manifest, ELF
/// header and segment placement for `mem_size` bytes of RAM.
pub fn probe(image: &[u8], mem_size: u64) -> crate::Result<Manifest> {
    check_abi(abi_note(image)?.ok_or(Error::NoAbiNote)?)?;
    let manifest = manifest(image)?;
    check_mem_size(mem_size)?;
    let elf = elf::parse(image)?;
    plan(&elf, image, mem_size)?;
    Ok(manifest)
}

fn check_mem_size(mem_size: u64) -> Result<(), Error> {
    let (min, max) = (layout::MIN_MEM_SIZE >> 20, MAX_MEM_SIZE >> 20);
    if !(layout::MIN_MEM_SIZE..=MAX_MEM_SIZE).contains(&mem_size) {
        return Err(Error::MemSize {
            mib: mem_size >> 20,
            min,
            max,
        });
    }
    Ok(())
}

/// A PT_LOAD segment after the checks, with its page-aligned extent.
#[derive(Debug, Clone, Copy)]
struct Placed {
    seg: elf::Segment,
    start: u64,
    end: u64,
}

/// Applies solo5-hvt's placement rules to every PT_LOAD segment.
fn plan(elf: &elf::Elf, image: &[u8], mem_size: u64) -> Result<Vec<Placed>, Error> {
    if !elf.is_64 || elf.machine != EM_X86_64 {
        return Err(Error::NotX86_64);
    }
    let mut placed: Vec<Placed> = Vec::new();
    for (index, &seg) in elf.segments.iter().enumerate() {
        if seg.memsz == 0 {
            continue;
        }
        let p = place(index, seg, image.len() as u64, mem_size)?;
        if let Some(prev) = placed.last() {
            if p.start < prev.end {
                return Err(Error::SegmentsOverlap {
                    index,
                    start: p.start,
                    prev_end: prev.end,
                });
            }
        }
        placed.push(p);
    }
    if elf.entry < GUEST_MIN_BASE || elf.entry >= mem_size {
        return Err(Error::EntryOutside {
            entry: elf.entry,
            min: GUEST_MIN_BASE,
            mem_size,
        });
    }
    Ok(placed)
}

fn place(index: usize, seg: elf::Segment, file_len: u64, mem_size: u64) -> Result<Placed, Error> {
    if seg.vaddr != seg.paddr {
        return Err(Error::NotIdentityMapped {
            index,
            vaddr: seg.vaddr,
            paddr: seg.paddr,
        });
    }
    let start = seg.paddr & !(PAGE_SIZE - 1);
    if start < GUEST_MIN_BASE {
        return Err(Error::SegmentBelowMinBase {
            index,
            addr: seg.paddr,
            min: GUEST_MIN_BASE,
        });
    }
    if seg.memsz < seg.filesz {
        return Err(Error::BadSegment {
            index,
            why: "p_memsz is smaller than p_filesz",
        });
    }
    if seg
        .offset
        .checked_add(seg.filesz)
        .is_none_or(|e| e > file_len)
    {
        return Err(Error::BadSegment {
            index,
            why: "file bytes lie past the end of the file (truncated image?)",
        });
    }
    let end = seg
        .paddr
        .checked_add(seg.memsz)
        .and_then(|e| e.checked_next_multiple_of(PAGE_SIZE))
        .filter(|&e| e <= mem_size)
        .ok_or(Error::SegmentPastMemory {
            index,
            start: seg.paddr,
            end: seg.paddr.saturating_add(seg.memsz),
            mem_size,
        })?;
    if seg.flags & PF_W != 0 && seg.flags & PF_X != 0 {
        return Err(Error::WritableExecutable {
            index,
            addr: seg.paddr,
        });
    }
    Ok(Placed { seg, start, end })
}

/// Loads an hvt image: segments, page tables, boot information, manifest
/// and command line. Returns what the vCPU needs.
pub fn load(mem: &GuestMemoryMmap, image: &[u8], params: &HvtParams) -> crate::Result<Boot> {
    let mem_size: u64 = mem.iter().map(|r| r.len()).sum();
    let manifest = probe(image, mem_size)?;
    if params.cmdline.len() >= CMDLINE_SIZE {
        return Err(Error::CmdlineTooLong {
            len: params.cmdline.len(),
            max: CMDLINE_SIZE - 1,
        }
        .into());
    }
    if let Some(pos) = params.cmdline.bytes().position(|b| b == 0) {
        return Err(crate::Error::CmdlineNul(pos));
    }
    let elf = elf::parse(image)?;
    let placed = plan(&elf, image, mem_size)?;
    cpu::write_gdt(mem)?;
    for p in &placed {
        load_segment(mem, image, &p.seg)?;
    }
    let kernel_start = placed.first().map_or(GUEST_MIN_BASE, |p| p.start);
    let kernel_end = placed.last().map_or(GUEST_MIN_BASE, |p| p.end);
    write_page_tables(mem, &placed, mem_size)?;
    let mft = manifest.guest_bytes(&params.attachments);
    write_boot_info(mem, mem_size, kernel_end, params, &mft)?;
    let regs = kvm_regs {
        rip: elf.entry,
        rflags: 0x2,
        // The x86-64 ABI wants (RSP + 8) 16-byte aligned at function entry.
        rsp: mem_size - 8,
        rdi: BOOT_INFO_ADDR,
        ..Default::default()
    };
    Ok(Boot {
        format: Format::Solo5Hvt,
        entry: elf.entry,
        kernel_start,
        kernel_end,
        initrd: None,
        regs,
        mode: cpu::Mode::Solo5Hvt,
    })
}

fn write(mem: &GuestMemoryMmap, addr: u64, bytes: &[u8]) -> crate::Result<()> {
    mem.write_slice(bytes, GuestAddress(addr))
        .map_err(|source| crate::Error::GuestMemory { addr, source })
}

fn load_segment(mem: &GuestMemoryMmap, image: &[u8], seg: &elf::Segment) -> crate::Result<()> {
    // plan() checked the file range and that the segment fits in RAM.
    let from = seg.offset as usize;
    write(mem, seg.paddr, &image[from..from + seg.filesz as usize])?;
    // Fresh guest memory is zero, but say so: bss must be zero whatever
    // the memory held.
    let bss = vec![0u8; (seg.memsz - seg.filesz) as usize];
    write(mem, seg.paddr + seg.filesz, &bss)
}

/// `struct hvt_boot_info`, then the manifest, then the command line.
fn write_boot_info(
    mem: &GuestMemoryMmap,
    mem_size: u64,
    kernel_end: u64,
    params: &HvtParams,
    mft: &[u8],
) -> crate::Result<()> {
    let mft_addr = BOOT_INFO_ADDR + BOOT_INFO_SIZE;
    let cmdline_addr = (mft_addr + mft.len() as u64).next_multiple_of(8);
    let mut info = Vec::with_capacity(BOOT_INFO_SIZE as usize);
    for field in [
        mem_size,
        kernel_end,
        params.cpu_cycle_freq,
        cmdline_addr,
        mft_addr,
    ] {
        info.extend_from_slice(&field.to_le_bytes());
    }
    write(mem, BOOT_INFO_ADDR, &info)?;
    write(mem, mft_addr, mft)?;
    let mut cmdline = params.cmdline.as_bytes().to_vec();
    cmdline.push(0);
    write(mem, cmdline_addr, &cmdline)
}

/// Sets `hvt_boot_info.cpu_cycle_freq` once the vCPU exists to ask KVM.
pub fn write_cycle_freq(mem: &GuestMemoryMmap, hz: u64) -> crate::Result<()> {
    write(mem, BOOT_INFO_ADDR + 16, &hz.to_le_bytes())
}

/// The shared long-mode identity map ([`cpu::write_page_tables`]), cut to
/// guest memory, with the 2 MiB regions holding the kernel split into 4 KiB
/// pages that carry each segment's permissions: no write to text or
/// rodata, no execution of data. Memory outside the segments (heap,
/// stack) stays writable and executable, as under solo5-hvt.
fn write_page_tables(mem: &GuestMemoryMmap, placed: &[Placed], mem_size: u64) -> crate::Result<()> {
    cpu::write_page_tables(mem)?;
    let pd_base = layout::PAGE_TABLES_ADDR + 2 * PAGE_SIZE;
    // Unmap everything past RAM: a stray access faults in the guest
    // instead of reaching the (device-less) MMIO space.
    let first_unmapped = mem_size.div_ceil(LARGE_PAGE);
    let last = cpu::IDENTITY_MAPPED / LARGE_PAGE;
    let zeros = vec![0u8; ((last - first_unmapped) * 8) as usize];
    write(mem, pd_base + first_unmapped * 8, &zeros)?;

    let (Some(first), Some(lastp)) = (placed.first(), placed.last()) else {
        return Ok(());
    };
    let regions = first.start / LARGE_PAGE..lastp.end.div_ceil(LARGE_PAGE);
    let max = (PAGE_TABLES_4K_END - PAGE_TABLES_4K_ADDR) / PAGE_SIZE;
    if regions.end - regions.start > max {
        return Err(Error::KernelTooLarge {
            regions: regions.end - regions.start,
            max,
        }
        .into());
    }
    for (i, region) in regions.enumerate() {
        let table = PAGE_TABLES_4K_ADDR + i as u64 * PAGE_SIZE;
        let mut entries = vec![0u8; PAGE_SIZE as usize];
        for (j, chunk) in entries.chunks_exact_mut(8).enumerate() {
            let page = region * LARGE_PAGE + j as u64 * PAGE_SIZE;
            chunk.copy_from_slice(&page_entry(page, placed, mem_size).to_le_bytes());
        }
        write(mem, table, &entries)?;
        write(
            mem,
            pd_base + region * 8,
            &(table | PTE_PRESENT | PTE_WRITABLE).to_le_bytes(),
        )?;
    }
    Ok(())
}

/// The 4 KiB page table entry for the page at `page`.
fn page_entry(page: u64, placed: &[Placed], mem_size: u64) -> u64 {
    if page >= mem_size {
        return 0;
    }
    let base = page | PTE_PRESENT;
    match placed.iter().find(|p| (p.start..p.end).contains(&page)) {
        None => base | PTE_WRITABLE,
        Some(p) => {
            let w = if p.seg.flags & PF_W != 0 {
                PTE_WRITABLE
            } else {
                0
            };
            let nx = if p.seg.flags & PF_X != 0 { 0 } else { PTE_NX };
            base | w | nx
        }
    }
}

/// Long mode as solo5-hvt enters it, plus write protection and NX so the
/// page permissions hold in ring 0.
pub fn setup_sregs(sregs: &mut kvm_sregs) {
    cpu::setup_sregs(sregs, cpu::Mode::Long64);
    sregs.cr0 |= CR0_WP | CR0_NE;
    sregs.cr4 |= CR4_OSFXSR_OSXMMEXCPT;
    sregs.efer |= EFER_NXE;
}

#[cfg(test)]
pub(crate) mod tests;
