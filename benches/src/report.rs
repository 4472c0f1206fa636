//! Runs one guest under every monitor and formats the table.

use crate::guests::Guest;
use crate::memory::{self, Usage};
use crate::monitors::{Monitor, Programs};
use crate::run::{self, Sample};
use crate::RUN_LIMIT;
use std::fmt::Write as _;
use std::fs::File;
use std::path::PathBuf;
use std::time::Duration;

/// The exit status of the floor program.
const FLOOR_STATUS: i32 = 3;

/// One monitor's results for one guest.
struct Column {
    monitor: Monitor,
    /// Why it could not run the guest, if it could not.
    unavailable: Option<String>,
    samples: Vec<Sample>,
    memory: Option<Result<Usage, String>>,
}

/// Benchmarks `guest` and returns its table.
pub fn bench(
    guest: &Guest,
    monitors: &[Monitor],
    programs: &Programs,
    rounds: usize,
    with_memory: bool,
) -> String {
    let mut cols: Vec<Column> = monitors
        .iter()
        .map(|&monitor| Column {
            monitor,
            unavailable: None,
            samples: Vec::new(),
            memory: None,
        })
        .collect();
    // A first run of each checks it can boot the guest (and warms caches).
    for col in &mut cols {
        let known = guest.cannot_run.iter().find(|(m, _)| *m == col.monitor);
        col.unavailable = match known {
            Some((_, why)) => Some(why.to_string()),
            None => once(col.monitor, guest, programs).err(),
        };
    }
    if with_memory {
        for col in cols.iter_mut().filter(|c| c.unavailable.is_none()) {
            let cmd = programs.command(col.monitor, guest);
            col.memory = Some(memory::measure(cmd, guest.mem_mib << 20));
        }
    }
    for _ in 0..rounds {
        for col in cols.iter_mut().filter(|c| c.unavailable.is_none()) {
            match once(col.monitor, guest, programs) {
                Ok(s) => col.samples.push(s),
                Err(e) => col.unavailable = Some(format!("failed mid-benchmark: {e}")),
            }
        }
    }
    table(guest, &cols, rounds)
}

fn stderr_path(monitor: Monitor) -> PathBuf {
    // In main's scratch directory, removed at the end.
    std::env::temp_dir()
        .join(format!("ukvm-bench-{}", std::process::id()))
        .join(format!("{}.err", monitor.name()))
}

