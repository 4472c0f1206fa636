//! Network namespaces and TAP interfaces for the network tests, and a
//! guest running under ukvm inside such a namespace.
//!
//! Every test makes its own namespace with a unique name (process id and a
//! counter), creates its TAPs inside it and runs ukvm there (`ip netns
//! exec`), so nothing touches the host's own interfaces. Dropping the
//! [`NetNs`] deletes the namespace and with it every TAP in it, also when
//! the test panics.

use std::io::{BufRead, BufReader};
use std::net::UdpSocket;
use std::os::unix::io::AsRawFd;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

static COUNTER: AtomicUsize = AtomicUsize::new(0);

fn ip(args: &[&str]) -> Output {
    let out = Command::new("ip")
        .args(args)
        .output()
        .expect("run ip (iproute2)");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A network namespace, deleted (with its TAPs) when dropped.
pub struct NetNs {
    name: String,
    /// Prefix for TAP names, unique to this namespace (IFNAMSIZ: <= 15).
    tag: String,
    taps: AtomicUsize,
}

impl NetNs {
    /// Creates a fresh namespace with its loopback up.
    pub fn new() -> NetNs {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        let ns = NetNs {
            name: format!("ukvm-test-{pid}-{n}"),
            tag: format!("uk{}n{n}", pid % 100_000),
            taps: AtomicUsize::new(0),
        };
        ip(&["netns", "add", &ns.name]);
        ip(&["-n", &ns.name, "link", "set", "lo", "up"]);
        ns
    }

    /// The namespace's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Creates a TAP with the host side at `cidr` (e.g. "10.0.0.1/24") and
    /// the given MTU, up. Returns its name.
    pub fn add_tap(&self, cidr: &str, mtu: u32) -> String {
        self.add_tap_owned(cidr, mtu, None)
    }

    /// [`NetNs::add_tap`], the TAP owned by `user` (a name or uid), who
    /// can then attach to it without privileges.
    pub fn add_tap_owned(&self, cidr: &str, mtu: u32, user: Option<&str>) -> String {
        let t = format!("{}t{}", self.tag, self.taps.fetch_add(1, Ordering::Relaxed));
        let mut add = vec!["-n", &self.name, "tuntap", "add", &t, "mode", "tap"];
        if let Some(user) = user {
            add.extend(["user", user]);
        }
        ip(&add);
        ip(&["-n", &self.name, "addr", "add", cidr, "dev", &t]);
        ip(&[
            "-n",
            &self.name,
            "link",
            "set",
            &t,
            "mtu",
            &mtu.to_string(),
            "up",
        ]);
        t
    }

    /// `ip -n NAME args...`, asserting success; returns stdout.
    pub fn ip(&self, args: &[&str]) -> String {
        let mut all = vec!["-n", &self.name];
        all.extend_from_slice(args);
        String::from_utf8_lossy(&ip(&all).stdout).into_owned()
    }

    /// `tc -n NAME args...`'s stdout.
    pub fn tc(&self, args: &[&str]) -> String {
        let out = Command::new("tc")
            .args(["-n", &self.name])
            .args(args)
            .output()
            .expect("run tc (iproute2)");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The namespace's file (for a runtime spec's `path`).
    pub fn path(&self) -> String {
        format!("/var/run/netns/{}", self.name)
    }

    /// Creates a veth pair, `inner` here and the other end in `outer_ns`
    /// at `outer_cidr`, both up; returns the outer end's name.
    pub fn add_veth(&self, inner: &str, outer_ns: &NetNs, outer_cidr: &str) -> String {
        let outer = format!("{}v{}", self.tag, self.taps.fetch_add(1, Ordering::Relaxed));
        ip(&[
            "-n",
            &self.name,
            "link",
            "add",
            inner,
            "type",
            "veth",
            "peer",
            "name",
            &outer,
            "netns",
            &outer_ns.name,
        ]);
        ip(&["-n", &self.name, "link", "set", inner, "up"]);
        ip(&[
            "-n",
            &outer_ns.name,
            "addr",
            "add",
            outer_cidr,
            "dev",
            &outer,
        ]);
        ip(&["-n", &outer_ns.name, "link", "set", &outer, "up"]);
        outer
    }

    /// Deletes a TAP while it may be in use.
    pub fn delete_tap(&self, tap: &str) {
        ip(&["-n", &self.name, "link", "del", tap]);
    }

    /// `program args...` run inside the namespace.
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, program]);
        c
    }

    /// Pings `addr` `count` times, 10 ms apart; returns replies received.
    pub fn ping(&self, addr: &str, count: u32) -> u32 {
        let out = self
            .command("ping")
            .args([
                "-c",
                &count.to_string(),
                "-i",
                "0.01",
                "-W",
                "2",
                "-q",
                addr,
            ])
            .output()
            .expect("run ping (apt-get install iputils-ping)");
        received(&String::from_utf8_lossy(&out.stdout))
    }

    /// A UDP socket bound inside the namespace (a socket keeps the
    /// namespace it was created in, whichever thread uses it later).
    pub fn udp_socket(&self) -> UdpSocket {
        let path = format!("/var/run/netns/{}", self.name);
        std::thread::spawn(move || {
            let ns = std::fs::File::open(&path).expect("open netns");
            // SAFETY: setns on this thread only; the fd is a valid netns
            // file, and the thread ends right after making the socket.
            let r = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(r, 0, "setns: {}", std::io::Error::last_os_error());
            UdpSocket::bind("0.0.0.0:0").expect("bind UDP socket")
        })
        .join()
        .expect("socket thread")
    }

    /// Starts `program args...` (a monitor: ukvm under another name,
    /// solo5-hvt) inside the namespace.
    pub fn spawn(&self, program: &str, args: &[&str]) -> RunningGuest {
        RunningGuest::spawn(self.command(program).args(args))
    }

    /// Floods `addr` with `count` pings (`ping -f`, optionally with a
    /// payload `pattern`) for at most `limit_s` seconds; returns the
    /// replies.
    pub fn ping_flood(&self, addr: &str, count: u32, pattern: Option<&str>, limit_s: u32) -> u32 {
        let mut cmd = self.command("ping");
        cmd.args([
            "-f",
            "-q",
            "-c",
            &count.to_string(),
            "-w",
            &limit_s.to_string(),
        ]);
        if let Some(p) = pattern {
            cmd.args(["-p", p]);
        }
        let out = cmd
            .arg(addr)
            .output()
            .expect("run ping (apt-get install iputils-ping)");
        received(&String::from_utf8_lossy(&out.stdout))
    }

    /// Starts `ukvm args...` inside the namespace.
    pub fn spawn_ukvm(&self, args: &[&str]) -> RunningGuest {
        self.spawn_ukvm_via(&[], args)
    }

    /// Starts `wrapper... ukvm args...` inside the namespace (e.g.
    /// `setpriv` options); the wrapper must exec ukvm, so that the
    /// process is ukvm's.
    pub fn spawn_ukvm_via(&self, wrapper: &[&str], args: &[&str]) -> RunningGuest {
        let ukvm = crate::ukvm_bin();
        let mut cmd = match wrapper.split_first() {
            Some((first, rest)) => {
                let mut c = self.command(first);
                c.args(rest).arg(&ukvm);
                c
            }
            None => self.command(ukvm.to_str().expect("utf-8 path")),
        };
        RunningGuest::spawn(cmd.args(args))
    }
}

