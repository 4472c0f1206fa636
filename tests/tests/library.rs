//! The library API: builder -> build -> run -> typed exit, with the serial
//! console going to a caller-provided writer.

use ukvm::{CrashKind, Error, Exit, SeccompMode, VmConfig};
use ukvm_tests::{guest, kvm_available, SerialBuffer};

/// Boots `name` with the seccomp filters on, as the `ukvm` command does.
/// The vCPU filter stays on the thread that ran the VM, so that is a
/// thread of its own, not the test's.
fn boot(name: &str, cmdline: &str) -> (Result<Exit, Error>, String) {
    let out = SerialBuffer::default();
    let mut vm = VmConfig::new()
        .kernel_path(guest(name))
        .cmdline(cmdline)
        .mem_mib(32)
        .serial(Box::new(out.clone()))
        .seccomp(SeccompMode::Kill)
        .build()
        .expect("build");
    let (vm, result) = std::thread::spawn(move || {
        let result = vm.run();
        (vm, result)
    })
    .join()
    .expect("the vCPU thread");
    let timings = vm.shutdown();
    assert!(timings.to_json().contains("vm_torn_down"));
    (result, out.text())
}

#[test]
fn exit_code_and_serial_output_reach_the_caller() {
    if !kvm_available() {
        return;
    }
    let (result, text) = boot("hello", "exit=7 from the library");
    assert_eq!(result.unwrap(), Exit::Code(7));
    assert!(text.starts_with("ukvm hello unikernel\n"), "{text}");
    assert!(text.contains("cmdline: exit=7 from the library\n"));
    assert!(text.contains("mem_lower=639K mem_upper=31744K\n"), "{text}");
}

#[test]
fn reset_and_halt_are_distinct_exits() {
    if !kvm_available() {
        return;
    }
    let (result, text) = boot("hello", "reset");
    assert_eq!(result.unwrap(), Exit::Reset);
    assert!(text.ends_with("resetting\n"), "{text}");
    // S5 through PIIX4's PM1a_CNT, what Unikraft writes before 0x501.
    let (result, text) = boot("hello", "poweroff exit=7");
    assert_eq!(result.unwrap(), Exit::PowerOff);
    assert!(text.ends_with("powering off\n"), "{text}");
    let (result, text) = boot("halt", "");
    assert_eq!(result.unwrap(), Exit::Halted);
    assert!(text.contains("halt: halting"));
}

#[test]
fn library_users_name_the_kernel_for_the_multiboot_command_line() {
    if !kvm_available() {
        return;
    }
    let out = SerialBuffer::default();
    let mut vm = VmConfig::new()
        .kernel_path(guest("hello"))
        .kernel_name("nginx.bin")
        .cmdline("exit=3")
        .serial(Box::new(out.clone()))
        .build()
        .unwrap();
    assert_eq!(vm.run().unwrap(), Exit::Code(3));
    assert!(out.text().contains("raw cmdline: nginx.bin exit=3\n"));
    // Without a name, the path as given (QEMU's -kernel does the same).
    let (_, text) = boot("hello", "");
    let want = format!("raw cmdline: {} \n", guest("hello").display());
    assert!(text.contains(&want), "{text}");
}

#[test]
fn a_crash_carries_rip() {
    if !kvm_available() {
        return;
    }
    let (result, text) = boot("fault", "");
    assert!(text.contains("about to triple fault"));
    match result {
        Err(Error::GuestCrash(crash)) => {
            assert_eq!(crash.kind, CrashKind::TripleFault);
            assert!(crash.rip >= 0x100000, "{crash}");
        }
        other => panic!("expected a crash, got {other:?}"),
    }
}

#[test]
fn kernel_bytes_and_elf64_kludge_images_boot() {
    if !kvm_available() {
        return;
    }
    let image = std::fs::read(guest("hello64")).unwrap();
    assert_eq!(image[4], 2, "hello64 is ELF64");
    let out = SerialBuffer::default();
    let mut vm = VmConfig::new()
        .kernel_bytes("hello64", image)
        .cmdline("exit=9")
        .serial(Box::new(out.clone()))
        .build()
        .unwrap();
    assert_eq!(vm.boot().format, ukvm_boot_format());
    assert_eq!(vm.run().unwrap(), Exit::Code(9));
    assert!(out.text().contains("exiting with 9"));
}

fn ukvm_boot_format() -> ukvm::BootFormat {
    ukvm::BootFormat::MultibootKludge
}

#[test]
fn build_validates_before_creating_a_vm() {
    let err = VmConfig::new()
        .kernel_path(guest("hello"))
        .mem_mib(0)
        .build()
        .err();
    assert!(
        matches!(err, Some(Error::MemSize { mib: 0, .. })),
        "{err:?}"
    );
    let err = VmConfig::new().build().err();
    assert!(matches!(err, Some(Error::NoKernel)), "{err:?}");
    let err = VmConfig::new()
        .kernel_bytes("junk", vec![1, 2, 3])
        .build()
        .err()
        .expect("junk is refused");
    assert_eq!(err.exit_status(), ukvm::error::STATUS_KERNEL_INVALID);
    assert!(err.to_string().starts_with("junk: "), "{err}");
}

/// Waits up to a minute for `text` in the guest's output.
fn wait_for(out: &SerialBuffer, text: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !out.text().contains(text) {
        assert!(
            std::time::Instant::now() < deadline,
            "guest never printed {text:?}: {}",
            out.text()
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

#[test]
fn a_stop_handle_ends_a_spinning_guest_from_another_thread() {
    if !kvm_available() {
        return;
    }
    let out = SerialBuffer::default();
    // ~1 hour of ring-0 loop here: only the stop can end this run.
    let mut vm = VmConfig::new()
        .kernel_path(guest("grind"))
        .cmdline("loop=4000000000")
        .mem_mib(32)
        .serial(Box::new(out.clone()))
        .build()
        .expect("build");
    let handle = vm.stop_handle();
    assert!(!handle.is_requested());
    let runner = std::thread::spawn(move || {
        let exit = vm.run();
        (exit, vm.shutdown())
    });
    wait_for(&out, "grind start\n");
    handle.clone().stop();
    let (exit, timings) = runner.join().expect("run thread");
    assert_eq!(exit.unwrap(), Exit::Stopped);
    assert_eq!(Exit::Stopped.status(), 0);
    assert!(handle.is_requested());
    assert_eq!(out.text(), "grind start\n");
    let json = timings.to_json();
    assert!(json.contains("\"outcome\":\"stopped\""), "{json}");
    assert!(!json.contains("\"guest_exit\":null"), "{json}");
}

#[test]
fn a_stop_before_run_returns_at_once_and_stays_requested() {
    if !kvm_available() {
        return;
    }
    let out = SerialBuffer::default();
    let mut vm = VmConfig::new()
        .kernel_path(guest("hello"))
        .mem_mib(32)
        .serial(Box::new(out.clone()))
        .build()
        .expect("build");
    vm.stop_handle().stop();
    assert_eq!(vm.run().unwrap(), Exit::Stopped);
    assert_eq!(vm.run().unwrap(), Exit::Stopped);
    // The guest never ran.
    assert_eq!(out.text(), "");
}
