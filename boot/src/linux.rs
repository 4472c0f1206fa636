//! The Linux x86 boot protocol (`Documentation/arch/x86/boot.rst`): a
//! `bzImage` entered through its 64-bit (`startup_64`, load address +
//! 0x200) or 32-bit (`code32_start`) entry, and an ELF64 `vmlinux` entered
//! in long mode at `e_entry`. Both get a zero page (`boot_params`) at
//! [`layout::ZERO_PAGE_ADDR`] in RSI/ESI with the E820 map, the command
//! line and the initrd.
//!
//! linux-loader does the copying (`BzImage`, `Elf`) and writes the zero page
//! (`LinuxBootConfigurator`); this module checks the setup header first so
//! that a truncated or corrupted image is refused with an error naming the
//! field, and decides the addresses.

use crate::layout::{self, MemoryType};
use crate::{cpu, elf, Boot, BootParams, Error, Format, Result};
use linux_loader::configurator::linux::LinuxBootConfigurator;
use linux_loader::configurator::{BootConfigurator, BootParams as LoaderParams};
use linux_loader::loader::bootparam::{boot_e820_entry, boot_params, setup_header};
use linux_loader::loader::{BzImage, Elf, KernelLoader};
use std::io::Cursor;
use vm_memory::GuestMemoryRegion;
use vm_memory::{ByteValued, Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap};

/// File offset of the setup header.
pub const SETUP_HEADER_OFFSET: usize = 0x1f1;
/// `header` field value: "HdrS".
pub const HDR_MAGIC: u32 = 0x5372_6448;
/// `boot_flag` field value.
pub const BOOT_FLAG: u16 = 0xaa55;
/// `loadflags`: the protected-mode kernel is loaded at 0x100000 (bzImage).
pub const LOADED_HIGH: u8 = 1 << 0;
/// `xloadflags`: the kernel has the 64-bit entry at load address + 0x200.
pub const XLF_KERNEL_64: u16 = 1 << 0;
/// `xloadflags`: kernel and initrd may live above 4 GiB.
pub const XLF_CAN_BE_LOADED_ABOVE_4G: u16 = 1 << 1;
/// Offset of the 64-bit entry from the load address.
pub const STARTUP_64_OFFSET: u64 = 0x200;
/// `type_of_loader`: a boot loader without an assigned ID.
pub const LOADER_TYPE_UNDEFINED: u8 = 0xff;
/// Oldest protocol accepted: 2.02 introduced `cmd_line_ptr` at a 32-bit
/// address, which is where ukvm puts the command line.
pub const MIN_VERSION: u16 = 0x0202;
/// `initrd_addr_max` of protocols before 2.03.
const OLD_INITRD_ADDR_MAX: u32 = 0x37ff_ffff;
/// `initrd_addr_max` every x86-64 kernel declares; used for an ELF
/// `vmlinux`, which carries no setup header.
pub const VMLINUX_INITRD_ADDR_MAX: u64 = 0x7fff_ffff;
/// Load address of protocols before 2.10 (no `pref_address`).
const DEFAULT_LOAD_ADDR: u64 = 0x10_0000;
const PAGE: u64 = 4096;

/// Is `image` a bzImage (setup header magic at 0x202)?
pub fn is_bzimage(image: &[u8]) -> bool {
    image.get(0x202..0x206) == Some(&HDR_MAGIC.to_le_bytes()[..])
}

fn bad(field: &'static str, value: u64, why: &'static str) -> Error {
    Error::BadSetupHeader { field, value, why }
}

