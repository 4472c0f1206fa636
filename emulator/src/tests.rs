//! Unit tests: each covered instruction class against known register and
//! memory states, and the fault cases, on a fake vCPU (no /dev/kvm).

use super::*;
use kvm_bindings::{kvm_regs, kvm_sregs, kvm_xsave};
use vm_memory::{Bytes, GuestAddress};

const MEM_SIZE: usize = 4 << 20;
const CR0_PE: u64 = 1;
const CR0_PG: u64 = 1 << 31;
const CR0_WP: u64 = 1 << 16;
const CR4_PAE: u64 = 1 << 5;
const CR4_OSFXSR: u64 = 1 << 9;
const CR4_OSXMMEXCPT: u64 = 1 << 10;
pub(crate) const CR4_OSXSAVE: u64 = 1 << 18;

pub(crate) use crate::fake_cpu::{copy_xsave as copy, FakeCpu};

/// A flat 32-bit protected-mode vCPU with SSE enabled, no paging.
pub(crate) fn cpu32() -> FakeCpu {
    let mut sregs = kvm_sregs {
        cr0: CR0_PE | (1 << 1),
        cr4: CR4_OSFXSR | CR4_OSXMMEXCPT,
        ..Default::default()
    };
    sregs.cs.db = 1;
    let mut cpu = FakeCpu {
        regs: kvm_regs {
            rip: 0x1000,
            rflags: 2,
            ..Default::default()
        },
        sregs,
        xsave: kvm_xsave::default(),
        xcr0: 1,
        xss: 0,
        events: Vec::new(),
    };
    cpu.set_mxcsr(0x1F80);
    cpu.xsave.region[128] = 0b11; // XSTATE_BV: x87 and SSE present
    cpu
}

/// A 64-bit vCPU with identity-mapped 2 MiB pages over guest memory.
pub(crate) fn cpu64(mem: &GuestMemoryMmap) -> FakeCpu {
    let mut cpu = cpu32();
    cpu.sregs.cr0 |= CR0_PG;
    cpu.sregs.cr4 |= CR4_PAE;
    cpu.sregs.efer = (1 << 8) | (1 << 10);
    cpu.sregs.cs.l = 1;
    cpu.sregs.cs.db = 0;
    cpu.sregs.cr3 = 0x10000;
    mem.write_obj(0x11000u64 | 3, GuestAddress(0x10000))
        .unwrap();
    mem.write_obj(0x12000u64 | 3, GuestAddress(0x11000))
        .unwrap();
    for i in 0..2u64 {
        let entry = (i << 21) | 0x83; // present, writable, 2 MiB
        mem.write_obj(entry, GuestAddress(0x12000 + 8 * i)).unwrap();
    }
    cpu
}

impl FakeCpu {
    pub(crate) fn mxcsr(&self) -> u32 {
        self.xsave.region[6]
    }
    pub(crate) fn set_mxcsr(&mut self, v: u32) {
        self.xsave.region[6] = v;
    }
    pub(crate) fn xmm(&self, i: usize) -> [u32; 4] {
        let w = 40 + 4 * i;
        [
            self.xsave.region[w],
            self.xsave.region[w + 1],
            self.xsave.region[w + 2],
            self.xsave.region[w + 3],
        ]
    }
    pub(crate) fn set_xmm(&mut self, i: usize, v: [u32; 4]) {
        self.xsave.region[40 + 4 * i..44 + 4 * i].copy_from_slice(&v);
    }
    fn set_xmm_f32(&mut self, i: usize, v: [f32; 4]) {
        self.set_xmm(i, v.map(f32::to_bits));
    }
    fn xmm_f32(&self, i: usize) -> [f32; 4] {
        self.xmm(i).map(f32::from_bits)
    }
}

pub(crate) fn memory() -> GuestMemoryMmap {
    GuestMemoryMmap::from_ranges(&[(GuestAddress(0), MEM_SIZE)]).unwrap()
}

/// Runs `code` at RIP 0x1000 with the bytes given as KVM would report them.
pub(crate) fn run(
    cpu: &mut FakeCpu,
    mem: &GuestMemoryMmap,
    code: &[u8],
) -> Result<Completion, Error> {
    mem.write_slice(code, GuestAddress(cpu.regs.rip)).unwrap();
    Emulator::new().complete(cpu, mem, Some(code))
}

