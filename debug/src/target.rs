//! The guest as gdbstub sees it: registers, memory through the guest's
//! page tables, breakpoints and watchpoints. Running the guest is in
//! `session.rs`.

use crate::regs::{self, CpuState, Layout};
use crate::watch::{Kind, Watchpoint};
use crate::Guest;
use gdbstub::arch::Arch;
use gdbstub::target::ext::base::singlethread::{
    SingleThreadBase, SingleThreadResume, SingleThreadResumeOps, SingleThreadSingleStep,
    SingleThreadSingleStepOps,
};
use gdbstub::target::ext::base::BaseOps;
use gdbstub::target::ext::breakpoints::{
    Breakpoints, BreakpointsOps, HwBreakpoint, HwBreakpointOps, HwWatchpoint, HwWatchpointOps,
    SwBreakpoint, SwBreakpointOps, WatchKind,
};
use gdbstub::target::ext::target_description_xml_override::{
    TargetDescriptionXmlOverride, TargetDescriptionXmlOverrideOps,
};
use gdbstub::target::{Target, TargetError, TargetResult};
use std::collections::BTreeMap;
use ukvm_emulator::Mmu;
use vm_memory::{Bytes, GuestAddress};

/// The `g`/`G` payload; its layout is the session's (see `regs.rs`).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RawRegs(pub Vec<u8>);

impl gdbstub::arch::Registers for RawRegs {
    type ProgramCounter = u64;

    fn pc(&self) -> u64 {
        // gdbstub asks for the PC only for tracepoints, which ukvm lacks.
        0
    }

    fn gdb_serialize(&self, mut write_byte: impl FnMut(Option<u8>)) {
        for b in &self.0 {
            write_byte(Some(*b));
        }
    }

    fn gdb_deserialize(&mut self, bytes: &[u8]) -> Result<(), ()> {
        self.0 = bytes.to_vec();
        Ok(())
    }
}

/// Register ids for `p`/`P`: not offered; gdb uses `g`/`G`.
#[derive(Debug)]
pub struct NoRegId;

impl gdbstub::arch::RegId for NoRegId {
    fn from_raw_id(_: usize) -> Option<(Self, Option<std::num::NonZeroUsize>)> {
        None
    }
}

/// x86 in whichever layout the session uses; the target description comes
/// from [`TargetDescriptionXmlOverride`].
pub enum X86Guest {}

impl Arch for X86Guest {
    type Usize = u64;
    type Registers = RawRegs;
    type BreakpointKind = usize;
    type RegId = NoRegId;
}

/// How gdb asked the guest to go on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Resume {
    Continue,
    Step,
}

/// Debug registers ukvm can give hardware breakpoints.
const HW_SLOTS: usize = 4;

/// A debug session's view of the guest.
pub(crate) struct Session<'g, G: Guest> {
    pub guest: &'g mut G,
    pub layout: Layout,
    /// The vCPU's state while the guest is stopped (read once per stop).
    cache: Option<CpuState>,
    /// Software breakpoints by linear address: (guest-physical address,
    /// the byte int3 replaced).
    pub sw: BTreeMap<u64, (u64, u8)>,
    pub hw: [Option<u64>; HW_SLOTS],
    pub watch: Vec<Watchpoint>,
    pub resume: Resume,
    /// The guest debug control last given to KVM.
    applied: Option<(u32, [u64; 8])>,
    /// Kicks the vCPU when gdb sends Ctrl-C (see `session.rs`).
    pub watcher: Option<crate::session::Watcher>,
    /// How the run ended, once it did; a crash is reported as a signal
    /// first so gdb can look at the state.
    pub done: Option<G::Done>,
}

impl<'g, G: Guest> Session<'g, G> {
    pub fn new(guest: &'g mut G, layout: Layout) -> Self {
        Session {
            guest,
            layout,
            cache: None,
            sw: BTreeMap::new(),
            hw: [None; HW_SLOTS],
            watch: Vec::new(),
            resume: Resume::Continue,
            applied: None,
            watcher: None,
            done: None,
        }
    }

