//! The slow Linux boot test: the Debian cloud kernel (bzImage) with a
//! busybox initramfs built here, whose /init insmods the virtio and isofs
//! modules, mounts an ISO (made here with genisoimage) over virtio-blk,
//! prints a file from it and a marker line, and powers off through ACPI.
//!
//! Opt-in: it runs only with `UKVM_SLOW_TESTS=1` (and the fixture from
//! `tests/fixtures/fetch-linux.sh`, `busybox-static`, `genisoimage`).
//! Where KVM runs guest ring 0 in its instruction emulator (see the shared
//! README) the boot takes minutes; with VMX/SVM it takes seconds.
//!
//! The initramfs is an uncompressed newc cpio written by this test (so the
//! console device node needs no root, and the kernel spends no time
//! inflating it). Module signatures are stripped: checking them means
//! SHA-256 over every module in SIMD code, which is slow when emulated; the
//! kernel (no `module.sig_enforce`) loads them and notes the taint.
//! `clearcpuid=smap` keeps the kernel from using STAC/CLAC around every
//! user-memory access: on this KVM each would be an emulation exit.
//! Clearing AVX keeps the kernel's SIMD code (ChaCha20 for the RNG, when
//! the initramfs is unpacked) on SSE, which ukvm's instruction completion
//! covers; VEX-encoded instructions it does not. `nokaslr` keeps RIPs in
//! ukvm's diagnostics equal to System.map's; `nowatchdog` spares the
//! soft-lockup reports that emulated speed provokes.

use std::ffi::OsStr;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use ukvm_tests::{kvm_available, ukvm_bin, TempDir};

/// Printed by /init once the ISO file was read.
const MARKER: &str = "UKVM-LINUX-BOOT-OK";
/// Contents of the file on the ISO.
const ISO_TEXT: &str = "hello from an ISO 9660 image on virtio-blk";
const MODULE_SIG_MAGIC: &[u8] = b"~Module signature appended~\n";

fn fixture_dir() -> PathBuf {
    std::env::var_os("UKVM_LINUX_FIXTURE")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/fixtures/linux"))
}

/// Why the test cannot run here, if it cannot.
fn missing_prerequisite(dir: &Path) -> Option<String> {
    if std::env::var_os("UKVM_SLOW_TESTS").is_none_or(|v| v != "1") {
        return Some("set UKVM_SLOW_TESTS=1 to boot Linux (takes minutes here)".into());
    }
    if !kvm_available() {
        return Some("no /dev/kvm".into());
    }
    if bzimage(dir).is_none() || !dir.join("modules/order").exists() {
        return Some(format!(
            "no Debian kernel and modules in {} (run tests/fixtures/fetch-linux.sh)",
            dir.display()
        ));
    }
    for tool in ["/bin/busybox", "/usr/bin/genisoimage"] {
        if !Path::new(tool).exists() {
            return Some(format!(
                "{tool} missing (apt-get install busybox-static genisoimage)"
            ));
        }
    }
    None
}

fn bzimage(dir: &Path) -> Option<PathBuf> {
    std::fs::read_dir(dir.join("boot"))
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("vmlinuz-"))
        })
}

/// A module without its appended signature (the kernel then loads it
/// unverified, which costs no SIMD hashing).
fn strip_signature(ko: Vec<u8>) -> Vec<u8> {
    if !ko.ends_with(MODULE_SIG_MAGIC) {
        return ko;
    }
    // struct module_signature (12 bytes) precedes the magic; its last 4
    // bytes are the signature length, big-endian.
    let info_end = ko.len() - MODULE_SIG_MAGIC.len();
    let sig_len = u32::from_be_bytes(ko[info_end - 4..info_end].try_into().unwrap()) as usize;
    let mut ko = ko;
    ko.truncate(info_end - 12 - sig_len);
    ko
}

/// An uncompressed newc ("070701") cpio archive.
#[derive(Default)]
struct Cpio {
    out: Vec<u8>,
    ino: u32,
}

impl Cpio {
    fn entry(&mut self, name: &str, mode: u32, data: &[u8], rdev: (u32, u32)) {
        self.ino += 1;
        let fields = [
            self.ino,
            mode,
            0,
            0,
            1,
            0,
            data.len() as u32,
            0,
            0,
            rdev.0,
            rdev.1,
            name.len() as u32 + 1,
            0,
        ];
        self.out.extend_from_slice(b"070701");
        for f in fields {
            self.out.extend_from_slice(format!("{f:08X}").as_bytes());
        }
        self.out.extend_from_slice(name.as_bytes());
        self.out.push(0);
        self.pad();
        self.out.extend_from_slice(data);
        self.pad();
    }

