//! Unit tests of the hvt loader on images built here byte by byte.

use super::loader::EM_X86_64;
use super::manifest::{
    MFT_DESC_PAD, MFT_ENTRY_SIZE, MFT_HEADER_SIZE, MFT_RESERVED_FIRST, MFT_TYPE_AT, MFT_U_AT,
};
use super::notes::{ABI1_NOTE_TYPE, MFT1_NOTE_TYPE};
use super::paging::{PAGE_TABLES_4K_ADDR, PTE_NX};
use super::*;
use crate::{elf, layout, Boot, Format};
use vm_memory::Bytes;
use vm_memory::GuestMemoryMmap;

/// A PT_LOAD segment for [`image`]: address, file bytes, memory size, flags.
pub(crate) struct Seg {
    pub addr: u64,
    pub data: Vec<u8>,
    pub memsz: u64,
    pub flags: u32,
}

/// A Solo5 note: name "Solo5", `kind`, descriptor.
fn note(kind: u32, desc: &[u8]) -> Vec<u8> {
    let mut n = Vec::new();
    n.extend_from_slice(&6u32.to_le_bytes());
    n.extend_from_slice(&(desc.len() as u32).to_le_bytes());
    n.extend_from_slice(&kind.to_le_bytes());
    n.extend_from_slice(b"Solo5\0\0\0");
    n.extend_from_slice(desc);
    while n.len() % 4 != 0 {
        n.push(0);
    }
    n
}

pub(crate) fn abi_desc(target: u32, version: u32) -> Vec<u8> {
    [target, version, 0, 0]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect()
}

/// A manifest descriptor: padding, header, the reserved entry, `devices`.
pub(crate) fn mft_desc(devices: &[(&str, u32)]) -> Vec<u8> {
    let mut d = vec![0u8; MFT_DESC_PAD];
    d.extend_from_slice(&MFT_VERSION.to_le_bytes());
    d.extend_from_slice(&(devices.len() as u32 + 1).to_le_bytes());
    let mut entry = |name: &str, kind: u32| {
        let mut e = vec![0u8; MFT_ENTRY_SIZE];
        e[..name.len()].copy_from_slice(name.as_bytes());
        e[MFT_TYPE_AT..MFT_TYPE_AT + 4].copy_from_slice(&kind.to_le_bytes());
        d.extend_from_slice(&e);
    };
    entry("", MFT_RESERVED_FIRST);
    for (name, kind) in devices {
        entry(name, *kind);
    }
    d
}

/// An ELF64 x86-64 executable with `segs` and two notes.
pub(crate) fn image(entry: u64, segs: &[Seg], abi: &[u8], mft: &[u8]) -> Vec<u8> {
    let notes = [note(ABI1_NOTE_TYPE, abi), note(MFT1_NOTE_TYPE, mft)];
    let phnum = segs.len() + notes.len();
    let mut data_at = 64 + 56 * phnum;
    let mut phdrs = Vec::new();
    let mut body = Vec::new();
    let mut ph = |kind: u32, flags: u32, off: usize, addr: u64, filesz: usize, memsz: u64| {
        for v in [kind, flags] {
            phdrs.extend_from_slice(&v.to_le_bytes());
        }
        for v in [off as u64, addr, addr, filesz as u64, memsz, 0x1000] {
            phdrs.extend_from_slice(&v.to_le_bytes());
        }
    };
    for s in segs {
        ph(1, s.flags, data_at, s.addr, s.data.len(), s.memsz);
        body.extend_from_slice(&s.data);
        data_at += s.data.len();
    }
    for n in &notes {
        ph(4, 4, data_at, 0, n.len(), 0);
        body.extend_from_slice(n);
        data_at += n.len();
    }
    let mut f = vec![0u8; 64];
    f[..4].copy_from_slice(&elf::MAGIC);
    f[4] = 2; // ELF64
    f[5] = 1; // little-endian
    f[6] = 1;
    f[16..18].copy_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    f[18..20].copy_from_slice(&EM_X86_64.to_le_bytes());
    f[20..24].copy_from_slice(&1u32.to_le_bytes());
    f[24..32].copy_from_slice(&entry.to_le_bytes());
    f[32..40].copy_from_slice(&64u64.to_le_bytes());
    f[52..54].copy_from_slice(&64u16.to_le_bytes());
    f[54..56].copy_from_slice(&56u16.to_le_bytes());
    f[56..58].copy_from_slice(&(phnum as u16).to_le_bytes());
    f.extend_from_slice(&phdrs);
    f.extend_from_slice(&body);
    f
}

fn text(addr: u64) -> Seg {
    Seg {
        addr,
        data: vec![0xf4; 0x20], // hlt
        memsz: 0x20,
        flags: 5, // R+X
    }
}

