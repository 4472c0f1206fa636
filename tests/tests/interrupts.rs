//! Interrupts and timers of Multiboot guests: ukvm's 8259A pair and 8254
//! (the default) against KVM's in-kernel ones (`--irqchip=kvm`), with our
//! timer guest and Solo5's test_time.

use std::ffi::OsString;
use std::io::Write;
use std::sync::Mutex;
use std::time::Duration;
use ukvm::{Exit, IrqChipKind, VmConfig};
use ukvm_tests::{guest, kvm_available, run_ukvm, shared_image, Outcome, SerialBuffer, TempDir};

const PIT_HZ: f64 = 1_193_182.0;

/// The tests here that measure time take turns: two guests at once on a
/// 2-CPU host would make each other late.
static TIMING: Mutex<()> = Mutex::new(());

fn timing_turn() -> std::sync::MutexGuard<'static, ()> {
    TIMING
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A 4 KiB zeroed disk image in a directory of its own (removed when the
/// returned guard drops), and its path as `--disk` takes it.
fn scratch_disk(tag: &str) -> (TempDir, String) {
    let dir = TempDir::new(tag);
    let img = dir.join("d.img");
    std::fs::write(&img, vec![0u8; 4096]).expect("write the disk image");
    let disk = img.display().to_string();
    (dir, disk)
}

fn run(name: &str, cmdline: &str, extra: &[&str]) -> Outcome {
    let mut args: Vec<OsString> = vec![
        "--kernel".into(),
        guest(name).into(),
        "--cmdline".into(),
        cmdline.into(),
        "--timings".into(),
    ];
    args.extend(extra.iter().map(OsString::from));
    run_ukvm(args)
}

/// `key=value` from a guest line starting with `prefix`, all of them.
fn values(out: &Outcome, prefix: &str, key: &str) -> Vec<String> {
    out.stdout
        .lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| {
            l.split_whitespace()
                .find_map(|w| w.strip_prefix(&format!("{key}=")))
                .map(str::to_string)
        })
        .collect()
}

fn hex(s: &str) -> u64 {
    u64::from_str_radix(s, 16).unwrap_or_else(|e| panic!("{s}: {e}"))
}

/// The timer guest's interrupts, in ms after the count write, with the
/// programmed time: three one-shots (mode 0, 23864 ticks) and the 10th
/// (halting) and 15th (spinning) tick of a 10 ms rate generator (mode 2).
fn timer_guest(irqchip: &str) -> (Outcome, Vec<(f64, f64)>) {
    let out = run("timer", "", &["--irqchip", irqchip]);
    assert_eq!(out.status, Some(0), "{out:?}");
    assert!(
        out.stdout.contains("timer: latch ok\ntimer: done\n"),
        "{out:?}"
    );
    let khz: f64 = values(&out, "timer: tsc_khz", "tsc_khz")[0]
        .parse()
        .unwrap();
    let ms = |tsc: &String| hex(tsc) as f64 / khz;
    let oneshot = 23864.0 / PIT_HZ * 1000.0;
    let mut ticks: Vec<(f64, f64)> = values(&out, "timer: oneshot", "tsc")
        .iter()
        .map(|t| (ms(t), oneshot))
        .collect();
    assert_eq!(ticks.len(), 3, "{out:?}");
    let periodic = values(&out, "timer: periodic", "tsc");
    assert_eq!(periodic.len(), 2, "{out:?}");
    for (n, t) in [10.0, 15.0].iter().zip(&periodic) {
        ticks.push((ms(t), n * 11932.0 / PIT_HZ * 1000.0));
    }
    (out, ticks)
}

/// Whether the host is too busy to judge latency: a 1-minute load average
/// over twice its CPUs (developers' shared machines reach 6 per CPU; CI's
/// is idle). The guest's spinning wait is then mostly waiting for a CPU.
fn host_overloaded() -> bool {
    let load: f64 = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0);
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    load > 2.0 * cpus as f64
}

/// Runs the timer guest until each of its five measured interrupts has
/// come within 1 ms of its programmed time in some run, up to ten runs.
/// Lateness on these shared, loaded 2-CPU hosts is the vCPU thread waiting
/// for a CPU, so an interrupt that is systematically late (a lost kick, a
/// timer not re-armed) still fails, while one noisy run does not decide.
/// No interrupt may ever come early, and every one must come (the
/// spinning guest would wait forever for a tick ukvm failed to kick in).
/// Lateness is not judged on an overloaded host, where the vCPU thread
/// waits tens of ms for a CPU: the measurements are printed instead.
fn check_timer_guest(irqchip: &str) -> Outcome {
    let _turn = timing_turn();
    let mut runs: Vec<Vec<(f64, f64)>> = Vec::new();
    for _ in 0..10 {
        let (out, ticks) = timer_guest(irqchip);
        for &(got, expect) in &ticks {
            assert!(
                got > expect - 1.0,
                "{irqchip}: interrupt after {got:.3} ms, programmed {expect:.3} ms"
            );
        }
        runs.push(ticks);
        let on_time = |i: usize| runs.iter().any(|r| (r[i].0 - r[i].1).abs() <= 1.0);
        if (0..5).all(on_time) {
            return out;
        }
        if host_overloaded() {
            eprintln!("host overloaded: lateness not judged; (got, programmed) ms {runs:?}");
            return out;
        }
    }
    panic!(
        "{irqchip}: some PIT interrupt was never within 1 ms of its time in 10 runs: \
         (got, programmed) ms {runs:?}"
    );
}

