//! Unit tests of the XSAVE family in both formats: XSAVEC, XSAVES, XRSTOR
//! of a compacted area, XRSTORS, and their #GP cases, on the fake vCPU of
//! [`crate::tests`].

use crate::tests::{cpu32, cpu64, gp0, memory, run, FakeCpu, CR4_OSXSAVE};
use crate::xstate::{self, COMPACTED};
use crate::{Error, Event, Mnemonic};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

/// Where the fake vCPU's area and the guest's area are.
const AREA: u64 = 0x5000;
/// Byte offset of the AVX component (upper YMM halves) in the standard
/// format; architectural.
const AVX: usize = 576;

const XSAVEC_ESI: [u8; 3] = [0x0F, 0xC7, 0x26];
const XSAVES_ESI: [u8; 3] = [0x0F, 0xC7, 0x2E];
const XRSTOR_ESI: [u8; 3] = [0x0F, 0xAE, 0x2E];
const XRSTORS_ESI: [u8; 3] = [0x0F, 0xC7, 0x1E];
const XSAVEC64_RDI: [u8; 4] = [0x48, 0x0F, 0xC7, 0x27];
const XRSTOR64_RDI: [u8; 4] = [0x48, 0x0F, 0xAE, 0x2F];
const PXOR_XMM0_XMM1: [u8; 4] = [0x66, 0x0F, 0xEF, 0xC1];

/// Guest XCR0 when the host has AVX enabled, else `None` (the test is then
/// skipped: the host could not load the guest's AVX state).
fn avx_xcr0() -> Option<u64> {
    let host = crate::host::host_xcr0()?;
    (host & 0b111 == 0b111).then_some(0b111)
}

/// A 32-bit vCPU with XSAVE enabled and `xcr0`, ESI at the area, EDX:EAX
/// requesting everything.
fn xcpu(xcr0: u64) -> FakeCpu {
    let mut cpu = cpu32();
    cpu.sregs.cr4 |= CR4_OSXSAVE;
    cpu.xcr0 = xcr0;
    cpu.regs.rsi = AREA;
    cpu.regs.rax = u64::from(u32::MAX);
    cpu.regs.rdx = u64::from(u32::MAX);
    cpu
}

impl FakeCpu {
    fn region_u32(&self, byte: usize) -> u32 {
        self.xsave.region[byte / 4]
    }
    fn set_region_u32(&mut self, byte: usize, v: u32) {
        self.xsave.region[byte / 4] = v;
    }
    fn xstate_bv(&self) -> u64 {
        u64::from(self.region_u32(512)) | u64::from(self.region_u32(516)) << 32
    }
    /// Upper half of YMM `i` (first dword).
    fn ymm_hi(&self, i: usize) -> u32 {
        self.region_u32(AVX + 16 * i)
    }
    fn set_ymm_hi(&mut self, i: usize, v: u32) {
        self.set_region_u32(AVX + 16 * i, v);
        self.xsave.region[128] |= 0b100;
    }
}

fn u32_at(mem: &GuestMemoryMmap, at: u64) -> u32 {
    mem.read_obj(GuestAddress(at)).unwrap()
}

fn u64_at(mem: &GuestMemoryMmap, at: u64) -> u64 {
    mem.read_obj(GuestAddress(at)).unwrap()
}

fn put_u64(mem: &GuestMemoryMmap, at: u64, v: u64) {
    mem.write_obj(v, GuestAddress(at)).unwrap();
}

fn ud() -> Event {
    Event::Exception {
        vector: 6,
        error_code: None,
        cr2: None,
    }
}

/// A compacted area with x87/SSE/AVX: XMM2 and the upper half of YMM2 set,
/// MXCSR 0x3F80, XSTATE_BV as given.
fn compacted_area(mem: &GuestMemoryMmap, xstate_bv: u64, xcomp_bv: u64) {
    mem.write_slice(&[0u8; 1024], GuestAddress(AREA)).unwrap();
    mem.write_obj(0x037Fu16, GuestAddress(AREA)).unwrap(); // FCW
    mem.write_obj(0x3F80u32, GuestAddress(AREA + 24)).unwrap();
    mem.write_obj(0xAAAA_0002u32, GuestAddress(AREA + 160 + 32))
        .unwrap();
    mem.write_obj(0xBBBB_0002u32, GuestAddress(AREA + AVX as u64 + 32))
        .unwrap();
    put_u64(mem, AREA + 512, xstate_bv);
    put_u64(mem, AREA + 520, xcomp_bv);
}

