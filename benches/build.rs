//! Builds the test unikernels (tests/guests) into OUT_DIR for the benchmark
//! and tells it where they are (`UKVM_GUEST_DIR`).

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let guests = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets it"))
        .join("../tests/guests");
    println!("cargo:rerun-if-changed={}", guests.display());
    let status = Command::new("make")
        .args(["-s", "-C"])
        .arg(&guests)
        .arg(format!("OUT={}", out.display()))
        .status();
    match status {
        Ok(s) if s.success() => {}
        Ok(s) => panic!("building the test guests failed ({s}); is gcc installed?"),
        Err(e) => panic!("cannot run make: {e} (apt-get install build-essential)"),
    }
    println!("cargo:rustc-env=UKVM_GUEST_DIR={}", out.display());
    // Linked like ukvm (vmm/build.rs), so the floor differs from it only in
    // what it does.
    println!("cargo:rustc-link-arg-bin=ukvm-floor=-no-pie");
}
