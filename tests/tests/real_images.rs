//! Real Multiboot kernels from Debian packages, loaded by ukvm's loader.
//! `.ci/run` installs them; run it (or apt-get install grub-invaders) first.

use std::path::Path;
use ukvm::VmConfig;
use ukvm_tests::kvm_available;
use vm_memory_check::read_guest;

const INVADERS: &str = "/boot/invaders.exec";

fn invaders() -> Vec<u8> {
    std::fs::read(INVADERS).unwrap_or_else(|e| {
        panic!("{INVADERS}: {e}: install the fixture with `apt-get install grub-invaders` (.ci/run does)")
    })
}

mod vm_memory_check {
    use ukvm::Vm;

    /// Reads `len` guest bytes at `addr` through the library API.
    pub fn read_guest(vm: &Vm, addr: u64, len: usize) -> Vec<u8> {
        let mut buf = vec![0u8; len];
        vm.read_memory(addr, &mut buf).expect("guest read");
        buf
    }
}

#[test]
fn grub_invaders_loads_where_its_program_headers_say() {
    if !kvm_available() {
        return;
    }
    let image = invaders();
    let vm = VmConfig::new()
        .kernel_path(Path::new(INVADERS))
        .build()
        .unwrap();
    // An ELF32 file whose header also carries the a.out-kludge addresses;
    // like GRUB, ukvm uses them when flag bit 16 is set.
    assert_eq!(vm.boot().format, ukvm::BootFormat::MultibootKludge);
    // entry_addr of the header (the ELF e_entry is 0x100000).
    assert_eq!(vm.boot().entry, 0x100024);
    // load_end_addr: bytes past it are bss under the kludge.
    let load_end = 0x1019d8;
    assert_eq!(vm.boot().regs.rax, 0x2bad_b002);
    // Each PT_LOAD segment's bytes (up to load_end_addr) are where its
    // physical address says.
    let phoff = u32::from_le_bytes(image[28..32].try_into().unwrap()) as usize;
    let phnum = u16::from_le_bytes(image[44..46].try_into().unwrap()) as usize;
    let mut loads = 0;
    for i in 0..phnum {
        let ph = &image[phoff + 32 * i..phoff + 32 * (i + 1)];
        let word = |o: usize| u32::from_le_bytes(ph[o..o + 4].try_into().unwrap()) as usize;
        if word(0) != 1 {
            continue;
        }
        let (offset, paddr) = (word(4), word(12));
        let filesz = word(16).min(load_end - paddr);
        assert_eq!(
            read_guest(&vm, paddr as u64, filesz),
            image[offset..offset + filesz]
        );
        loads += 1;
    }
    assert!(loads >= 1);
}

#[test]
fn grub_invaders_runs_until_stopped() {
    if !kvm_available() {
        return;
    }
    invaders();
    // The game loops forever drawing to VGA memory and polling the
    // keyboard; it must still be running (no crash, no exit) after 2 s.
    let mut child = std::process::Command::new(ukvm_tests::ukvm_bin())
        .args(["--kernel", INVADERS])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_secs(2));
    let still_running = child.try_wait().unwrap().is_none();
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    assert!(
        still_running,
        "invaders stopped: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
