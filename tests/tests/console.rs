//! Console input: stdin to COM1's receive side. The echo guest reads COM1
//! and writes each byte back; '!' ends it. Driven through a pipe and
//! through a pseudo-terminal (raw mode while it runs, restored after,
//! Ctrl-A x ends the run).

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use ukvm_tests::{guest, kvm_available, run_ukvm, ukvm_bin, wait_with_limit};

/// Runs `ukvm --kernel KERNEL args` with `input` written to its stdin
/// (then closed).
fn run_with_input(kernel: &str, args: &[&str], input: &[u8]) -> ukvm_tests::Outcome {
    let mut child = Command::new(ukvm_bin())
        .arg("--kernel")
        .arg(guest(kernel))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ukvm");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(input).expect("write stdin");
    drop(stdin);
    wait_with_limit(child, Duration::from_secs(60))
}

#[test]
fn piped_input_reaches_the_guest_by_polling() {
    if !kvm_available() {
        return;
    }
    let out = run_with_input("echo", &[], b"abc\rdef!");
    assert_eq!(out.status, Some(0), "{}", out.stderr);
    assert_eq!(out.stdout, "echo ready\nabc\ndef\nbye\n");
}

#[test]
fn the_receive_interrupt_identification_reports_data() {
    if !kvm_available() {
        return;
    }
    let out = run_with_input("echo", &["--cmdline", "irq"], b"xy!");
    assert_eq!(out.status, Some(0), "{}{}", out.stdout, out.stderr);
    assert_eq!(out.stdout, "echo ready\nxy\nbye\n");
}

#[test]
fn stdin_at_eof_or_unreadable_changes_nothing() {
    if !kvm_available() {
        return;
    }
    let quiet = run_ukvm([
        "--kernel".as_ref(),
        guest("hello").as_os_str(),
        "--cmdline".as_ref(),
        "exit=5".as_ref(),
    ]);
    let eof = run_with_input("hello", &["--cmdline", "exit=5"], b"");
    assert_eq!(eof.status, Some(5));
    assert_eq!(eof.stdout, quiet.stdout);
    // A write-only stdin cannot be read.
    let mut fds = [0; 2];
    // SAFETY: pipe fills two fds we then own.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    // SAFETY: fresh fds from pipe().
    let (read_end, write_end) =
        unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    let child = Command::new(ukvm_bin())
        .args(["--kernel".as_ref(), guest("hello").as_os_str()])
        .args(["--cmdline", "exit=5"])
        .stdin(Stdio::from(write_end))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ukvm");
    let unreadable = wait_with_limit(child, Duration::from_secs(60));
    drop(read_end);
    assert_eq!(unreadable.status, Some(5), "{}", unreadable.stderr);
    assert_eq!(unreadable.stdout, quiet.stdout);
}

/// A pseudo-terminal pair: (master, slave), from the OCI runtime's own
/// helper (`ukvm-oci`'s console is the same kind of terminal).
fn openpty() -> (std::fs::File, OwnedFd) {
    let pty = ukvm_oci::console::open_pty().expect("openpty");
    (std::fs::File::from(pty.master), pty.slave)
}

fn lflag(fd: &OwnedFd) -> libc::tcflag_t {
    // SAFETY: zeroed termios is a valid buffer; fd is a terminal.
    let mut t: libc::termios = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    assert_eq!(unsafe { libc::tcgetattr(fd.as_raw_fd(), &mut t) }, 0);
    t.c_lflag
}

/// Reads from the pty master until `want` was seen (or panics after 30 s).
fn read_until(master: &mut std::fs::File, seen: &mut String, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut buf = [0u8; 256];
    while !seen.contains(want) {
        assert!(
            Instant::now() < deadline,
            "no {want:?} on the terminal; got {seen:?}"
        );
        let mut pfd = libc::pollfd {
            fd: master.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        if unsafe { libc::poll(&mut pfd, 1, 100) } <= 0 {
            continue;
        }
        let n = master.read(&mut buf).expect("read pty");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
}

/// Starts ukvm on `kernel` with stdin and stdout on the pty's `slave`.
fn spawn_on_pty(kernel: &str, slave: &OwnedFd) -> std::process::Child {
    Command::new(ukvm_bin())
        .args(["--kernel".as_ref(), guest(kernel).as_os_str()])
        .stdin(Stdio::from(slave.try_clone().expect("dup")))
        .stdout(Stdio::from(slave.try_clone().expect("dup")))
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ukvm")
}

#[test]
fn a_terminal_is_raw_while_the_guest_runs_and_ctrl_a_x_ends_it() {
    if !kvm_available() {
        return;
    }
    let (mut master, slave) = openpty();
    let cooked = lflag(&slave);
    assert_ne!(
        cooked & libc::ICANON,
        0,
        "a fresh pty starts in canonical mode"
    );
    let child = spawn_on_pty("echo", &slave);
    let mut seen = String::new();
    read_until(&mut master, &mut seen, "echo ready");
    let raw = lflag(&slave);
    assert_eq!(
        raw & (libc::ICANON | libc::ECHO | libc::ISIG),
        0,
        "raw mode while running"
    );
    // Typed keys come back one by one (no line editing, no local echo:
    // each letter appears once, from the guest).
    master.write_all(b"hey").expect("type");
    read_until(&mut master, &mut seen, "hey");
    master.write_all(b"\r").expect("type");
    read_until(&mut master, &mut seen, "hey\r\n");
    assert_eq!(seen.matches("hey").count(), 1, "{seen:?}");
    // Ctrl-C goes to the guest as a byte; Ctrl-A x ends the run.
    master.write_all(b"\x03\x01x").expect("type");
    let out = wait_with_limit(child, Duration::from_secs(30));
    assert_eq!(out.status, Some(0), "{}", out.stderr);
    assert!(out.stderr.contains("Ctrl-A x"), "{}", out.stderr);
    assert_eq!(lflag(&slave), cooked, "terminal settings restored");
}

#[test]
fn a_guest_crash_restores_the_terminal_too() {
    if !kvm_available() {
        return;
    }
    let (mut master, slave) = openpty();
    let cooked = lflag(&slave);
    let child = spawn_on_pty("fault", &slave);
    let mut seen = String::new();
    read_until(&mut master, &mut seen, "about to triple fault");
    let out = wait_with_limit(child, Duration::from_secs(30));
    assert_eq!(out.status, Some(246), "{}", out.stderr);
    assert_eq!(lflag(&slave), cooked, "terminal settings restored");
}
