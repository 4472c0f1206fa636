//! Builds the demo unikernel embedded in the `ukvm` binary (`ukvm demo`)
//! from the test guests' sources, with the same Makefile the tests use.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let guests = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets it"))
        .join("../tests/guests");
    println!("cargo:rerun-if-changed={}", guests.display());
    // A position-dependent executable: the linker resolves the ~9,000
    // pointer relocations a PIE has the dynamic loader apply (and copy
    // pages for) at every start. Measured by benches/: see README.
    println!("cargo:rustc-link-arg-bin=ukvm=-no-pie");
    let status = Command::new("make")
        .arg("-s")
        .arg("-C")
        .arg(&guests)
        .arg(format!("OUT={}", out.display()))
        .arg(out.join("hello.bin"))
        .status();
    match status {
        Ok(s) if s.success() => {}
        Ok(s) => panic!("building the demo guest failed ({s}); is gcc installed?"),
        Err(e) => {
            panic!("cannot run make to build the demo guest: {e} (apt-get install build-essential)")
        }
    }
}
