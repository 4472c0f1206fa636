//! The argument checks of one system call, laid out so that rules which
//! start with the same comparison share it.
//!
//! # Why
//! seccompiler lays out every rule on its own: each condition loads its
//! argument and compares it, and each rule ends in `RET ALLOW`. ukvm's
//! rules share most of their conditions: the vCPU thread's ioctls on the
//! vCPU fd compare the fd again for every request, 5 instructions a
//! request. Here they take one load and one compare of the fd, one load
//! of the request, then one compare per request.
//!
//! The kernel's cost of installing a filter grows with its length: it
//! converts the program to eBPF (where each `RET` is two instructions),
//! JIT-compiles it and runs it for every system call number to build its
//! action cache (`cargo bench -p ukvm-sandbox`). Measured inside ukvm on
//! this host: ~22 µs for a 1-instruction filter, ~77 µs for 121
//! instructions, ~113 µs for the vCPU filter's 241 in seccompiler's rule
//! layout under [`crate::bpf_tree`]'s search. Laid out here, with the
//! tree's `RET`s shared too, that filter is 133 instructions with 3 `RET`s
//! instead of 47, and its install 83.5 µs against 103 (medians of 100
//! alternating boots of hvt-exit). Building it in-process stays at ~25-28
//! µs, nearly all of it cold caches: 7.5 µs in a warm loop.
//!
//! No crate lays out shared comparisons: seccompiler does not, libseccomp
//! (C) builds a tree on the system call number only, `seccomp-tiny` is a
//! hand assembler. seccompiler stays the reference: the tests check that
//! every filter decides each call as seccompiler's own layout of the same
//! rules does ([`crate::seccomp::seccompiler_layout`]).
//!
//! # Layout
//! ```text
//! body:  for each argument that rules compare first, in order of appearance:
//!          LD arg
//!          for each value it is compared with:
//!            JEQ value → RET ALLOW                      (a rule ends here)
//!          | JEQ value, else skip ↓; body of the rules' other conditions;
//!            LD arg (again, for the next value) ↓
//! ```
//! A body falls through when none of its rules holds; `JEQ value →
//! RET ALLOW` jumps to the program's one `RET ALLOW`, or, in a program too
//! long for that, is `JEQ value` over a `RET ALLOW` of its own
//! ([`crate::bpf_tree`]'s `Rets`). Comparisons are
//! seccompiler's `SeccompCmpArgLen::Dword` with `SeccompCmpOp::Eq`: the
//! argument's low 32 bits against the value's.

use crate::bpf_tree::{insn, ja, Op, Rets, BPF_JMP_JEQ_K, BPF_LD_W_ABS};
use crate::fds::ArgEq;
use seccompiler::BackendError;

/// The last system call argument's index.
const LAST_ARG: u8 = 5;

/// `offsetof(struct seccomp_data, args[arg])`, its low word (x86-64 is
/// little-endian).
fn low_word(arg: u8) -> u32 {
    16 + 8 * u32::from(arg)
}

/// The value a comparison tests, as a Dword compare sees it.
fn low(value: u64) -> u32 {
    value as u32
}

/// The checks of a call allowed when any of `alternatives` holds (all of
/// an alternative's comparisons): allowing as `rets` lays it out, falling
/// through when none holds. `None`: an alternative has no comparison, so
/// any arguments will do.
pub(crate) fn body<A: AsRef<[ArgEq]>>(
    alternatives: &[A],
    rets: Rets,
) -> Result<Option<Vec<Op>>, BackendError> {
    let rules: Vec<&[ArgEq]> = alternatives.iter().map(AsRef::as_ref).collect();
    if rules
        .iter()
        .any(|r| r.iter().any(|&(arg, _)| arg > LAST_ARG))
    {
        return Err(BackendError::InvalidArgumentNumber);
    }
    if rules.iter().any(|r| r.is_empty()) {
        return Ok(None);
    }
    let mut out = Vec::new();
    shared_prefixes(&rules, rets, &mut out);
    Ok(Some(out))
}

/// Appends `x` to `list` unless it is there already: the order of first
/// appearance, which keeps the layout the same from run to run.
fn push_new<T: PartialEq>(list: &mut Vec<T>, x: T) {
    if !list.contains(&x) {
        list.push(x);
    }
}

