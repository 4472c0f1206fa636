//! A vCPU made of plain fields, for driving the emulator without KVM: its
//! unit tests and the fuzzer (`ukvm-fuzz`, through the `fake-cpu`
//! feature). Injected events are recorded, not delivered.

use crate::{CpuError, Event, GuestCpu};
use kvm_bindings::{kvm_regs, kvm_sregs, kvm_xsave};

/// Register state the emulator reads and writes, and the events it
/// injected.
pub struct FakeCpu {
    /// General registers.
    pub regs: kvm_regs,
    /// Segment and control registers.
    pub sregs: kvm_sregs,
    /// The x87/SSE/AVX state (`KVM_GET_XSAVE`'s layout).
    pub xsave: kvm_xsave,
    /// The guest's XCR0.
    pub xcr0: u64,
    /// The guest's IA32_XSS.
    pub xss: u64,
    /// Every event injected, in order.
    pub events: Vec<Event>,
}

/// A copy of an XSAVE area (`kvm_xsave` is not `Clone`: it may carry a
/// flexible array).
pub fn copy_xsave(x: &kvm_xsave) -> kvm_xsave {
    kvm_xsave {
        region: x.region,
        ..Default::default()
    }
}

impl GuestCpu for FakeCpu {
    fn regs(&mut self) -> Result<kvm_regs, CpuError> {
        Ok(self.regs)
    }
    fn set_regs(&mut self, regs: &kvm_regs) -> Result<(), CpuError> {
        self.regs = *regs;
        Ok(())
    }
    fn sregs(&mut self) -> Result<kvm_sregs, CpuError> {
        Ok(self.sregs)
    }
    fn xsave(&mut self) -> Result<kvm_xsave, CpuError> {
        Ok(copy_xsave(&self.xsave))
    }
    fn set_xsave(&mut self, xsave: &kvm_xsave) -> Result<(), CpuError> {
        self.xsave = copy_xsave(xsave);
        Ok(())
    }
    fn xcr0(&mut self) -> Result<u64, CpuError> {
        Ok(self.xcr0)
    }
    fn xss(&mut self) -> Result<u64, CpuError> {
        Ok(self.xss)
    }
    fn inject(&mut self, event: Event) -> Result<(), CpuError> {
        self.events.push(event);
        Ok(())
    }
}
