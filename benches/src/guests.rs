//! The guests the benchmark boots, and how each monitor is told to boot
//! them. A guest that needs a disk or a NIC adds its extra arguments here.

use crate::monitors::Monitor;
use std::path::{Path, PathBuf};

/// One guest and what proves it ran.
pub struct Guest {
    /// Name in the report.
    pub name: &'static str,
    /// Kernel image.
    pub kernel: PathBuf,
    /// Kernel command line.
    pub cmdline: &'static str,
    /// Guest memory, MiB (the same for every monitor).
    pub mem_mib: u64,
    /// Text of the guest's first line; "ready" is when that whole line
    /// has reached our pipe.
    pub ready_marker: Option<&'static str>,
    /// Output the guest must print (checks that it really ran).
    pub must_print: Option<&'static str>,
    /// Process exit status every monitor must return.
    pub status: i32,
    /// Extra ukvm arguments (disks, NICs).
    pub ukvm_args: Vec<String>,
    /// Extra QEMU arguments (disks, NICs).
    pub qemu_args: Vec<String>,
    /// Monitors that cannot boot this guest, and why (reported, not run).
    pub cannot_run: Vec<(Monitor, &'static str)>,
    /// Why this guest is in the list.
    pub why: &'static str,
}

/// A TAP interface the benchmark creates for the NIC guest (root only) and
/// deletes when dropped.
pub struct BenchTap(pub String);

impl BenchTap {
    /// Creates `ukvmb<pid>` with `ip`; `None` (and a note) when that fails.
    pub fn create() -> Option<BenchTap> {
        let name = format!("ukvmb{}", std::process::id());
        let made = std::process::Command::new("ip")
            .args(["tuntap", "add", "dev", &name, "mode", "tap"])
            .stderr(std::process::Stdio::null())
            .status();
        if made.is_ok_and(|s| s.success()) {
            Some(BenchTap(name))
        } else {
            println!("(no TAP device: run as root for the guest with a disk and a NIC)");
            None
        }
    }
}

impl Drop for BenchTap {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["link", "del", &self.0])
            .status();
    }
}

/// Copies the test guests (`*.bin` in `dir`) into `scratch/g` and returns
/// that directory. A Multiboot guest's command line starts with its kernel's
/// path, as GRUB and QEMU pass it, and our guests skip that word one
/// emulated instruction per byte or so: from the build tree's ~100-byte path
/// `hello-quiet` took ~0.3 ms longer than from a 16-byte one (2.90 against
/// 2.60 ms median, 60 alternating runs). A short path of the same length
/// wherever the checkout lies keeps that out of the figures, for every
/// monitor alike.
pub fn copy_guests(dir: &Path, scratch: &Path) -> Result<PathBuf, String> {
    let to = scratch.join("g");
    let fail = |what: &Path, e: std::io::Error| format!("{}: {e}", what.display());
    std::fs::create_dir_all(&to).map_err(|e| fail(&to, e))?;
    for entry in std::fs::read_dir(dir).map_err(|e| fail(dir, e))? {
        let path = entry.map_err(|e| fail(dir, e))?.path();
        if path.extension().is_some_and(|x| x == "bin") {
            if let Some(name) = path.file_name() {
                std::fs::copy(&path, to.join(name)).map_err(|e| fail(&path, e))?;
            }
        }
    }
    Ok(to)
}

/// The benchmark's guests, built from tests/guests into `dir`; files they
/// need (disk images) are made in `scratch`. With `tap`, the tiny guest
/// also runs with a disk and a NIC on it attached.
///
/// Every guest exits through port 0x501 (`exit=3`: odd statuses use QEMU's
/// isa-debug-exit) so every monitor ends them the same way. The NIC guest
/// (tests/guests/net.c) is not here: it serves until killed and needs a
/// TAP device; its throughput is benchmarked by scripts/net-bench.sh.
pub fn all(dir: &Path, scratch: &Path, tap: Option<&BenchTap>) -> Result<Vec<Guest>, String> {
    let disk = scratch.join("disk.raw");
    std::fs::File::create(&disk)
        .and_then(|f| f.set_len(1 << 20))
        .map_err(|e| format!("{}: {e}", disk.display()))?;
    let mut guests = vec![
        hello_quiet(dir),
        Guest {
            name: "hello",
            kernel: dir.join("hello.bin"),
            cmdline: "exit=3",
            mem_mib: 64,
            ready_marker: Some("ukvm hello unikernel"),
            must_print: Some("exiting with 3"),
            status: 3,
            ukvm_args: vec![],
            qemu_args: vec![],
            cannot_run: vec![],
            why: "prints its boot information (~15 lines, one exit per byte and \
                  per status poll) then exits; ready = its first line in our pipe",
        },
        Guest {
            name: "blk",
            kernel: dir.join("blk.bin"),
            cmdline: "mode=rw exit=3",
            mem_mib: 64,
            ready_marker: Some("blk0: slot"),
            must_print: Some("blk: done"),
            status: 3,
            ukvm_args: vec!["--disk".into(), disk.display().to_string()],
            qemu_args: vec![
                "-drive".into(),
                format!("file={},if=none,id=d0,format=raw", disk.display()),
                "-device".into(),
                "virtio-blk-pci,drive=d0".into(),
            ],
            cannot_run: vec![(
                Monitor::QemuMicrovm,
                "microvm has no PCI configuration ports (0xCF8/0xCFC), where \
                 the guest looks for its disk (virtio-mmio only, or PCIe ECAM)",
            )],
            why: "one virtio-blk disk (legacy PCI, 1 MiB raw image): finds it on \
                  PCI bus 0, writes 4 KiB, flushes, reads back; ready = its first line",
        },
    ];
    if let Some(tap) = tap {
        guests.insert(1, devices_guest(dir, &disk, &tap.0));
    }
    for g in &mut guests {
        g.cannot_run
            .push((Monitor::Solo5Hvt, "solo5-hvt runs Solo5 hvt images only"));
    }
    guests.push(hvt_exit(dir));
    guests.push(solo5_quiet());
    Ok(guests)
}

