//! A short run of every fuzz target (the long runs' figures are in the
//! README): zero failures, and enough distinct outcomes to show the inputs
//! reach past the first refusal.

use std::path::Path;
use ukvm_fuzz::{run, Target};

fn check(t: &mut dyn Target, iterations: u64, min_outcomes: usize) {
    let r = run(t, iterations, 0x5eed);
    eprintln!(
        "{}: {} iterations, {} outcomes, {:.0}/s",
        r.target,
        r.iterations,
        r.outcomes,
        r.rate()
    );
    assert_eq!(r.failed, 0, "{}: {:#?}", r.target, r.failures);
    assert!(
        r.outcomes >= min_outcomes,
        "{}: only {} distinct outcomes in {iterations} iterations",
        r.target,
        r.outcomes
    );
}

#[test]
fn virtio_blk_chains() {
    check(&mut ukvm_fuzz::blk::Blk::default(), 300, 8);
}

#[test]
fn virtio_net_chains() {
    check(&mut ukvm_fuzz::net::Net::default(), 300, 8);
}

#[test]
fn hvt_hypercalls() {
    check(&mut ukvm_fuzz::hvt::Hvt::default(), 1000, 3);
}

#[test]
fn instruction_completion() {
    check(&mut ukvm_fuzz::insn::Insn::default(), 3000, 50);
}

#[test]
fn loaders_seeded_from_real_images() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let loaders = ukvm_fuzz::loader::targets(&ukvm_fuzz::loader::default_seed_dirs(&root));
    let names: Vec<String> = loaders.iter().map(|l| l.name()).collect();
    for format in ["multiboot-elf", "multiboot-aout-kludge", "linux-bzimage"] {
        assert!(
            names.iter().any(|n| n.contains(format)),
            "no {format} seed among {names:?}: are ../shared and the test guests there?"
        );
    }
    for mut l in loaders {
        // Images probe refuses mostly stay refused: one outcome is enough.
        check(&mut l, 100, 1);
    }
}
