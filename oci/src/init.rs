//! The container's process before it becomes the VM. `create` starts it
//! (`ukvm-oci __init DIR`); it enters the container's network namespace,
//! reports "ready" on fd 3 and waits on the socket `DIR/sock`. `start`
//! connects; the init process then runs the startContainer hooks, wires
//! the TAP to the container's interface, answers "ok IFACE" and executes
//! ukvm in its own place: the pid the engine watches is the VM's, and the
//! guest's exit status is the container's.
//!
//! Failures before the exec are sent to `start` as "error: ..." (the
//! socket closes on exec, so `start` knows the exec happened).

use crate::error::{Error, Result};
use crate::hooks::{self, Kind};
use crate::network;
use crate::state::{NetNs, Record, RECORD_FILE};
use crate::unikernel::{self, Net, NetValues};
use oci_spec::runtime::ContainerState;
use std::ffi::OsString;
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::io::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, ExitCode};

/// The name of the start socket in the container's directory (relative:
/// engines' state paths can exceed sun_path's 108 bytes).
pub const SOCKET: &str = "sock";
/// The descriptor of the readiness pipe in the init process.
pub const READY_FD: i32 = 3;

/// The init process's main.
pub fn main(dir: &Path) -> ExitCode {
    // SAFETY: create put the write end of its readiness pipe at fd 3 for
    // this process alone; nothing else here owns fd 3.
    let ready = unsafe { OwnedFd::from_raw_fd(READY_FD) };
    let mut ready = File::from(ready);
    let listener = match prepare(dir) {
        Ok(l) => l,
        Err(e) => {
            let _ = writeln!(ready, "{e}");
            return ExitCode::FAILURE;
        }
    };
    if writeln!(ready, "ready").is_err() {
        return ExitCode::FAILURE;
    }
    drop(ready);
    let Ok((stream, _)) = listener.accept() else {
        return ExitCode::FAILURE;
    };
    drop(listener);
    boot(dir, stream)
}

/// Enters the network namespace and listens for `start`.
fn prepare(dir: &Path) -> Result<UnixListener> {
    let record = load(dir)?;
    match &record.netns {
        NetNs::Host => {}
        NetNs::New => {
            // SAFETY: unshare of this single-threaded process's own
            // network namespace; no memory is involved.
            if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
                return Err(Error::io(
                    "unshare(CLONE_NEWNET)",
                    std::io::Error::last_os_error(),
                ));
            }
            network::loopback_up()?;
        }
        NetNs::Path(p) => {
            let ns = File::open(p)
                .map_err(|e| Error::io(format!("network namespace {}", p.display()), e))?;
            // SAFETY: setns with a namespace file we hold open; it only
            // changes this thread's (the process's only) namespace.
            if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                return Err(Error::io(
                    format!("setns {}", p.display()),
                    std::io::Error::last_os_error(),
                ));
            }
        }
    }
    std::env::set_current_dir(dir).map_err(|e| Error::io(format!("chdir {}", dir.display()), e))?;
    UnixListener::bind(SOCKET).map_err(|e| Error::io(format!("bind {}/{SOCKET}", dir.display()), e))
}

fn load(dir: &Path) -> Result<Record> {
    let text = std::fs::read_to_string(dir.join(RECORD_FILE))
        .map_err(|e| Error::io(format!("read {}/{RECORD_FILE}", dir.display()), e))?;
    serde_json::from_str(&text).map_err(|e| Error::Init(format!("corrupt record: {e}")))
}

