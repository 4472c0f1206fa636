//! Completing one decoded instruction: software interrupts, `cmpxchg16b`,
//! `xgetbv` (in software, [`crate::xgetbv`]) and the allowlisted classes
//! that run on the host.

use crate::allow::{self, Class};
use crate::host::{self, Frame, HostExec, AREA, GPR_ORDER};
use crate::xsave::{self, Plan};
use crate::xstate::{CARRIED, HEADER_END, LEGACY, MXCSR, XSTATE_BV};
use crate::{Event, Fault, GuestCpu, Mmu, Mode};
use iced_x86::{
    Code, Instruction, InstructionInfoFactory, Mnemonic, OpAccess, OpKind, Register, RflagsBits,
};
use kvm_bindings::{kvm_regs, kvm_sregs};
use vm_memory::{GuestAddress, GuestMemoryBackend, GuestMemoryMmap};

/// MXCSR exception masks (bits 7-12) and flags (bits 0-5).
const MXCSR_MASKS: u32 = 0x1F80;
const MXCSR_FLAGS: u32 = 0x3F;
const CR4_OSXMMEXCPT: u64 = 1 << 10;

/// The guest state one completion works on.
pub struct State<'a> {
    pub cpu: &'a mut dyn GuestCpu,
    pub mem: &'a GuestMemoryMmap,
    pub regs: kvm_regs,
    pub sregs: kvm_sregs,
    pub mode: Mode,
    pub mmu: Mmu,
}

impl State<'_> {
    /// Moves RIP past `insn` and writes the general registers back.
    pub(crate) fn retire(&mut self, insn: &Instruction) -> Result<(), Fault> {
        self.regs.rip = match self.mode {
            Mode::Long => insn.next_ip(),
            Mode::Real | Mode::Protected16 => insn.next_ip() & 0xFFFF,
            _ => insn.next_ip() & 0xFFFF_FFFF,
        };
        // RF is cleared once an instruction completes.
        self.regs.rflags &= !(1 << 16);
        self.cpu.set_regs(&self.regs).map_err(cpu_fault)
    }

    /// Linear address of the explicit memory operand `op`.
    fn linear(&self, insn: &Instruction, op: u32) -> Result<u64, Fault> {
        let long = self.mode == Mode::Long;
        let addr = insn
            .virtual_address(op, 0, |reg, _, _| Some(self.value(reg)))
            .ok_or(Fault::Unsupported("this addressing form"))?;
        if long {
            let top = (addr as i64) >> 47;
            if top != 0 && top != -1 {
                // Non-canonical: #SS for stack-segment references, else #GP.
                return Err(if insn.memory_segment() == Register::SS {
                    Fault::Unsupported("non-canonical stack access (#SS)")
                } else {
                    Fault::Gp(0)
                });
            }
            Ok(addr)
        } else {
            Ok(addr & 0xFFFF_FFFF)
        }
    }

    /// A register's value as an address computation sees it.
    fn value(&self, reg: Register) -> u64 {
        crate::address_register(&self.regs, &self.sregs, self.mode == Mode::Long, reg)
    }
}

pub(crate) fn cpu_fault(e: crate::CpuError) -> Fault {
    Fault::Other(e.to_string())
}

/// Completes `insn`. `Ok(Some(event))` asks the caller to deliver `event`
/// after the instruction retired (software interrupts).
pub fn execute(
    st: &mut State<'_>,
    host: &mut Option<HostExec>,
    insn: &Instruction,
) -> Result<Option<Event>, Fault> {
    match insn.code() {
        Code::Int3 => {
            st.retire(insn)?;
            Ok(Some(Event::SoftInterrupt(3)))
        }
        Code::Int_imm8 => {
            st.retire(insn)?;
            Ok(Some(Event::SoftInterrupt(insn.immediate8())))
        }
        Code::Cmpxchg16b_m128 => cmpxchg16b(st, insn).map(|()| None),
        Code::Wait => fwait(st, insn).map(|()| None),
        Code::Iretw | Code::Iretd | Code::Iretq => iret(st, insn).map(|()| None),
        Code::Xgetbv => crate::xgetbv::complete(st, insn).map(|()| None),
        _ => on_host(st, host, insn).map(|()| None),
    }
}

