//! The PVH boot protocol (Xen `arch-x86/hvm/start_info.h`, as Linux,
//! Firecracker and Cloud Hypervisor use it): an ELF64 kernel carrying a
//! `XEN_ELFNOTE_PHYS32_ENTRY` note is entered at that 32-bit physical
//! address in protected mode, paging off, with EBX pointing at an
//! `hvm_start_info` that gives the memory map, the command line and the
//! initrd as module 0.

use crate::layout::{self, MemoryType};
use crate::linux::{load_elf64, place_initrd, ram_size, write_cmdline};
use crate::{cpu, Boot, BootParams, Error, Format, Result};
use linux_loader::configurator::pvh::PvhBootConfigurator;
use linux_loader::configurator::{BootConfigurator, BootParams as LoaderParams};
use linux_loader::loader::elf::start_info::{
    hvm_memmap_table_entry, hvm_modlist_entry, hvm_start_info, XEN_HVM_START_MAGIC_VALUE,
};
use linux_loader::loader::elf::PvhBootCapability;
use vm_memory::{GuestAddress, GuestMemoryMmap};

/// Most memory map entries that fit between the memory map and the module
/// list.
const MAX_MEMMAP_ENTRIES: usize =
    ((layout::PVH_MODLIST_ADDR - layout::PVH_MEMMAP_ADDR) / 24) as usize;

/// Loads a PVH kernel and writes `hvm_start_info`.
pub fn load(mem: &GuestMemoryMmap, image: &[u8], params: &BootParams) -> Result<Boot> {
    let mem_size = ram_size(mem);
    let (start, end, result) = load_elf64(mem, image)?;
    let entry = match result.pvh_boot_cap {
        PvhBootCapability::PvhEntryPresent(addr) => addr.0,
        _ => {
            return Err(Error::Elf(
                "PVH note vanished between probe and load".into(),
            ))
        }
    };
    if entry < start || entry >= end || entry >= 1 << 32 {
        return Err(Error::Elf(format!(
            "XEN_ELFNOTE_PHYS32_ENTRY {entry:#x} lies outside the loaded segments [{start:#x}, {end:#x})"
        )));
    }
    // Paging is off at entry: the initrd must be below 4 GiB.
    let initrd = match params.initrd {
        Some(data) => Some(place_initrd(mem, data, end, layout::FOUR_GIB, false)?),
        None => None,
    };
    write_start_info(mem, params, initrd, mem_size)?;
    write_cmdline(mem, &params.cmdline)?;
    Ok(Boot {
        format: Format::Pvh,
        entry,
        kernel_start: start,
        kernel_end: end,
        initrd,
        regs: kvm_bindings::kvm_regs {
            rip: entry,
            rbx: layout::PVH_START_INFO_ADDR,
            rsp: layout::BOOT_STACK_TOP,
            rflags: 0x2,
            ..Default::default()
        },
        mode: cpu::Mode::Protected32,
    })
}

fn write_start_info(
    mem: &GuestMemoryMmap,
    params: &BootParams,
    initrd: Option<(u64, u64)>,
    mem_size: u64,
) -> Result<()> {
    let map: Vec<hvm_memmap_table_entry> = memmap(mem_size);
    if map.len() > MAX_MEMMAP_ENTRIES {
        return Err(Error::Unsupported("PVH memory map does not fit its table"));
    }
    let modules: Vec<hvm_modlist_entry> = initrd
        .map(|(paddr, size)| hvm_modlist_entry {
            paddr,
            size,
            ..Default::default()
        })
        .into_iter()
        .collect();
    let info = hvm_start_info {
        magic: XEN_HVM_START_MAGIC_VALUE,
        version: 1,
        nr_modules: modules.len() as u32,
        modlist_paddr: if modules.is_empty() {
            0
        } else {
            layout::PVH_MODLIST_ADDR
        },
        cmdline_paddr: layout::CMDLINE_ADDR,
        rsdp_paddr: params.acpi_rsdp.unwrap_or(0),
        memmap_paddr: layout::PVH_MEMMAP_ADDR,
        memmap_entries: map.len() as u32,
        ..Default::default()
    };
    let mut out = LoaderParams::new(&info, GuestAddress(layout::PVH_START_INFO_ADDR));
    out.set_sections(&map, GuestAddress(layout::PVH_MEMMAP_ADDR));
    if !modules.is_empty() {
        out.set_modules(&modules, GuestAddress(layout::PVH_MODLIST_ADDR));
    }
    PvhBootConfigurator::write_bootparams::<GuestMemoryMmap>(&out, mem)?;
    Ok(())
}

