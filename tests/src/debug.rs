//! Running a guest under Debian's gdb in batch mode: ukvm waits on a Unix
//! socket in a scratch directory, gdb runs a script against it, and the
//! test gets both outputs.

use crate::{spawn_captured, ukvm_bin, wait_with_limit, Outcome, TempDir};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// What gdb printed and how ukvm ended.
#[derive(Debug)]
pub struct GdbRun {
    /// gdb's stdout and stderr together, in order.
    pub gdb: String,
    /// ukvm's run.
    pub ukvm: Outcome,
}

/// Panics with a hint when gdb is not installed.
pub fn require_gdb() {
    let ok = Command::new("gdb")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "gdb is not installed: these tests drive Debian's gdb (scripts/setup.sh installs it: apt-get install gdb)"
    );
}

/// How a session connects.
#[derive(Debug, Default, Clone, Copy)]
pub struct Opts {
    /// Send gdb SIGINT (what Ctrl-C does) this long after it started.
    pub interrupt_after: Option<Duration>,
    /// Connect over TCP on 127.0.0.1 instead of a Unix socket.
    pub tcp: bool,
}

/// A free TCP port on 127.0.0.1 (the kernel's pick, released at once).
fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local addr").port()
}

/// Boots `kernel` with `--gdb` and `args`, then runs gdb in batch mode on
/// `kernel` (for its symbols): `target remote`, then `script`.
pub fn gdb_session(kernel: &Path, args: &[&str], script: &str, opts: Opts) -> GdbRun {
    require_gdb();
    let dir = TempDir::new("gdb");
    let sock = dir.join("gdb.sock");
    let (addr, target) = if opts.tcp {
        let port = free_port();
        (format!("tcp:{port}"), format!("127.0.0.1:{port}"))
    } else {
        (
            format!("unix:{}", sock.display()),
            sock.display().to_string(),
        )
    };
    let mut ukvm = spawn_captured(
        Command::new(ukvm_bin())
            .arg("--kernel")
            .arg(kernel)
            .arg("--gdb")
            .arg(addr)
            .args(args),
    );
    // gdb retries a refused TCP connection by itself (tcp auto-retry).
    let deadline = Instant::now() + Duration::from_secs(30);
    while !opts.tcp && !sock.exists() {
        if ukvm.try_wait().expect("wait").is_some() {
            let out = wait_with_limit(ukvm, Duration::from_secs(1));
            panic!("ukvm ended before gdb came: {out:?}");
        }
        assert!(
            Instant::now() < deadline,
            "ukvm did not create {}",
            sock.display()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let script_path = dir.join("script.gdb");
    std::fs::write(
        &script_path,
        format!("set pagination off\nset confirm off\ntarget remote {target}\n{script}\n"),
    )
    .expect("write gdb script");
    let gdb = spawn_captured(
        Command::new("gdb")
            .args(["-batch", "-nx", "-x"])
            .arg(&script_path)
            .arg(kernel),
    );
    if let Some(after) = opts.interrupt_after {
        std::thread::sleep(after);
        // SAFETY: kill on the pid of our own child, which has not been
        // reaped yet (collect waits for it below).
        unsafe { libc::kill(gdb.id() as libc::pid_t, libc::SIGINT) };
    }
    let gdb = wait_with_limit(gdb, Duration::from_secs(60));
    let ukvm = wait_with_limit(ukvm, Duration::from_secs(60));
    GdbRun {
        gdb: format!("{}{}", gdb.stdout, gdb.stderr),
        ukvm,
    }
}

/// Runs gdb in batch mode on `kernel` and `core` with `commands` (one
/// `-ex` each); returns what it printed.
pub fn gdb_on_core(kernel: &Path, core: &Path, commands: &[&str]) -> String {
    require_gdb();
    let mut cmd = Command::new("gdb");
    cmd.args(["-batch", "-nx"]);
    for c in commands {
        cmd.args(["-ex", c]);
    }
    let out = wait_with_limit(
        spawn_captured(cmd.arg(kernel).arg(core)),
        Duration::from_secs(60),
    );
    format!("{}{}", out.stdout, out.stderr)
}