pub(crate) fn gp0() -> Event {
    Event::Exception {
        vector: 13,
        error_code: Some(0),
        cr2: None,
    }
}

#[test]
fn ldmxcsr_and_stmxcsr() {
    let mem = memory();
    let mut cpu = cpu32();
    cpu.regs.rax = 0x2000;
    mem.write_obj(0x7F80u32, GuestAddress(0x2000)).unwrap();
    // ldmxcsr [eax]
    let done = run(&mut cpu, &mem, &[0x0F, 0xAE, 0x10]).unwrap();
    assert_eq!(done.mnemonic, Mnemonic::Ldmxcsr);
    assert_eq!(done.event, None);
    assert_eq!(cpu.mxcsr(), 0x7F80);
    assert_eq!(cpu.regs.rip, 0x1003);
    // stmxcsr [eax+4]
    cpu.regs.rip = 0x1000;
    run(&mut cpu, &mem, &[0x0F, 0xAE, 0x58, 0x04]).unwrap();
    assert_eq!(mem.read_obj::<u32>(GuestAddress(0x2004)).unwrap(), 0x7F80);
    assert_eq!(cpu.regs.rip, 0x1004);
}

#[test]
fn ldmxcsr_reserved_bits_raise_gp() {
    let mem = memory();
    let mut cpu = cpu32();
    cpu.regs.rax = 0x2000;
    mem.write_obj(0xFFFF_0000u32, GuestAddress(0x2000)).unwrap();
    let done = run(&mut cpu, &mem, &[0x0F, 0xAE, 0x10]).unwrap();
    assert_eq!(done.event, Some(gp0()));
    assert_eq!(cpu.events, vec![gp0()]);
    assert_eq!(
        cpu.regs.rip, 0x1000,
        "a fault leaves RIP at the instruction"
    );
    assert_eq!(cpu.mxcsr(), 0x1F80);
}

#[test]
fn mulps_registers() {
    let mem = memory();
    let mut cpu = cpu32();
    cpu.set_xmm_f32(0, [1.5, 2.0, 3.0, -4.0]);
    cpu.set_xmm_f32(1, [2.0, 2.0, 0.5, 2.0]);
    run(&mut cpu, &mem, &[0x0F, 0x59, 0xC1]).unwrap(); // mulps xmm0, xmm1
    assert_eq!(cpu.xmm_f32(0), [3.0, 4.0, 1.5, -8.0]);
    assert_eq!(cpu.xmm_f32(1), [2.0, 2.0, 0.5, 2.0]);
    assert_eq!(cpu.regs.rip, 0x1003);
}

#[test]
fn paddd_memory_operand_and_pxor_store_roundtrip() {
    let mem = memory();
    let mut cpu = cpu32();
    cpu.regs.rbx = 0x3000;
    cpu.regs.rsi = 0x10;
    cpu.set_xmm(2, [1, 2, 3, u32::MAX]);
    for (i, v) in [10u32, 20, 30, 1].iter().enumerate() {
        mem.write_obj(*v, GuestAddress(0x3020 + 4 * i as u64))
            .unwrap();
    }
    // paddd xmm2, [ebx+esi*2]
    run(&mut cpu, &mem, &[0x66, 0x0F, 0xFE, 0x14, 0x73]).unwrap();
    assert_eq!(cpu.xmm(2), [11, 22, 33, 0]);
    assert_eq!(cpu.regs.rip, 0x1005);
}

#[test]
fn misaligned_legacy_sse_operand_raises_gp() {
    let mem = memory();
    let mut cpu = cpu32();
    cpu.regs.rax = 0x2008;
    // pxor xmm0, [eax]: legacy SSE 16-byte operands must be aligned
    let done = run(&mut cpu, &mem, &[0x66, 0x0F, 0xEF, 0x00]).unwrap();
    assert_eq!(done.event, Some(gp0()));
    // movdqu has no such rule: movdqu xmm0, [eax] completes
    cpu.events.clear();
    let done = run(&mut cpu, &mem, &[0xF3, 0x0F, 0x6F, 0x00]).unwrap();
    assert_eq!(done.event, None);
}

