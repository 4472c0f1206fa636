//! Building and installing the per-thread seccomp filters.

use crate::allowlist::{Pin, ThreadKind};
use crate::fds::Fds;
use crate::{Error, Result};
use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};
use std::collections::BTreeMap;
use std::str::FromStr;

/// What a filter does with a system call outside its thread's allowlist.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SeccompMode {
    /// Kill the process with SIGSYS, after naming the call on stderr
    /// (the `ukvm` command's default).
    #[default]
    Kill,
    /// Allow it, and have the kernel log it (audit/dmesg): for finding
    /// what a new feature needs.
    Log,
    /// Install no filter.
    Off,
}

impl SeccompMode {
    /// The mode's name as `--seccomp` takes it and `--timings` reports it.
    pub fn name(self) -> &'static str {
        match self {
            SeccompMode::Kill => "on",
            SeccompMode::Log => "log",
            SeccompMode::Off => "off",
        }
    }
}

impl FromStr for SeccompMode {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "on" => Ok(SeccompMode::Kill),
            "log" => Ok(SeccompMode::Log),
            "off" => Ok(SeccompMode::Off),
            other => Err(Error::Parse(format!(
                "--seccomp={other}: expected on, log or off"
            ))),
        }
    }
}

fn cond(kind: ThreadKind, arg: u8, value: u64) -> Result<SeccompCondition> {
    SeccompCondition::new(arg, SeccompCmpArgLen::Dword, SeccompCmpOp::Eq, value)
        .map_err(|source| Error::Filter { kind, source })
}

/// The rules of one allowlist entry: `None` for "any arguments", else one
/// rule per alternative ([`Pin::alternatives`]; none: the entry allows
/// nothing on this thread).
fn entry_rules(kind: ThreadKind, pin: Pin, fds: &Fds) -> Result<Option<Vec<SeccompRule>>> {
    let Some(alternatives) = pin.alternatives(fds) else {
        return Ok(None);
    };
    alternatives
        .into_iter()
        .map(|conds| {
            let conds = conds
                .into_iter()
                .map(|(arg, value)| cond(kind, arg, value))
                .collect::<Result<Vec<_>>>()?;
            SeccompRule::new(conds).map_err(|source| Error::Filter { kind, source })
        })
        .collect::<Result<Vec<_>>>()
        .map(Some)
}

/// The BPF program for `kind` in `mode` (`None` for [`SeccompMode::Off`]).
pub fn filter(kind: ThreadKind, mode: SeccompMode, fds: &Fds) -> Result<Option<BpfProgram>> {
    let mismatch = match mode {
        SeccompMode::Off => return Ok(None),
        SeccompMode::Kill => SeccompAction::Trap,
        SeccompMode::Log => SeccompAction::Log,
    };
    // An empty rule list allows the call whatever its arguments.
    let mut rules: BTreeMap<i64, Option<Vec<SeccompRule>>> = BTreeMap::new();
    for a in kind.allowlist() {
        let nr = i64::from(a.sysno.id());
        match entry_rules(kind, a.pin, fds)? {
            // seccompiler reads an empty rule list as "any arguments":
            // an entry with no fd to allow must add no entry at all.
            Some(list) if list.is_empty() => {}
            Some(list) => {
                if let Some(all) = rules.entry(nr).or_insert_with(|| Some(Vec::new())) {
                    all.extend(list);
                }
            }
            None => {
                rules.insert(nr, None);
            }
        }
    }
    let rules = rules
        .into_iter()
        .map(|(nr, r)| (nr, r.unwrap_or_default()))
        .collect();
    let arch = TargetArch::x86_64;
    let f = SeccompFilter::new(rules, mismatch, SeccompAction::Allow, arch)
        .map_err(|source| Error::Filter { kind, source })?;
    BpfProgram::try_from(f)
        .map(Some)
        .map_err(|source| Error::Filter { kind, source })
}

/// Installs `kind`'s filter on the calling thread (and the threads it
/// starts later). In [`SeccompMode::Kill`] a refused call ends the process
/// with SIGSYS after a line on stderr naming it.
pub fn install(kind: ThreadKind, mode: SeccompMode, fds: &Fds) -> Result<()> {
    let Some(program) = filter(kind, mode, fds)? else {
        return Ok(());
    };
    if mode == SeccompMode::Kill {
        crate::sigsys::prepare(kind).map_err(|source| Error::Host {
            what: "SIGSYS handler".into(),
            source,
        })?;
    }
    seccompiler::apply_filter(&program).map_err(|source| Error::Install { kind, source })
}
