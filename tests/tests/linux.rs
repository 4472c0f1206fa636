//! The PVH and Linux boot protocols: our own test kernels (pvh, linux64,
//! linux64-bz) booted through the CLI, and the real Debian cloud kernel
//! loaded (not run) through the library API, its zero page / start_info
//! read back from guest memory.
//!
//! The Debian kernel comes from `tests/fixtures/fetch-linux.sh` (into
//! target/fixtures/linux, or `$UKVM_LINUX_FIXTURE`); its tests skip with a
//! message when it is missing. The ELF vmlinux is extracted from the bzImage
//! here, with the `lz4` tool (Debian compresses the kernel with LZ4).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use ukvm::boot::cpu::Mode;
use ukvm::{BootFormat, Vm, VmConfig};
use ukvm_tests::{guest, kvm_available, run_ukvm, Outcome, TempDir};

const INITRD_LEN: usize = 5000;

/// An initrd the test kernels recognise: "UKVM-INITRD" then a pattern.
fn initrd_file(dir: &TempDir) -> PathBuf {
    let mut data = b"UKVM-INITRD".to_vec();
    data.extend((0..INITRD_LEN - 11).map(|i| (i % 251) as u8));
    let path = dir.join("initrd.img");
    std::fs::write(&path, data).unwrap();
    path
}

fn boot_test_kernel(name: &str, word: &str, initrd: Option<&Path>) -> Outcome {
    let kernel = guest(name);
    let mut cmdline = format!("{word} mem_mib=64");
    let mut args: Vec<std::ffi::OsString> = vec!["--kernel".into(), kernel.into()];
    if let Some(path) = initrd {
        cmdline.push_str(&format!(" initrd_len={INITRD_LEN}"));
        args.extend(["--initrd".into(), path.into()]);
    }
    args.extend(["--mem".into(), "64".into(), "--verbose".into()]);
    args.extend(["--cmdline".into(), cmdline.into()]);
    run_ukvm(args)
}

fn assert_all_checks_pass(out: &Outcome, name: &str, min_checks: usize) {
    let lines = out.lines();
    let failed: Vec<_> = lines.iter().filter(|l| l.starts_with("FAIL")).collect();
    assert!(failed.is_empty(), "{name}: {failed:?}\n{out:?}");
    let passed = lines.iter().filter(|l| l.starts_with("PASS")).count();
    assert!(
        passed >= min_checks,
        "{name}: only {passed} checks\n{out:?}"
    );
    assert!(
        lines
            .last()
            .is_some_and(|l| l.ends_with("checks, 0 failed")),
        "{out:?}"
    );
    assert_eq!(out.status, Some(0), "{out:?}");
}

#[test]
fn pvh_kernel_sees_start_info_memmap_cmdline_and_initrd() {
    if !kvm_available() {
        return;
    }
    let dir = TempDir::new("pvh");
    let initrd = initrd_file(&dir);
    let out = boot_test_kernel("pvh", "pvh-test", Some(&initrd));
    assert_all_checks_pass(&out, "pvh", 17);
    assert!(out.stdout.contains("PASS acpi-rsdp\n"), "{out:?}");
    assert!(
        out.stderr
            .contains("kernel format pvh, entry 0x100000 in 32-bit protected mode"),
        "{out:?}"
    );
    let out = boot_test_kernel("pvh", "pvh-test", None);
    assert_all_checks_pass(&out, "pvh without initrd", 12);
}

#[test]
fn linux_protocol_kernels_see_long_mode_and_zero_page() {
    if !kvm_available() {
        return;
    }
    let dir = TempDir::new("linux64");
    let initrd = initrd_file(&dir);
    for (name, format, entry) in [
        ("linux64", "linux-elf64", "0x200000"),
        ("linux64-bz", "linux-bzimage", "0x200200"),
    ] {
        let out = boot_test_kernel(name, "linux-test", Some(&initrd));
        assert_all_checks_pass(&out, name, 16);
        let want = format!("kernel format {format}, entry {entry} in 64-bit long mode");
        assert!(out.stderr.contains(&want), "{want}: {out:?}");
        let out = boot_test_kernel(name, "linux-test", None);
        assert_all_checks_pass(&out, name, 13);
    }
}

