//! Which instructions may run on the host, and the architectural checks
//! (#UD, #NM, alignment) hardware makes before running them.

use crate::Fault;
use iced_x86::{CpuidFeature, EncodingKind, Instruction, Mnemonic, OpKind, Register};

const CR0_EM: u64 = 1 << 2;
const CR0_TS: u64 = 1 << 3;
const CR4_OSFXSR: u64 = 1 << 9;
const CR4_OSXSAVE: u64 = 1 << 18;

/// How an allowlisted instruction relates to the FPU/SSE state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// SSE/SSE2/SSE3/SSSE3/SSE4 and AES/PCLMUL computation on XMM registers:
    /// may raise SIMD floating-point exceptions.
    Simd,
    /// MMX computation on the x87 register file.
    Mmx,
    /// LDMXCSR/STMXCSR.
    Mxcsr,
    /// FXSAVE/FXRSTOR.
    Fxsr,
    /// The XSAVE family: XSAVE, XSAVEOPT, XSAVEC, XSAVES, XRSTOR, XRSTORS.
    Xsave,
    /// x87 control that never waits for pending exceptions (FNINIT, FLDCW...;
    /// the waiting forms decode as FWAIT first).
    X87Control,
    /// Instructions on general registers that came with SSE4.2 (POPCNT,
    /// CRC32): they run whatever CR0 and CR4 say about the FPU and SSE.
    Integer,
}

/// Features whose legacy-encoded instructions only compute on registers and
/// their one explicit memory operand.
const SIMD_FEATURES: [CpuidFeature; 9] = [
    CpuidFeature::SSE,
    CpuidFeature::SSE2,
    CpuidFeature::SSE3,
    CpuidFeature::SSSE3,
    CpuidFeature::SSE4_1,
    CpuidFeature::SSE4_2,
    CpuidFeature::PCLMULQDQ,
    CpuidFeature::AES,
    CpuidFeature::MMX,
];

/// Instructions with those features that still must not run on the host:
/// implicit memory operands (MASKMOV*) and host-state readers/writers.
const DENIED: [Mnemonic; 5] = [
    Mnemonic::Maskmovdqu,
    Mnemonic::Maskmovq,
    Mnemonic::Xgetbv,
    Mnemonic::Xsetbv,
    Mnemonic::Clflush,
];

/// Legacy SSE instructions with a 16-byte memory operand that do not
/// require it aligned.
const UNALIGNED: [Mnemonic; 8] = [
    Mnemonic::Movups,
    Mnemonic::Movupd,
    Mnemonic::Movdqu,
    Mnemonic::Lddqu,
    Mnemonic::Pcmpestri,
    Mnemonic::Pcmpestrm,
    Mnemonic::Pcmpistri,
    Mnemonic::Pcmpistrm,
];

/// The class of an instruction that may run on the host, or why not.
pub fn classify(insn: &Instruction) -> Result<Class, String> {
    use Mnemonic as M;
    let m = insn.mnemonic();
    let class = match m {
        M::Ldmxcsr | M::Stmxcsr => Class::Mxcsr,
        M::Fxsave | M::Fxsave64 | M::Fxrstor | M::Fxrstor64 => Class::Fxsr,
        M::Xsave
        | M::Xsave64
        | M::Xsaveopt
        | M::Xsaveopt64
        | M::Xsavec
        | M::Xsavec64
        | M::Xsaves
        | M::Xsaves64
        | M::Xrstor
        | M::Xrstor64
        | M::Xrstors
        | M::Xrstors64 => Class::Xsave,
        M::Fninit | M::Fnclex | M::Fldcw | M::Fnstcw | M::Fnstsw => Class::X87Control,
        M::Popcnt | M::Crc32 => Class::Integer,
        _ => {
            if insn.encoding() != EncodingKind::Legacy {
                return Err("VEX/EVEX-encoded instructions are not covered".into());
            }
            if DENIED.contains(&m) {
                return Err("not allowed to run on the host".into());
            }
            let features = insn.cpuid_features();
            if features.is_empty() || !features.iter().all(|f| SIMD_FEATURES.contains(f)) {
                return Err(format!("not covered (CPU features {features:?})"));
            }
            if uses_mmx(insn) {
                Class::Mmx
            } else {
                Class::Simd
            }
        }
    };
    if let Some(r) = (0..insn.op_count())
        .filter(|&i| insn.op_kind(i) == OpKind::Register)
        .map(|i| insn.op_register(i))
        .find(|r| r.full_register() == Register::RSP || r.is_segment_register())
    {
        return Err(format!("{r:?} as an operand is not covered"));
    }
    Ok(class)
}

fn uses_mmx(insn: &Instruction) -> bool {
    (0..insn.op_count()).any(|i| insn.op_kind(i) == OpKind::Register && insn.op_register(i).is_mm())
}

/// The #UD/#NM checks hardware makes from CR0 and CR4, in its order.
pub fn check_enabled(class: Class, cr0: u64, cr4: u64) -> Result<(), Fault> {
    let em = cr0 & CR0_EM != 0;
    let ts = cr0 & CR0_TS != 0;
    match class {
        Class::Simd | Class::Mxcsr if em || cr4 & CR4_OSFXSR == 0 => Err(Fault::Ud),
        Class::Mmx if em => Err(Fault::Ud),
        Class::Xsave if cr4 & CR4_OSXSAVE == 0 => Err(Fault::Ud),
        Class::Fxsr | Class::X87Control if em || ts => Err(Fault::Nm),
        Class::Integer => Ok(()),
        _ if ts => Err(Fault::Nm),
        _ => Ok(()),
    }
}

/// The alignment the memory operand must have, or 1.
pub fn alignment(insn: &Instruction, class: Class, size: usize) -> u64 {
    match class {
        Class::Fxsr => 16,
        Class::Xsave => 64,
        Class::Simd if size == 16 && !UNALIGNED.contains(&insn.mnemonic()) => 16,
        _ => 1,
    }
}
