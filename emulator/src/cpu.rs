//! Access to a vCPU's state: the trait the executor works through, and its
//! implementation on a KVM vCPU. Tests implement the trait on plain structs,
//! so the executor runs without `/dev/kvm`.

use kvm_bindings::{
    kvm_msr_entry, kvm_regs, kvm_sregs, kvm_xsave, Msrs, KVM_CAP_SYNC_REGS, KVM_SYNC_X86_REGS,
    KVM_SYNC_X86_SREGS,
};
use kvm_ioctls::{SyncReg, VcpuFd, VmFd};

/// IA32_XSS.
const MSR_IA32_XSS: u32 = 0xDA0;

/// An event the executor delivers to the guest instead of (or after)
/// completing an instruction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// A fault, raised with RIP at the faulting instruction.
    Exception {
        /// Vector (6 #UD, 7 #NM, 13 #GP, 14 #PF, 19 #XM).
        vector: u8,
        /// Error code, for the vectors that push one.
        error_code: Option<u32>,
        /// Faulting linear address, for #PF (goes to CR2).
        cr2: Option<u64>,
    },
    /// `int n` / `int3`: the guest's handler for `vector` runs with the
    /// return address past the instruction, no error code.
    SoftInterrupt(u8),
}

/// Errors of the state accessors (a failed ioctl).
#[derive(Debug, thiserror::Error)]
#[error("{op} failed: {source}")]
pub struct CpuError {
    /// The operation.
    pub op: &'static str,
    /// The error.
    pub source: kvm_ioctls::Error,
}

/// The vCPU state the executor reads and writes.
pub trait GuestCpu {
    /// General registers, RIP and RFLAGS.
    fn regs(&mut self) -> Result<kvm_regs, CpuError>;
    /// Writes general registers, RIP and RFLAGS.
    fn set_regs(&mut self, regs: &kvm_regs) -> Result<(), CpuError>;
    /// Segment and control registers.
    fn sregs(&mut self) -> Result<kvm_sregs, CpuError>;
    /// The XSAVE area (standard format): x87, MXCSR, XMM, YMM.
    fn xsave(&mut self) -> Result<kvm_xsave, CpuError>;
    /// Writes the XSAVE area back.
    fn set_xsave(&mut self, xsave: &kvm_xsave) -> Result<(), CpuError>;
    /// The guest's XCR0.
    fn xcr0(&mut self) -> Result<u64, CpuError>;
    /// The guest's IA32_XSS (supervisor state components for XSAVES and
    /// XRSTORS).
    fn xss(&mut self) -> Result<u64, CpuError>;
    /// Delivers an event at the next entry.
    fn inject(&mut self, event: Event) -> Result<(), CpuError>;
}

/// [`GuestCpu`] on a KVM vCPU.
///
/// Every vCPU ioctl costs a vcpu_load/vcpu_put in the kernel, and on some
/// hosts (PVM inside a VM) that means MSR accesses trapping to the outer
/// hypervisor, tens of microseconds each. So where the exit's `kvm_run`
/// carries the registers and special registers (`KVM_CAP_SYNC_REGS`, see
/// [`enable_sync_regs`]), they are read there and written back there, to be
/// loaded by the next `KVM_RUN`: a completion then needs no register
/// ioctls at all.
pub struct KvmCpu<'a> {
    vcpu: &'a mut VcpuFd,
    synced: bool,
}

/// The `kvm_run` register sets KvmCpu uses.
const SYNCED: u64 = (KVM_SYNC_X86_REGS | KVM_SYNC_X86_SREGS) as u64;

