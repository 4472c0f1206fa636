//! `create`: check the bundle, record the container, start its init
//! process in the right network namespace (and cgroup, and terminal), run
//! the create-time hooks. Any failure leaves nothing behind: no process,
//! no cgroup, no state directory.

use crate::cgroups;
use crate::console;
use crate::error::{Error, Result};
use crate::hooks::{self, Kind};
use crate::init::READY_FD;
use crate::network;
use crate::state::{container_dir, process_start, NetNs, Record};
use crate::unikernel;
use oci_spec::runtime::{ContainerState, LinuxNamespaceType, Spec};
use std::fs::File;
use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// What `create` was asked.
pub struct CreateArgs<'a> {
    /// `--root`.
    pub root: &'a Path,
    /// Container id.
    pub id: &'a str,
    /// `--bundle`.
    pub bundle: &'a Path,
    /// `--pid-file`.
    pub pid_file: Option<&'a Path>,
    /// `--console-socket`.
    pub console_socket: Option<&'a Path>,
    /// `--systemd-cgroup`.
    pub systemd_cgroup: bool,
    /// The ukvm binary.
    pub ukvm: PathBuf,
}

/// A bundle read for `create`: the spec and its rootfs.
pub struct Bundle {
    /// Absolute bundle directory.
    pub dir: PathBuf,
    /// The parsed config.json.
    pub spec: Spec,
    /// Absolute rootfs.
    pub rootfs: PathBuf,
}

impl Bundle {
    /// Reads `dir/config.json`.
    pub fn read(dir: &Path) -> Result<Bundle> {
        let dir = std::fs::canonicalize(dir)
            .map_err(|e| Error::io(format!("bundle {}", dir.display()), e))?;
        let spec = Spec::load(dir.join("config.json")).map_err(|source| Error::Spec {
            bundle: dir.clone(),
            source,
        })?;
        let root = spec
            .root()
            .as_ref()
            .map_or_else(|| PathBuf::from("rootfs"), |r| r.path().clone());
        let rootfs = dir.join(root);
        Ok(Bundle { dir, spec, rootfs })
    }

    /// The spec's annotations.
    pub fn annotations(&self) -> std::collections::HashMap<String, String> {
        self.spec.annotations().clone().unwrap_or_default()
    }

    /// Whether this bundle is ours (else runc's).
    pub fn is_unikernel(&self) -> bool {
        unikernel::is_unikernel(&self.rootfs, &self.annotations())
    }

    fn netns(&self) -> NetNs {
        let namespaces = self
            .spec
            .linux()
            .as_ref()
            .and_then(|l| l.namespaces().clone());
        match namespaces
            .unwrap_or_default()
            .into_iter()
            .find(|n| n.typ() == LinuxNamespaceType::Network)
        {
            None => NetNs::Host,
            Some(n) => n.path().clone().map_or(NetNs::New, NetNs::Path),
        }
    }

    fn memory_limit(&self) -> Option<i64> {
        let linux = self.spec.linux().as_ref()?;
        let memory = linux.resources().as_ref()?.memory().as_ref()?;
        memory.limit()
    }

    fn resolv_conf(&self) -> Option<PathBuf> {
        let mounts = self.spec.mounts().as_ref()?;
        mounts
            .iter()
            .find(|m| m.destination() == Path::new("/etc/resolv.conf"))
            .and_then(|m| m.source().clone())
    }

    fn terminal(&self) -> bool {
        self.spec
            .process()
            .as_ref()
            .and_then(|p| p.terminal())
            .unwrap_or(false)
    }

    fn cgroups_path(&self) -> Option<String> {
        let linux = self.spec.linux().as_ref()?;
        linux
            .cgroups_path()
            .as_ref()
            .map(|p| p.to_string_lossy().into_owned())
    }
}

/// Checks that /dev/kvm opens and answers like KVM, so a host without it
/// fails at `create` with a clear message, not at boot.
fn check_kvm() -> Result<()> {
    let kvm = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .map_err(|e| Error::Kvm(e.to_string()))?;
    const KVM_GET_API_VERSION: libc::c_ulong = 0xAE00;
    // SAFETY: KVM_GET_API_VERSION takes no argument and touches no memory;
    // on a file that is not KVM it fails with ENOTTY.
    let version = unsafe { libc::ioctl(kvm.as_raw_fd(), KVM_GET_API_VERSION, 0) };
    if version != 12 {
        return Err(Error::Kvm(
            "not a KVM device (KVM_GET_API_VERSION failed)".into(),
        ));
    }
    Ok(())
}

/// Creates the container. `bundle` is known to be a unikernel.
pub fn create(args: &CreateArgs, bundle: Bundle) -> Result<()> {
    let annotations = bundle.annotations();
    let uk = unikernel::load(&bundle.rootfs, &annotations, bundle.memory_limit())?;
    check_kvm()?;
    let netns = bundle.netns();
    if uk.wants_net() && netns == NetNs::Host {
        return Err(Error::Unikernel(
            "\"net\" needs a network namespace, but the spec shares the host's".into(),
        ));
    }
    let terminal = bundle.terminal();
    if terminal && args.console_socket.is_none() {
        return Err(Error::Usage(
            "process.terminal is set: --console-socket is required".into(),
        ));
    }
    std::fs::create_dir_all(args.root)
        .map_err(|e| Error::io(format!("--root {}", args.root.display()), e))?;
    let dir = container_dir(args.root, args.id)?;
    match std::fs::create_dir(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(Error::Exists(args.id.to_string()))
        }
        Err(e) => return Err(Error::io(format!("mkdir {}", dir.display()), e)),
    }
    let mut record = Record {
        id: args.id.to_string(),
        bundle: bundle.dir.clone(),
        rootfs: bundle.rootfs.clone(),
        annotations,
        unikernel: uk,
        ukvm: args.ukvm.clone(),
        netns,
        tap: network::tap_name(args.id),
        iface: None,
        resolv_conf: bundle.resolv_conf(),
        hooks: bundle.spec.hooks().clone(),
        terminal,
        cgroups: Vec::new(),
        pid: 0,
        pid_start: 0,
        started: false,
    };
    let made = start_init(args, &bundle, &mut record);
    if made.is_err() {
        destroy(&record, &dir);
    }
    made
}

