//! Runs one guest instruction on the host CPU, between loading the guest's
//! x87/SSE/AVX state and general registers and saving them again.
//!
//! The instruction is re-encoded as 64-bit code into a page that is written
//! while read+write and then switched to read+execute (never both writable
//! and executable). Its memory operand, if any, becomes RIP-relative to a
//! bounce buffer in the data pages that follow the code page, so the
//! instruction can reach nothing but that buffer. Every load and store of
//! the stub is RIP-relative as well: no register has to hold a pointer, so
//! the guest's values can occupy all of them. RSP is never loaded with a
//! guest value (a signal arriving mid-instruction must find a real stack);
//! callers refuse instructions with RSP as an operand.
//!
//! The host's own x87/SSE/AVX state is saved first and restored last, so the
//! Rust code around the call sees its MXCSR and x87 control word unchanged
//! (both are callee-saved in the System V ABI).

use iced_x86::{Code, Encoder, Instruction, MemoryOperand, Register};
use std::io;

const PAGE: usize = 4096;
/// General registers in hardware order (RAX, RCX, RDX, RBX, RSP, RBP, RSI,
/// RDI, R8-R15), 8 bytes each.
const GPRS: usize = PAGE;
const RFLAGS: usize = PAGE + 0x80;
const HOST_RSP: usize = PAGE + 0x88;
const GUEST_XSAVE: usize = 2 * PAGE;
const HOST_XSAVE: usize = 3 * PAGE;
const BOUNCE: usize = 4 * PAGE;
const MAP_LEN: usize = 5 * PAGE;

/// Size of the XSAVE areas and of the bounce buffer.
pub const AREA: usize = PAGE;

/// Hardware order of the 64-bit general registers.
pub const GPR_ORDER: [Register; 16] = [
    Register::RAX,
    Register::RCX,
    Register::RDX,
    Register::RBX,
    Register::RSP,
    Register::RBP,
    Register::RSI,
    Register::RDI,
    Register::R8,
    Register::R9,
    Register::R10,
    Register::R11,
    Register::R12,
    Register::R13,
    Register::R14,
    Register::R15,
];

/// The state one host run reads and writes.
pub struct Frame<'a> {
    /// General registers, [`GPR_ORDER`]; RSP is not loaded.
    pub gprs: &'a mut [u64; 16],
    /// XSAVE area in standard format, header sanitised by the caller.
    pub xsave: &'a mut [u8; AREA],
    /// Memory operand contents (at the start of the bounce buffer).
    pub bounce: &'a mut [u8],
    /// XSAVE components to load and save (bits of XCR0).
    pub mask: u64,
}

/// The executable page and its data pages.
pub struct HostExec {
    base: *mut u8,
    /// Code currently in the page, so a repeated instruction (a loop in the
    /// guest) costs no re-encoding and no mprotect.
    code: Vec<u8>,
}

// SAFETY: the mapping is owned by this value alone and only used through
// `&mut self`; nothing ties it to the thread that created it.
unsafe impl Send for HostExec {}

