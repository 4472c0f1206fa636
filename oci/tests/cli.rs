//! The `ukvm-oci` binary as an engine first meets it: `--version`,
//! `features` and a command without an id.
//!
//! Being an integration test of this package also makes `cargo test` at
//! the workspace root build `target/<profile>/ukvm-oci`, which the bundle
//! and engine tests in `ukvm-tests` run (cargo builds a package's binaries
//! only for that package's own integration tests).

use std::process::Command;

fn runtime() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ukvm-oci"))
}

#[test]
fn version_names_the_runtime_and_the_spec() {
    let out = runtime().arg("--version").output().expect("run ukvm-oci");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("ukvm-oci version "), "{text}");
    assert!(text.contains("spec: 1."), "{text}");
}

#[test]
fn features_is_the_runtime_spec_json() {
    let out = runtime().arg("features").output().expect("run ukvm-oci");
    assert!(out.status.success());
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("features JSON");
    assert_eq!(json["ociVersionMin"], "1.0.0");
    let hooks = json["hooks"].as_array().expect("hooks list");
    assert!(hooks.iter().any(|h| h == "prestart"), "{json}");
    assert!(hooks.iter().any(|h| h == "poststop"), "{json}");
}

#[test]
fn start_without_an_id_is_a_usage_error() {
    let out = runtime().arg("start").output().expect("run ukvm-oci");
    assert!(!out.status.success());
    assert!(!out.stderr.is_empty(), "no message for a missing id");
}
