//! The sandbox during real runs: every ukvm thread under its seccomp
//! filter while the net guest serves pings, `--user`/`--chroot` from root,
//! a plain user in the `kvm` group who owns the TAP (run through
//! `setpriv`), and `--seccomp=log`'s records in the kernel log. Needs
//! root (namespaces, TAPs, users, /dev/kmsg).

use std::process::{Command, Stdio};
use std::time::Duration;
use ukvm_sandbox::{SeccompMode, ThreadKind};
use ukvm_tests::kmsg::{self, Kmsg};
use ukvm_tests::net::{NetNs, RunningGuest};
use ukvm_tests::{
    guest, is_root, kvm_available, run_ukvm, spawn_captured, ukvm_bin, wait_with_limit, TempDir,
    RUN_LIMIT,
};

const BOOT: Duration = Duration::from_secs(30);

fn can_run() -> bool {
    if !kvm_available() {
        return false;
    }
    assert!(
        is_root(),
        "the sandbox tests need root (namespaces, TAPs, users); run them as root"
    );
    true
}

/// One thread's lines of /proc/PID/task/TID/status.
struct ThreadStatus {
    name: String,
    seccomp: String,
    uid: String,
    no_new_privs: String,
}

fn field(status: &str, key: &str) -> String {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .map(|v| v.trim().to_string())
        .unwrap_or_default()
}

fn threads(pid: u32) -> Vec<ThreadStatus> {
    let dir = format!("/proc/{pid}/task");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{dir}: {e}")) {
        let path = entry.expect("task entry").path().join("status");
        let status = std::fs::read_to_string(&path).expect("task status");
        out.push(ThreadStatus {
            name: field(&status, "Name:"),
            seccomp: field(&status, "Seccomp:"),
            uid: field(&status, "Uid:"),
            no_new_privs: field(&status, "NoNewPrivs:"),
        });
    }
    out
}

/// Boots the net guest at 10.0.0.2 behind `tap`, through `wrapper`.
fn boot(ns: &NetNs, tap: &str, wrapper: &[&str], extra: &[&str]) -> RunningGuest {
    let kernel = guest("net");
    let mut args = vec![
        "--kernel",
        kernel.to_str().unwrap(),
        "--cmdline",
        "ip=10.0.0.2",
        "--net",
        tap,
        "--seccomp",
        "on",
    ];
    args.extend(extra);
    let mut g = ns.spawn_ukvm_via(wrapper, &args);
    g.wait_for("ready", BOOT);
    g
}

/// Every thread of the running ukvm: filtered (mode 2), no new privileges,
/// running as `uid`; the I/O thread among them; and the guest answers.
fn assert_sandboxed(ns: &NetNs, g: &RunningGuest, uid: &str) {
    let list = threads(g.pid());
    assert!(
        list.iter().any(|t| t.name == "ukvm-io"),
        "no I/O thread among {:?}",
        list.iter().map(|t| &t.name).collect::<Vec<_>>()
    );
    for t in &list {
        assert_eq!(t.seccomp, "2", "thread {} is not filtered", t.name);
        assert_eq!(t.no_new_privs, "1", "thread {}", t.name);
        let uids: Vec<&str> = t.uid.split_whitespace().collect();
        assert_eq!(uids, [uid; 4], "thread {} uids", t.name);
    }
    assert_eq!(ns.ping("10.0.0.2", 10), 10, "pings lost under the filters");
}

#[test]
fn every_thread_is_filtered_while_the_net_guest_serves() {
    if !can_run() {
        return;
    }
    let ns = NetNs::new();
    let tap = ns.add_tap("10.0.0.1/24", 1500);
    let g = boot(&ns, &tap, &[], &[]);
    assert_sandboxed(&ns, &g, "0");
}

#[test]
fn root_drops_to_user_and_chroot_before_the_guest_runs() {
    if !can_run() {
        return;
    }
    let dir = TempDir::new("chroot");
    let root = dir.join("root");
    std::fs::create_dir(&root).unwrap();
    let ns = NetNs::new();
    let tap = ns.add_tap("10.0.0.1/24", 1500);
    let root_arg = root.to_str().unwrap();
    let g = boot(
        &ns,
        &tap,
        &[],
        &["--user", "65534:65534", "--chroot", root_arg],
    );
    assert_sandboxed(&ns, &g, "65534");
    let seen = std::fs::read_link(format!("/proc/{}/root", g.pid())).unwrap();
    assert_eq!(seen, root, "ukvm's root directory");
}

/// A system user in the `kvm` group, removed when dropped.
struct TestUser(String);

impl TestUser {
    fn new() -> TestUser {
        let name = format!("ukvmt{}", std::process::id() % 100_000);
        // Debian's defaults, which these hosts lack: /dev/kvm for group
        // kvm, /dev/net/tun for everyone (TUNSETIFF checks the TAP owner).
        let _ = Command::new("groupadd").args(["--system", "kvm"]).status();
        run(Command::new("chgrp").args(["kvm", "/dev/kvm"]));
        run(Command::new("chmod").args(["0660", "/dev/kvm"]));
        run(Command::new("chmod").args(["0666", "/dev/net/tun"]));
        let _ = Command::new("userdel")
            .arg(&name)
            .stderr(std::process::Stdio::null())
            .status();
        run(Command::new("useradd").args([
            "--system",
            "--no-create-home",
            "--shell",
            "/usr/sbin/nologin",
            "--groups",
            "kvm",
            &name,
        ]));
        TestUser(name)
    }
}

impl Drop for TestUser {
    fn drop(&mut self) {
        let _ = Command::new("userdel").arg(&self.0).status();
    }
}

