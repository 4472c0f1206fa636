//! Completes guest instructions that KVM's instruction emulator gives up on
//! (`KVM_EXIT_INTERNAL_ERROR`, suberror 1), so the guest keeps running.
//!
//! Some KVMs (software ones such as PVM) run guest kernel code through
//! KVM's instruction emulator, which lacks SSE arithmetic, MXCSR and
//! FXSAVE/XSAVE, `cmpxchg16b` and `int3`. [`Emulator::complete`] decodes the
//! instruction at RIP with `iced-x86`, and then:
//! - SSE/SSE2/SSSE3/SSE4 (with POPCNT and CRC32), MMX, MXCSR,
//!   FXSAVE/FXRSTOR, the XSAVE family
//!   (XSAVE, XSAVEOPT, XSAVEC, XRSTOR in standard and compacted format;
//!   XSAVES/XRSTORS as XSAVEC/XRSTOR, without supervisor components) and x87
//!   control instructions run on the host CPU with the guest's register
//!   state loaded and their memory operand redirected to a bounce buffer
//!   filled from (and written back to) guest memory through the guest's
//!   page tables (see [`host`]); nothing else ever runs on the host;
//! - `cmpxchg16b` runs as a host `lock cmpxchg16b` on the guest page itself,
//!   atomic with respect to every other thread touching guest memory;
//! - `int3`/`int n` are delivered as interrupts with RIP past them;
//! - `xgetbv` is completed in software (a read of the guest's XCR0, or of
//!   XINUSE), see [`xgetbv`];
//! - faults hardware would raise (#UD, #NM, #GP, #PF with CR2, #XM) are
//!   injected instead of completing.
//!
//! Anything else yields a [`Diagnosis`]: RIP, mode, bytes, mnemonic, reason.
//! Limits: segment limits are not checked (flat segments assumed), 5-level
//! paging, VEX/EVEX, XSAVE components beyond x87/SSE/AVX/AVX-512 and
//! supervisor components (IA32_XSS) are reported, not completed.

mod allow;
mod cpu;
mod exec;
#[cfg(any(test, feature = "fake-cpu"))]
pub mod fake_cpu;
pub mod host;
mod paging;
#[cfg(test)]
mod tests;
mod xgetbv;
mod xsave;
#[cfg(test)]
mod xsave_tests;
mod xstate;

pub use cpu::{enable_sync_regs, CpuError, Event, GuestCpu, KvmCpu};
pub use paging::Mmu;

use iced_x86::{Decoder, DecoderOptions, Instruction, Mnemonic, Register};
use kvm_bindings::{kvm_regs, kvm_sregs};
use std::collections::HashMap;
use vm_memory::GuestMemoryMmap;

/// A register's value as an address computation sees it: general
/// registers at their size (AH..BH the high byte), segment registers as
/// their base (CS/DS/ES/SS bases count as 0 in long mode).
pub fn address_register(r: &kvm_regs, s: &kvm_sregs, long: bool, reg: Register) -> u64 {
    let seg = |base: u64| if long { 0 } else { base };
    match reg {
        Register::ES => seg(s.es.base),
        Register::CS => seg(s.cs.base),
        Register::SS => seg(s.ss.base),
        Register::DS => seg(s.ds.base),
        Register::FS => s.fs.base,
        Register::GS => s.gs.base,
        _ => {
            let full = match reg.full_register() {
                Register::RAX => r.rax,
                Register::RCX => r.rcx,
                Register::RDX => r.rdx,
                Register::RBX => r.rbx,
                Register::RSP => r.rsp,
                Register::RBP => r.rbp,
                Register::RSI => r.rsi,
                Register::RDI => r.rdi,
                Register::R8 => r.r8,
                Register::R9 => r.r9,
                Register::R10 => r.r10,
                Register::R11 => r.r11,
                Register::R12 => r.r12,
                Register::R13 => r.r13,
                Register::R14 => r.r14,
                Register::R15 => r.r15,
                _ => 0,
            };
            match reg.size() {
                1 if reg.number() >= Register::AH.number()
                    && reg.number() <= Register::BH.number() =>
                {
                    (full >> 8) & 0xFF
                }
                1 => full & 0xFF,
                2 => full & 0xFFFF,
                4 => full & 0xFFFF_FFFF,
                _ => full,
            }
        }
    }
}

/// Longest x86 instruction.
pub const MAX_INSN_LEN: usize = 15;

/// Why an instruction did not complete normally. Guest faults become
/// events; the other variants stop the guest with a diagnosis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// #PF at `addr` with `error_code`.
    Page {
        /// Faulting linear address (CR2).
        addr: u64,
        /// #PF error code.
        error_code: u32,
    },
    /// #GP with an error code.
    Gp(u32),
    /// #UD.
    Ud,
    /// #NM.
    Nm,
    /// #XM (unmasked SIMD floating-point exception).
    Xm,
    /// #MF (pending unmasked x87 exception, reported natively: CR0.NE).
    Mf,
    /// A guest-physical address outside guest memory.
    OutsideMemory(u64),
    /// Something this executor does not cover.
    Unsupported(&'static str),
    /// Something this executor does not cover, with details.
    Other(String),
}

