//! Instructions KVM's emulator gives up on, completed by ukvm: the sse
//! test unikernel runs each covered instruction class right after a port
//! I/O exit and compares with results the build host computed natively.

use ukvm_tests::{guest, kvm_available, run_ukvm, Outcome, TempDir};

/// Boots the check guest `name` with `--timings`; asserts no FAIL line, at
/// least `min_pass` PASS lines, the guest's closing tally and exit 0.
/// Returns the run and the `"emulated"` part of the timings JSON.
fn run_checks(name: &str, min_pass: usize) -> (Outcome, String) {
    let dir = TempDir::new(name);
    let timings = dir.join("timings.json");
    let out = run_ukvm([
        "--kernel".into(),
        guest(name).into_os_string(),
        "--timings".into(),
        timings.clone().into_os_string(),
    ]);
    let lines = out.lines();
    let failed: Vec<&&str> = lines.iter().filter(|l| l.starts_with("FAIL")).collect();
    assert!(failed.is_empty(), "{failed:?}\n{}", out.stdout);
    let passed = lines.iter().filter(|l| l.starts_with("PASS")).count();
    assert!(
        passed >= min_pass,
        "only {passed} PASS lines:\n{}",
        out.stdout
    );
    assert_eq!(
        lines.last().copied(),
        Some(format!("{name}: {passed} of {passed} checks passed").as_str())
    );
    assert_eq!(out.status, Some(0), "{out:?}");
    let json = std::fs::read_to_string(&timings).unwrap();
    let emulated = json[json.find("\"emulated\":{").expect("emulated key")..].to_string();
    (out, emulated)
}

#[test]
fn sse_guest_passes_every_instruction_and_timings_count_them() {
    if !kvm_available() {
        return;
    }
    let (out, emulated) = run_checks("sse", 90);
    let lines = out.lines();
    for name in ["PASS mulps", "PASS ldmxcsr", "PASS fxrstor", "PASS int3"] {
        assert!(lines.contains(&name), "{name} missing:\n{}", out.stdout);
    }
    assert!(lines.contains(&"PASS #GP on misaligned pxor"));
    for key in ["\"mulps\":", "\"ldmxcsr\":", "\"int3\":1", "\"iretd\":"] {
        assert!(emulated.contains(key), "{key} not in {emulated}");
    }
}

#[test]
fn uncovered_instruction_is_reported_in_one_line_with_its_own_status() {
    if !kvm_available() {
        return;
    }
    let out = run_ukvm([
        "--kernel".into(),
        guest("sse").into_os_string(),
        "--cmdline".into(),
        "uncovered".into(),
    ]);
    assert_eq!(out.status, Some(247), "{out:?}");
    assert!(out.stdout.contains("running maskmovdqu"));
    assert!(!out.stdout.contains("maskmovdqu completed"));
    let report: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.contains("cannot complete"))
        .collect();
    assert_eq!(report.len(), 1, "{}", out.stderr);
    let line = report[0];
    for part in [
        "`maskmovdqu`",
        "at rip 0x",
        "32-bit protected mode",
        "bytes [66 0f f7 c1]",
    ] {
        assert!(line.contains(part), "{part} not in {line}");
    }
}

#[test]
fn sse64_guest_passes_every_case_in_long_mode() {
    if !kvm_available() {
        return;
    }
    let (out, emulated) = run_checks("sse64", 23);
    let lines = out.lines();
    let mut expected = vec![
        "PASS mulps_rip",
        "PASS pextrq_to_rip",
        "PASS cvtsi2sdq",
        "PASS popcnt",
        "PASS fwait",
        "PASS cmpxchg16b_hit",
        "PASS cmpxchg16b_miss",
        "PASS cmpxchg16b_rip",
        "PASS fxsave64",
        "PASS int3",
        "PASS int 0x40",
        "PASS #GP on misaligned pxor",
        "PASS #GP on misaligned cmpxchg16b",
    ];
    // The XSAVE family only where the CPU offers it (the guest says so).
    if !out.stdout.contains("SKIP xsave:") {
        expected.extend(["PASS xsave64", "PASS xrstor64"]);
    }
    if !out.stdout.contains("SKIP xsave:") && !out.stdout.contains("SKIP xsavec64") {
        expected.extend(["PASS xsavec64 header", "PASS xrstor64 compacted"]);
    }
    for name in expected {
        assert!(lines.contains(&name), "{name} missing:\n{}", out.stdout);
    }
    for key in ["\"cmpxchg16b\":3", "\"mulps\":", "\"int3\":1"] {
        assert!(emulated.contains(key), "{key} not in {emulated}");
    }
}
