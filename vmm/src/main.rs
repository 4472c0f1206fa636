//! The `ukvm` command: boot a unikernel from the command line. Called as
//! `solo5-hvt` or `ukvm hvt`, it takes solo5-hvt's command line instead
//! (`solo5_hvt.rs`).
//!
//! `#![no_main]`: the C library calls [`main`] without Rust's runtime
//! start-up, which cost more than anything else before the command line
//! is parsed (`startup.rs` says what it did and what is kept).
#![no_main]

mod solo5_hvt;

mod signals;
mod startup;

use clap::{Args, Parser, Subcommand};
use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;
use ukvm::{Error, VmConfig};
use ukvm_sandbox::{Jail, SeccompMode, User};

/// The demo unikernel (tests/guests/hello.c), built by build.rs.
static DEMO_KERNEL: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/hello.bin"));

const AFTER_HELP: &str = "\
Examples:
  ukvm demo                                    boot the built-in demo unikernel
  ukvm --kernel hello.bin --cmdline 'exit=7 hello'
  ukvm --kernel nginx.bin --net tap0 --disk etc.iso --disk data.iso
  ukvm hvt --mem=64 --net:service0=tap0 -- app.hvt ARGS
                                               solo5-hvt's command line (also
                                               when called through a link
                                               named solo5-hvt)

Exit status: the guest's (port 0x501: (value << 1) | 1; port 0x511: value),
0 when the guest resets, powers off or halts, 128 + the signal's number
when SIGTERM or SIGINT stopped it (143, 130: output flushed, --timings
written). Monitor errors: 2 bad flags, 240 bad
configuration, 241 kernel file unreadable, 242 kernel image invalid,
243 /dev/kvm unavailable, 244 KVM or host failure, 245 device backend
failure, 246 guest crash (triple fault, emulation failure), 247 guest
instruction that neither KVM nor ukvm can complete (one-line diagnosis).";

#[derive(Parser)]
#[command(name = "ukvm", version, about = "A KVM monitor for unikernels", after_help = AFTER_HELP)]
#[command(args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Kernel image: Multiboot, PVH ELF64, Linux vmlinux or bzImage.
    #[arg(long, value_name = "FILE")]
    kernel: Option<PathBuf>,
    #[command(flatten)]
    opts: Opts,
    /// Guest arguments after `--`, joined with spaces into the command line
    /// (as solo5-hvt passes them); an alternative to --cmdline.
    #[arg(last = true, value_name = "ARGS")]
    guest_args: Vec<String>,
}

#[derive(Subcommand)]
enum Command {
    /// Boot the demo unikernel built into ukvm.
    Demo {
        #[command(flatten)]
        opts: Opts,
    },
}