#[test]
fn cvtsi2sd_and_cvttsd2si_use_general_registers() {
    let mem = memory();
    let mut cpu = cpu32();
    cpu.regs.rax = (-7i32) as u32 as u64;
    run(&mut cpu, &mem, &[0xF2, 0x0F, 0x2A, 0xC8]).unwrap(); // cvtsi2sd xmm1, eax
    let x = cpu.xmm(1);
    assert_eq!(
        f64::from_bits(u64::from(x[0]) | (u64::from(x[1]) << 32)),
        -7.0
    );
    run(&mut cpu, &mem, &[0xF2, 0x0F, 0x2C, 0xD9]).unwrap(); // cvttsd2si ebx, xmm1
    assert_eq!(cpu.regs.rbx as u32, (-7i32) as u32);
}

#[test]
fn comiss_sets_flags() {
    let mem = memory();
    let mut cpu = cpu32();
    cpu.set_xmm_f32(0, [1.0, 0.0, 0.0, 0.0]);
    cpu.set_xmm_f32(1, [2.0, 0.0, 0.0, 0.0]);
    cpu.regs.rflags = 2 | (1 << 6); // ZF set beforehand
    run(&mut cpu, &mem, &[0x0F, 0x2F, 0xC1]).unwrap(); // comiss xmm0, xmm1
    assert_eq!(cpu.regs.rflags & 1, 1, "CF: 1.0 < 2.0");
    assert_eq!(cpu.regs.rflags & (1 << 6), 0, "ZF cleared");
}

#[test]
fn unmasked_divide_by_zero_raises_xm_and_keeps_destination() {
    let mem = memory();
    let mut cpu = cpu32();
    cpu.set_mxcsr(0x1F80 & !(1 << 9)); // unmask ZE
    cpu.set_xmm_f32(0, [1.0, 1.0, 1.0, 1.0]);
    cpu.set_xmm_f32(1, [0.0, 1.0, 1.0, 1.0]);
    let done = run(&mut cpu, &mem, &[0x0F, 0x5E, 0xC1]).unwrap(); // divps xmm0, xmm1
    assert_eq!(
        done.event,
        Some(Event::Exception {
            vector: 19,
            error_code: None,
            cr2: None
        })
    );
    assert_eq!(cpu.xmm_f32(0), [1.0, 1.0, 1.0, 1.0]);
    assert_eq!(cpu.mxcsr() & 0x3F, 1 << 2, "ZE flag set");
    // With ZE masked the result is infinity and only the flag records it.
    let mut cpu = cpu32();
    cpu.set_xmm_f32(0, [1.0, 1.0, 1.0, 1.0]);
    cpu.set_xmm_f32(1, [0.0, 1.0, 1.0, 1.0]);
    run(&mut cpu, &mem, &[0x0F, 0x5E, 0xC1]).unwrap();
    assert_eq!(cpu.xmm_f32(0)[0], f32::INFINITY);
    assert_eq!(cpu.mxcsr(), 0x1F80 | (1 << 2));
}

#[test]
fn sse_disabled_raises_ud_and_ts_raises_nm() {
    let mem = memory();
    let mut cpu = cpu32();
    cpu.sregs.cr4 = 0;
    let done = run(&mut cpu, &mem, &[0x0F, 0x59, 0xC1]).unwrap();
    assert!(matches!(
        done.event,
        Some(Event::Exception { vector: 6, .. })
    ));
    let mut cpu = cpu32();
    cpu.sregs.cr0 |= 1 << 3;
    let done = run(&mut cpu, &mem, &[0x0F, 0x59, 0xC1]).unwrap();
    assert!(matches!(
        done.event,
        Some(Event::Exception { vector: 7, .. })
    ));
}

