//! Multiboot 1 (specification 0.6.96): find the header, load the kernel
//! either through the a.out-kludge addresses (how ELF64 unikernels such as
//! Rumprun and Solo5 are booted) or from its ELF program headers, load
//! modules, and write the Multiboot information structure.

use crate::elf;
use crate::layout::{self, MemoryType};
use crate::{cpu, Boot, BootParams, Error, Format, Result};
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion};

/// Magic value of the kernel's Multiboot header.
pub const HEADER_MAGIC: u32 = 0x1bad_b002;
/// Value of EAX when the kernel is entered.
pub const BOOTLOADER_MAGIC: u32 = 0x2bad_b002;
/// The header must lie entirely in the first 8 KiB of the image.
pub const SEARCH_LIMIT: usize = 8192;
/// How far past [`SEARCH_LIMIT`] to look, to tell "header too far" from
/// "no header".
const DIAGNOSE_LIMIT: usize = 64 * 1024;
/// Header flag: load modules page-aligned.
pub const FLAG_PAGE_ALIGN: u32 = 1 << 0;
/// Header flag: the kernel wants memory information.
pub const FLAG_MEMORY_INFO: u32 = 1 << 1;
/// Header flag: the kernel asks for a video mode (none exists; ignored).
pub const FLAG_VIDEO_MODE: u32 = 1 << 2;
/// Header flag: the a.out-kludge address fields are valid.
pub const FLAG_AOUT_KLUDGE: u32 = 1 << 16;
/// Value of `boot_loader_name`.
pub const LOADER_NAME: &str = "ukvm";

/// Information structure flags ukvm sets.
pub const INFO_MEMORY: u32 = 1 << 0;
/// `cmdline` is valid.
pub const INFO_CMDLINE: u32 = 1 << 2;
/// `mods_count`/`mods_addr` are valid.
pub const INFO_MODS: u32 = 1 << 3;
/// `mmap_length`/`mmap_addr` are valid.
pub const INFO_MMAP: u32 = 1 << 6;
/// `boot_loader_name` is valid.
pub const INFO_LOADER_NAME: u32 = 1 << 9;

const PAGE_SIZE: u64 = 4096;
const MMAP_ENTRY_SIZE: u32 = 24;

/// The a.out-kludge address fields of a Multiboot header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kludge {
    /// Physical address of the header's magic.
    pub header_addr: u32,
    /// Physical address where the file's text starts.
    pub load_addr: u32,
    /// End of text+data (0: to the end of the file).
    pub load_end_addr: u32,
    /// End of bss (0: no bss).
    pub bss_end_addr: u32,
    /// Entry point.
    pub entry_addr: u32,
}

/// A Multiboot header found in an image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// File offset of the magic.
    pub offset: usize,
    /// `flags`.
    pub flags: u32,
    /// Address fields, when flag bit 16 is set.
    pub kludge: Option<Kludge>,
}