impl Fault {
    /// The event for a guest fault, `None` for the stopping kinds.
    fn event(&self) -> Option<Event> {
        let (vector, error_code, cr2) = match *self {
            Fault::Page { addr, error_code } => (14, Some(error_code), Some(addr)),
            Fault::Gp(code) => (13, Some(code), None),
            Fault::Ud => (6, None, None),
            Fault::Nm => (7, None, None),
            Fault::Xm => (19, None, None),
            Fault::Mf => (16, None, None),
            _ => return None,
        };
        Some(Event::Exception {
            vector,
            error_code,
            cr2,
        })
    }

    fn reason(&self) -> String {
        match self {
            Fault::OutsideMemory(gpa) => {
                format!("operand at guest-physical {gpa:#x} is outside guest memory")
            }
            Fault::Unsupported(what) => format!("{what} is not covered"),
            Fault::Other(what) => what.clone(),
            guest => format!("{guest:?}"),
        }
    }
}

/// The CPU mode the guest runs in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Real mode.
    Real,
    /// Protected mode with a 16-bit code segment.
    Protected16,
    /// Protected mode with a 32-bit code segment.
    Protected32,
    /// Long mode, 32-bit code segment.
    Compat,
    /// Long mode, 64-bit code segment.
    Long,
}

impl Mode {
    /// The mode the special registers describe.
    pub fn of(sregs: &kvm_sregs) -> Mode {
        if sregs.cr0 & 1 == 0 {
            Mode::Real
        } else if sregs.efer & (1 << 10) != 0 && sregs.cs.l != 0 {
            Mode::Long
        } else if sregs.efer & (1 << 10) != 0 {
            Mode::Compat
        } else if sregs.cs.db != 0 {
            Mode::Protected32
        } else {
            Mode::Protected16
        }
    }

    /// Default code size in bits.
    pub fn bitness(self) -> u32 {
        match self {
            Mode::Real | Mode::Protected16 => 16,
            Mode::Protected32 | Mode::Compat => 32,
            Mode::Long => 64,
        }
    }

    /// Name for diagnoses.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Real => "real mode",
            Mode::Protected16 => "16-bit protected mode",
            Mode::Protected32 => "32-bit protected mode",
            Mode::Compat => "compatibility mode",
            Mode::Long => "64-bit mode",
        }
    }
}

/// What ukvm knows about an instruction it could not complete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnosis {
    /// Guest RIP of the instruction.
    pub rip: u64,
    /// CPU mode.
    pub mode: &'static str,
    /// The instruction's bytes (all bytes known when it did not decode).
    pub bytes: Vec<u8>,
    /// Decoded mnemonic, if it decoded.
    pub mnemonic: Option<String>,
    /// Why it was not completed.
    pub reason: String,
}

impl std::fmt::Display for Diagnosis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let bytes: Vec<String> = self.bytes.iter().map(|b| format!("{b:02x}")).collect();
        write!(
            f,
            "cannot complete instruction `{}` at rip {:#x} ({}), bytes [{}]: {}",
            self.mnemonic.as_deref().unwrap_or("(undecodable)"),
            self.rip,
            self.mode,
            bytes.join(" "),
            self.reason
        )
    }
}

/// Errors of [`Emulator::complete`].
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading or writing vCPU state failed.
    #[error(transparent)]
    Cpu(#[from] CpuError),
    /// The instruction cannot be completed; the guest must stop.
    #[error("{0}")]
    Uncompletable(Diagnosis),
}

/// What [`Emulator::complete`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Completion {
    /// The instruction.
    pub mnemonic: Mnemonic,
    /// The event delivered instead of (or, for `int n`, after) completing it.
    pub event: Option<Event>,
}

/// The executor of one vCPU.
#[derive(Default)]
pub struct Emulator {
    host: Option<host::HostExec>,
    counts: HashMap<Mnemonic, u64>,
}

impl Emulator {
    /// An executor; its host pages are mapped on first use, so a guest
    /// that never needs it pays nothing at boot.
    pub fn new() -> Emulator {
        Emulator::default()
    }

