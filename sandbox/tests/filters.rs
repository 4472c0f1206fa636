//! The filters as installed by ukvm, tested the way Firecracker tests its
//! own: a child process installs one thread kind's filter through the
//! library, then makes one allowed system call with good arguments (it
//! must survive) or with wrong ones (it must die of SIGSYS, naming the
//! call on stderr).
//!
//! Each case runs in a fresh copy of this test binary (the `child` test,
//! selected by an environment variable), because a filter cannot be
//! removed once installed.

use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Output};
use ukvm_sandbox::allowlist::{FdRole, Irqchip, Only, Pin, Sysno};
use ukvm_sandbox::{seccomp, Fds, SeccompMode, ThreadKind};

const CASE: &str = "UKVM_FILTER_CASE";

/// How to call an allowlist entry.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Args {
    /// As the entry pins them.
    Good,
    /// The pinned argument changed.
    WrongValue,
    /// An ioctl on another fd than the pinned one.
    WrongFd,
}

fn kind_from(s: &str) -> ThreadKind {
    match s {
        "vcpu" => ThreadKind::Vcpu,
        "io" => ThreadKind::Io,
        "console" => ThreadKind::Console,
        other => panic!("bad kind {other}"),
    }
}

fn spawn(case: &str) -> Output {
    Command::new(std::env::current_exe().expect("test binary"))
        .args(["--exact", "child", "--nocapture", "--test-threads=1"])
        .env(CASE, case)
        .output()
        .expect("run the test binary")
}

/// Fds the child pins its calls to: one /dev/null per role, so a KVM
/// request reaches a file that refuses it (ENOTTY) once the filter lets
/// it through, and a read or write of nothing does nothing. None of them
/// is fd 0 or 1, which stand for "an fd not in the set".
fn child_fds() -> Fds {
    let open = || {
        // SAFETY: opens a NUL-terminated path; the fd is left open for
        // the short life of the child.
        unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDWR) }
    };
    Fds {
        vcpu: Some(open()),
        vm: Some(open()),
        output: vec![open()],
        events: vec![open(), open()],
        taps: vec![open()],
        disks: vec![open()],
        input: vec![open()],
        gdb: vec![open()],
        core_dir: vec![open()],
        core: vec![open()],
        irqchip: Irqchip::None,
    }
}

/// The last fd of `role` in `fds` (the first may be stderr).
fn fd_of(fds: &Fds, role: FdRole) -> i32 {
    fds.of(role)
        .and_then(|l| l.last().copied())
        .expect("a role with fds")
}

/// What the child's calls need, gathered before its filter is installed.
struct Child {
    fds: Fds,
    pid: u32,
    tid: libc::pid_t,
}

/// The child: install, call, report survival with exit status 0.
#[test]
fn child() {
    let Ok(case) = std::env::var(CASE) else {
        return;
    };
    let parts: Vec<&str> = case.split(':').collect();
    let kind = kind_from(parts[0]);
    let mode = parts[3].parse::<SeccompMode>().expect("mode");
    let mut fds = child_fds();
    // The interrupt controller the case names (the entry's, for entries
    // only some VMs' threads get).
    fds.irqchip = match parts.get(4).copied() {
        Some("userspace") => Irqchip::Userspace,
        Some("kvm") => Irqchip::Kvm,
        _ => Irqchip::None,
    };
    // SAFETY: ignoring a signal and asking the thread id have no
    // preconditions; both happen before the filter forbids them.
    let tid = unsafe {
        libc::signal(libc::SIGRTMIN(), libc::SIG_IGN);
        libc::gettid()
    };
    let pid = std::process::id();
    seccomp::install(kind, mode, &fds).expect("install");
    let fds = Child { fds, pid, tid };
    match parts[1] {
        "stray" => {
            // A write to stdout, which is not among the output fds.
            // SAFETY: writes one byte from a static buffer.
            unsafe { libc::write(1, c"x".as_ptr().cast(), 1) };
        }
        "unlisted" => {
            // SAFETY: getppid and socket have no memory arguments.
            unsafe {
                libc::getppid();
                libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
            }
        }
        index => {
            let index: usize = index.parse().expect("index");
            let entry = kind.allowlist().nth(index).expect("entry");
            let args = match parts[2] {
                "good" => Args::Good,
                "value" => Args::WrongValue,
                _ => Args::WrongFd,
            };
            call(entry.sysno, entry.pin, args, &fds);
        }
    }
    // SAFETY: exit_group is allowed on every thread kind; nothing else
    // (the harness's output) may run under the filter.
    unsafe { libc::_exit(0) }
}

