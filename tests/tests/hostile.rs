//! A compromised guest: the `blk` guest in `mode=hostile` hands the disks
//! chains into the MMIO hole, past RAM, across its end, over its own
//! descriptor table, looping chains, a 4 GiB length, a write to the
//! read-only disk, a flood of notifications, BARs moved over RAM and over
//! each other; after each it checks that a good read still works. ukvm must
//! stay up, leave the host's files alone (the read-only ISO bit for bit,
//! the read-write image changed only where the guest wrote) and count the
//! refusals in `--timings`.

use std::process::Command;
use ukvm_tests::{guest, kvm_available, run_ukvm, TempDir};

#[test]
fn hostile_driver_is_refused_and_ukvm_keeps_serving() {
    if !kvm_available() {
        return;
    }
    let dir = TempDir::new("hostile");
    let rw = dir.join("rw.img");
    std::fs::write(&rw, vec![0u8; 64 * 512]).unwrap();
    let content = dir.join("content");
    std::fs::create_dir(&content).unwrap();
    std::fs::write(content.join("f"), "read-only\n").unwrap();
    let iso = dir.join("ro.iso");
    let made = Command::new("genisoimage")
        .args(["-quiet", "-V", "RO", "-o"])
        .arg(&iso)
        .arg(&content)
        .status()
        .expect("genisoimage (apt-get install genisoimage)");
    assert!(made.success());
    let iso_before = std::fs::read(&iso).unwrap();
    let timings = dir.join("timings.json");
    let out = run_ukvm([
        "--kernel".as_ref(),
        guest("blk").as_os_str(),
        "--cmdline".as_ref(),
        "mode=hostile".as_ref(),
        "--disk".as_ref(),
        rw.as_os_str(),
        "--disk".as_ref(),
        iso.as_os_str(),
        "--seccomp".as_ref(),
        "on".as_ref(),
        "--timings".as_ref(),
        timings.as_os_str(),
    ]);
    assert_eq!(out.status, Some(0), "{out:?}");
    let lines = out.lines();
    for refused in [
        "hostile: read into the MMIO hole: status 1",
        "hostile: read past RAM: status 1",
        "hostile: read across the end of RAM: status 1",
        "hostile: write from the last byte of RAM: status 1",
        "hostile: write to the read-only disk: status 1",
        "hostile: still serving",
    ] {
        assert!(lines.contains(&refused), "no {refused:?} in {lines:?}");
    }
    // Malformed chains come back without a status (or not at all), never
    // as a success.
    for what in ["4 GiB length", "looping chain", "chain looping on itself"] {
        let line = lines
            .iter()
            .find(|l| l.starts_with(&format!("hostile: {what}:")))
            .unwrap_or_else(|| panic!("no {what} line in {lines:?}"));
        assert!(!line.ends_with("status 0"), "{line}");
    }
    assert_eq!(
        std::fs::read(&iso).unwrap(),
        iso_before,
        "the read-only ISO changed"
    );
    let image = std::fs::read(&rw).unwrap();
    let pattern: Vec<u8> = (0..512u32).map(|k| (k * 13 + 5) as u8).collect();
    assert_eq!(
        &image[..512],
        &pattern[..],
        "sector 0 is what the guest wrote"
    );
    assert!(
        image[512..].iter().all(|&b| b == 0),
        "a sector the guest never wrote changed"
    );
    let json = std::fs::read_to_string(&timings).unwrap();
    let refused: u64 = json
        .split("\"refused\":")
        .nth(1)
        .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no refused counter in {json}"));
    assert!(refused >= 8, "refused {refused}: {json}");
    let mut left: Vec<_> = std::fs::read_dir(rw.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    left.sort();
    assert_eq!(
        left,
        ["content", "ro.iso", "rw.img", "timings.json"],
        "files left"
    );
}
