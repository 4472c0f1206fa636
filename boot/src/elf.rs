//! The part of ELF the loaders need: the file header and PT_LOAD program
//! headers, for both ELF32 and ELF64, with every offset checked against the
//! file so a truncated or hostile image is an error, not a panic.

use crate::{Error, Result};

/// ELF magic bytes.
pub const MAGIC: [u8; 4] = [0x7f, b'E', b'L', b'F'];
const PT_LOAD: u32 = 1;
const PT_NOTE: u32 = 4;
/// `e_machine` of x86-64.
pub const EM_X86_64: u16 = 62;
/// Xen ELF note giving the 32-bit physical PVH entry point.
pub const XEN_ELFNOTE_PHYS32_ENTRY: u32 = 18;
/// Upper bound on program headers; real kernels have a handful.
const MAX_PHDRS: usize = 256;

/// A loadable segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    /// File offset of the segment's bytes.
    pub offset: u64,
    /// Virtual address.
    pub vaddr: u64,
    /// Physical (load) address.
    pub paddr: u64,
    /// Bytes present in the file.
    pub filesz: u64,
    /// Bytes in memory (the rest is bss).
    pub memsz: u64,
    /// `p_flags` (PF_X = 1, PF_W = 2, PF_R = 4).
    pub flags: u32,
}

/// What the loaders use from an ELF file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Elf {
    /// True for ELFCLASS64.
    pub is_64: bool,
    /// `e_machine`.
    pub machine: u16,
    /// `e_entry`.
    pub entry: u64,
    /// PT_LOAD segments in file order.
    pub segments: Vec<Segment>,
}

/// True if `image` starts with the ELF magic.
pub fn is_elf(image: &[u8]) -> bool {
    image.starts_with(&MAGIC)
}

fn err(msg: String) -> Error {
    Error::Elf(msg)
}

fn field(image: &[u8], offset: usize, size: usize, name: &str) -> Result<u64> {
    let bytes = offset
        .checked_add(size)
        .and_then(|end| image.get(offset..end))
        .ok_or_else(|| {
            err(format!(
                "{name} at offset {offset:#x} lies past the end of the file ({} bytes)",
                image.len()
            ))
        })?;
    let mut value = [0u8; 8];
    value[..size].copy_from_slice(bytes);
    Ok(u64::from_le_bytes(value))
}

/// Parses the file header and PT_LOAD program headers.
pub fn parse(image: &[u8]) -> Result<Elf> {
    if !is_elf(image) {
        return Err(err("not an ELF file (bad magic)".into()));
    }
    let class = field(image, 4, 1, "e_ident[EI_CLASS]")?;
    let is_64 = match class {
        1 => false,
        2 => true,
        c => {
            return Err(err(format!(
                "e_ident[EI_CLASS] = {c}: neither ELF32 nor ELF64"
            )))
        }
    };
    if field(image, 5, 1, "e_ident[EI_DATA]")? != 1 {
        return Err(err("e_ident[EI_DATA]: not little-endian".into()));
    }
    let e_type = field(image, 16, 2, "e_type")?;
    if e_type != 2 {
        return Err(err(format!(
            "e_type = {e_type}: not an executable (ET_EXEC)"
        )));
    }
    let machine = field(image, 18, 2, "e_machine")? as u16;
    // Offsets of e_entry, e_phoff, e_phentsize, e_phnum and the word size.
    let (entry_off, phoff_off, phentsize_off, phnum_off, w) = if is_64 {
        (24, 32, 54, 56, 8)
    } else {
        (24, 28, 42, 44, 4)
    };
    let entry = field(image, entry_off, w, "e_entry")?;
    let phoff = field(image, phoff_off, w, "e_phoff")?;
    let phentsize = field(image, phentsize_off, 2, "e_phentsize")? as usize;
    let phnum = field(image, phnum_off, 2, "e_phnum")? as usize;
    let min_phentsize = if is_64 { 56 } else { 32 };
    if phentsize < min_phentsize {
        return Err(err(format!(
            "e_phentsize = {phentsize}: smaller than a program header ({min_phentsize})"
        )));
    }
    if phnum == 0 || phnum > MAX_PHDRS {
        return Err(err(format!("e_phnum = {phnum}: expected 1 to {MAX_PHDRS}")));
    }
    let mut segments = Vec::new();
    for i in 0..phnum {
        let base = usize::try_from(phoff)
            .ok()
            .and_then(|p| p.checked_add(i * phentsize))
            .ok_or_else(|| err(format!("e_phoff = {phoff:#x}: out of range")))?;
        if let Some(seg) = program_header(image, base, is_64, i)? {
            segments.push(seg);
        }
    }
    if segments.is_empty() {
        return Err(err("no PT_LOAD program header".into()));
    }
    Ok(Elf {
        is_64,
        machine,
        entry,
        segments,
    })
}

