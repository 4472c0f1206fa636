//! virtio-blk end to end: the `blk` test unikernel finds the disks on the
//! PCI bus like Solo5 does, drives the legacy virtio interface, and reads
//! ISO images made here with genisoimage (or xorriso). Every ISO is checked
//! bit for bit after the run.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;
use ukvm_tests::{guest, kvm_available, run_ukvm, Outcome, TempDir};

/// Makes an ISO 9660 image labelled `label` holding one small file.
fn make_iso(dir: &TempDir, name: &str, label: &str) -> PathBuf {
    let content = dir.join(&format!("{name}-content"));
    std::fs::create_dir_all(&content).unwrap();
    std::fs::write(content.join("readme.txt"), format!("disk {label}\n")).unwrap();
    let iso = dir.join(&format!("{name}.iso"));
    let tools: [(&str, &[&str]); 2] = [("genisoimage", &[]), ("xorriso", &["-as", "mkisofs"])];
    for (tool, pre) in tools {
        let status = Command::new(tool)
            .args(pre)
            .args(["-quiet", "-V", label, "-o"])
            .arg(&iso)
            .arg(&content)
            .status();
        if matches!(status, Ok(s) if s.success()) {
            return iso;
        }
    }
    panic!(
        "cannot make an ISO image: install genisoimage (apt-get install genisoimage) or xorriso"
    );
}

fn run_blk(mode: &str, disks: &[String]) -> Outcome {
    let mut args: Vec<OsString> = vec![
        "--kernel".into(),
        guest("blk").into(),
        "--cmdline".into(),
        format!("mode={mode}").into(),
    ];
    for d in disks {
        args.push("--disk".into());
        args.push(d.into());
    }
    run_ukvm(args)
}

fn spec(path: &Path, opt: &str) -> String {
    format!("{}{opt}", path.display())
}

#[test]
fn iso_label_is_read_and_writes_are_refused() {
    if !kvm_available() {
        return;
    }
    let dir = TempDir::new("blk-iso");
    let iso = make_iso(&dir, "etc", "UKVM_ETC");
    let before = std::fs::read(&iso).unwrap();
    let out = run_blk("iso", &[spec(&iso, "")]);
    assert_eq!(out.status, Some(0), "{out:?}");
    let lines = out.lines();
    assert!(
        lines[0].starts_with("blk0: slot 1 io 0x6000 irq 10 "),
        "{lines:?}"
    );
    assert!(lines[0].ends_with(" ro 1"), "{lines:?}");
    assert!(
        lines.contains(&"blk0: pvd type 1 id CD001 label UKVM_ETC"),
        "{lines:?}"
    );
    assert!(
        lines.iter().any(|l| l.starts_with("blk0: id ukvm-")),
        "{lines:?}"
    );
    assert!(
        lines.contains(&"blk0: write refused, status 1"),
        "{lines:?}"
    );
    assert_eq!(std::fs::read(&iso).unwrap(), before, "ISO changed");
}

#[test]
fn two_disks_appear_in_command_line_order() {
    if !kvm_available() {
        return;
    }
    let dir = TempDir::new("blk-two");
    let one = make_iso(&dir, "one", "DISK_ONE");
    let two = make_iso(&dir, "two", "DISK_TWO");
    let (b1, b2) = (std::fs::read(&one).unwrap(), std::fs::read(&two).unwrap());
    for (first, second) in [(&one, &two), (&two, &one)] {
        let out = run_blk("iso", &[spec(first, ""), spec(second, "")]);
        assert_eq!(out.status, Some(0), "{out:?}");
        let labels: Vec<&str> = out
            .lines()
            .into_iter()
            .filter_map(|l| l.split(" label ").nth(1))
            .collect();
        let name = |p: &PathBuf| if *p == one { "DISK_ONE" } else { "DISK_TWO" };
        assert_eq!(labels, vec![name(first), name(second)], "{out:?}");
        assert!(
            out.stdout.contains("blk1: slot 2 io 0x6100 irq 11 "),
            "{out:?}"
        );
    }
    assert_eq!(std::fs::read(&one).unwrap(), b1);
    assert_eq!(std::fs::read(&two).unwrap(), b2);
}

/// The pattern the guest writes at sector 8.
fn pattern() -> Vec<u8> {
    let mut p: Vec<u8> = (0..4096u32).map(|k| (k * 7 + 3) as u8).collect();
    p[..8].copy_from_slice(b"UKVMBLK!");
    p
}

