//! The system-call-number dispatch of ukvm's seccomp filters: a balanced
//! binary search on the number, instead of seccompiler's linear chain.
//!
//! # Why
//! seccompiler (0.5) tests the number against each allowed system call in
//! turn (`JEQ nr` and a jump per call), so a number that is not allowed
//! walks about two instructions per allowed call. That is cheap per call,
//! but not at install: since Linux 5.11 the kernel builds an action cache
//! when a filter is installed (kernel/seccomp.c, `seccomp_cache_prepare` →
//! `seccomp_is_const_allow`) by emulating the filter once for every system
//! call number of the native architecture (~460 on x86-64). Install time is
//! therefore about (numbers) × (length of the chain). Measured on this host
//! with a linear N-instruction filter: 0.09 ms at N = 4, 0.53 ms at 100,
//! 1.5 ms at 350, 4.3 ms at 1000 (BPF JIT on or off alike); ukvm's vCPU
//! filter (344 instructions) took ~0.33 ms of a ~3.3-5 ms boot.
//!
//! Here each number walks `log2(calls / LEAF) + LEAF` compares at most
//! ([`LEAF`] calls are tested in turn at the bottom of the tree). A call
//! allowed whatever its arguments returns ALLOW straight from its leaf, so
//! the kernel's cache marks it always-allowed and it costs nothing per call.
//!
//! seccompiler still does the architecture check and the installing;
//! each call's argument checks are [`crate::bpf_args`]'s blocks. No Rust
//! crate without a C dependency lays out a tree: libseccomp does
//! (`SCMP_FLTATR_CTL_OPTIMIZE` = 2) but is C; extrasafe builds on
//! seccompiler, seccomp-tiny is a hand assembler.
//!
//! # Layout
//! ```text
//! prelude (architecture check)   LD nr
//! tree:   JGE pivot → right half, else left half ...
//!         leaf: JEQ nr → allow, or JEQ nr over JA block; ...; refuse
//! blocks: per call with argument checks (bpf_args), then refuse
//! RET mismatch, RET ALLOW
//! ```
//! In the shared layout (`Rets`) "allow" is a `JEQ` to the final
//! `RET ALLOW` and "refuse" a `JA` to the final `RET mismatch`; a program
//! too long for those 8-bit `JEQ` offsets gets its `RET`s in place.
//! Conditional jumps carry 8-bit offsets: the tree's only long ones (over
//! a left half longer than 255) become `JGE` + `JA`, and leaves reach
//! blocks through `JA` (32-bit). The final `RET mismatch` ends the
//! program as the kernel requires.

use crate::fds::ArgEq;
use seccompiler::{sock_filter, BackendError, BpfProgram};
use std::collections::BTreeMap;

/// Calls tested one after the other at the bottom of the tree.
pub const LEAF: usize = 3;

/// The longest program the kernel takes (`BPF_MAXINSNS`).
const MAX_LEN: usize = 4096;

/// `BPF_LD | BPF_W | BPF_ABS` (both 0).
pub(crate) const BPF_LD_W_ABS: u16 = 0x20;
pub(crate) const BPF_JMP_JA: u16 = 0x05;
pub(crate) const BPF_JMP_JEQ_K: u16 = 0x05 | 0x10;
const BPF_JMP_JGE_K: u16 = 0x05 | 0x30;
const BPF_RET_K: u16 = 0x06;
/// `offsetof(struct seccomp_data, nr)`.
const DATA_NR: u32 = 0;
const RET_ALLOW: u32 = libc::SECCOMP_RET_ALLOW;

pub(crate) fn insn(code: u16, k: u32, jt: u8, jf: u8) -> sock_filter {
    sock_filter { code, jt, jf, k }
}

/// `JA +k`. An offset past `u32` cannot reach the kernel: such a program
/// is longer than [`MAX_LEN`] and refused before that.
pub(crate) fn ja(k: usize) -> sock_filter {
    insn(BPF_JMP_JA, u32::try_from(k).unwrap_or(u32::MAX), 0, 0)
}

fn ret(action: u32) -> sock_filter {
    insn(BPF_RET_K, action, 0, 0)
}

/// Where a leaf sends an allowed number.
#[derive(Clone, Copy)]
enum Target {
    /// Allowed whatever the arguments.
    Allow,
    /// The argument checks in block `i`.
    Block(usize),
}

/// An instruction, or a jump whose offset is known once the whole
/// program is laid out.
#[derive(Clone)]
pub(crate) enum Op {
    Insn(sock_filter),
    /// `JA` to block `i`'s first instruction.
    ToBlock(usize),
    /// `JEQ k` to the program's final `RET ALLOW` (shared layout).
    AllowIf(u32),
    /// `JA` to the program's final `RET mismatch` (shared layout).
    Refuse,
}

