//! Page tables for an hvt guest: identity-mapped RAM as solo5-hvt maps it,
//! with the kernel's segments in 4 KiB pages that carry their ELF
//! permissions.
//!
//! The first 2 MiB always get a 4 KiB table, because solo5-hvt maps low
//! memory by page: nothing below the boot information
//! ([`super::BOOT_INFO_ADDR`], 64 KiB) is present, so a NULL-pointer
//! access faults in the guest (Solo5's test_zeropage and test_notls expect
//! `#PF` at 0x8 and 0x28), and the rest below 1 MiB is read-only data.

use super::loader::{Placed, PAGE_SIZE, PF_W, PF_X};
use super::{write, Error, BOOT_INFO_ADDR, BOOT_INFO_AREA_END, GUEST_MIN_BASE};
use crate::{cpu, layout};
use vm_memory::GuestMemoryMmap;

/// Where the 4 KiB page tables go: after the boot information, below the
/// EBDA hole. They are not mapped for the guest.
pub(super) const PAGE_TABLES_4K_ADDR: u64 = BOOT_INFO_AREA_END;
const PAGE_TABLES_4K_END: u64 = layout::EBDA_START & !0xfff;
const LARGE_PAGE: u64 = 2 << 20;
const PTE_PRESENT: u64 = 1;
const PTE_WRITABLE: u64 = 1 << 1;
pub(super) const PTE_NX: u64 = 1 << 63;

/// The shared long-mode identity map ([`cpu::write_page_tables`]), cut to
/// RAM (`ram` bytes), with the first 2 MiB and the 2 MiB regions holding
/// the kernel split into 4 KiB pages: no write to text or rodata, no
/// execution of data. Memory outside the segments (heap, stack) stays
/// writable and executable, as under solo5-hvt.
pub(super) fn write_page_tables(
    mem: &GuestMemoryMmap,
    placed: &[Placed],
    ram: u64,
) -> crate::Result<()> {
    cpu::write_page_tables(mem)?;
    let pd_base = layout::PAGE_TABLES_ADDR + 2 * PAGE_SIZE;
    // Unmap everything past RAM: a stray access faults in the guest.
    let first_unmapped = ram.div_ceil(LARGE_PAGE);
    let last = cpu::IDENTITY_MAPPED / LARGE_PAGE;
    let zeros = vec![0u8; ((last - first_unmapped) * 8) as usize];
    write(mem, pd_base + first_unmapped * 8, &zeros)?;

    let mut regions = vec![0];
    if let (Some(first), Some(lastp)) = (placed.first(), placed.last()) {
        regions.extend((first.start / LARGE_PAGE).max(1)..lastp.end.div_ceil(LARGE_PAGE));
    }
    let max = (PAGE_TABLES_4K_END - PAGE_TABLES_4K_ADDR) / PAGE_SIZE;
    if regions.len() as u64 > max {
        return Err(Error::KernelTooLarge {
            regions: regions.len() as u64,
            max,
        }
        .into());
    }
    let tables_end = PAGE_TABLES_4K_ADDR + regions.len() as u64 * PAGE_SIZE;
    for (i, region) in regions.into_iter().enumerate() {
        let table = PAGE_TABLES_4K_ADDR + i as u64 * PAGE_SIZE;
        let mut entries = vec![0u8; PAGE_SIZE as usize];
        for (j, chunk) in entries.chunks_exact_mut(8).enumerate() {
            let page = region * LARGE_PAGE + j as u64 * PAGE_SIZE;
            let entry = if page < GUEST_MIN_BASE {
                low_page_entry(page, tables_end)
            } else {
                page_entry(page, placed, ram)
            };
            chunk.copy_from_slice(&entry.to_le_bytes());
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

/// Below 1 MiB: nothing under the boot information, and not ukvm's own
/// page tables; the rest read-only data, as solo5-hvt maps it.
fn low_page_entry(page: u64, tables_end: u64) -> u64 {
    if page < BOOT_INFO_ADDR || (PAGE_TABLES_4K_ADDR..tables_end).contains(&page) {
        0
    } else {
        page | PTE_PRESENT | PTE_NX
    }
}

/// The 4 KiB page table entry for the page at `page` (at or above 1 MiB).
fn page_entry(page: u64, placed: &[Placed], ram: u64) -> u64 {
    if page >= ram {
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