    /// The vCPU state, read from KVM once per stop.
    pub fn state(&mut self) -> Result<CpuState, kvm_ioctls::Error> {
        if let Some(st) = self.cache {
            return Ok(st);
        }
        let vcpu = self.guest.vcpu();
        let st = CpuState {
            regs: vcpu.get_regs()?,
            sregs: vcpu.get_sregs()?,
            fpu: vcpu.get_fpu()?,
        };
        self.cache = Some(st);
        Ok(st)
    }

    /// Forgets the cached state (the guest is about to run).
    pub fn invalidate(&mut self) {
        self.cache = None;
    }

    fn mmu(&mut self) -> Result<Mmu, kvm_ioctls::Error> {
        Ok(Mmu::from_sregs(&self.state()?.sregs))
    }

    /// Guest-physical pieces of `[addr, addr + len)`. Translated for a read
    /// whatever the access: a debugger writes breakpoints into read-only
    /// text too.
    fn translate(&mut self, addr: u64, len: usize) -> Option<Vec<(u64, usize)>> {
        let mmu = self.mmu().ok()?;
        mmu.translate(self.guest.memory(), addr, len, false).ok()
    }

    /// Reads guest linear memory as the guest sees it.
    pub fn read_linear(&mut self, addr: u64, buf: &mut [u8]) -> bool {
        let Some(pieces) = self.translate(addr, buf.len()) else {
            return false;
        };
        let mut off = 0;
        for (gpa, n) in pieces {
            if self
                .guest
                .memory()
                .read_slice(&mut buf[off..off + n], GuestAddress(gpa))
                .is_err()
            {
                return false;
            }
            off += n;
        }
        true
    }

    fn write_linear(&mut self, addr: u64, data: &[u8]) -> bool {
        let Some(pieces) = self.translate(addr, data.len()) else {
            return false;
        };
        let mut off = 0;
        for (gpa, n) in pieces {
            if self
                .guest
                .memory()
                .write_slice(&data[off..off + n], GuestAddress(gpa))
                .is_err()
            {
                return false;
            }
            off += n;
        }
        true
    }

    /// Gives KVM the debug control this session needs, if it changed:
    /// single-step when stepping (or watching), debug registers for the
    /// hardware breakpoints, and #BP interception while int3s are in.
    pub fn apply_debug(&mut self, single_step: bool) -> Result<(), kvm_ioctls::Error> {
        let mut control = kvm_bindings::KVM_GUESTDBG_ENABLE;
        let mut dr = [0u64; 8];
        if single_step {
            control |= kvm_bindings::KVM_GUESTDBG_SINGLESTEP;
        }
        if !self.sw.is_empty() {
            control |= kvm_bindings::KVM_GUESTDBG_USE_SW_BP;
        }
        for (i, slot) in self.hw.iter().enumerate() {
            if let Some(addr) = slot {
                dr[i] = *addr;
                // Local enable, execute, length 1 (RW/LEN bits zero).
                dr[7] |= 1 << (2 * i);
            }
        }
        if dr[7] != 0 {
            control |= kvm_bindings::KVM_GUESTDBG_USE_HW_BP;
            // GE|LE, and bit 10 which reads as 1.
            dr[7] |= (1 << 9) | (1 << 8) | (1 << 10);
        }
        if self.applied == Some((control, dr)) {
            return Ok(());
        }
        let mut dbg = kvm_bindings::kvm_guest_debug {
            control,
            ..Default::default()
        };
        dbg.arch.debugreg = dr;
        self.guest.vcpu().set_guest_debug(&dbg)?;
        self.applied = Some((control, dr));
        Ok(())
    }

    /// Leaves the guest as it was before gdb came: no int3 of ours in
    /// memory, no debug control.
    pub fn release(&mut self) {
        for (gpa, orig) in std::mem::take(&mut self.sw).into_values() {
            let _ = self.guest.memory().write_obj(orig, GuestAddress(gpa));
        }
        self.hw = [None; HW_SLOTS];
        self.watch.clear();
        let _ = self
            .guest
            .vcpu()
            .set_guest_debug(&kvm_bindings::kvm_guest_debug::default());
        self.applied = None;
    }

    /// Which hardware breakpoint fired, from DR6's B0-B3.
    pub fn hw_hit(&self, dr6: u64) -> bool {
        (0..HW_SLOTS).any(|i| dr6 & (1 << i) != 0 && self.hw[i].is_some())
    }

