//! The floor: the least a process can do to run a VM of a given size to its
//! first exit. Opens /dev/kvm, creates a VM, registers `MIB` MiB of
//! anonymous, not prefaulted guest memory (as ukvm does), creates one vCPU,
//! enters it in real mode at a 7-byte program that writes 1 to port 0x501,
//! and exits the process on that I/O exit with status `(1 << 1) | 1 = 3`,
//! the way isa-debug-exit does, so the benchmark checks it like the guests.
//!
//! Usage: `ukvm-floor [MIB [irqchip]]` (default 64; `irqchip` also creates
//! KVM's in-kernel PIC/IOAPIC/LAPIC, to measure what that costs). Written with the same crates and
//! runtime as ukvm (Rust std, kvm-ioctls), so the ratio to it is ukvm's own
//! overhead, not the language runtime's.

use kvm_bindings::kvm_userspace_memory_region;
use kvm_ioctls::{Kvm, VcpuExit};

/// Guest-physical address of the program.
const CODE_ADDR: u64 = 0x1000;
/// `mov dx, 0x501; mov al, 1; out dx, al; hlt`: exit status (1 << 1) | 1 = 3.
const CODE: [u8; 7] = [0xba, 0x01, 0x05, 0xb0, 0x01, 0xee, 0xf4];

fn main() {
    let mib: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(64);
    let irqchip = std::env::args().nth(2).as_deref() == Some("irqchip");
    match run(mib << 20, irqchip) {
        Ok(status) => std::process::exit(status),
        Err(e) => {
            eprintln!("ukvm-floor: {e}");
            std::process::exit(2)
        }
    }
}

fn run(size: u64, irqchip: bool) -> Result<i32, String> {
    let kvm = Kvm::new().map_err(|e| format!("/dev/kvm: {e}"))?;
    let vm = kvm.create_vm().map_err(|e| format!("KVM_CREATE_VM: {e}"))?;
    if irqchip {
        vm.create_irq_chip()
            .map_err(|e| format!("KVM_CREATE_IRQCHIP: {e}"))?;
    }
    // SAFETY: a fresh anonymous private mapping; no Rust object aliases it.
    let host = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            size as usize,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if host == libc::MAP_FAILED || size < CODE_ADDR + CODE.len() as u64 {
        return Err("cannot map guest memory".into());
    }
    // SAFETY: the mapping is `size` bytes long and CODE fits in it (checked).
    unsafe {
        std::ptr::copy_nonoverlapping(
            CODE.as_ptr(),
            host.cast::<u8>().add(CODE_ADDR as usize),
            CODE.len(),
        )
    };
    let region = kvm_userspace_memory_region {
        slot: 0,
        flags: 0,
        guest_phys_addr: 0,
        memory_size: size,
        userspace_addr: host as u64,
    };
    // SAFETY: the mapping stays alive until the process exits.
    unsafe { vm.set_user_memory_region(region) }.map_err(|e| format!("memory: {e}"))?;
    let mut vcpu = vm.create_vcpu(0).map_err(|e| format!("vCPU: {e}"))?;
    let mut sregs = vcpu.get_sregs().map_err(|e| format!("sregs: {e}"))?;
    sregs.cs.base = 0;
    sregs.cs.selector = 0;
    vcpu.set_sregs(&sregs).map_err(|e| format!("sregs: {e}"))?;
    let regs = kvm_bindings::kvm_regs {
        rip: CODE_ADDR,
        rflags: 2,
        ..Default::default()
    };
    vcpu.set_regs(&regs).map_err(|e| format!("regs: {e}"))?;
    match vcpu.run().map_err(|e| format!("KVM_RUN: {e}"))? {
        VcpuExit::IoOut(0x501, data) => Ok((i32::from(data[0]) << 1) | 1),
        other => Err(format!("unexpected exit {other:?}")),
    }
}