#[test]
fn fxsave_and_fxrstor() {
    let mem = memory();
    let mut cpu = cpu32();
    cpu.set_mxcsr(0x9FC0);
    cpu.set_xmm(3, [0xDEAD_BEEF, 1, 2, 3]);
    cpu.regs.rdi = 0x4000;
    run(&mut cpu, &mem, &[0x0F, 0xAE, 0x07]).unwrap(); // fxsave [edi]
    assert_eq!(
        mem.read_obj::<u32>(GuestAddress(0x4000 + 24)).unwrap(),
        0x9FC0
    );
    assert_eq!(
        mem.read_obj::<u32>(GuestAddress(0x4000 + 160 + 48))
            .unwrap(),
        0xDEAD_BEEF
    );
    // Change the saved image, restore it, and see the registers follow.
    mem.write_obj(0x1F80u32, GuestAddress(0x4000 + 24)).unwrap();
    mem.write_obj(0x1234_5678u32, GuestAddress(0x4000 + 160))
        .unwrap();
    run(&mut cpu, &mem, &[0x0F, 0xAE, 0x0F]).unwrap(); // fxrstor [edi]
    assert_eq!(cpu.mxcsr(), 0x1F80);
    assert_eq!(cpu.xmm(0)[0], 0x1234_5678);
    assert_eq!(cpu.xmm(3)[0], 0xDEAD_BEEF);
    // Misaligned: #GP.
    cpu.regs.rdi = 0x4008;
    let done = run(&mut cpu, &mem, &[0x0F, 0xAE, 0x07]).unwrap();
    assert_eq!(done.event, Some(gp0()));
}

#[test]
fn xsave_and_xrstor_follow_xcr0() {
    let mem = memory();
    let mut cpu = cpu32();
    cpu.sregs.cr4 |= CR4_OSXSAVE;
    cpu.xcr0 = 0b11;
    cpu.set_xmm(1, [7, 7, 7, 7]);
    cpu.regs.rsi = 0x5000;
    cpu.regs.rax = u64::from(u32::MAX);
    cpu.regs.rdx = u64::from(u32::MAX);
    run(&mut cpu, &mem, &[0x0F, 0xAE, 0x26]).unwrap(); // xsave [esi]
    assert_eq!(
        mem.read_obj::<u32>(GuestAddress(0x5000 + 160 + 16))
            .unwrap(),
        7
    );
    assert_eq!(
        mem.read_obj::<u64>(GuestAddress(0x5000 + 512)).unwrap() & !0b11,
        0
    );
    assert_eq!(cpu.regs.rax, u64::from(u32::MAX), "EDX:EAX unchanged");
    cpu.set_xmm(1, [0, 0, 0, 0]);
    run(&mut cpu, &mem, &[0x0F, 0xAE, 0x2E]).unwrap(); // xrstor [esi]
    assert_eq!(cpu.xmm(1), [7, 7, 7, 7]);
    // A header naming a component XCR0 lacks: #GP.
    mem.write_obj(0b1000u64, GuestAddress(0x5000 + 512))
        .unwrap();
    let done = run(&mut cpu, &mem, &[0x0F, 0xAE, 0x2E]).unwrap();
    assert_eq!(done.event, Some(gp0()));
    // Without CR4.OSXSAVE: #UD.
    cpu.sregs.cr4 &= !CR4_OSXSAVE;
    let done = run(&mut cpu, &mem, &[0x0F, 0xAE, 0x26]).unwrap();
    assert!(matches!(
        done.event,
        Some(Event::Exception { vector: 6, .. })
    ));
}

#[test]
fn pshufb_and_ptest() {
    let mem = memory();
    let mut cpu = cpu32();
    cpu.set_xmm(0, [0x0302_0100, 0x0706_0504, 0x0B0A_0908, 0x0F0E_0D0C]);
    cpu.set_xmm(1, [0x0C0D_0E0F, 0x0809_0A0B, 0x0405_0607, 0x0001_0203]);
    run(&mut cpu, &mem, &[0x66, 0x0F, 0x38, 0x00, 0xC1]).unwrap(); // pshufb xmm0, xmm1
    assert_eq!(
        cpu.xmm(0),
        [0x0C0D_0E0F, 0x0809_0A0B, 0x0405_0607, 0x0001_0203]
    );
    cpu.set_xmm(2, [0; 4]);
    run(&mut cpu, &mem, &[0x66, 0x0F, 0x38, 0x17, 0xD0]).unwrap(); // ptest xmm2, xmm0
    assert_ne!(cpu.regs.rflags & (1 << 6), 0, "ZF: xmm2 & xmm0 == 0");
}

