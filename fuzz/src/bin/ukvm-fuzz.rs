//! `ukvm-fuzz`: runs the fuzz targets and prints, per target, iterations,
//! iterations per second, distinct outcomes and failures (with the seed of
//! each). Exit status 1 when anything failed.
//!
//! ```text
//! ukvm-fuzz [--iterations N] [--loader-iterations N] [--seed S]
//!           [--target blk|net|loader|hvt|insn]... [--format NAME]... [--seeds DIR]...
//! ```
//! Without `--seeds`, loaders are seeded from ../shared/solo5,
//! ../shared/unikraft, target/fixtures/linux/boot and the test guests
//! built under target/*/build/ukvm-tests-*/out (run from the repository
//! root).

use std::path::PathBuf;
use std::process::ExitCode;
use ukvm_fuzz::{run, Report, Target};

struct Args {
    iterations: u64,
    loader_iterations: Option<u64>,
    seed: u64,
    targets: Vec<String>,
    seeds: Vec<PathBuf>,
    /// Only the loaders whose name contains one of these.
    formats: Vec<String>,
}

fn parse() -> Result<Args, String> {
    let mut a = Args {
        iterations: 10_000,
        loader_iterations: None,
        seed: 1,
        targets: Vec::new(),
        seeds: Vec::new(),
        formats: Vec::new(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        // Decimal, or hex with 0x as failures print their seeds.
        let num = |v: String| {
            let v = v.replace('_', "");
            match v.strip_prefix("0x") {
                Some(hex) => u64::from_str_radix(hex, 16),
                None => v.parse::<u64>(),
            }
            .map_err(|e| format!("{flag}: {e}"))
        };
        match flag.as_str() {
            "--iterations" => a.iterations = num(value()?)?,
            "--loader-iterations" => a.loader_iterations = Some(num(value()?)?),
            "--seed" => a.seed = num(value()?)?,
            "--target" => a.targets.push(value()?),
            "--seeds" => a.seeds.push(value()?.into()),
            "--format" => a.formats.push(value()?),
            "-h" | "--help" => return Err("usage: ukvm-fuzz [--iterations N] [--loader-iterations N] [--seed S] [--target blk|net|loader|hvt|insn]... [--format NAME]... [--seeds DIR]...".into()),
            other => return Err(format!("unknown option {other}")),
        }
    }
    if a.seeds.is_empty() {
        a.seeds = ukvm_fuzz::loader::default_seed_dirs(std::path::Path::new("."));
    }
    Ok(a)
}

fn print(r: &Report) {
    let units = r
        .units
        .map_or(String::new(), |(what, n)| format!(" ({n} {what})"));
    println!(
        "{:<42} {:>10} iterations{units} {:>8.1} s {:>10.0} /s {:>6} outcomes {:>4} failures",
        r.target,
        r.iterations,
        r.secs,
        r.rate(),
        r.outcomes,
        r.failed
    );
    for f in &r.failures {
        println!("    {f}");
    }
}

fn main() -> ExitCode {
    let args = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("ukvm-fuzz: {e}");
            return ExitCode::from(2);
        }
    };
    // Panics are counted as failures; their default report would flood.
    std::panic::set_hook(Box::new(|_| {}));
    let wanted = |t: &str| args.targets.is_empty() || args.targets.iter().any(|w| w == t);
    let mut failed = 0;
    let mut go = |t: &mut dyn Target, n: u64| {
        let r = run(t, n, args.seed);
        print(&r);
        failed += r.failed;
    };
    if wanted("blk") {
        go(&mut ukvm_fuzz::blk::Blk::default(), args.iterations);
    }
    if wanted("net") {
        go(&mut ukvm_fuzz::net::Net::default(), args.iterations);
    }
    if wanted("hvt") {
        go(&mut ukvm_fuzz::hvt::Hvt::default(), args.iterations);
    }
    if wanted("insn") {
        go(&mut ukvm_fuzz::insn::Insn::default(), args.iterations);
    }
    if wanted("loader") {
        let loaders = ukvm_fuzz::loader::targets(&args.seeds);
        if loaders.is_empty() {
            eprintln!("ukvm-fuzz: no seed images found in {:?}", args.seeds);
            return ExitCode::from(2);
        }
        let chosen = |l: &ukvm_fuzz::loader::Loader| {
            let name = l.name();
            args.formats.is_empty() || args.formats.iter().any(|f| name.contains(f.as_str()))
        };
        for mut l in loaders.into_iter().filter(chosen) {
            go(&mut l, args.loader_iterations.unwrap_or(args.iterations));
        }
    }
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