/// Makes `sysno` with arguments that satisfy (or break) `pin` and that the
/// kernel then rejects or performs harmlessly.
fn call(sysno: Sysno, pin: Pin, args: Args, fds: &Child) {
    let nr = i64::from(sysno.id());
    let mut a = [u64::MAX; 6];
    match pin {
        Pin::Any => {}
        Pin::Kick => {
            // The child ignores SIGRTMIN (see `child`).
            let (pid, tid) = (u64::from(fds.pid), fds.tid as u64);
            a = [pid, tid, libc::SIGRTMIN() as u64, 0, 0, 0];
            if args == Args::WrongValue {
                a[2] = libc::SIGUSR2 as u64;
            } else if args == Args::WrongFd {
                a[0] = 1; // init: another process
            }
        }
        Pin::Arg(i, v) => {
            a = harmless(sysno);
            a[usize::from(i)] = if args == Args::Good { v } else { v ^ 0x100 };
        }
        Pin::Fd(role) => {
            // Nothing to read or write: the call does nothing once let
            // through. Any other fd than the role's must be refused.
            a = [0; 6];
            a[0] = if args == Args::Good {
                fd_of(&fds.fds, role) as u64
            } else {
                0
            };
        }
        Pin::FdAnd(at, role, arg, value) => {
            // Bad fds and pointers elsewhere: the call fails once let
            // through (openat: EFAULT; dup3: EBADF).
            let (at, arg) = (usize::from(at), usize::from(arg));
            a[at] = if args == Args::WrongFd {
                0
            } else {
                fd_of(&fds.fds, role) as u64
            };
            a[arg] = if args == Args::WrongValue {
                value ^ 0x100
            } else {
                value
            };
        }
        Pin::Ioctl(role, request) => {
            let fd = match role {
                FdRole::Any => fd_of(&fds.fds, FdRole::Vm),
                role => fd_of(&fds.fds, role),
            };
            a[0] = if args == Args::WrongFd { 0 } else { fd as u64 };
            a[1] = if args == Args::WrongValue {
                request ^ 0x1
            } else {
                request
            };
            a[2] = 0;
        }
    }
    if sysno == Sysno::clone {
        clone_helper(a[0], args);
        return;
    }
    // SAFETY: the arguments make the kernel fail the call early (bad fd,
    // bad address, zero length) or do nothing lasting (mmap of one
    // page, mprotect/madvise of nothing).
    unsafe { libc::syscall(nr, a[0], a[1], a[2], a[3], a[4], a[5]) };
}

/// Arguments for the flag-pinned calls that do nothing harmful.
fn harmless(sysno: Sysno) -> [u64; 6] {
    let neg1 = u64::MAX;
    match sysno {
        Sysno::mmap => [
            0,
            4096,
            (libc::PROT_READ | libc::PROT_WRITE) as u64,
            0,
            neg1,
            0,
        ],
        Sysno::mprotect | Sysno::madvise => [0, 0, 0, 0, 0, 0],
        Sysno::fcntl => [0, 0, 0, 0, 0, 0],
        _ => [neg1; 6],
    }
}

/// clone(CLONE_VM | SIGCHLD) as ukvm's fast exit makes it: on its own
/// stack, with a child that exits at once.
fn clone_helper(flags: u64, _args: Args) {
    extern "C" fn exit_now(_: *mut libc::c_void) -> libc::c_int {
        // SAFETY: ends the helper thread of execution only.
        unsafe { libc::syscall(libc::SYS_exit, 0) };
        0
    }
    let stack = Box::leak(vec![0u8; 16 << 10].into_boxed_slice());
    // SAFETY: the child runs on its own leaked stack (16-byte aligned top)
    // and only exits.
    unsafe {
        let top = (stack.as_mut_ptr().add(stack.len()) as usize & !15) as *mut libc::c_void;
        libc::clone(exit_now, top, flags as libc::c_int, std::ptr::null_mut());
    }
}

fn case_name(kind: ThreadKind) -> &'static str {
    match kind {
        ThreadKind::Vcpu => "vcpu",
        ThreadKind::Io => "io",
        ThreadKind::Console => "console",
    }
}

fn assert_killed(out: &Output, what: &str, name: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.signal(),
        Some(libc::SIGSYS),
        "{what}: expected death by SIGSYS, got {:?}; stderr: {stderr}",
        out.status
    );
    assert!(
        stderr.contains(&format!("system call {name} (")),
        "{what}: stderr does not name {name}: {stderr}"
    );
}