    fn pad(&mut self) {
        while !self.out.len().is_multiple_of(4) {
            self.out.push(0);
        }
    }

    fn dir(&mut self, name: &str) {
        self.entry(name, 0o040755, &[], (0, 0));
    }

    fn file(&mut self, name: &str, mode: u32, data: &[u8]) {
        self.entry(name, 0o100000 | mode, data, (0, 0));
    }

    fn finish(mut self) -> Vec<u8> {
        self.entry("TRAILER!!!", 0, &[], (0, 0));
        self.out
    }
}

/// The /init script: modules, the ISO, the marker, power off.
fn init_script(modules: &[String]) -> String {
    let mut s = String::from(
        "#!/bin/busybox sh\n\
         /bin/busybox --install -s /bin\n\
         mount -t proc proc /proc\n\
         mount -t sysfs sys /sys\n\
         mount -t devtmpfs dev /dev\n\
         echo ukvm-init: userspace up\n",
    );
    for m in modules {
        s.push_str(&format!(
            "insmod /lib/modules/{m} || echo ukvm-init: insmod {m} failed\n"
        ));
    }
    s.push_str(
        "echo ukvm-init: modules loaded\n\
         n=0; while [ ! -b /dev/vda ] && [ $n -lt 100 ]; do sleep 0.1; n=$((n+1)); done\n\
         cat /sys/block/vda/device/modalias 2>/dev/null\n\
         mount -t iso9660 -o ro /dev/vda /mnt && cat /mnt/hello.txt && echo && echo ",
    );
    s.push_str(MARKER);
    s.push_str("\npoweroff -f\n");
    s
}

fn initramfs(fixture: &Path) -> Vec<u8> {
    let order = std::fs::read_to_string(fixture.join("modules/order")).unwrap();
    let modules: Vec<String> = order.lines().map(str::to_string).collect();
    let mut cpio = Cpio::default();
    for d in ["bin", "dev", "proc", "sys", "mnt", "lib", "lib/modules"] {
        cpio.dir(d);
    }
    // The kernel opens /dev/console for init before anything is mounted.
    cpio.entry("dev/console", 0o020600, &[], (5, 1));
    cpio.file(
        "bin/busybox",
        0o755,
        &std::fs::read("/bin/busybox").unwrap(),
    );
    for m in &modules {
        let ko = std::fs::read(fixture.join("modules").join(m)).unwrap();
        cpio.file(&format!("lib/modules/{m}"), 0o644, &strip_signature(ko));
    }
    cpio.file("init", 0o755, init_script(&modules).as_bytes());
    cpio.finish()
}

fn iso(dir: &Path) -> PathBuf {
    let src = dir.join("iso");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("hello.txt"), ISO_TEXT).unwrap();
    let iso = dir.join("disk.iso");
    let status = Command::new("genisoimage")
        .args(["-quiet", "-V", "UKVMTEST", "-o"])
        .arg(&iso)
        .arg(&src)
        .status()
        .unwrap();
    assert!(status.success(), "genisoimage failed");
    iso
}

#[test]
fn strip_signature_cuts_the_appended_signature() {
    let mut ko = b"\x7fELF-module-bytes".to_vec();
    let body = ko.clone();
    ko.extend_from_slice(&[0xAB; 300]); // the PKCS#7 signature
    ko.extend_from_slice(&[0, 0, 2, 0, 0, 0, 0, 0]);
    ko.extend_from_slice(&300u32.to_be_bytes());
    ko.extend_from_slice(MODULE_SIG_MAGIC);
    assert_eq!(strip_signature(ko), body);
    assert_eq!(strip_signature(body.clone()), body);
}

#[test]
fn cpio_entries_are_newc_and_aligned() {
    let mut c = Cpio::default();
    c.file("init", 0o755, b"abc");
    let out = c.finish();
    assert_eq!(&out[..6], b"070701");
    assert_eq!(&out[6 + 8..6 + 16], b"000081ED", "mode");
    assert_eq!(&out[6 + 48..6 + 56], b"00000003", "filesize");
    assert_eq!(&out[110..115], b"init\0");
    // Header + name padded to 4, data padded to 4, then the trailer.
    assert_eq!(&out[116..119], b"abc");
    assert_eq!(&out[120..126], b"070701");
    assert_eq!(out.len() % 4, 0);
}

