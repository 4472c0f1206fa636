//! Boots our Multiboot test unikernels through the `ukvm` CLI and checks
//! what they printed and how they exited.

use ukvm_tests::{guest, kvm_available, run_ukvm};

#[test]
fn hello_prints_banner_cmdline_and_memory_map_and_exits_with_code() {
    if !kvm_available() {
        return;
    }
    let hello = guest("hello");
    let out = run_ukvm([
        "--kernel".as_ref(),
        hello.as_os_str(),
        "--cmdline".as_ref(),
        "exit=7 hello".as_ref(),
    ]);
    assert_eq!(out.status, Some(7), "{out:?}");
    let lines = out.lines();
    assert_eq!(lines[0], "ukvm hello unikernel");
    // The kernel's file name first, as GRUB and QEMU pass it.
    let raw = format!("raw cmdline: {} exit=7 hello", hello.display());
    assert!(lines.contains(&raw.as_str()), "{lines:?}");
    assert!(lines.contains(&"cmdline: exit=7 hello"), "{lines:?}");
    assert!(lines.contains(&"boot loader: ukvm"));
    assert!(
        lines.contains(&"mem_lower=639K mem_upper=64512K"),
        "{lines:?}"
    );
    // SeaBIOS's map as QEMU's Multiboot loader hands it over.
    let mmap: Vec<&&str> = lines.iter().filter(|l| l.starts_with("mmap:")).collect();
    assert_eq!(
        mmap,
        [
            &"mmap: base=0x0 len=0x9fc00 type=1",
            &"mmap: base=0x9fc00 len=0x400 type=2",
            &"mmap: base=0xf0000 len=0x10000 type=2",
            &"mmap: base=0x100000 len=0x3f00000 type=1",
            &"mmap: base=0xfffc0000 len=0x40000 type=2",
        ],
        "{lines:?}"
    );
    assert!(lines.contains(&"modules: 0"));
    assert_eq!(lines.last(), Some(&"exiting with 7"));
}

#[test]
fn even_and_zero_exit_codes_use_the_exact_exit_port() {
    if !kvm_available() {
        return;
    }
    for code in [0, 8, 200] {
        let out = run_ukvm([
            "--kernel".into(),
            guest("hello").into_os_string(),
            "--cmdline".into(),
            format!("exit={code}").into(),
        ]);
        assert_eq!(out.status, Some(code), "{out:?}");
        assert!(out.stdout.ends_with(&format!("exiting with {code}\n")));
    }
}

#[test]
fn memory_size_is_reported_to_the_guest() {
    if !kvm_available() {
        return;
    }
    let out = run_ukvm([
        "--kernel".into(),
        guest("hello").into_os_string(),
        "--mem".into(),
        "256".into(),
    ]);
    assert_eq!(out.status, Some(0), "{out:?}");
    assert!(
        out.lines().contains(&"mem_lower=639K mem_upper=261120K"),
        "{out:?}"
    );
    assert!(out
        .lines()
        .contains(&"mmap: base=0x100000 len=0xff00000 type=1"));
}

#[test]
fn entry_state_matches_the_multiboot_specification() {
    if !kvm_available() {
        return;
    }
    let out = run_ukvm([
        "--kernel".into(),
        guest("entry").into_os_string(),
        "--cmdline".into(),
        "console=com1 check".into(),
        "--mem".into(),
        "96".into(),
    ]);
    let lines = out.lines();
    let checks: Vec<&&str> = lines
        .iter()
        .filter(|l| l.starts_with("PASS") || l.starts_with("FAIL"))
        .collect();
    assert!(checks.len() >= 20, "too few checks: {lines:?}");
    assert!(checks.iter().all(|l| l.starts_with("PASS")), "{lines:?}");
    assert!(lines.contains(&"cmdline: console=com1 check"));
    assert_eq!(out.status, Some(0), "{out:?}");
}

