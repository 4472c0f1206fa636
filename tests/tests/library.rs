//! The library API: builder -> build -> run -> typed exit, with the serial
//! console going to a caller-provided writer.

use std::io::Write;
use std::sync::{Arc, Mutex};
use ukvm::{CrashKind, Error, Exit, VmConfig};
use ukvm_tests::{guest, kvm_available};

#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Write for Buffer {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Buffer {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

fn boot(name: &str, cmdline: &str) -> (Result<Exit, Error>, String) {
    let out = Buffer::default();
    let mut vm = VmConfig::new()
        .kernel_path(guest(name))
        .cmdline(cmdline)
        .mem_mib(32)
        .serial(Box::new(out.clone()))
        .build()
        .expect("build");
    let result = vm.run();
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
    let (result, text) = boot("halt", "");
    assert_eq!(result.unwrap(), Exit::Halted);
    assert!(text.contains("halt: halting"));
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
    let out = Buffer::default();
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