/// How long the boot may take (`UKVM_SLOW_TEST_LIMIT_S`, default 30 min).
fn time_limit() -> Duration {
    let secs = std::env::var("UKVM_SLOW_TEST_LIMIT_S")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1800);
    Duration::from_secs(secs)
}

/// Runs ukvm with its console in `dir/console.log` (followable with
/// `tail -f` while the guest boots) and its messages in `dir/ukvm.log`.
fn run_logged(dir: &Path, args: &[&OsStr]) -> (Option<i32>, String, String, Duration) {
    let console = dir.join("console.log");
    let messages = dir.join("ukvm.log");
    let start = Instant::now();
    let mut child = Command::new(ukvm_bin())
        .args(args)
        .stdin(Stdio::null())
        .stdout(File::create(&console).unwrap())
        .stderr(File::create(&messages).unwrap())
        .spawn()
        .unwrap();
    let limit = time_limit();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status.code();
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let read = |p: &Path| String::from_utf8_lossy(&std::fs::read(p).unwrap()).into_owned();
    (status, read(&console), read(&messages), start.elapsed())
}

/// Fails at once where this host's KVM enters the SYSCALL handler in ring
/// 3 (`tests/guests/user64.c`, `tests/tests/user_mode.rs`): Linux's /init
/// dies at its first system call there, after the whole emulated boot
/// (93 minutes in the run of 2026-11-30). `UKVM_LINUX_BOOT_ANYWAY=1` boots
/// regardless.
fn check_user_mode_syscall() {
    if std::env::var_os("UKVM_LINUX_BOOT_ANYWAY").is_some_and(|v| v == "1") {
        return;
    }
    let out = ukvm_tests::user64::run();
    let fault = ukvm_tests::user64::ring3_syscall_fault(&out);
    assert!(
        fault.is_none(),
        "this host's KVM runs a SYSCALL from user mode into the kernel's entry point \
         without leaving ring 3 (tests/guests/user64.c: {}), so Linux's /init dies at \
         its first system call (init segfaults at entry_SYSCALL_64, error 15) after the \
         whole boot. Not booting; UKVM_LINUX_BOOT_ANYWAY=1 boots regardless.",
        fault.unwrap_or_default()
    );
}

#[test]
fn debian_kernel_boots_busybox_and_reads_an_iso_over_virtio_blk() {
    let fixture = fixture_dir();
    if let Some(why) = missing_prerequisite(&fixture) {
        eprintln!("skipping the Linux boot test: {why}");
        return;
    }
    check_user_mode_syscall();
    // UKVM_LINUX_BOOT_DIR keeps the initramfs, the ISO and the logs.
    let temp;
    let dir = match std::env::var_os("UKVM_LINUX_BOOT_DIR") {
        Some(d) => {
            std::fs::create_dir_all(&d).unwrap();
            PathBuf::from(d)
        }
        None => {
            temp = TempDir::new("linux-boot");
            temp.join("")
        }
    };
    let initrd = dir.join("initramfs.cpio");
    std::fs::write(&initrd, initramfs(&fixture)).unwrap();
    let iso = iso(&dir);
    let kernel = bzimage(&fixture).unwrap();
    let cmdline =
        "console=ttyS0 earlyprintk=ttyS0 reboot=k panic=-1 mitigations=off no_timer_check \
         tsc=reliable clearcpuid=smap,avx,avx2,avx512f nokaslr nowatchdog";
    let args: Vec<&OsStr> = vec![
        "--kernel".as_ref(),
        kernel.as_os_str(),
        "--initrd".as_ref(),
        initrd.as_os_str(),
        "--disk".as_ref(),
        iso.as_os_str(),
        "--mem".as_ref(),
        "256".as_ref(),
        "--timings".as_ref(),
        "--cmdline".as_ref(),
        cmdline.as_ref(),
    ];
    let (status, console, messages, took) = run_logged(&dir, &args);
    let last = console
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or_default();
    eprintln!(
        "Linux boot: {:.1} s, status {status:?}, last line: {last}\n{messages}",
        took.as_secs_f64()
    );
    let all = format!("{console}\n--- ukvm ---\n{messages}");
    assert!(status.is_some(), "killed after {took:?}:\n{all}");
    assert!(console.contains(ISO_TEXT), "{all}");
    assert!(console.contains(MARKER), "{all}");
    assert_eq!(status, Some(0), "{all}");
    assert!(messages.contains("\"outcome\":\"poweroff\""), "{all}");
}