#[test]
fn acpi_s5_through_pm1a_cnt_ends_the_run_as_a_power_off() {
    if !kvm_available() {
        return;
    }
    for name in ["linux64", "linux64-bz"] {
        let out = run_ukvm([
            "--kernel".as_ref(),
            guest(name).as_os_str(),
            "--mem".as_ref(),
            "64".as_ref(),
            "--timings".as_ref(),
            "--cmdline".as_ref(),
            "linux-test mem_mib=64 poweroff".as_ref(),
        ]);
        assert_all_checks_pass(&out, name, 15);
        assert!(out.stdout.contains("PASS acpi-rsdp\n"), "{out:?}");
        assert!(
            out.stderr.contains("\"outcome\":\"poweroff\""),
            "{name}: {out:?}"
        );
    }
}

#[test]
fn initrd_that_does_not_fit_is_a_clear_error() {
    if !kvm_available() {
        return;
    }
    let dir = TempDir::new("bigrd");
    let big = dir.join("big.img");
    std::fs::write(&big, vec![0u8; 70 << 20]).unwrap();
    let out = run_ukvm([
        "--kernel".as_ref(),
        guest("linux64").as_os_str(),
        "--initrd".as_ref(),
        big.as_os_str(),
    ]);
    assert_eq!(out.status, Some(242), "{out:?}");
    assert!(
        out.stderr.contains("initrd of 73400320 bytes does not fit"),
        "{out:?}"
    );
    // Multiboot kernels take modules, not an initrd.
    let out = run_ukvm([
        "--kernel".as_ref(),
        guest("hello").as_os_str(),
        "--initrd".as_ref(),
        big.as_os_str(),
    ]);
    assert_eq!(out.status, Some(242), "{out:?}");
    assert!(out.stderr.contains("--module"), "{out:?}");
}

// ---- The Debian kernel --------------------------------------------------

fn fixture_dir() -> PathBuf {
    std::env::var_os("UKVM_LINUX_FIXTURE")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/fixtures/linux"))
}

/// The Debian bzImage, or None (with a message) when it was not fetched.
fn debian_bzimage() -> Option<Vec<u8>> {
    let boot = fixture_dir().join("boot");
    let found = std::fs::read_dir(&boot).ok().and_then(|entries| {
        entries.filter_map(|e| e.ok().map(|e| e.path())).find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("vmlinuz-"))
        })
    });
    match found {
        Some(path) => Some(std::fs::read(path).unwrap()),
        None => {
            eprintln!(
                "skipping: no Debian kernel in {} (run tests/fixtures/fetch-linux.sh)",
                boot.display()
            );
            None
        }
    }
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

fn le16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes(b[at..at + 2].try_into().unwrap())
}

fn le64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

fn setup_size(bz: &[u8]) -> usize {
    (usize::from(bz[0x1f1]).max(4) + 1) * 512
}

/// The ELF vmlinux inside a bzImage: the compressed payload named by the
/// setup header's payload_offset/payload_length, decompressed by `lz4`
/// (its last 4 bytes are the decompressed size, not LZ4 data).
fn extract_vmlinux(bz: &[u8]) -> Vec<u8> {
    let start = setup_size(bz) + le32(bz, 0x248) as usize;
    let payload = &bz[start..start + le32(bz, 0x24c) as usize];
    assert_eq!(
        &payload[..4],
        &[0x02, 0x21, 0x4c, 0x18],
        "payload is not LZ4 (legacy frame); this test knows only Debian's LZ4 kernels"
    );
    let mut child = Command::new("lz4")
        .arg("-dc")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("lz4 not installed (apt-get install lz4)");
    let mut stdin = child.stdin.take().unwrap();
    let data = payload[..payload.len() - 4].to_vec();
    let writer = std::thread::spawn(move || std::io::Write::write_all(&mut stdin, &data));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    assert!(out.status.success(), "lz4 failed");
    assert_eq!(&out.stdout[..4], b"\x7fELF");
    out.stdout
}

