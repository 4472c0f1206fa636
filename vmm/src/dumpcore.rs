//! `--dumpcore DIR`: an ELF core file (`ukvm_debug::core`) when the guest
//! crashed (triple fault, an instruction neither KVM nor ukvm completes, a
//! KVM internal error) or a Solo5 hvt guest aborted (halt with status 255,
//! `SOLO5_EXIT_ABORT`, as solo5-hvt-debug dumps).

use crate::error::Result;
use crate::vm::{Exit, Vm};
use ukvm_debug::core::Class;
use ukvm_debug::core_file::CoreDir;
use ukvm_debug::regs::CpuState;
use ukvm_debug::Layout;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

/// Solo5's exit status for `solo5_abort()` and fatal traps.
const SOLO5_EXIT_ABORT: i32 = 255;

/// A Solo5 guest that aborts from a trap handler passes the trap frame as
/// the halt's cookie (`struct x86_trap_regs { cr2, ec, rip, cs, rflags,
/// rsp, ss }`); solo5-hvt-debug puts its RIP, CS, RFLAGS, RSP and SS in
/// the core, so that the backtrace starts where the guest faulted, not in
/// the abort path. The vCPU stopped on the halt's `outl`: EDX holds the
/// port, EAX the guest-physical address of `struct hvt_hc_halt { u64
/// cookie; int status; }`. Anything out of guest memory is left alone.
fn use_trap_frame(mem: &GuestMemoryMmap, state: &mut CpuState) {
    let halt_port = ukvm_boot::hvt::HYPERCALL_PIO_BASE + ukvm_boot::hvt::call::HALT;
    if state.regs.rdx & 0xFFFF != u64::from(halt_port) {
        return;
    }
    let arg = GuestAddress(state.regs.rax & 0xFFFF_FFFF);
    let Ok(cookie) = mem.read_obj::<u64>(arg) else {
        return;
    };
    let mut raw = [0u8; 56];
    if cookie == 0 || mem.read_slice(&mut raw, GuestAddress(cookie)).is_err() {
        return;
    }
    let field = |i: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&raw[i * 8..i * 8 + 8]);
        u64::from_le_bytes(b)
    };
    let (rip, cs, rflags, rsp, ss) = (field(2), field(3), field(4), field(5), field(6));
    state.regs.rip = rip;
    state.regs.rflags = rflags;
    state.regs.rsp = rsp;
    state.sregs.cs.selector = cs as u16;
    state.sregs.ss.selector = ss as u16;
}

/// Dumps a core into `dir` if `result` is a crash or an hvt abort.
pub(crate) fn after_run(vm: &mut Vm, result: &Result<Exit>, dir: CoreDir, layout: Layout) {
    let hvt = vm.boot().format == ukvm_boot::Format::Solo5Hvt;
    let signal = match result {
        Err(crate::Error::GuestCrash(_)) => libc::SIGSEGV,
        Ok(Exit::Code(SOLO5_EXIT_ABORT)) if hvt => libc::SIGABRT,
        _ => return,
    };
    let vcpu = vm.vcpu_mut();
    let mut state = match (vcpu.get_regs(), vcpu.get_sregs(), vcpu.get_fpu()) {
        (Ok(regs), Ok(sregs), Ok(fpu)) => CpuState { regs, sregs, fpu },
        _ => {
            eprintln!("ukvm: warning: no core dumped: the vCPU's registers cannot be read");
            return;
        }
    };
    if hvt {
        use_trap_frame(vm.memory(), &mut state);
    }
    let class = match layout {
        Layout::I386 => Class::Elf32,
        Layout::X86_64 => Class::Elf64,
    };
    match dir.dump(vm.memory(), &state, class, signal as u16) {
        Ok(path) => eprintln!("ukvm: core dumped to {}", path.display()),
        Err(e) => eprintln!("ukvm: warning: {e}"),
    }
}
