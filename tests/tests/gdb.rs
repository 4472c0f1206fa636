//! `--gdb`: Debian's gdb in batch mode against our guests (Multiboot with
//! debug info, hvt, Linux-style) and Solo5's test_hello.hvt.

use std::time::Duration;
use ukvm_tests::debug::{gdb_session, GdbRun, Opts};
use ukvm_tests::{guest, kvm_available, shared_image};

fn assert_has(run: &GdbRun, what: &str) {
    assert!(
        run.gdb.contains(what),
        "gdb output lacks {what:?}:\n{}\nukvm stderr:\n{}",
        run.gdb,
        run.ukvm.stderr
    );
}

/// The value gdb printed for `$N = value`.
fn value(run: &GdbRun, n: u32) -> String {
    let prefix = format!("${n} = ");
    run.gdb
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no {prefix} in gdb output:\n{}", run.gdb))
        .trim()
        .to_string()
}

#[test]
fn break_print_step_watch_and_exit_on_a_multiboot_guest() {
    if !kvm_available() {
        return;
    }
    let run = gdb_session(
        &guest("debugme"),
        &[],
        "info registers eip\n\
         break bump\n\
         continue\n\
         print counter\n\
         print by\n\
         print $pc == bump\n\
         print $cs\n\
         print/x $cr0\n\
         stepi\n\
         print (unsigned)$pc - (unsigned)bump\n\
         delete\n\
         watch counter\n\
         continue\n\
         continue\n\
         delete\n\
         continue",
        Opts::default(),
    );
    // Stopped before the first instruction, at the Multiboot entry.
    assert!(
        run.gdb
            .lines()
            .any(|l| l.starts_with("eip") && l.contains("<_start>")),
        "{}",
        run.gdb
    );
    assert_has(&run, "Breakpoint 1, bump (by=by@entry=1)");
    assert_eq!(value(&run, 1), "0", "counter before the first bump");
    assert_eq!(value(&run, 2), "1", "bump's argument");
    assert_eq!(value(&run, 3), "1", "pc at bump");
    // 32-bit protected mode at entry: flat code segment, PE without PG.
    assert_eq!(value(&run, 4), "8");
    assert_eq!(value(&run, 5), "0x11");
    let stepped: u32 = value(&run, 6).parse().expect("a number");
    assert!(
        (1..=15).contains(&stepped),
        "stepi moved {stepped} bytes:\n{}",
        run.gdb
    );
    assert_has(&run, "Hardware watchpoint 2: counter");
    assert_has(&run, "Old value = 0\nNew value = 1");
    assert_has(&run, "Old value = 1\nNew value = 3");
    assert_has(&run, "[Inferior 1 (process 1) exited with code 06]");
    assert_eq!(run.ukvm.status, Some(6), "{}", run.ukvm.stderr);
    assert!(run.ukvm.stdout.contains("counter=6"), "{}", run.ukvm.stdout);
}

#[test]
fn ctrl_c_interrupts_a_running_guest() {
    if !kvm_available() {
        return;
    }
    let run = gdb_session(
        &guest("debugme"),
        &["--cmdline", "spin", "--seccomp", "on"],
        "continue\nprint counter > 0\nbacktrace\nkill",
        Opts {
            interrupt_after: Some(Duration::from_secs(2)),
            ..Opts::default()
        },
    );
    assert_has(&run, "Program received signal SIGINT");
    assert_eq!(value(&run, 1), "1", "the guest ran before the interrupt");
    assert_has(&run, "guest_main");
    // gdb's kill ends the run.
    assert_eq!(run.ukvm.status, Some(0), "{}", run.ukvm.stderr);
    assert!(run.ukvm.stdout.contains("debugme"), "{}", run.ukvm.stdout);
}

#[test]
fn hvt_guest_in_long_mode_with_control_registers() {
    if !kvm_available() {
        return;
    }
    let run = gdb_session(
        &guest("hvt-hello"),
        &["--mem", "4", "--", "exit=3"],
        "break hvt_main\n\
         continue\n\
         print $pc == hvt_main\n\
         print/x $efer & 0x500\n\
         print ($cr0 >> 31) & 1\n\
         print $cr3 != 0\n\
         hbreak halt\n\
         continue\n\
         print $rdi\n\
         continue",
        Opts::default(),
    );
    assert_has(&run, "Breakpoint 1, 0x");
    assert_eq!(value(&run, 1), "1");
    assert_eq!(value(&run, 2), "0x500", "LME|LMA");
    assert_eq!(value(&run, 3), "1", "paging on");
    assert_eq!(value(&run, 4), "1");
    assert_has(&run, "Breakpoint 2, 0x");
    assert_eq!(value(&run, 5), "3", "halt's status argument");
    assert_has(&run, "exited with code 03");
    assert_eq!(run.ukvm.status, Some(3), "{}", run.ukvm.stderr);
}

#[test]
fn linux_style_guest_over_tcp() {
    if !kvm_available() {
        return;
    }
    let run = gdb_session(
        &guest("linux64"),
        &["--cmdline", "linux-test mem_mib=64"],
        "print $pc == linux64_main\n\
         print $rsi != 0\n\
         x/2i $pc\n\
         stepi\n\
         stepi\n\
         print $pc != linux64_main\n\
         continue",
        Opts {
            tcp: true,
            ..Opts::default()
        },
    );
    assert_eq!(
        value(&run, 1),
        "0",
        "stopped at the entry stub, before main"
    );
    assert_eq!(value(&run, 2), "1", "zero page pointer in rsi");
    assert_eq!(value(&run, 3), "1");
    assert_has(&run, "exited normally");
    assert_eq!(run.ukvm.status, Some(0), "{}", run.ukvm.stdout);
}

#[test]
fn solo5_test_hello_breaks_at_solo5_app_main() {
    if !kvm_available() {
        return;
    }
    let kernel = shared_image("solo5", "test_hello.hvt");
    let run = gdb_session(
        &kernel,
        &["--mem", "4", "--", "Hello_Solo5"],
        "break solo5_app_main\n\
         continue\n\
         print *(char **)$rdi\n\
         continue",
        Opts::default(),
    );
    assert_has(&run, "Breakpoint 1, 0x");
    assert_has(&run, "in solo5_app_main ()");
    assert!(value(&run, 1).ends_with("\"Hello_Solo5\""), "{}", run.gdb);
    assert_has(&run, "exited normally");
    assert_eq!(run.ukvm.status, Some(0));
    assert!(run.ukvm.stdout.contains("SUCCESS"), "{}", run.ukvm.stdout);
}

#[test]
fn a_crash_stops_for_gdb_then_ends_the_run() {
    if !kvm_available() {
        return;
    }
    let run = gdb_session(
        &guest("debugme"),
        &["--cmdline", "crash"],
        "continue\nbacktrace\ncontinue",
        Opts::default(),
    );
    assert_has(&run, "Program received signal SIGSEGV");
    assert_has(&run, "#0  crash_here ()");
    assert_has(&run, "Program terminated with signal SIGSEGV");
    assert_eq!(run.ukvm.status, Some(246), "{}", run.ukvm.stderr);
    assert!(
        run.ukvm.stderr.contains("triple fault"),
        "{}",
        run.ukvm.stderr
    );
}