/// The PVH entry point of an ELF64 image: the descriptor of a
/// `XEN_ELFNOTE_PHYS32_ENTRY` note named "Xen" in a PT_NOTE segment, or
/// `None` when there is no such note. Call after [`parse`] succeeded.
pub fn pvh_entry(image: &[u8]) -> Result<Option<u64>> {
    if field(image, 4, 1, "e_ident[EI_CLASS]")? != 2 {
        return Ok(None);
    }
    let phoff = field(image, 32, 8, "e_phoff")? as usize;
    let phentsize = field(image, 54, 2, "e_phentsize")? as usize;
    let phnum = field(image, 56, 2, "e_phnum")? as usize;
    for i in 0..phnum.min(MAX_PHDRS) {
        let base = phoff.saturating_add(i * phentsize);
        if field(image, base, 4, "program header")? as u32 != PT_NOTE {
            continue;
        }
        let offset = field(image, base + 8, 8, "PT_NOTE p_offset")?;
        let size = field(image, base + 32, 8, "PT_NOTE p_filesz")?;
        let notes = usize::try_from(offset)
            .ok()
            .zip(usize::try_from(size).ok())
            .and_then(|(o, n)| image.get(o..o.checked_add(n)?))
            .ok_or_else(|| {
                err(format!(
                    "program header {i}: PT_NOTE [{offset:#x}, +{size:#x}) lies past the end of the file ({} bytes; truncated image?)",
                    image.len()
                ))
            })?;
        if let Some(entry) = find_xen_entry(notes)? {
            return Ok(Some(entry));
        }
    }
    Ok(None)
}

/// Walks the notes of one PT_NOTE segment (4-byte aligned name and
/// descriptor, as x86 ELF notes are).
fn find_xen_entry(notes: &[u8]) -> Result<Option<u64>> {
    let align4 = |n: u64| n.div_ceil(4) * 4;
    let mut at = 0usize;
    while at + 12 <= notes.len() {
        let namesz = field(notes, at, 4, "note namesz")?;
        let descsz = field(notes, at + 4, 4, "note descsz")?;
        let kind = field(notes, at + 8, 4, "note type")? as u32;
        let name_at = at + 12;
        let desc_at = name_at as u64 + align4(namesz);
        let next = desc_at + align4(descsz);
        if next > notes.len() as u64 {
            return Err(err(format!(
                "note at offset {at:#x} of a PT_NOTE segment runs past its end"
            )));
        }
        let name = &notes[name_at..name_at + namesz as usize];
        if kind == XEN_ELFNOTE_PHYS32_ENTRY && name == b"Xen\0" {
            let entry = match descsz {
                4 | 8 => field(notes, desc_at as usize, descsz as usize, "PVH entry note")?,
                n => {
                    return Err(err(format!(
                        "XEN_ELFNOTE_PHYS32_ENTRY descriptor is {n} bytes, expected 4 or 8"
                    )))
                }
            };
            return Ok(Some(entry));
        }
        at = next as usize;
    }
    Ok(None)
}

