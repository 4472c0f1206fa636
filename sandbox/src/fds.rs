//! The fds a thread's filter pins system calls to, by role.
//!
//! Once the sandbox is in, a thread can open nothing new, so every fd it
//! will read, write or ioctl exists when its filter is built: the VM
//! gathers them here (devices report theirs) and the filter allows each
//! fd-taking call only on the fds of the role its allowlist entry names.
//! seccomp compares arguments against constants only, so "write on fd 1
//! or fd 7" becomes one rule per fd ([`Pin::alternatives`]).

use crate::allowlist::{Allowed, FdRole, Irqchip, Pin};
use std::os::fd::RawFd;

/// The fds of one thread (or of a whole VM), by role. An empty role
/// means that thread kind's calls on that role are refused outright.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fds {
    /// The vCPU fd (KVM ioctls).
    pub vcpu: Option<RawFd>,
    /// The VM fd (KVM ioctls).
    pub vm: Option<RawFd>,
    /// Written with `write`: the serial console's output, a `--timings`
    /// file. stderr (fd 2) is always added: the SIGSYS handler names a
    /// refused call there.
    pub output: Vec<RawFd>,
    /// eventfds, read and written: queue notifications, kicks, stop
    /// requests, irqfds.
    pub events: Vec<RawFd>,
    /// TAP devices: frames with `readv`/`writev`, `TUNSET*` ioctls.
    pub taps: Vec<RawFd>,
    /// Disk images: `preadv`, `pwritev`, `fdatasync`.
    pub disks: Vec<RawFd>,
    /// Read by a thread that waits for outside input: the console's
    /// input.
    pub input: Vec<RawFd>,
    /// The gdb connection (`--gdb`), read and written.
    pub gdb: Vec<RawFd>,
    /// `--dumpcore`'s directory, where a core may be created.
    pub core_dir: Vec<RawFd>,
    /// The fd reserved for writing a core.
    pub core: Vec<RawFd>,
    /// The VM's interrupt controller, if the thread serves it: decides
    /// the entries of [`crate::allowlist::Only`] other than `Always`.
    pub irqchip: Irqchip,
}

impl Fds {
    /// The fds of `role`; `None` for [`FdRole::Any`] (no fd condition).
    pub fn of(&self, role: FdRole) -> Option<Vec<RawFd>> {
        self.each(role).map(Iterator::collect)
    }

    /// [`Fds::of`] without collecting them.
    fn each(&self, role: FdRole) -> Option<impl Iterator<Item = RawFd> + '_> {
        let (first, list): (Option<RawFd>, &[RawFd]) = match role {
            FdRole::Any => return None,
            FdRole::Vcpu => (self.vcpu, &[]),
            FdRole::Vm => (self.vm, &[]),
            FdRole::Output => (Some(libc::STDERR_FILENO), &self.output),
            FdRole::Events => (None, &self.events),
            FdRole::Taps => (None, &self.taps),
            FdRole::Disks => (None, &self.disks),
            FdRole::Input => (None, &self.input),
            FdRole::Gdb => (None, &self.gdb),
            FdRole::CoreDir => (None, &self.core_dir),
            FdRole::Core => (None, &self.core),
        };
        // stderr is an output fd whatever the list says: once.
        let rest = list.iter().copied().filter(move |&fd| Some(fd) != first);
        Some(first.into_iter().chain(rest))
    }

    /// Adds `other`'s fds to these (its vCPU and VM fds where these have
    /// none).
    pub fn extend(&mut self, other: &Fds) {
        self.vcpu = self.vcpu.or(other.vcpu);
        self.vm = self.vm.or(other.vm);
        if self.irqchip == Irqchip::None {
            self.irqchip = other.irqchip;
        }
        for (mine, theirs) in [
            (&mut self.output, &other.output),
            (&mut self.events, &other.events),
            (&mut self.taps, &other.taps),
            (&mut self.disks, &other.disks),
            (&mut self.input, &other.input),
            (&mut self.gdb, &other.gdb),
            (&mut self.core_dir, &other.core_dir),
            (&mut self.core, &other.core),
        ] {
            for fd in theirs {
                if !mine.contains(fd) {
                    mine.push(*fd);
                }
            }
        }
    }
}