impl<'a> KvmCpu<'a> {
    /// Access to `vcpu`'s state at the exit it just took.
    pub fn new(vcpu: &'a mut VcpuFd) -> KvmCpu<'a> {
        // KVM fills the sync area at every exit for the sets marked valid
        // (the marks persist from run to run).
        let synced = vcpu.get_kvm_run().kvm_valid_regs & SYNCED == SYNCED;
        KvmCpu { vcpu, synced }
    }
}

/// Asks KVM to store the registers and special registers in `kvm_run` at
/// every exit from now on, if `vm`'s KVM can. Returns whether it does.
pub fn enable_sync_regs(vcpu: &mut VcpuFd, vm: &VmFd) -> bool {
    if vcpu.get_kvm_run().kvm_valid_regs & SYNCED == SYNCED {
        return true;
    }
    let supported = vm.check_extension_raw(libc::c_ulong::from(KVM_CAP_SYNC_REGS));
    if supported < 0 || (supported as u64) & SYNCED != SYNCED {
        return false;
    }
    vcpu.set_sync_valid_reg(SyncReg::Register);
    vcpu.set_sync_valid_reg(SyncReg::SystemRegister);
    true
}

fn op(op: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> CpuError {
    move |source| CpuError { op, source }
}

impl GuestCpu for KvmCpu<'_> {
    fn regs(&mut self) -> Result<kvm_regs, CpuError> {
        if self.synced {
            return Ok(self.vcpu.sync_regs_mut().regs);
        }
        self.vcpu.get_regs().map_err(op("KVM_GET_REGS"))
    }

    fn set_regs(&mut self, regs: &kvm_regs) -> Result<(), CpuError> {
        if self.synced {
            self.vcpu.sync_regs_mut().regs = *regs;
            self.vcpu.set_sync_dirty_reg(SyncReg::Register);
            return Ok(());
        }
        self.vcpu.set_regs(regs).map_err(op("KVM_SET_REGS"))
    }

    fn sregs(&mut self) -> Result<kvm_sregs, CpuError> {
        if self.synced {
            return Ok(self.vcpu.sync_regs_mut().sregs);
        }
        self.vcpu.get_sregs().map_err(op("KVM_GET_SREGS"))
    }

    fn xsave(&mut self) -> Result<kvm_xsave, CpuError> {
        self.vcpu.get_xsave().map_err(op("KVM_GET_XSAVE"))
    }

    fn set_xsave(&mut self, xsave: &kvm_xsave) -> Result<(), CpuError> {
        // SAFETY: `xsave` is a whole kvm_xsave (4 KiB region, no trailing
        // flexible array in use); the kernel reads only that much for
        // KVM_SET_XSAVE, and its header was produced by the host CPU's
        // XSAVE, so every feature it names fits in the region.
        unsafe { self.vcpu.set_xsave(xsave) }.map_err(op("KVM_SET_XSAVE"))
    }

    fn xcr0(&mut self) -> Result<u64, CpuError> {
        let xcrs = self.vcpu.get_xcrs().map_err(op("KVM_GET_XCRS"))?;
        let n = (xcrs.nr_xcrs as usize).min(xcrs.xcrs.len());
        Ok(xcrs.xcrs[..n]
            .iter()
            .find(|x| x.xcr == 0)
            .map_or(1, |x| x.value))
    }

    fn xss(&mut self) -> Result<u64, CpuError> {
        // A KVM that does not offer the MSR (it is not in its MSR list, as
        // on PVM) gives the guest none: IA32_XSS is 0 there.
        let Ok(mut msrs) = Msrs::from_entries(&[kvm_msr_entry {
            index: MSR_IA32_XSS,
            ..Default::default()
        }]) else {
            return Ok(0);
        };
        match self.vcpu.get_msrs(&mut msrs) {
            Ok(1) => Ok(msrs.as_slice()[0].data),
            _ => Ok(0),
        }
    }

    fn inject(&mut self, event: Event) -> Result<(), CpuError> {
        let mut events = self
            .vcpu
            .get_vcpu_events()
            .map_err(op("KVM_GET_VCPU_EVENTS"))?;
        match event {
            Event::Exception {
                vector,
                error_code,
                cr2,
            } => {
                if let Some(cr2) = cr2 {
                    let mut sregs = self.sregs()?;
                    sregs.cr2 = cr2;
                    self.vcpu.set_sregs(&sregs).map_err(op("KVM_SET_SREGS"))?;
                }
                events.exception.injected = 1;
                events.exception.pending = 0;
                events.exception.nr = vector;
                events.exception.has_error_code = u8::from(error_code.is_some());
                events.exception.error_code = error_code.unwrap_or(0);
            }
            Event::SoftInterrupt(vector) => {
                // Injected as a hardware-type interrupt with RIP already past
                // the instruction: the pushed return address is then exactly
                // RIP, whereas a "soft" injection would make KVM add an
                // instruction length it does not know for this exit.
                events.interrupt.injected = 1;
                events.interrupt.nr = vector;
                events.interrupt.soft = 0;
            }
        }
        self.vcpu
            .set_vcpu_events(&events)
            .map_err(op("KVM_SET_VCPU_EVENTS"))
    }
}