fn program_header(image: &[u8], base: usize, is_64: bool, i: usize) -> Result<Option<Segment>> {
    let name = format!("program header {i}");
    if field(image, base, 4, &name)? as u32 != PT_LOAD {
        return Ok(None);
    }
    // (offset, vaddr, paddr, filesz, memsz, flags) field offsets and width.
    let (o, v, p, fs, ms, fl, w) = if is_64 {
        (8, 16, 24, 32, 40, 4, 8)
    } else {
        (4, 8, 12, 16, 20, 24, 4)
    };
    let seg = Segment {
        offset: field(image, base + o, w, &name)?,
        vaddr: field(image, base + v, w, &name)?,
        paddr: field(image, base + p, w, &name)?,
        filesz: field(image, base + fs, w, &name)?,
        memsz: field(image, base + ms, w, &name)?,
        flags: field(image, base + fl, 4, &name)? as u32,
    };
    let end = seg.offset.checked_add(seg.filesz);
    if end.is_none_or(|end| end > image.len() as u64) {
        return Err(err(format!(
            "{name}: p_offset {:#x} + p_filesz {:#x} lies past the end of the file ({} bytes; truncated image?)",
            seg.offset,
            seg.filesz,
            image.len()
        )));
    }
    if seg.filesz > seg.memsz {
        return Err(err(format!(
            "{name}: p_filesz {:#x} is larger than p_memsz {:#x}",
            seg.filesz, seg.memsz
        )));
    }
    if seg.paddr.checked_add(seg.memsz).is_none() {
        return Err(err(format!("{name}: p_paddr + p_memsz overflows")));
    }
    Ok(Some(seg))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Builds a minimal ELF32 executable with one PT_LOAD segment holding
    /// `payload` at `paddr`, `bss` extra bytes, entry `entry`.
    pub fn elf32(paddr: u32, payload: &[u8], bss: u32, entry: u32) -> Vec<u8> {
        let mut f = vec![0u8; 0x54];
        f[..4].copy_from_slice(&MAGIC);
        f[4] = 1;
        f[5] = 1;
        f[6] = 1;
        f[16..18].copy_from_slice(&2u16.to_le_bytes());
        f[18..20].copy_from_slice(&3u16.to_le_bytes());
        f[24..28].copy_from_slice(&entry.to_le_bytes());
        f[28..32].copy_from_slice(&0x34u32.to_le_bytes());
        f[42..44].copy_from_slice(&32u16.to_le_bytes());
        f[44..46].copy_from_slice(&1u16.to_le_bytes());
        let ph = 0x34;
        let data_off = 0x1000u32;
        f[ph..ph + 4].copy_from_slice(&PT_LOAD.to_le_bytes());
        f[ph + 4..ph + 8].copy_from_slice(&data_off.to_le_bytes());
        f[ph + 8..ph + 12].copy_from_slice(&paddr.to_le_bytes());
        f[ph + 12..ph + 16].copy_from_slice(&paddr.to_le_bytes());
        f[ph + 16..ph + 20].copy_from_slice(&(payload.len() as u32).to_le_bytes());
        f[ph + 20..ph + 24].copy_from_slice(&(payload.len() as u32 + bss).to_le_bytes());
        f[ph + 24..ph + 28].copy_from_slice(&7u32.to_le_bytes());
        f.resize(data_off as usize, 0);
        f.extend_from_slice(payload);
        f
    }

    #[test]
    fn parses_elf32() {
        let f = elf32(0x100000, &[1, 2, 3], 16, 0x100000);
        let elf = parse(&f).unwrap();
        assert!(!elf.is_64);
        assert_eq!(elf.entry, 0x100000);
        assert_eq!(elf.segments[0].memsz, 19);
        assert_eq!(elf.segments[0].offset, 0x1000);
    }

    #[test]
    fn truncated_files_are_errors_naming_the_field() {
        let f = elf32(0x100000, &[1, 2, 3], 0, 0x100000);
        for len in [3, 10, 20, 0x40, 0x1001] {
            let e = parse(&f[..len]).unwrap_err().to_string();
            assert!(
                e.contains("past the end") || e.contains("magic"),
                "len {len}: {e}"
            );
        }
    }

    #[test]
    fn hostile_headers_are_errors() {
        let mut f = elf32(0x100000, &[1], 0, 0x100000);
        f[44..46].copy_from_slice(&0u16.to_le_bytes());
        assert!(parse(&f).unwrap_err().to_string().contains("e_phnum"));
        let mut f = elf32(0x100000, &[1], 0, 0x100000);
        f[28..32].copy_from_slice(&0xffff_fff0u32.to_le_bytes());
        assert!(parse(&f).is_err());
        let mut f = elf32(0x100000, &[1, 2], 0, 0x100000);
        f[0x34 + 20..0x34 + 24].copy_from_slice(&1u32.to_le_bytes());
        assert!(parse(&f).unwrap_err().to_string().contains("p_filesz"));
    }
}