fn data(addr: u64) -> Seg {
    Seg {
        addr,
        data: vec![0xaa; 0x10],
        memsz: 0x2000, // bss after the data
        flags: 6,      // R+W
    }
}

fn good() -> Vec<u8> {
    image(
        0x100000,
        &[text(0x100000), data(0x101000)],
        &abi_desc(1, 1),
        &mft_desc(&[("storage", 1), ("service", 2)]),
    )
}

fn mem(mib: u64) -> GuestMemoryMmap {
    GuestMemoryMmap::from_ranges(&layout::ram_ranges(mib << 20)).unwrap()
}

fn hvt_err(r: crate::Result<Boot>) -> Error {
    match r {
        Err(crate::Error::Hvt(e)) => e,
        other => panic!("expected an hvt error, got {other:?}"),
    }
}

#[test]
fn recognised_and_loaded_with_boot_info() {
    let img = good();
    assert_eq!(crate::probe(&img).unwrap(), Format::Solo5Hvt);
    let m = mem(32);
    let params = HvtParams {
        cmdline: "hello world".into(),
        attachments: vec![
            (
                1,
                Attachment::Block {
                    capacity: 1 << 20,
                    block_size: 512,
                },
            ),
            (
                2,
                Attachment::Net {
                    mac: [2, 0, 0, 0, 0, 1],
                    mtu: 1500,
                },
            ),
        ],
        cpu_cycle_freq: 0,
        net_ring: None,
    };
    let boot = load(&m, &img, &params).unwrap();
    assert_eq!(boot.format, Format::Solo5Hvt);
    assert_eq!(boot.mode, cpu::Mode::Solo5Hvt);
    assert_eq!(boot.regs.rip, 0x100000);
    assert_eq!(boot.regs.rdi, BOOT_INFO_ADDR);
    assert_eq!(boot.regs.rsp, (32 << 20) - 8);
    assert_eq!(boot.kernel_end, 0x103000);
    write_cycle_freq(&m, 2_000_000_000).unwrap();
    let rd = |a: u64| m.read_obj::<u64>(GuestAddress(a)).unwrap();
    assert_eq!(rd(BOOT_INFO_ADDR), 32 << 20);
    assert_eq!(rd(BOOT_INFO_ADDR + 8), 0x103000);
    assert_eq!(rd(BOOT_INFO_ADDR + 16), 2_000_000_000);
    let (cmdline, mft) = (rd(BOOT_INFO_ADDR + 24), rd(BOOT_INFO_ADDR + 32));
    let mut s = [0u8; 12];
    m.read_slice(&mut s, GuestAddress(cmdline)).unwrap();
    assert_eq!(&s, b"hello world\0");
    // Manifest in the guest: 3 entries, storage attached with capacity.
    assert_eq!(m.read_obj::<u32>(GuestAddress(mft + 4)).unwrap(), 3);
    let e1 = mft + 8 + MFT_ENTRY_SIZE as u64;
    assert_eq!(rd(e1 + MFT_U_AT as u64), 1 << 20);
    assert_eq!(m.read_obj::<u16>(GuestAddress(e1 + 80)).unwrap(), 512);
    assert_eq!(m.read_obj::<u8>(GuestAddress(e1 + 96)).unwrap(), 1);
    let e2 = e1 + MFT_ENTRY_SIZE as u64;
    assert_eq!(m.read_obj::<u16>(GuestAddress(e2 + 78)).unwrap(), 1500);
    assert!(cmdline + CMDLINE_SIZE as u64 <= BOOT_INFO_AREA_END);
    // Segments and bss.
    assert_eq!(m.read_obj::<u8>(GuestAddress(0x100000)).unwrap(), 0xf4);
    assert_eq!(m.read_obj::<u8>(GuestAddress(0x101000)).unwrap(), 0xaa);
    assert_eq!(m.read_obj::<u8>(GuestAddress(0x101010)).unwrap(), 0);
}