/// 32-bit paging: page directory at 0x10000, one table at 0x11000 mapping
/// linear 0x400000.. with: page 0 read/write, page 1 read-only, page 2 not
/// present, page 3 pointing past the end of guest memory.
pub(crate) fn paged32(mem: &GuestMemoryMmap) -> FakeCpu {
    let mut cpu = cpu32();
    cpu.sregs.cr0 |= CR0_PG | CR0_WP;
    cpu.sregs.cr3 = 0x10000;
    // Identity-map the first 4 MiB with a table too, for the code.
    mem.write_obj(0x12000u32 | 3, GuestAddress(0x10000))
        .unwrap();
    for i in 0..1024u32 {
        mem.write_obj((i << 12) | 3, GuestAddress(0x12000 + 4 * u64::from(i)))
            .unwrap();
    }
    mem.write_obj(0x11000u32 | 3, GuestAddress(0x10000 + 4))
        .unwrap();
    let ptes: [u32; 4] = [0x20_0000 | 3, 0x20_1000 | 1, 0, 0x8000_0000 | 3];
    for (i, pte) in ptes.iter().enumerate() {
        mem.write_obj(*pte, GuestAddress(0x11000 + 4 * i as u64))
            .unwrap();
    }
    cpu
}

#[test]
fn paged_operand_goes_through_the_page_tables() {
    let mem = memory();
    let mut cpu = paged32(&mem);
    mem.write_obj(0x3F80u32, GuestAddress(0x20_0010)).unwrap();
    cpu.regs.rax = 0x40_0010;
    run(&mut cpu, &mem, &[0x0F, 0xAE, 0x10]).unwrap(); // ldmxcsr [eax]
    assert_eq!(cpu.mxcsr(), 0x3F80);
    // The walk set the accessed bit of the PTE.
    assert_ne!(
        mem.read_obj::<u32>(GuestAddress(0x11000)).unwrap() & (1 << 5),
        0
    );
    // stmxcsr to the same page sets dirty.
    run(&mut cpu, &mem, &[0x0F, 0xAE, 0x18]).unwrap();
    assert_ne!(
        mem.read_obj::<u32>(GuestAddress(0x11000)).unwrap() & (1 << 6),
        0
    );
}

#[test]
fn store_to_read_only_page_raises_pf() {
    let mem = memory();
    let mut cpu = paged32(&mem);
    cpu.regs.rax = 0x40_1000;
    let done = run(&mut cpu, &mem, &[0x0F, 0xAE, 0x18]).unwrap(); // stmxcsr [eax]
    assert_eq!(
        done.event,
        Some(Event::Exception {
            vector: 14,
            error_code: Some(0b011),
            cr2: Some(0x40_1000)
        })
    );
    assert_eq!(cpu.regs.rip, 0x1000);
    // Reading the read-only page is fine.
    run(&mut cpu, &mem, &[0x0F, 0xAE, 0x10]).unwrap();
}

#[test]
fn operand_on_unmapped_page_raises_pf() {
    let mem = memory();
    let mut cpu = paged32(&mem);
    cpu.regs.rax = 0x40_2004;
    let done = run(&mut cpu, &mem, &[0x0F, 0xAE, 0x10]).unwrap(); // ldmxcsr [eax]
    assert_eq!(
        done.event,
        Some(Event::Exception {
            vector: 14,
            error_code: Some(0),
            cr2: Some(0x40_2004)
        })
    );
    // A 16-byte operand straddling into the unmapped page faults on the
    // second page, with CR2 at its first byte, and writes nothing.
    let mut cpu = paged32(&mem);
    cpu.regs.rax = 0x40_1FF8;
    let done = run(&mut cpu, &mem, &[0xF3, 0x0F, 0x6F, 0x00]).unwrap(); // movdqu xmm0, [eax]
    assert_eq!(
        done.event,
        Some(Event::Exception {
            vector: 14,
            error_code: Some(0),
            cr2: Some(0x40_2000)
        })
    );
}

#[test]
fn operand_past_the_end_of_guest_memory_stops_the_guest() {
    let mem = memory();
    let mut cpu = paged32(&mem);
    cpu.regs.rax = 0x40_3000;
    let err = run(&mut cpu, &mem, &[0x0F, 0xAE, 0x10]).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("ldmxcsr"), "{text}");
    assert!(text.contains("outside guest memory"), "{text}");
    assert!(text.contains("rip 0x1000"), "{text}");
    assert!(cpu.events.is_empty());
    // Without paging too.
    let mut cpu = cpu32();
    cpu.regs.rax = MEM_SIZE as u64 - 2;
    let err = run(&mut cpu, &mem, &[0x0F, 0xAE, 0x10]).unwrap_err();
    assert!(err.to_string().contains("outside guest memory"));
}