/// FSW.ES: an unmasked x87 exception is pending.
const FSW_ES: u16 = 1 << 7;

/// FWAIT (the x87 synchronisation point, also the first byte of the
/// waiting forms FSTSW, FINIT...): #NM when CR0.MP and CR0.TS are both set,
/// #MF when an unmasked x87 exception is pending, else nothing happens
/// but RIP moving on. Done in software: on the host, a pending exception
/// would be the monitor's SIGFPE.
fn fwait(st: &mut State<'_>, insn: &Instruction) -> Result<(), Fault> {
    const CR0_MP: u64 = 1 << 1;
    const CR0_TS: u64 = 1 << 3;
    if st.sregs.cr0 & (CR0_MP | CR0_TS) == CR0_MP | CR0_TS {
        return Err(Fault::Nm);
    }
    let xsave = st.cpu.xsave().map_err(cpu_fault)?;
    let fsw = (xsave.region[0] >> 16) as u16;
    if fsw & FSW_ES != 0 {
        return Err(x87_pending(st.sregs.cr0));
    }
    st.retire(insn)
}

/// The fault for a pending x87 exception: #MF with native reporting
/// (CR0.NE); the legacy FERR# interrupt path is not covered.
fn x87_pending(cr0: u64) -> Fault {
    const CR0_NE: u64 = 1 << 5;
    if cr0 & CR0_NE != 0 {
        Fault::Mf
    } else {
        Fault::Unsupported("a pending x87 exception with CR0.NE clear (FERR#)")
    }
}

/// IRET to the same privilege level and code segment, the way interrupt
/// handlers of a kernel return (KVM's emulator only does real-mode IRET):
/// pop IP, CS and FLAGS (and in 64-bit mode SP and SS).
fn iret(st: &mut State<'_>, insn: &Instruction) -> Result<(), Fault> {
    const NT: u64 = 1 << 14;
    const VM: u64 = 1 << 17;
    // CF PF AF ZF SF TF IF DF OF IOPL NT RF AC ID: what IRET at CPL 0 loads.
    const LOADED: u64 = 0x0025_7FD5;
    if st.mode == Mode::Real {
        return Err(Fault::Unsupported("real-mode IRET"));
    }
    if st.regs.rflags & (NT | VM) != 0 {
        return Err(Fault::Unsupported("task-switch or virtual-8086 IRET"));
    }
    let size: usize = match insn.code() {
        Code::Iretw => 2,
        Code::Iretd => 4,
        _ => 8,
    };
    let long = st.mode == Mode::Long;
    let sp_mask = if long {
        u64::MAX
    } else if st.sregs.ss.db != 0 {
        0xFFFF_FFFF
    } else {
        0xFFFF
    };
    let base = if long { 0 } else { st.sregs.ss.base };
    let sp = st.regs.rsp & sp_mask;
    let count = if long { 5 } else { 3 };
    let mut frame = [0u8; 40];
    let frame = &mut frame[..count * size];
    let mut linear = base.wrapping_add(sp);
    if !long {
        linear &= 0xFFFF_FFFF;
    }
    st.mmu.read(st.mem, linear, frame)?;
    let item = |i: usize| {
        let mut v = [0u8; 8];
        v[..size].copy_from_slice(&frame[i * size..(i + 1) * size]);
        u64::from_le_bytes(v)
    };
    if item(1) as u16 != st.sregs.cs.selector {
        return Err(Fault::Unsupported("IRET to another code segment"));
    }
    if long && item(4) as u16 != st.sregs.ss.selector {
        return Err(Fault::Unsupported("IRET to another stack segment"));
    }
    let loaded = if size == 2 { LOADED & 0xFFFF } else { LOADED };
    let r = &mut st.regs;
    r.rflags = (r.rflags & !loaded) | (item(2) & loaded) | 2;
    r.rsp = if long {
        item(3)
    } else {
        (r.rsp & !sp_mask) | (sp.wrapping_add((count * size) as u64) & sp_mask)
    };
    r.rip = match st.mode {
        Mode::Long => item(0),
        _ if size == 2 => item(0) & 0xFFFF,
        _ => item(0) & 0xFFFF_FFFF,
    };
    st.cpu.set_regs(&st.regs).map_err(cpu_fault)
}