impl HostExec {
    /// Maps the pages (all read+write; the code page turns read+execute once
    /// it holds code).
    pub fn new() -> io::Result<HostExec> {
        // SAFETY: a fresh private anonymous mapping; no existing memory is
        // affected, and the result is checked.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                MAP_LEN,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(HostExec {
            base: base.cast(),
            code: Vec::new(),
        })
    }

    /// Host address of the bounce buffer, the target of the rewritten
    /// memory operand.
    pub fn bounce_addr(&self) -> u64 {
        self.base as u64 + BOUNCE as u64
    }

    /// Runs `insn` (already rewritten to address the bounce buffer) with the
    /// guest state in `frame`, and returns the host RFLAGS after it.
    pub fn run(&mut self, insn: &Instruction, frame: Frame<'_>) -> Result<u64, String> {
        let code = self.stub(insn, frame.mask)?;
        if code != self.code {
            // Forget the old code first: a failed install leaves the page
            // in an unknown state.
            self.code.clear();
            self.install(&code).map_err(|e| format!("code page: {e}"))?;
            self.code = code;
        }
        let n = frame.bounce.len().min(AREA);
        // SAFETY: every offset is inside the MAP_LEN mapping owned by self
        // (data pages start at PAGE), the sources are Rust-owned buffers of
        // the copied lengths, and the mapping never aliases them.
        unsafe {
            let gprs = self.base.add(GPRS).cast::<u64>();
            for (i, v) in frame.gprs.iter().enumerate() {
                gprs.add(i).write(*v);
            }
            std::ptr::copy_nonoverlapping(frame.xsave.as_ptr(), self.base.add(GUEST_XSAVE), AREA);
            // XSAVE leaves XCOMP_BV and the reserved header bytes alone;
            // XRSTOR faults unless they are zero.
            std::ptr::write_bytes(self.base.add(HOST_XSAVE + 512), 0, 64);
            std::ptr::copy_nonoverlapping(frame.bounce.as_ptr(), self.base.add(BOUNCE), n);
        }
        // SAFETY: the page holds the stub built by `stub` and is read+execute.
        // The stub keeps the System V contract: it saves and restores the
        // callee-saved registers and the host x87/SSE/AVX state, touches
        // memory only inside the data pages (all RIP-relative), and returns.
        // The guest instruction was allowlisted by the caller as one whose
        // only effects are on registers, flags and its memory operand.
        unsafe {
            let entry: extern "C" fn() = std::mem::transmute(self.base);
            entry();
        }
        // SAFETY: as for the copies in, in the other direction.
        unsafe {
            let gprs = self.base.add(GPRS).cast::<u64>();
            for (i, v) in frame.gprs.iter_mut().enumerate() {
                if i != 4 {
                    *v = gprs.add(i).read();
                }
            }
            std::ptr::copy_nonoverlapping(
                self.base.add(GUEST_XSAVE),
                frame.xsave.as_mut_ptr(),
                AREA,
            );
            std::ptr::copy_nonoverlapping(self.base.add(BOUNCE), frame.bounce.as_mut_ptr(), n);
            Ok(self.base.add(RFLAGS).cast::<u64>().read())
        }
    }

    /// Writes `code` into the code page: read+write while writing, then
    /// read+execute.
    fn install(&mut self, code: &[u8]) -> io::Result<()> {
        if code.len() > PAGE {
            return Err(io::Error::other("stub larger than a page"));
        }
        self.protect(libc::PROT_READ | libc::PROT_WRITE)?;
        // SAFETY: the code page is the first PAGE bytes of our mapping, now
        // writable, and code fits in it.
        unsafe { std::ptr::copy_nonoverlapping(code.as_ptr(), self.base, code.len()) };
        self.protect(libc::PROT_READ | libc::PROT_EXEC)
    }

    fn protect(&self, prot: libc::c_int) -> io::Result<()> {
        // SAFETY: changes the protection of the first page of our own
        // mapping only.
        let rc = unsafe { libc::mprotect(self.base.cast(), PAGE, prot) };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// The stub: save host state, load guest state, run `insn`, save guest
    /// state, restore host state.
    fn stub(&self, insn: &Instruction, mask: u64) -> Result<Vec<u8>, String> {
        const SAVED: [Register; 6] = [
            Register::RBX,
            Register::RBP,
            Register::R12,
            Register::R13,
            Register::R14,
            Register::R15,
        ];
        let mut s = Stub {
            base: self.base as u64,
            seq: Vec::with_capacity(64),
        };
        for r in SAVED {
            s.push(Instruction::with1(Code::Push_r64, r))?;
        }
        s.push(Instruction::with2(
            Code::Mov_rm64_r64,
            s.rip(HOST_RSP),
            Register::RSP,
        ))?;
        s.xstate(Code::Xsave64_mem, HOST_XSAVE, mask)?;
        s.xstate(Code::Xrstor64_mem, GUEST_XSAVE, mask)?;
        for (i, r) in GPR_ORDER.iter().enumerate() {
            if *r != Register::RSP {
                s.push(Instruction::with2(
                    Code::Mov_r64_rm64,
                    *r,
                    s.rip(GPRS + 8 * i),
                ))?;
            }
        }
        s.seq.push(*insn);
        for (i, r) in GPR_ORDER.iter().enumerate() {
            if *r != Register::RSP {
                s.push(Instruction::with2(
                    Code::Mov_rm64_r64,
                    s.rip(GPRS + 8 * i),
                    *r,
                ))?;
            }
        }
        s.push(Instruction::with2(
            Code::Mov_r64_rm64,
            Register::RSP,
            s.rip(HOST_RSP),
        ))?;
        s.seq.push(Instruction::with(Code::Pushfq));
        s.push(Instruction::with1(Code::Pop_r64, Register::RAX))?;
        s.push(Instruction::with2(
            Code::Mov_rm64_r64,
            s.rip(RFLAGS),
            Register::RAX,
        ))?;
        s.xstate(Code::Xsave64_mem, GUEST_XSAVE, mask)?;
        s.xstate(Code::Xrstor64_mem, HOST_XSAVE, mask)?;
        for r in SAVED.iter().rev() {
            s.push(Instruction::with1(Code::Pop_r64, *r))?;
        }
        s.seq.push(Instruction::with(Code::Retnq));
        s.encode()
    }
}