#[test]
fn raw_image_is_written_flushed_and_bounded() {
    if !kvm_available() {
        return;
    }
    let dir = TempDir::new("blk-rw");
    let img = dir.join("data.img");
    std::fs::write(&img, vec![0u8; 1 << 20]).unwrap();
    let out = run_blk("rw", &[spec(&img, "")]);
    assert_eq!(out.status, Some(0), "{out:?}");
    let lines = out.lines();
    assert!(lines[0].contains("capacity 2048 ro 0"), "{lines:?}");
    assert!(lines.contains(&"blk0: wrote 4096 bytes at sector 8, flushed, read back ok"));
    assert!(lines.contains(&"blk0: read past end refused, status 1"));
    let data = std::fs::read(&img).unwrap();
    assert_eq!(data.len(), 1 << 20, "image size unchanged");
    assert_eq!(&data[4096..8192], &pattern()[..]);
    assert!(data[..4096].iter().chain(&data[8192..]).all(|&b| b == 0));
}

#[test]
fn ro_and_rw_options_override_the_file_type() {
    if !kvm_available() {
        return;
    }
    let dir = TempDir::new("blk-opts");
    let img = dir.join("data.img");
    std::fs::write(&img, vec![0u8; 64 * 1024]).unwrap();
    let out = run_blk("rw", &[spec(&img, ",ro")]);
    assert_eq!(out.status, Some(1), "{out:?}");
    assert!(out.stdout.contains("ro 1"), "{out:?}");
    assert!(out.stdout.contains("blk: FAIL write"), "{out:?}");
    assert!(std::fs::read(&img).unwrap().iter().all(|&b| b == 0));

    // An ISO opened read-write on request (a copy: the guest writes it).
    let iso = make_iso(&dir, "rw", "RW_ISO");
    let out = run_blk("rw", &[spec(&iso, ",rw")]);
    assert_eq!(out.status, Some(0), "{out:?}");
    assert!(out.stdout.contains("ro 0"), "{out:?}");
    assert_eq!(&std::fs::read(&iso).unwrap()[4096..8192], &pattern()[..]);
}

#[test]
fn completion_interrupt_reaches_the_guest_pic() {
    if !kvm_available() {
        return;
    }
    let dir = TempDir::new("blk-irq");
    let img = dir.join("data.img");
    std::fs::write(&img, vec![0u8; 4096]).unwrap();
    let out = run_blk("irq", &[spec(&img, "")]);
    assert_eq!(out.status, Some(0), "{out:?}");
    assert!(
        out.stdout
            .contains("blk0: read completed by interrupt on irq 10 (used len 513)"),
        "{out:?}"
    );
}

/// Runs ukvm with `disks` and expects a one-line error before any guest
/// output.
fn expect_error(disks: &[String], status: i32, needle: &str) {
    let out = run_blk("iso", disks);
    assert_eq!(out.status, Some(status), "{out:?}");
    assert!(out.stdout.is_empty(), "the guest must not run: {out:?}");
    let err = out.stderr.trim_end();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains(needle), "{err}");
}

#[test]
fn bad_disks_fail_before_the_vm_starts() {
    let dir = TempDir::new("blk-errors");
    let missing = dir.join("missing.iso");
    expect_error(&[spec(&missing, "")], 245, "No such file or directory");
    expect_error(&[spec(&dir.join(""), ",ro")], 245, "not a regular file");
    let odd = dir.join("odd.img");
    std::fs::write(&odd, [0u8; 1000]).unwrap();
    expect_error(
        &[spec(&odd, "")],
        245,
        "size 1000 bytes is not a multiple of 512",
    );
    expect_error(&[spec(&odd, ",rx")], 240, "unknown option 'rx'");
    let img = dir.join("ok.img");
    std::fs::write(&img, [0u8; 512]).unwrap();
    let many: Vec<String> = (0..32).map(|_| spec(&img, "")).collect();
    expect_error(&many, 240, "too many devices: 32 disks");
    // Unreadable files: root reads everything, so only for other users.
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&img, std::fs::Permissions::from_mode(0o200)).unwrap();
        expect_error(&[spec(&img, ",ro")], 245, "Permission denied");
    }
}

#[test]
fn modern_interface_negotiates_version_1_and_reads() {
    if !kvm_available() {
        return;
    }
    let dir = TempDir::new("blk-modern");
    let iso = make_iso(&dir, "modern", "MODERN_ISO");
    let before = std::fs::read(&iso).unwrap();
    // The guest first sets the device up through the legacy registers, then
    // resets it and starts again through the memory BAR.
    let out = run_blk("modern", &[spec(&iso, "")]);
    assert_eq!(out.status, Some(0), "{out:?}");
    let lines = out.lines();
    // Capacity depends on the ISO tool; RO | BLK_SIZE | FLUSH does not.
    let setup = lines.iter().find(|l| l.starts_with("modern: max queue"));
    let setup = setup.unwrap_or_else(|| panic!("{lines:?}"));
    assert!(
        setup.starts_with("modern: max queue 256, using 16, capacity "),
        "{setup}"
    );
    assert!(setup.ends_with(", features 0x260"), "{setup}");
    assert!(
        lines.contains(&"modern: pvd id CD001 label MODERN_ISO"),
        "{lines:?}"
    );
    assert_eq!(std::fs::read(&iso).unwrap(), before);
}