#[test]
fn page_tables_carry_segment_permissions() {
    let m = mem(8);
    load(&m, &good(), &HvtParams::default()).unwrap();
    let rd = |a: u64| m.read_obj::<u64>(GuestAddress(a)).unwrap();
    let pd = layout::PAGE_TABLES_ADDR + 0x2000;
    // Region 0 (0-2 MiB) holds the kernel: a 4 KiB table.
    assert_eq!(rd(pd), PAGE_TABLES_4K_ADDR | 3);
    let pte = |page: u64| rd(PAGE_TABLES_4K_ADDR + (page >> 12) * 8);
    // Low memory as solo5-hvt maps it: nothing below the boot information
    // (NULL-pointer accesses fault), the boot information read-only, and
    // ukvm's own page tables hidden.
    assert_eq!(pte(0), 0);
    assert_eq!(pte(0x8000), 0);
    assert_eq!(pte(BOOT_INFO_ADDR), BOOT_INFO_ADDR | 1 | PTE_NX);
    assert_eq!(pte(PAGE_TABLES_4K_ADDR), 0);
    assert_eq!(pte(0x80000), 0x80000 | 1 | PTE_NX);
    assert_eq!(pte(0x100000), 0x100000 | 1); // text: read-only, executable
    assert_eq!(pte(0x101000), 0x101000 | 3 | PTE_NX); // data: no execute
    assert_eq!(pte(0x103000), 0x103000 | 3); // heap
    assert_eq!(rd(pd + 8), 0x200000 | 0x83); // untouched 2 MiB page
    assert_eq!(rd(pd + 4 * 8), 0); // past the 8 MiB of RAM
    let mut sregs = kvm_sregs::default();
    cpu::setup_sregs(&mut sregs, cpu::Mode::Solo5Hvt);
    assert_eq!(sregs.cs.l, 1);
    assert_ne!(sregs.cr0 & CR0_WP, 0);
    assert_ne!(sregs.efer & EFER_NXE, 0);
}

#[test]
fn manifest_devices_and_handles() {
    let m = manifest(&good()).unwrap();
    assert_eq!(
        m.devices,
        vec![
            Device {
                name: "storage".into(),
                kind: DeviceKind::Block,
                handle: 1
            },
            Device {
                name: "service".into(),
                kind: DeviceKind::Net,
                handle: 2
            },
        ]
    );
}

#[test]
fn other_abi_versions_and_targets_are_refused_by_name() {
    let img = image(0x100000, &[text(0x100000)], &abi_desc(1, 3), &mft_desc(&[]));
    let e = crate::probe(&img).unwrap_err();
    assert_eq!(
        e.to_string(),
        "Solo5 hvt image: Solo5 hvt ABI version 3 is not supported (ukvm implements versions 1 and 2)"
    );
    for version in [1, 2] {
        let img = image(
            0x100000,
            &[text(0x100000)],
            &abi_desc(1, version),
            &mft_desc(&[]),
        );
        assert_eq!(
            crate::probe(&img).unwrap(),
            Format::Solo5Hvt,
            "version {version}"
        );
    }
    let img = image(0x100000, &[text(0x100000)], &abi_desc(2, 1), &mft_desc(&[]));
    assert!(matches!(
        crate::probe(&img),
        Err(crate::Error::Hvt(Error::UnsupportedTarget { target: 2 }))
    ));
}

#[test]
fn malformed_manifests_are_refused() {
    let seg = [text(0x100000)];
    let with = |mft: Vec<u8>| {
        hvt_err(load(
            &mem(8),
            &image(0x100000, &seg, &abi_desc(1, 1), &mft),
            &HvtParams::default(),
        ))
    };
    // Oversized: 65 devices.
    let names: Vec<String> = (0..65).map(|i| format!("d{i}")).collect();
    let many: Vec<(&str, u32)> = names.iter().map(|n| (n.as_str(), 1)).collect();
    assert!(matches!(with(mft_desc(&many)), Error::BadNote { .. }));
    // Entry count that lies about the size.
    let mut d = mft_desc(&[("a", 1)]);
    d[MFT_DESC_PAD + 4] = 3;
    assert!(matches!(with(d), Error::ManifestSize { expected: 320, .. }));
    let mut d = mft_desc(&[("a", 1)]);
    d[MFT_DESC_PAD + 4..MFT_DESC_PAD + 8].copy_from_slice(&70u32.to_le_bytes());
    assert!(matches!(with(d), Error::TooManyEntries { count: 70, .. }));
    // Name filling all 68 bytes.
    let mut d = mft_desc(&[("a", 1)]);
    let at = MFT_DESC_PAD + MFT_HEADER_SIZE + MFT_ENTRY_SIZE;
    d[at..at + MFT_NAME_SIZE].fill(b'x');
    assert_eq!(with(d), Error::NameNotTerminated { index: 1 });
    // Unknown device type, missing reserved entry, bad version.
    assert!(matches!(
        with(mft_desc(&[("a", 7)])),
        Error::UnknownDeviceType { kind: 7, .. }
    ));
    let mut d = mft_desc(&[]);
    d[MFT_DESC_PAD + MFT_HEADER_SIZE + MFT_TYPE_AT] = 1;
    d[MFT_DESC_PAD + MFT_HEADER_SIZE + MFT_TYPE_AT + 3] = 0;
    assert_eq!(with(d), Error::NoReservedEntry);
    let mut d = mft_desc(&[]);
    d[MFT_DESC_PAD] = 2;
    assert!(matches!(with(d), Error::ManifestVersion { found: 2, .. }));
    assert!(matches!(
        with(mft_desc(&[("a", 1), ("a", 2)])),
        Error::DuplicateName { .. }
    ));
}