/// The PVH memory map: the same ranges the Multiboot memory map reports.
pub fn memmap(mem_size: u64) -> Vec<hvm_memmap_table_entry> {
    layout::memory_map(mem_size)
        .into_iter()
        .map(|r| hvm_memmap_table_entry {
            addr: r.start,
            size: r.len,
            type_: match r.kind {
                MemoryType::Available => 1,
                MemoryType::Reserved => 2,
            },
            reserved: 0,
        })
        .collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::linux::tests::{memory, MEM};
    use vm_memory::Bytes;

    /// A minimal ELF64 x86-64 executable: one PT_LOAD of `code` at
    /// `paddr`, and, with `pvh_entry`, a PT_NOTE holding the Xen note.
    pub fn elf64(paddr: u64, code: &[u8], pvh_entry: Option<u32>) -> Vec<u8> {
        let mut f = vec![0u8; 0x200];
        f[..4].copy_from_slice(&crate::elf::MAGIC);
        f[4] = 2;
        f[5] = 1;
        f[6] = 1;
        f[16..18].copy_from_slice(&2u16.to_le_bytes());
        f[18..20].copy_from_slice(&62u16.to_le_bytes());
        f[24..32].copy_from_slice(&paddr.to_le_bytes());
        f[32..40].copy_from_slice(&64u64.to_le_bytes());
        f[52..54].copy_from_slice(&64u16.to_le_bytes());
        f[54..56].copy_from_slice(&56u16.to_le_bytes());
        let phnum: u16 = if pvh_entry.is_some() { 2 } else { 1 };
        f[56..58].copy_from_slice(&phnum.to_le_bytes());
        let ph = |f: &mut Vec<u8>, at: usize, vals: [u64; 7], kind: u32| {
            f[at..at + 4].copy_from_slice(&kind.to_le_bytes());
            f[at + 4..at + 8].copy_from_slice(&7u32.to_le_bytes());
            for (i, v) in vals.iter().enumerate().skip(1) {
                f[at + 8 * i..at + 8 * i + 8].copy_from_slice(&v.to_le_bytes());
            }
        };
        let code_off = 0x1000u64;
        let len = code.len() as u64;
        ph(&mut f, 64, [0, code_off, paddr, paddr, len, len, 0x1000], 1);
        if let Some(entry) = pvh_entry {
            ph(&mut f, 120, [0, 0x180, 0, 0, 20, 20, 4], 4);
            let mut note = Vec::new();
            for w in [4u32, 4, 18] {
                note.extend_from_slice(&w.to_le_bytes());
            }
            note.extend_from_slice(b"Xen\0");
            note.extend_from_slice(&entry.to_le_bytes());
            f[0x180..0x180 + 20].copy_from_slice(&note);
        }
        f.resize(code_off as usize, 0);
        f.extend_from_slice(code);
        f
    }

    #[test]
    fn pvh_kernel_gets_start_info_in_ebx() {
        let mem = memory(MEM);
        let image = elf64(0x20_0000, &[0xf4; 0x100], Some(0x20_0010));
        let initrd = [9u8; 100];
        let p = BootParams {
            cmdline: "pvh test".into(),
            initrd: Some(&initrd),
            ..Default::default()
        };
        let boot = crate::load(&mem, &image, &p).unwrap();
        assert_eq!(boot.format, Format::Pvh);
        assert_eq!(boot.mode, cpu::Mode::Protected32);
        assert_eq!((boot.entry, boot.regs.rbx), (0x20_0010, 0x6000));
        let info: hvm_start_info = mem.read_obj(GuestAddress(0x6000)).unwrap();
        assert_eq!(info.magic, XEN_HVM_START_MAGIC_VALUE);
        assert_eq!((info.nr_modules, info.memmap_entries), (1, 5));
        assert_eq!(info.cmdline_paddr, layout::CMDLINE_ADDR);
        let module: hvm_modlist_entry = mem.read_obj(GuestAddress(info.modlist_paddr)).unwrap();
        assert_eq!((module.paddr, module.size), ((MEM - 100) & !0xfff, 100));
        let e: hvm_memmap_table_entry = mem.read_obj(GuestAddress(info.memmap_paddr + 72)).unwrap();
        assert_eq!((e.addr, e.size, e.type_), (0x10_0000, MEM - 0x10_0000, 1));
    }

    #[test]
    fn elf64_without_note_boots_as_vmlinux() {
        let mem = memory(MEM);
        let boot = crate::load(
            &mem,
            &elf64(0x20_0000, &[0xf4; 16], None),
            &BootParams::default(),
        )
        .unwrap();
        assert_eq!(
            (boot.format, boot.mode),
            (Format::LinuxElf, cpu::Mode::Long64)
        );
        assert_eq!(boot.regs.rsi, layout::ZERO_PAGE_ADDR);
    }

    #[test]
    fn pvh_entry_outside_the_image_is_refused() {
        let image = elf64(0x20_0000, &[0xf4; 16], Some(0x30_0000));
        let e = crate::load(&memory(MEM), &image, &BootParams::default()).unwrap_err();
        assert!(e.to_string().contains("XEN_ELFNOTE_PHYS32_ENTRY"), "{e}");
    }
}
