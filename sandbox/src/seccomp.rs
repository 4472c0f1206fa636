//! Building and installing the per-thread seccomp filters.

use crate::allowlist::{Pin, ThreadKind};
use crate::fds::{Conds, Fds};
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

pub(crate) fn cond(kind: ThreadKind, arg: u8, value: u64) -> Result<SeccompCondition> {
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
                .iter()
                .map(|&(arg, value)| cond(kind, arg, value))
                .collect::<Result<Vec<_>>>()?;
            SeccompRule::new(conds).map_err(|source| Error::Filter { kind, source })
        })
        .collect::<Result<Vec<_>>>()
        .map(Some)
}

/// Each allowed system call of `kind` with its rules; none means any
/// arguments (seccompiler's convention).
fn calls(kind: ThreadKind, fds: &Fds) -> Result<BTreeMap<u32, Vec<SeccompRule>>> {
    let mut rules: BTreeMap<u32, Option<Vec<SeccompRule>>> = BTreeMap::new();
    for a in kind.allowlist().filter(|a| a.applies(fds)) {
        // System call numbers are never negative.
        let nr = a.sysno.id() as u32;
        match entry_rules(kind, a.pin, fds)? {
            // An empty rule list reads as "any arguments": an entry with
            // no fd to allow must add no entry at all.
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
    Ok(rules
        .into_iter()
        .map(|(nr, r)| (nr, r.unwrap_or_default()))
        .collect())
}

/// Each allowed system call of `kind` with the alternatives that let it
/// through ([`Pin::alternatives`], all of one pin's and the next's for
/// the same call); `None`: any arguments. The same decisions as [`calls`],
/// without seccompiler's rules.
fn alternatives(kind: ThreadKind, fds: &Fds) -> BTreeMap<u32, Option<Vec<Conds>>> {
    let mut calls: BTreeMap<u32, Option<Vec<Conds>>> = BTreeMap::new();
    for a in kind.allowlist().filter(|a| a.applies(fds)) {
        // System call numbers are never negative.
        let nr = a.sysno.id() as u32;
        let Some(list) = a.pin.alternatives(fds) else {
            calls.insert(nr, None);
            continue;
        };
        // No fd to allow: the entry adds nothing (not even "any").
        if list.is_empty() {
            continue;
        }
        if let Some(all) = calls.entry(nr).or_insert_with(|| Some(Vec::new())) {
            all.extend(list);
        }
    }
    calls
}

/// What a refused call gets in `mode` (`None` for [`SeccompMode::Off`]).
fn mismatch(mode: SeccompMode) -> Option<SeccompAction> {
    match mode {
        SeccompMode::Off => None,
        SeccompMode::Kill => Some(SeccompAction::Trap),
        SeccompMode::Log => Some(SeccompAction::Log),
    }
}

/// seccompiler's filter over `calls`, in its own layout.
fn seccompiler_filter(
    kind: ThreadKind,
    calls: BTreeMap<u32, Vec<SeccompRule>>,
    mismatch: SeccompAction,
) -> Result<BpfProgram> {
    let calls = calls.into_iter().map(|(nr, r)| (i64::from(nr), r));
    let f = SeccompFilter::new(calls.collect(), mismatch, SeccompAction::Allow, ARCH)
        .map_err(|source| Error::Filter { kind, source })?;
    BpfProgram::try_from(f).map_err(|source| Error::Filter { kind, source })
}

const ARCH: TargetArch = TargetArch::x86_64;

/// The BPF program for `kind` in `mode` (`None` for [`SeccompMode::Off`]):
/// seccompiler's architecture check and argument rules under a binary
/// search on the system call number ([`crate::bpf_tree`]), which keeps
/// installing it cheap.
pub fn filter(kind: ThreadKind, mode: SeccompMode, fds: &Fds) -> Result<Option<BpfProgram>> {
    let Some(mismatch) = mismatch(mode) else {
        return Ok(None);
    };
    // With no calls, seccompiler emits just its architecture check and
    // `RET mismatch`: the prelude, less that RET.
    let mut prelude = seccompiler_filter(kind, BTreeMap::new(), mismatch.clone())?;
    prelude.pop();
    crate::bpf_tree::program(prelude, &alternatives(kind, fds), u32::from(mismatch))
        .map(Some)
        .map_err(|source| Error::Filter { kind, source })
}

/// The same filter in seccompiler's own layout (a linear chain of system
/// call numbers): the reference [`filter`] is checked against in tests and
/// measured against by `cargo bench -p ukvm-sandbox`.
pub fn seccompiler_layout(
    kind: ThreadKind,
    mode: SeccompMode,
    fds: &Fds,
) -> Result<Option<BpfProgram>> {
    let Some(mismatch) = mismatch(mode) else {
        return Ok(None);
    };
    seccompiler_filter(kind, calls(kind, fds)?, mismatch).map(Some)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::allowlist::{Irqchip, Sysno};
    use crate::bpf_eval::{run, SeccompData, AUDIT_ARCH_X86_64};

    const MODES: [SeccompMode; 2] = [SeccompMode::Kill, SeccompMode::Log];

    /// Fds for every role (two for some), and none for gdb: a role with
    /// no fd allows nothing.
    fn fds() -> Fds {
        Fds {
            vcpu: Some(10),
            vm: Some(11),
            output: vec![1, 12],
            events: vec![13, 14],
            taps: vec![15],
            disks: vec![16, 17],
            input: vec![18],
            core_dir: vec![19],
            core: vec![20],
            // KVM's: KVM_IRQ_LINE's rule has an fd and a request.
            irqchip: Irqchip::Kvm,
            ..Fds::default()
        }
    }

    /// A seeded xorshift: the same "random" arguments every run.
    fn random(state: &mut u64) -> u64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    }

    /// Argument vectors that satisfy each alternative of each pin of
    /// `kind`, miss it by one (either way, in the pinned word and above
    /// it), and random ones, some with a pinned value spliced in.
    fn argument_vectors(kind: ThreadKind, fds: &Fds) -> Vec<[u64; 6]> {
        let mut out = vec![[0; 6], [u64::MAX; 6]];
        let mut pinned = Vec::new();
        for a in kind.allowlist().filter(|a| a.applies(fds)) {
            for alternative in a.pin.alternatives(fds).unwrap_or_default() {
                let mut good = [0u64; 6];
                for &(i, v) in alternative.iter() {
                    good[usize::from(i)] = v;
                    pinned.push((usize::from(i), v));
                }
                out.push(good);
                for i in 0..6 {
                    for delta in [1u64, u64::MAX, 1 << 32] {
                        let mut v = good;
                        v[i] = v[i].wrapping_add(delta);
                        out.push(v);
                    }
                }
            }
        }
        let mut seed = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..32 {
            let mut v = [0; 6];
            v.iter_mut().for_each(|a| *a = random(&mut seed));
            out.push(v);
            let (i, value) = pinned[random(&mut seed) as usize % pinned.len()];
            v[i] = value;
            out.push(v);
        }
        out
    }

    fn numbers() -> impl Iterator<Item = i32> {
        // x32 calls carry bit 30 with the x86-64 arch word; -1 is what
        // ptrace may leave in nr.
        (0..=512).chain([0x4000_0000, 0x4000_0010, i32::MAX, -1])
    }

    /// Checks that `kind`'s filter over `fds` decides every call of
    /// [`numbers`] with [`argument_vectors`] as seccompiler's layout does;
    /// the number of `RET`s in it.
    fn decides_as_seccompiler(kind: ThreadKind, mode: SeccompMode, fds: &Fds) -> usize {
        let vectors = argument_vectors(kind, fds);
        let tree = filter(kind, mode, fds).unwrap().unwrap();
        let linear = seccompiler_layout(kind, mode, fds).unwrap().unwrap();
        let mut allowed = 0;
        for nr in numbers() {
            for (i, &args) in vectors.iter().enumerate() {
                // i386 calls (compat arch) with a few vectors.
                let arches = if i < 4 {
                    &[AUDIT_ARCH_X86_64, 0x4000_0003][..]
                } else {
                    &[AUDIT_ARCH_X86_64]
                };
                for &arch in arches {
                    let data = SeccompData { nr, arch, args };
                    let want = run(&linear, &data).unwrap().0;
                    let got = run(&tree, &data).unwrap().0;
                    assert_eq!(got, want, "{kind} {mode:?} {data:x?}");
                    allowed += usize::from(got == libc::SECCOMP_RET_ALLOW);
                }
            }
        }
        // Both allowing nothing (or everything) would also agree.
        assert!(allowed > 0 && allowed < vectors.len() * 517, "{kind}");
        tree.iter().filter(|i| i.code == 0x06).count()
    }

    #[test]
    fn the_tree_decides_every_call_as_seccompilers_layout_does() {
        for kind in ThreadKind::ALL {
            for mode in MODES {
                // The architecture check's RET, then the shared pair.
                assert_eq!(decides_as_seccompiler(kind, mode, &fds()), 3, "{kind}");
            }
        }
    }

    #[test]
    fn so_does_a_filter_too_long_for_shared_rets() {
        // 50 eventfds (a queue notifier each), 8 TAPs, 8 disks.
        let many = Fds {
            events: (100..150).collect(),
            taps: (30..38).collect(),
            disks: (40..48).collect(),
            irqchip: Irqchip::Userspace,
            ..fds()
        };
        assert!(decides_as_seccompiler(ThreadKind::Vcpu, SeccompMode::Kill, &many) > 3);
    }

    #[test]
    fn calls_for_another_interrupt_controller_are_refused() {
        let allowed = |chip: Irqchip, nr: Sysno, args: [u64; 6]| {
            let fds = Fds {
                irqchip: chip,
                ..fds()
            };
            let p = filter(ThreadKind::Vcpu, SeccompMode::Kill, &fds)
                .unwrap()
                .unwrap();
            let data = SeccompData {
                nr: nr.id(),
                arch: AUDIT_ARCH_X86_64,
                args,
            };
            run(&p, &data).unwrap().0 == libc::SECCOMP_RET_ALLOW
        };
        let on_vcpu = |req| [10, req, 0, 0, 0, 0];
        let interrupt = on_vcpu(crate::allowlist::ioctl::KVM_INTERRUPT);
        let mp_state = on_vcpu(crate::allowlist::ioctl::KVM_GET_MP_STATE);
        let irq_line = [11, crate::allowlist::ioctl::KVM_IRQ_LINE, 0, 0, 0, 0];
        let run_ = on_vcpu(crate::allowlist::ioctl::KVM_RUN);
        use Irqchip::{Kvm, None as NoChip, Userspace};
        for (chip, want) in [
            (NoChip, [false, false, false, false]),
            (Userspace, [true, false, false, true]),
            (Kvm, [false, true, true, true]),
        ] {
            let got = [
                allowed(chip, Sysno::ioctl, interrupt),
                allowed(chip, Sysno::ioctl, mp_state),
                allowed(chip, Sysno::ioctl, irq_line),
                allowed(chip, Sysno::timer_create, [0; 6]),
            ];
            assert_eq!(got, want, "{chip:?}");
            assert!(allowed(chip, Sysno::ioctl, run_), "{chip:?}");
        }
    }

    /// Instructions a call of `nr` walks, with arguments that satisfy no pin.
    fn walk(program: &[seccompiler::sock_filter], nr: i32) -> usize {
        let data = SeccompData {
            nr,
            arch: AUDIT_ARCH_X86_64,
            args: [u64::MAX; 6],
        };
        run(program, &data).unwrap().1
    }

    #[test]
    fn a_call_outside_the_allowlist_walks_a_short_path() {
        for kind in ThreadKind::ALL {
            let tree = filter(kind, SeccompMode::Kill, &fds()).unwrap().unwrap();
            let linear = seccompiler_layout(kind, SeccompMode::Kill, &fds())
                .unwrap()
                .unwrap();
            let listed: Vec<i32> = kind.allowlist().map(|a| a.sysno.id()).collect();
            let refused: Vec<i32> = numbers().filter(|nr| !listed.contains(nr)).collect();
            let worst = |p: &[seccompiler::sock_filter]| {
                refused.iter().map(|&nr| walk(p, nr)).max().unwrap_or(0)
            };
            let (tree_worst, linear_worst) = (worst(&tree), worst(&linear));
            let total =
                |p: &[seccompiler::sock_filter]| (0..=512).map(|nr| walk(p, nr)).sum::<usize>();
            eprintln!(
                "{kind}: tree {} instructions, worst refused walk {tree_worst}, \
                 {} steps over 0..=512; seccompiler {} instructions, worst {linear_worst}, {} steps",
                tree.len(),
                total(&tree),
                linear.len(),
                total(&linear),
            );
            assert!(
                tree_worst <= 16,
                "{kind}: a refused call walks {tree_worst}"
            );
        }
    }
}