/// Everything after the directory exists; on error the caller destroys.
fn start_init(args: &CreateArgs, bundle: &Bundle, record: &mut Record) -> Result<()> {
    let dir = container_dir(args.root, args.id)?;
    record.save(args.root)?;
    let pty = if record.terminal {
        Some(console::open_pty()?)
    } else {
        None
    };
    let pid = spawn_init(&dir, pty.as_ref().map(|p| &p.slave))?;
    record.pid = pid;
    record.pid_start = process_start(pid).unwrap_or(0);
    record.save(args.root)?;
    if let Some(path) = bundle.cgroups_path() {
        let relative = cgroups::relative_path(&path, args.systemd_cgroup);
        record.cgroups = cgroups::place(pid, &relative)?;
        record.save(args.root)?;
    }
    if let (Some(pty), Some(socket)) = (&pty, args.console_socket) {
        console::send_master(socket, &pty.master)?;
    }
    let state = serde_json::to_string(&record.oci_state(ContainerState::Creating)?)
        .map_err(|e| Error::Init(e.to_string()))?;
    for kind in [Kind::Prestart, Kind::CreateRuntime, Kind::CreateContainer] {
        hooks::run(kind, record.hooks.as_ref(), &state)?;
    }
    if let Some(pid_file) = args.pid_file {
        let tmp = pid_file.with_extension("ukvm-oci-tmp");
        std::fs::write(&tmp, pid.to_string())
            .and_then(|()| std::fs::rename(&tmp, pid_file))
            .map_err(|e| Error::io(format!("--pid-file {}", pid_file.display()), e))?;
    }
    Ok(())
}

/// Starts `ukvm-oci __init DIR` and waits until it is in its namespace.
fn spawn_init(dir: &Path, tty: Option<&OwnedFd>) -> Result<i32> {
    let mut fds = [-1; 2];
    // SAFETY: pipe2 writes two descriptors into the array.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(Error::io("pipe", std::io::Error::last_os_error()));
    }
    // SAFETY: pipe2 succeeded: both descriptors are open and ours.
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    let exe = std::env::current_exe().map_err(|e| Error::io("locate ukvm-oci", e))?;
    let mut cmd = Command::new(exe);
    cmd.arg("__init").arg(dir);
    if let Some(t) = tty {
        let dup = |what| {
            t.try_clone()
                .map(Stdio::from)
                .map_err(|e| Error::io(format!("dup terminal for {what}"), e))
        };
        cmd.stdin(dup("stdin")?)
            .stdout(dup("stdout")?)
            .stderr(dup("stderr")?);
    }
    let (wfd, terminal) = (write.as_raw_fd(), tty.is_some());
    // SAFETY: between fork and exec only async-signal-safe calls: dup2 of
    // the pipe to fd 3 (clearing close-on-exec), setsid, and TIOCSCTTY on
    // the terminal that is now stdin.
    unsafe {
        cmd.pre_exec(move || {
            if libc::dup2(wfd, READY_FD) < 0 || libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            if terminal && libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = cmd
        .spawn()
        .map_err(|e| Error::io("start the init process", e))?;
    drop(write);
    let pid = child.id() as i32;
    let mut answer = String::new();
    let _ = File::from(read).read_to_string(&mut answer);
    if answer.trim() != "ready" {
        // SAFETY: kill of the child we just started.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        let mut child = child;
        let _ = child.wait();
        let why = answer.trim();
        return Err(Error::Init(if why.is_empty() {
            "the init process died during create".into()
        } else {
            why.to_string()
        }));
    }
    // Not waited for: when create exits, the engine (the subreaper above
    // us) inherits and reaps it.
    drop(child);
    Ok(pid)
}

/// Kills the container's process (if any), undoes its network and
/// cgroups, and removes its directory.
pub fn destroy(record: &Record, dir: &Path) {
    if record.pid > 0 && process_start(record.pid) == Some(record.pid_start) {
        // SAFETY: signals the container's own process (start time checked).
        unsafe { libc::kill(record.pid, libc::SIGKILL) };
        wait_gone(record.pid, record.pid_start);
    }
    if let NetNs::Path(p) = &record.netns {
        if let Some(ns) = network::open_netns(p) {
            network::disconnect(Some(&ns), &record.tap, record.iface.as_deref());
        }
    }
    cgroups::remove(&record.cgroups);
    let _ = std::fs::remove_dir_all(dir);
}

/// Waits (up to 10 s) until the process is gone or a zombie.
pub fn wait_gone(pid: i32, start: u64) {
    for _ in 0..1000 {
        if process_start(pid) != Some(start) {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}
