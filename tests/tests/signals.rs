//! SIGTERM and SIGINT stop a running guest cleanly: the `ukvm` command
//! flushes the guest's output, writes `--timings` (outcome "stopped") and
//! exits with 128 + the signal's number.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use ukvm_tests::{guest, kvm_available, ukvm_bin, TempDir, RUN_LIMIT};

fn stopped_by(signal: libc::c_int, seccomp: &str) {
    let dir = TempDir::new("signals");
    let timings = dir.join("timings.json");
    // ~1 hour of ring-0 loop here: only the signal can end this run.
    let mut child = Command::new(ukvm_bin())
        .args(["--kernel", guest("grind").to_str().unwrap()])
        .args([
            "--cmdline",
            "loop=4000000000",
            "--mem",
            "32",
            "--seccomp",
            seccomp,
        ])
        .arg("--timings")
        .arg(&timings)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ukvm");
    let mut first = String::new();
    let mut out = BufReader::new(child.stdout.take().expect("stdout"));
    out.read_line(&mut first).expect("guest output");
    assert_eq!(first, "grind start\n");
    // SAFETY: signals our own child.
    unsafe { libc::kill(child.id() as i32, signal) };
    let deadline = Instant::now() + RUN_LIMIT;
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if Instant::now() > deadline {
            // Not left spinning for an hour if the signal was ignored.
            let _ = child.kill();
            let _ = child.wait();
            panic!("ukvm ignored signal {signal}");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    assert_eq!(status.code(), Some(128 + signal), "{status}");
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut out, &mut rest).unwrap();
    assert_eq!(rest, "", "nothing after the guest's line");
    let json = std::fs::read_to_string(&timings).expect("--timings written on a signal");
    assert!(json.contains("\"outcome\":\"stopped\""), "{json}");
}

#[test]
fn sigterm_stops_the_guest_with_status_143_and_timings() {
    if kvm_available() {
        stopped_by(libc::SIGTERM, "off");
    }
}

#[test]
fn sigint_stops_the_guest_with_status_130() {
    if kvm_available() {
        stopped_by(libc::SIGINT, "off");
    }
}

#[test]
fn sigterm_stops_the_guest_under_seccomp() {
    if kvm_available() {
        stopped_by(libc::SIGTERM, "on");
    }
}

/// The vCPU thread asleep in ukvm's `hlt` (the net guest waits for frames
/// with interrupts on; nothing else would ever wake it): the signal itself
/// must end the sleep.
#[test]
fn sigterm_ends_a_guest_asleep_waiting_for_its_nic() {
    if !kvm_available() {
        return;
    }
    assert!(
        ukvm_tests::is_root(),
        "this test needs root (a TAP in a namespace)"
    );
    let ns = ukvm_tests::net::NetNs::new();
    let tap = ns.add_tap("10.0.0.1/24", 1500);
    let kernel = guest("net");
    let mut g = ns.spawn_ukvm(&[
        "--kernel",
        kernel.to_str().unwrap(),
        "--net",
        &tap,
        "--cmdline",
        "ip=10.0.0.2",
    ]);
    g.wait_for("ready", RUN_LIMIT);
    // SAFETY: signals our own child.
    unsafe { libc::kill(g.pid() as i32, libc::SIGTERM) };
    assert_eq!(
        g.wait_exit(RUN_LIMIT),
        Some(128 + libc::SIGTERM),
        "{}",
        g.stderr()
    );
}

/// Under the solo5-hvt name, a guest waiting in a 10-minute poll
/// hypercall: SIGTERM ends it as solo5-hvt's handler does (its message,
/// status 1), and at once, not after the poll.
#[test]
fn sigterm_ends_an_hvt_guest_in_a_long_poll_as_solo5_hvt_does() {
    if !kvm_available() {
        return;
    }
    let child = ukvm_tests::spawn_captured(
        Command::new(ukvm_tests::solo5::ukvm_as_solo5_hvt())
            .arg("--mem=4")
            .arg(guest("hvt-time"))
            .arg("ms=600000"),
    );
    // The guest prints nothing before its poll: give it time to get there
    // (a signal before the run stops it as the run starts, which is
    // correct too).
    std::thread::sleep(Duration::from_millis(300));
    // SAFETY: signals our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let out = ukvm_tests::wait_with_limit(child, RUN_LIMIT);
    assert_eq!(out.status, Some(1), "{out:?}");
    assert!(
        out.stderr.contains("Exiting on signal 15"),
        "{}",
        out.stderr
    );
    assert!(!out.stdout.contains("poll_elapsed_ms"), "{}", out.stdout);
}
