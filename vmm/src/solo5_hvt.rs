//! ukvm as a drop-in `solo5-hvt`: invoked through a link named
//! `solo5-hvt` (argv[0]) or as `ukvm hvt ...`, ukvm takes solo5-hvt 0.12's
//! command line as it is, so MirageOS tooling (albatross, `mirage` run
//! scripts) runs ukvm unchanged:
//!
//! ```text
//! solo5-hvt [--mem=MiB] [--net:NAME=TAP] [--net-mac:NAME=MAC]
//!           [--block:NAME=FILE] [--block-sector-size:NAME=N] [--] KERNEL [ARGS]
//! ```
//!
//! Parsing follows `tenders/hvt/hvt_main.c`: a first pass over the options
//! for `--help` and `--version` up to the kernel, then the kernel's ABI
//! note and manifest, then the options against the manifest. Messages are
//! solo5-hvt's, prefixed with the name ukvm was called by, and so are the
//! exit statuses: the guest's own status, 255 after a guest abort (the
//! guest halts with 255), 1 for everything the tender refuses or fails at.

use std::collections::HashMap;
use std::fmt::Display;
use std::path::Path;
use std::time::Instant;
use ukvm::boot::hvt::{self, DeviceKind, Manifest};
use ukvm::VmConfig;
use ukvm_sandbox::{Jail, SeccompMode};

/// The tender's exit status for its own errors.
const STATUS_TENDER: u8 = 1;
/// solo5-hvt's default guest memory (512 MiB).
const DEFAULT_MEM: u64 = 512 << 20;
/// solo5-hvt rounds memory down to its 2 MiB guest page.
const GUEST_PAGE: u64 = 2 << 20;

/// What main() found on the command line: how ukvm was called and the
/// arguments after the program (and after `hvt`).
pub struct Invocation {
    prog: String,
    args: Vec<String>,
}

/// Returns the solo5-hvt invocation if ukvm was called as `solo5-hvt`
/// (any path) or as `ukvm hvt ...`.
pub fn invocation(argv: &[String]) -> Option<Invocation> {
    let prog = Path::new(argv.first()?)
        .file_name()?
        .to_string_lossy()
        .into_owned();
    if prog == "solo5-hvt" {
        return Some(Invocation {
            prog,
            args: argv[1..].to_vec(),
        });
    }
    (argv.get(1).map(String::as_str) == Some("hvt")).then(|| Invocation {
        prog,
        args: argv[2..].to_vec(),
    })
}

/// A tender error: the message solo5-hvt's `errx` prints.
struct Refusal(String);

fn refuse(msg: impl Display) -> Refusal {
    Refusal(msg.to_string())
}

/// The devices and memory the options ask for.
#[derive(Default)]
struct Options {
    mem: Option<u64>,
    blocks: Vec<(String, String)>,
    sector_sizes: HashMap<String, u16>,
    nets: Vec<(String, String)>,
    macs: HashMap<String, String>,
}

/// Runs solo5-hvt's command line. `start` is the process start, for the
/// boot timings.
pub fn main(inv: Invocation, start: Instant, signals: crate::signals::Blocked) -> u8 {
    let prog = inv.prog.clone();
    match run(inv, start, signals) {
        Ok(code) => code,
        Err(Refusal(msg)) => {
            eprintln!("{prog}: {msg}");
            STATUS_TENDER
        }
    }
}

fn run(inv: Invocation, start: Instant, signals: crate::signals::Blocked) -> Result<u8, Refusal> {
    let Invocation { prog, args } = inv;
    // First pass: --help and --version win, up to the kernel.
    let mut kernel_at = None;
    for (i, arg) in args.iter().enumerate() {
        match arg.as_str() {
            "--" => {
                kernel_at = Some(i + 1);
                break;
            }
            "--help" => return Ok(usage(&prog)),
            "--version" => return Ok(version(&prog)),
            a if a.starts_with('-') => {}
            _ => {
                kernel_at = Some(i);
                break;
            }
        }
    }
    let Some(kernel) = kernel_at.and_then(|i| args.get(i)) else {
        eprintln!("{prog}: Missing KERNEL operand");
        return Ok(usage(&prog));
    };
    let kernel_at = kernel_at.unwrap_or(0);
    let image =
        std::fs::read(kernel).map_err(|e| refuse(format!("{kernel}: Could not open: {e}")))?;
    let manifest = check_image(kernel, &image)?;

    // Second pass: the options, checked against the manifest.
    let mut opts = Options::default();
    for arg in args[..kernel_at].iter().filter(|a| *a != "--") {
        if let Err(why) = opts.take(arg, &manifest) {
            if let Some(why) = why {
                eprintln!("{prog}: {why}");
            }
            eprintln!("{prog}: Invalid option: `{arg}'");
            return Ok(usage(&prog));
        }
    }
    check_all_attached(&prog, &manifest, &opts)?;
    let cfg = opts
        .config(&prog)?
        .timing_origin(start)
        .kernel_bytes(kernel.clone(), image)
        .cmdline(args[kernel_at + 1..].join(" "));
    Ok(boot(&prog, cfg, signals))
}