/// Reads and checks the setup header of a bzImage.
pub fn setup_header(image: &[u8]) -> Result<setup_header> {
    let size = std::mem::size_of::<setup_header>();
    let bytes = image
        .get(SETUP_HEADER_OFFSET..SETUP_HEADER_OFFSET + size)
        .ok_or(Error::Truncated {
            what: "bzImage setup header",
            len: image.len(),
            needed: (SETUP_HEADER_OFFSET + size) as u64,
        })?;
    let hdr = *setup_header::from_slice(bytes)
        .ok_or(Error::Unsupported("bzImage setup header could not be read"))?;
    let (magic, version, flag) = (hdr.header, hdr.version, hdr.boot_flag);
    if magic != HDR_MAGIC {
        return Err(bad("header", magic.into(), "is not \"HdrS\""));
    }
    if flag != BOOT_FLAG {
        return Err(bad("boot_flag", flag.into(), "is not 0xaa55"));
    }
    if version < MIN_VERSION {
        return Err(bad(
            "version",
            version.into(),
            "boot protocol older than 2.02 is not supported",
        ));
    }
    if hdr.loadflags & LOADED_HIGH == 0 {
        return Err(bad(
            "loadflags",
            hdr.loadflags.into(),
            "LOADED_HIGH clear: a zImage loaded below 1 MiB is not supported",
        ));
    }
    check_payload(image, &hdr)?;
    Ok(hdr)
}

/// Bytes of the real-mode setup code, boot sector included.
pub fn setup_size(hdr: &setup_header) -> u64 {
    let sects = match hdr.setup_sects {
        0 => 4,
        n => u64::from(n),
    };
    (sects + 1) * 512
}

/// Checks that the protected-mode kernel and, from protocol 2.08, the
/// compressed payload it names lie inside the file.
fn check_payload(image: &[u8], hdr: &setup_header) -> Result<()> {
    let setup = setup_size(hdr);
    let len = image.len() as u64;
    if setup >= len {
        return Err(Error::Truncated {
            what: "bzImage: setup_sects says the kernel starts past the end of the file",
            len: image.len(),
            needed: setup + 1,
        });
    }
    let syssize = u64::from(hdr.syssize) * 16;
    if hdr.version >= 0x0204 && setup + syssize > len {
        return Err(Error::Truncated {
            what: "bzImage: syssize says the protected-mode kernel runs past the end of the file",
            len: image.len(),
            needed: setup + syssize,
        });
    }
    if hdr.version >= 0x0208 {
        let end = setup + u64::from(hdr.payload_offset) + u64::from(hdr.payload_length);
        if end > len {
            return Err(Error::Truncated {
                what: "bzImage: payload_offset + payload_length run past the end of the file",
                len: image.len(),
                needed: end,
            });
        }
    }
    Ok(())
}

/// Where the protected-mode kernel goes: `pref_address` (protocol 2.10+)
/// or 1 MiB, rounded up to `kernel_alignment` for a relocatable kernel;
/// when that does not leave `init_size` bytes of RAM, a relocatable kernel
/// moves down to the lowest aligned address above 1 MiB.
fn load_address(hdr: &setup_header, footprint: u64, mem_size: u64) -> Result<u64> {
    let relocatable = hdr.version >= 0x0205 && hdr.relocatable_kernel != 0;
    let preferred = if hdr.version >= 0x020a {
        hdr.pref_address
    } else {
        DEFAULT_LOAD_ADDR
    };
    if !relocatable {
        return Ok(preferred);
    }
    let align = u64::from(hdr.kernel_alignment);
    if align == 0 || !align.is_power_of_two() {
        return Err(bad(
            "kernel_alignment",
            align,
            "is not a power of two (relocatable kernel)",
        ));
    }
    let preferred = preferred.max(DEFAULT_LOAD_ADDR).next_multiple_of(align);
    let fits = |at: u64| at + footprint <= layout::low_ram_end(mem_size);
    if fits(preferred) {
        return Ok(preferred);
    }
    let lowest = DEFAULT_LOAD_ADDR.next_multiple_of(align);
    Ok(if fits(lowest) { lowest } else { preferred })
}

