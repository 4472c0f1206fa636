//! Watchpoints, checked by ukvm itself.
//!
//! KVM takes data breakpoints from the debug registers only for code that
//! runs natively. On the software KVM this project runs on, guest kernel
//! code goes through KVM's instruction emulator, which never checks them
//! (measured: a DR1 write watchpoint on a `mov` to it does not fire). So
//! while a watchpoint is set, the guest runs one instruction at a time and
//! each instruction's memory operands (decoded with `iced-x86`, stack
//! accesses included) are compared against the watched ranges before it
//! runs; a hit stops the guest after the instruction, where hardware would.

use crate::regs::CpuState;
use iced_x86::{Decoder, DecoderOptions, InstructionInfoFactory, OpAccess};

/// What a watchpoint watches for (gdb's `watch`, `rwatch`, `awatch`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Writes.
    Write,
    /// Reads.
    Read,
    /// Reads and writes.
    Access,
}

/// One watched range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Watchpoint {
    /// First linear address.
    pub addr: u64,
    /// Length in bytes.
    pub len: u64,
    /// Accesses that trigger it.
    pub kind: Kind,
}

/// A memory access an instruction makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Access {
    /// First linear address.
    pub addr: u64,
    /// Size in bytes.
    pub len: u64,
    /// Whether it reads.
    pub read: bool,
    /// Whether it writes.
    pub write: bool,
}

fn bitness(state: &CpuState) -> u32 {
    let cs = &state.sregs.cs;
    if state.sregs.efer & (1 << 10) != 0 && cs.l != 0 {
        64
    } else if cs.db != 0 {
        32
    } else {
        16
    }
}

/// The memory accesses of the instruction in `bytes` at `state`'s RIP
/// (string instructions: their first element).
pub fn accesses(state: &CpuState, bytes: &[u8]) -> Vec<Access> {
    let bits = bitness(state);
    let mut decoder = Decoder::with_ip(bits, bytes, state.regs.rip, DecoderOptions::NONE);
    let insn = decoder.decode();
    if insn.is_invalid() {
        return Vec::new();
    }
    let mut factory = InstructionInfoFactory::new();
    let info = factory.info(&insn);
    let mask = if bits == 64 { u64::MAX } else { 0xFFFF_FFFF };
    info.used_memory()
        .iter()
        .filter_map(|m| {
            let addr = m.virtual_address(0, |reg, _, _| {
                Some(ukvm_emulator::address_register(
                    &state.regs,
                    &state.sregs,
                    bits == 64,
                    reg,
                ))
            })?;
            let (read, write) = match m.access() {
                OpAccess::Read | OpAccess::CondRead => (true, false),
                OpAccess::Write | OpAccess::CondWrite => (false, true),
                OpAccess::ReadWrite | OpAccess::ReadCondWrite => (true, true),
                _ => return None,
            };
            Some(Access {
                addr: addr & mask,
                len: m.memory_size().size().max(1) as u64,
                read,
                write,
            })
        })
        .collect()
}

/// The first watchpoint among `watch` that one of `accesses` triggers,
/// with the address gdb is told.
pub fn hit(watch: &[Watchpoint], accesses: &[Access]) -> Option<(Watchpoint, u64)> {
    for a in accesses {
        for w in watch {
            let overlaps =
                a.addr < w.addr.wrapping_add(w.len) && w.addr < a.addr.wrapping_add(a.len);
            let kind_matches = match w.kind {
                Kind::Write => a.write,
                Kind::Read => a.read,
                Kind::Access => a.read || a.write,
            };
            if overlaps && kind_matches {
                return Some((*w, a.addr.max(w.addr)));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state64() -> CpuState {
        let mut st = CpuState::default();
        st.sregs.efer = 0x500;
        st.sregs.cs.l = 1;
        st.regs.rip = 0x1000;
        st.regs.rsp = 0x8000;
        st.regs.rbx = 0x2000;
        st
    }

    #[test]
    fn mov_store_load_and_push_are_seen() {
        let st = state64();
        // mov dword [rbx+8], eax
        let a = accesses(&st, &[0x89, 0x43, 0x08]);
        assert_eq!(
            a,
            vec![Access {
                addr: 0x2008,
                len: 4,
                read: false,
                write: true
            }]
        );
        // mov rax, [rbx]
        let a = accesses(&st, &[0x48, 0x8b, 0x03]);
        assert_eq!(
            (a[0].addr, a[0].len, a[0].read, a[0].write),
            (0x2000, 8, true, false)
        );
        // push rax: writes below rsp
        let a = accesses(&st, &[0x50]);
        assert_eq!((a[0].addr, a[0].len, a[0].write), (0x7ff8, 8, true));
        // add [rbx], al: read and write
        let a = accesses(&st, &[0x00, 0x03]);
        assert!(a[0].read && a[0].write);
    }

    #[test]
    fn protected_mode_uses_32_bit_addresses() {
        let mut st = CpuState::default();
        st.sregs.cs.db = 1;
        st.regs.rip = 0x100000;
        st.regs.rax = 0xFFFF_FFFF_0000_3000;
        // mov [eax], ecx
        let a = accesses(&st, &[0x89, 0x08]);
        assert_eq!(a[0].addr, 0x3000);
    }

    #[test]
    fn hits_need_overlap_and_the_right_kind() {
        let w = [Watchpoint {
            addr: 0x2004,
            len: 4,
            kind: Kind::Write,
        }];
        let store = Access {
            addr: 0x2000,
            len: 8,
            read: false,
            write: true,
        };
        let load = Access {
            read: true,
            write: false,
            ..store
        };
        let elsewhere = Access {
            addr: 0x2008,
            ..store
        };
        assert_eq!(hit(&w, &[store]).map(|h| h.1), Some(0x2004));
        assert_eq!(hit(&w, &[load]), None);
        assert_eq!(hit(&w, &[elsewhere]), None);
        let r = [Watchpoint {
            kind: Kind::Read,
            ..w[0]
        }];
        assert!(hit(&r, &[load]).is_some());
    }
}