/// Answers `start`: sets up and executes ukvm, or reports why not.
fn boot(dir: &Path, mut stream: UnixStream) -> ExitCode {
    let (record, argv, iface) = match start_plan(dir) {
        Ok(p) => p,
        Err(e) => {
            let _ = writeln!(stream, "error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let _ = writeln!(stream, "ok {}", iface.as_deref().unwrap_or("-"));
    // In the rootfs, with the kernel path relative to it: a Multiboot
    // guest's first command-line word is that path (GRUB's convention),
    // so it reads "boot/k.bin", not a host path.
    let err = Command::new(&record.ukvm)
        .args(&argv)
        .current_dir(&record.rootfs)
        .exec();
    let _ = writeln!(
        stream,
        "error: cannot execute {}: {err}",
        record.ukvm.display()
    );
    if let Some(i) = iface {
        network::disconnect(None, &record.tap, Some(&i));
    }
    ExitCode::from(127)
}

/// The ukvm arguments, after the hooks and the network are done.
fn start_plan(dir: &Path) -> Result<(Record, Vec<OsString>, Option<String>)> {
    let record = load(dir)?;
    if !record.bundle.is_dir() {
        return Err(Error::Init(format!(
            "bundle {} disappeared before start",
            record.bundle.display()
        )));
    }
    // The rootfs may have changed since create: check every path again.
    let (kernel, disks) = unikernel::resolve_paths(&record.rootfs, &record.unikernel)?;
    let state = serde_json::to_string(&record.oci_state(ContainerState::Created)?)
        .map_err(|e| Error::Init(e.to_string()))?;
    hooks::run(Kind::StartContainer, record.hooks.as_ref(), &state)?;
    let uk = &record.unikernel;
    let kernel = kernel
        .strip_prefix(&record.rootfs)
        .map_or_else(|_| kernel.clone(), |k| k.to_path_buf());
    let mut args: Vec<OsString> = vec!["--kernel".into(), kernel.into_os_string()];
    args.extend([
        "--mem".into(),
        uk.mem_mib
            .unwrap_or(unikernel::DEFAULT_MEM_MIB)
            .to_string()
            .into(),
    ]);
    for d in disks {
        args.extend(["--disk".into(), d.into()]);
    }
    let mut values = NetValues::default();
    let mut iface = None;
    if uk.wants_net() {
        let found = network::discover(&record.tap)?;
        values = found.values.clone();
        values.dns = dns(&record);
        network::connect(&found, &record.tap)?;
        let nic = match &uk.net {
            Net::Named(name) => format!("{name}={},mac={}", record.tap, values.mac),
            Net::Nic(_) => format!("{},mac={}", record.tap, values.mac),
        };
        args.extend(["--net".into(), nic.into()]);
        iface = Some(found.name);
    }
    args.extend([
        "--cmdline".into(),
        unikernel::fill_cmdline(&uk.cmdline, &values).into(),
    ]);
    Ok((record, args, iface))
}

/// The first nameserver of the container's resolv.conf (engines bind-mount
/// their own over /etc/resolv.conf; its source is in the record).
fn dns(record: &Record) -> String {
    let path = record
        .resolv_conf
        .clone()
        .unwrap_or_else(|| record.rootfs.join("etc/resolv.conf"));
    std::fs::read_to_string(path)
        .map(|t| network::first_nameserver(&t))
        .unwrap_or_default()
}

/// `start`'s side: connects to the init process and waits until it
/// executed ukvm. Returns the container's interface, if it has one.
pub fn release(dir: &Path) -> Result<Option<String>> {
    // Through /proc/self/fd: the socket's full path may not fit sun_path.
    let dir_fd = File::open(dir).map_err(|e| Error::io(format!("open {}", dir.display()), e))?;
    let short = format!("/proc/self/fd/{}/{SOCKET}", dir_fd.as_raw_fd());
    let stream = UnixStream::connect(short)
        .map_err(|e| Error::Init(format!("the container's init process is gone ({e})")))?;
    drop(dir_fd);
    let mut lines = BufReader::new(stream).lines();
    let first = lines.next().and_then(|l| l.ok()).unwrap_or_default();
    let rest: Vec<String> = lines.map_while(|l| l.ok()).collect();
    if let Some(err) = rest
        .iter()
        .chain(std::iter::once(&first))
        .find_map(|l| l.strip_prefix("error: "))
    {
        return Err(Error::Init(err.to_string()));
    }
    match first.strip_prefix("ok ") {
        Some("-") => Ok(None),
        Some(iface) => Ok(Some(iface.to_string())),
        None => Err(Error::Init(
            "the container's init process died before starting ukvm".into(),
        )),
    }
}