#[test]
fn cmpxchg16b_in_long_mode() {
    let mem = memory();
    let mut cpu = cpu64(&mem);
    mem.write_obj(0x1111u64, GuestAddress(0x6000)).unwrap();
    mem.write_obj(0x2222u64, GuestAddress(0x6008)).unwrap();
    cpu.regs.rdi = 0x6000;
    (cpu.regs.rax, cpu.regs.rdx) = (0x1111, 0x2222);
    (cpu.regs.rbx, cpu.regs.rcx) = (0xAAAA, 0xBBBB);
    let code = [0xF0, 0x48, 0x0F, 0xC7, 0x0F]; // lock cmpxchg16b [rdi]
    let done = run(&mut cpu, &mem, &code).unwrap();
    assert_eq!(done.mnemonic, Mnemonic::Cmpxchg16b);
    assert_ne!(cpu.regs.rflags & (1 << 6), 0, "ZF: swapped");
    assert_eq!(mem.read_obj::<u64>(GuestAddress(0x6000)).unwrap(), 0xAAAA);
    assert_eq!(mem.read_obj::<u64>(GuestAddress(0x6008)).unwrap(), 0xBBBB);
    assert_eq!(cpu.regs.rip, 0x1005);
    // Now the comparison fails: RDX:RAX gets the memory.
    cpu.regs.rip = 0x1000;
    let done = run(&mut cpu, &mem, &code);
    assert!(done.is_ok());
    assert_eq!(cpu.regs.rflags & (1 << 6), 0);
    assert_eq!((cpu.regs.rax, cpu.regs.rdx), (0xAAAA, 0xBBBB));
    // Misaligned: #GP.
    cpu.regs.rip = 0x1000;
    cpu.regs.rdi = 0x6008;
    let done = run(&mut cpu, &mem, &code).unwrap();
    assert_eq!(done.event, Some(gp0()));
}

#[test]
fn long_mode_sse_with_rip_relative_operand() {
    let mem = memory();
    let mut cpu = cpu64(&mem);
    cpu.sregs.cr4 |= CR4_OSFXSR;
    // mulpd xmm8, [rip+0xf7]  (REX.R; the operand lands 16-aligned)
    let code = [0x66, 0x44, 0x0F, 0x59, 0x05, 0xF7, 0x00, 0x00, 0x00];
    let target = 0x1100;
    mem.write_obj(3.0f64.to_bits(), GuestAddress(target))
        .unwrap();
    mem.write_obj(0.5f64.to_bits(), GuestAddress(target + 8))
        .unwrap();
    let two = 2.0f64.to_bits();
    cpu.set_xmm(
        8,
        [
            two as u32,
            (two >> 32) as u32,
            two as u32,
            (two >> 32) as u32,
        ],
    );
    let done = run(&mut cpu, &mem, &code).unwrap();
    assert_eq!(done.event, None);
    let x = cpu.xmm(8);
    assert_eq!(f64::from_bits(u64::from(x[0]) | u64::from(x[1]) << 32), 6.0);
    assert_eq!(f64::from_bits(u64::from(x[2]) | u64::from(x[3]) << 32), 1.0);
}

#[test]
fn int3_and_int_n_are_delivered_after_the_instruction() {
    let mem = memory();
    let mut cpu = cpu32();
    let done = run(&mut cpu, &mem, &[0xCC]).unwrap();
    assert_eq!(done.event, Some(Event::SoftInterrupt(3)));
    assert_eq!(cpu.regs.rip, 0x1001);
    let mut cpu = cpu32();
    let done = run(&mut cpu, &mem, &[0xCD, 0x80]).unwrap();
    assert_eq!(done.event, Some(Event::SoftInterrupt(0x80)));
    assert_eq!(cpu.regs.rip, 0x1002);
    assert_eq!(cpu.events, vec![Event::SoftInterrupt(0x80)]);
}