/// Where Solo5 v0.12.1's images and tender are: `<repo>/../shared/solo5`.
pub fn solo5_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/solo5")
}

/// Solo5's test_quiet.hvt, unmodified: the hvt boot path against
/// solo5-hvt itself (issue 11: ukvm within 0.75x of it).
fn solo5_quiet() -> Guest {
    let kernel = solo5_dir().join("test_quiet.hvt");
    let mut cannot_run = vec![
        (Monitor::QemuMicrovm, "QEMU has no hvt loader"),
        (Monitor::QemuPc, "QEMU has no hvt loader"),
        (
            Monitor::UkvmKvmIrqchip,
            "an hvt guest takes no interrupts: same as ukvm",
        ),
    ];
    if !kernel.exists() {
        let missing = "../shared/solo5/test_quiet.hvt is missing (see shared/solo5/README.txt)";
        let ukvms = [Monitor::Ukvm, Monitor::UkvmB, Monitor::UkvmNoSeccomp];
        cannot_run.extend(
            ukvms
                .into_iter()
                .chain([Monitor::Solo5Hvt])
                .map(|m| (m, missing)),
        );
    }
    Guest {
        name: "solo5-hvt-quiet",
        kernel,
        cmdline: "--solo5:quiet",
        mem_mib: 4,
        ready_marker: Some("**** Solo5 standalone test_verbose ****"),
        must_print: Some("SUCCESS"),
        status: 0,
        ukvm_args: vec![],
        qemu_args: vec![],
        cannot_run,
        why: "Solo5 0.12.1's test_quiet.hvt (ABI 2, 2 MiB of bss): prints its \
              banner and SUCCESS, exits 0; solo5-hvt is the peer",
    }
}

/// Our smallest hvt guest (tests/guests/hvt/exit.c, ABI 2): one puts
/// hypercall and a halt, ~60 emulated instructions. Against solo5-hvt it
/// separates the monitors' own cost (real on this host) from the guest's
/// start-up, which test_quiet adds on top (emulated here, ~1,600
/// instructions: the same under both monitors).
fn hvt_exit(dir: &Path) -> Guest {
    Guest {
        name: "hvt-exit",
        kernel: dir.join("hvt-exit.bin"),
        cmdline: "",
        mem_mib: 4,
        ready_marker: Some("hvt exit"),
        must_print: Some("hvt exit"),
        status: 0,
        ukvm_args: vec![],
        qemu_args: vec![],
        cannot_run: vec![
            (Monitor::QemuMicrovm, "QEMU has no hvt loader"),
            (Monitor::QemuPc, "QEMU has no hvt loader"),
            (
                Monitor::UkvmKvmIrqchip,
                "an hvt guest takes no interrupts: same as ukvm",
            ),
        ],
        why: "tests/guests/hvt/exit.c: prints one line and halts at once; \
              monitor-side boot and exit cost of the hvt path, ukvm against \
              solo5-hvt",
    }
}

/// hello-quiet with a disk and a NIC attached that it never touches: what
/// attaching devices costs a unikernel's boot (issue 12's target: within
/// 1.5x the floor program).
fn devices_guest(dir: &Path, disk: &Path, tap: &str) -> Guest {
    Guest {
        name: "hello-quiet-disk-nic",
        ukvm_args: vec![
            "--disk".into(),
            disk.display().to_string(),
            "--net".into(),
            tap.to_string(),
        ],
        qemu_args: vec![
            "-drive".into(),
            format!("file={},if=none,id=d0,format=raw", disk.display()),
            "-device".into(),
            "virtio-blk-pci,drive=d0".into(),
            "-netdev".into(),
            format!("tap,id=n0,ifname={tap},script=no,downscript=no"),
            "-device".into(),
            "virtio-net-pci,netdev=n0".into(),
        ],
        cannot_run: vec![(
            Monitor::QemuMicrovm,
            "microvm has no PCI bus for the virtio-pci disk and NIC",
        )],
        why: "hello-quiet with one virtio-blk disk and one virtio-net NIC (on a \
              TAP this benchmark creates) attached and unused: the cost of devices \
              (I/O thread, interrupt controller) at boot",
        ..hello_quiet(dir)
    }
}

/// The tiny guest: no output, ready port, exit.
fn hello_quiet(dir: &Path) -> Guest {
    Guest {
        name: "hello-quiet",
        kernel: dir.join("hello.bin"),
        cmdline: "quiet exit=3",
        mem_mib: 64,
        ready_marker: None,
        must_print: None,
        status: 3,
        ukvm_args: vec![],
        qemu_args: vec![],
        cannot_run: vec![],
        why: "no output: writes the ready port and exits; pure monitor \
              start-up and teardown cost, comparable with the floor",
    }
}