#[test]
fn xsavec_writes_the_compacted_format_for_the_requested_components() {
    let Some(xcr0) = avx_xcr0() else { return };
    let mem = memory();
    let mut cpu = xcpu(xcr0);
    cpu.set_xmm(1, [0x1111, 0, 0, 0]);
    cpu.set_ymm_hi(1, 0x2222);
    let done = run(&mut cpu, &mem, &XSAVEC_ESI).unwrap();
    assert_eq!(done.mnemonic, Mnemonic::Xsavec);
    assert_eq!(done.event, None);
    assert_eq!(u64_at(&mem, AREA + 520), COMPACTED | 0b111, "XCOMP_BV");
    assert_eq!(u64_at(&mem, AREA + 512) & 0b110, 0b110, "XSTATE_BV");
    assert_eq!(u32_at(&mem, AREA + 24), 0x1F80, "MXCSR");
    assert_eq!(u32_at(&mem, AREA + 160 + 16), 0x1111, "XMM1");
    // AVX is the first extended component: right after the header.
    assert_eq!(u32_at(&mem, AREA + 576 + 16), 0x2222, "YMM1 upper half");
    assert_eq!(cpu.regs.rip, 0x1003);
    assert_eq!(cpu.regs.rax, u64::from(u32::MAX), "EDX:EAX unchanged");

    // Without SSE requested: XCOMP_BV names x87 and AVX only, and the AVX
    // component still follows the header (the legacy region is fixed).
    mem.write_slice(&[0u8; 1024], GuestAddress(AREA)).unwrap();
    cpu.regs.rip = 0x1000;
    cpu.regs.rax = 0b101;
    run(&mut cpu, &mem, &XSAVEC_ESI).unwrap();
    assert_eq!(u64_at(&mem, AREA + 520), COMPACTED | 0b101);
    assert_eq!(u32_at(&mem, AREA + 576 + 16), 0x2222);
    assert_eq!(u32_at(&mem, AREA + 160 + 16), 0, "XMM1 not saved");
}

#[test]
fn xsavec_honours_xcr0() {
    let mem = memory();
    // The guest enabled x87 and SSE only: AVX is not saved even if asked.
    let mut cpu = xcpu(0b11);
    cpu.set_xmm(0, [5, 6, 7, 8]);
    run(&mut cpu, &mem, &XSAVEC_ESI).unwrap();
    assert_eq!(u64_at(&mem, AREA + 520), COMPACTED | 0b11);
    assert_eq!(u64_at(&mem, AREA + 512) & !0b11, 0);
    assert_eq!(u32_at(&mem, AREA + 160), 5);
    // Misaligned (the area must be 64-byte aligned): #GP.
    cpu.regs.rip = 0x1000;
    cpu.regs.rsi = AREA + 16;
    let done = run(&mut cpu, &mem, &XSAVEC_ESI).unwrap();
    assert_eq!(done.event, Some(gp0()));
    // Without CR4.OSXSAVE: #UD.
    cpu.sregs.cr4 &= !CR4_OSXSAVE;
    cpu.regs.rsi = AREA;
    let done = run(&mut cpu, &mem, &XSAVEC_ESI).unwrap();
    assert_eq!(done.event, Some(ud()));
}

#[test]
fn xrstor_loads_a_compacted_area() {
    let Some(xcr0) = avx_xcr0() else { return };
    let mem = memory();
    let mut cpu = xcpu(xcr0);
    cpu.set_xmm(3, [0x3333, 0, 0, 0]);
    cpu.set_region_u32(0, 0x0000_0040); // a non-default FCW
    compacted_area(&mem, 0b110, COMPACTED | 0b111);
    let done = run(&mut cpu, &mem, &XRSTOR_ESI).unwrap();
    assert_eq!(done.mnemonic, Mnemonic::Xrstor);
    assert_eq!(done.event, None);
    assert_eq!(cpu.xmm(2)[0], 0xAAAA_0002);
    assert_eq!(cpu.xmm(3), [0; 4], "SSE state comes from the area");
    assert_eq!(cpu.mxcsr(), 0x3F80);
    assert_eq!(cpu.ymm_hi(2), 0xBBBB_0002);
    assert_eq!(cpu.xstate_bv() & 0b100, 0b100);
    // XSTATE_BV[0] = 0: x87 is put in its initial state (FCW 0x37F).
    assert_eq!(cpu.region_u32(0) & 0xFFFF, 0x037F);
    assert_eq!(cpu.regs.rip, 0x1003);

    // XSTATE_BV[2] = 0: AVX is initialised, whatever the area holds.
    cpu.regs.rip = 0x1000;
    compacted_area(&mem, 0b010, COMPACTED | 0b111);
    run(&mut cpu, &mem, &XRSTOR_ESI).unwrap();
    assert_eq!(cpu.ymm_hi(2), 0);
    assert_eq!(cpu.xmm(2)[0], 0xAAAA_0002);

    // RFBM without SSE: XMM registers stay as they were.
    cpu.regs.rip = 0x1000;
    cpu.set_xmm(2, [9, 9, 9, 9]);
    cpu.regs.rax = 0b101;
    compacted_area(&mem, 0b111, COMPACTED | 0b111);
    run(&mut cpu, &mem, &XRSTOR_ESI).unwrap();
    assert_eq!(cpu.xmm(2), [9, 9, 9, 9]);
    assert_eq!(cpu.ymm_hi(2), 0xBBBB_0002);
}