fn read_u32(image: &[u8], offset: usize) -> Option<u32> {
    let bytes = image.get(offset..offset.checked_add(4)?)?;
    Some(u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
}

/// Searches the first 8 KiB for a Multiboot header with a valid checksum.
/// Returns `Ok(None)` if the image has no magic at all.
pub fn find_header(image: &[u8]) -> Result<Option<Header>> {
    let mut bad_checksum = None;
    let limit = image.len().min(DIAGNOSE_LIMIT);
    for offset in (0..limit).step_by(4) {
        if read_u32(image, offset) != Some(HEADER_MAGIC) {
            continue;
        }
        let (Some(flags), Some(checksum)) =
            (read_u32(image, offset + 4), read_u32(image, offset + 8))
        else {
            return Err(Error::TruncatedHeader {
                offset,
                needed: 12,
                available: image.len() - offset,
            });
        };
        let sum = HEADER_MAGIC.wrapping_add(flags).wrapping_add(checksum);
        if sum != 0 {
            bad_checksum.get_or_insert(Error::BadChecksum { offset, sum });
            continue;
        }
        if offset + 12 > SEARCH_LIMIT {
            // A valid header outside the window; report a bad one inside it first.
            return Err(bad_checksum.unwrap_or(Error::HeaderTooFar { offset }));
        }
        return parse_header(image, offset, flags).map(Some);
    }
    bad_checksum.map_or(Ok(None), Err)
}

fn parse_header(image: &[u8], offset: usize, flags: u32) -> Result<Header> {
    let unsupported = flags & 0xffff & !(FLAG_PAGE_ALIGN | FLAG_MEMORY_INFO | FLAG_VIDEO_MODE);
    if unsupported != 0 {
        return Err(Error::UnsupportedFlags { bits: unsupported });
    }
    let kludge = if flags & FLAG_AOUT_KLUDGE != 0 {
        let word = |i: usize| {
            read_u32(image, offset + 12 + 4 * i).ok_or(Error::TruncatedHeader {
                offset,
                needed: 32,
                available: image.len() - offset,
            })
        };
        Some(Kludge {
            header_addr: word(0)?,
            load_addr: word(1)?,
            load_end_addr: word(2)?,
            bss_end_addr: word(3)?,
            entry_addr: word(4)?,
        })
    } else {
        None
    };
    Ok(Header {
        offset,
        flags,
        kludge,
    })
}

/// Where the kernel went: `[start, end)` including bss, and the entry point.
struct Placed {
    start: u64,
    end: u64,
    entry: u64,
}

/// Loads a Multiboot kernel with its modules and writes the info structure.
pub fn load(
    mem: &GuestMemoryMmap,
    image: &[u8],
    header: &Header,
    params: &BootParams,
) -> Result<Boot> {
    let mem_size = ram_size(mem);
    let (format, placed) = match &header.kludge {
        Some(k) => (
            Format::MultibootKludge,
            load_kludge(mem, image, header.offset, k, mem_size)?,
        ),
        // Kludge absent: the spec requires an ELF image.
        None => (Format::MultibootElf, load_elf(mem, image, mem_size)?),
    };
    let mods_end = write_modules(mem, params, placed.end, mem_size)?;
    write_info(mem, params, mem_size)?;
    Ok(Boot {
        format,
        entry: placed.entry,
        kernel_start: placed.start,
        kernel_end: mods_end,
        initrd: None,
        regs: kvm_bindings::kvm_regs {
            rip: placed.entry,
            rax: u64::from(BOOTLOADER_MAGIC),
            rbx: layout::MB_INFO_ADDR,
            rflags: 0x2,
            ..Default::default()
        },
        mode: cpu::Mode::Protected32,
    })
}

/// Total RAM of the guest.
fn ram_size(mem: &GuestMemoryMmap) -> u64 {
    mem.iter().map(|r| r.len()).sum()
}

fn bad(field: &'static str, value: u32, why: &'static str) -> Error {
    Error::BadField {
        field,
        value: u64::from(value),
        why,
    }
}

fn load_kludge(
    mem: &GuestMemoryMmap,
    image: &[u8],
    header_offset: usize,
    k: &Kludge,
    mem_size: u64,
) -> Result<Placed> {
    if k.header_addr < k.load_addr {
        return Err(bad("header_addr", k.header_addr, "lies below load_addr"));
    }
    // The file byte loaded at load_addr.
    let file_start = (header_offset as u64)
        .checked_sub(u64::from(k.header_addr - k.load_addr))
        .ok_or(bad(
            "header_addr",
            k.header_addr,
            "header_addr - load_addr is larger than the header's file offset",
        ))?;
    let load_start = u64::from(k.load_addr);
    let load_end = match k.load_end_addr {
        0 => load_start + (image.len() as u64 - file_start),
        end if end <= k.load_addr => {
            return Err(bad("load_end_addr", end, "is not above load_addr"))
        }
        end => u64::from(end),
    };
    let file_end = file_start + (load_end - load_start);
    if file_end > image.len() as u64 {
        return Err(bad(
            "load_end_addr",
            k.load_end_addr,
            "lies past the end of the file (truncated image?)",
        ));
    }
    let end = match k.bss_end_addr {
        0 => load_end,
        bss if u64::from(bss) < load_end => {
            return Err(bad("bss_end_addr", bss, "lies below load_end_addr"))
        }
        bss => u64::from(bss),
    };
    let entry = u64::from(k.entry_addr);
    if entry < load_start || entry >= load_end {
        return Err(bad(
            "entry_addr",
            k.entry_addr,
            "lies outside the loaded image [load_addr, load_end_addr)",
        ));
    }
    layout::check_range("kernel image", load_start, end, mem_size)?;
    write(
        mem,
        load_start,
        &image[file_start as usize..file_end as usize],
    )?;
    zero(mem, load_end, end)?;
    Ok(Placed {
        start: load_start,
        end,
        entry,
    })
}

fn load_elf(mem: &GuestMemoryMmap, image: &[u8], mem_size: u64) -> Result<Placed> {
    if !elf::is_elf(image) {
        return Err(Error::Elf(
            "multiboot header without the a.out-kludge flag (bit 16) needs an ELF image".into(),
        ));
    }
    let elf = elf::parse(image)?;
    let mut start = u64::MAX;
    let mut end = 0;
    let mut entry = None;
    for (i, seg) in elf.segments.iter().enumerate() {
        let seg_end = seg.paddr + seg.memsz;
        layout::check_range(&format!("ELF segment {i}"), seg.paddr, seg_end, mem_size)?;
        let bytes = &image[seg.offset as usize..(seg.offset + seg.filesz) as usize];
        write(mem, seg.paddr, bytes)?;
        zero(mem, seg.paddr + seg.filesz, seg_end)?;
        start = start.min(seg.paddr);
        end = end.max(seg_end);
        // GRUB accepts e_entry as a virtual address and translates it.
        if entry.is_none() && elf.entry >= seg.vaddr && elf.entry - seg.vaddr < seg.memsz {
            entry = Some(elf.entry - seg.vaddr + seg.paddr);
        }
    }
    let entry = entry.filter(|e| *e < 1 << 32).ok_or(Error::BadField {
        field: "e_entry",
        value: elf.entry,
        why: "lies outside every loadable segment (or above 4 GiB)",
    })?;
    Ok(Placed { start, end, entry })
}

fn write(mem: &GuestMemoryMmap, addr: u64, bytes: &[u8]) -> Result<()> {
    mem.write_slice(bytes, GuestAddress(addr))
        .map_err(|source| Error::GuestMemory { addr, source })
}

/// Zeroes `[start, end)`. Freshly mapped guest memory is already zero, but
/// the loader does not assume how `mem` was made.
fn zero(mem: &GuestMemoryMmap, start: u64, end: u64) -> Result<()> {
    if end <= start {
        return Ok(());
    }
    const ZEROS: [u8; 4096] = [0; 4096];
    let mut addr = start;
    while addr < end {
        let n = (end - addr).min(ZEROS.len() as u64) as usize;
        write(mem, addr, &ZEROS[..n])?;
        addr += n as u64;
    }
    Ok(())
}

fn align_up(value: u64, align: u64) -> u64 {
    value.div_ceil(align) * align
}

/// Loads the modules page-aligned after `after`; writes the module list and
/// strings. Returns the first address past the last module.
fn write_modules(
    mem: &GuestMemoryMmap,
    params: &BootParams,
    after: u64,
    mem_size: u64,
) -> Result<u64> {
    if params.modules.len() > layout::MB_MAX_MODULES {
        return Err(Error::TooManyModules {
            count: params.modules.len(),
            max: layout::MB_MAX_MODULES,
        });
    }
    let strings_len: usize = params.modules.iter().map(|m| m.string.len() + 1).sum();
    if strings_len > layout::MB_MOD_STRINGS_SIZE {
        return Err(Error::ModuleStringsTooLong {
            len: strings_len,
            max: layout::MB_MOD_STRINGS_SIZE,
        });
    }
    let mut cursor = after;
    let mut string_addr = layout::MB_MOD_STRINGS_ADDR;
    for (i, module) in params.modules.iter().enumerate() {
        layout::check_cmdline(&module.string)?;
        let start = align_up(cursor, PAGE_SIZE);
        let end = start + module.data.len() as u64;
        layout::check_range(&format!("module {}", module.name), start, end, mem_size)?;
        write(mem, start, module.data)?;
        write_cstr(mem, string_addr, &module.string)?;
        let entry_addr = layout::MB_MODS_ADDR + 16 * i as u64;
        write_u32s(
            mem,
            entry_addr,
            &[start as u32, end as u32, string_addr as u32, 0],
        )?;
        string_addr += module.string.len() as u64 + 1;
        cursor = end;
    }
    Ok(cursor)
}

fn write_cstr(mem: &GuestMemoryMmap, addr: u64, s: &str) -> Result<()> {
    write(mem, addr, s.as_bytes())?;
    write(mem, addr + s.len() as u64, &[0])
}

fn write_u32s(mem: &GuestMemoryMmap, addr: u64, words: &[u32]) -> Result<()> {
    let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
    write(mem, addr, &bytes)
}

/// Writes the memory map; returns its length in bytes.
fn write_mmap(mem: &GuestMemoryMmap, mem_size: u64) -> Result<u32> {
    let mut bytes = Vec::new();
    for range in layout::memory_map(mem_size) {
        bytes.extend_from_slice(&(MMAP_ENTRY_SIZE - 4).to_le_bytes());
        bytes.extend_from_slice(&range.start.to_le_bytes());
        bytes.extend_from_slice(&range.len.to_le_bytes());
        bytes.extend_from_slice(&(range.kind as u32).to_le_bytes());
    }
    write(mem, layout::MB_MMAP_ADDR, &bytes)?;
    Ok(bytes.len() as u32)
}

/// The command line as GRUB and QEMU's Multiboot loader pass it: the
/// kernel's file name, a space, then the user's command line (QEMU formats
/// "%s %s", so an empty command line leaves a trailing space). Solo5's
/// virtio bindings drop the first word; Unikraft takes it as argv[0].
pub fn command_line(params: &BootParams) -> Result<String> {
    let line = format!("{} {}", params.kernel_name, params.cmdline);
    if line.len() > layout::CMDLINE_MAX {
        return Err(Error::MultibootCmdlineTooLong {
            len: line.len(),
            name_len: params.kernel_name.len(),
            max: layout::CMDLINE_MAX,
        });
    }
    Ok(line)
}

fn write_info(mem: &GuestMemoryMmap, params: &BootParams, mem_size: u64) -> Result<()> {
    let mmap_len = write_mmap(mem, mem_size)?;
    write_cstr(mem, layout::CMDLINE_ADDR, &command_line(params)?)?;
    write_cstr(mem, layout::MB_LOADER_NAME_ADDR, LOADER_NAME)?;
    let upper_kb = (layout::low_ram_end(mem_size) - layout::HIGH_MEM_START) / 1024;
    let mut info = [0u32; 29]; // 116 bytes, the whole Multiboot 1 structure.
    info[0] = INFO_MEMORY | INFO_CMDLINE | INFO_MODS | INFO_MMAP | INFO_LOADER_NAME;
    info[1] = (layout::EBDA_START / 1024) as u32; // mem_lower: 639
    info[2] = upper_kb as u32; // mem_upper
    info[4] = layout::CMDLINE_ADDR as u32;
    info[5] = params.modules.len() as u32;
    info[6] = layout::MB_MODS_ADDR as u32;
    info[11] = mmap_len;
    info[12] = layout::MB_MMAP_ADDR as u32;
    info[16] = layout::MB_LOADER_NAME_ADDR as u32;
    write_u32s(mem, layout::MB_INFO_ADDR, &info)
}

/// Memory map types as Multiboot numbers them (same as E820).
pub fn mmap_type(kind: MemoryType) -> u32 {
    kind as u32
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::elf::tests::elf32;
    use crate::Module;

    const MEM: u64 = 16 << 20;

    fn memory() -> GuestMemoryMmap {
        GuestMemoryMmap::from_ranges(&layout::ram_ranges(MEM)).unwrap()
    }

    /// A kludge kernel: header at file offset 0x40, text at 0x100000.
    fn kludge_image(fields: [u32; 5], flags: u32, file_len: usize) -> Vec<u8> {
        let mut f = vec![0x90u8; file_len];
        let checksum = 0u32.wrapping_sub(HEADER_MAGIC).wrapping_sub(flags);
        let words = [HEADER_MAGIC, flags, checksum];
        for (i, w) in words.iter().chain(fields.iter()).enumerate() {
            f[0x40 + 4 * i..0x44 + 4 * i].copy_from_slice(&w.to_le_bytes());
        }
        f
    }

    fn good_kludge() -> Vec<u8> {
        // header_addr, load_addr, load_end_addr, bss_end_addr, entry_addr
        kludge_image(
            [0x100040, 0x100000, 0x101000, 0x102000, 0x100080],
            0x10003,
            0x1000,
        )
    }

    fn params() -> BootParams<'static> {
        BootParams {
            cmdline: "hello world".into(),
            kernel_name: "/boot/k.bin".into(),
            ..Default::default()
        }
    }

    fn do_load(image: &[u8]) -> Result<Boot> {
        crate::load(&memory(), image, &params())
    }

    fn u32_at(mem: &GuestMemoryMmap, addr: u64) -> u32 {
        mem.read_obj(GuestAddress(addr)).unwrap()
    }

    #[test]
    fn loads_kludge_kernel_and_sets_entry_state() {
        let mem = memory();
        let boot = crate::load(&mem, &good_kludge(), &params()).unwrap();
        assert_eq!(boot.format, Format::MultibootKludge);
        assert_eq!(boot.entry, 0x100080);
        assert_eq!(boot.regs.rax, 0x2bad_b002);
        assert_eq!(boot.regs.rbx, layout::MB_INFO_ADDR);
        assert_eq!((boot.kernel_start, boot.kernel_end), (0x100000, 0x102000));
        assert_eq!(u32_at(&mem, 0x100040), HEADER_MAGIC);
        assert_eq!(u32_at(&mem, 0x101ffc), 0, "bss zeroed");
    }

    #[test]
    fn info_structure_has_memory_map_cmdline_and_name() {
        let mem = memory();
        crate::load(&mem, &good_kludge(), &params()).unwrap();
        let info = layout::MB_INFO_ADDR;
        let flags = u32_at(&mem, info);
        assert_eq!(
            flags,
            INFO_MEMORY | INFO_CMDLINE | INFO_MODS | INFO_MMAP | INFO_LOADER_NAME
        );
        assert_eq!(u32_at(&mem, info + 4), 639);
        assert_eq!(u32_at(&mem, info + 8), ((MEM - 0x100000) / 1024) as u32);
        let mut cmd = [0u8; 24];
        mem.read_slice(&mut cmd, GuestAddress(u64::from(u32_at(&mem, info + 16))))
            .unwrap();
        assert_eq!(&cmd, b"/boot/k.bin hello world\0");
        let mut name = [0u8; 5];
        mem.read_slice(&mut name, GuestAddress(u64::from(u32_at(&mem, info + 64))))
            .unwrap();
        assert_eq!(&name, b"ukvm\0");
        let mmap = u64::from(u32_at(&mem, info + 48));
        assert_eq!(u32_at(&mem, info + 44), 5 * 24);
        // Entry 0: [0, 0x9fc00) available; entry 3: available from 1 MiB.
        assert_eq!(u32_at(&mem, mmap), 20);
        let base0: u64 = mem.read_obj(GuestAddress(mmap + 4)).unwrap();
        let len0: u64 = mem.read_obj(GuestAddress(mmap + 12)).unwrap();
        assert_eq!((base0, len0, u32_at(&mem, mmap + 20)), (0, 0x9fc00, 1));
        let base3: u64 = mem.read_obj(GuestAddress(mmap + 72 + 4)).unwrap();
        assert_eq!((base3, u32_at(&mem, mmap + 72 + 20)), (0x100000, 1));
    }

    #[test]
    fn modules_are_page_aligned_after_the_kernel() {
        let mem = memory();
        let data = [7u8; 100];
        let p = BootParams {
            cmdline: String::new(),
            modules: vec![Module {
                name: "m".into(),
                data: &data,
                string: "mod arg".into(),
            }],
            ..Default::default()
        };
        let boot = crate::load(&mem, &good_kludge(), &p).unwrap();
        assert_eq!(u32_at(&mem, layout::MB_INFO_ADDR + 20), 1);
        assert_eq!(u32_at(&mem, layout::MB_MODS_ADDR), 0x102000);
        assert_eq!(u32_at(&mem, layout::MB_MODS_ADDR + 4), 0x102064);
        assert_eq!(boot.kernel_end, 0x102064);
        let mut b = [0u8; 1];
        mem.read_slice(&mut b, GuestAddress(0x102063)).unwrap();
        assert_eq!(b[0], 7);
    }

    #[test]
    fn loads_elf32_kernel() {
        let mut image = elf32(0x200000, &[0xf4; 64], 4096, 0x200010);
        let flags = FLAG_MEMORY_INFO;
        let checksum = 0u32.wrapping_sub(HEADER_MAGIC).wrapping_sub(flags);
        for (i, w) in [HEADER_MAGIC, flags, checksum].iter().enumerate() {
            image[0x1000 + 4 * i..0x1004 + 4 * i].copy_from_slice(&w.to_le_bytes());
        }
        let boot = do_load(&image).unwrap();
        assert_eq!(boot.format, Format::MultibootElf);
        assert_eq!(boot.entry, 0x200010);
        assert_eq!(boot.kernel_end, 0x200000 + 64 + 4096);
    }

    #[test]
    fn command_line_is_the_kernel_name_a_space_and_the_rest_as_qemu_passes_it() {
        let mut p = params();
        assert_eq!(command_line(&p).unwrap(), "/boot/k.bin hello world");
        p.cmdline.clear();
        assert_eq!(command_line(&p).unwrap(), "/boot/k.bin ");
        p.cmdline = "x".repeat(layout::CMDLINE_MAX - 5);
        assert!(matches!(
            command_line(&p),
            Err(Error::MultibootCmdlineTooLong { len, name_len: 11, .. })
                if len == layout::CMDLINE_MAX + 7
        ));
    }

    fn err_of(image: &[u8]) -> String {
        do_load(image).unwrap_err().to_string()
    }

    #[test]
    fn header_errors_name_the_problem() {
        assert_eq!(err_of(&[0u8; 100]), Error::UnknownFormat.to_string());
        let mut bad_sum = good_kludge();
        bad_sum[0x48] ^= 1;
        assert!(err_of(&bad_sum).contains("checksum"));
        let mut far = vec![0u8; 0x2100];
        far[0x2000..0x2100].copy_from_slice(&good_kludge()[0..0x100]);
        far.drain(0..0x40);
        assert!(
            err_of(&far).contains("past the first 8 KiB"),
            "{}",
            err_of(&far)
        );
        let truncated = &good_kludge()[..0x50];
        assert!(err_of(truncated).contains("truncated"));
        let unsupported = kludge_image([0; 5], 0x10008, 0x1000);
        assert!(err_of(&unsupported).contains("0x8"));
    }

    #[test]
    fn kludge_field_errors_name_the_field() {
        let cases = [
            ([0x100040, 0x100000, 0x0ff000, 0, 0x100080], "load_end_addr"),
            (
                [0x100040, 0x100000, 0x101000, 0x100800, 0x100080],
                "bss_end_addr",
            ),
            ([0x100040, 0x100000, 0x101000, 0, 0x300000], "entry_addr"),
            (
                [0x100040, 0x100000, 0x108000, 0, 0x100080],
                "past the end of the file",
            ),
            ([0x0ff000, 0x100000, 0x101000, 0, 0x100080], "header_addr"),
            ([0x200040, 0x100000, 0x101000, 0, 0x100080], "header_addr"),
        ];
        for (fields, want) in cases {
            let e = err_of(&kludge_image(fields, 0x10003, 0x1000));
            assert!(e.contains(want), "{fields:x?}: {e}");
        }
    }

    #[test]
    fn kernels_that_do_not_fit_are_refused() {
        let big = kludge_image(
            [0x100040, 0x100000, 0x101000, 0x2000000, 0x100080],
            0x10003,
            0x1000,
        );
        assert!(err_of(&big).contains("raise --mem"));
        let low = kludge_image([0x1040, 0x1000, 0x2000, 0, 0x1080], 0x10003, 0x1000);
        assert!(err_of(&low).contains("boot structures"));
    }
}
