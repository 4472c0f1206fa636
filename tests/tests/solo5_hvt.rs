//! Solo5 v0.12.1's conformance suite for the hvt target (`test_*.hvt` in
//! `../shared/solo5`, built unmodified from the release), run as upstream's
//! `tests/tests.bats` runs it: `--mem=4096`, the same devices and guest
//! arguments, the same success and abort checks. Every test runs twice:
//! through ukvm's own command line (`ukvm --kernel`) and through ukvm
//! invoked as `solo5-hvt`, which takes solo5-hvt's command line unchanged.
//!
//! Where ukvm differs from solo5-hvt on Linux the test says so: the W^X
//! tests fault inside the guest (ukvm's page tables carry the segments'
//! permissions) instead of ending with solo5-hvt's "host/guest
//! translation fault", and test_fpu passes (ukvm completes the SSE
//! instructions this host's KVM cannot emulate).
//!
//! The network tests are in `solo5_hvt_net.rs`.

use std::process::Command;
use ukvm_tests::solo5::{self, assert_abort, assert_success};
use ukvm_tests::{kvm_available, run_with_limit, Outcome, TempDir, RUN_LIMIT};

/// How ukvm is invoked.
#[derive(Clone, Copy, Debug)]
enum Via {
    /// `ukvm --mem 4096 --disk NAME=FILE ... --kernel K -- ARGS`
    Ukvm,
    /// `solo5-hvt --mem=4096 --block:NAME=FILE ... -- K ARGS`
    Solo5Name,
}

const BOTH: [Via; 2] = [Via::Ukvm, Via::Solo5Name];

/// A block device: manifest name, file, sector size.
struct Block<'a>(&'a str, &'a std::path::Path, Option<u32>);

fn hvt_run(via: Via, blocks: &[Block], kernel: &str, args: &[&str]) -> Outcome {
    let kernel = solo5::image(kernel);
    let mut cmd = match via {
        Via::Ukvm => {
            let mut c = Command::new(ukvm_tests::ukvm_bin());
            c.args(["--mem", "4096"]);
            for Block(name, file, sector) in blocks {
                let mut spec = format!("{name}={}", file.display());
                if let Some(size) = sector {
                    spec.push_str(&format!(",sector-size={size}"));
                }
                c.args(["--disk", &spec]);
            }
            c.arg("--kernel").arg(&kernel).arg("--");
            c
        }
        Via::Solo5Name => {
            let mut c = Command::new(solo5::ukvm_as_solo5_hvt());
            c.arg("--mem=4096");
            for Block(name, file, sector) in blocks {
                c.arg(format!("--block:{name}={}", file.display()));
                if let Some(size) = sector {
                    c.arg(format!("--block-sector-size:{name}={size}"));
                }
            }
            c.arg("--").arg(&kernel);
            c
        }
    };
    run_with_limit(cmd.args(args), RUN_LIMIT)
}

fn each(test: impl Fn(Via)) {
    if !kvm_available() {
        return;
    }
    for via in BOTH {
        test(via);
    }
}

#[test]
fn hello() {
    each(|via| {
        let out = hvt_run(via, &[], "test_hello.hvt", &["Hello_Solo5"]);
        assert_success(&out);
        assert!(out.stdout.contains("Hello, World\n"), "{via:?}: {out:#?}");
        assert!(out.stdout.contains("Command line is: 'Hello_Solo5'\n"));
        assert!(out.stdout.contains("Solo5: solo5_exit(0) called"));
        // ukvm says nothing of its own on a clean run.
        assert_eq!(out.stderr, "", "{via:?}");
    });
}

#[test]
fn quiet() {
    each(|via| {
        let out = hvt_run(via, &[], "test_quiet.hvt", &["--solo5:quiet"]);
        assert_success(&out);
        assert!(!out.stdout.contains("Solo5:"), "{via:?}: {out:#?}");
        assert!(out
            .stdout
            .contains("**** Solo5 standalone test_verbose ****"));
    });
}

