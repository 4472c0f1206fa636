//! vCPU set-up: the CPUID table, the registers and segment state the boot
//! protocol asks for.

use crate::error::{Error, Result};
use kvm_bindings::kvm_fpu;
use kvm_ioctls::{Kvm, VcpuFd};
use ukvm_boot::{cpu, cpuid, Boot};

fn kvm_err(op: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> Error {
    move |source| Error::Kvm { op, source }
}

/// Configures vCPU 0 to enter the kernel described by `boot`.
pub fn configure(kvm: &Kvm, vcpu: &VcpuFd, boot: &Boot) -> Result<()> {
    let supported =
        crate::cpuid_cache::supported_cpuid(kvm).map_err(kvm_err("KVM_GET_SUPPORTED_CPUID"))?;
    // Without a TSC frequency the timing leaf is left out; guests then
    // calibrate against the PIT as on bare metal.
    let tsc_khz = vcpu.get_tsc_khz().ok().filter(|khz| *khz != 0);
    let table = cpuid::adapt(&supported, 0, tsc_khz);
    vcpu.set_cpuid2(&table).map_err(kvm_err("KVM_SET_CPUID2"))?;

    let mut sregs = vcpu.get_sregs().map_err(kvm_err("KVM_GET_SREGS"))?;
    cpu::setup_sregs(&mut sregs, boot.mode);
    vcpu.set_sregs(&sregs).map_err(kvm_err("KVM_SET_SREGS"))?;
    vcpu.set_regs(&boot.regs).map_err(kvm_err("KVM_SET_REGS"))?;
    // x87 control word and MXCSR as after a processor reset (FNINIT).
    let fpu = kvm_fpu {
        fcw: 0x37f,
        mxcsr: 0x1f80,
        ..Default::default()
    };
    vcpu.set_fpu(&fpu).map_err(kvm_err("KVM_SET_FPU"))
}
