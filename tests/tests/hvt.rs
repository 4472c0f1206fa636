//! Solo5 hvt guests (tests/guests/hvt, written from Solo5's ABI headers)
//! booted through the CLI: recognition, the boot information, the
//! hypercalls over the virtio-blk file backend and the TAP backend, device
//! attachment by manifest name, and the images the loader must refuse.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use ukvm_tests::net::NetNs;
use ukvm_tests::{guest, is_root, kvm_available, run_ukvm, Outcome, TempDir};

fn run(args: &[&str]) -> Outcome {
    run_ukvm(args)
}

fn path(name: &str) -> String {
    guest(name).to_str().unwrap().to_string()
}

#[test]
fn hello_gets_boot_info_args_after_dashdash_and_its_exit_status() {
    if !kvm_available() {
        return;
    }
    let k = path("hvt-hello");
    let out = run(&["--kernel", &k, "--", "exit=7", "hello", "world"]);
    assert_eq!(out.status, Some(7), "{out:?}");
    assert_eq!(
        out.lines(),
        [
            "hvt hello",
            "cmdline: exit=7 hello world",
            "mem_size=0x4000000 kernel_end=0x103000 end_ok=1",
            "cpu_cycle_freq_nonzero=1",
            "stack_top_ok=1",
            "halting with 7",
        ]
    );
    assert_eq!(out.stderr, "");
}

