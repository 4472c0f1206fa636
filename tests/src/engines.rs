//! Container engines (Debian's containerd + ctr, Podman, Docker) driving
//! `ukvm-oci`, for the end-to-end tests: each test starts its own daemon
//! with a private root, state and socket, builds an OCI image of a test
//! guest locally with buildah (no registry), and removes everything it
//! made. Names, subnets and ports are unique per test process.

use crate::TempDir;
use std::io::{BufRead, BufReader};
use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A tag unique to this process and call (for bridge names, <= 15
/// bytes), and the first three octets of a /24 unique to them too:
/// 10.200-249.X, clear of the 10.0-99 nets the other tests use, and
/// distinct for distinct pids (mod 12,500) so that test runs of several
/// worktrees at once do not collide.
pub fn unique() -> (String, String) {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let pid = std::process::id() as usize;
    let tag = format!("uke{}{n}", pid % 100_000);
    let net = format!("10.{}.{}", 200 + pid % 50, (pid / 50 + n) % 250);
    (tag, net)
}

/// Panics, naming the Debian package, when `program` is missing.
pub fn require(program: &str, package: &str) {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found,
        "{program} is not installed: this end-to-end test needs it \
         (apt-get install {package}, or run scripts/setup.sh)"
    );
}

/// Runs a command, asserting success; returns stdout.
pub fn run(cmd: &mut Command) -> String {
    let out = output(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs a command; returns its output whatever the status.
pub fn output(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

/// Retries `f` until it returns Some, for up to `limit`.
pub fn wait_until<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// An OCI image of a test guest, built with buildah in private storage
/// and exported as an OCI archive and a docker archive.
pub struct Image {
    /// `localhost/ukvm-<guest>:test`.
    pub name: String,
    /// The OCI archive (`ctr images import`, `podman pull oci-archive:`).
    pub oci_archive: PathBuf,
    /// The docker archive (`docker load`).
    pub docker_archive: PathBuf,
    _dir: TempDir,
}

impl Image {
    /// A `FROM scratch` image holding `/<guest>.bin` and `/ukvm.json`.
    pub fn build(guest: &str, ukvm_json: &str) -> Image {
        require("buildah", "buildah");
        let dir = TempDir::new("image");
        std::fs::copy(crate::guest(guest), dir.join(&format!("{guest}.bin"))).expect("copy guest");
        std::fs::write(dir.join("ukvm.json"), ukvm_json).expect("ukvm.json");
        let name = format!("localhost/ukvm-{guest}:test");
        let storage = |c: &mut Command| {
            c.arg("--root").arg(dir.join("storage"));
            c.arg("--runroot").arg(dir.join("run"));
            c.args(["--storage-driver", "vfs"]);
        };
        let buildah = |args: &[&str]| {
            let mut c = Command::new("buildah");
            storage(&mut c);
            c.args(args).current_dir(dir.path());
            run(&mut c).trim().to_string()
        };
        let ctr = buildah(&["from", "scratch"]);
        buildah(&["copy", &ctr, &format!("{guest}.bin"), "ukvm.json", "/"]);
        buildah(&[
            "config",
            "--entrypoint",
            &format!("[\"/{guest}.bin\"]"),
            &ctr,
        ]);
        buildah(&["commit", "-q", &ctr, &name]);
        buildah(&["rm", &ctr]);
        let (oci, docker) = (dir.join("oci.tar"), dir.join("docker.tar"));
        buildah(&[
            "push",
            "-q",
            &name,
            &format!("oci-archive:{}:{name}", oci.display()),
        ]);
        buildah(&[
            "push",
            "-q",
            &name,
            &format!("docker-archive:{}:{name}", docker.display()),
        ]);
        Image {
            name,
            oci_archive: oci,
            docker_archive: docker,
            _dir: dir,
        }
    }
}

/// A daemon process, stopped (SIGTERM, then SIGKILL) when dropped.
pub struct Daemon {
    child: Child,
    what: &'static str,
}

impl Daemon {
    /// Starts `cmd` with its output in `log`.
    pub fn start(what: &'static str, cmd: &mut Command, log: &Path) -> Daemon {
        let log = std::fs::File::create(log).expect("daemon log");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
        Daemon { child, what }
    }

    /// Stops the daemon and waits for it.
    pub fn stop(&mut self) {
        // SAFETY: signals our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(20);
        while matches!(self.child.try_wait(), Ok(None)) {
            if Instant::now() > deadline {
                eprintln!("{} ignored SIGTERM: killing it", self.what);
                let _ = self.child.kill();
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.wait();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A Linux bridge made by the test, deleted when dropped.
pub struct Bridge(pub String);

impl Bridge {
    /// A bridge an engine or CNI will create, deleted when dropped.
    pub fn adopt(name: &str) -> Bridge {
        Bridge(name.to_string())
    }

    /// Creates `name` with `cidr` on it, up.
    pub fn new(name: &str, cidr: &str) -> Bridge {
        run(Command::new("ip").args(["link", "add", name, "type", "bridge"]));
        let b = Bridge(name.to_string());
        run(Command::new("ip").args(["addr", "add", cidr, "dev", name]));
        run(Command::new("ip").args(["link", "set", name, "up"]));
        b
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["link", "del", &self.0]).status();
    }
}

/// A free UDP port on the host.
pub fn free_udp_port() -> u16 {
    let s = UdpSocket::bind("0.0.0.0:0").expect("bind");
    s.local_addr().expect("addr").port()
}

/// Sends a datagram to `addr` and checks the echo, byte for byte.
pub fn udp_echo(addr: &str) {
    let sock = UdpSocket::bind("0.0.0.0:0").expect("bind UDP socket");
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let msg = format!("ukvm-oci through an engine to {addr}");
    let mut buf = [0u8; 256];
    // The first datagram may meet an ARP or conntrack miss: try thrice.
    for _ in 0..3 {
        sock.send_to(msg.as_bytes(), addr).expect("send");
        if let Ok((n, _)) = sock.recv_from(&mut buf) {
            assert_eq!(&buf[..n], msg.as_bytes(), "echo from {addr}");
            return;
        }
    }
    panic!("no UDP echo from {addr}");
}

/// Pings `ip` from the host: replies received out of `count`.
pub fn ping(ip: &str, count: u32) -> u32 {
    let out = output(Command::new("ping").args([
        "-c",
        &count.to_string(),
        "-i",
        "0.05",
        "-W",
        "2",
        "-q",
        ip,
    ]));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| {
            let (_, rest) = l.split_once("transmitted, ")?;
            rest.split_whitespace().next()?.parse().ok()
        })
        .unwrap_or(0)
}

/// The interfaces enslaved to `bridge` (the containers' host-side veths).
pub fn bridge_ports(bridge: &str) -> Vec<String> {
    let out = output(Command::new("ip").args(["-br", "link", "show", "master", bridge]));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(|n| n.split('@').next().unwrap_or(n).to_string())
        .collect()
}

/// An exclusive lock on `path` (created if needed), held until dropped:
/// serialises tests that must touch a shared host path.
pub struct FileLock {
    // Closing the file releases the lock.
    _file: std::fs::File,
}

impl FileLock {
    /// Blocks until the lock is ours.
    pub fn acquire(path: &Path) -> FileLock {
        use std::os::unix::io::AsRawFd;
        let f = std::fs::File::create(path).expect("lock file");
        // SAFETY: flock on a descriptor we own.
        let r = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) };
        assert_eq!(r, 0, "flock {}", path.display());
        FileLock { _file: f }
    }
}

/// Runs a closure when dropped: clean-up that must happen when a test's
/// assertion fails half-way.
pub struct OnDrop<F: FnMut()>(pub F);

impl<F: FnMut()> Drop for OnDrop<F> {
    fn drop(&mut self) {
        (self.0)();
    }
}

/// A file that is removed when dropped.
pub struct RemoveOnDrop(pub PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Reads lines from `r` on a thread until one equals `line`.
pub fn wait_for_line(r: impl std::io::Read + Send + 'static, line: &'static str, limit: Duration) {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for l in BufReader::new(r).lines() {
            let Ok(l) = l else { break };
            if l == line {
                let _ = tx.send(());
            }
        }
    });
    rx.recv_timeout(limit)
        .unwrap_or_else(|_| panic!("the guest did not print {line:?}"));
}
