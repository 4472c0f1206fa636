//! Support for the tests that boot our test unikernels: where the guests
//! and the `ukvm` binary are, running ukvm with a time limit, and the KVM
//! availability check. [`solo5`] locates the real Solo5 images.
//!
//! Tests that need `/dev/kvm` fail with a message when it is missing;
//! setting `UKVM_SKIP_KVM_TESTS=1` turns them into skips instead.

pub mod debug;
pub mod engines;
pub mod kmsg;
pub mod net;
pub mod oci;
pub mod solo5;
pub mod user64;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Path of a test guest built from `tests/guests` (e.g. `"hello"`).
pub fn guest(name: &str) -> PathBuf {
    let path = Path::new(env!("UKVM_GUEST_DIR")).join(format!("{name}.bin"));
    assert!(path.exists(), "test guest {} was not built", path.display());
    path
}

/// Path of a real third-party image, `<repo root>/../shared/<dir>/<name>`
/// (`shared/` lies beside the clone, in CI too). Panics with a message
/// saying what is missing, so a test without its images fails, never skips.
pub fn shared_image(dir: &str, name: &str) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared")
        .join(dir);
    assert!(
        root.is_dir(),
        "{}: missing. This test boots the real {dir} images that lie in shared/{dir} \
         beside the repository (see shared/{dir}/README.txt)",
        root.display()
    );
    let path = root.join(name);
    assert!(
        path.is_file(),
        "{}: missing from ../shared/{dir} (see its README.txt for the expected files)",
        path.display()
    );
    path
}

/// Returns true if KVM tests should run. Panics with an explanation when
/// `/dev/kvm` is unusable, unless `UKVM_SKIP_KVM_TESTS=1` is set.
pub fn kvm_available() -> bool {
    let usable = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .map_err(|e| e.to_string());
    match usable {
        Ok(_) => true,
        Err(e) if std::env::var("UKVM_SKIP_KVM_TESTS").as_deref() == Ok("1") => {
            eprintln!("skipping: /dev/kvm unusable ({e}) and UKVM_SKIP_KVM_TESTS=1");
            false
        }
        Err(e) => panic!(
            "/dev/kvm is unusable ({e}): this test boots a guest. Run on a host with KVM \
             (root or the kvm group), or set UKVM_SKIP_KVM_TESTS=1 to skip such tests."
        ),
    }
}

/// The `ukvm` binary of this build (target/<profile>/ukvm).
pub fn ukvm_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> -> target/<profile>/ukvm
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let bin = dir.join("ukvm");
    assert!(
        bin.exists(),
        "{} not built: run `cargo test` at the workspace root (it builds the ukvm binary)",
        bin.display()
    );
    bin
}

/// What a ukvm process did.
#[derive(Debug)]
pub struct Outcome {
    /// Exit status (None if killed by a signal).
    pub status: Option<i32>,
    /// Guest serial output.
    pub stdout: String,
    /// ukvm's messages.
    pub stderr: String,
}

impl Outcome {
    /// Lines of guest output.
    pub fn lines(&self) -> Vec<&str> {
        self.stdout.lines().collect()
    }
}

/// Time limit for one guest run. Guests are tiny, but the KVM here
/// emulates ring-0 code ~1,000x slower than hardware.
pub const RUN_LIMIT: Duration = Duration::from_secs(60);

/// Runs `ukvm args...`, killing it after [`RUN_LIMIT`].
pub fn run_ukvm<I, S>(args: I) -> Outcome
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    run_with_limit(Command::new(ukvm_bin()).args(args), RUN_LIMIT)
}

/// Runs `cmd` with stdout/stderr captured, killing it after `limit`.
pub fn run_with_limit(cmd: &mut Command, limit: Duration) -> Outcome {
    wait_with_limit(spawn_captured(cmd), limit)
}

/// Starts `cmd` with stdin from /dev/null and stdout/stderr piped, for
/// [`wait_with_limit`].
pub fn spawn_captured(cmd: &mut Command) -> std::process::Child {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {:?}: {e}", cmd.get_program()))
}

/// Collects the output of `child` (what of stdout and stderr is piped;
/// the rest reads as empty) and waits for it, killing it after `limit`.
pub fn wait_with_limit(mut child: std::process::Child, limit: Duration) -> Outcome {
    fn reader<R: Read + Send + 'static>(r: Option<R>) -> std::thread::JoinHandle<String> {
        std::thread::spawn(move || {
            let mut s = String::new();
            if let Some(mut r) = r {
                let _ = r.read_to_string(&mut s);
            }
            s
        })
    }
    let out_reader = reader(child.stdout.take());
    let err_reader = reader(child.stderr.take());
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let status = child.wait().expect("wait");
            let stdout = out_reader.join().unwrap_or_default();
            let stderr = err_reader.join().unwrap_or_default();
            panic!(
                "the process ran past {limit:?} and was killed ({status}); output so far:\n{stdout}\n{stderr}"
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    Outcome {
        status: status.code(),
        stdout: out_reader.join().unwrap_or_default(),
        stderr: err_reader.join().unwrap_or_default(),
    }
}

/// A scratch directory removed when dropped.
pub struct TempDir(PathBuf);

impl TempDir {
    /// Creates a fresh directory under the system temp dir.
    pub fn new(tag: &str) -> TempDir {
        static COUNTER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("ukvm-test-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create temp dir");
        TempDir(path)
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.0
    }

    /// Path of `name` inside the directory.
    pub fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// True when running as root (needed for namespaces, TAP devices).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// A serial console for library tests: what the guest wrote, shared with
/// the test while the VM runs on another thread.
#[derive(Clone, Default)]
pub struct SerialBuffer(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for SerialBuffer {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl SerialBuffer {
    /// Everything written so far, as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
    }
}
