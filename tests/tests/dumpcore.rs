//! `--dumpcore DIR`: an ELF core when the guest crashes (our debugme
//! guest's triple fault) or a Solo5 hvt guest aborts (Solo5's own
//! test_dumpcore.hvt); gdb opens it with the kernel and names the
//! crashing function. Every run is sandboxed (seccomp on, Landlock): the
//! core is created under the filters, in DIR only.

use std::path::{Path, PathBuf};
use ukvm_tests::debug::gdb_on_core;
use ukvm_tests::{guest, kvm_available, run_ukvm, shared_image, TempDir};

/// The core files in `dir`.
fn cores(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("entry").path())
        .collect();
    v.sort();
    v
}

fn run(kernel: &Path, dir: &TempDir, args: &[&str]) -> ukvm_tests::Outcome {
    let mut all: Vec<std::ffi::OsString> = vec!["--kernel".into(), kernel.into()];
    all.push("--seccomp=on".into());
    all.push("--dumpcore".into());
    all.push(dir.join("").into());
    all.extend(args.iter().map(Into::into));
    run_ukvm(all)
}

#[test]
fn a_crashing_guest_leaves_a_core_gdb_reads() {
    if !kvm_available() {
        return;
    }
    let dir = TempDir::new("core");
    let kernel = guest("debugme");
    let out = run(&kernel, &dir, &["--cmdline", "crash"]);
    assert_eq!(out.status, Some(246), "{}", out.stderr);
    let files = cores(&dir.join(""));
    assert_eq!(files.len(), 1, "{files:?}");
    let name = files[0].file_name().unwrap().to_string_lossy().to_string();
    assert!(name.starts_with("core.ukvm."), "{name}");
    assert!(
        out.stderr
            .contains(&format!("core dumped to {}", files[0].display())),
        "{}",
        out.stderr
    );
    let gdb = gdb_on_core(&kernel, &files[0], &["bt", "print counter"]);
    assert!(
        gdb.contains("Program terminated with signal SIGSEGV"),
        "{gdb}"
    );
    assert!(gdb.contains("#0  crash_here ()"), "{gdb}");
    assert!(gdb.contains("in guest_main ("), "{gdb}");
    // Memory: the global is readable (0: crash comes before any bump).
    assert!(gdb.contains("$1 = 0"), "{gdb}");
    // A second crash in the same directory gets its own file.
    run(&kernel, &dir, &["--cmdline", "crash"]);
    assert_eq!(cores(&dir.join("")).len(), 2);
}

#[test]
fn solo5_test_dumpcore_aborts_into_a_core() {
    if !kvm_available() {
        return;
    }
    let dir = TempDir::new("core");
    let kernel = shared_image("solo5", "test_dumpcore.hvt");
    let out = run(&kernel, &dir, &["--mem", "4"]);
    assert_eq!(out.status, Some(255), "{}", out.stderr);
    assert!(
        out.stdout.contains("Solo5: solo5_abort() called"),
        "{}",
        out.stdout
    );
    let files = cores(&dir.join(""));
    assert_eq!(files.len(), 1, "{files:?}");
    let gdb = gdb_on_core(&kernel, &files[0], &["bt", "x/s solo5_app_main"]);
    assert!(
        gdb.contains("Program terminated with signal SIGABRT"),
        "{gdb}"
    );
    assert!(gdb.contains("in solo5_abort ()"), "{gdb}");
    assert!(gdb.contains("in solo5_app_main ()"), "{gdb}");
}

#[test]
fn no_crash_no_core_and_bad_directories_are_refused() {
    if !kvm_available() {
        return;
    }
    let dir = TempDir::new("core");
    let out = run(&guest("hello"), &dir, &["--cmdline", "exit=3"]);
    assert_eq!(out.status, Some(3));
    assert!(cores(&dir.join("")).is_empty());
    // A Solo5 guest that exits normally leaves nothing either.
    let out = run(
        &shared_image("solo5", "test_hello.hvt"),
        &dir,
        &["--mem", "4", "--", "Hello_Solo5"],
    );
    assert_eq!(out.status, Some(0), "{}", out.stderr);
    assert!(cores(&dir.join("")).is_empty());

    let missing = dir.join("missing");
    let out = run_ukvm([
        "--kernel".as_ref(),
        guest("hello").as_os_str(),
        "--dumpcore".as_ref(),
        missing.as_os_str(),
    ]);
    assert_eq!(out.status, Some(240));
    assert_eq!(
        out.stderr.trim(),
        format!(
            "ukvm: error: --dumpcore {}: not a directory",
            missing.display()
        )
    );
}

#[test]
fn a_core_is_written_after_dropping_to_a_user() {
    if !kvm_available() {
        return;
    }
    assert!(ukvm_tests::is_root(), "--user needs root");
    let dir = TempDir::new("core-user");
    let path = dir.join("");
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o777))
        .expect("chmod");
    let out = run(
        &guest("debugme"),
        &dir,
        &["--cmdline", "crash", "--user", "65534:65534"],
    );
    assert_eq!(out.status, Some(246), "{}", out.stderr);
    let files = cores(&path);
    assert_eq!(files.len(), 1, "{files:?} {}", out.stderr);
    let meta = std::fs::metadata(&files[0]).expect("core");
    assert_eq!(std::os::unix::fs::MetadataExt::uid(&meta), 65534);
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o777,
        0o600
    );
}

#[test]
fn a_solo5_trap_core_starts_at_the_faulting_instruction() {
    if !kvm_available() {
        return;
    }
    // test_exception.hvt writes to an unmapped address: Solo5's trap
    // handler aborts with its trap frame as the halt cookie, whose RIP the
    // core takes (as solo5-hvt-debug does).
    let dir = TempDir::new("core");
    let kernel = shared_image("solo5", "test_exception.hvt");
    let out = run(&kernel, &dir, &["--mem", "4"]);
    assert_eq!(out.status, Some(255), "{}", out.stderr);
    let trap_rip = out
        .stdout
        .split("rip=")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .unwrap_or_else(|| panic!("no trap line: {}", out.stdout))
        .to_string();
    let files = cores(&dir.join(""));
    assert_eq!(files.len(), 1, "{files:?}");
    let gdb = gdb_on_core(&kernel, &files[0], &["bt", "print/x $pc"]);
    let frame0 = gdb.lines().find(|l| l.starts_with("#0 ")).unwrap_or("");
    assert!(frame0.ends_with("in solo5_app_main ()"), "{gdb}");
    assert!(
        gdb.contains(&format!("$1 = {trap_rip}")),
        "trap rip {trap_rip}: {gdb}"
    );
}