#[test]
fn xrstor_of_a_bad_compacted_header_raises_gp() {
    let mem = memory();
    let mut cpu = xcpu(0b11);
    cpu.set_xmm(2, [1, 2, 3, 4]);
    // XSTATE_BV names a component XCOMP_BV lacks.
    compacted_area(&mem, 0b11, COMPACTED | 0b01);
    assert_eq!(run(&mut cpu, &mem, &XRSTOR_ESI).unwrap().event, Some(gp0()));
    // XCOMP_BV names a component XCR0 lacks.
    compacted_area(&mem, 0b11, COMPACTED | 0b111);
    assert_eq!(run(&mut cpu, &mem, &XRSTOR_ESI).unwrap().event, Some(gp0()));
    // Reserved header bytes set.
    compacted_area(&mem, 0b11, COMPACTED | 0b11);
    mem.write_obj(1u8, GuestAddress(AREA + 540)).unwrap();
    assert_eq!(run(&mut cpu, &mem, &XRSTOR_ESI).unwrap().event, Some(gp0()));
    // A reserved MXCSR bit.
    compacted_area(&mem, 0b11, COMPACTED | 0b11);
    mem.write_obj(0xFFFF_0000u32, GuestAddress(AREA + 24))
        .unwrap();
    assert_eq!(run(&mut cpu, &mem, &XRSTOR_ESI).unwrap().event, Some(gp0()));
    // Standard format with XCOMP_BV bits but not bit 63.
    compacted_area(&mem, 0b11, 0b11);
    assert_eq!(run(&mut cpu, &mem, &XRSTOR_ESI).unwrap().event, Some(gp0()));
    assert_eq!(cpu.xmm(2), [1, 2, 3, 4], "nothing was loaded");
    assert_eq!(cpu.regs.rip, 0x1000);
    // The good area loads.
    compacted_area(&mem, 0b11, COMPACTED | 0b11);
    assert_eq!(run(&mut cpu, &mem, &XRSTOR_ESI).unwrap().event, None);
    assert_eq!(cpu.xmm(2)[0], 0xAAAA_0002);
}

#[test]
fn xsaves_and_xrstors_round_trip_at_cpl0_and_raise_gp_above() {
    let mem = memory();
    let mut cpu = xcpu(0b11);
    cpu.set_xmm(4, [0x4444, 0, 0, 0]);
    let done = run(&mut cpu, &mem, &XSAVES_ESI).unwrap();
    assert_eq!(done.mnemonic, Mnemonic::Xsaves);
    assert_eq!(done.event, None);
    assert_eq!(u64_at(&mem, AREA + 520), COMPACTED | 0b11);
    assert_eq!(u32_at(&mem, AREA + 160 + 64), 0x4444);
    cpu.set_xmm(4, [0; 4]);
    cpu.regs.rip = 0x1000;
    let done = run(&mut cpu, &mem, &XRSTORS_ESI).unwrap();
    assert_eq!(done.mnemonic, Mnemonic::Xrstors);
    assert_eq!(done.event, None);
    assert_eq!(cpu.xmm(4)[0], 0x4444);
    // XRSTORS takes only the compacted format.
    cpu.regs.rip = 0x1000;
    put_u64(&mem, AREA + 520, 0);
    assert_eq!(
        run(&mut cpu, &mem, &XRSTORS_ESI).unwrap().event,
        Some(gp0())
    );
    // Both are privileged.
    cpu.sregs.cs.selector = 0x1B;
    for code in [XSAVES_ESI, XRSTORS_ESI] {
        assert_eq!(run(&mut cpu, &mem, &code).unwrap().event, Some(gp0()));
    }
}

#[test]
fn xsaves_of_supervisor_components_is_diagnosed() {
    let mem = memory();
    let mut cpu = xcpu(0b11);
    cpu.xss = 1 << 11; // CET user state, say
    let err = run(&mut cpu, &mem, &XSAVES_ESI).unwrap_err();
    let Error::Uncompletable(d) = err else {
        panic!("{err}")
    };
    assert!(
        d.reason.contains("supervisor state components 0x800"),
        "{d}"
    );
    // Not requested (EDX:EAX excludes it): completes.
    cpu.regs.rax = 0b11;
    assert_eq!(run(&mut cpu, &mem, &XSAVES_ESI).unwrap().event, None);
}

