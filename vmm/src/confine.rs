//! The guest's first instruction waits until every thread of the monitor
//! has its seccomp filter (issue 14), not only the vCPU and I/O threads.
//!
//! Threads that wait for outside input (console input, gdb's Ctrl-C)
//! install their own filter when they start, in parallel with the vCPU
//! thread's set-up. A thread that is still unfiltered while
//! the guest runs would be a way out of the sandbox for a guest that took
//! over the vCPU thread (they share one address space), and a thread whose
//! filter failed would silently stop serving its input. So each such
//! thread reports through a [`Confiner`], and [`Vm::run`](crate::vm::Vm::run)
//! waits for every [`Confinement`] before the first `KVM_RUN`; a failure
//! ends the run with the sandbox's error.

use crate::error::{Error, Result};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use ukvm_sandbox::{Fds, SeccompMode, ThreadKind};

/// The thread's side: installs its filter and says how that went.
pub struct Confiner(SyncSender<std::result::Result<(), ukvm_sandbox::Error>>);

/// The vCPU thread's side: waits for the thread's filter.
pub struct Confinement {
    thread: &'static str,
    answer: Receiver<std::result::Result<(), ukvm_sandbox::Error>>,
}

/// A pair for the thread called `thread` (named in errors).
pub fn pair(thread: &'static str) -> (Confiner, Confinement) {
    let (tx, answer) = sync_channel(1);
    (Confiner(tx), Confinement { thread, answer })
}

impl Confiner {
    /// Installs `kind`'s filter on the calling thread and reports it.
    /// Returns whether the thread may go on (false: it must return).
    pub fn install(self, kind: ThreadKind, mode: SeccompMode, fds: &Fds) -> bool {
        let result = ukvm_sandbox::seccomp::install(kind, mode, fds);
        let ok = result.is_ok();
        // The waiting side may be gone (the VM failed before running):
        // the thread then goes on only if it is filtered.
        let _ = self.0.send(result);
        ok
    }
}

impl Confinement {
    /// Waits until the thread is filtered.
    pub fn wait(self) -> Result<()> {
        match self.answer.recv() {
            Ok(result) => result.map_err(Error::Sandbox),
            Err(_) => Err(Error::Device(format!(
                "the {} thread ended before installing its system call filter",
                self.thread
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thread_that_confines_itself_lets_the_run_go_on() {
        let (confiner, confinement) = pair("test");
        let t = std::thread::spawn(move || {
            confiner.install(ThreadKind::Console, SeccompMode::Off, &Fds::default())
        });
        assert!(confinement.wait().is_ok());
        assert!(t.join().unwrap());
    }

    #[test]
    fn a_thread_that_ends_unconfined_fails_the_run() {
        let (confiner, confinement) = pair("console input");
        std::thread::spawn(move || drop(confiner)).join().unwrap();
        let err = confinement.wait().unwrap_err().to_string();
        assert!(err.contains("console input thread ended"), "{err}");
    }
}
