//! Building and installing the per-thread seccomp filters.

use crate::allowlist::{FdRole, Pin, ThreadKind};
use crate::{Error, Result};
use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};
use std::collections::BTreeMap;
use std::os::fd::RawFd;
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

/// The fds the filters pin ioctls to.
#[derive(Debug, Clone, Copy)]
pub struct Fds {
    /// The vCPU fd.
    pub vcpu: RawFd,
    /// The VM fd.
    pub vm: RawFd,
}

fn cond(kind: ThreadKind, arg: u8, value: u64) -> Result<SeccompCondition> {
    SeccompCondition::new(arg, SeccompCmpArgLen::Dword, SeccompCmpOp::Eq, value)
        .map_err(|source| Error::Filter { kind, source })
}

/// The conditions of one allowlist entry; `None` for "any arguments".
fn conditions(kind: ThreadKind, pin: Pin, fds: &Fds) -> Result<Option<Vec<SeccompCondition>>> {
    Ok(match pin {
        Pin::Any => None,
        Pin::Arg(i, v) => Some(vec![cond(kind, i, v)?]),
        Pin::Kick => Some(vec![
            cond(kind, 0, u64::from(std::process::id()))?,
            cond(kind, 2, libc::SIGRTMIN() as u64)?,
        ]),
        Pin::Ioctl(role, request) => {
            let mut c = vec![cond(kind, 1, request)?];
            match role {
                FdRole::Vcpu => c.push(cond(kind, 0, fds.vcpu as u64)?),
                FdRole::Vm => c.push(cond(kind, 0, fds.vm as u64)?),
                FdRole::Any => {}
            }
            Some(c)
        }
    })
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
        let entry = rules
            .entry(i64::from(a.sysno.id()))
            .or_insert_with(|| Some(Vec::new()));
        match (conditions(kind, a.pin, fds)?, entry.as_mut()) {
            (None, _) => *entry = None,
            (Some(c), Some(list)) => {
                list.push(SeccompRule::new(c).map_err(|source| Error::Filter { kind, source })?)
            }
            (Some(_), None) => {}
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