#[test]
fn xsavec64_and_xrstor64_round_trip_in_long_mode() {
    let mem = memory();
    let mut cpu = cpu64(&mem);
    cpu.sregs.cr4 |= CR4_OSXSAVE;
    cpu.xcr0 = avx_xcr0().unwrap_or(0b11);
    cpu.regs.rdi = 0x20_0000 - 0x1000;
    (cpu.regs.rax, cpu.regs.rdx) = (u64::from(u32::MAX), u64::from(u32::MAX));
    cpu.set_xmm(15, [0xF, 0xF, 0xF, 0xF]);
    cpu.set_mxcsr(0x7F80);
    run(&mut cpu, &mem, &XSAVEC64_RDI).unwrap();
    assert_eq!(cpu.regs.rip, 0x1004);
    cpu.set_xmm(15, [0; 4]);
    cpu.set_mxcsr(0x1F80);
    cpu.regs.rip = 0x1000;
    let done = run(&mut cpu, &mem, &XRSTOR64_RDI).unwrap();
    assert_eq!(done.mnemonic, Mnemonic::Xrstor64);
    assert_eq!(cpu.xmm(15), [0xF; 4]);
    assert_eq!(cpu.mxcsr(), 0x7F80);
}

#[test]
fn compacted_area_on_an_unmapped_page_raises_pf_at_the_header() {
    let mem = memory();
    let mut cpu = crate::tests::paged32(&mem);
    cpu.sregs.cr4 |= CR4_OSXSAVE;
    cpu.xcr0 = 0b11;
    (cpu.regs.rax, cpu.regs.rdx) = (3, 0);
    // Linear 0x401000 is read-only, 0x402000 not present.
    cpu.regs.rsi = 0x40_1000;
    let done = run(&mut cpu, &mem, &XSAVEC_ESI).unwrap();
    assert!(matches!(
        done.event,
        Some(Event::Exception {
            vector: 14,
            error_code: Some(3),
            cr2: Some(0x40_1000)
        })
    ));
    cpu.regs.rsi = 0x40_1E00; // header at 0x402000
    let done = run(&mut cpu, &mem, &XRSTOR_ESI).unwrap();
    assert!(matches!(
        done.event,
        Some(Event::Exception {
            vector: 14,
            cr2: Some(0x40_2000),
            ..
        })
    ));
}

/// AVX-512 state, when the host has it: carried through XSAVEC at its
/// compacted offset, and left intact by SSE instructions.
#[test]
fn avx512_components_are_carried() {
    const AVX512: u64 = 0b1110_0000;
    let Some(host) = crate::host::host_xcr0() else {
        return;
    };
    if host & (AVX512 | 0b111) != AVX512 | 0b111 {
        return;
    }
    let mem = memory();
    let mut cpu = xcpu(AVX512 | 0b111);
    let opmask = xstate::standard_offset(5).unwrap();
    cpu.set_region_u32(opmask + 8, 0x5A5A_5A5A); // k1
    cpu.xsave.region[128] |= 1 << 5;
    run(&mut cpu, &mem, &PXOR_XMM0_XMM1).unwrap();
    assert_eq!(cpu.region_u32(opmask + 8), 0x5A5A_5A5A);
    assert_ne!(cpu.xstate_bv() & (1 << 5), 0);
    cpu.regs.rip = 0x1000;
    run(&mut cpu, &mem, &XSAVEC_ESI).unwrap();
    let at = xstate::compacted_offset(AVX512 | 0b111, 5).unwrap() as u64;
    assert_eq!(u32_at(&mem, AREA + at + 8), 0x5A5A_5A5A);
    assert_eq!(u64_at(&mem, AREA + 520), COMPACTED | AVX512 | 0b111);
    // Without AVX requested, the opmask component moves up to the header's
    // end in the compacted format (in the standard one it stays put).
    cpu.regs.rip = 0x1000;
    cpu.regs.rax = (1 << 5) | 0b11;
    run(&mut cpu, &mem, &XSAVEC_ESI).unwrap();
    assert_eq!(u32_at(&mem, AREA + 576 + 8), 0x5A5A_5A5A);
    assert_eq!(u64_at(&mem, AREA + 520), COMPACTED | (1 << 5) | 0b11);
}

/// State KVM holds for a component the guest has not enabled in XCR0
/// survives an SSE instruction untouched, XSTATE_BV bit included.
#[test]
fn components_outside_xcr0_are_kept() {
    let mem = memory();
    let mut cpu = xcpu(0b11);
    cpu.set_ymm_hi(0, 0x7777);
    run(&mut cpu, &mem, &PXOR_XMM0_XMM1).unwrap();
    assert_eq!(cpu.ymm_hi(0), 0x7777);
    assert_ne!(cpu.xstate_bv() & 0b100, 0);
}