/// How refusing and allowing are laid out: `Shared` jumps to one
/// `RET mismatch` and one `RET ALLOW` at the program's end (each `RET` is
/// two eBPF instructions for the kernel to convert and JIT-compile, a
/// jump one); `Local` puts a `RET` where it is needed, for programs too
/// long for the 8-bit offsets of the shared layout's `JEQ`s.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Rets {
    Shared,
    Local,
}

impl Rets {
    /// Allow when the loaded word is `k`, else go on.
    pub(crate) fn allow_if(self, k: u32) -> Vec<Op> {
        match self {
            Rets::Shared => vec![Op::AllowIf(k)],
            Rets::Local => vec![
                Op::Insn(insn(BPF_JMP_JEQ_K, k, 0, 1)),
                Op::Insn(ret(RET_ALLOW)),
            ],
        }
    }

    /// Refuse.
    fn refuse(self, mismatch: u32) -> Op {
        match self {
            Rets::Shared => Op::Refuse,
            Rets::Local => Op::Insn(ret(mismatch)),
        }
    }
}

/// Builds the filter: `prelude` (seccompiler's architecture check), then
/// the dispatch on the number over `calls` (each call's alternatives, as
/// [`crate::bpf_args`] lays them out; `None` means any arguments), then
/// `mismatch` for everything else.
pub fn program<A: AsRef<[ArgEq]>>(
    prelude: BpfProgram,
    calls: &BTreeMap<u32, Option<Vec<A>>>,
    mismatch: u32,
) -> Result<BpfProgram, BackendError> {
    match layout(&prelude, calls, mismatch, Rets::Shared)? {
        Some(p) => Ok(p),
        None => layout(&prelude, calls, mismatch, Rets::Local)?
            .ok_or(BackendError::FilterTooLarge(usize::MAX)),
    }
}

/// The program in `rets`' layout; `None` if a jump does not fit it.
fn layout<A: AsRef<[ArgEq]>>(
    prelude: &[sock_filter],
    calls: &BTreeMap<u32, Option<Vec<A>>>,
    mismatch: u32,
    rets: Rets,
) -> Result<Option<BpfProgram>, BackendError> {
    let mut blocks: Vec<Vec<Op>> = Vec::new();
    let mut entries = Vec::with_capacity(calls.len());
    for (&nr, alternatives) in calls {
        match alternatives
            .as_deref()
            .map(|a| crate::bpf_args::body(a, rets))
        {
            // Any arguments, or an alternative with no condition.
            None | Some(Ok(None)) => entries.push((nr, Target::Allow)),
            Some(Ok(Some(mut body))) => {
                body.push(rets.refuse(mismatch));
                entries.push((nr, Target::Block(blocks.len())));
                blocks.push(body);
            }
            Some(Err(e)) => return Err(e),
        }
    }
    let mut ops = Vec::new();
    tree(&entries, mismatch, rets, &mut ops);

    let mut out = prelude.to_vec();
    out.push(insn(BPF_LD_W_ABS, DATA_NR, 0, 0));
    let mut start = out.len() + ops.len();
    let starts: Vec<usize> = blocks
        .iter()
        .map(|b| {
            let s = start;
            start += b.len();
            s
        })
        .collect();
    // The final RET mismatch, then (shared layout) RET ALLOW.
    let (refused, allowed) = (start, start + 1);
    for op in ops.into_iter().chain(blocks.into_iter().flatten()) {
        let next = out.len() + 1;
        out.push(match op {
            Op::Insn(i) => i,
            Op::ToBlock(b) => ja(starts[b] - next),
            Op::Refuse => ja(refused - next),
            Op::AllowIf(k) => match u8::try_from(allowed - next) {
                Ok(jt) => insn(BPF_JMP_JEQ_K, k, jt, 0),
                Err(_) => return Ok(None),
            },
        });
    }
    out.push(ret(mismatch));
    if rets == Rets::Shared {
        out.push(ret(RET_ALLOW));
    }
    if out.len() > MAX_LEN {
        return Err(BackendError::FilterTooLarge(out.len()));
    }
    Ok(Some(out))
}