/// solo5-hvt's checks of the ABI note and the manifest, in its words.
fn check_image(kernel: &str, image: &[u8]) -> Result<Manifest, Refusal> {
    let note = hvt::abi_note(image).ok().flatten().ok_or_else(|| {
        refuse(format!(
            "{kernel}: No Solo5 ABI information found in executable"
        ))
    })?;
    match hvt::check_abi(note) {
        Ok(()) => {}
        Err(hvt::Error::UnsupportedTarget { .. }) => {
            return Err(refuse(format!(
                "{kernel}: Executable is not for the solo5-hvt target"
            )))
        }
        Err(_) => {
            return Err(refuse(format!(
                "{kernel}: Executable requests unsupported ABI version {}",
                note.version
            )))
        }
    }
    hvt::manifest(image).map_err(|e| refuse(format!("{kernel}: Solo5 manifest is invalid: {e}")))
}

/// A device option's NAME: what solo5-hvt's `%[A-Za-z0-9]` takes.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() < hvt::MFT_NAME_SIZE
        && name.bytes().all(|b| b.is_ascii_alphanumeric())
}

impl Options {
    /// Takes one option. `Err(Some(why))` prints `why` before "Invalid
    /// option", as solo5-hvt's modules warn before refusing.
    fn take(&mut self, arg: &str, manifest: &Manifest) -> Result<(), Option<String>> {
        if let Some(mib) = arg.strip_prefix("--mem=") {
            let mib: u64 = mib.parse().ok().filter(|&m| m > 0).ok_or(None)?;
            self.mem = Some(mib.checked_mul(1 << 20).ok_or(None)?);
            return Ok(());
        }
        let (kind, key, value) = [
            ("--block:", DeviceKind::Block),
            ("--block-sector-size:", DeviceKind::Block),
            ("--net:", DeviceKind::Net),
            ("--net-mac:", DeviceKind::Net),
        ]
        .iter()
        .find_map(|(prefix, kind)| {
            let (name, value) = arg.strip_prefix(prefix)?.split_once('=')?;
            Some(((*prefix, *kind), name, value))
        })
        .ok_or(None)?;
        if !valid_name(key) || value.is_empty() {
            return Err(None);
        }
        if kind.0 == "--block-sector-size:" {
            let size = value
                .parse::<u16>()
                .ok()
                .filter(|&n| n >= 512 && n.is_power_of_two())
                .ok_or_else(|| {
                    Some("Block size must be a multiple of 2 greater than or equal 512".to_string())
                })?;
            declared(manifest, kind.1, key)?;
            self.sector_sizes.insert(key.to_string(), size);
            return Ok(());
        }
        declared(manifest, kind.1, key)?;
        let entry = (key.to_string(), value.to_string());
        match kind.0 {
            "--block:" => self.blocks.push(entry),
            "--net:" => self.nets.push(entry),
            _ => {
                value
                    .parse::<ukvm_virtio_net::MacAddr>()
                    .map_err(|_| None::<String>)?;
                self.macs.insert(entry.0, entry.1);
            }
        }
        Ok(())
    }