#[test]
fn modules_are_passed_with_their_strings() {
    if !kvm_available() {
        return;
    }
    let dir = ukvm_tests::TempDir::new("module");
    let module = dir.join("initrd.img");
    std::fs::write(&module, vec![0xabu8; 5000]).unwrap();
    let out = run_ukvm([
        "--kernel".into(),
        guest("hello").into_os_string(),
        "--module".into(),
        format!("{},root=ram0 ro", module.display()).into(),
    ]);
    assert_eq!(out.status, Some(0), "{out:?}");
    assert!(out.lines().contains(&"modules: 1"), "{out:?}");
    let line = out
        .lines()
        .into_iter()
        .find(|l| l.starts_with("module: "))
        .expect("module line");
    assert!(line.ends_with("string=root=ram0 ro"), "{line}");
    // Page-aligned start, 5000 bytes long.
    let start = line
        .split("start=0x")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .unwrap();
    let end = line
        .split("end=0x")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .unwrap();
    let (start, end) = (
        u64::from_str_radix(start, 16).unwrap(),
        u64::from_str_radix(end, 16).unwrap(),
    );
    assert_eq!(start % 4096, 0);
    assert_eq!(end - start, 5000);
}

#[test]
fn triple_fault_is_reported_with_rip() {
    if !kvm_available() {
        return;
    }
    let out = run_ukvm(["--kernel".into(), guest("fault").into_os_string()]);
    assert_eq!(out.status, Some(246), "{out:?}");
    assert!(out.stdout.contains("fault: about to triple fault"));
    assert!(out.stderr.contains("triple fault"), "{}", out.stderr);
    assert!(out.stderr.contains("at rip 0x"), "{}", out.stderr);
    assert_eq!(out.stderr.lines().count(), 1, "one line: {}", out.stderr);
}

#[test]
fn halt_with_interrupts_off_ends_the_run() {
    if !kvm_available() {
        return;
    }
    let out = run_ukvm([
        "--kernel".into(),
        guest("halt").into_os_string(),
        "--timings".into(),
    ]);
    assert_eq!(out.status, Some(0), "{out:?}");
    assert!(out.stdout.contains("halt: halting"));
    assert!(
        out.stderr.contains("\"outcome\":\"halt\""),
        "{}",
        out.stderr
    );
}

#[test]
fn demo_boots_without_any_file() {
    if !kvm_available() {
        return;
    }
    let out = run_ukvm(["demo"]);
    assert_eq!(out.status, Some(0), "{out:?}");
    assert_eq!(out.lines()[0], "ukvm hello unikernel");
}

#[test]
fn timings_are_one_json_object_with_phases_in_order() {
    if !kvm_available() {
        return;
    }
    let dir = ukvm_tests::TempDir::new("timings");
    let file = dir.join("t.json");
    let out = run_ukvm([
        "--kernel".into(),
        guest("hello").into_os_string(),
        "--cmdline".into(),
        "exit=3".into(),
        format!("--timings={}", file.display()).into(),
    ]);
    assert_eq!(out.status, Some(3), "{out:?}");
    let json = std::fs::read_to_string(&file).unwrap();
    let value = |key: &str| -> u64 {
        let rest = json
            .split(&format!("\"{key}\":"))
            .nth(1)
            .unwrap_or_else(|| panic!("{key} in {json}"));
        rest.split([',', '}'])
            .next()
            .unwrap()
            .parse()
            .unwrap_or_else(|_| panic!("{key} in {json}"))
    };
    let order = [
        "args_parsed",
        "vm_created",
        "memory_registered",
        "kernel_loaded",
        "vcpu_configured",
        "first_run",
        "first_serial_byte",
        "guest_ready",
        "guest_exit",
        "vm_torn_down",
    ];
    let times: Vec<u64> = order.iter().map(|k| value(k)).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{json}");
    assert_eq!(value("debug_exit"), 1, "{json}");
    assert!(value("serial") > 10, "{json}");
    assert!(json.contains("\"format\":\"multiboot-aout-kludge\""));
    assert!(json.contains("\"outcome\":\"exit\""));
}
