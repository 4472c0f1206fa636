//! Boot benchmark: ukvm against QEMU (microvm and pc), solo5-hvt (for the
//! Solo5 hvt guest) and a floor program,
//! on the same guests, in the same run, alternating A B C D each round.
//!
//! ```text
//! cargo bench -p ukvm-benches -- [--rounds N]     (benches/boot.rs builds ukvm)
//! cargo build --release && target/x86_64-unknown-linux-gnu/release/ukvm-benches [--rounds N]
//!     [--guests hello-quiet,hello,blk,solo5-hvt-quiet]
//!     [--monitors ukvm,ukvm-kvmirq,ukvm-noseccomp,qemu-microvm,qemu-pc,solo5-hvt,floor,floor-irqchip]
//!     [--solo5-hvt PATH]
//!     [--ukvm PATH] [--ukvm-b PATH] [--floor PATH] [--qemu PATH] [--no-memory]
//! ```
//!
//! `--ukvm-b PATH` adds a second ukvm binary as its own column (after
//! ukvm in each round), to A/B-test a change to ukvm in one run.
//! `ukvm-kvmirq` is ukvm with `--irqchip kvm` (KVM's in-kernel PIC, IOAPIC
//! and PIT instead of ukvm's own), `floor-irqchip` the floor program with
//! `KVM_CREATE_IRQCHIP`: the interrupt controller's cost, A/B in one run.
//! `ukvm-noseccomp` is ukvm with `--seccomp=off` (no seccomp filters and
//! no Landlock): the sandbox's cost, A/B in one run.
//! As root, a TAP is created (and deleted) for `hello-quiet-disk-nic`.
//!
//! Every time is measured by this process, the same way for every program:
//! from just before it spawns the program to the moment it reaps it
//! ("exit"), and to the moment the guest's first line arrives on the pipe
//! connected to the program's stdout, where the guest's serial port goes
//! ("ready"). Memory is measured in separate runs (see `memory`). The
//! CPU time each run cost (the monitor's, and its leftover teardown
//! helper's) is reported too (see `run`): steadier than wall-clock time on
//! a machine shared with other work.

mod guests;
mod memory;
mod monitors;
mod report;
mod run;

use monitors::{Monitor, Programs};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// A run that takes longer than this failed (qemu-pc needs ~3.5 s here).
const RUN_LIMIT: Duration = Duration::from_secs(60);

struct Options {
    rounds: usize,
    guests: Option<Vec<String>>,
    monitors: Vec<Monitor>,
    programs: Programs,
    guest_dir: PathBuf,
    memory: bool,
}

const USAGE: &str = "usage: ukvm-benches [--rounds N] [--guests a,b] \
[--monitors ukvm,ukvm-kvmirq,ukvm-noseccomp,qemu-microvm,qemu-pc,solo5-hvt,floor,floor-irqchip] [--solo5-hvt PATH] [--ukvm PATH] [--ukvm-b PATH] [--floor PATH] [--qemu PATH] \
[--guest-dir DIR] [--no-memory]";

fn main() -> ExitCode {
    let opts = match parse(std::env::args().skip(1)) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("ukvm-benches: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    for (what, path) in [
        ("ukvm", &opts.programs.ukvm),
        ("ukvm-floor", &opts.programs.floor),
    ] {
        if !path.exists() {
            eprintln!(
                "ukvm-benches: {what} not found at {}: run `cargo build --release` first",
                path.display()
            );
            return ExitCode::from(2);
        }
    }
    run::become_subreaper();
    print!("{}", report::machine(&opts.programs.qemu));
    let scratch = std::env::temp_dir().join(format!("ukvm-bench-{}", std::process::id()));
    let mut programs = opts.programs;
    let made = std::fs::create_dir_all(&scratch)
        .map_err(|e| e.to_string())
        .and_then(|_| programs.copy_into(&scratch));
    let tap = guests::BenchTap::create();
    let mut guests = match made
        .and_then(|_| guests::copy_guests(&opts.guest_dir, &scratch))
        .and_then(|dir| guests::all(&dir, &scratch, tap.as_ref()))
    {
        Ok(g) => g,
        Err(e) => {
            eprintln!("ukvm-benches: scratch files: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(names) = &opts.guests {
        if let Some(bad) = names.iter().find(|n| !guests.iter().any(|g| g.name == *n)) {
            let known: Vec<_> = guests.iter().map(|g| g.name).collect();
            eprintln!(
                "ukvm-benches: unknown guest {bad:?} (known: {})",
                known.join(", ")
            );
            return ExitCode::from(2);
        }
        guests.retain(|g| names.iter().any(|n| n == g.name));
    }
    for guest in &guests {
        let result = report::bench(guest, &opts.monitors, &programs, opts.rounds, opts.memory);
        print!("{result}");
    }
    let _ = std::fs::remove_dir_all(&scratch);
    drop(tap);
    ExitCode::SUCCESS
}

fn parse(mut args: impl Iterator<Item = String>) -> Result<Options, String> {
    let here = std::env::current_exe().map_err(|e| format!("own path: {e}"))?;
    let dir = here.parent().ok_or("own directory")?.to_path_buf();
    let mut o = Options {
        rounds: 30,
        guests: None,
        monitors: monitors::ALL.to_vec(),
        programs: Programs {
            ukvm: dir.join("ukvm"),
            ukvm_b: PathBuf::new(),
            floor: dir.join("ukvm-floor"),
            qemu: "qemu-system-x86_64".into(),
            solo5_hvt: guests::solo5_dir().join("solo5-hvt"),
        },
        guest_dir: env!("UKVM_GUEST_DIR").into(),
        memory: true,
    };
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or(format!("{arg} needs a value"));
        match arg.as_str() {
            "--rounds" => {
                o.rounds = value()?
                    .parse()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or("--rounds needs a positive number")?
            }
            "--guests" => o.guests = Some(value()?.split(',').map(String::from).collect()),
            "--monitors" => {
                o.monitors = value()?
                    .split(',')
                    .map(|n| Monitor::from_name(n).ok_or(format!("unknown monitor {n:?}")))
                    .collect::<Result<_, _>>()?
            }
            "--ukvm" => o.programs.ukvm = value()?.into(),
            "--floor" => o.programs.floor = value()?.into(),
            "--ukvm-b" => o.programs.ukvm_b = value()?.into(),
            "--qemu" => o.programs.qemu = value()?.into(),
            "--solo5-hvt" => o.programs.solo5_hvt = value()?.into(),
            "--guest-dir" => o.guest_dir = value()?.into(),
            "--no-memory" => o.memory = false,
            // `cargo bench` passes --bench to every bench target.
            "--bench" => {}
            "-h" | "--help" => return Err("help".into()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if !o.programs.ukvm_b.as_os_str().is_empty() && !o.monitors.contains(&Monitor::UkvmB) {
        let at = o
            .monitors
            .iter()
            .position(|m| *m == Monitor::Ukvm)
            .map_or(0, |i| i + 1);
        o.monitors.insert(at, Monitor::UkvmB);
    }
    Ok(o)
}
