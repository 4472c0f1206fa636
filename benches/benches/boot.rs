//! `cargo bench -p ukvm-benches [-- ARGS]`: builds the release `ukvm`
//! binary, then runs the boot benchmark (src/main.rs) with ARGS. Cargo has
//! already built the benchmark and the floor program, in the same profile.

use std::process::{Command, ExitCode};

fn main() -> ExitCode {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let built = Command::new(cargo)
        .args(["build", "--release", "-p", "ukvm", "--bin", "ukvm"])
        .status();
    if !built.is_ok_and(|s| s.success()) {
        eprintln!("boot bench: building ukvm failed");
        return ExitCode::FAILURE;
    }
    let args = std::env::args().skip(1).filter(|a| a != "--bench");
    match Command::new(env!("CARGO_BIN_EXE_ukvm-benches"))
        .args(args)
        .status()
    {
        Ok(s) if s.success() => ExitCode::SUCCESS,
        _ => ExitCode::FAILURE,
    }
}