impl Allowed {
    /// Whether the entry is in the filter of a thread that uses `fds`.
    pub fn applies(&self, fds: &Fds) -> bool {
        self.only.holds(fds.irqchip)
    }
}

/// One argument comparison: argument `index` (0-based, 32-bit) equals
/// `value`.
pub type ArgEq = (u8, u64);

/// The comparisons of one alternative, all of which must hold: at most
/// two (an fd and one other argument), kept inline so that building a
/// filter allocates per pin, not per fd.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conds {
    len: u8,
    list: [ArgEq; 2],
}

impl Conds {
    fn new(first: Option<ArgEq>, rest: Option<ArgEq>) -> Conds {
        let mut c = Conds {
            len: 0,
            list: [(0, 0); 2],
        };
        for cond in first.into_iter().chain(rest) {
            c.list[usize::from(c.len)] = cond;
            c.len += 1;
        }
        c
    }
}

impl std::ops::Deref for Conds {
    type Target = [ArgEq];
    fn deref(&self) -> &[ArgEq] {
        &self.list[..usize::from(self.len)]
    }
}

impl AsRef<[ArgEq]> for Conds {
    fn as_ref(&self) -> &[ArgEq] {
        self
    }
}

impl Pin {
    /// The argument comparisons that let a call through: `None` for any
    /// arguments, otherwise one [`Conds`] per alternative (all of one
    /// must hold; any one will do). An empty list allows nothing: the
    /// thread has no fd of the pinned role.
    pub fn alternatives(self, fds: &Fds) -> Option<Vec<Conds>> {
        // Argument `at` is one of `role`'s fds, and `rest` holds.
        let on_fds = |at: u8, role: FdRole, rest: Option<ArgEq>| -> Vec<Conds> {
            match fds.each(role) {
                None => vec![Conds::new(rest, None)],
                // An fd is an int: compared as the low 32 bits.
                Some(list) => list
                    .map(|fd| Conds::new(Some((at, u64::from(fd as u32))), rest))
                    .collect(),
            }
        };
        match self {
            Pin::Any => None,
            Pin::Arg(i, v) => Some(vec![Conds::new(Some((i, v)), None)]),
            Pin::Kick => Some(vec![Conds::new(
                Some((0, u64::from(std::process::id()))),
                Some((2, libc::SIGRTMIN() as u64)),
            )]),
            Pin::Ioctl(role, request) => Some(on_fds(0, role, Some((1, request)))),
            Pin::Fd(role) => Some(on_fds(0, role, None)),
            Pin::FdAnd(at, role, arg, value) => Some(on_fds(at, role, Some((arg, value)))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_fd_pin_is_one_alternative_per_fd_and_none_without_fds() {
        let fds = Fds {
            output: vec![7],
            ..Fds::default()
        };
        let lists = |pin: Pin| {
            pin.alternatives(&fds)
                .map(|a| a.iter().map(|c| c.to_vec()).collect::<Vec<_>>())
        };
        assert_eq!(
            lists(Pin::Fd(FdRole::Output)),
            Some(vec![vec![(0, 2)], vec![(0, 7)]])
        );
        assert_eq!(lists(Pin::Fd(FdRole::Taps)), Some(vec![]));
        assert_eq!(lists(Pin::Ioctl(FdRole::Any, 5)), Some(vec![vec![(1, 5)]]));
        assert_eq!(
            lists(Pin::FdAnd(1, FdRole::Output, 2, 9)),
            Some(vec![vec![(1, 2), (2, 9)], vec![(1, 7), (2, 9)]])
        );
        assert_eq!(Pin::Any.alternatives(&fds), None);
    }

    #[test]
    fn extend_merges_without_duplicates() {
        let mut a = Fds {
            vcpu: Some(4),
            events: vec![8],
            ..Fds::default()
        };
        a.extend(&Fds {
            vcpu: Some(9),
            vm: Some(3),
            events: vec![8, 10],
            ..Fds::default()
        });
        assert_eq!((a.vcpu, a.vm, a.events), (Some(4), Some(3), vec![8, 10]));
    }
}