#[test]
fn output() {
    each(|via| {
        let out = hvt_run(via, &[], "test_output.hvt", &["Output_Solo5"]);
        assert_eq!(out.status, Some(0), "{via:?}: {out:#?}");
        let lines = out
            .lines()
            .into_iter()
            .filter(|l| l.starts_with("**** Solo5 standalone test_output ****"))
            .count();
        assert_eq!(lines, 72, "{via:?}: {out:#?}");
    });
}

#[test]
fn globals_tls_and_fpu_succeed() {
    each(|via| {
        for test in ["test_globals.hvt", "test_tls.hvt", "test_fpu.hvt"] {
            let out = hvt_run(via, &[], test, &[]);
            assert_success(&out);
        }
    });
}

#[test]
fn time_sleeps_five_seconds() {
    each(|via| {
        let started = std::time::Instant::now();
        let out = hvt_run(via, &[], "test_time.hvt", &[]);
        assert_success(&out);
        for n in 1..=5 {
            assert!(
                out.stdout.contains(&format!("[{n}] Slept for ")),
                "{via:?}: {out:#?}"
            );
        }
        assert!(started.elapsed().as_secs() >= 5);
    });
}

/// The traps the guest's own handler reports before `solo5_abort()`.
fn assert_page_fault(out: &Outcome, cr2: &str) {
    assert_abort(out);
    assert!(out.stdout.contains("Solo5: trap: type=#PF"), "{out:#?}");
    assert!(
        out.stdout.contains(&format!("Solo5: trap: cr2={cr2}\n")),
        "{out:#?}"
    );
    assert!(out
        .stdout
        .contains("Solo5: ABORT: cpu_x86_64.c:182: Fatal trap"));
}

#[test]
fn exception_zeropage_and_notls_fault_in_the_guest() {
    each(|via| {
        let out = hvt_run(via, &[], "test_exception.hvt", &[]);
        assert_page_fault(&out, "0x400000000");
        // Nothing is mapped below the boot information, as under
        // solo5-hvt: NULL-pointer accesses fault where upstream says.
        let out = hvt_run(via, &[], "test_zeropage.hvt", &[]);
        assert_page_fault(&out, "0x8");
        let out = hvt_run(via, &[], "test_notls.hvt", &[]);
        assert_page_fault(&out, "0x28");
    });
}

#[test]
fn ssp_and_dumpcore_abort() {
    each(|via| {
        let out = hvt_run(via, &[], "test_ssp.hvt", &[]);
        assert_abort(&out);
        assert!(out
            .stdout
            .contains("Solo5: ABORT: Stack corruption detected"));
        // Without solo5-hvt-debug's --dumpcore there is no core file; the
        // abort and its status are what upstream checks.
        let out = hvt_run(via, &[], "test_dumpcore.hvt", &[]);
        assert_eq!(out.status, Some(255), "{via:?}: {out:#?}");
        assert!(out.stdout.contains("Solo5: solo5_abort() called"));
    });
}

/// W^X: ukvm maps each segment with its ELF permissions (CR0.WP and
/// EFER.NXE on), so each forbidden access is a page fault the guest
/// reports and aborts on: exit status 255 and the faulting address. (On
/// Linux solo5-hvt enforces it from the host side instead and ends with
/// "host/guest translation fault", status 1; upstream runs rnow, rnox and
/// wnox on OpenBSD only.)
#[test]
fn write_xor_execute_is_enforced() {
    each(|via| {
        // Write to text.
        let out = hvt_run(via, &[], "test_xnow.hvt", &[]);
        assert_page_fault(&out, "0x104000");
        // Write to rodata.
        let out = hvt_run(via, &[], "test_rnow.hvt", &[]);
        assert_page_fault(&out, "0x1051a0");
        // Execute rodata and data.
        let out = hvt_run(via, &[], "test_rnox.hvt", &[]);
        assert_page_fault(&out, "0x1051a0");
        let out = hvt_run(via, &[], "test_wnox.hvt", &[]);
        assert_page_fault(&out, "0x107020");
        // Read text: x86 page tables cannot make a page execute-only, so
        // the read succeeds and the test reports FAILURE, as it does under
        // solo5-hvt on Linux.
        let out = hvt_run(via, &[], "test_xnor.hvt", &[]);
        assert_eq!(out.status, Some(1), "{via:?}: {out:#?}");
        assert!(out.stdout.contains("executable address read\nFAILURE"));
    });
}

