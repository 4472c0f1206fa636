//! The XSAVE family (XSAVE, XSAVEOPT, XSAVEC, XSAVES, XRSTOR, XRSTORS):
//! the requested-feature bitmap, the size of the area an instruction
//! touches in either format, the #GP checks of XRSTOR's header, and the
//! instruction the host runs in the guest's place.
//!
//! XSAVES and XRSTORS are privileged, so the host runs XSAVEC and XRSTOR
//! instead: without supervisor components (the guest's IA32_XSS selects
//! none of those requested, else the instruction is refused) they write and
//! read exactly the same compacted area.

use crate::xstate::{self, COMPACTED, HEADER_END, MXCSR, XCOMP_BV, XSTATE_BV};
use crate::Fault;
use iced_x86::{Code, Instruction};

/// What one XSAVE-family instruction does, worked out before it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    /// Requested-feature bitmap: EDX:EAX & XCR0 (& XCR0 | IA32_XSS for
    /// XSAVES/XRSTORS).
    pub rfbm: u64,
    /// XCR0, with IA32_XSS for XSAVES/XRSTORS: the components the
    /// instruction may name.
    pub enabled: u64,
    /// It loads state (XRSTOR, XRSTORS) rather than storing it.
    pub restore: bool,
    /// The instruction the host runs.
    pub host_code: Code,
    /// Bytes of the area it touches.
    pub size: usize,
}

/// The guest-side facts a plan depends on.
pub struct Guest {
    /// EDX:EAX.
    pub edx_eax: u64,
    /// XCR0.
    pub xcr0: u64,
    /// IA32_XSS (supervisor components XSAVES/XRSTORS may handle).
    pub xss: u64,
    /// Current privilege level.
    pub cpl: u8,
    /// Components the executor carries (see [`xstate::CARRIED`]).
    pub carried: u64,
}

/// Plans `insn`, an XSAVE-family instruction. `header` reads the 16 bytes
/// of XSTATE_BV and XCOMP_BV from the area (only called for restores, once
/// the operand is known to be aligned).
pub fn plan(
    insn: &Instruction,
    guest: &Guest,
    header: impl FnOnce() -> Result<[u8; 16], Fault>,
) -> Result<Plan, Fault> {
    use Code as C;
    let (host_code, supervisor) = match insn.code() {
        C::Xsaves_mem => (C::Xsavec_mem, true),
        C::Xsaves64_mem => (C::Xsavec64_mem, true),
        C::Xrstors_mem => (C::Xrstor_mem, true),
        C::Xrstors64_mem => (C::Xrstor64_mem, true),
        code => (code, false),
    };
    if supervisor && guest.cpl != 0 {
        return Err(Fault::Gp(0));
    }
    let enabled = if supervisor {
        guest.xcr0 | guest.xss
    } else {
        guest.xcr0
    };
    let rfbm = guest.edx_eax & enabled;
    if supervisor && rfbm & guest.xss != 0 {
        return Err(Fault::Other(format!(
            "supervisor state components {:#x} (IA32_XSS) are not covered",
            rfbm & guest.xss
        )));
    }
    if rfbm & !guest.carried != 0 {
        return Err(Fault::Other(format!(
            "XSAVE components {:#x} are not covered",
            rfbm & !guest.carried
        )));
    }
    let restore = matches!(
        host_code,
        C::Xrstor_mem | C::Xrstor64_mem | C::Xrstors_mem | C::Xrstors64_mem
    );
    let compacted_save = matches!(host_code, C::Xsavec_mem | C::Xsavec64_mem);
    let unknown = || Fault::Unsupported("an XSAVE component the host does not lay out");
    let size = if restore {
        let h = header()?;
        let xcomp_bv = u64::from_le_bytes([h[8], h[9], h[10], h[11], h[12], h[13], h[14], h[15]]);
        match xcomp_bv {
            bv if bv & COMPACTED == 0 && supervisor => return Err(Fault::Gp(0)),
            bv if bv & COMPACTED == 0 => xstate::standard_size(rfbm),
            // A layout naming components the guest cannot have is #GP
            // (checked again with the whole header); don't size it.
            bv if bv & !COMPACTED & !enabled != 0 => return Err(Fault::Gp(0)),
            bv if bv & !COMPACTED & !guest.carried != 0 => {
                return Err(Fault::Other(format!(
                    "XRSTOR of an area holding components {:#x} is not covered",
                    bv & !COMPACTED & !guest.carried
                )))
            }
            bv => xstate::compacted_size(bv),
        }
    } else if compacted_save {
        if !xstate::host_compacts() {
            return Err(Fault::Unsupported("XSAVEC/XSAVES on a host without XSAVEC"));
        }
        xstate::compacted_size(rfbm)
    } else {
        xstate::standard_size(rfbm)
    }
    .ok_or_else(unknown)?;
    Ok(Plan {
        rfbm,
        enabled,
        restore,
        host_code,
        size,
    })
}

/// The #GP checks XRSTOR/XRSTORS make on the area before loading anything
/// (SDM Vol. 1, 13.8 and the XRSTOR/XRSTORS pages), so the host never
/// faults on it. `area` is the whole area the plan sized. Stricter than
/// hardware in one place:
/// a reserved MXCSR bit is #GP whenever SSE or AVX is requested, also when
/// hardware would initialise SSE instead of loading it.
pub fn check_restore(plan: &Plan, area: &[u8], mxcsr_mask: u32) -> Result<(), Fault> {
    let enabled = plan.enabled;
    let xstate_bv = read_u64(area, XSTATE_BV);
    let xcomp_bv = read_u64(area, XCOMP_BV);
    let reserved = area
        .get(XCOMP_BV + 8..HEADER_END)
        .is_none_or(|r| r.iter().any(|&b| b != 0));
    let bad_header = if xcomp_bv & COMPACTED != 0 {
        if !xstate::host_compacts() {
            return Err(Fault::Unsupported(
                "compacted XRSTOR on a host without XSAVEC",
            ));
        }
        xcomp_bv & !COMPACTED & !enabled != 0 || xstate_bv & !xcomp_bv != 0
    } else {
        xstate_bv & !enabled != 0 || xcomp_bv != 0
    };
    let mxcsr = read_u64(area, MXCSR) as u32;
    let bad_mxcsr = plan.rfbm & 0b110 != 0 && mxcsr & !mxcsr_mask != 0;
    if bad_header || reserved || bad_mxcsr {
        return Err(Fault::Gp(0));
    }
    Ok(())
}

fn read_u64(b: &[u8], at: usize) -> u64 {
    b.get(at..at + 8).map_or(0, |s| {
        u64::from_le_bytes([s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7]])
    })
}