    /// Linear address of the instruction at RIP.
    pub fn pc(&mut self) -> Option<u64> {
        let st = self.state().ok()?;
        let pc = st.sregs.cs.base.wrapping_add(st.regs.rip);
        Some(
            if self.layout == Layout::I386 || st.sregs.efer & (1 << 10) == 0 {
                pc & 0xFFFF_FFFF
            } else {
                pc
            },
        )
    }
}

fn kvm_err(e: kvm_ioctls::Error) -> TargetError<crate::Error> {
    TargetError::Fatal(crate::Error::Kvm {
        op: "register access",
        source: e,
    })
}

impl<G: Guest> Target for Session<'_, G> {
    type Arch = X86Guest;
    type Error = crate::Error;

    fn base_ops(&mut self) -> BaseOps<'_, X86Guest, crate::Error> {
        BaseOps::SingleThread(self)
    }

    fn support_breakpoints(&mut self) -> Option<BreakpointsOps<'_, Self>> {
        Some(self)
    }

    fn support_target_description_xml_override(
        &mut self,
    ) -> Option<TargetDescriptionXmlOverrideOps<'_, Self>> {
        Some(self)
    }

    // int3s are planted by gdb's Z0 packets, not by writing memory.
    fn guard_rail_implicit_sw_breakpoints(&self) -> bool {
        true
    }
}

impl<G: Guest> SingleThreadBase for Session<'_, G> {
    fn read_registers(&mut self, regs: &mut RawRegs) -> TargetResult<(), Self> {
        let st = self.state().map_err(kvm_err)?;
        regs.0 = regs::serialize(self.layout, &st);
        Ok(())
    }

    fn write_registers(&mut self, regs: &RawRegs) -> TargetResult<(), Self> {
        let mut st = self.state().map_err(kvm_err)?;
        let changed =
            regs::deserialize(self.layout, &regs.0, &mut st).ok_or(TargetError::NonFatal)?;
        let vcpu = self.guest.vcpu();
        if changed.regs {
            vcpu.set_regs(&st.regs).map_err(kvm_err)?;
        }
        if changed.sregs {
            vcpu.set_sregs(&st.sregs).map_err(kvm_err)?;
        }
        if changed.fpu {
            vcpu.set_fpu(&st.fpu).map_err(kvm_err)?;
        }
        self.cache = Some(st);
        Ok(())
    }

    fn read_addrs(&mut self, start: u64, data: &mut [u8]) -> TargetResult<usize, Self> {
        // Read what is mapped, page by page, so a read running into an
        // unmapped page returns the part before it.
        let mut done = 0;
        while done < data.len() {
            let addr = start.wrapping_add(done as u64);
            let page_left = (0x1000 - (addr & 0xFFF)) as usize;
            let n = page_left.min(data.len() - done);
            if !self.read_linear(addr, &mut data[done..done + n]) {
                break;
            }
            done += n;
        }
        if done == 0 && !data.is_empty() {
            return Err(TargetError::NonFatal);
        }
        // Show the bytes our int3s replaced.
        let end = start.wrapping_add(done as u64);
        for (&addr, &(_, orig)) in self.sw.range(start..end) {
            data[(addr - start) as usize] = orig;
        }
        Ok(done)
    }

    fn write_addrs(&mut self, start: u64, data: &[u8]) -> TargetResult<(), Self> {
        let mut data = data.to_vec();
        // A write over one of our int3s changes the byte it restores later.
        let end = start.wrapping_add(data.len() as u64);
        for (&addr, entry) in self.sw.range_mut(start..end) {
            let i = (addr - start) as usize;
            entry.1 = data[i];
            data[i] = 0xCC;
        }
        if self.write_linear(start, &data) {
            Ok(())
        } else {
            Err(TargetError::NonFatal)
        }
    }

    fn support_resume(&mut self) -> Option<SingleThreadResumeOps<'_, Self>> {
        Some(self)
    }
}

impl<G: Guest> SingleThreadResume for Session<'_, G> {
    fn resume(&mut self, _signal: Option<gdbstub::common::Signal>) -> Result<(), crate::Error> {
        // Signals mean nothing to a unikernel: gdb's "signal" is dropped.
        self.resume = Resume::Continue;
        Ok(())
    }

    fn support_single_step(&mut self) -> Option<SingleThreadSingleStepOps<'_, Self>> {
        Some(self)
    }
}