#[test]
fn uncovered_instructions_are_diagnosed_not_run() {
    let mem = memory();
    for (code, mnemonic) in [
        (&[0x0F, 0x30][..], "wrmsr"),
        (&[0x0F, 0x01, 0xD1], "xsetbv"),
        (&[0xC5, 0xF8, 0x59, 0xC1], "vmulps"),
        (&[0x66, 0x0F, 0xF7, 0xC1], "maskmovdqu"),
    ] {
        let mut cpu = cpu32();
        cpu.sregs.cr4 |= CR4_OSXSAVE;
        let err = run(&mut cpu, &mem, code).unwrap_err();
        let Error::Uncompletable(d) = err else {
            panic!("expected a diagnosis")
        };
        assert_eq!(d.mnemonic.as_deref(), Some(mnemonic));
        assert_eq!(d.bytes, code);
        assert_eq!(d.mode, "32-bit protected mode");
        assert_eq!(cpu.regs.rip, 0x1000);
    }
    let mut cpu = cpu32();
    let err = run(&mut cpu, &mem, &[0x0F, 0x04]).unwrap_err();
    assert!(err.to_string().contains("(undecodable)"), "{err}");
}

#[test]
fn instruction_bytes_are_fetched_through_the_page_tables() {
    let mem = memory();
    let mut cpu = paged32(&mem);
    cpu.regs.rip = 0x40_0FFE; // straddles into the read-only page
    mem.write_slice(&[0x0F, 0x59], GuestAddress(0x20_0FFE))
        .unwrap();
    mem.write_slice(&[0xC1], GuestAddress(0x20_1000)).unwrap();
    cpu.set_xmm_f32(0, [2.0; 4]);
    cpu.set_xmm_f32(1, [3.0; 4]);
    let done = Emulator::new().complete(&mut cpu, &mem, None).unwrap();
    assert_eq!(done.mnemonic, Mnemonic::Mulps);
    assert_eq!(cpu.xmm_f32(0), [6.0; 4]);
    assert_eq!(cpu.regs.rip, 0x40_1001);
}

#[test]
fn counts_by_mnemonic() {
    let mem = memory();
    let mut cpu = cpu32();
    let mut emu = Emulator::new();
    for _ in 0..3 {
        cpu.regs.rip = 0x1000;
        mem.write_slice(&[0x0F, 0x59, 0xC1], GuestAddress(0x1000))
            .unwrap();
        emu.complete(&mut cpu, &mem, None).unwrap();
    }
    cpu.regs.rip = 0x1000;
    emu.complete(&mut cpu, &mem, Some(&[0xCC])).unwrap();
    assert_eq!(
        emu.counts(),
        vec![("int3".to_string(), 1), ("mulps".to_string(), 3)]
    );
}

#[test]
fn iret_returns_within_the_same_code_segment() {
    let mem = memory();
    let mut cpu = cpu32();
    cpu.sregs.cs.selector = 0x10;
    cpu.sregs.ss.db = 1;
    cpu.regs.rsp = 0x8000;
    for (i, v) in [0x2000u32, 0x10, 0x203].iter().enumerate() {
        mem.write_obj(*v, GuestAddress(0x8000 + 4 * i as u64))
            .unwrap();
    }
    let done = run(&mut cpu, &mem, &[0xCF]).unwrap(); // iretd
    assert_eq!(done.mnemonic, Mnemonic::Iretd);
    assert_eq!(cpu.regs.rip, 0x2000);
    assert_eq!(cpu.regs.rsp, 0x800C);
    assert_eq!(cpu.regs.rflags, 0x203);
    // Another code segment: not covered, reported.
    cpu.regs.rsp = 0x8000;
    mem.write_obj(0x18u32, GuestAddress(0x8004)).unwrap();
    let err = run(&mut cpu, &mem, &[0xCF]).unwrap_err();
    assert!(err.to_string().contains("another code segment"), "{err}");
}