/// `lock cmpxchg16b m128`: compare RDX:RAX with the memory, store RCX:RBX
/// if equal (ZF=1), else load the memory into RDX:RAX (ZF=0).
fn cmpxchg16b(st: &mut State<'_>, insn: &Instruction) -> Result<(), Fault> {
    let linear = st.linear(insn, 0)?;
    if linear % 16 != 0 {
        return Err(Fault::Gp(0));
    }
    // Hardware writes the destination either way, so it needs write access.
    let pieces = st.mmu.translate(st.mem, linear, 16, true)?;
    let gpa = pieces.first().map(|p| p.0).ok_or(Fault::OutsideMemory(0))?;
    let ptr = st
        .mem
        .get_host_address(GuestAddress(gpa))
        .map_err(|_| Fault::OutsideMemory(gpa))?;
    if !std::arch::is_x86_feature_detected!("cmpxchg16b") {
        return Err(Fault::Unsupported("cmpxchg16b on a host without it"));
    }
    let r = &mut st.regs;
    let expected = u128::from(r.rax) | (u128::from(r.rdx) << 64);
    let new = u128::from(r.rbx) | (u128::from(r.rcx) << 64);
    // SAFETY: ptr is the host address of 16 guest bytes inside one mapped
    // guest-memory region (16-aligned and translated as one piece, so not
    // crossing a region), valid for the life of `mem`; the host supports
    // cmpxchg16b (checked above). Other threads may access these bytes
    // concurrently, which is exactly what the locked instruction is for.
    let old = unsafe { cas16(ptr.cast(), expected, new) };
    const ZF: u64 = 1 << 6;
    if old == expected {
        r.rflags |= ZF;
    } else {
        r.rflags &= !ZF;
        r.rax = old as u64;
        r.rdx = (old >> 64) as u64;
    }
    st.retire(insn)
}

/// `lock cmpxchg16b [dst]`, returning the value memory held before.
///
/// # Safety
/// `dst` must be valid, 16-byte aligned memory and the CPU must have
/// cmpxchg16b.
unsafe fn cas16(dst: *mut u128, expected: u128, new: u128) -> u128 {
    let (mut lo, mut hi) = (expected as u64, (expected >> 64) as u64);
    // SAFETY: per the contract above. RBX is reserved by LLVM, so the new
    // low half is swapped into it around the instruction and RBX restored.
    unsafe {
        std::arch::asm!(
            "xchg {new_lo}, rbx",
            "lock cmpxchg16b xmmword ptr [{dst}]",
            "mov rbx, {new_lo}",
            dst = in(reg) dst,
            new_lo = inout(reg) new as u64 => _,
            inout("rax") lo,
            inout("rdx") hi,
            in("rcx") (new >> 64) as u64,
            options(nostack),
        );
    }
    u128::from(lo) | (u128::from(hi) << 64)
}

/// The memory operand an instruction explicitly accesses.
struct Operand {
    linear: u64,
    size: usize,
    read: bool,
    write: bool,
    /// For the XSAVE family, what the instruction does.
    xsave: Option<Plan>,
}

