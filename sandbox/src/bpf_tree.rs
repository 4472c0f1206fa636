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
//! seccompiler still does the rest: each call's argument checks
//! (`SeccompRule` → `BpfProgram`), the architecture check, installing. No
//! Rust crate without a C dependency lays out a tree: libseccomp does
//! (`SCMP_FLTATR_CTL_OPTIMIZE` = 2) but is C; extrasafe builds on
//! seccompiler, seccomp-tiny is a hand assembler.
//!
//! # Layout
//! ```text
//! prelude (architecture check)   LD nr
//! tree:   JGE pivot → right half, else left half ...
//!         leaf: JEQ nr (RET ALLOW | JA block) ... RET mismatch
//! blocks: per call with rules: rule, RET ALLOW, rule, RET ALLOW, ..., RET mismatch
//! RET mismatch
//! ```
//! A seccompiler rule program falls through its end when its conditions
//! hold and jumps one past its end (to the next rule) when they don't, so
//! `rule, RET ALLOW` pairs chain exactly as in seccompiler's own layout
//! (less two jumps that only that layout uses, see [`rule_body`]). The
//! final `RET mismatch` keeps any jump a rule makes past its block inside
//! the program. Conditional jumps carry 8-bit
//! offsets: the tree's only long ones (over a left half longer than 255)
//! become `JGE` + `JA`, and leaves reach blocks through `JA` (32-bit).

use seccompiler::{sock_filter, BackendError, BpfProgram, SeccompRule};
use std::collections::BTreeMap;

/// Calls tested one after the other at the bottom of the tree.
pub const LEAF: usize = 3;

/// The longest program the kernel takes (`BPF_MAXINSNS`).
const MAX_LEN: usize = 4096;

/// `BPF_LD | BPF_W | BPF_ABS` (both 0).
const BPF_LD_W_ABS: u16 = 0x20;
const BPF_JMP_JA: u16 = 0x05;
const BPF_JMP_JEQ_K: u16 = 0x05 | 0x10;
const BPF_JMP_JGE_K: u16 = 0x05 | 0x30;
const BPF_RET_K: u16 = 0x06;
/// `offsetof(struct seccomp_data, nr)`.
const DATA_NR: u32 = 0;
const RET_ALLOW: u32 = libc::SECCOMP_RET_ALLOW;

fn insn(code: u16, k: u32, jt: u8, jf: u8) -> sock_filter {
    sock_filter { code, jt, jf, k }
}