#[test]
fn misplaced_segments_are_refused() {
    let abi = abi_desc(1, 1);
    let mft = mft_desc(&[]);
    let try_load = |entry: u64, segs: &[Seg]| {
        hvt_err(load(
            &mem(8),
            &image(entry, segs, &abi, &mft),
            &HvtParams::default(),
        ))
    };
    assert_eq!(
        try_load(0x80000, &[text(0x80000)]),
        Error::SegmentBelowMinBase {
            index: 0,
            addr: 0x80000,
            min: 0x100000
        }
    );
    assert!(matches!(
        try_load(0x100000, &[text(0x100000), text(0x7ff000), data(0x800000)]),
        Error::SegmentPastMemory { index: 2, .. }
    ));
    assert!(matches!(
        try_load(0x100000, &[data(0x100000), text(0x101000)]),
        Error::SegmentsOverlap { index: 1, .. }
    ));
    let mut rwx = text(0x100000);
    rwx.flags = 7;
    assert!(matches!(
        try_load(0x100000, &[rwx]),
        Error::WritableExecutable { .. }
    ));
    assert!(matches!(
        try_load(0x900000, &[text(0x100000)]),
        Error::EntryOutside { .. }
    ));
    let img = image(0x100000, &[text(0x100000)], &abi, &mft);
    // hvt RAM is one range from 0, at most 4 GiB as under solo5-hvt.
    let big = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), (4 << 30) + (2 << 20))]).unwrap();
    let e = hvt_err(load(&big, &img, &HvtParams::default()));
    assert!(matches!(e, Error::MemSize { mib: 4098, .. }), "{e:?}");
    // A ring that does not fit below the end of RAM is refused.
    let params = HvtParams {
        net_ring: Some((32 << 20) - 0x1000),
        ..Default::default()
    };
    let e = hvt_err(load(&mem(32), &img, &params));
    assert!(matches!(e, Error::RingOutside { .. }), "{e:?}");
}

#[test]
fn truncated_notes_are_refused() {
    let mut img = good();
    // Make the ABI note claim a 17-byte descriptor.
    let at = img.windows(6).position(|w| w == b"Solo5\0").unwrap() - 8;
    img[at..at + 4].copy_from_slice(&17u32.to_le_bytes());
    assert!(matches!(
        crate::probe(&img),
        Err(crate::Error::Hvt(Error::BadNote { .. }))
    ));
}

#[test]
fn extended_boot_info_offers_the_ring_and_ends_guest_memory_below_it() {
    let img = good();
    let m = mem(32);
    let rd = |a: u64| m.read_obj::<u64>(GuestAddress(a)).unwrap();
    let rd32 = |a: u64| m.read_obj::<u32>(GuestAddress(a)).unwrap();
    let ring_at = (32 << 20) - ring::RESERVE;
    let params = HvtParams {
        net_ring: Some(ring_at),
        ..Default::default()
    };
    let boot = load(&m, &img, &params).unwrap();
    assert_eq!(rd(BOOT_INFO_ADDR), ring_at, "mem_size ends at the ring");
    assert_eq!(boot.regs.rsp, ring_at - 8);
    assert_eq!(
        rd32(BOOT_INFO_ADDR + boot_info::HOST_FEATURES_AT),
        FEATURE_RING_IO
    );
    assert_eq!(rd32(BOOT_INFO_ADDR + boot_info::GUEST_FEATURES_AT), 0);
    assert_eq!(rd(BOOT_INFO_ADDR + boot_info::NET_RING_AT), ring_at);
    // The manifest follows the 56-byte structure.
    assert_eq!(rd(BOOT_INFO_ADDR + 32), BOOT_INFO_ADDR + BOOT_INFO_SIZE);

    // Without the ring: no feature, no ring, all of RAM.
    let m = mem(32);
    load(&m, &img, &HvtParams::default()).unwrap();
    assert_eq!(
        m.read_obj::<u64>(GuestAddress(BOOT_INFO_ADDR)).unwrap(),
        32 << 20
    );
    assert_eq!(
        m.read_obj::<u32>(GuestAddress(BOOT_INFO_ADDR + boot_info::HOST_FEATURES_AT))
            .unwrap(),
        0
    );
    assert_eq!(
        m.read_obj::<u64>(GuestAddress(BOOT_INFO_ADDR + boot_info::NET_RING_AT))
            .unwrap(),
        0
    );
}