/// Loads a bzImage and writes its zero page.
pub fn load_bzimage(mem: &GuestMemoryMmap, image: &[u8], params: &BootParams) -> Result<Boot> {
    let mem_size = ram_size(mem);
    let hdr = setup_header(image)?;
    let kernel_len = image.len() as u64 - setup_size(&hdr);
    // The kernel decompresses itself in place: it needs init_size bytes
    // from its load address (protocol 2.10+), not just the file's size.
    let init_size = if hdr.version >= 0x020a {
        u64::from(hdr.init_size)
    } else {
        0
    };
    let footprint = kernel_len.max(init_size);
    let load = load_address(&hdr, footprint, mem_size)?;
    layout::check_range(
        "bzImage kernel (init_size)",
        load,
        load + footprint,
        mem_size,
    )?;
    check_cmdline_size(&hdr, &params.cmdline)?;
    BzImage::load(
        mem,
        Some(GuestAddress(load)),
        &mut Cursor::new(image),
        Some(GuestAddress(layout::HIGH_MEM_START)),
    )?;

    let mut zero = boot_params {
        hdr,
        ..Default::default()
    };
    zero.hdr.code32_start = load as u32;
    let initrd = match params.initrd {
        Some(data) => {
            let max = if hdr.version >= 0x0203 {
                hdr.initrd_addr_max
            } else {
                OLD_INITRD_ADDR_MAX
            };
            let above_4g =
                hdr.version >= 0x020c && hdr.xloadflags & XLF_CAN_BE_LOADED_ABOVE_4G != 0;
            Some(place_initrd(
                mem,
                data,
                load + footprint,
                u64::from(max) + 1,
                above_4g,
            )?)
        }
        None => None,
    };
    let (entry, mode) = if hdr.version >= 0x020c && hdr.xloadflags & XLF_KERNEL_64 != 0 {
        (load + STARTUP_64_OFFSET, cpu::Mode::Long64)
    } else {
        (load, cpu::Mode::Protected32)
    };
    finish(
        mem,
        params,
        zero,
        initrd,
        Format::BzImage,
        entry,
        mode,
        (load, load + footprint),
    )
}

/// Loads an ELF64 `vmlinux` for the 64-bit boot protocol and writes a zero
/// page with a setup header the way a boot loader would for a bzImage.
pub fn load_vmlinux(mem: &GuestMemoryMmap, image: &[u8], params: &BootParams) -> Result<Boot> {
    let (start, end, result) = load_elf64(mem, image)?;
    let entry = result.kernel_load.0;
    if entry < start || entry >= end {
        return Err(Error::Elf(format!(
            "e_entry {entry:#x} lies outside the loaded segments [{start:#x}, {end:#x}) (a virtual address?)"
        )));
    }
    let mut zero = boot_params::default();
    zero.hdr.boot_flag = BOOT_FLAG;
    zero.hdr.header = HDR_MAGIC;
    zero.hdr.kernel_alignment = 0x20_0000;
    zero.hdr.cmdline_size = layout::CMDLINE_MAX as u32;
    zero.hdr.initrd_addr_max = VMLINUX_INITRD_ADDR_MAX as u32;
    let initrd = match params.initrd {
        Some(data) => Some(place_initrd(
            mem,
            data,
            end,
            VMLINUX_INITRD_ADDR_MAX + 1,
            false,
        )?),
        None => None,
    };
    finish(
        mem,
        params,
        zero,
        initrd,
        Format::LinuxElf,
        entry,
        cpu::Mode::Long64,
        (start, end),
    )
}

/// Checks an ELF64 kernel (see [`check_elf64`]) and loads its segments with
/// linux-loader; returns the physical range they occupy and the result.
pub(crate) fn load_elf64(
    mem: &GuestMemoryMmap,
    image: &[u8],
) -> Result<(u64, u64, linux_loader::loader::KernelLoaderResult)> {
    let (start, end) = check_elf64(image, ram_size(mem))?;
    let result = Elf::load(
        mem,
        None,
        &mut Cursor::new(image),
        Some(GuestAddress(layout::HIGH_MEM_START)),
    )?;
    Ok((start, end, result))
}

