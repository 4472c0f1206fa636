//! Instruction completion: random instruction bytes (biased to the SSE,
//! AVX and x87 encodings that reach the executor) with random register
//! state, CPU modes and page tables over real guest memory. Invariants: no
//! panic, the host process survives the native execution of what the
//! executor accepts, and a completion moves RIP forward by 1 to 15 bytes
//! or delivers an event.

use crate::{signature, Rng, Target};
use kvm_bindings::{kvm_regs, kvm_sregs, kvm_xsave};
use ukvm_emulator::fake_cpu::FakeCpu;
use ukvm_emulator::Emulator;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

const MEM: u64 = 4 << 20;

/// The instruction-completion target.
pub struct Insn {
    mem: GuestMemoryMmap,
    emulator: Emulator,
}

impl Default for Insn {
    fn default() -> Self {
        Insn {
            mem: GuestMemoryMmap::from_ranges(&[(GuestAddress(0), MEM as usize)])
                .expect("guest memory"),
            emulator: Emulator::new(),
        }
    }
}

/// Real mode, 32-bit protected mode or 64-bit mode (with page tables at
/// a random CR3), SSE on, CR0.TS and CR4.OSXSAVE at random.
fn sregs(rng: &mut Rng, mode: u64) -> kvm_sregs {
    let mut s = kvm_sregs {
        cr0: if mode == 0 { 0x10 } else { 0x11 } | (rng.below(2) << 3),
        cr4: (1 << 9) | (1 << 10) | (rng.below(2) << 18),
        ..Default::default()
    };
    s.cs.db = u8::from(mode == 1);
    if mode == 2 {
        s.cr0 |= 1 << 31;
        s.cr4 |= 1 << 5;
        s.efer = (1 << 8) | (1 << 10);
        s.cs.l = 1;
        s.cr3 = if rng.one_in(4) {
            rng.edgy()
        } else {
            0x1000 * rng.below(16)
        };
    }
    s
}

/// 15 bytes: prefixes, an escape, an opcode, ModRM/SIB/displacement.
fn bytes(rng: &mut Rng, long: bool) -> Vec<u8> {
    let mut b = Vec::with_capacity(15);
    match rng.below(8) {
        0 => b.push([0x66, 0xf2, 0xf3][rng.below(3) as usize]),
        1 => b.push(0xc5), // VEX2
        2 => b.push(0xc4), // VEX3
        _ => {}
    }
    if long && rng.one_in(3) {
        b.push(0x40 | rng.below(16) as u8);
    }
    match rng.below(5) {
        0 => b.extend([0x0f, [0x38, 0x3a][rng.below(2) as usize]]),
        1 => b.push(0xd8 + rng.below(8) as u8), // x87
        2 => {}
        _ => b.push(0x0f),
    }
    while b.len() < 15 {
        b.push(rng.bits() as u8);
    }
    b
}

impl Target for Insn {
    fn name(&self) -> String {
        "instruction completion".into()
    }

    fn one(&mut self, rng: &mut Rng) -> Result<u64, String> {
        let mode = rng.below(3); // real, 32-bit, 64-bit
        let sregs = sregs(rng, mode);
        // Page tables, operands and instruction page: random, sometimes.
        if rng.one_in(4) {
            for _ in 0..64 {
                let at = 0x1000 * rng.below(16) + 8 * rng.below(512);
                let entry = if rng.one_in(2) {
                    (0x1000 * rng.below(MEM / 0x1000)) | 0x83
                } else {
                    rng.bits()
                };
                let _ = self.mem.write_obj(entry, GuestAddress(at));
            }
        }
        let mut regs = kvm_regs::default();
        for r in [
            &mut regs.rax,
            &mut regs.rbx,
            &mut regs.rcx,
            &mut regs.rdx,
            &mut regs.rsi,
            &mut regs.rdi,
            &mut regs.rbp,
            &mut regs.rsp,
        ] {
            *r = if rng.one_in(2) {
                rng.below(MEM)
            } else {
                rng.edgy()
            };
        }
        regs.rip = if rng.one_in(8) {
            rng.edgy()
        } else {
            0x20000 + rng.below(0x1000)
        };
        regs.rflags = 2;
        let mut xsave = kvm_xsave::default();
        // Any MXCSR KVM can hand over: reserved bits (16-31) are never set.
        xsave.region[6] = if rng.one_in(4) {
            rng.bits() as u32 & 0xffff
        } else {
            0x1f80
        };
        xsave.region[128] = 3;
        let mut cpu = FakeCpu {
            regs,
            sregs,
            xsave,
            xcr0: [1, 3, 7][rng.below(3) as usize],
            xss: 0,
            events: Vec::new(),
        };
        let insn = bytes(rng, mode == 2);
        let kvm_bytes = if rng.one_in(8) {
            None
        } else {
            Some(&insn[..1 + rng.below(15) as usize])
        };
        let rip = cpu.regs.rip;
        let result = self.emulator.complete(&mut cpu, &self.mem, kvm_bytes);
        let outcome = match &result {
            Ok(done) => {
                // IP, EIP or RIP: the new value wraps at the mode's width.
                let width = [0xffff, 0xffff_ffff, u64::MAX][mode as usize];
                let moved = cpu.regs.rip.wrapping_sub(rip) & width;
                // Control transfers (iret, the emulator completes it) go
                // anywhere; everything else moves to the next instruction.
                let transfer = format!("{:?}", done.mnemonic).starts_with("Iret");
                if !transfer
                    && done.event.is_none()
                    && cpu.events.is_empty()
                    && !(1..=15).contains(&moved)
                {
                    return Err(format!(
                        "completed {:?} but RIP moved by {moved:#x}",
                        done.mnemonic
                    ));
                }
                1 + done.mnemonic as u64
            }
            Err(ukvm_emulator::Error::Uncompletable(d)) => 5000 + u64::from(d.mnemonic.is_some()),
            Err(_) => 6000,
        };
        Ok(signature(&[mode, outcome]))
    }
}