/// test_blk writes and reads back every sector, in ring-0 code this host
/// emulates: 4 MiB (upstream's image) takes ~20 s here, under solo5-hvt
/// too. Upstream's exact run goes through the `solo5-hvt` name; the other
/// three use 1 MiB.
#[test]
fn blk_with_512_and_4096_byte_sectors() {
    let dir = TempDir::new("solo5-blk");
    let upstream = solo5::zero_file(&dir, "storage4m.img", 4 << 20);
    let small = solo5::zero_file(&dir, "storage1m.img", 1 << 20);
    each(|via| {
        let img = match via {
            Via::Solo5Name => &upstream,
            Via::Ukvm => &small,
        };
        let out = hvt_run(via, &[Block("storage", img, None)], "test_blk.hvt", &[]);
        assert_success(&out);
        let out = hvt_run(
            via,
            &[Block("storage", &small, Some(4096))],
            "test_blk.hvt",
            &[],
        );
        assert_success(&out);
    });
}

/// solo5-hvt's refusals of bad sector sizes, with its messages and exit
/// status 1 (through the `solo5-hvt` name; ukvm's own `--disk` says the
/// same with status 245 or 240).
#[test]
fn blk_bad_sector_sizes_are_refused_like_solo5_hvt() {
    let dir = TempDir::new("solo5-blk-bad");
    let cases = [
        (
            3 * 2048,
            4096,
            "storage: Backing storage size must be block aligned (4096 bytes)",
        ),
        (3 * 521, 521, "Block size must be a multiple of 2"),
        (
            256,
            256,
            "Block size must be a multiple of 2 greater than or equal 512",
        ),
    ];
    for (len, sector, msg) in cases {
        let img = solo5::zero_file(&dir, &format!("storage{len}.img"), len);
        let out = hvt_run(
            Via::Solo5Name,
            &[Block("storage", &img, Some(sector))],
            "test_blk.hvt",
            &[],
        );
        assert_eq!(out.status, Some(1), "{out:#?}");
        assert!(out.stderr.contains(msg), "{out:#?}");
        assert_eq!(out.stdout, "");
    }
}

/// A declared device left unattached, and a name the manifest lacks.
#[test]
fn missing_and_undeclared_devices_are_refused_like_solo5_hvt() {
    let out = hvt_run(Via::Solo5Name, &[], "test_blk.hvt", &[]);
    assert_eq!(out.status, Some(1), "{out:#?}");
    assert_eq!(
        out.stderr,
        "solo5-hvt: Device 'storage' of type BLOCK_BASIC declared but not attached.\n\
         solo5-hvt: All declared devices must be attached. See --help for syntax.\n"
    );
    let dir = TempDir::new("solo5-undeclared");
    let img = solo5::zero_file(&dir, "s.img", 4096);
    let out = hvt_run(
        Via::Solo5Name,
        &[Block("disk", &img, None)],
        "test_blk.hvt",
        &[],
    );
    assert_eq!(out.status, Some(1), "{out:#?}");
    assert!(out
        .stderr
        .starts_with("solo5-hvt: Resource not declared in manifest: 'disk'\nsolo5-hvt: Invalid option: `--block:disk="));
    assert!(out.stderr.contains("\nusage: solo5-hvt "));
}

/// buggyelf.hvt (a fuzzer-made image upstream keeps): refused with one
/// clear line, exit 1 under the solo5-hvt name, 242 (invalid kernel)
/// under ukvm's own.
#[test]
fn buggyelf_is_refused() {
    let out = hvt_run(Via::Solo5Name, &[], "buggyelf.hvt", &[]);
    assert_eq!(out.status, Some(1), "{out:#?}");
    assert!(out.stderr.ends_with(
        "buggyelf.hvt: Solo5 manifest is invalid: .note.solo5.manifest note: descriptor is 1 bytes, too small for a manifest\n"
    ), "{out:#?}");
    assert_eq!(out.stderr.lines().count(), 1);
    let out = hvt_run(Via::Ukvm, &[], "buggyelf.hvt", &[]);
    assert_eq!(out.status, Some(242), "{out:#?}");
    assert_eq!(out.stderr.lines().count(), 1, "{out:#?}");
}