    /// Completes the instruction at the guest's RIP. `kvm_bytes` are the
    /// instruction bytes KVM reported with the exit, if any; otherwise they
    /// are read from guest memory at CS:RIP through the guest page tables.
    pub fn complete(
        &mut self,
        cpu: &mut dyn GuestCpu,
        mem: &GuestMemoryMmap,
        kvm_bytes: Option<&[u8]>,
    ) -> Result<Completion, Error> {
        let regs = cpu.regs()?;
        let sregs = cpu.sregs()?;
        let mode = Mode::of(&sregs);
        let mmu = Mmu::from_sregs(&sregs);
        let linear = sregs.cs.base.wrapping_add(regs.rip);
        let mut bytes = match kvm_bytes {
            Some(b) => b[..b.len().min(MAX_INSN_LEN)].to_vec(),
            None => Vec::new(),
        };
        // KVM hands only the bytes up to the end of RIP's page: an
        // instruction that straddles a page boundary continues on the next
        // page, which only the guest's page tables can locate.
        fetch(mem, &mmu, linear, mode, &mut bytes);
        let diagnose = |insn: Option<&Instruction>, reason: String| {
            let len = insn.map_or(bytes.len(), |i| i.len().min(bytes.len()));
            Error::Uncompletable(Diagnosis {
                rip: regs.rip,
                mode: mode.name(),
                bytes: bytes[..len].to_vec(),
                mnemonic: insn.map(|i| format!("{:?}", i.mnemonic()).to_lowercase()),
                reason,
            })
        };
        let mut decoder = Decoder::with_ip(mode.bitness(), &bytes, regs.rip, DecoderOptions::NONE);
        let insn = decoder.decode();
        if insn.is_invalid() {
            return Err(diagnose(
                None,
                format!("cannot decode ({:?})", decoder.last_error()),
            ));
        }
        let mut state = exec::State {
            cpu,
            mem,
            regs,
            sregs,
            mode,
            mmu,
        };
        match exec::execute(&mut state, &mut self.host, &insn) {
            Ok(event) => {
                if let Some(event) = event {
                    state.cpu.inject(event)?;
                }
                *self.counts.entry(insn.mnemonic()).or_default() += 1;
                Ok(Completion {
                    mnemonic: insn.mnemonic(),
                    event,
                })
            }
            Err(fault) => match fault.event() {
                Some(event) => {
                    state.cpu.inject(event)?;
                    Ok(Completion {
                        mnemonic: insn.mnemonic(),
                        event: Some(event),
                    })
                }
                None => Err(diagnose(Some(&insn), fault.reason())),
            },
        }
    }

    /// Completed instructions by mnemonic (lower case), sorted by name.
    pub fn counts(&self) -> Vec<(String, u64)> {
        let mut v: Vec<(String, u64)> = self
            .counts
            .iter()
            .map(|(m, n)| (format!("{m:?}").to_lowercase(), *n))
            .collect();
        v.sort();
        v
    }
}

/// Extends `bytes`, the instruction bytes known from `linear` on, to 15
/// by reading guest memory, stopping at the first byte that cannot be read
/// (the instruction may end before it).
fn fetch(mem: &GuestMemoryMmap, mmu: &Mmu, linear: u64, mode: Mode, bytes: &mut Vec<u8>) {
    let mask = if mode == Mode::Long {
        u64::MAX
    } else {
        0xFFFF_FFFF
    };
    for i in bytes.len() as u64..MAX_INSN_LEN as u64 {
        let mut b = [0u8];
        if mmu
            .read(mem, linear.wrapping_add(i) & mask, &mut b)
            .is_err()
        {
            break;
        }
        bytes.push(b[0]);
    }
}

#[cfg(test)]
mod fetch_tests {
    use crate::tests::{memory, paged32};
    use crate::Emulator;
    use iced_x86::Mnemonic;
    use vm_memory::{Bytes, GuestAddress};

    #[test]
    fn an_instruction_straddling_a_page_is_completed_from_the_page_tables() {
        let mem = memory();
        let mut cpu = paged32(&mem);
        // Linear page 0x401000 maps guest-physical 0x300000, not the
        // physically next page, so only a walk finds the rest.
        mem.write_obj(0x30_0000u32 | 1, GuestAddress(0x11004))
            .unwrap();
        // mulps xmm0, [0x2000]: 0f 59 05 00 20 00 00, four bytes before the
        // page end and three after it.
        cpu.regs.rip = 0x40_0FFC;
        let head = [0x0F, 0x59, 0x05, 0x00];
        mem.write_slice(&head, GuestAddress(0x20_0FFC)).unwrap();
        mem.write_slice(&[0x20, 0x00, 0x00], GuestAddress(0x30_0000))
            .unwrap();
        // What the physically next page holds would address other memory.
        mem.write_obj(0x55u8, GuestAddress(0x20_1000)).unwrap();
        for i in 0..4 {
            mem.write_obj(3.0f32.to_bits(), GuestAddress(0x2000 + 4 * i))
                .unwrap();
        }
        cpu.set_xmm(0, [2.0f32.to_bits(); 4]);
        // KVM reports only the bytes up to the page end.
        let done = Emulator::new()
            .complete(&mut cpu, &mem, Some(&head))
            .unwrap();
        assert_eq!(done.mnemonic, Mnemonic::Mulps);
        assert_eq!(cpu.xmm(0), [6.0f32.to_bits(); 4]);
        assert_eq!(cpu.regs.rip, 0x40_1003);
    }
}
