//! Bundles and runtime invocations for the `ukvm-oci` tests: a bundle is a
//! temporary directory with a rootfs holding one of our test guests and
//! its `/ukvm.json`, and a config.json; the runtime runs with a private
//! `--root` and `--log` (runc's JSON format), as an engine would call it.
//!
//! The test process makes itself a child subreaper, as containerd's shim
//! is, so the container process (orphaned when `create` exits) becomes its
//! child and its exit status can be read.

use crate::net::NetNs;
use crate::{is_root, kvm_available, TempDir};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The `ukvm-oci` binary of this build (next to `ukvm`).
pub fn runtime_bin() -> PathBuf {
    let bin = crate::ukvm_bin().with_file_name("ukvm-oci");
    assert!(
        bin.exists(),
        "{} not built: run `cargo build -p ukvm-oci` (or `cargo test` at the workspace root)",
        bin.display()
    );
    bin
}

/// Makes this process the reaper of orphaned descendants (like an
/// engine's shim), so container processes can be waited for.
pub fn become_subreaper() {
    // SAFETY: PR_SET_CHILD_SUBREAPER with a plain integer argument.
    let r = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    assert_eq!(r, 0, "prctl: {}", std::io::Error::last_os_error());
}

/// Waits for child `pid` to exit; returns its exit code, or 128 + the
/// signal that ended it. Panics after `limit`.
pub fn wait_exit(pid: i32, limit: Duration) -> i32 {
    let deadline = Instant::now() + limit;
    loop {
        let mut status = 0;
        // SAFETY: waitpid on our (adopted) child with a valid status pointer.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        assert!(r >= 0, "waitpid {pid}: {}", std::io::Error::last_os_error());
        if r == pid {
            if libc::WIFEXITED(status) {
                return libc::WEXITSTATUS(status);
            }
            return 128 + libc::WTERMSIG(status);
        }
        assert!(
            Instant::now() < deadline,
            "container process {pid} still runs after {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A bundle directory: `rootfs/` and `config.json`.
pub struct Bundle {
    dir: TempDir,
}

impl Bundle {
    /// A bundle whose rootfs holds test guest `guest` as `/<guest>.bin`
    /// and, when given, `ukvm_json` as `/ukvm.json`.
    pub fn new(guest: &str, ukvm_json: Option<&str>) -> Bundle {
        let dir = TempDir::new("oci-bundle");
        std::fs::create_dir(dir.join("rootfs")).expect("mkdir rootfs");
        std::fs::copy(
            crate::guest(guest),
            dir.join(&format!("rootfs/{guest}.bin")),
        )
        .expect("copy guest");
        if let Some(j) = ukvm_json {
            std::fs::write(dir.join("rootfs/ukvm.json"), j).expect("write ukvm.json");
        }
        let b = Bundle { dir };
        b.write_config(&Self::spec(json!([{"type": "network"}])));
        b
    }

    /// A minimal runtime spec with the given `linux.namespaces`.
    pub fn spec(namespaces: Value) -> Value {
        json!({
            "ociVersion": "1.0.2",
            "process": {"terminal": false, "user": {"uid": 0, "gid": 0},
                        "args": ["/unikernel"], "cwd": "/"},
            "root": {"path": "rootfs"},
            "linux": {"namespaces": namespaces}
        })
    }

    /// Writes `config.json`.
    pub fn write_config(&self, spec: &Value) {
        std::fs::write(self.path().join("config.json"), spec.to_string())
            .expect("write config.json");
    }

    /// The bundle directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// A file in the bundle.
    pub fn join(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// What the container wrote to stdout (the guest's serial console).
    pub fn stdout(&self) -> String {
        std::fs::read_to_string(self.join("stdout")).unwrap_or_default()
    }

    /// Waits until the guest printed `line`.
    pub fn wait_for_line(&self, line: &str, limit: Duration) {
        let deadline = Instant::now() + limit;
        while !self.stdout().lines().any(|l| l == line) {
            assert!(
                Instant::now() < deadline,
                "guest did not print {line:?}; stdout:\n{}\nstderr:\n{}",
                self.stdout(),
                std::fs::read_to_string(self.join("stderr")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// What one runtime command did.
#[derive(Debug)]
pub struct RunOutcome {
    /// Exit status.
    pub status: Option<i32>,
    /// Its stdout (state JSON, ...).
    pub stdout: String,
    /// The last line of the `--log` file, parsed (runc's JSON format).
    pub last_log: Option<Value>,
}

impl RunOutcome {
    /// The `msg` of the last log line, asserting it is a JSON error line.
    pub fn error(&self) -> String {
        let line = self
            .last_log
            .as_ref()
            .expect("an error line in the --log file");
        assert_eq!(line["level"], "error", "{line}");
        assert!(line["time"].is_string(), "{line}");
        line["msg"].as_str().expect("msg").to_string()
    }
}

/// The runtime with a private root and log file.
pub struct Runtime {
    root: TempDir,
    env: Vec<(String, String)>,
}

impl Default for Runtime {
    fn default() -> Self {
        Self::new()
    }
}

impl Runtime {
    /// A runtime with an empty root.
    pub fn new() -> Runtime {
        Runtime {
            root: TempDir::new("oci-root"),
            env: Vec::new(),
        }
    }

    /// Sets an environment variable for every invocation.
    pub fn env(mut self, k: &str, v: &str) -> Runtime {
        self.env.push((k.into(), v.into()));
        self
    }

    /// The `--root` directory.
    pub fn root(&self) -> &Path {
        self.root.path()
    }

    /// A command line `ukvm-oci --root R --log L --log-format json ARGS`.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(runtime_bin());
        c.arg("--root").arg(self.root.path().join("state"));
        c.arg("--log")
            .arg(self.root.join("log.json"))
            .args(["--log-format", "json"]);
        c.args(args).envs(self.env.iter().map(|(k, v)| (k, v)));
        c
    }

    /// Runs `cmd` (built by [`Runtime::command`]) to completion.
    pub fn finish(&self, cmd: &mut Command) -> RunOutcome {
        let _ = std::fs::remove_file(self.root.join("log.json"));
        let out = cmd.output().expect("run ukvm-oci");
        let log = std::fs::read_to_string(self.root.join("log.json")).unwrap_or_default();
        RunOutcome {
            status: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            last_log: log.lines().last().map(|l| {
                serde_json::from_str(l)
                    .unwrap_or_else(|e| panic!("log line {l:?} is not JSON: {e}"))
            }),
        }
    }

    /// Runs `ukvm-oci ... ARGS`.
    pub fn run(&self, args: &[&str]) -> RunOutcome {
        self.finish(&mut self.command(args))
    }

    /// `create --bundle B --pid-file B/pid ID`, the container's stdio going
    /// to B/stdout and B/stderr.
    pub fn create(&self, id: &str, bundle: &Bundle) -> RunOutcome {
        let b = bundle.path().to_str().expect("utf-8 path");
        let pid = bundle.join("pid");
        let mut cmd = self.command(&[
            "create",
            "--bundle",
            b,
            "--pid-file",
            pid.to_str().expect("utf-8"),
            id,
        ]);
        let out = std::fs::File::create(bundle.join("stdout")).expect("stdout file");
        let err = std::fs::File::create(bundle.join("stderr")).expect("stderr file");
        cmd.stdin(Stdio::null()).stdout(out).stderr(err);
        let o = cmd.status().expect("run ukvm-oci create");
        let log = std::fs::read_to_string(self.root.join("log.json")).unwrap_or_default();
        let _ = std::fs::remove_file(self.root.join("log.json"));
        RunOutcome {
            status: o.code(),
            stdout: String::new(),
            last_log: log
                .lines()
                .last()
                .and_then(|l| serde_json::from_str(l).ok()),
        }
    }

    /// `state ID`, parsed.
    pub fn state(&self, id: &str) -> Value {
        let o = self.run(&["state", id]);
        assert_eq!(o.status, Some(0), "state {id}: {:?}", o.last_log);
        serde_json::from_str(&o.stdout).unwrap_or_else(|e| panic!("state JSON {:?}: {e}", o.stdout))
    }

    /// The container's directory under the root.
    pub fn container_dir(&self, id: &str) -> PathBuf {
        self.root.path().join("state").join(id)
    }
}

impl Drop for Runtime {
    /// Force-deletes whatever a failed test left in the root.
    fn drop(&mut self) {
        let Ok(entries) = std::fs::read_dir(self.root.path().join("state")) else {
            return;
        };
        for e in entries.flatten() {
            let id = e.file_name().to_string_lossy().into_owned();
            let _ = self.command(&["delete", "--force", &id]).output();
        }
    }
}

/// Time limit for a guest to print or exit.
pub const LIMIT: Duration = Duration::from_secs(60);
/// Every hook kind, in the order the runtime spec runs them.
pub const HOOKS: [&str; 6] = [
    "prestart",
    "createRuntime",
    "createContainer",
    "startContainer",
    "poststart",
    "poststop",
];

/// Whether the runtime tests can run (KVM; root is required); makes
/// this process the subreaper of container processes.
pub fn can_run() -> bool {
    if !kvm_available() {
        return false;
    }
    assert!(
        is_root(),
        "the ukvm-oci tests need root (namespaces, TAPs, cgroups)"
    );
    become_subreaper();
    true
}

/// Adds hooks of every kind that save their stdin to B/hook-KIND.json and
/// append KIND to B/hook-order.
pub fn with_hooks(spec: &mut Value, bundle: &Bundle) {
    let mut hooks = serde_json::Map::new();
    for kind in HOOKS {
        let dir = bundle.path().display();
        let script = format!("cat > {dir}/hook-{kind}.json; echo {kind} >> {dir}/hook-order");
        hooks.insert(
            kind.into(),
            json!([{"path": "/bin/sh", "args": ["sh", "-c", script]}]),
        );
    }
    spec["hooks"] = Value::Object(hooks);
}

/// The container process from `--pid-file`.
pub fn pid_of(bundle: &Bundle) -> i32 {
    let text = std::fs::read_to_string(bundle.join("pid")).expect("--pid-file written");
    text.trim().parse().expect("pid")
}

/// The hook kinds that ran, in order.
pub fn hook_order(bundle: &Bundle) -> Vec<String> {
    let text = std::fs::read_to_string(bundle.join("hook-order")).unwrap_or_default();
    text.lines().map(String::from).collect()
}

/// A container network as engines make it: the container's namespace
/// with `eth0` (address, default route), its veth peer in a "host"
/// namespace.
pub struct PodNet {
    /// The "host" side, with the veth peer at 10.77.0.1.
    pub host: NetNs,
    /// The container's namespace, with eth0.
    pub pod: NetNs,
}

impl PodNet {
    /// The two namespaces, eth0 at `cidr` (none: no address) with a
    /// default route via 10.77.0.1.
    pub fn new(cidr: Option<&str>) -> PodNet {
        let (host, pod) = (NetNs::new(), NetNs::new());
        pod.ip(&["link", "set", "lo", "up"]);
        pod.add_veth("eth0", &host, "10.77.0.1/24");
        if let Some(c) = cidr {
            pod.ip(&["addr", "add", c, "dev", "eth0"]);
            pod.ip(&["route", "add", "default", "via", "10.77.0.1"]);
        }
        PodNet { host, pod }
    }
}

/// A bundle of the `net` guest in `pod`'s namespace, with every hook
/// and a cgroup.
pub fn net_bundle(pod: &NetNs) -> Bundle {
    let b = Bundle::new(
        "net",
        Some(r#"{"kernel": "/net.bin", "cmdline": "ip={{ip}}", "net": true}"#),
    );
    let mut spec = Bundle::spec(json!([{"type": "network", "path": pod.path()}]));
    spec["linux"]["cgroupsPath"] = json!(cgroup_path(pod));
    with_hooks(&mut spec, &b);
    b.write_config(&spec);
    b
}

/// A cgroup path unique to the test's namespace.
pub fn cgroup_path(pod: &NetNs) -> String {
    format!("/ukvm-oci-test-{}", pod.name())
}

impl PodNet {
    /// The MAC address of the container's eth0.
    pub fn mac(&self) -> String {
        let line = self.pod.ip(&["-br", "link", "show", "eth0"]);
        line.split_whitespace()
            .nth(2)
            .expect("eth0 MAC")
            .to_string()
    }
}
