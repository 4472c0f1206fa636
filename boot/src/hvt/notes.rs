//! The Solo5 ELF notes: finding them among the PT_NOTE segments the ELF
//! way, and the ABI note that says which target and version an image is.

use super::{Error, ABI_TARGET_HVT, ABI_VERSIONS};
use crate::elf;

pub(super) const NOTE_OWNER: &[u8] = b"Solo5\0";
pub(super) const ABI1_NOTE_TYPE: u32 = 0x3149_4241; // "ABI1"
pub(super) const MFT1_NOTE_TYPE: u32 = 0x3154_464d; // "MFT1"
/// `struct abi1_info`: target, version, two reserved words.
const ABI1_INFO_SIZE: usize = 16;

/// The descriptor of `.note.solo5.abi`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AbiNote {
    /// `enum abi_target` (hvt = 1, spt, virtio, muen, genode).
    pub target: u32,
    /// ABI version of that target.
    pub version: u32,
}

pub(super) fn note_err(note: &'static str, why: impl Into<String>) -> Error {
    Error::BadNote {
        note,
        why: why.into(),
    }
}

pub(super) fn le32(bytes: &[u8], at: usize) -> u32 {
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
pub(super) fn find_note<'a>(
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

/// Checks that an ABI note is for hvt at one of [`ABI_VERSIONS`].
pub fn check_abi(note: AbiNote) -> Result<(), Error> {
    if note.target != ABI_TARGET_HVT {
        return Err(Error::UnsupportedTarget {
            target: note.target,
        });
    }
    if !ABI_VERSIONS.contains(&note.version) {
        return Err(Error::UnsupportedAbiVersion {
            found: note.version,
        });
    }
    Ok(())
}

/// True if `image` carries a Solo5 ABI note (of any target).
pub fn is_solo5(image: &[u8]) -> bool {
    matches!(abi_note(image), Ok(Some(_)) | Err(_))
}