fn build(image: Vec<u8>, mem_mib: u64, initrd: Option<&Path>) -> ukvm::Result<Vm> {
    let mut cfg = VmConfig::new()
        .kernel_bytes("debian", image)
        .mem_mib(mem_mib)
        .cmdline("console=ttyS0 ukvm-loader-test");
    if let Some(path) = initrd {
        cfg = cfg.initrd(path);
    }
    cfg.build()
}

fn read(vm: &Vm, addr: u64, len: usize) -> Vec<u8> {
    let mut buf = vec![0u8; len];
    vm.read_memory(addr, &mut buf).unwrap();
    buf
}

fn cstr_at(vm: &Vm, addr: u64) -> String {
    let bytes = read(vm, addr, 256);
    let end = bytes.iter().position(|b| *b == 0).unwrap();
    String::from_utf8(bytes[..end].to_vec()).unwrap()
}

const MEM_MIB: u64 = 512;
const MEM: u64 = MEM_MIB << 20;
const ZERO_PAGE: u64 = 0x7000;

#[test]
fn debian_bzimage_loads_with_a_correct_zero_page() {
    let Some(bz) = debian_bzimage() else { return };
    if !kvm_available() {
        return;
    }
    let dir = TempDir::new("debian-bz");
    let initrd = initrd_file(&dir);
    let vm = build(bz.clone(), MEM_MIB, Some(&initrd)).unwrap();
    let boot = vm.boot();
    let pref = le64(&bz, 0x258);
    assert_eq!(boot.format, BootFormat::BzImage);
    // Debian's kernel is 64-bit capable (XLF_KERNEL_64): entry at +0x200.
    assert_ne!(le16(&bz, 0x236) & 1, 0);
    assert_eq!((boot.mode, boot.entry), (Mode::Long64, pref + 0x200));
    assert_eq!(boot.regs.rsi, ZERO_PAGE);
    // The protected-mode kernel is at pref_address, byte for byte.
    let setup = setup_size(&bz);
    assert_eq!(read(&vm, pref, 4096), bz[setup..setup + 4096]);
    let zp = read(&vm, ZERO_PAGE, 4096);
    // The setup header is the file's, with the loader's fields filled in.
    assert_eq!(le16(&zp, 0x206), le16(&bz, 0x206), "version");
    assert_eq!(zp[0x210], 0xff, "type_of_loader");
    assert_eq!(le32(&zp, 0x214), pref as u32, "code32_start");
    assert_eq!(le32(&zp, 0x228), 0x8000, "cmd_line_ptr");
    assert_eq!(cstr_at(&vm, 0x8000), "console=ttyS0 ukvm-loader-test");
    let rd = u64::from(le32(&zp, 0x218));
    assert_eq!(
        rd,
        (MEM - INITRD_LEN as u64) & !0xfff,
        "ramdisk_image: top of RAM"
    );
    assert!(rd < u64::from(le32(&bz, 0x22c)), "below initrd_addr_max");
    assert_eq!(le32(&zp, 0x21c) as usize, INITRD_LEN, "ramdisk_size");
    assert_eq!(read(&vm, rd, 11), b"UKVM-INITRD");
    // E820: the Multiboot memory map's five ranges (SeaBIOS's).
    assert_eq!(zp[0x1e8], 5);
    let entry = |i: usize| {
        let at = 0x2d0 + 20 * i;
        (le64(&zp, at), le64(&zp, at + 8), le32(&zp, at + 16))
    };
    assert_eq!(entry(0), (0, 0x9fc00, 1));
    assert_eq!(entry(1), (0x9fc00, 0x400, 2));
    assert_eq!(entry(2), (0xf_0000, 0x1_0000, 2));
    assert_eq!(entry(3), (0x10_0000, MEM - 0x10_0000, 1));
    assert_eq!(entry(4), (0xfffc_0000, 0x4_0000, 2));
    // acpi_rsdp_addr (boot_params offset 0x70) points at ukvm's RSDP.
    assert_eq!(le64(&zp, 0x70), 0xe_0000, "acpi_rsdp_addr");
    assert_eq!(read(&vm, 0xe_0000, 8), b"RSD PTR ");
    // The kernel's decompression room (init_size) is inside RAM and
    // reported as the image's extent.
    assert_eq!(boot.kernel_end, pref + u64::from(le32(&bz, 0x260)));
}