#[test]
fn pit_mode0_and_mode2_interrupts_arrive_on_time_through_the_userspace_pic() {
    if !kvm_available() {
        return;
    }
    let out = check_timer_guest("userspace");
    let json = &out.stderr;
    assert!(json.contains(r#""irqchip":false"#), "{json}");
    assert!(json.contains(r#""controller":"userspace""#), "{json}");
    // 3 one-shots + 15 ticks, and no tick after the one-shots.
    assert!(json.contains(r#""delivered":18,"#), "{json}");
    assert!(json.contains(r#""inject_failures":0"#), "{json}");
}

/// The A/B reference: KVM's PIT runs the same guest to the end, no
/// interrupt early. (Its timing is not ukvm's to assert: here it delivers
/// re-armed one-shots 1-20 ms late.)
#[test]
fn the_same_timer_guest_runs_on_kvms_irqchip() {
    if !kvm_available() {
        return;
    }
    let _turn = timing_turn();
    let (out, ticks) = timer_guest("kvm");
    for (got, expect) in ticks {
        assert!(
            got > expect - 1.0,
            "kvm: interrupt after {got:.3} ms, programmed {expect:.3} ms"
        );
    }
    assert!(out.stderr.contains(r#""irqchip":true"#), "{}", out.stderr);
    assert!(
        out.stderr.contains(r#""controller":"kvm""#),
        "{}",
        out.stderr
    );
}

#[test]
fn halting_with_interrupts_off_ends_the_run_even_with_a_device() {
    if !kvm_available() {
        return;
    }
    let (_dir, disk) = scratch_disk("halt-disk");
    // IF is clear: nothing may wake it, whatever the PIC holds.
    let out = run("halt", "", &["--disk", &disk]);
    assert_eq!(out.status, Some(0), "{out:?}");
    assert!(out.stdout.contains("halt: halting\n"), "{out:?}");
    assert!(out.stderr.contains(r#""outcome":"halt""#), "{}", out.stderr);
    assert!(out.stderr.contains(r#""hlt":1,"#), "{}", out.stderr);
}

#[test]
fn a_device_interrupt_reaches_the_guest_through_the_userspace_pic_under_seccomp() {
    if !kvm_available() {
        return;
    }
    let (_dir, disk) = scratch_disk("irq-blk");
    // The I/O thread raises the line and kicks the halted vCPU.
    let out = run("blk", "mode=irq", &["--disk", &disk, "--seccomp", "on"]);
    assert_eq!(out.status, Some(0), "{out:?}");
    assert!(
        out.stdout.contains("read completed by interrupt on irq"),
        "{out:?}"
    );
    assert!(
        out.stderr
            .contains(r#""controller":"userspace","delivered":1,"#),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains(r#""irqchip":false"#), "{}", out.stderr);
}

/// Under KVM's irqchip `hlt` never leaves KVM: the watchdog must notice a
/// `cli; hlt` (issue 11's last bullet), for `--irqchip=kvm` and for a
/// Linux-style kernel alike.
#[test]
fn halting_with_interrupts_off_ends_the_run_on_kvms_irqchip_too() {
    if !kvm_available() {
        return;
    }
    let out = run("halt", "", &["--irqchip", "kvm"]);
    assert_eq!(out.status, Some(0), "{out:?}");
    assert!(out.stdout.contains("halt: halting\n"), "{out:?}");
    assert!(out.stderr.contains(r#""outcome":"halt""#), "{}", out.stderr);
    assert!(out.stderr.contains(r#""irqchip":true"#), "{}", out.stderr);

    let out = run(
        "linux64",
        "linux-test mem_mib=64 halt",
        &["--mem", "64", "--seccomp", "on"],
    );
    assert_eq!(out.status, Some(0), "{out:?}");
    assert!(out.stdout.contains("linux64: halting\n"), "{out:?}");
    assert!(out.stderr.contains(r#""outcome":"halt""#), "{}", out.stderr);
    assert!(
        out.stderr.contains(r#""controller":"kvm""#),
        "{}",
        out.stderr
    );
}

/// The I/O thread's raise must get a vCPU that spins in the guest (never
/// exiting) out of `KVM_RUN`: the kick's signal, not the hlt sleep.
#[test]
fn a_device_interrupt_reaches_a_guest_that_spins() {
    if !kvm_available() {
        return;
    }
    let (_dir, disk) = scratch_disk("irq-spin");
    for irqchip in ["userspace", "kvm"] {
        let out = run(
            "blk",
            "mode=irq spin",
            &["--disk", &disk, "--irqchip", irqchip],
        );
        assert_eq!(out.status, Some(0), "{irqchip}: {out:?}");
        assert!(
            out.stdout.contains("read completed by interrupt on irq"),
            "{irqchip}: {out:?}"
        );
        assert!(
            out.stderr.contains(r#""hlt":0,"#),
            "{irqchip}: {}",
            out.stderr
        );
    }
}

/// COM1's receive interrupt on IRQ 4 through ukvm's PIC: the echo guest
/// waits for console input in `hlt`, so only the interrupt can wake it.
#[test]
fn console_input_wakes_the_guest_through_com1s_interrupt() {
    if !kvm_available() {
        return;
    }
    let mut child = std::process::Command::new(ukvm_tests::ukvm_bin())
        .args(["--kernel"])
        .arg(guest("echo"))
        .args(["--cmdline", "pic", "--timings"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn ukvm");
    let mut stdin = child.stdin.take().expect("stdin");
    // The guest halts waiting first; the input comes later.
    std::thread::sleep(Duration::from_millis(300));
    stdin.write_all(b"hi!").expect("write stdin");
    drop(stdin);
    let out = ukvm_tests::wait_with_limit(child, Duration::from_secs(60));
    assert_eq!(out.status, Some(0), "{out:?}");
    assert!(out.stdout.starts_with("echo ready\nhi\necho: "), "{out:?}");
    assert!(
        out.stdout.ends_with(" receive interrupts\nbye\n"),
        "{out:?}"
    );
    assert!(!out.stdout.contains("echo: 0 receive"), "{out:?}");
    assert!(
        out.stderr.contains(r#""controller":"userspace""#),
        "{}",
        out.stderr
    );
}

#[test]
fn halting_with_interrupts_on_and_nothing_armed_ends_the_run() {
    if !kvm_available() {
        return;
    }
    let out = run("halt", "sti", &[]);
    assert_eq!(out.status, Some(0), "{out:?}");
    assert!(
        out.stdout.contains("halt: halting with interrupts on\n"),
        "{out:?}"
    );
    assert!(out.stderr.contains(r#""outcome":"halt""#), "{}", out.stderr);
    assert!(out.stderr.contains(r#""sleeps":0,"#), "{}", out.stderr);
}

/// Solo5's own conformance test of its clock and sleep: device-less, it
/// sleeps by writing PIT counts and halting. (On KVM's PIT it hangs: KVM's
/// channel 0 powers on with no mode, and Solo5 never sets one.)
#[test]
fn solo5_test_time_virtio_sleeps_five_seconds_on_the_userspace_pit() {
    if !kvm_available() {
        return;
    }
    let _turn = timing_turn();
    let out = run_ukvm([
        "--kernel".into(),
        shared_image("solo5", "test_time.virtio").into_os_string(),
        OsString::from("--timings"),
        // The PIT's timer and the hlt sleep are in the vCPU's allowlist.
        OsString::from("--seccomp"),
        OsString::from("on"),
    ]);
    // Solo5 virtio writes 41 to port 0x501 whatever its status.
    assert_eq!(out.status, Some(83), "{out:?}");
    let slept: Vec<u64> = out
        .stdout
        .lines()
        .filter_map(|l| l.split("] Slept for ").nth(1))
        .filter_map(|r| r.trim_end().trim_end_matches(" ns").parse().ok())
        .collect();
    assert_eq!(slept.len(), 5, "{}", out.stdout);
    for ns in slept {
        assert!(ns >= 1_000_000_000, "slept only {ns} ns");
    }
    assert!(
        out.stdout.lines().any(|l| l.trim_end() == "SUCCESS"),
        "{}",
        out.stdout
    );
    assert!(
        out.stderr.contains(r#""controller":"userspace""#),
        "{}",
        out.stderr
    );
}

#[test]
fn a_stop_wakes_a_guest_sleeping_in_hlt() {
    if !kvm_available() {
        return;
    }
    for kind in [IrqChipKind::Userspace, IrqChipKind::Kvm] {
        let out = SerialBuffer::default();
        let mut vm = VmConfig::new()
            .kernel_path(shared_image("solo5", "test_time.virtio"))
            .irqchip(kind)
            .serial(Box::new(out.clone()))
            .build()
            .expect("build");
        let stop = vm.stop_handle();
        let runner = std::thread::spawn(move || vm.run());
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        let text = || out.text();
        while !text().contains("[5] Sleeping for one second...") {
            assert!(std::time::Instant::now() < deadline, "{kind:?}: {}", text());
            std::thread::sleep(Duration::from_millis(5));
        }
        stop.stop();
        let exit = runner.join().expect("run thread").expect("run");
        assert_eq!(exit, Exit::Stopped, "{kind:?}");
        assert!(!text().contains("Slept for"), "{kind:?}: {}", text());
    }
}
