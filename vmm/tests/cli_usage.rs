//! CLI behaviour that needs no KVM. (Its presence also makes `cargo test`
//! build the `ukvm` binary that the guest tests in tests/ run.)

use std::process::Command;

fn ukvm(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_ukvm"))
        .args(args)
        .output()
        .expect("run ukvm")
}

#[test]
fn help_shows_an_example_and_exit_statuses() {
    let out = ukvm(&["--help"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("ukvm --kernel hello.bin --cmdline 'exit=7 hello'"),
        "{text}"
    );
    assert!(text.contains("243 /dev/kvm unavailable"), "{text}");
}

#[test]
fn unknown_flags_are_usage_errors() {
    let out = ukvm(&["--kernel", "x", "--frobnicate"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--frobnicate"));
}

#[test]
fn no_kernel_is_a_config_error() {
    let out = ukvm(&[]);
    assert_eq!(out.status.code(), Some(240));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no kernel given"));
}