/// Runs an allowlisted instruction on the host with the guest's state.
fn on_host(
    st: &mut State<'_>,
    host: &mut Option<HostExec>,
    insn: &Instruction,
) -> Result<(), Fault> {
    let class = allow::classify(insn).map_err(Fault::Other)?;
    if insn.has_lock_prefix() {
        return Err(Fault::Ud);
    }
    allow::check_enabled(class, st.sregs.cr0, st.sregs.cr4)?;
    let host_xcr0 =
        host::host_xcr0().ok_or(Fault::Unsupported("running SSE on a host without XSAVE"))?;
    // POPCNT and CRC32 use no FPU/SSE state: the host runs them with its
    // state initialised, and two ioctls are saved.
    let fpu_state = class != Class::Integer;
    let mut kvm_xsave = if fpu_state {
        st.cpu.xsave().map_err(cpu_fault)?
    } else {
        kvm_bindings::kvm_xsave::default()
    };
    let mut area = [0u8; AREA];
    for (chunk, word) in area.chunks_exact_mut(4).zip(kvm_xsave.region.iter()) {
        chunk.copy_from_slice(&word.to_le_bytes());
    }
    // The XSAVE family needs the guest's XCR0 (its requested-feature
    // bitmap, and XSAVE/XRSTOR must see every enabled component). Other
    // instructions only need the components not in their initial state
    // (XSTATE_BV): legacy SSE leaves the rest alone, and an ioctl is saved.
    let xcr0 = if class == Class::Xsave {
        st.cpu.xcr0().map_err(cpu_fault)?
    } else {
        read_u64(&area, XSTATE_BV)
    };
    // x87 and SSE state always travel (they exist whatever XCR0 says); the
    // other carried components (AVX, AVX-512) when selected above.
    let mask = (LEGACY | xcr0) & CARRIED & host_xcr0;
    // Components the host does not load keep their XSTATE_BV bits, so
    // writing the area back to KVM does not reset them.
    let kept = read_u64(&area, XSTATE_BV) & !mask;
    sanitise_header(&mut area, mask);
    let guest_mxcsr = read_u32(&area, MXCSR);
    if class == Class::Mmx && read_u16(&area, 2) & FSW_ES != 0 {
        // A pending unmasked x87 exception makes MMX instructions raise #MF.
        return Err(x87_pending(st.sregs.cr0));
    }

    let operand = memory_operand(st, insn, class, xcr0, mask)?;
    let plan = operand.as_ref().and_then(|o| o.xsave);
    let mut bounce = vec![0u8; operand.as_ref().map_or(0, |o| o.size)];
    if let Some(op) = &operand {
        if op.linear % allow::alignment(insn, class, op.size) != 0 {
            return Err(Fault::Gp(0));
        }
        // Translate for the strongest access first: a write fault must
        // come before anything is read or written.
        st.mmu.translate(st.mem, op.linear, op.size, op.write)?;
        if op.read || op.write {
            st.mmu.read(st.mem, op.linear, &mut bounce)?;
        }
    }
    let mxcsr_mask = host::host_mxcsr_mask();
    check_loads(insn, &bounce, mxcsr_mask)?;
    if let Some(plan) = plan.filter(|p| p.restore) {
        xsave::check_restore(&plan, &bounce, mxcsr_mask)?;
    }

    let mut gprs = gprs_of(&st.regs);
    if let Some(plan) = &plan {
        // The host runs with the requested-feature bitmap already limited
        // to what the guest enabled (the host's XCR0 may enable more).
        gprs[0] = plan.rfbm & 0xFFFF_FFFF;
        gprs[2] = plan.rfbm >> 32;
    }
    // SIMD computation runs with every exception masked and flags clear,
    // so the host never takes #XM; unmasked ones are found afterwards.
    let computes = matches!(class, Class::Simd | Class::Mmx);
    if computes {
        write_u32(&mut area, MXCSR, (guest_mxcsr | MXCSR_MASKS) & !MXCSR_FLAGS);
    }

    let mut rewritten = *insn;
    let exec = match host {
        Some(h) => h,
        None => host.insert(HostExec::new().map_err(|e| Fault::Other(format!("host pages: {e}")))?),
    };
    if let Some(plan) = &plan {
        rewritten.set_code(plan.host_code);
    }
    if operand.is_some() || insn.op_kinds().any(|k| k == OpKind::Memory) {
        rewritten.set_memory_base(Register::RIP);
        rewritten.set_memory_index(Register::None);
        rewritten.set_memory_index_scale(1);
        rewritten.set_memory_displacement64(exec.bounce_addr());
        rewritten.set_memory_displ_size(8);
        rewritten.set_segment_prefix(Register::None);
    }
    let host_flags = exec
        .run(
            &rewritten,
            Frame {
                gprs: &mut gprs,
                xsave: &mut area,
                bounce: &mut bounce,
                mask,
            },
        )
        .map_err(Fault::Other)?;
    if class == Class::Xsave {
        gprs[0] = st.regs.rax;
        gprs[2] = st.regs.rdx;
    }

    if computes {
        let raised = read_u32(&area, MXCSR) & MXCSR_FLAGS;
        let unmasked = raised & !(guest_mxcsr >> 7) & MXCSR_FLAGS;
        if unmasked != 0 {
            // The destination stays unchanged; only the flags are set.
            for (chunk, word) in area.chunks_exact_mut(4).zip(kvm_xsave.region.iter()) {
                chunk.copy_from_slice(&word.to_le_bytes());
            }
            write_u32(&mut area, MXCSR, guest_mxcsr | raised);
            store_xsave(st, &mut kvm_xsave, &area, kept)?;
            return Err(if st.sregs.cr4 & CR4_OSXMMEXCPT != 0 {
                Fault::Xm
            } else {
                Fault::Ud
            });
        }
        write_u32(&mut area, MXCSR, guest_mxcsr | raised);
    }
    if let Some(op) = &operand {
        if op.write {
            st.mmu.write(st.mem, op.linear, &bounce)?;
        }
    }
    if fpu_state {
        store_xsave(st, &mut kvm_xsave, &area, kept)?;
    }
    set_gprs(&mut st.regs, &gprs);
    let modified = x86_flags(insn.rflags_modified());
    st.regs.rflags = (st.regs.rflags & !modified) | (host_flags & modified);
    st.retire(insn)
}