/// `JA +k`. An offset past `u32` cannot reach the kernel: such a program
/// is longer than [`MAX_LEN`] and refused before that.
fn ja(k: usize) -> sock_filter {
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

/// An instruction, or a jump to a block not placed yet.
enum Op {
    Insn(sock_filter),
    ToBlock(usize),
}

/// The argument checks of one system call: its rules in turn (each a rule
/// body, [`rule_body`], followed by `RET ALLOW`; see [`Checks::allow_if`]).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Checks(BpfProgram);

impl Checks {
    /// Allows the call when `rule` (a rule body) holds; otherwise the next
    /// rule decides.
    pub fn allow_if(&mut self, rule: &[sock_filter]) {
        self.0.extend_from_slice(rule);
        self.0.push(ret(RET_ALLOW));
    }

    /// No rule yet.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Builds the filter: `prelude` (seccompiler's architecture check), then
/// the dispatch on the number over `calls` (each call's checks; `None`
/// means any arguments), then `mismatch` for everything else.
pub fn program(
    prelude: BpfProgram,
    calls: BTreeMap<u32, Option<Checks>>,
    mismatch: u32,
) -> Result<BpfProgram, BackendError> {
    let mut blocks: Vec<BpfProgram> = Vec::new();
    let mut entries = Vec::with_capacity(calls.len());
    for (nr, checks) in calls {
        let Some(Checks(mut block)) = checks else {
            entries.push((nr, Target::Allow));
            continue;
        };
        block.push(ret(mismatch));
        entries.push((nr, Target::Block(blocks.len())));
        blocks.push(block);
    }
    let mut ops = Vec::new();
    tree(&entries, mismatch, &mut ops);

    let mut out = prelude;
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
    for op in ops {
        let next = out.len() + 1;
        out.push(match op {
            Op::Insn(i) => i,
            Op::ToBlock(b) => ja(starts[b] - next),
        });
    }
    blocks.into_iter().for_each(|b| out.extend(b));
    out.push(ret(mismatch));
    if out.len() > MAX_LEN {
        return Err(BackendError::FilterTooLarge(out.len()));
    }
    Ok(out)
}

/// A rule's program less the two jumps seccompiler starts it with: `JA 1`
/// (into the rule) and, skipped by it, a jump past the rule that only its
/// own linear layout takes. Entered at the top from a block, the rule needs
/// neither, and its conditions jump forward only, to its end or one past
/// it. (A rule laid out otherwise is kept whole.)
pub fn rule_body(rule: SeccompRule) -> BpfProgram {
    let mut p = BpfProgram::from(rule);
    if p.len() > 2 && p[0] == ja(1) && p[1].code == BPF_JMP_JA {
        p.drain(..2);
    }
    p
}

/// Appends the search over `entries` (sorted by number) to `out`.
fn tree(entries: &[(u32, Target)], mismatch: u32, out: &mut Vec<Op>) {
    if entries.len() <= LEAF {
        for &(nr, target) in entries {
            out.push(Op::Insn(insn(BPF_JMP_JEQ_K, nr, 0, 1)));
            out.push(match target {
                Target::Allow => Op::Insn(ret(RET_ALLOW)),
                Target::Block(b) => Op::ToBlock(b),
            });
        }
        out.push(Op::Insn(ret(mismatch)));
        return;
    }
    let (low, high) = entries.split_at(entries.len() / 2);
    let mut left = Vec::new();
    tree(low, mismatch, &mut left);
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
    tree(high, mismatch, out);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bpf_eval::{run, SeccompData};
    use seccompiler::{SeccompCmpArgLen, SeccompCmpOp, SeccompCondition};

    const TRAP: u32 = libc::SECCOMP_RET_TRAP;

    fn eq(arg: u8, v: u64) -> SeccompRule {
        let c = SeccompCondition::new(arg, SeccompCmpArgLen::Dword, SeccompCmpOp::Eq, v);
        SeccompRule::new(vec![c.unwrap()]).unwrap()
    }

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
            let checks = (nr % 4 == 0).then(|| {
                let mut c = Checks::default();
                c.allow_if(&rule_body(eq(0, u64::from(nr))));
                c.allow_if(&rule_body(eq(1, 7)));
                c
            });
            calls.insert(nr, checks);
        }
        let p = program(vec![], calls, TRAP).unwrap();
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
            let calls = (0..count).map(|i| (i * 2 + 1, None)).collect();
            let p = program(vec![], calls, TRAP).unwrap();
            let worst = (0..=(count * 2 + 2) as i32)
                .map(|nr| action(&p, nr, [0; 6]).1)
                .max()
                .unwrap();
            // LD, then one JGE per level, then a leaf's JEQs, then RET.
            let depth = (count as f64 / LEAF as f64).log2().ceil().max(0.0) as usize;
            assert!(
                worst <= 2 + depth + LEAF && worst <= 16,
                "{count} calls: worst walk {worst}"
            );
        }
    }

    #[test]
    fn no_calls_refuse_everything() {
        let p = program(vec![], BTreeMap::new(), TRAP).unwrap();
        assert_eq!(action(&p, 0, [0; 6]).0, TRAP);
        assert_eq!(action(&p, -1, [0; 6]).0, TRAP);
    }

    #[test]
    fn too_long_a_program_is_an_error_not_a_truncated_filter() {
        let mut one = Checks::default();
        one.allow_if(&rule_body(eq(0, 1)));
        let calls = (0..2100u32).map(|nr| (nr, Some(one.clone()))).collect();
        assert!(matches!(
            program(vec![], calls, TRAP),
            Err(BackendError::FilterTooLarge(_))
        ));
    }
}