/// Builds the stub's instruction list.
struct Stub {
    base: u64,
    seq: Vec<Instruction>,
}

impl Stub {
    fn rip(&self, offset: usize) -> MemoryOperand {
        MemoryOperand::with_base_displ(Register::RIP, (self.base + offset as u64) as i64)
    }

    fn push(&mut self, i: Result<Instruction, iced_x86::IcedError>) -> Result<(), String> {
        self.seq.push(i.map_err(|e| e.to_string())?);
        Ok(())
    }

    /// XSAVE64/XRSTOR64 of the area at `offset` with EDX:EAX = `mask`.
    fn xstate(&mut self, code: Code, offset: usize, mask: u64) -> Result<(), String> {
        self.push(Instruction::with2(
            Code::Mov_r32_imm32,
            Register::EAX,
            mask as u32,
        ))?;
        self.push(Instruction::with2(
            Code::Mov_r32_imm32,
            Register::EDX,
            (mask >> 32) as u32,
        ))?;
        let m = self.rip(offset);
        self.push(Instruction::with1(code, m))
    }

    fn encode(&self) -> Result<Vec<u8>, String> {
        let mut encoder = Encoder::new(64);
        let mut ip = self.base;
        for i in &self.seq {
            let len = encoder
                .encode(i, ip)
                .map_err(|e| format!("cannot encode {:?} for the host: {e}", i.code()))?;
            ip += len as u64;
        }
        Ok(encoder.take_buffer())
    }
}

impl Drop for HostExec {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping created in `new`, which nothing
        // else references once self is dropped.
        unsafe { libc::munmap(self.base.cast(), MAP_LEN) };
    }
}

/// The host's XCR0 (which XSAVE components the host OS enabled), or `None`
/// when the host CPU or OS does not support XSAVE.
pub fn host_xcr0() -> Option<u64> {
    let leaf1 = std::arch::x86_64::__cpuid(1);
    if leaf1.ecx & (1 << 27) == 0 {
        return None; // OSXSAVE clear: XGETBV would #UD
    }
    // SAFETY: OSXSAVE is set, so XGETBV with ECX=0 is valid.
    Some(unsafe { std::arch::x86_64::_xgetbv(0) })
}

/// The host's MXCSR_MASK (reserved MXCSR bits are the zero ones), as FXSAVE
/// reports it.
pub fn host_mxcsr_mask() -> u32 {
    #[repr(C, align(16))]
    struct Area([u8; 512]);
    let mut area = Area([0; 512]);
    // SAFETY: FXSAVE writes exactly 512 bytes to a 16-byte aligned buffer
    // of that size; FXSR is architectural on x86_64.
    unsafe { std::arch::x86_64::_fxsave64(area.0.as_mut_ptr()) };
    let mask = u32::from_le_bytes([area.0[28], area.0[29], area.0[30], area.0[31]]);
    if mask == 0 {
        0xFFBF // architectural default when the CPU reports none
    } else {
        mask
    }
}
