//! Solo5 v0.12.1's own conformance tests, from `<repo>/../shared/solo5`
//! (CI lays a copy of `shared/` beside the clone; see its README.txt for
//! how upstream runs each test): where the images are, the real
//! `solo5-hvt` tender, ukvm under the `solo5-hvt` name, and the outcomes
//! upstream's `tests.bats` checks.
//!
//! A missing directory or image fails the test with a message saying so.

use crate::{Outcome, TempDir};
use std::path::PathBuf;

/// Path of `name` in `<repo root>/../shared/solo5` (e.g.
/// `"test_hello.hvt"`), checked to exist.
pub fn image(name: &str) -> PathBuf {
    crate::shared_image("solo5", name)
}

/// The real `solo5-hvt` tender (the peer in benchmarks).
pub fn tender() -> PathBuf {
    image("solo5-hvt")
}

/// A path to the ukvm binary named `solo5-hvt` (a symlink in the build's
/// target directory, made once), so that ukvm takes solo5-hvt's command
/// line as the real tender does.
pub fn ukvm_as_solo5_hvt() -> PathBuf {
    let ukvm = crate::ukvm_bin();
    let dir = ukvm.parent().expect("target dir").join("solo5-hvt-name");
    let link = dir.join("solo5-hvt");
    if std::fs::read_link(&link).ok().as_deref() != Some(ukvm.as_path()) {
        std::fs::create_dir_all(&dir).expect("create the symlink's directory");
        // Made under a unique name and renamed: test binaries running in
        // parallel may race here.
        let tmp = dir.join(format!("solo5-hvt.{}", std::process::id()));
        let _ = std::fs::remove_file(&tmp);
        std::os::unix::fs::symlink(&ukvm, &tmp).expect("symlink solo5-hvt -> ukvm");
        std::fs::rename(&tmp, &link).expect("rename the solo5-hvt symlink");
    }
    link
}

/// A file of `len` zero bytes in `dir` (a Solo5 block device image).
pub fn zero_file(dir: &TempDir, name: &str, len: u64) -> PathBuf {
    let path = dir.join(name);
    let f = std::fs::File::create(&path).expect("create block image");
    f.set_len(len).expect("size block image");
    path
}

/// Upstream's `expect_success` for hvt: exit status 0 and "SUCCESS".
pub fn assert_success(out: &Outcome) {
    assert_eq!(out.status, Some(0), "{out:#?}");
    assert!(out.stdout.contains("SUCCESS"), "{out:#?}");
}

/// Upstream's `expect_abort` for hvt: exit status 255 and "ABORT".
pub fn assert_abort(out: &Outcome) {
    assert_eq!(out.status, Some(255), "{out:#?}");
    assert!(out.stdout.contains("ABORT"), "{out:#?}");
}

/// What QEMU's isa-debug-exit (and ukvm) make of the 41 that Solo5's
/// virtio bindings write to port 0x501 whatever the guest's status.
pub const VIRTIO_EXIT: i32 = (41 << 1) | 1;

/// Upstream's `virtio_expect_success`: the run ends through 0x501 and the
/// guest printed "SUCCESS" (the status cannot tell).
pub fn assert_virtio_success(out: &Outcome) {
    assert_eq!(out.status, Some(VIRTIO_EXIT), "{out:#?}");
    assert!(out.lines().contains(&"SUCCESS"), "{out:#?}");
    assert!(!out.stdout.contains("ABORT"), "{out:#?}");
}

/// Upstream's `virtio_expect_abort`, with the abort's reason: the run ends
/// through 0x501 and the guest printed "Solo5: ABORT: <why>".
pub fn assert_virtio_abort(out: &Outcome, why: &str) {
    assert_eq!(out.status, Some(VIRTIO_EXIT), "{out:#?}");
    let want = format!("Solo5: ABORT: {why}");
    assert!(out.stdout.contains(&want), "want {want:?}: {out:#?}");
    assert!(!out.lines().contains(&"SUCCESS"), "{out:#?}");
}

/// A copy of Solo5 image `name` in `dir` whose ping-count limit `from`
/// (the immediate of its `cmpq $from-1, counter(%rip)`) is `to` instead.
/// Upstream's network tests flood 100000 (test_net), 2 x 50000
/// (test_net_2if) or 10000 (test_net_ring) pings; at the few hundred
/// pings per second this host's emulated guest answers, that cannot finish
/// in upstream's 60 s, so the suite runs the same images with a smaller
/// count patched in. Panics unless the instruction is found.
pub fn with_ping_limit(dir: &TempDir, name: &str, from: u32, to: u32) -> PathBuf {
    let mut bytes = std::fs::read(image(name)).expect("read Solo5 image");
    // cmpq $imm32, disp32(%rip): 48 81 3d <disp32> <imm32>
    let imm = (from - 1).to_le_bytes();
    let mut patched = 0;
    for at in 0..bytes.len().saturating_sub(11) {
        if bytes[at..at + 3] == [0x48, 0x81, 0x3d] && bytes[at + 7..at + 11] == imm {
            bytes[at + 7..at + 11].copy_from_slice(&(to - 1).to_le_bytes());
            patched += 1;
        }
    }
    assert!(patched > 0, "{name}: no `cmpq ${:#x}` to patch", from - 1);
    let path = dir.join(name);
    std::fs::write(&path, bytes).expect("write patched image");
    path
}
