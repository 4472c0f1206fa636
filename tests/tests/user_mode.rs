//! User mode under ukvm: the user64 guest (`tests/guests/user64.c`) sets
//! up Linux's GDT, STAR/LSTAR/SFMASK, a TSS and page tables with one user
//! code page and one user stack page, enters ring 3 with IRETQ (as Linux
//! starts /init), makes a `syscall`, checks in its ring-0 handler the state
//! SYSCALL defines, returns with SYSRETQ and calls again.
//!
//! This is the path Linux's first user-space system call takes, and the one
//! the opt-in Linux boot died on (README, *Linux guests*). The KVM of this
//! project's development hosts, `kvm_pvm`, gets it wrong: SYSCALL from user
//! mode loads RIP from LSTAR (and RCX, R11, the masked RFLAGS) but leaves
//! the vCPU in ring 3, so the handler's first fetch faults on its
//! supervisor-only page. The guest reports that fault, which also shows
//! that everything before it worked: ring 3 was entered, the user code ran,
//! and an exception from ring 3 reached the ring-0 handler through
//! TSS.RSP0. On `kvm_pvm` the test asserts exactly that report; anywhere
//! else every check must pass. When `kvm_pvm` is fixed the test fails and
//! says so.

use ukvm_tests::kvm_available;

/// Whether this host's KVM is the PVM variant (software virtualisation).
fn kvm_is_pvm() -> bool {
    std::path::Path::new("/sys/module/kvm_pvm").exists()
}

/// The hex value after `key ` in the guest's `layout:` line.
fn layout(lines: &[&str], key: &str) -> u64 {
    let line = lines
        .iter()
        .find(|l| l.starts_with("layout: "))
        .expect("the guest's layout line");
    let mut words = line.split_whitespace();
    words
        .find(|w| *w == key)
        .and_then(|_| words.next())
        .and_then(|v| u64::from_str_radix(v, 16).ok())
        .unwrap_or_else(|| panic!("{key} not in {line}"))
}

#[test]
fn syscall_from_user_mode_enters_ring_0_and_sysret_returns() {
    if !kvm_available() {
        return;
    }
    let out = ukvm_tests::user64::run();
    let lines = out.lines();
    assert!(lines.contains(&"PASS EFER.SCE set"), "{out:?}");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("entering user mode at ")),
        "{out:?}"
    );
    let ring3 = ukvm_tests::user64::ring3_syscall_fault(&out);
    if kvm_is_pvm() {
        let Some(line) = ring3 else {
            panic!(
                "kvm_pvm no longer enters the SYSCALL handler in ring 3: drop this \
                 test's exception for it, and rerun the opt-in Linux boot \
                 (README, Linux guests).\n{out:?}"
            )
        };
        // A #PF for a user-mode fetch (P|U) of the handler's first byte, from
        // CS 0x33, on the user stack: SYSCALL set RIP and nothing else.
        let handler = layout(&lines, "syscall_entry");
        let stack_top = layout(&lines, "user_stack_top");
        let want = format!(
            "FAIL exception 14 error 5 at rip {handler:x} cs 33 rflags 10042 rsp {stack_top:x} ss 2b cr2 {handler:x} "
        );
        assert!(line.starts_with(&want), "{line}\nwant: {want}");
        assert_eq!(out.status, Some(1), "{out:?}");
        return;
    }
    assert!(ring3.is_none(), "{out:?}");
    let failed: Vec<&&str> = lines.iter().filter(|l| l.starts_with("FAIL")).collect();
    assert!(failed.is_empty(), "{failed:?}\n{out:?}");
    assert_eq!(
        lines.last().copied(),
        Some("user64: 9 of 9 checks passed"),
        "{out:?}"
    );
    assert_eq!(out.status, Some(0), "{out:?}");
}
