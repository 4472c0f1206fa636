//! Loading an hvt image: solo5-hvt's placement rules for each PT_LOAD
//! segment, then segments, page tables and boot information into guest
//! memory.

use super::boot_info::{write_boot_info, HvtParams};
use super::manifest::{manifest, Manifest};
use super::notes::{abi_note, check_abi};
use super::{
    paging, ring, write, Error, BOOT_INFO_ADDR, CMDLINE_SIZE, GUEST_MIN_BASE, MAX_MEM_SIZE,
};
use crate::{cpu, elf, layout, Boot, Format};
use kvm_bindings::kvm_regs;
use vm_memory::{GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion};

pub(super) const PAGE_SIZE: u64 = 0x1000;
pub(super) const PF_X: u32 = 1;
pub(super) const PF_W: u32 = 2;
pub(super) const EM_X86_64: u16 = 62;

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
pub(super) struct Placed {
    pub(super) seg: elf::Segment,
    pub(super) start: u64,
    pub(super) end: u64,
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
///
/// `mem` must be freshly mapped, all zero, as a monitor creates it: only
/// the segments' file bytes are written, and bss is left to the zero pages
/// the host kernel supplies on first touch (writing 2 MiB of zeros for a
/// Solo5 guest's net buffers cost about 1.5 ms of a 5 ms boot). RAM is the
/// region that starts at 0.
pub fn load(mem: &GuestMemoryMmap, image: &[u8], params: &HvtParams) -> crate::Result<Boot> {
    let ram = mem
        .iter()
        .find(|r| r.start_addr().0 == 0)
        .map_or(0, |r| r.len());
    let mem_size = guest_mem_size(ram, params.net_ring)?;
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
    // The ring, above the guest's memory, is mapped too: the guest uses it.
    paging::write_page_tables(mem, &placed, ram)?;
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

/// The guest's memory: all of RAM, or RAM below the network ring.
fn guest_mem_size(ram: u64, net_ring: Option<u64>) -> Result<u64, Error> {
    match net_ring {
        None => Ok(ram),
        Some(at)
            if at.is_multiple_of(PAGE_SIZE)
                && at >= layout::MIN_MEM_SIZE
                && at.checked_add(ring::BYTES).is_some_and(|end| end <= ram) =>
        {
            Ok(at)
        }
        Some(at) => Err(Error::RingOutside { at, ram }),
    }
}

fn load_segment(mem: &GuestMemoryMmap, image: &[u8], seg: &elf::Segment) -> crate::Result<()> {
    // plan() checked the file range and that the segment fits in RAM. The
    // bss after the file bytes is already zero (see load()).
    let from = seg.offset as usize;
    write(mem, seg.paddr, &image[from..from + seg.filesz as usize])
}