#[test]
fn every_allowed_call_passes_with_its_arguments_and_dies_without_them() {
    for kind in ThreadKind::ALL {
        for (i, entry) in kind.allowlist().enumerate() {
            let name = entry.sysno.name();
            if matches!(
                entry.sysno,
                Sysno::rt_sigreturn | Sysno::exit | Sysno::exit_group
            ) {
                // Cannot be called with made-up arguments and survive;
                // every child ends through exit_group anyway.
                continue;
            }
            let what = format!("{kind} {name} {:?} {:?}", entry.pin, entry.only);
            let k = case_name(kind);
            // A VM whose interrupt controller the entry is for.
            let chip = match entry.only {
                Only::Userspace | Only::AnyIrqchip => "userspace",
                Only::Kvm => "kvm",
                Only::Always => "none",
            };
            let good = spawn(&format!("{k}:{i}:good:on:{chip}"));
            assert_eq!(
                good.status.code(),
                Some(0),
                "{what} with good arguments: {:?} {}",
                good.status,
                String::from_utf8_lossy(&good.stderr)
            );
            if entry.pin == Pin::Any {
                continue;
            }
            assert_killed(&spawn(&format!("{k}:{i}:value:on:{chip}")), &what, name);
            if matches!(entry.pin, Pin::Ioctl(role, _) if role != FdRole::Any)
                || matches!(entry.pin, Pin::FdAnd(..) | Pin::Kick)
            {
                assert_killed(
                    &spawn(&format!("{k}:{i}:fd:on:{chip}")),
                    &format!("{what} on fd 0"),
                    name,
                );
            }
        }
    }
}

#[test]
fn calls_for_another_interrupt_controller_kill() {
    // Each entry that only some VMs' threads get, made with good arguments
    // by a thread whose VM has another controller (or none).
    let mut checked = 0;
    for kind in ThreadKind::ALL {
        for (i, entry) in kind.allowlist().enumerate() {
            let others: &[&str] = match entry.only {
                Only::Always => continue,
                Only::Userspace => &["none", "kvm"],
                Only::Kvm => &["none", "userspace"],
                Only::AnyIrqchip => &["none"],
            };
            let k = case_name(kind);
            for chip in others {
                let what = format!("{kind} {} {:?} under {chip}", entry.sysno.name(), entry.pin);
                let out = spawn(&format!("{k}:{i}:good:on:{chip}"));
                assert_killed(&out, &what, entry.sysno.name());
                checked += 1;
            }
        }
    }
    // KVM_IRQ_LINE on all three kinds, KVM_INTERRUPT, KVM_GET_MP_STATE,
    // the timers and gettid.
    assert!(checked >= 12, "{checked}");
}

#[test]
fn unlisted_calls_kill_with_a_message_and_log_mode_lets_them_run() {
    for kind in ThreadKind::ALL {
        let k = case_name(kind);
        assert_killed(&spawn(&format!("{k}:unlisted:-:on")), k, "getppid");
        let logged = spawn(&format!("{k}:unlisted:-:log"));
        assert_eq!(logged.status.code(), Some(0), "{k} log mode: {logged:?}");
        let off = spawn(&format!("{k}:unlisted:-:off"));
        assert_eq!(off.status.code(), Some(0), "{k} off: {off:?}");
    }
}

#[test]
fn a_write_to_an_fd_outside_the_output_set_kills_naming_the_fd() {
    for kind in ThreadKind::ALL {
        let k = case_name(kind);
        let out = spawn(&format!("{k}:stray:-:on"));
        assert_killed(&out, k, "write");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("(the first: 1)"), "{k}: {stderr}");
        let logged = spawn(&format!("{k}:stray:-:log"));
        assert_eq!(logged.status.code(), Some(0), "{k} log mode: {logged:?}");
    }
}

#[test]
fn a_filter_is_built_for_every_kind_and_mode() {
    let fds = Fds {
        vcpu: Some(10),
        vm: Some(11),
        ..Fds::default()
    };
    for kind in ThreadKind::ALL {
        for mode in [SeccompMode::Kill, SeccompMode::Log] {
            let bpf = seccomp::filter(kind, mode, &fds).expect("filter");
            assert!(bpf.is_some_and(|p| p.len() > 20), "{kind} {mode:?}");
        }
        assert!(seccomp::filter(kind, SeccompMode::Off, &fds)
            .unwrap()
            .is_none());
    }
}
