//! Page tables for an hvt guest: identity-mapped RAM, with the kernel's
//! segments in 4 KiB pages that carry their ELF permissions.

use super::loader::{Placed, PAGE_SIZE, PF_W, PF_X};
use super::{write, Error};
use crate::{cpu, layout};
use vm_memory::GuestMemoryMmap;

/// Where the 4 KiB page tables for the kernel's 2 MiB regions go: after
/// the boot area, below the EBDA hole.
pub(super) const PAGE_TABLES_4K_ADDR: u64 = layout::BOOT_AREA_END;
const PAGE_TABLES_4K_END: u64 = layout::EBDA_START & !0xfff;
const LARGE_PAGE: u64 = 2 << 20;
const PTE_PRESENT: u64 = 1;
const PTE_WRITABLE: u64 = 1 << 1;
pub(super) const PTE_NX: u64 = 1 << 63;

/// The shared long-mode identity map ([`cpu::write_page_tables`]), cut to
/// guest memory, with the 2 MiB regions holding the kernel split into 4 KiB
/// pages that carry each segment's permissions: no write to text or
/// rodata, no execution of data. Memory outside the segments (heap,
/// stack) stays writable and executable, as under solo5-hvt.
pub(super) fn write_page_tables(
    mem: &GuestMemoryMmap,
    placed: &[Placed],
    mem_size: u64,
) -> crate::Result<()> {
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
