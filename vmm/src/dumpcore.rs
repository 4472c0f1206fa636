//! `--dumpcore DIR`: an ELF core file (`ukvm_debug::core`) when the guest
//! crashed (triple fault, an instruction neither KVM nor ukvm completes, a
//! KVM internal error) or a Solo5 hvt guest aborted (halt with status 255,
//! `SOLO5_EXIT_ABORT`, as solo5-hvt-debug dumps).

use crate::error::Result;
use crate::vm::{Exit, Vm};
use std::path::Path;
use ukvm_debug::core::Class;
use ukvm_debug::regs::CpuState;
use ukvm_debug::Layout;

/// Solo5's exit status for `solo5_abort()` and fatal traps.
const SOLO5_EXIT_ABORT: i32 = 255;

/// Dumps a core into `dir` if `result` is a crash or an hvt abort.
pub(crate) fn after_run(vm: &mut Vm, result: &Result<Exit>, dir: &Path, layout: Layout) {
    let hvt = vm.boot().format == ukvm_boot::Format::Solo5Hvt;
    let signal = match result {
        Err(crate::Error::GuestCrash(_)) => libc::SIGSEGV,
        Ok(Exit::Code(SOLO5_EXIT_ABORT)) if hvt => libc::SIGABRT,
        _ => return,
    };
    let vcpu = vm.vcpu_mut();
    let state = match (vcpu.get_regs(), vcpu.get_sregs(), vcpu.get_fpu()) {
        (Ok(regs), Ok(sregs), Ok(fpu)) => CpuState { regs, sregs, fpu },
        _ => {
            eprintln!("ukvm: warning: no core dumped: the vCPU's registers cannot be read");
            return;
        }
    };
    let class = match layout {
        Layout::I386 => Class::Elf32,
        Layout::X86_64 => Class::Elf64,
    };
    match ukvm_debug::core::dump(dir, vm.memory(), &state, class, signal as u16) {
        Ok(path) => eprintln!("ukvm: core dumped to {}", path.display()),
        Err(e) => eprintln!("ukvm: warning: {e}"),
    }
}
