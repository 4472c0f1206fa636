//! The user64 guest (`tests/guests/user64.c`): user mode and SYSCALL as a
//! Linux kernel sets them up. Shared by its own test and by the Linux boot
//! test, which runs it first to learn whether Linux's /init could make a
//! system call on this host at all.

use crate::{guest, run_ukvm, Outcome};

/// How the guest's fault line ends when the CPU entered the SYSCALL
/// handler still in ring 3 (what this host's `kvm_pvm` does).
pub const RING3_SYSCALL: &str = "(the SYSCALL entry ran in ring 3)";

/// Boots user64 under the `ukvm` of this build.
pub fn run() -> Outcome {
    run_ukvm(["--kernel".into(), guest("user64").into_os_string()])
}

/// The guest's line reporting a SYSCALL handler entered in ring 3, if any.
pub fn ring3_syscall_fault(out: &Outcome) -> Option<&str> {
    out.stdout.lines().find(|l| l.ends_with(RING3_SYSCALL))
}
