//! A classic-BPF interpreter for seccomp programs, for checking filters
//! without installing them: which action a call gets, and how many
//! instructions it took to decide (what the kernel pays per call, and per
//! system call number when it builds its action cache at install).
//!
//! It runs what seccompiler and [`crate::bpf_tree`] emit (`LD W ABS`,
//! `ALU AND K`, `JA`, `JEQ`/`JGT`/`JGE`/`JSET` with `K`, `RET K`) and
//! refuses what the kernel's checker would: an unknown opcode, a load
//! outside `struct seccomp_data`, a jump out of the program, running off its
//! end. No crate offers this without a kernel: rbpf runs eBPF only.

use seccompiler::sock_filter;

/// `AUDIT_ARCH_X86_64`, the architecture seccompiler's x86-64 check wants.
pub const AUDIT_ARCH_X86_64: u32 = 62 | 0x8000_0000 | 0x4000_0000;

/// What the kernel hands a filter (`struct seccomp_data`, less the
/// instruction pointer, which ukvm's filters don't read).
#[derive(Debug, Clone, Copy)]
pub struct SeccompData {
    /// The system call number.
    pub nr: i32,
    /// The `AUDIT_ARCH_*` of the call.
    pub arch: u32,
    /// The six arguments.
    pub args: [u64; 6],
}

impl SeccompData {
    /// The 32-bit word at byte `offset`, as `LD W ABS` reads it.
    fn word(&self, offset: u32) -> Option<u32> {
        match offset {
            0 => Some(self.nr as u32),
            4 => Some(self.arch),
            8 | 12 => Some(0),
            16..=63 if offset.is_multiple_of(4) => {
                let arg = self.args[(offset as usize - 16) / 8];
                Some(if offset.is_multiple_of(8) {
                    arg as u32
                } else {
                    (arg >> 32) as u32
                })
            }
            _ => None,
        }
    }
}

/// Why a program could not be run to its `RET`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EvalError {
    /// An opcode outside the subset above.
    #[error("instruction {at}: opcode {code:#x} not supported")]
    Opcode {
        /// Index of the instruction.
        at: usize,
        /// Its opcode.
        code: u16,
    },
    /// A load outside `struct seccomp_data` or not word-aligned.
    #[error("instruction {at}: load at offset {offset}")]
    Load {
        /// Index of the instruction.
        at: usize,
        /// The offset it loads.
        offset: u32,
    },
    /// Control left the program (a jump past its end, or no `RET`).
    #[error("instruction {at}: control leaves the program")]
    OutOfProgram {
        /// Index of the instruction that jumped or fell off.
        at: usize,
    },
}

/// Runs `program` on `data`: the value of the `RET` it reaches and the
/// number of instructions executed, that `RET` included.
pub fn run(program: &[sock_filter], data: &SeccompData) -> Result<(u32, usize), EvalError> {
    let (mut pc, mut acc, mut steps) = (0usize, 0u32, 0usize);
    loop {
        let i = program.get(pc).ok_or(EvalError::OutOfProgram {
            at: pc.saturating_sub(1),
        })?;
        steps += 1;
        let at = pc;
        pc += 1;
        let (jt, jf) = (usize::from(i.jt), usize::from(i.jf));
        let taken = match i.code {
            0x20 => {
                let load = EvalError::Load { at, offset: i.k };
                acc = data.word(i.k).ok_or(load)?;
                continue;
            }
            0x54 => {
                acc &= i.k;
                continue;
            }
            0x06 => return Ok((i.k, steps)),
            0x05 => {
                pc += i.k as usize;
                if pc >= program.len() {
                    return Err(EvalError::OutOfProgram { at });
                }
                continue;
            }
            0x15 => acc == i.k,
            0x25 => acc > i.k,
            0x35 => acc >= i.k,
            0x45 => acc & i.k != 0,
            code => return Err(EvalError::Opcode { at, code }),
        };
        pc += if taken { jt } else { jf };
        if pc >= program.len() {
            return Err(EvalError::OutOfProgram { at });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn i(code: u16, k: u32, jt: u8, jf: u8) -> sock_filter {
        sock_filter { code, jt, jf, k }
    }

    fn data(nr: i32, arg1: u64) -> SeccompData {
        SeccompData {
            nr,
            arch: AUDIT_ARCH_X86_64,
            args: [0, arg1, 0, 0, 0, 0],
        }
    }

    #[test]
    fn runs_loads_compares_and_returns_with_a_step_count() {
        let p = [
            i(0x20, 0, 0, 0),  // nr
            i(0x35, 10, 0, 3), // nr >= 10 ?
            i(0x20, 28, 0, 0), // high word of arg1
            i(0x15, 1, 0, 1),  // == 1 ?
            i(0x06, 0x7fff_0000, 0, 0),
            i(0x06, 5, 0, 0),
        ];
        assert_eq!(run(&p, &data(3, 0)), Ok((5, 3)));
        assert_eq!(run(&p, &data(10, 1 << 32)), Ok((0x7fff_0000, 5)));
        assert_eq!(run(&p, &data(10, 1)), Ok((5, 5)));
    }

    #[test]
    fn refuses_what_the_kernel_would() {
        let off_end = [i(0x05, 1, 0, 0), i(0x06, 0, 0, 0)];
        assert_eq!(
            run(&off_end, &data(0, 0)),
            Err(EvalError::OutOfProgram { at: 0 })
        );
        let no_ret = [i(0x20, 0, 0, 0)];
        assert!(matches!(
            run(&no_ret, &data(0, 0)),
            Err(EvalError::OutOfProgram { .. })
        ));
        let bad_load = [i(0x20, 64, 0, 0), i(0x06, 0, 0, 0)];
        assert!(matches!(
            run(&bad_load, &data(0, 0)),
            Err(EvalError::Load { .. })
        ));
        let ldx = [i(0x01, 0, 0, 0), i(0x06, 0, 0, 0)];
        assert!(matches!(
            run(&ldx, &data(0, 0)),
            Err(EvalError::Opcode { .. })
        ));
    }
}