/// Appends the body over `rules` (none empty) to `out`.
fn shared_prefixes(rules: &[&[ArgEq]], rets: Rets, out: &mut Vec<Op>) {
    let mut firsts = Vec::new();
    rules.iter().for_each(|r| push_new(&mut firsts, r[0].0));
    let mut values = Vec::new();
    let mut rests: Vec<&[ArgEq]> = Vec::new();
    for arg in firsts {
        let load = Op::Insn(insn(BPF_LD_W_ABS, low_word(arg), 0, 0));
        out.push(load.clone());
        values.clear();
        for r in rules.iter().filter(|r| r[0].0 == arg) {
            push_new(&mut values, low(r[0].1));
        }
        for (i, &value) in values.iter().enumerate() {
            rests.clear();
            let matching = rules
                .iter()
                .filter(|r| r[0].0 == arg && low(r[0].1) == value);
            rests.extend(matching.map(|r| &r[1..]));
            if rests.iter().any(|r| r.is_empty()) {
                out.extend(rets.allow_if(value));
                continue;
            }
            // JEQ value, else past the rests' body (and the reload).
            let at = out.len();
            out.push(Op::Insn(insn(BPF_JMP_JEQ_K, value, 0, 0)));
            shared_prefixes(&rests, rets, out);
            let reload = i + 1 < values.len();
            let skip = out.len() - at - 1 + usize::from(reload);
            match u8::try_from(skip) {
                Ok(skip) => out[at] = Op::Insn(insn(BPF_JMP_JEQ_K, value, 0, skip)),
                Err(_) => {
                    // Too far for 8 bits: into the body, else over it by
                    // JA (the body's jumps are relative: moving it is safe).
                    out[at] = Op::Insn(insn(BPF_JMP_JEQ_K, value, 1, 0));
                    out.insert(at + 1, Op::Insn(ja(skip)));
                }
            }
            if reload {
                out.push(load.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bpf_eval::{run, SeccompData, AUDIT_ARCH_X86_64};
    use crate::bpf_tree::{program, BPF_JMP_JA};
    use seccompiler::sock_filter;
    use std::collections::BTreeMap;

    const TRAP: u32 = libc::SECCOMP_RET_TRAP;
    const RET_ALLOW: u32 = libc::SECCOMP_RET_ALLOW;

    /// A filter that allows system call 16 when `rules` say so.
    fn block(rules: &[Vec<ArgEq>], mismatch: u32) -> Result<Vec<sock_filter>, BackendError> {
        program(
            vec![],
            &BTreeMap::from([(16, Some(rules.to_vec()))]),
            mismatch,
        )
    }

    fn allowed(p: &[sock_filter], args: [u64; 6]) -> bool {
        let data = SeccompData {
            nr: 16,
            arch: AUDIT_ARCH_X86_64,
            args,
        };
        let (action, _) = run(p, &data).unwrap();
        assert!(action == RET_ALLOW || action == TRAP, "{action:#x}");
        action == RET_ALLOW
    }

    #[test]
    fn shared_comparisons_are_laid_out_once() {
        // 17 requests on fd 6, 2 on fd 5, 2 on any fd: 21 rules that
        // seccompiler lays out in 5 and 3 instructions each.
        let mut rules: Vec<Vec<ArgEq>> = (0..17).map(|r| vec![(0, 6), (1, 100 + r)]).collect();
        rules.extend((0..2).map(|r| vec![(0, 5), (1, 200 + r)]));
        rules.extend((0..2).map(|r| vec![(1, 300 + r)]));
        let p = block(&rules, TRAP).unwrap();
        // LD nr, JEQ 16 over JA, JA refused (the tree); LD fd, JEQ 6, LD req,
        // 17 JEQ, LD fd, JEQ 5, LD req, 2 JEQ, LD req, 2 JEQ, JA (the
        // block); RET mismatch, RET ALLOW.
        assert_eq!(p.len(), 4 + 29 + 2, "{p:?}");
        for r in 0..17 {
            assert!(allowed(&p, [6, 100 + r, 0, 0, 0, 0]));
            assert!(!allowed(&p, [5, 100 + r, 0, 0, 0, 0]));
            assert!(!allowed(&p, [6 + (1 << 32), 100 + r + 1000, 0, 0, 0, 0]));
        }
        assert!(allowed(&p, [5, 201, 0, 0, 0, 0]));
        assert!(!allowed(&p, [6, 201, 0, 0, 0, 0]));
        assert!(allowed(&p, [99, 301, 0, 0, 0, 0]));
        // Dword compares: the high word is not looked at.
        assert!(allowed(&p, [6 + (1 << 32), 100, 0, 0, 0, 0]));
    }

    #[test]
    fn long_bodies_get_trampolines_and_local_allows() {
        // 300 values for one fd (skip > 255), and 300 plain values
        // (RET ALLOW out of reach of the first compares).
        let mut rules: Vec<Vec<ArgEq>> = (0..300).map(|r| vec![(0, 6), (1, r)]).collect();
        rules.push(vec![(0, 7), (2, 1)]);
        rules.extend((0..300).map(|v| vec![(3, v)]));
        let p = block(&rules, TRAP).unwrap();
        assert!(p.iter().any(|i| i.code == BPF_JMP_JA && i.k > 255));
        for r in [0, 150, 299] {
            assert!(allowed(&p, [6, r, 0, 0, 0, 0]));
            assert!(allowed(&p, [0, 999, 0, r, 0, 0]));
            assert!(!allowed(&p, [7, r, 0, 999, 0, 0]));
        }
        assert!(allowed(&p, [7, 0, 1, 999, 0, 0]));
        assert!(!allowed(&p, [6, 300, 0, 300, 0, 0]));
    }

    #[test]
    fn an_empty_alternative_allows_anything_and_bad_indexes_are_refused() {
        let p = block(&[vec![(0, 1)], vec![]], TRAP).unwrap();
        assert!(allowed(&p, [9; 6]));
        assert!(matches!(
            block(&[vec![(6, 1)]], TRAP),
            Err(BackendError::InvalidArgumentNumber)
        ));
    }
}