#[test]
fn hello_with_cmdline_option_memory_size_and_timings() {
    if !kvm_available() {
        return;
    }
    let k = path("hvt-hello");
    let out = run(&[
        "--kernel",
        &k,
        "--mem",
        "32",
        "--cmdline",
        "exit=0",
        "--timings",
    ]);
    assert_eq!(out.status, Some(0), "{out:?}");
    assert!(out.lines().contains(&"cmdline: exit=0"));
    assert!(out.stdout.contains("mem_size=0x2000000 "), "{}", out.stdout);
    assert!(
        out.stderr.contains(r#""format":"solo5-hvt""#),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains(r#""irqchip":false"#), "{}", out.stderr);
}

#[test]
fn both_cmdline_forms_at_once_are_refused() {
    let k = path("hvt-hello");
    let out = run(&["--kernel", &k, "--cmdline", "a", "--", "b"]);
    assert_eq!(out.status, Some(240));
    assert_eq!(
        out.stderr,
        "ukvm: error: give the guest command line with --cmdline or after --, not both\n"
    );
}

#[test]
fn write_to_read_only_text_faults_in_the_guest() {
    if !kvm_available() {
        return;
    }
    let out = run(&["--kernel", &path("hvt-hello"), "--", "wrtext"]);
    assert_eq!(out.status, Some(246), "{out:?}");
    assert!(out.stdout.contains("writing to text\n"));
    assert!(!out.stdout.contains("text was writable"), "{}", out.stdout);
    assert!(out.stderr.contains("triple fault"), "{}", out.stderr);
}

#[test]
fn halt_with_a_cookie_ends_with_its_status() {
    if !kvm_available() {
        return;
    }
    let out = run(&["--kernel", &path("hvt-hello"), "--", "abort"]);
    assert_eq!(out.status, Some(255), "{out:?}");
}

fn line_value(out: &Outcome, key: &str) -> u64 {
    out.lines()
        .iter()
        .find_map(|l| l.strip_prefix(key))
        .unwrap_or_else(|| panic!("no {key} in {}", out.stdout))
        .parse()
        .unwrap()
}

#[test]
fn walltime_is_the_host_clock_and_poll_waits_its_timeout() {
    if !kvm_available() {
        return;
    }
    let started = Instant::now();
    let out = run(&["--kernel", &path("hvt-time"), "--", "ms=1000"]);
    let host_elapsed = started.elapsed();
    assert_eq!(out.status, Some(0), "{out:?}");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let guest_now = line_value(&out, "walltime_s=");
    assert!(
        now.abs_diff(guest_now) < 60,
        "guest {guest_now}, host {now}"
    );
    assert!(
        out.lines().contains(&"poll ret=0 ready=0"),
        "{}",
        out.stdout
    );
    // The guest measures the poll with walltime: 1 s within 10 %.
    let ms = line_value(&out, "poll_elapsed_ms=");
    assert!((900..=1100).contains(&ms), "poll took {ms} ms");
    assert!(host_elapsed >= Duration::from_millis(1000));
}

fn image(dir: &TempDir, name: &str) -> std::path::PathBuf {
    let p = dir.join(name);
    let mut data = vec![0u8; 16 * 512];
    data[..4].copy_from_slice(b"BOOT");
    std::fs::write(&p, data).unwrap();
    p
}

fn pattern() -> Vec<u8> {
    (0..4 * 512u32).map(|i| (i * 7 + 3) as u8).collect()
}

#[test]
fn block_writes_reach_a_raw_image_and_read_back() {
    if !kvm_available() {
        return;
    }
    let dir = TempDir::new("hvt-block");
    let img = image(&dir, "storage.img");
    let disk = format!("storage={}", img.display());
    let out = run(&["--kernel", &path("hvt-block"), "--disk", &disk]);
    assert_eq!(out.status, Some(0), "{out:?}");
    assert_eq!(
        out.lines(),
        [
            "storage handle=1 capacity=8192 block_size=512",
            "write ret=0",
            "read ret=0",
            "readback matches",
            "sector0 ret=0 first=BOOT",
            "past_end ret=2",
            "unaligned ret=2",
            "bad_handle ret=2",
        ]
    );
    let data = std::fs::read(&img).unwrap();
    assert_eq!(&data[512..2560], &pattern()[..], "sectors 1-4 on the host");
    assert_eq!(&data[..4], b"BOOT");
    assert!(data[2560..].iter().all(|&b| b == 0));
}

/// Hypercalls at the end of memory: a structure in the last 8 bytes and a
/// one-byte buffer in the last byte work; a 512-byte read into the last
/// byte ends the guest with the request named, and the image is untouched
/// beyond what the guest wrote before.
#[test]
fn hypercalls_at_the_last_byte_of_memory() {
    if !kvm_available() {
        return;
    }
    let dir = TempDir::new("hvt-hostile");
    let img = image(&dir, "storage.img");
    let disk = format!("storage={}", img.display());
    let out = run(&[
        "--kernel",
        &path("hvt-block"),
        "--disk",
        &disk,
        "--",
        "hostile",
    ]);
    assert_eq!(out.status, Some(246), "{out:?}");
    let lines = out.lines();
    for want in [
        "! <- puts of the last byte",
        "walltime in the last 8 bytes: set",
        "block read into the last byte:",
    ] {
        assert!(lines.contains(&want), "no {want:?} in {lines:?}");
    }
    assert!(!out.stdout.contains("FAIL"), "{out:?}");
    assert!(
        out.stderr.contains("bad guest request") && out.stderr.contains("block read"),
        "{}",
        out.stderr
    );
    let data = std::fs::read(&img).unwrap();
    assert_eq!(&data[512..2560], &pattern()[..]);
    assert!(data[2560..].iter().all(|&b| b == 0));
}

#[test]
fn block_writes_to_an_iso_are_refused() {
    if !kvm_available() {
        return;
    }
    let dir = TempDir::new("hvt-iso");
    let iso = image(&dir, "storage.iso");
    let before = std::fs::read(&iso).unwrap();
    // Bare --disk: the manifest declares exactly one block device.
    let out = run(&[
        "--kernel",
        &path("hvt-block"),
        "--disk",
        iso.to_str().unwrap(),
    ]);
    assert_eq!(out.status, Some(0), "{out:?}");
    let lines = out.lines();
    assert!(lines.contains(&"write ret=3"), "{lines:?}");
    assert!(lines.contains(&"sector0 ret=0 first=BOOT"), "{lines:?}");
    assert_eq!(std::fs::read(&iso).unwrap(), before, "the ISO changed");
}

#[test]
fn devices_must_match_the_manifest_by_name() {
    let dir = TempDir::new("hvt-attach");
    let img = image(&dir, "d.img");
    let img = img.to_str().unwrap();
    let block = path("hvt-block");
    let hello = path("hvt-hello");
    let cases: [(&[&str], &str); 4] = [
        (
            &["--kernel", &block],
            "the unikernel's manifest declares devices left unattached: BLOCK_BASIC device 'storage' (add --disk storage=FILE)",
        ),
        (
            &["--kernel", &block, "--disk", &format!("data={img}")],
            "declares no BLOCK_BASIC device 'data' (it declares: storage)",
        ),
        (
            &["--kernel", &hello, "--disk", img],
            "the unikernel's manifest declares no BLOCK_BASIC device",
        ),
        (
            &["--kernel", &block, "--disk", img, "--disk", &format!("storage={img}")],
            "device 'storage' is attached twice",
        ),
    ];
    for (args, msg) in cases {
        let out = run(args);
        assert_eq!(out.status, Some(240), "{args:?}: {out:?}");
        assert!(out.stderr.contains(msg), "{args:?}: {}", out.stderr);
        assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
    }
    let out = run(&["--kernel", &hello, "--net", "tap0"]);
    assert_eq!(out.status, Some(240), "{out:?}");
    assert!(out.stderr.contains("declares no NET_BASIC device"));
}

#[test]
fn malformed_images_are_refused_with_their_error() {
    let cases = [
        (
            "hvt-lowseg",
            "Solo5 hvt image: program header 0: segment at 0x80000 lies below 0x100000, the lowest address the hvt ABI allows",
        ),
        (
            "hvt-badabi",
            "Solo5 hvt image: Solo5 hvt ABI version 3 is not supported (ukvm implements versions 1 and 2)",
        ),
        (
            "hvt-bigmft",
            "Solo5 hvt image: .note.solo5.manifest note: descriptor is 6772 bytes; at most 6668 (64 entries) are allowed",
        ),
    ];
    for (name, msg) in cases {
        let k = path(name);
        let out = run(&["--kernel", &k]);
        assert_eq!(out.status, Some(242), "{name}: {out:?}");
        assert_eq!(out.stderr, format!("ukvm: error: {k}: {msg}\n"));
    }
    // A damaged copy of a good image: the manifest claims 65 entries.
    let dir = TempDir::new("hvt-bad");
    let mut img = std::fs::read(guest("hvt-hello")).unwrap();
    let mft = img
        .windows(8)
        .position(|w| w == [0x4d, 0x46, 0x54, 0x31, b'S', b'o', b'l', b'o'])
        .expect("MFT1 note")
        - 8;
    img[mft + 28..mft + 32].copy_from_slice(&65u32.to_le_bytes());
    let bad = dir.join("bad.hvt");
    std::fs::write(&bad, img).unwrap();
    let out = run(&["--kernel", bad.to_str().unwrap()]);
    assert_eq!(out.status, Some(242), "{out:?}");
    assert!(
        out.stderr
            .contains("manifest declares 65 entries; at most 64 are allowed"),
        "{}",
        out.stderr
    );
}

#[test]
fn net_answers_arp_and_ping_through_a_tap() {
    if !kvm_available() {
        return;
    }
    assert!(is_root(), "the network tests need root (namespaces, TAPs)");
    let ns = NetNs::new();
    let tap = ns.add_tap("10.0.0.1/24", 1500);
    let net = format!("service={tap}");
    let kernel = path("hvt-net");
    let mut g = ns.spawn_ukvm(&[
        "--kernel",
        &kernel,
        "--net",
        &net,
        "--",
        "ip=10.0.0.2",
        "pings=1000",
        "wait=60",
    ]);
    g.wait_for("ready", Duration::from_secs(30));
    assert_eq!(ns.ping("10.0.0.2", 5), 5, "stderr: {}", g.stderr());
    // The last reply's line may still be on its way through the pipe.
    let deadline = Instant::now() + Duration::from_secs(5);
    while g.stdout().matches("echo reply ret=0").count() < 5 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = g.stdout();
    assert!(out.contains("service handle=1 mtu=1500 mac=02:"), "{out}");
    assert!(out.contains("arp reply ret=0"), "{out}");
    assert!(out.matches("echo reply ret=0").count() >= 5, "{out}");
    assert_eq!(g.stderr(), "");
}
