//! Guest physical memory layout. Everything ukvm writes for the guest lives
//! in the first 64 KiB ("boot area"); kernels load at or above 1 MiB.
//!
//! ```text
//! 0x0000_0000  IVT, BIOS Data Area (0x400..0x500)
//! 0x0000_0500  GDT
//! 0x0000_1000  Multiboot info, memory map (0x1100), loader name (0x1800)
//! 0x0000_2000  Multiboot module list, module strings (0x2400)
//! 0x0000_5000  boot stack for Linux/PVH entry (grows down from 0x6000)
//! 0x0000_6000  PVH start_info, memory map (0x6100), module list (0x6800)
//! 0x0000_7000  Linux zero page (boot_params)
//! 0x0000_8000  kernel command line (4 KiB)
//! 0x0000_9000  page tables for 64-bit entry (PML4, PDPT, 4 PDs: 4 GiB)
//! 0x0009_FC00  EBDA (reported reserved), then the VGA/ROM window (not reported)
//! 0x000E_0000  ACPI tables (RSDP first, where Linux's scan finds it)
//! 0x000F_0000  BIOS area (reported reserved)
//! 0x0010_0000  kernel
//! 0xC000_0000  MMIO hole: PCI BARs, IOAPIC, LAPIC (no RAM, not reported)
//! 0xFFFC_0000  BIOS ROM (reported reserved)
//! 0x1_0000_0000  RAM above 3 GiB continues here
//! ```

use crate::{Error, Result};
use vm_memory::GuestAddress;

/// Address of the Global Descriptor Table.
pub const GDT_ADDR: u64 = 0x500;
/// Address of the Multiboot information structure.
pub const MB_INFO_ADDR: u64 = 0x1000;
/// Address of the Multiboot memory map.
pub const MB_MMAP_ADDR: u64 = 0x1100;
/// Address of the boot loader name string.
pub const MB_LOADER_NAME_ADDR: u64 = 0x1800;
/// Address of the Multiboot module list.
pub const MB_MODS_ADDR: u64 = 0x2000;
/// Maximum number of Multiboot modules (16 bytes each up to `MB_MOD_STRINGS_ADDR`).
pub const MB_MAX_MODULES: usize = 64;
/// Address of the module strings.
pub const MB_MOD_STRINGS_ADDR: u64 = 0x2400;
/// Space for module strings, NULs included.
pub const MB_MOD_STRINGS_SIZE: usize = 0x1c00;
/// Address of the kernel command line.
pub const CMDLINE_ADDR: u64 = 0x8000;
/// Longest command line, without its NUL.
pub const CMDLINE_MAX: usize = 4095;
/// Page tables for protocols entered in long mode.
pub const PAGE_TABLES_ADDR: u64 = 0x9000;
/// Initial stack pointer for the Linux and PVH protocols (the kernels set
/// their own stack at once, but a defined one costs nothing).
pub const BOOT_STACK_TOP: u64 = 0x6000;
/// Address of the PVH `hvm_start_info` structure (EBX at entry).
pub const PVH_START_INFO_ADDR: u64 = 0x6000;
/// Address of the PVH memory map.
pub const PVH_MEMMAP_ADDR: u64 = 0x6100;
/// Address of the PVH module list (the initrd).
pub const PVH_MODLIST_ADDR: u64 = 0x6800;
/// Address of the Linux zero page (`boot_params`, RSI/ESI at entry).
pub const ZERO_PAGE_ADDR: u64 = 0x7000;
/// Where the ACPI tables start (RSDP first: Linux scans 0xE0000-0xFFFFF).
pub const ACPI_ADDR: u64 = 0xe_0000;
/// End of the boot area: no kernel byte may land below it.
pub const BOOT_AREA_END: u64 = 0x10000;
/// Start of the reserved EBDA/VGA/ROM range under 1 MiB.
pub const EBDA_START: u64 = 0x9fc00;
/// End of the EBDA, where the VGA window starts.
pub const EBDA_END: u64 = 0xa0000;
/// Start of the system BIOS area below 1 MiB.
pub const BIOS_START: u64 = 0xf0000;
/// Start of the BIOS ROM's mapping below 4 GiB (SeaBIOS's 256 KiB).
pub const BIOS_ROM_START: u64 = 0xfffc_0000;
/// Where "high" memory starts.
pub const HIGH_MEM_START: u64 = 0x10_0000;
/// Start of the MMIO hole below 4 GiB.
pub const MMIO_HOLE_START: u64 = 0xc000_0000;
/// First address above 4 GiB.
pub const FOUR_GIB: u64 = 0x1_0000_0000;
/// Smallest RAM size that can hold the boot area and a kernel at 1 MiB.
pub const MIN_MEM_SIZE: u64 = 2 << 20;
/// Largest RAM size ukvm accepts (64 GiB).
pub const MAX_MEM_SIZE: u64 = 64 << 30;

/// The RAM ranges `(start, size)` for a guest with `mem_size` bytes of RAM:
/// one range below the MMIO hole, and the rest above 4 GiB.
pub fn ram_ranges(mem_size: u64) -> Vec<(GuestAddress, usize)> {
    let low = mem_size.min(MMIO_HOLE_START);
    let mut ranges = vec![(GuestAddress(0), low as usize)];
    if mem_size > low {
        ranges.push((GuestAddress(FOUR_GIB), (mem_size - low) as usize));
    }
    ranges
}

/// First address past the RAM below 4 GiB.
pub fn low_ram_end(mem_size: u64) -> u64 {
    mem_size.min(MMIO_HOLE_START)
}