fn run(cmd: &mut Command) {
    let out = cmd.output().expect("run a host command");
    assert!(out.status.success(), "{cmd:?}: {out:?}");
}

fn uid_of(name: &str) -> String {
    let out = Command::new("id").args(["-u", name]).output().expect("id");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn a_plain_user_in_the_kvm_group_runs_the_net_guest_on_its_own_tap() {
    if !can_run() {
        return;
    }
    let user = TestUser::new();
    let ns = NetNs::new();
    let tap = ns.add_tap_owned("10.0.0.1/24", 1500, Some(&user.0));
    let as_user = format!("--reuid={}", user.0);
    let group = format!("--regid={}", user.0);
    let wrapper = ["setpriv", &as_user, &group, "--init-groups"];
    let g = boot(&ns, &tap, &wrapper, &[]);
    assert_sandboxed(&ns, &g, &uid_of(&user.0));
}

/// Set in the child of [`log_mode_reaches_the_kernel_log`].
const LOG_CHILD: &str = "UKVM_SECCOMP_LOG_CHILD";

/// getppid: on no thread's allowlist.
const UNLISTED: i64 = libc::SYS_getppid;

/// The child of [`log_mode_reaches_the_kernel_log`] (a no-op otherwise):
/// installs the vCPU thread's filter through the library in log mode,
/// makes a call outside it and survives it.
#[test]
fn log_mode_child() {
    if std::env::var_os(LOG_CHILD).is_none() {
        return;
    }
    let fds = ukvm_sandbox::Fds::default();
    ukvm_sandbox::seccomp::install(ThreadKind::Vcpu, SeccompMode::Log, &fds).expect("install");
    // SAFETY: getppid takes no arguments; _exit ends the child before
    // anything else runs under the filter.
    unsafe {
        libc::syscall(UNLISTED);
        libc::_exit(0)
    }
}

#[test]
fn log_mode_reaches_the_kernel_log() {
    assert!(is_root(), "reading the kernel log needs root");
    kmsg::assert_log_action_logged();
    let mut log = Kmsg::open_at_end();
    let child = Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "--exact",
            "log_mode_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(LOG_CHILD, "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the child");
    let pid = child.id();
    let out = child.wait_with_output().expect("wait for the child");
    assert_eq!(
        out.status.code(),
        Some(0),
        "the child did not survive: {out:?}"
    );
    let records = log.seccomp_records(pid, Some(UNLISTED), Duration::from_secs(10));
    assert!(
        records.iter().any(|(nr, _)| *nr == UNLISTED),
        "no audit record type=1326 pid={pid} syscall={UNLISTED} in /dev/kmsg within 10 s \
         (an audit daemon, if one runs, takes them into its own log instead); got {records:?}"
    );
}

#[test]
fn a_guest_with_a_disk_makes_no_call_its_filters_would_refuse() {
    if !kvm_available() {
        return;
    }
    assert!(is_root(), "reading the kernel log needs root");
    kmsg::assert_log_action_logged();
    let dir = TempDir::new("seccomp-log");
    let img = dir.join("data.img");
    std::fs::write(&img, vec![0u8; 1 << 20]).expect("disk image");
    let mut log = Kmsg::open_at_end();
    let child = spawn_captured(
        Command::new(ukvm_bin())
            .args(["--seccomp=log", "--kernel"])
            .arg(guest("blk"))
            .args(["--cmdline", "mode=rw", "--disk"])
            .arg(&img),
    );
    let pid = child.id();
    let out = wait_with_limit(child, RUN_LIMIT);
    assert_eq!(out.status, Some(0), "{out:?}");
    assert!(out.stdout.contains("flushed, read back ok"), "{out:?}");
    // The kernel's audit thread prints records a little after the call.
    let records = log.seccomp_records(pid, None, Duration::from_secs(1));
    assert!(
        records.is_empty(),
        "calls outside the allowlist: {records:#?}"
    );
}

/// `--timings`' `seccomp` and `landlock` for a run of hello with `args`.
fn sandbox_report(args: &[&str]) -> (String, String) {
    let mut all = vec!["--kernel".into(), guest("hello").into_os_string()];
    all.extend(args.iter().map(Into::into));
    all.push("--timings".into());
    let out = run_ukvm(all);
    assert_eq!(out.status, Some(0), "{args:?}: {out:?}");
    let json = out.stderr.lines().last().unwrap_or_default();
    let field = |key: &str| {
        json.split(&format!("\"{key}\":\""))
            .nth(1)
            .and_then(|v| v.split('"').next())
            .unwrap_or_else(|| panic!("no {key} in {json}"))
            .to_string()
    };
    (field("seccomp"), field("landlock"))
}

#[test]
fn landlock_is_switched_on_its_own() {
    if !kvm_available() {
        return;
    }
    let enforced = |l: &str| l != "off";
    let (s, l) = sandbox_report(&[]);
    assert!(s == "on" && enforced(&l), "default: {s} {l}");
    let (s, l) = sandbox_report(&["--landlock", "off"]);
    assert_eq!((s.as_str(), l.as_str()), ("on", "off"));
    let (s, l) = sandbox_report(&["--seccomp", "off"]);
    assert_eq!((s.as_str(), l.as_str()), ("off", "off"));
    let (s, l) = sandbox_report(&["--seccomp", "off", "--landlock", "on"]);
    assert!(s == "off" && enforced(&l), "--landlock on: {s} {l}");
    let out = run_ukvm([
        "--kernel".as_ref(),
        guest("hello").as_os_str(),
        "--landlock=maybe".as_ref(),
    ]);
    assert_eq!(out.status, Some(2), "{out:?}");
    assert!(out.stderr.contains("--landlock"), "{}", out.stderr);
}