/// The explicit memory operand, its size and direction, if the instruction
/// accesses memory.
fn memory_operand(
    st: &mut State<'_>,
    insn: &Instruction,
    class: Class,
    xcr0: u64,
    carried: u64,
) -> Result<Option<Operand>, Fault> {
    let Some(op) = (0..insn.op_count()).find(|&i| insn.op_kind(i) == OpKind::Memory) else {
        return Ok(None);
    };
    let mut factory = InstructionInfoFactory::new();
    let info = factory.info(insn);
    let used: Vec<_> = info
        .used_memory()
        .iter()
        .filter(|m| m.access() != OpAccess::NoMemAccess)
        .collect();
    if used.len() > 1 {
        return Err(Fault::Unsupported("more than one memory operand"));
    }
    let Some(used) = used.first() else {
        // PREFETCH and the like: no access at all.
        return Ok(None);
    };
    let access = used.access();
    let linear = st.linear(insn, op)?;
    let xsave = if class == Class::Xsave {
        Some(plan_xsave(st, insn, linear, xcr0, carried)?)
    } else {
        None
    };
    let size = match (class, &xsave) {
        (_, Some(plan)) => plan.size,
        (Class::Fxsr, _) => 512,
        _ => used.memory_size().size(),
    };
    if size == 0 || size > AREA {
        return Err(Fault::Other(format!("memory operand of {size} bytes")));
    }
    let read = matches!(
        access,
        OpAccess::Read | OpAccess::CondRead | OpAccess::ReadWrite | OpAccess::ReadCondWrite
    );
    let write = matches!(
        access,
        OpAccess::Write | OpAccess::CondWrite | OpAccess::ReadWrite | OpAccess::ReadCondWrite
    );
    Ok(Some(Operand {
        linear,
        size,
        // Read the whole area even for a save: the host writes back all of
        // it, and parts the instruction leaves alone must stay as they were.
        read: read || class == Class::Xsave,
        write,
        xsave,
    }))
}

/// Plans an XSAVE-family instruction whose area is at `linear`.
fn plan_xsave(
    st: &mut State<'_>,
    insn: &Instruction,
    linear: u64,
    xcr0: u64,
    carried: u64,
) -> Result<Plan, Fault> {
    // Misalignment is #GP before anything is accessed.
    if !linear.is_multiple_of(64) {
        return Err(Fault::Gp(0));
    }
    let supervisor = matches!(
        insn.mnemonic(),
        Mnemonic::Xsaves | Mnemonic::Xsaves64 | Mnemonic::Xrstors | Mnemonic::Xrstors64
    );
    // IA32_XSS costs an ioctl: read only for the instructions it affects.
    let xss = if supervisor {
        st.cpu.xss().map_err(cpu_fault)?
    } else {
        0
    };
    let guest = xsave::Guest {
        edx_eax: (st.regs.rdx << 32) | (st.regs.rax & 0xFFFF_FFFF),
        xcr0,
        xss,
        cpl: st.mmu.cpl(),
        carried,
    };
    let (mmu, mem) = (st.mmu, st.mem);
    xsave::plan(insn, &guest, || {
        let mut header = [0u8; 16];
        mmu.read(mem, linear.wrapping_add(XSTATE_BV as u64), &mut header)?;
        Ok(header)
    })
}

