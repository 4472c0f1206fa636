//! Laying out the argument checks of ukvm's filters with seccompiler,
//! cheaply: most rules are the previous one with one value changed.

use crate::allowlist::ThreadKind;
use crate::fds::ArgEq;
use crate::{Error, Result};
use seccompiler::{sock_filter, BpfProgram, SeccompRule};

/// The rule encoded last and what it compares, to encode the next one
/// from. seccompiler lays out each rule, but converting one costs about
/// ten allocations, and a filter has ~60 rules (building the vCPU
/// thread's took 65-90 us of a boot, about what the kernel's install of it
/// takes). Consecutive rules mostly differ only in a value (the fd of
/// each alternative, the request of each ioctl), so the next is the last
/// one with that compare's value changed ([`retarget`]), and seccompiler
/// converts only the others.
#[derive(Default)]
pub(crate) struct LastRule {
    conds: Vec<ArgEq>,
    rule: BpfProgram,
}

impl LastRule {
    /// seccompiler's program for `conds` (every argument equals its
    /// value), as the tree places it; with `reuse`, retargeted from the
    /// last one where it can be.
    pub(crate) fn encode(
        &mut self,
        kind: ThreadKind,
        conds: &[ArgEq],
        reuse: bool,
    ) -> Result<&[sock_filter]> {
        if !(reuse && !self.rule.is_empty() && retarget(&mut self.rule, &self.conds, conds)) {
            self.rule = rule_body(kind, conds)?;
        }
        self.conds.clear();
        self.conds.extend_from_slice(conds);
        Ok(&self.rule)
    }
}

/// seccompiler's program for the rule "every argument of `conds` equals
/// its value", as the tree places it.
fn rule_body(kind: ThreadKind, conds: &[ArgEq]) -> Result<BpfProgram> {
    let conds = conds
        .iter()
        .map(|&(arg, value)| crate::seccomp::cond(kind, arg, value))
        .collect::<Result<Vec<_>>>()?;
    let rule = SeccompRule::new(conds).map_err(|source| Error::Filter { kind, source })?;
    Ok(crate::bpf_tree::rule_body(rule))
}

/// `BPF_LD | BPF_W | BPF_ABS` and `BPF_JMP | BPF_JEQ | BPF_K`.
const LD_W_ABS: u16 = 0x20;
const JEQ_K: u16 = 0x15;

/// Turns `rule`, seccompiler's program for `from`, into its program for
/// `to`, if they compare the same arguments and each value that changes
/// is compared by exactly one instruction (seccompiler lays out a 32-bit
/// compare as `LD W ABS` of the argument's low word, then `JEQ K value`;
/// no jump depends on a value). Otherwise false, and `rule` unchanged.
fn retarget(rule: &mut [sock_filter], from: &[ArgEq], to: &[ArgEq]) -> bool {
    if from.len() != to.len() || from.iter().zip(to).any(|(f, t)| f.0 != t.0) {
        return false;
    }
    // At most two compares per rule here; more would simply not reuse.
    let mut edits = [(0usize, 0u32); 2];
    let mut count = 0;
    for (&(arg, old), &(_, new)) in from.iter().zip(to).filter(|(f, t)| f.1 != t.1) {
        let (Ok(old), Ok(new)) = (u32::try_from(old), u32::try_from(new)) else {
            return false;
        };
        let mut compares = (0..rule.len()).filter(|&i| rule[i].code == JEQ_K && rule[i].k == old);
        let (Some(i), None) = (compares.next(), compares.next()) else {
            return false;
        };
        // offsetof(struct seccomp_data, args[arg]), low word first (x86-64).
        let low_word = 16 + 8 * u32::from(arg);
        let loads_arg = i > 0 && rule[i - 1].code == LD_W_ABS && rule[i - 1].k == low_word;
        let Some(slot) = edits.get_mut(count).filter(|_| loads_arg) else {
            return false;
        };
        *slot = (i, new);
        count += 1;
    }
    for &(i, new) in &edits[..count] {
        rule[i].k = new;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_compared_twice_is_not_retargeted() {
        // fd 5 and request 5: which compare is the fd's is not known.
        let from = [(0, 5), (1, 5)];
        let mut rule = rule_body(ThreadKind::Vcpu, &from).unwrap();
        let before = rule.clone();
        assert!(!retarget(&mut rule, &from, &[(0, 6), (1, 5)]));
        assert_eq!(rule, before);
        // A value past 32 bits, or other arguments: not retargeted either.
        assert!(!retarget(&mut rule, &from, &[(0, 1 << 32), (1, 5)]));
        assert!(!retarget(&mut rule, &from, &[(2, 5), (1, 5)]));
        let from = [(0, 7), (1, 5)];
        let mut rule = rule_body(ThreadKind::Vcpu, &from).unwrap();
        assert!(retarget(&mut rule, &from, &[(0, 9), (1, 5)]));
        assert_eq!(
            rule,
            rule_body(ThreadKind::Vcpu, &[(0, 9), (1, 5)]).unwrap()
        );
    }
}