    /// The VM configuration: memory as solo5-hvt sizes it, and each
    /// device as ukvm's `--disk NAME=FILE` / `--net NAME=TAP`.
    fn config(&self, prog: &str) -> Result<VmConfig, Refusal> {
        let asked = self.mem.unwrap_or(DEFAULT_MEM);
        let mem = (asked / GUEST_PAGE * GUEST_PAGE).max(GUEST_PAGE);
        if mem != asked {
            eprintln!("{prog}: adjusting memory to {mem} bytes");
        }
        if mem > hvt::MAX_MEM_SIZE {
            return Err(refuse(format!(
                "guest memory size {mem} bytes exceeds the max size {} bytes",
                hvt::MAX_MEM_SIZE
            )));
        }
        // Sandboxed as the ukvm command is by default (solo5-hvt drops its
        // privileges with seccomp too).
        let jail = Jail {
            chroot: None,
            user: None,
            landlock: true,
            create_beneath: None,
        };
        let mut cfg = VmConfig::new()
            .seccomp(SeccompMode::Kill)
            .jail(jail)
            .mem_mib(mem >> 20);
        for (name, file) in &self.blocks {
            // solo5-hvt opens every backing file read-write.
            let mut spec = format!("{name}={file},rw");
            if let Some(size) = self.sector_sizes.get(name) {
                spec.push_str(&format!(",sector-size={size}"));
            }
            cfg = cfg.disk(spec);
        }
        for (name, tap) in &self.nets {
            let mut spec = format!("{name}={tap}");
            if let Some(mac) = self.macs.get(name) {
                spec.push_str(&format!(",mac={mac}"));
            }
            cfg = cfg.net(spec);
        }
        Ok(cfg)
    }
}

/// solo5-hvt's "Resource not declared in manifest".
fn declared(manifest: &Manifest, kind: DeviceKind, name: &str) -> Result<(), Option<String>> {
    if manifest.of_kind(kind).any(|d| d.name == name) {
        Ok(())
    } else {
        Err(Some(format!("Resource not declared in manifest: '{name}'")))
    }
}

fn check_all_attached(prog: &str, manifest: &Manifest, opts: &Options) -> Result<(), Refusal> {
    let mut missing = false;
    for d in &manifest.devices {
        let attached = match d.kind {
            DeviceKind::Block => opts.blocks.iter().any(|(n, _)| *n == d.name),
            DeviceKind::Net => opts.nets.iter().any(|(n, _)| *n == d.name),
        };
        if !attached {
            eprintln!(
                "{prog}: Device '{}' of type {} declared but not attached.",
                d.name,
                d.kind.name()
            );
            missing = true;
        }
    }
    if missing {
        return Err(refuse(
            "All declared devices must be attached. See --help for syntax.",
        ));
    }
    Ok(())
}

/// Builds and runs the VM; the exit status is the guest's, or 1 with one
/// line when ukvm cannot build or run it. SIGTERM and SIGINT stop the
/// guest and exit 1, as solo5-hvt's handler does.
fn boot(prog: &str, cfg: VmConfig, signals: crate::signals::Blocked) -> u8 {
    let mut vm = match cfg.build() {
        Ok(vm) => vm,
        Err(e) => {
            eprintln!("{prog}: {e}");
            return STATUS_TENDER;
        }
    };
    let received = signals.start(&mut vm);
    let backends = vm.backend_fds();
    match vm.run() {
        Ok(ukvm::Exit::Stopped) => {
            let signal = received.get().unwrap_or(0);
            eprintln!("{prog}: Exiting on signal {signal}");
            ukvm::fastexit::exit_detached(vm, &backends, i32::from(STATUS_TENDER))
        }
        // Nobody waits for the VM's teardown: don't make them.
        Ok(exit) => ukvm::fastexit::exit_detached(vm, &backends, exit.status()),
        Err(e) => {
            eprintln!("{prog}: {e}");
            STATUS_TENDER
        }
    }
}

fn usage(prog: &str) -> u8 {
    eprintln!(
        "usage: {prog} [ CORE OPTIONS ] [ MODULE OPTIONS ] [ -- ] KERNEL [ ARGS ]
KERNEL is the filename of the unikernel to run.
ARGS are optional arguments passed to the unikernel.
Core options:
  [ --mem=512 ] (guest memory in MB)
    --help (display this help)
    --version (display version information)
Compiled-in modules: net block
Compiled-in module options:
    --net:NAME=IFACE (attach tap at IFACE as network NAME)
  [ --net-mac:NAME=HWADDR ] (set HWADDR for network NAME)
    --block:NAME=PATH (attach block device/file at PATH as block storage NAME)
  [ --block-sector-size:NAME=SECTORSIZE ] (set sector size for block device NAME; must be a power of two greater than or equal 512)
This is ukvm {} taking solo5-hvt's command line (Solo5 hvt ABI 1 and 2).",
        env!("CARGO_PKG_VERSION")
    );
    // solo5-hvt's usage() exits 1, also for --help.
    STATUS_TENDER
}

fn version(prog: &str) -> u8 {
    eprintln!(
        "{prog} tender, version ukvm-{} (solo5-hvt v0.12.1 compatible)\nABI version 2",
        env!("CARGO_PKG_VERSION")
    );
    0
}
