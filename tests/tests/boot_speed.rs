//! The boot-path shortcuts keep behaviour unchanged: the cached CPUID table
//! gives the guest what the ioctl gives, and exiting without waiting for
//! the VM's teardown keeps the exit status and every byte of output.
//! (Their speed is measured by benches/, never asserted here.)

use std::process::Command;
use ukvm_tests::{guest, kvm_available, ukvm_bin, TempDir};

/// Boots the entry-state guest with the CPUID cache in `runtime_dir` (or
/// disabled) and returns its CPUID check lines.
fn cpuid_checks(runtime_dir: &TempDir, cache: bool) -> Vec<String> {
    let mut cmd = Command::new(ukvm_bin());
    cmd.env("XDG_RUNTIME_DIR", runtime_dir.join(""))
        .arg("--kernel")
        .arg(guest("entry"))
        .args(["--cmdline", "check"]);
    if !cache {
        cmd.env("UKVM_NO_CPUID_CACHE", "1");
    }
    let out = cmd.output().expect("run ukvm");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    let checks: Vec<String> = stdout
        .lines()
        .filter(|l| l.contains("cpuid"))
        .map(String::from)
        .collect();
    assert!(checks.len() >= 4, "{stdout}");
    assert!(checks.iter().all(|l| l.starts_with("PASS")), "{stdout}");
    checks
}

fn cache_files(runtime_dir: &TempDir) -> Vec<std::fs::Metadata> {
    std::fs::read_dir(runtime_dir.join("ukvm"))
        .map(|d| d.flatten().filter_map(|e| e.metadata().ok()).collect())
        .unwrap_or_default()
}

#[test]
fn cpuid_cache_is_written_once_and_gives_the_same_guest_view() {
    if !kvm_available() {
        return;
    }
    let dir = TempDir::new("cpuid-cache");
    let fresh = cpuid_checks(&dir, false);
    assert!(
        cache_files(&dir).is_empty(),
        "UKVM_NO_CPUID_CACHE=1 wrote a cache"
    );
    let filling = cpuid_checks(&dir, true);
    let files = cache_files(&dir);
    assert_eq!(files.len(), 1, "one cache file");
    // kvm_cpuid_entry2 is 40 bytes.
    let len = files[0].len();
    assert!(len > 0 && len / 40 * 40 == len, "cache file of {len} bytes");
    let cached = cpuid_checks(&dir, true);
    assert_eq!(fresh, filling);
    assert_eq!(fresh, cached);
}

#[test]
fn a_corrupt_cache_is_ignored() {
    if !kvm_available() {
        return;
    }
    let dir = TempDir::new("cpuid-corrupt");
    cpuid_checks(&dir, true);
    let cache = std::fs::read_dir(dir.join("ukvm"))
        .expect("cache dir")
        .flatten()
        .next()
        .expect("cache file")
        .path();
    std::fs::write(&cache, b"not a cpuid table").expect("overwrite");
    cpuid_checks(&dir, true);
}

#[test]
fn output_and_status_survive_the_detached_exit() {
    if !kvm_available() {
        return;
    }
    // Read to EOF, as a pipe reader does: the teardown helper must not
    // hold our end open, and nothing buffered may be lost.
    let out = Command::new(ukvm_bin())
        .arg("--kernel")
        .arg(guest("hello"))
        .args(["--cmdline", "exit=9"])
        .output()
        .expect("run ukvm");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(9), "{stdout}");
    assert!(stdout.starts_with("ukvm hello unikernel\n"), "{stdout}");
    assert!(stdout.ends_with("exiting with 9\n"), "{stdout}");
}
