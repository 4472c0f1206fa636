//! Fuzzing, on stable Rust, of everything a hostile guest or image
//! controls: virtio-blk and virtio-net descriptor chains against real guest
//! memory ([`blk`], [`net`]), every kernel loader seeded from real images
//! ([`loader`]), the Solo5 hvt hypercall handlers ([`hvt`]) and instruction
//! completion ([`insn`]).
//!
//! Each target is a [`Target`]: one iteration takes a seeded [`Rng`],
//! builds an input, runs the code under test and checks its invariants
//! (no panic, no write outside what the guest offered, read-only images
//! unchanged). [`run`] drives N iterations, catching panics, and reports
//! iterations per second, distinct outcomes (a coarse path measure: the
//! set of result signatures seen) and failures with the seed that
//! reproduces each.

pub mod blk;
pub mod hvt;
pub mod insn;
pub mod loader;
pub mod net;
pub mod queue;
pub mod rng;

pub use rng::Rng;
use std::collections::HashSet;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Instant;

/// One fuzz target.
pub trait Target {
    /// Name in reports.
    fn name(&self) -> String;
    /// One iteration: `Ok(signature of the outcome)`, or `Err(what broke)`.
    fn one(&mut self, rng: &mut Rng) -> Result<u64, String>;
    /// What one iteration holds several of, and how many so far (chains
    /// made available, hypercalls made).
    fn units(&self) -> Option<(&'static str, u64)> {
        None
    }
}

/// What a run found.
#[derive(Debug, Clone)]
pub struct Report {
    /// Target name.
    pub target: String,
    /// Iterations made.
    pub iterations: u64,
    /// Wall time, seconds.
    pub secs: f64,
    /// Distinct outcome signatures seen.
    pub outcomes: usize,
    /// Failed iterations.
    pub failed: u64,
    /// [`Target::units`] at the end of the run.
    pub units: Option<(&'static str, u64)>,
    /// The first failures, each with its seed.
    pub failures: Vec<String>,
}

impl Report {
    /// Iterations per second.
    pub fn rate(&self) -> f64 {
        self.iterations as f64 / self.secs.max(1e-9)
    }
}

/// The seed of iteration `i` of a run seeded `seed`. Iteration 0's is
/// `seed` itself, so `--iterations 1 --seed S` replays a reported seed.
pub fn iteration_seed(seed: u64, i: u64) -> u64 {
    seed ^ i.wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

/// Runs `iterations` iterations of `target`; a panic is a failure.
pub fn run(target: &mut dyn Target, iterations: u64, seed: u64) -> Report {
    let start = Instant::now();
    let mut seen = HashSet::new();
    let (mut failed, mut failures) = (0, Vec::new());
    // UKVM_FUZZ_TRACE=1 names each seed before its iteration: the way to
    // find the one that hangs.
    let trace = std::env::var_os("UKVM_FUZZ_TRACE").is_some();
    for i in 0..iterations {
        let s = iteration_seed(seed, i);
        if trace {
            eprintln!("{}: seed {s:#x}", target.name());
        }
        let mut rng = Rng::new(s);
        let result = catch_unwind(AssertUnwindSafe(|| target.one(&mut rng)));
        let problem = match result {
            Ok(Ok(sig)) => {
                seen.insert(sig);
                None
            }
            Ok(Err(e)) => Some(e),
            Err(p) => Some(format!("panic: {}", panic_text(&*p))),
        };
        if let Some(p) = problem {
            failed += 1;
            if failures.len() < 10 {
                failures.push(format!("seed {s:#x}: {p}"));
            }
        }
    }
    Report {
        target: target.name(),
        iterations,
        secs: start.elapsed().as_secs_f64(),
        outcomes: seen.len(),
        failed,
        units: target.units(),
        failures,
    }
}

fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(non-string payload)".into())
}

/// A signature from a few small values (FNV-1a).
pub fn signature(parts: &[u64]) -> u64 {
    parts.iter().fold(0xcbf2_9ce4_8422_2325, |h, p| {
        (h ^ p).wrapping_mul(0x100_0000_01b3)
    })
}