#[test]
fn mft_maxdevices_attaches_63_disks() {
    let dir = TempDir::new("solo5-mft");
    let files: Vec<_> = (0..63)
        .map(|n| solo5::zero_file(&dir, &format!("storage{n}.img"), 4096))
        .collect();
    let names: Vec<String> = (0..63).map(|n| format!("storage{n}")).collect();
    let blocks: Vec<Block> = names
        .iter()
        .zip(&files)
        .map(|(name, f)| Block(name, f, None))
        .collect();
    each(|via| {
        let out = hvt_run(via, &blocks, "test_mft_maxdevices.hvt", &[]);
        assert_success(&out);
    });
}

fn solo5_cli(args: &[&str]) -> Outcome {
    run_with_limit(
        Command::new(solo5::ukvm_as_solo5_hvt()).args(args),
        RUN_LIMIT,
    )
}

#[test]
fn solo5_hvt_help_version_and_bad_command_lines() {
    let out = solo5_cli(&["--version"]);
    assert_eq!(out.status, Some(0), "{out:#?}");
    assert!(out.stderr.starts_with("solo5-hvt tender, version "));
    assert!(out.stderr.contains("\nABI version 2\n"));
    // solo5-hvt's usage() exits 1, --help included.
    let out = solo5_cli(&["--help"]);
    assert_eq!(out.status, Some(1), "{out:#?}");
    assert!(out.stderr.starts_with(
        "usage: solo5-hvt [ CORE OPTIONS ] [ MODULE OPTIONS ] [ -- ] KERNEL [ ARGS ]\n"
    ));
    assert!(out.stderr.contains("--block-sector-size:NAME=SECTORSIZE"));
    let out = solo5_cli(&["--mem=4"]);
    assert_eq!(out.status, Some(1), "{out:#?}");
    assert!(out
        .stderr
        .starts_with("solo5-hvt: Missing KERNEL operand\nusage: "));
    let hello = solo5::image("test_hello.hvt");
    let hello = hello.to_str().unwrap();
    for bad in ["--mem=x", "--mem=0", "--frobnicate", "--net:service0"] {
        let out = solo5_cli(&[bad, hello]);
        assert_eq!(out.status, Some(1), "{bad}: {out:#?}");
        assert!(
            out.stderr
                .starts_with(&format!("solo5-hvt: Invalid option: `{bad}'\nusage: ")),
            "{bad}: {out:#?}"
        );
    }
    let out = solo5_cli(&["/nonexistent.hvt"]);
    assert_eq!(out.status, Some(1), "{out:#?}");
    assert_eq!(
        out.stderr,
        "solo5-hvt: /nonexistent.hvt: Could not open: No such file or directory (os error 2)\n"
    );
    let out = solo5_cli(&["--mem=8192", hello]);
    assert_eq!(out.status, Some(1), "{out:#?}");
    assert!(out.stderr.contains("exceeds the max size 4294967296 bytes"));
}

#[test]
fn ukvm_hvt_takes_the_same_command_line() {
    if !kvm_available() {
        return;
    }
    let hello = solo5::image("test_hello.hvt");
    let out = ukvm_tests::run_ukvm([
        "hvt".as_ref(),
        "--mem=5".as_ref(),
        hello.as_os_str(),
        "Hello_Solo5".as_ref(),
    ]);
    assert_success(&out);
    assert!(out.stdout.contains("Command line is: 'Hello_Solo5'"));
    // Rounded down to the 2 MiB guest page, as solo5-hvt does.
    assert_eq!(out.stderr, "ukvm: adjusting memory to 4194304 bytes\n");
    assert!(out.stdout.contains("Solo5: Memory map: 4 MB addressable"));
}
