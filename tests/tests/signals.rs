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
        assert!(Instant::now() < deadline, "ukvm ignored signal {signal}");
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
