//! XGETBV completed in software: it only reads an extended control
//! register, so nothing has to run on the host. Unikraft executes it first
//! thing (to size its FPU save area), and some KVMs cannot emulate it.
//!
//! As hardware does (Intel SDM, XGETBV): #UD when CR4.OSXSAVE is clear or
//! with a LOCK prefix; ECX = 0 reads XCR0; ECX = 1 reads XINUSE (XCR0 ANDed
//! with the components not in their initial state) where the CPU supports
//! it (CPUID.(EAX=0DH,ECX=1):EAX[2]), else #GP(0); any other ECX is #GP(0).

use crate::exec::{cpu_fault, State};
use crate::xstate::XSTATE_BV;
use crate::Fault;
use iced_x86::Instruction;

const CR4_OSXSAVE: u64 = 1 << 18;

/// Does the host CPU (whose CPUID leaf 0xD the guest sees) support
/// XGETBV with ECX = 1?
fn xgetbv1_supported() -> bool {
    let max = std::arch::x86_64::__cpuid(0).eax;
    max >= 0xD && std::arch::x86_64::__cpuid_count(0xD, 1).eax & (1 << 2) != 0
}

/// Completes `xgetbv`: EDX:EAX = the register ECX names.
pub fn complete(st: &mut State<'_>, insn: &Instruction) -> Result<(), Fault> {
    if insn.has_lock_prefix() || st.sregs.cr4 & CR4_OSXSAVE == 0 {
        return Err(Fault::Ud);
    }
    let xcr0 = st.cpu.xcr0().map_err(cpu_fault)?;
    let value = match st.regs.rcx as u32 {
        0 => xcr0,
        1 if xgetbv1_supported() => {
            // KVM's XSAVE image records XINUSE in XSTATE_BV (XSAVE writes
            // XINUSE & RFBM there, and KVM saves every enabled component).
            let area = st.cpu.xsave().map_err(cpu_fault)?;
            let lo = u64::from(area.region[XSTATE_BV / 4]);
            let hi = u64::from(area.region[XSTATE_BV / 4 + 1]);
            (lo | hi << 32) & xcr0
        }
        _ => return Err(Fault::Gp(0)),
    };
    // 32-bit results zero the upper halves of RAX and RDX in 64-bit mode,
    // and outside it only the low halves exist.
    st.regs.rax = value & 0xFFFF_FFFF;
    st.regs.rdx = value >> 32;
    st.retire(insn)
}

#[cfg(test)]
mod tests {
    use super::xgetbv1_supported;
    use crate::tests::{cpu32, gp0, memory, run, CR4_OSXSAVE};
    use crate::Event;

    const XGETBV: [u8; 3] = [0x0F, 0x01, 0xD0];

    #[test]
    fn reads_xcr0_into_edx_eax_and_moves_rip_past() {
        let mem = memory();
        let mut cpu = cpu32();
        cpu.sregs.cr4 |= CR4_OSXSAVE;
        cpu.xcr0 = 0x2_0000_0007;
        cpu.regs.rax = u64::MAX;
        cpu.regs.rdx = u64::MAX;
        let done = run(&mut cpu, &mem, &XGETBV).unwrap();
        assert_eq!(done.event, None);
        assert_eq!((cpu.regs.rax, cpu.regs.rdx), (7, 2));
        assert_eq!(cpu.regs.rip, 0x1003);
        assert!(cpu.events.is_empty());
    }

    #[test]
    fn ecx_1_reads_xinuse_where_supported_else_gp() {
        let mem = memory();
        let mut cpu = cpu32();
        cpu.sregs.cr4 |= CR4_OSXSAVE;
        cpu.xcr0 = 7;
        cpu.regs.rcx = 1;
        cpu.xsave.region[128] = 0b101; // XSTATE_BV: x87 and AVX in use
        let done = run(&mut cpu, &mem, &XGETBV).unwrap();
        if xgetbv1_supported() {
            assert_eq!(done.event, None);
            assert_eq!((cpu.regs.rax, cpu.regs.rdx), (0b101, 0));
            assert_eq!(cpu.regs.rip, 0x1003);
        } else {
            assert_eq!(done.event, Some(gp0()));
            assert_eq!(cpu.regs.rip, 0x1000);
        }
    }

    #[test]
    fn faults_as_hardware_does() {
        let mem = memory();
        // Any ECX but 0 and 1: #GP(0), RIP stays on the instruction.
        let mut cpu = cpu32();
        cpu.sregs.cr4 |= CR4_OSXSAVE;
        cpu.regs.rcx = 2;
        let done = run(&mut cpu, &mem, &XGETBV).unwrap();
        assert_eq!(done.event, Some(gp0()));
        assert_eq!(cpu.regs.rip, 0x1000);
        // CR4.OSXSAVE clear: #UD.
        let mut cpu = cpu32();
        let done = run(&mut cpu, &mem, &XGETBV).unwrap();
        let ud = Event::Exception {
            vector: 6,
            error_code: None,
            cr2: None,
        };
        assert_eq!(done.event, Some(ud));
        assert_eq!(cpu.regs.rip, 0x1000);
    }
}