/// Kind of a memory map entry, numbered as in Multiboot and E820.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemoryType {
    /// RAM the guest may use.
    Available = 1,
    /// Addresses the guest must not use as RAM.
    Reserved = 2,
}

/// One entry of the guest memory map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryRange {
    /// First address.
    pub start: u64,
    /// Length in bytes.
    pub len: u64,
    /// What the range is.
    pub kind: MemoryType,
}

/// The memory map every boot protocol reports (Multiboot mmap, E820),
/// entry for entry what SeaBIOS reports through QEMU's Multiboot loader:
/// low RAM, the EBDA and the BIOS area reserved with the VGA/ROM window
/// between them left out, RAM from 1 MiB (Rumprun needs an entry starting
/// exactly there), the BIOS ROM below 4 GiB reserved, and RAM above 4 GiB
/// if any. The MMIO hole is not reported, as on a PC; Unikraft refuses a
/// map whose reserved ranges differ from that (libkvmplat memory.c).
pub fn memory_map(mem_size: u64) -> Vec<MemoryRange> {
    let low_end = low_ram_end(mem_size);
    let range = |start, end, kind| MemoryRange {
        start,
        len: end - start,
        kind,
    };
    let mut map = vec![
        range(0, EBDA_START, MemoryType::Available),
        range(EBDA_START, EBDA_END, MemoryType::Reserved),
        range(BIOS_START, HIGH_MEM_START, MemoryType::Reserved),
        range(HIGH_MEM_START, low_end, MemoryType::Available),
        range(BIOS_ROM_START, FOUR_GIB, MemoryType::Reserved),
    ];
    if mem_size > low_end {
        map.push(range(
            FOUR_GIB,
            FOUR_GIB + mem_size - low_end,
            MemoryType::Available,
        ));
    }
    map
}

/// Checks that a command line can be given to a kernel as a C string.
pub fn check_cmdline(cmdline: &str) -> Result<()> {
    if cmdline.len() > CMDLINE_MAX {
        return Err(Error::CmdlineTooLong {
            len: cmdline.len(),
            max: CMDLINE_MAX,
        });
    }
    if let Some(pos) = cmdline.bytes().position(|b| b == 0) {
        return Err(Error::CmdlineNul(pos));
    }
    Ok(())
}

/// Checks that `[start, end)` lies in RAM below the MMIO hole and above the
/// boot area; `what` names the range in the error.
pub fn check_range(what: &str, start: u64, end: u64, mem_size: u64) -> Result<()> {
    let ram_end = low_ram_end(mem_size);
    if end < start || end > ram_end {
        return Err(Error::DoesNotFit {
            what: what.to_string(),
            start,
            end,
            ram_end,
        });
    }
    if start < BOOT_AREA_END && end > start {
        return Err(Error::OverlapsBootArea {
            what: what.to_string(),
            start,
            end,
            boot_end: BOOT_AREA_END,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ram_splits_around_mmio_hole() {
        assert_eq!(ram_ranges(64 << 20), vec![(GuestAddress(0), 64 << 20)]);
        let r = ram_ranges(4 << 30);
        assert_eq!(r[0], (GuestAddress(0), MMIO_HOLE_START as usize));
        assert_eq!(r[1], (GuestAddress(FOUR_GIB), 1 << 30));
    }

    #[test]
    fn ranges_outside_ram_or_in_boot_area_are_refused() {
        assert!(check_range("k", 0x100000, 0x200000, 4 << 20).is_ok());
        assert!(matches!(
            check_range("k", 0x100000, 0x500000, 4 << 20),
            Err(Error::DoesNotFit { .. })
        ));
        assert!(matches!(
            check_range("k", 0x8000, 0x20000, 4 << 20),
            Err(Error::OverlapsBootArea { .. })
        ));
        assert!(matches!(
            check_range("k", 0x200000, 0x100000, 4 << 20),
            Err(Error::DoesNotFit { .. })
        ));
    }

    #[test]
    fn memory_map_has_an_entry_at_one_mib() {
        let map = memory_map(64 << 20);
        assert_eq!(
            map[0],
            MemoryRange {
                start: 0,
                len: 0x9fc00,
                kind: MemoryType::Available
            }
        );
        assert_eq!(map[3].start, HIGH_MEM_START);
        assert_eq!(map[3].start + map[3].len, 64 << 20);
        assert_eq!(map[3].kind, MemoryType::Available);
        assert_eq!(map.len(), 5);
        let big = memory_map(5 << 30);
        assert_eq!(
            big[5],
            MemoryRange {
                start: FOUR_GIB,
                len: 2 << 30,
                kind: MemoryType::Available
            }
        );
    }

    #[test]
    fn memory_map_is_what_seabios_reports() {
        let map: Vec<_> = memory_map(64 << 20)
            .iter()
            .map(|r| (r.start, r.start + r.len, r.kind as u32))
            .collect();
        assert_eq!(
            map,
            [
                (0, 0x9fc00, 1),
                (0x9fc00, 0xa0000, 2),
                (0xf0000, 0x100000, 2),
                (0x100000, 64 << 20, 1),
                (0xfffc0000, 1 << 32, 2),
            ]
        );
    }

    #[test]
    fn cmdline_limits() {
        assert!(check_cmdline("console=ttyS0").is_ok());
        assert!(matches!(
            check_cmdline(&"x".repeat(CMDLINE_MAX + 1)),
            Err(Error::CmdlineTooLong { .. })
        ));
        assert!(matches!(check_cmdline("a\0b"), Err(Error::CmdlineNul(1))));
    }
}