/// Appends the search over `entries` (sorted by number) to `out`.
fn tree(entries: &[(u32, Target)], mismatch: u32, rets: Rets, out: &mut Vec<Op>) {
    if entries.len() <= LEAF {
        leaf(entries, mismatch, rets, out);
        return;
    }
    let (low, high) = entries.split_at(entries.len() / 2);
    let mut left = Vec::new();
    tree(low, mismatch, rets, &mut left);
    let pivot = high[0].0;
    match u8::try_from(left.len()) {
        Ok(skip) => out.push(Op::Insn(insn(BPF_JMP_JGE_K, pivot, skip, 0))),
        Err(_) => {
            // Too far for an 8-bit offset: jump over the left half by JA.
            out.push(Op::Insn(insn(BPF_JMP_JGE_K, pivot, 0, 1)));
            out.push(Op::Insn(ja(left.len())));
        }
    }
    out.extend(left);
    tree(high, mismatch, rets, out);
}

/// A leaf: `JEQ nr` for each entry, allowing or over a `JA` to the
/// entry's block, then refusing.
fn leaf(entries: &[(u32, Target)], mismatch: u32, rets: Rets, out: &mut Vec<Op>) {
    for &(nr, target) in entries {
        match target {
            Target::Allow => out.extend(rets.allow_if(nr)),
            Target::Block(b) => {
                out.push(Op::Insn(insn(BPF_JMP_JEQ_K, nr, 0, 1)));
                out.push(Op::ToBlock(b));
            }
        }
    }
    out.push(rets.refuse(mismatch));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bpf_eval::{run, SeccompData};

    const TRAP: u32 = libc::SECCOMP_RET_TRAP;

    fn action(p: &[sock_filter], nr: i32, args: [u64; 6]) -> (u32, usize) {
        let data = SeccompData {
            nr,
            arch: crate::bpf_eval::AUDIT_ARCH_X86_64,
            args,
        };
        run(p, &data).unwrap()
    }

    #[test]
    fn allows_listed_numbers_checks_rules_and_refuses_the_rest() {
        // Every third number of 0..600, with rules on every fourth of those,
        // so that the tree needs JA trampolines over long left halves.
        let mut calls = BTreeMap::new();
        for nr in (0..600u32).step_by(3) {
            let checks = (nr % 4 == 0).then(|| vec![vec![(0, u64::from(nr))], vec![(1, 7)]]);
            calls.insert(nr, checks);
        }
        let p = program(vec![], &calls, TRAP).unwrap();
        assert!(p.iter().any(|i| i.code == BPF_JMP_JA && i.k > 255));
        for nr in 0..620u32 {
            let listed = nr % 3 == 0 && nr < 600;
            let pinned = listed && nr % 4 == 0;
            let n = nr as i32;
            let (any, _) = action(&p, n, [9; 6]);
            assert_eq!(any == RET_ALLOW, listed && !pinned, "nr {nr}");
            let (first, _) = action(&p, n, [u64::from(nr), 0, 0, 0, 0, 0]);
            let (second, _) = action(&p, n, [0, 7, 0, 0, 0, 0]);
            assert_eq!(first == RET_ALLOW, listed, "nr {nr} rule 1");
            assert_eq!(second == RET_ALLOW, listed, "nr {nr} rule 2");
            if !listed {
                assert_eq!(any, TRAP, "nr {nr}");
            }
        }
    }

    #[test]
    fn a_refused_number_walks_a_logarithmic_path() {
        for count in [1u32, 2, 10, 45, 200] {
            let calls: BTreeMap<u32, Option<Vec<Vec<ArgEq>>>> =
                (0..count).map(|i| (i * 2 + 1, None)).collect();
            let p = program(vec![], &calls, TRAP).unwrap();
            let worst = (0..=(count * 2 + 2) as i32)
                .map(|nr| action(&p, nr, [0; 6]).1)
                .max()
                .unwrap();
            // LD, then one JGE per level, then a leaf's JEQs, then (with
            // the shared RETs) JA and RET.
            let depth = (count as f64 / LEAF as f64).log2().ceil().max(0.0) as usize;
            assert!(
                worst <= 3 + depth + LEAF && worst <= 16,
                "{count} calls: worst walk {worst}"
            );
        }
    }

    #[test]
    fn no_calls_refuse_everything() {
        let none: BTreeMap<u32, Option<Vec<Vec<ArgEq>>>> = BTreeMap::new();
        let p = program(vec![], &none, TRAP).unwrap();
        assert_eq!(action(&p, 0, [0; 6]).0, TRAP);
        assert_eq!(action(&p, -1, [0; 6]).0, TRAP);
    }

    #[test]
    fn too_long_a_program_is_an_error_not_a_truncated_filter() {
        let one = vec![vec![(0, 1)]];
        let calls = (0..2100u32).map(|nr| (nr, Some(one.clone()))).collect();
        assert!(matches!(
            program(vec![], &calls, TRAP),
            Err(BackendError::FilterTooLarge(_))
        ));
    }
}