#[test]
fn popcnt_and_crc32_run_without_sse_enabled_and_leave_the_fpu_state_alone() {
    let mem = memory();
    let mut cpu = cpu64(&mem);
    // SSE off and TS set: neither matters to these two.
    cpu.sregs.cr4 &= !CR4_OSFXSR;
    cpu.sregs.cr0 |= 1 << 3;
    cpu.set_xmm(0, [1, 2, 3, 4]);
    let before = copy(&cpu.xsave);
    cpu.regs.rdi = 0xF0F0_0000_0000_0001;
    cpu.regs.rflags = 2 | 1; // CF set: POPCNT clears it
    let done = run(&mut cpu, &mem, &[0xF3, 0x48, 0x0F, 0xB8, 0xC7]).unwrap(); // popcnt rax, rdi
    assert_eq!(done.mnemonic, Mnemonic::Popcnt);
    assert_eq!(done.event, None);
    assert_eq!(cpu.regs.rax, 9);
    assert_eq!(cpu.regs.rflags & 0x8D5, 0, "CF, PF, AF, ZF, SF, OF clear");
    assert_eq!(cpu.regs.rip, 0x1005);
    assert_eq!(cpu.xsave.region, before.region);
    // A zero source sets ZF; a memory operand.
    cpu.regs.rip = 0x1000;
    cpu.regs.rsi = 0x3000;
    mem.write_obj(0u64, GuestAddress(0x3000)).unwrap();
    run(&mut cpu, &mem, &[0xF3, 0x48, 0x0F, 0xB8, 0x06]).unwrap(); // popcnt rax, [rsi]
    assert_eq!(cpu.regs.rax, 0);
    assert_ne!(cpu.regs.rflags & (1 << 6), 0);
    // crc32 eax, byte [rsi]: one step of CRC-32C (reflected polynomial
    // 0x82F63B78, no final inversion) over a zero byte, from all ones.
    cpu.regs.rip = 0x1000;
    cpu.regs.rax = 0xFFFF_FFFF;
    run(&mut cpu, &mem, &[0xF2, 0x0F, 0x38, 0xF0, 0x06]).unwrap();
    assert_eq!(cpu.regs.rax, 0xAD82_ACAE);
    assert_eq!(cpu.xsave.region, before.region);
}

#[test]
fn fwait_is_a_no_op_unless_ts_or_an_x87_exception_is_pending() {
    let mem = memory();
    let mut cpu = cpu64(&mem);
    cpu.sregs.cr0 |= 1 << 5; // NE
    let done = run(&mut cpu, &mem, &[0x9B]).unwrap(); // wait
    assert_eq!(done.mnemonic, Mnemonic::Wait);
    assert_eq!(done.event, None);
    assert_eq!(cpu.regs.rip, 0x1001);
    // CR0.MP and TS: #NM, RIP stays.
    cpu.regs.rip = 0x1000;
    cpu.sregs.cr0 |= 1 << 3;
    let done = run(&mut cpu, &mem, &[0x9B]).unwrap();
    assert!(matches!(
        done.event,
        Some(Event::Exception { vector: 7, .. })
    ));
    assert_eq!(cpu.regs.rip, 0x1000);
    // A pending unmasked x87 exception (FSW.ES): #MF.
    cpu.sregs.cr0 &= !(1 << 3);
    cpu.xsave.region[0] = 0x037F | (0x80 << 16);
    let done = run(&mut cpu, &mem, &[0x9B]).unwrap();
    assert!(matches!(
        done.event,
        Some(Event::Exception { vector: 16, .. })
    ));
    assert_eq!(cpu.regs.rip, 0x1000);
    // ...reported through FERR# (CR0.NE clear): not covered.
    cpu.sregs.cr0 &= !(1 << 5);
    assert!(run(&mut cpu, &mem, &[0x9B]).is_err());
}

#[test]
fn waiting_x87_forms_start_with_an_fwait_of_their_own() {
    let mem = memory();
    let mut cpu = cpu32();
    cpu.sregs.cr0 |= 1 << 5; // NE
                             // fstsw ax is FWAIT + FNSTSW AX: the first instruction is the FWAIT,
                             // so a pending exception is raised before FNSTSW ever runs.
    let done = run(&mut cpu, &mem, &[0x9B, 0xDF, 0xE0]).unwrap();
    assert_eq!(done.mnemonic, Mnemonic::Wait);
    assert_eq!(cpu.regs.rip, 0x1001);
    cpu.regs.rip = 0x1000;
    cpu.xsave.region[0] = 0x0370 | (0x8081 << 16); // IM unmasked, IE+ES+B set
    let done = run(&mut cpu, &mem, &[0x9B, 0xDB, 0xE3]).unwrap(); // finit
    assert!(matches!(
        done.event,
        Some(Event::Exception { vector: 16, .. })
    ));
    // FNINIT does not wait: it clears the exception.
    let done = run(&mut cpu, &mem, &[0xDB, 0xE3]).unwrap();
    assert_eq!(done.event, None);
    assert_eq!(cpu.xsave.region[0] & 0xFFFF, 0x037F);
    assert_eq!(cpu.xsave.region[0] >> 16, 0);
}
