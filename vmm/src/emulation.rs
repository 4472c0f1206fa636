//! Completing instructions KVM's emulator could not (KVM_EXIT_INTERNAL_ERROR
//! with suberror 1), through the `ukvm-emulator` crate, so the guest
//! continues instead of crashing.

use crate::error::CrashKind;
use kvm_bindings::{
    KVM_INTERNAL_ERROR_EMULATION, KVM_INTERNAL_ERROR_EMULATION_FLAG_INSTRUCTION_BYTES,
};
use kvm_ioctls::{VcpuFd, VmFd};
use ukvm_emulator::{Emulator, KvmCpu};
use vm_memory::GuestMemoryMmap;

/// What to do after an internal-error exit.
pub(crate) enum Outcome {
    /// The instruction completed (or a fault was delivered): run on.
    Resume,
    /// The guest must stop.
    Stop(CrashKind),
}

/// Handles one `KVM_EXIT_INTERNAL_ERROR`: for an emulation failure the
/// instruction is completed by `emulator`; any other suberror (and an
/// instruction that cannot be completed) stops the guest.
///
/// From the first completion on, KVM is asked to hand over the registers
/// in `kvm_run` at every exit: a guest that needs completions tends to need
/// many, and each register ioctl saved matters on the hosts that need them.
pub(crate) fn handle(
    emulator: &mut Emulator,
    vcpu: &mut VcpuFd,
    vm: &VmFd,
    mem: &GuestMemoryMmap,
) -> Outcome {
    let Some(bytes) = emulation_failure(vcpu) else {
        // Vm::crash reads the suberror itself.
        return Outcome::Stop(CrashKind::InternalError(0));
    };
    let kvm_bytes = (!bytes.is_empty()).then_some(bytes.as_slice());
    let result = emulator.complete(&mut KvmCpu::new(vcpu), mem, kvm_bytes);
    match result {
        Ok(_) => {
            ukvm_emulator::enable_sync_regs(vcpu, vm);
            Outcome::Resume
        }
        Err(ukvm_emulator::Error::Uncompletable(diagnosis)) => {
            Outcome::Stop(CrashKind::Uncompletable(diagnosis.to_string()))
        }
        Err(ukvm_emulator::Error::Cpu(e)) => Outcome::Stop(CrashKind::Uncompletable(format!(
            "completing an instruction: {e}"
        ))),
    }
}

/// For an emulation failure, the instruction bytes KVM reported (empty
/// when it reported none); `None` for other internal errors.
pub(crate) fn emulation_failure(vcpu: &mut VcpuFd) -> Option<Vec<u8>> {
    let run = vcpu.get_kvm_run();
    // SAFETY: called right after KVM_EXIT_INTERNAL_ERROR, so the kernel
    // filled the `internal` member of the exit union; `emulation_failure`
    // shares its leading suberror/ndata/flags layout, and its instruction
    // fields are read only when the suberror and flags say they are valid.
    let (suberror, flags, size, bytes) = unsafe {
        let ef = run.__bindgen_anon_1.emulation_failure;
        let insn = ef.__bindgen_anon_1.__bindgen_anon_1;
        (ef.suberror, ef.flags, insn.insn_size, insn.insn_bytes)
    };
    if suberror != KVM_INTERNAL_ERROR_EMULATION {
        return None;
    }
    if flags & u64::from(KVM_INTERNAL_ERROR_EMULATION_FLAG_INSTRUCTION_BYTES) == 0 {
        return Some(Vec::new());
    }
    // KVM reports the 15 bytes at RIP whatever the instruction's length;
    // the emulator decodes the length itself.
    Some(bytes[..usize::from(size).min(bytes.len())].to_vec())
}