/// Checks an ELF64 x86-64 kernel with ukvm's own parser (which names the
/// field at fault) and returns the physical range its segments occupy.
pub(crate) fn check_elf64(image: &[u8], mem_size: u64) -> Result<(u64, u64)> {
    let elf = elf::parse(image)?;
    if !elf.is_64 || elf.machine != elf::EM_X86_64 {
        return Err(Error::Elf(format!(
            "{} e_machine {}: only x86-64 ELF64 kernels boot without a Multiboot header",
            if elf.is_64 { "ELF64" } else { "ELF32" },
            elf.machine
        )));
    }
    let mut range = (u64::MAX, 0);
    for (i, seg) in elf.segments.iter().enumerate() {
        let end = seg.paddr + seg.memsz;
        layout::check_range(&format!("ELF segment {i}"), seg.paddr, end, mem_size)?;
        range = (range.0.min(seg.paddr), range.1.max(end));
    }
    Ok(range)
}

/// Fills the loader's fields of the zero page, writes it and the command
/// line, and describes the boot.
#[allow(clippy::too_many_arguments)]
fn finish(
    mem: &GuestMemoryMmap,
    params: &BootParams,
    mut zero: boot_params,
    initrd: Option<(u64, u64)>,
    format: Format,
    entry: u64,
    mode: cpu::Mode,
    (kernel_start, kernel_end): (u64, u64),
) -> Result<Boot> {
    zero.hdr.type_of_loader = LOADER_TYPE_UNDEFINED;
    zero.hdr.cmd_line_ptr = layout::CMDLINE_ADDR as u32;
    zero.ext_cmd_line_ptr = 0;
    if let Some((addr, size)) = initrd {
        zero.hdr.ramdisk_image = addr as u32;
        zero.hdr.ramdisk_size = size as u32;
        zero.ext_ramdisk_image = (addr >> 32) as u32;
        zero.ext_ramdisk_size = (size >> 32) as u32;
    }
    zero.acpi_rsdp_addr = params.acpi_rsdp.unwrap_or(0);
    let map = e820(ram_size(mem));
    zero.e820_entries = map.len() as u8;
    zero.e820_table[..map.len()].copy_from_slice(&map);
    LinuxBootConfigurator::write_bootparams::<GuestMemoryMmap>(
        &LoaderParams::new(&zero, GuestAddress(layout::ZERO_PAGE_ADDR)),
        mem,
    )?;
    write_cmdline(mem, &params.cmdline)?;
    if mode == cpu::Mode::Long64 {
        cpu::write_page_tables(mem)?;
    }
    Ok(Boot {
        format,
        entry,
        kernel_start,
        kernel_end,
        initrd,
        regs: kvm_bindings::kvm_regs {
            rip: entry,
            rsi: layout::ZERO_PAGE_ADDR,
            rsp: layout::BOOT_STACK_TOP,
            rflags: 0x2,
            ..Default::default()
        },
        mode,
    })
}

/// The E820 map: the same ranges the Multiboot memory map reports.
pub fn e820(mem_size: u64) -> Vec<boot_e820_entry> {
    layout::memory_map(mem_size)
        .into_iter()
        .map(|r| boot_e820_entry {
            addr: r.start,
            size: r.len,
            r#type: match r.kind {
                MemoryType::Available => 1,
                MemoryType::Reserved => 2,
            },
        })
        .collect()
}

fn check_cmdline_size(hdr: &setup_header, cmdline: &str) -> Result<()> {
    // Protocols before 2.06 take at most 255 bytes.
    let max = if hdr.version >= 0x0206 {
        hdr.cmdline_size as usize
    } else {
        255
    };
    if cmdline.len() > max {
        return Err(Error::CmdlineTooLong {
            len: cmdline.len(),
            max,
        });
    }
    Ok(())
}