#[test]
fn debian_vmlinux_boots_as_pvh_and_without_the_note_as_linux64() {
    let Some(bz) = debian_bzimage() else { return };
    if !kvm_available() {
        return;
    }
    let vmlinux = extract_vmlinux(&bz);
    let dir = TempDir::new("debian-elf");
    let initrd = initrd_file(&dir);
    let vm = build(vmlinux.clone(), MEM_MIB, Some(&initrd)).unwrap();
    let boot = vm.boot().clone();
    // CONFIG_PVH=y: the vmlinux carries XEN_ELFNOTE_PHYS32_ENTRY.
    assert_eq!(
        (boot.format, boot.mode),
        (BootFormat::Pvh, Mode::Protected32)
    );
    assert!(
        boot.entry > 0x100_0000 && boot.entry < boot.kernel_end,
        "{boot:?}"
    );
    assert_eq!(boot.regs.rbx, 0x6000);
    let si = read(&vm, 0x6000, 56);
    assert_eq!(le32(&si, 0), 0x336e_c578, "magic");
    assert_eq!(le32(&si, 4), 1, "version");
    assert_eq!(le32(&si, 12), 1, "nr_modules");
    assert_eq!(
        cstr_at(&vm, le64(&si, 24)),
        "console=ttyS0 ukvm-loader-test"
    );
    assert_eq!(le32(&si, 48), 5, "memmap_entries");
    assert_eq!(le64(&si, 32), 0xe_0000, "rsdp_paddr");
    assert_eq!(read(&vm, 0xe_0000, 8), b"RSD PTR ");
    let map = read(&vm, le64(&si, 40), 5 * 24);
    assert_eq!(
        (le64(&map, 72), le64(&map, 80), le32(&map, 88)),
        (0x10_0000, MEM - 0x10_0000, 1)
    );
    let module = read(&vm, le64(&si, 16), 32);
    let rd = le64(&module, 0);
    assert_eq!(
        (rd, le64(&module, 8)),
        ((MEM - INITRD_LEN as u64) & !0xfff, INITRD_LEN as u64)
    );
    assert_eq!(read(&vm, rd, 11), b"UKVM-INITRD");
    // First PT_LOAD: its file bytes are at its physical address.
    let ph = le64(&vmlinux, 32) as usize;
    let (off, paddr) = (le64(&vmlinux, ph + 8) as usize, le64(&vmlinux, ph + 24));
    assert_eq!(read(&vm, paddr, 4096), vmlinux[off..off + 4096]);
    drop(vm);

    // Without the note (PT_NOTE turned into PT_NULL) it is a plain vmlinux:
    // 64-bit boot protocol at e_entry.
    let mut plain = vmlinux;
    let phnum = le16(&plain, 56) as usize;
    for i in 0..phnum {
        let at = ph + 56 * i;
        if le32(&plain, at) == 4 {
            plain[at..at + 4].copy_from_slice(&0u32.to_le_bytes());
        }
    }
    let entry = le64(&plain, 24);
    let vm = build(plain, MEM_MIB, None).unwrap();
    assert_eq!(vm.boot().format, BootFormat::LinuxElf);
    assert_eq!((vm.boot().mode, vm.boot().entry), (Mode::Long64, entry));
    let zp = read(&vm, ZERO_PAGE, 4096);
    assert_eq!(le16(&zp, 0x1fe), 0xaa55);
    assert_eq!(le32(&zp, 0x202), 0x5372_6448);
    assert_eq!(le32(&zp, 0x228), 0x8000);
    assert_eq!((le32(&zp, 0x218), le32(&zp, 0x21c)), (0, 0), "no initrd");
    assert_eq!(zp[0x1e8], 5, "e820 entries");
    assert_eq!(le64(&zp, 0x70), 0xe_0000, "acpi_rsdp_addr");
}