/// #GP checks of values LDMXCSR and FXRSTOR load into MXCSR, made before
/// the host ever sees them (the XSAVE family: [`xsave::check_restore`]).
fn check_loads(insn: &Instruction, mem: &[u8], mxcsr_mask: u32) -> Result<(), Fault> {
    let bad_mxcsr = |v: u32| v & !mxcsr_mask != 0;
    match insn.mnemonic() {
        Mnemonic::Ldmxcsr if bad_mxcsr(read_u32(mem, 0)) => Err(Fault::Gp(0)),
        Mnemonic::Fxrstor | Mnemonic::Fxrstor64 if bad_mxcsr(read_u32(mem, MXCSR)) => {
            Err(Fault::Gp(0))
        }
        _ => Ok(()),
    }
}

/// Makes KVM's XSAVE area loadable by the host's XRSTOR: standard format,
/// only the components being loaded, reserved header bytes zero.
fn sanitise_header(area: &mut [u8; AREA], mask: u64) {
    let bv = read_u64(area, XSTATE_BV) & mask;
    area[XSTATE_BV..HEADER_END].fill(0);
    area[XSTATE_BV..XSTATE_BV + 8].copy_from_slice(&bv.to_le_bytes());
}

/// Writes the area back to KVM with x87 and SSE marked present (KVM drops
/// components whose XSTATE_BV bit is clear), and the `kept` components the
/// host did not load marked as KVM had them.
fn store_xsave(
    st: &mut State<'_>,
    kvm: &mut kvm_bindings::kvm_xsave,
    area: &[u8; AREA],
    kept: u64,
) -> Result<(), Fault> {
    for (word, chunk) in kvm.region.iter_mut().zip(area.chunks_exact(4)) {
        *word = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
    }
    let bv = read_u64(area, XSTATE_BV) | LEGACY | kept;
    kvm.region[XSTATE_BV / 4] = bv as u32;
    kvm.region[XSTATE_BV / 4 + 1] = (bv >> 32) as u32;
    st.cpu.set_xsave(kvm).map_err(cpu_fault)
}

fn gprs_of(r: &kvm_regs) -> [u64; 16] {
    [
        r.rax, r.rcx, r.rdx, r.rbx, r.rsp, r.rbp, r.rsi, r.rdi, r.r8, r.r9, r.r10, r.r11, r.r12,
        r.r13, r.r14, r.r15,
    ]
}

fn set_gprs(r: &mut kvm_regs, g: &[u64; 16]) {
    debug_assert_eq!(GPR_ORDER[4], Register::RSP);
    [
        r.rax, r.rcx, r.rdx, r.rbx, r.rsp, r.rbp, r.rsi, r.rdi, r.r8, r.r9, r.r10, r.r11, r.r12,
        r.r13, r.r14, r.r15,
    ] = *g;
}

/// iced's RflagsBits as architectural RFLAGS bits.
fn x86_flags(bits: u32) -> u64 {
    const MAP: [(u32, u64); 9] = [
        (RflagsBits::CF, 1 << 0),
        (RflagsBits::PF, 1 << 2),
        (RflagsBits::AF, 1 << 4),
        (RflagsBits::ZF, 1 << 6),
        (RflagsBits::SF, 1 << 7),
        (RflagsBits::IF, 1 << 9),
        (RflagsBits::DF, 1 << 10),
        (RflagsBits::OF, 1 << 11),
        (RflagsBits::AC, 1 << 18),
    ];
    MAP.iter()
        .filter(|(b, _)| bits & b != 0)
        .fold(0, |acc, (_, f)| acc | f)
}

fn read_u16(b: &[u8], at: usize) -> u16 {
    b.get(at..at + 2)
        .map_or(0, |s| u16::from_le_bytes([s[0], s[1]]))
}

fn read_u32(b: &[u8], at: usize) -> u32 {
    b.get(at..at + 4)
        .map_or(0, |s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

fn read_u64(b: &[u8], at: usize) -> u64 {
    u64::from(read_u32(b, at)) | (u64::from(read_u32(b, at + 4)) << 32)
}

fn write_u32(b: &mut [u8], at: usize, v: u32) {
    if let Some(s) = b.get_mut(at..at + 4) {
        s.copy_from_slice(&v.to_le_bytes());
    }
}