pub(crate) fn write_cmdline(mem: &GuestMemoryMmap, cmdline: &str) -> Result<()> {
    let mut bytes = cmdline.as_bytes().to_vec();
    bytes.push(0);
    mem.write_slice(&bytes, GuestAddress(layout::CMDLINE_ADDR))
        .map_err(|source| Error::GuestMemory {
            addr: layout::CMDLINE_ADDR,
            source,
        })
}

/// Total RAM of the guest.
pub(crate) fn ram_size(mem: &GuestMemoryMmap) -> u64 {
    mem.iter().map(|r| r.len()).sum()
}

/// Puts the initrd at the highest page-aligned address that keeps it below
/// `limit` (exclusive) and in RAM, and above `kernel_end`. With
/// `above_4g` (bzImage `XLF_CAN_BE_LOADED_ABOVE_4G`) the top of RAM above
/// 4 GiB is used when the guest has RAM there. Returns `(address, size)`.
pub(crate) fn place_initrd(
    mem: &GuestMemoryMmap,
    data: &[u8],
    kernel_end: u64,
    limit: u64,
    above_4g: bool,
) -> Result<(u64, u64)> {
    let size = data.len() as u64;
    let mem_size = ram_size(mem);
    let low_end = layout::low_ram_end(mem_size);
    let high_end = layout::FOUR_GIB + (mem_size - low_end);
    let addr = if above_4g && mem_size > low_end && high_end - layout::FOUR_GIB >= size {
        (high_end - size) & !(PAGE - 1)
    } else {
        let top = limit.min(low_end);
        let addr = top.checked_sub(size).map(|a| a & !(PAGE - 1));
        match addr {
            Some(a) if a >= kernel_end.max(layout::BOOT_AREA_END) => a,
            _ => {
                return Err(Error::InitrdDoesNotFit {
                    size,
                    kernel_end,
                    limit: top,
                })
            }
        }
    };
    mem.write_slice(data, GuestAddress(addr))
        .map_err(|source| Error::GuestMemory { addr, source })?;
    Ok((addr, size))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub const MEM: u64 = 64 << 20;

    pub fn memory(size: u64) -> GuestMemoryMmap {
        GuestMemoryMmap::from_ranges(&layout::ram_ranges(size)).unwrap()
    }

    /// A bzImage-shaped file: 1 setup sector after the boot sector, a
    /// header of protocol 2.15, `payload` as the protected-mode kernel.
    pub fn bzimage(payload: &[u8], xloadflags: u16) -> Vec<u8> {
        let mut f = vec![0u8; 1024];
        let mut h = setup_header {
            setup_sects: 1,
            boot_flag: BOOT_FLAG,
            header: HDR_MAGIC,
            version: 0x020f,
            loadflags: LOADED_HIGH,
            code32_start: 0x10_0000,
            initrd_addr_max: 0x7fff_ffff,
            kernel_alignment: 0x20_0000,
            relocatable_kernel: 1,
            xloadflags,
            cmdline_size: 2047,
            payload_offset: 0,
            payload_length: payload.len() as u32,
            pref_address: 0x40_0000,
            init_size: 0x20_0000,
            ..Default::default()
        };
        h.syssize = payload.len().div_ceil(16) as u32;
        f[SETUP_HEADER_OFFSET..SETUP_HEADER_OFFSET + h.as_slice().len()]
            .copy_from_slice(h.as_slice());
        f.extend_from_slice(payload);
        f
    }

    fn zero_page(mem: &GuestMemoryMmap) -> boot_params {
        mem.read_obj(GuestAddress(layout::ZERO_PAGE_ADDR)).unwrap()
    }

    fn params(initrd: Option<&[u8]>) -> BootParams<'_> {
        BootParams {
            cmdline: "console=ttyS0".into(),
            initrd,
            ..Default::default()
        }
    }

    #[test]
    fn bzimage_64_enters_at_startup_64_with_zero_page() {
        let mem = memory(MEM);
        let image = bzimage(&[0x90; 0x1000], XLF_KERNEL_64 | XLF_CAN_BE_LOADED_ABOVE_4G);
        let initrd = [7u8; 5000];
        let boot = crate::load(&mem, &image, &params(Some(&initrd))).unwrap();
        assert_eq!(boot.format, Format::BzImage);
        assert_eq!(boot.mode, cpu::Mode::Long64);
        assert_eq!(boot.entry, 0x40_0200);
        assert_eq!(boot.regs.rsi, layout::ZERO_PAGE_ADDR);
        let zp = zero_page(&mem);
        let (loader, ptr, code32) = (
            zp.hdr.type_of_loader,
            zp.hdr.cmd_line_ptr,
            zp.hdr.code32_start,
        );
        assert_eq!((loader, ptr, code32), (0xff, 0x8000, 0x40_0000));
        // Highest page-aligned address below the end of RAM.
        let (rd, rd_size) = (zp.hdr.ramdisk_image, zp.hdr.ramdisk_size);
        assert_eq!((rd, rd_size), (((MEM - 5000) & !0xfff) as u32, 5000));
        assert_eq!(boot.initrd, Some((u64::from(rd), 5000)));
        assert_eq!(zp.e820_entries, 5);
        let e = zp.e820_table[3];
        let (a, s, t) = (e.addr, e.size, e.r#type);
        assert_eq!((a, s, t), (0x10_0000, MEM - 0x10_0000, 1));
    }

    #[test]
    fn bzimage_without_64_bit_entry_uses_the_32_bit_protocol() {
        let mem = memory(MEM);
        let boot = crate::load(&mem, &bzimage(&[0x90; 64], 0), &params(None)).unwrap();
        assert_eq!((boot.mode, boot.entry), (cpu::Mode::Protected32, 0x40_0000));
    }

    #[test]
    fn relocatable_kernel_moves_down_when_preferred_address_does_not_fit() {
        let mem = memory(4 << 20);
        let boot = crate::load(&mem, &bzimage(&[0x90; 64], 1), &params(None)).unwrap();
        assert_eq!(boot.entry, 0x20_0200);
    }

    #[test]
    fn corrupted_bzimages_are_refused_naming_the_field() {
        let good = bzimage(&[0x90; 4096], 1);
        let cases: [(usize, u8, &str); 3] = [
            (0x1fe, 0, "boot_flag"),
            (0x207, 1, "version"),
            (0x211, 0, "loadflags"),
        ];
        for (offset, value, want) in cases {
            let mut image = good.clone();
            image[offset] = value;
            let e = crate::load(&memory(MEM), &image, &params(None))
                .unwrap_err()
                .to_string();
            assert!(e.contains(want), "{want}: {e}");
        }
        let e = crate::load(&memory(MEM), &good[..3000], &params(None)).unwrap_err();
        assert!(e.to_string().contains("truncated"), "{e}");
        let mut huge_setup = good.clone();
        huge_setup[SETUP_HEADER_OFFSET] = 200;
        let e = crate::load(&memory(MEM), &huge_setup, &params(None)).unwrap_err();
        assert!(e.to_string().contains("setup_sects"), "{e}");
    }

    #[test]
    fn initrd_that_does_not_fit_is_refused() {
        let mem = memory(8 << 20);
        let initrd = vec![0u8; 6 << 20];
        let e = crate::load(&mem, &bzimage(&[0x90; 64], 1), &params(Some(&initrd))).unwrap_err();
        assert!(matches!(e, Error::InitrdDoesNotFit { .. }), "{e}");
    }

    #[test]
    fn long_command_line_is_refused_by_cmdline_size() {
        let mut image = bzimage(&[0x90; 64], 1);
        image[0x238..0x23c].copy_from_slice(&10u32.to_le_bytes());
        let e = crate::load(&memory(MEM), &image, &params(None)).unwrap_err();
        assert!(matches!(e, Error::CmdlineTooLong { max: 10, .. }), "{e}");
    }
}