impl<G: Guest> SingleThreadSingleStep for Session<'_, G> {
    fn step(&mut self, _signal: Option<gdbstub::common::Signal>) -> Result<(), crate::Error> {
        self.resume = Resume::Step;
        Ok(())
    }
}

impl<G: Guest> Breakpoints for Session<'_, G> {
    fn support_sw_breakpoint(&mut self) -> Option<SwBreakpointOps<'_, Self>> {
        Some(self)
    }

    fn support_hw_breakpoint(&mut self) -> Option<HwBreakpointOps<'_, Self>> {
        Some(self)
    }

    fn support_hw_watchpoint(&mut self) -> Option<HwWatchpointOps<'_, Self>> {
        Some(self)
    }
}

impl<G: Guest> SwBreakpoint for Session<'_, G> {
    fn add_sw_breakpoint(&mut self, addr: u64, _kind: usize) -> TargetResult<bool, Self> {
        if self.sw.contains_key(&addr) {
            return Ok(true);
        }
        let Some(pieces) = self.translate(addr, 1) else {
            return Ok(false);
        };
        let gpa = pieces[0].0;
        let mem = self.guest.memory();
        let Ok(orig) = mem.read_obj::<u8>(GuestAddress(gpa)) else {
            return Ok(false);
        };
        if mem.write_obj(0xCCu8, GuestAddress(gpa)).is_err() {
            return Ok(false);
        }
        self.sw.insert(addr, (gpa, orig));
        Ok(true)
    }

    fn remove_sw_breakpoint(&mut self, addr: u64, _kind: usize) -> TargetResult<bool, Self> {
        let Some((gpa, orig)) = self.sw.remove(&addr) else {
            return Ok(false);
        };
        Ok(self
            .guest
            .memory()
            .write_obj(orig, GuestAddress(gpa))
            .is_ok())
    }
}

impl<G: Guest> HwBreakpoint for Session<'_, G> {
    fn add_hw_breakpoint(&mut self, addr: u64, _kind: usize) -> TargetResult<bool, Self> {
        if self.hw.contains(&Some(addr)) {
            return Ok(true);
        }
        match self.hw.iter_mut().find(|s| s.is_none()) {
            Some(slot) => {
                *slot = Some(addr);
                Ok(true)
            }
            // gdb says "Could not insert hardware breakpoint".
            None => Ok(false),
        }
    }

    fn remove_hw_breakpoint(&mut self, addr: u64, _kind: usize) -> TargetResult<bool, Self> {
        match self.hw.iter_mut().find(|s| **s == Some(addr)) {
            Some(slot) => {
                *slot = None;
                Ok(true)
            }
            None => Ok(false),
        }
    }
}

fn watchpoint(addr: u64, len: u64, k: WatchKind) -> Watchpoint {
    Watchpoint {
        addr,
        len: len.max(1),
        kind: match k {
            WatchKind::Write => Kind::Write,
            WatchKind::Read => Kind::Read,
            WatchKind::ReadWrite => Kind::Access,
        },
    }
}

impl<G: Guest> HwWatchpoint for Session<'_, G> {
    fn add_hw_watchpoint(&mut self, addr: u64, len: u64, k: WatchKind) -> TargetResult<bool, Self> {
        let w = watchpoint(addr, len, k);
        if !self.watch.contains(&w) {
            self.watch.push(w);
        }
        Ok(true)
    }

    fn remove_hw_watchpoint(
        &mut self,
        addr: u64,
        len: u64,
        k: WatchKind,
    ) -> TargetResult<bool, Self> {
        let w = watchpoint(addr, len, k);
        let before = self.watch.len();
        self.watch.retain(|x| *x != w);
        Ok(self.watch.len() != before)
    }
}

impl<G: Guest> TargetDescriptionXmlOverride for Session<'_, G> {
    fn target_description_xml(
        &self,
        _annex: &[u8],
        offset: u64,
        length: usize,
        buf: &mut [u8],
    ) -> TargetResult<usize, Self> {
        let xml = self.layout.target_xml();
        let bytes = xml.as_bytes();
        let start = (offset as usize).min(bytes.len());
        let n = length.min(buf.len()).min(bytes.len() - start);
        buf[..n].copy_from_slice(&bytes[start..start + n]);
        Ok(n)
    }
}