impl Default for NetNs {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        // Deleting the namespace deletes the TAPs in it. Not asserted: a
        // panic in drop while unwinding would abort the test binary.
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// Replies in ping's summary: "100 packets transmitted, 100 received, ...".
fn received(text: &str) -> u32 {
    text.lines()
        .find_map(|l| {
            let (_, rest) = l.split_once("transmitted, ")?;
            rest.split_whitespace().next()?.parse().ok()
        })
        .unwrap_or(0)
}

/// A ukvm process whose output is collected; killed when dropped.
pub struct RunningGuest {
    child: Child,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
}

fn collect(r: impl std::io::Read + Send + 'static, into: Arc<Mutex<String>>) {
    std::thread::spawn(move || {
        for line in BufReader::new(r).lines() {
            let Ok(line) = line else { break };
            let mut s = into.lock().unwrap();
            s.push_str(&line);
            s.push('\n');
        }
    });
}

impl RunningGuest {
    /// Starts `cmd` with its output collected.
    fn spawn(cmd: &mut Command) -> RunningGuest {
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn the monitor");
        RunningGuest::new(child)
    }

    fn new(mut child: Child) -> RunningGuest {
        let stdout = Arc::new(Mutex::new(String::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        collect(child.stdout.take().expect("stdout"), stdout.clone());
        collect(child.stderr.take().expect("stderr"), stderr.clone());
        RunningGuest {
            child,
            stdout,
            stderr,
        }
    }

    /// Guest output so far.
    pub fn stdout(&self) -> String {
        self.stdout.lock().unwrap().clone()
    }

    /// ukvm's messages so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// ukvm's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether ukvm still runs.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Waits up to `limit` for the monitor to exit; its exit status, or
    /// None if it still runs (or a signal ended it).
    pub fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                // Let the output readers drain the pipes.
                std::thread::sleep(Duration::from_millis(50));
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Waits until the guest printed `line`; panics with the output on
    /// timeout or if ukvm exits first.
    pub fn wait_for(&mut self, line: &str, limit: Duration) {
        self.wait_until(line, |l| l == line, limit);
    }

    /// Waits until the guest printed a line starting with `prefix`, and
    /// returns that line; panics as [`RunningGuest::wait_for`] does.
    pub fn wait_for_prefix(&mut self, prefix: &str, limit: Duration) -> String {
        self.wait_until(prefix, |l| l.starts_with(prefix), limit)
    }

    fn wait_until(&mut self, what: &str, found: impl Fn(&str) -> bool, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(l) = self.stdout().lines().find(|l| found(l)) {
                return l.to_string();
            }
            let exited = !self.running();
            if exited || Instant::now() > deadline {
                panic!(
                    "guest did not print {what:?} ({}); stdout:\n{}\nstderr:\n{}",
                    if exited { "ukvm exited" } else { "timed out" },
                    self.stdout(),
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for RunningGuest {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
