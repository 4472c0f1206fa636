//! `cargo bench -p ukvm-sandbox [-- --rounds N]`: what installing each
//! thread kind's seccomp filter costs, ukvm's layout (a binary search on
//! the system call number, `bpf_tree`) against seccompiler's own (a linear
//! chain), in the same run, alternating A B each round.
//!
//! Each install happens in a fresh child process (a filter cannot be
//! removed), which times `seccompiler::apply_filter` around the
//! `seccomp(2)` call and sends the time back over a pipe. The kernel's
//! action cache, built at install by running the filter for every system
//! call number, is most of that time; the instructions walked over
//! numbers 0..=512 (counted with `bpf_eval`) are printed beside it.

use std::time::Instant;
use ukvm_sandbox::bpf_eval::{run, SeccompData, AUDIT_ARCH_X86_64};
use ukvm_sandbox::{seccomp, Fds, SeccompMode, ThreadKind};

type Program = Vec<seccompiler::sock_filter>;

fn main() {
    let rounds = match rounds(std::env::args().skip(1)) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("install bench: {e}\nusage: install [--rounds N]");
            std::process::exit(2);
        }
    };
    // A VM with a disk and a NIC: every role has fds to pin to.
    let fds = Fds {
        vcpu: Some(10),
        vm: Some(11),
        output: vec![1],
        events: vec![12, 13, 14],
        taps: vec![15],
        disks: vec![16],
        input: vec![17],
        ..Fds::default()
    };
    println!(
        "seccomp filter install, {rounds} rounds, load average {}",
        load_average()
    );
    // The fixed part of an install: a one-instruction filter (RET ALLOW).
    let allow = vec![seccompiler::sock_filter {
        code: 0x06,
        jt: 0,
        jf: 0,
        k: libc::SECCOMP_RET_ALLOW,
    }];
    println!(
        "{:<8} {:>22} {:>22} {:>15} {:>16} {:>12}",
        "thread",
        "seccompiler len/steps",
        "tree len/steps",
        "µs seccompiler",
        "µs tree (ratio)",
        "µs 1 insn"
    );
    for kind in ThreadKind::ALL {
        let (Ok(Some(linear)), Ok(Some(tree))) = (
            seccomp::seccompiler_layout(kind, SeccompMode::Kill, &fds),
            seccomp::filter(kind, SeccompMode::Kill, &fds),
        ) else {
            eprintln!("install bench: building the {kind} filter failed");
            std::process::exit(1);
        };
        let (mut a, mut b, mut c, mut ratios) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for _ in 0..rounds {
            let times = (
                install_time(&linear),
                install_time(&tree),
                install_time(&allow),
            );
            let (Some(ta), Some(tb), Some(tc)) = times else {
                eprintln!("install bench: installing the {kind} filter failed");
                std::process::exit(1);
            };
            a.push(ta);
            b.push(tb);
            c.push(tc);
            ratios.push(tb / ta);
        }
        println!(
            "{:<8} {:>22} {:>22} {:>15.1} {:>9.1} ({:.2}x) {:>12.1}",
            kind.to_string(),
            format!("{}/{}", linear.len(), steps(&linear)),
            format!("{}/{}", tree.len(), steps(&tree)),
            median(&mut a),
            median(&mut b),
            median(&mut ratios),
            median(&mut c),
        );
    }
    println!("(ratio: median of the per-round tree/seccompiler ratios)");
}

fn rounds(mut args: impl Iterator<Item = String>) -> Result<usize, String> {
    let mut rounds = 30;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--rounds" => {
                let v = args.next().ok_or("--rounds needs a number")?;
                rounds = v
                    .parse()
                    .ok()
                    .filter(|&n| n > 0)
                    .ok_or(format!("--rounds {v}: expected a positive number"))?;
            }
            // cargo bench passes --bench.
            "--bench" => {}
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(rounds)
}

/// Instructions walked for numbers 0..=512 with no pinned argument met.
fn steps(p: &Program) -> usize {
    (0..=512)
        .map(|nr| {
            let data = SeccompData {
                nr,
                arch: AUDIT_ARCH_X86_64,
                args: [u64::MAX; 6],
            };
            run(p, &data).map_or(0, |(_, steps)| steps)
        })
        .sum()
}

/// Microseconds a fresh child takes to install `p`. The child reports
/// through shared memory: after the install, its filter may refuse even
/// a write to a pipe.
fn install_time(p: &Program) -> Option<f64> {
    // SAFETY: a fresh shared anonymous page, checked for failure, unmapped
    // below; only this function uses it.
    let shared = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            4096,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if shared == libc::MAP_FAILED {
        return None;
    }
    let slot = shared.cast::<f64>();
    // SAFETY: this benchmark is single-threaded; the child only installs,
    // stores into the shared page and exits without unwinding
    // (exit_group is allowed by every filter).
    let pid = unsafe {
        slot.write_volatile(-1.0);
        libc::fork()
    };
    if pid == 0 {
        let start = Instant::now();
        let ok = seccompiler::apply_filter(p).is_ok();
        let us = start.elapsed().as_secs_f64() * 1e6;
        // SAFETY: as above.
        unsafe {
            if ok {
                slot.write_volatile(us);
            }
            libc::_exit(0);
        }
    }
    let mut status = 0;
    // SAFETY: reaps our own child, then reads and unmaps the page mapped
    // above.
    let us = unsafe {
        let reaped = pid > 0 && libc::waitpid(pid, &mut status, 0) == pid;
        let us = if reaped { slot.read_volatile() } else { -1.0 };
        libc::munmap(shared, 4096);
        us
    };
    (us >= 0.0).then_some(us)
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}