#[derive(Args)]
struct Opts {
    /// Kernel command line.
    #[arg(long, value_name = "STR", default_value = "")]
    cmdline: String,
    /// Guest memory in MiB.
    #[arg(long, value_name = "MIB", default_value_t = ukvm::config::DEFAULT_MEM_MIB)]
    mem: u64,
    /// Initial ramdisk for a Linux/PVH kernel.
    #[arg(long, value_name = "FILE")]
    initrd: Option<PathBuf>,
    /// Print what ukvm made of the kernel (format, entry point, mode) to stderr.
    #[arg(long, short = 'v')]
    verbose: bool,
    /// Multiboot module: a file, optionally with the string the guest sees.
    #[arg(long, value_name = "FILE[,STRING]")]
    module: Vec<String>,
    /// Attach a virtio-net NIC on an existing TAP interface (repeatable).
    /// Solo5 hvt guests: NAME=TAP attaches the manifest's net device NAME;
    /// a bare TAP is enough when the manifest declares one.
    #[arg(long, value_name = "TAP[,mac=MAC][,mtu=N]")]
    net: Vec<String>,
    /// Solo5 hvt guests: don't offer the network ring; frames go through
    /// the net hypercalls, as with Solo5 older than 0.11.
    #[arg(long)]
    no_hvt_ring: bool,
    /// Attach a virtio-blk disk (repeatable; .iso files are read-only).
    /// Solo5 hvt guests: NAME=FILE attaches the manifest's block device
    /// NAME; a bare FILE is enough when the manifest declares one.
    #[arg(long, value_name = "FILE")]
    disk: Vec<String>,
    /// Interrupt controller and timer of Multiboot guests: ukvm's own 8259A
    /// pair and 8254 (userspace), or KVM's in-kernel irqchip and PIT (kvm).
    #[arg(long, value_name = "userspace|kvm", default_value = "userspace")]
    irqchip: ukvm::IrqChipKind,
    /// Wait for gdb on tcp:[HOST:]PORT (HOST defaults to 127.0.0.1) or
    /// unix:PATH before the guest's first instruction, and run under it.
    #[arg(long, value_name = "tcp:[HOST:]PORT|unix:PATH")]
    gdb: Option<ukvm::GdbAddr>,
    /// Write an ELF core file into DIR when the guest crashes or a Solo5
    /// hvt guest aborts (open it with gdb KERNEL CORE).
    #[arg(long, value_name = "DIR")]
    dumpcore: Option<PathBuf>,
    /// Print boot-phase timings as JSON after the run (to stderr, or FILE).
    #[arg(long, value_name = "FILE", num_args = 0..=1, default_missing_value = "-")]
    timings: Option<PathBuf>,
    /// System call filters on ukvm's threads: on (a refused call kills
    /// ukvm with SIGSYS, naming it), log (the kernel logs refused calls,
    /// which still run), off. Default: on.
    #[arg(long, value_name = "on|log|off")]
    seccomp: Option<SeccompMode>,
    /// Landlock, which takes away all filesystem access once every file
    /// is open: on or off. Default: on, unless --seccomp off (which turns
    /// the whole sandbox off).
    #[arg(long, value_name = "on|off", value_parser = ["on", "off"])]
    landlock: Option<String>,
    /// When started as root: run as UID:GID once /dev/kvm, the TAPs and
    /// the disks are open.
    #[arg(long, value_name = "UID:GID")]
    user: Option<User>,
    /// When started as root: chroot to DIR once every file is open.
    #[arg(long, value_name = "DIR")]
    chroot: Option<PathBuf>,
}

/// The process's entry point, called by the C library.
#[no_mangle]
pub extern "C" fn main(_argc: libc::c_int, _argv: *const *const libc::c_char) -> libc::c_int {
    let start = ukvm::timings::process_start();
    startup::init();
    // process::exit flushes stdout, as returning from a Rust main would.
    std::process::exit(i32::from(ukvm_main(start)))
}

/// ukvm's main: the process exit status.
fn ukvm_main(start: Instant) -> u8 {
    let argv: Vec<String> = std::env::args_os()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    // Before any other thread exists, so that all of them inherit the mask.
    let signals = signals::block();
    if let Some(inv) = solo5_hvt::invocation(&argv) {
        return solo5_hvt::main(inv, start, signals);
    }
    let cli = Cli::parse();
    let parsed = Instant::now();
    let (kernel, opts) = match cli.command {
        Some(Command::Demo { opts }) => (None, opts),
        None => match cli.kernel {
            Some(k) => (Some(k), cli.opts),
            None => return fail(&Error::NoKernel),
        },
    };
    let cmdline = match (opts.cmdline.is_empty(), cli.guest_args.is_empty()) {
        (_, true) => opts.cmdline,
        (true, false) => cli.guest_args.join(" "),
        (false, false) => {
            return fail(&Error::Config(
                "give the guest command line with --cmdline or after --, not both".into(),
            ))
        }
    };
    let seccomp = opts.seccomp.unwrap_or(SeccompMode::Kill);
    // Opened now: once the VM runs, ukvm can open no file.
    let timings = match opts.timings.map(TimingsOut::open).transpose() {
        Ok(t) => t,
        Err(e) => return fail(&e),
    };
    let jail = Jail {
        chroot: opts.chroot,
        user: opts.user,
        landlock: opts
            .landlock
            .map_or(seccomp != SeccompMode::Off, |l| l == "on"),
        create_beneath: None,
    };
    let mut cfg = VmConfig::new()
        .seccomp(seccomp)
        .jail(jail)
        .timing_origin(start)
        .args_parsed_at(parsed)
        .cmdline(cmdline)
        .mem_mib(opts.mem)
        .irqchip(opts.irqchip);
    cfg = match kernel {
        Some(path) => cfg.kernel_path(path),
        None => cfg.kernel_bytes("demo", DEMO_KERNEL.to_vec()),
    };
    for m in &opts.module {
        let (file, string) = match m.split_once(',') {
            Some((f, s)) => (f, Some(s.to_string())),
            None => (m.as_str(), None),
        };
        cfg = cfg.module(file, string);
    }
    if let Some(addr) = opts.gdb {
        cfg = cfg.gdb(addr);
    }
    if let Some(dir) = opts.dumpcore {
        cfg = cfg.dumpcore(dir);
    }
    if let Some(TimingsOut::File(_, file)) = &timings {
        // Written on the vCPU thread after the run, under its filter.
        cfg = cfg.sandbox_output(std::os::fd::AsRawFd::as_raw_fd(file));
    }
    if let Some(input) = console_input() {
        cfg = cfg.serial_input(input);
    }
    if let Some(initrd) = opts.initrd {
        cfg = cfg.initrd(initrd);
    }
    for d in opts.disk {
        cfg = cfg.disk(d);
    }
    for n in opts.net {
        cfg = cfg.net(n);
    }
    cfg = cfg.hvt_net_ring(!opts.no_hvt_ring);
    run(cfg, timings, opts.verbose, signals)
}