/// One timed run, checked: right status, the output the guest must print.
fn once(monitor: Monitor, guest: &Guest, programs: &Programs) -> Result<Sample, String> {
    let path = stderr_path(monitor);
    let stderr = File::create(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut cmd = programs.command(monitor, guest);
    let ready = guest.ready_marker.filter(|_| !monitor.is_floor());
    let sample = run::timed(&mut cmd, ready, stderr, RUN_LIMIT);
    let why = match &sample {
        Err(e) => Some(e.clone()),
        Ok(s) => check(monitor, guest, s),
    };
    match why {
        None => sample,
        Some(why) => {
            let log = std::fs::read_to_string(&path).unwrap_or_default();
            let last = log.lines().rev().find(|l| !l.trim().is_empty());
            Err(match last {
                Some(l) => format!("{why}; stderr: {}", l.trim()),
                None => why,
            })
        }
    }
}

fn check(monitor: Monitor, guest: &Guest, s: &Sample) -> Option<String> {
    let want = if monitor.is_floor() {
        FLOOR_STATUS
    } else {
        guest.status
    };
    if s.status != want {
        return Some(format!("exit status {} (want {want})", s.status));
    }
    if monitor.is_floor() {
        return None;
    }
    let out = String::from_utf8_lossy(&s.output);
    if let Some(m) = guest.must_print.filter(|m| !out.contains(m)) {
        return Some(format!("the guest did not print {m:?}"));
    }
    if guest.ready_marker.is_some() && s.ready.is_none() {
        return Some("the guest's first line never arrived".into());
    }
    None
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// "min median max" of `v` in ms, or dashes.
fn spread(mut v: Vec<f64>) -> String {
    if v.is_empty() {
        return format!("{:>8} {:>8} {:>8}", "-", "-", "-");
    }
    let m = median(&mut v);
    format!("{:>8.3} {:>8.3} {:>8.3}", v[0], m, v[v.len() - 1])
}

/// Median over rounds of ukvm's `what` (exit or CPU time) divided by
/// this column's.
fn ratio(ukvm: Option<&Column>, col: &Column, what: fn(&Sample) -> Duration) -> String {
    let Some(u) = ukvm.filter(|u| u.unavailable.is_none() && col.monitor != Monitor::Ukvm) else {
        return "-".into();
    };
    let mut r: Vec<f64> = u
        .samples
        .iter()
        .zip(&col.samples)
        .map(|(a, b)| ms(what(a)) / ms(what(b)))
        .collect();
    if r.is_empty() {
        return "-".into();
    }
    format!("{:.3}", median(&mut r))
}

fn table(guest: &Guest, cols: &[Column], rounds: usize) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "\n## {} (--cmdline {:?}, {} MiB, {} rounds, monitors alternate each round)\n   {}",
        guest.name, guest.cmdline, guest.mem_mib, rounds, guest.why
    );
    let _ = writeln!(
        s,
        "{:<13} {:^26} {:^26} {:>10} {:>17} {:>9} {:>9} {:>9}",
        "",
        "spawn->exit ms",
        "spawn->ready ms",
        "ukvm/this",
        "cpu ms  ukvm/this",
        "peak RSS",
        "guest",
        "monitor"
    );
    let _ = writeln!(
        s,
        "{:<13} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>10} {:>8} {:>8} {:>9} {:>9} {:>9}",
        "monitor",
        "min",
        "median",
        "max",
        "min",
        "median",
        "max",
        "median",
        "median",
        "median",
        "KiB",
        "KiB",
        "KiB"
    );
    let ukvm = cols.iter().find(|c| c.monitor == Monitor::Ukvm);
    for col in cols {
        if let Some(why) = &col.unavailable {
            let _ = writeln!(s, "{:<13} cannot run this guest: {why}", col.monitor.name());
            continue;
        }
        let exits = col.samples.iter().map(|x| ms(x.exit)).collect();
        let readies = col.samples.iter().filter_map(|x| x.ready.map(ms)).collect();
        let mut cpu: Vec<f64> = col.samples.iter().map(|x| ms(x.cpu)).collect();
        let cpu = if cpu.is_empty() {
            "-".into()
        } else {
            format!("{:.3}", median(&mut cpu))
        };
        let mem = match &col.memory {
            Some(Ok(u)) => format!("{:>9} {:>9} {:>9}", u.peak, u.guest, u.monitor()),
            Some(Err(e)) => format!("memory not measured: {e}"),
            None => format!("{:>9} {:>9} {:>9}", "-", "-", "-"),
        };
        let _ = writeln!(
            s,
            "{:<13} {} {} {:>10} {cpu:>8} {:>8} {mem}",
            col.monitor.name(),
            spread(exits),
            spread(readies),
            ratio(ukvm, col, |x| x.exit),
            ratio(ukvm, col, |x| x.cpu),
        );
    }
    s
}

/// The machine, as the README's table describes it.
pub fn machine(qemu: &std::path::Path) -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    let nproc = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let modules = std::fs::read_to_string("/proc/modules").unwrap_or_default();
    let kvm = ["kvm_pvm", "kvm_intel", "kvm_amd"]
        .into_iter()
        .find(|m| modules.lines().any(|l| l.starts_with(&format!("{m} "))))
        .or_else(|| {
            ["kvm_pvm", "kvm_intel", "kvm_amd"]
                .into_iter()
                .find(|m| std::path::Path::new(&format!("/sys/module/{m}")).exists())
        })
        .unwrap_or("unknown (built in?)");
    let qemu_version = std::process::Command::new(qemu)
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|v| v.lines().next().map(String::from))
        .unwrap_or_else(|| "not found (apt-get install qemu-system-x86)".into());
    format!(
        "machine: {nproc} CPUs, {cpu}, Linux {}, KVM module {kvm}\nqemu: {qemu_version}\n",
        kernel.trim()
    )
}