#[test]
fn only_linux_style_kernels_get_acpi_tables() {
    if !kvm_available() {
        return;
    }
    let vm = VmConfig::new()
        .kernel_path(guest("hello"))
        .mem_mib(16)
        .build()
        .unwrap();
    assert_eq!(read(&vm, 0xe_0000, 64), [0u8; 64], "Multiboot: no ACPI");
    let vm = VmConfig::new()
        .kernel_path(guest("linux64"))
        .mem_mib(16)
        .build()
        .unwrap();
    let rsdp = read(&vm, 0xe_0000, 36);
    assert_eq!(&rsdp[..8], b"RSD PTR ");
    assert_eq!(rsdp.iter().fold(0u8, |a, b| a.wrapping_add(*b)), 0);
    // The MADT, through the XSDT: the IOAPIC is there.
    let xsdt = read(&vm, le64(&rsdp, 24), 52);
    let madt_at = le64(&xsdt, 44);
    let madt = read(&vm, madt_at, 44);
    assert_eq!(&madt[..4], b"APIC");
    let madt = read(&vm, madt_at, le32(&madt, 4) as usize);
    // The IOAPIC entry (type 1, length 12) at 0xFEC00000.
    assert!(madt[44..]
        .windows(12)
        .any(|w| w[0] == 1 && w[1] == 12 && le32(w, 4) == 0xfec0_0000));
}

fn load_error(image: Vec<u8>) -> String {
    match build(image, MEM_MIB, None) {
        Ok(_) => panic!("a damaged kernel was accepted"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn damaged_debian_kernels_are_refused_with_specific_errors() {
    let Some(bz) = debian_bzimage() else { return };
    if !kvm_available() {
        return;
    }
    let half = bz[..bz.len() / 2].to_vec();
    let e = load_error(half);
    assert!(
        e.contains("payload_length run past the end of the file") || e.contains("syssize"),
        "{e}"
    );
    assert!(e.contains("truncated"), "{e}");
    let mut old = bz.clone();
    old[0x206..0x208].copy_from_slice(&0x0201u16.to_le_bytes());
    assert!(load_error(old).contains("version = 0x201"));
    let mut zimage = bz.clone();
    zimage[0x211] &= !1;
    assert!(load_error(zimage).contains("LOADED_HIGH"));
    let mut sects = bz.clone();
    sects[0x1fe] = 0;
    assert!(load_error(sects).contains("boot_flag"));

    let vmlinux = extract_vmlinux(&bz);
    let e = load_error(vmlinux[..vmlinux.len() / 2].to_vec());
    assert!(
        e.contains("past the end of the file") && e.contains("truncated"),
        "{e}"
    );
    let mut bad_ph = vmlinux.clone();
    bad_ph[54..56].copy_from_slice(&20u16.to_le_bytes());
    assert!(load_error(bad_ph).contains("e_phentsize"));
    let mut not_x86 = vmlinux;
    not_x86[18..20].copy_from_slice(&183u16.to_le_bytes()); // EM_AARCH64
    assert!(load_error(not_x86).contains("only x86-64"));
}