/// Where `--timings` goes: stderr, or a file opened before the sandbox.
enum TimingsOut {
    Stderr,
    File(PathBuf, std::fs::File),
}

impl TimingsOut {
    fn open(path: PathBuf) -> Result<TimingsOut, Error> {
        if path.as_os_str() == "-" {
            return Ok(TimingsOut::Stderr);
        }
        std::fs::File::create(&path)
            .map(|f| TimingsOut::File(path.clone(), f))
            .map_err(|e| Error::Config(format!("--timings {}: {e}", path.display())))
    }
}

fn run(
    cfg: VmConfig,
    timings_out: Option<TimingsOut>,
    verbose: bool,
    signals: signals::Blocked,
) -> u8 {
    let mut vm = match cfg.build() {
        Ok(vm) => vm,
        Err(e) => return fail(&e),
    };
    if verbose {
        eprintln!("ukvm: {}", vm.boot().describe());
    }
    let received = signals.start(&mut vm);
    let raw = ukvm::terminal::RawTerminal::enter(libc::STDIN_FILENO);
    let result = vm.run();
    // Before anything else is printed, and before exit_detached, which
    // runs no destructors.
    drop(raw);
    // A guest stopped by a signal exits as the signal says.
    let status = |exit: &ukvm::Exit| match (exit, received.exit_status()) {
        (ukvm::Exit::Stopped, Some(s)) => i32::from(s),
        _ => exit.status(),
    };
    if let Some(out) = timings_out {
        let json = vm.shutdown().to_json();
        report_timings(out, &json);
    } else if let Ok(exit) = &result {
        // Nobody waits for the VM's teardown: don't make them.
        let backends = vm.backend_fds();
        ukvm::fastexit::exit_detached(vm, &backends, status(exit));
    }
    match result {
        Ok(exit) => status(&exit) as u8,
        Err(e) => fail(&e),
    }
}

/// stdin for the guest's COM1, unless it is /dev/null or closed (then the
/// VM has no input thread at all: benchmarks and scripts pay nothing).
fn console_input() -> Option<std::os::fd::OwnedFd> {
    use std::os::fd::AsFd;
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let stdin = std::io::stdin();
    let fd = stdin.as_fd().try_clone_to_owned().ok()?;
    let meta = std::fs::File::from(fd.try_clone().ok()?).metadata().ok()?;
    // /dev/null is character device 1:3.
    if meta.file_type().is_char_device() && meta.rdev() == libc::makedev(1, 3) {
        return None;
    }
    Some(fd)
}

fn report_timings(out: TimingsOut, json: &str) {
    let (written, name) = match out {
        TimingsOut::Stderr => (writeln!(std::io::stderr(), "{json}"), "stderr".into()),
        TimingsOut::File(path, mut f) => (writeln!(f, "{json}"), path.display().to_string()),
    };
    if let Err(e) = written {
        eprintln!("ukvm: warning: cannot write timings to {name}: {e}");
    }
}

fn fail(e: &Error) -> u8 {
    eprintln!("ukvm: error: {e}");
    e.exit_status() as u8
}
