//! SIGTERM and SIGINT in the `ukvm` command: stop the guest cleanly (serial
//! output flushed, `--timings` written) and exit with 128 + the signal's
//! number, as a shell reports a process the signal ended (143 for SIGTERM,
//! 130 for SIGINT). Container engines send SIGTERM to stop a container.
//!
//! The signals are blocked in every thread from the start of `main` (the
//! mask is inherited by the threads the VM creates later), and one thread
//! reads them from a signalfd and calls [`StopHandle::stop`], which takes
//! a lock and so cannot run in a handler. A signal that arrives before the
//! thread exists stays pending and is read then.
//!
//! Under `--seccomp` the thread runs under the console thread's filter (a
//! thread that waits for outside input): all it does is `read` (the
//! signalfd, its only input fd), `futex`, `write` (the VM's kick eventfd)
//! and the SIGRTMIN `tgkill` of a vCPU kick; it gets no KVM fd, TAP or
//! disk. The guest's first instruction waits for that filter
//! (`ukvm::confine`).

use std::fs::File;
use std::io::Read;
use std::os::fd::FromRawFd;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Arc;
use ukvm::vm::Vm;
use ukvm_sandbox::{Fds, SeccompMode, ThreadKind};

/// The signals that stop the guest.
const STOP_SIGNALS: [libc::c_int; 2] = [libc::SIGTERM, libc::SIGINT];

/// The blocked stop signals, until [`Watch::start`] hands them to a thread.
pub struct Blocked(libc::sigset_t);

/// Blocks the stop signals in the calling thread and in every thread it
/// creates from now on. Call first thing in `main`.
pub fn block() -> Blocked {
    // SAFETY: a zeroed sigset_t is a valid argument to sigemptyset, which
    // initialises it; sigaddset/pthread_sigmask only read and write it.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in STOP_SIGNALS {
            libc::sigaddset(&mut set, s);
        }
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        Blocked(set)
    }
}

/// Which stop signal arrived, if any.
#[derive(Clone)]
pub struct Received(Arc<AtomicI32>);

impl Received {
    /// The signal's number, or None.
    pub fn get(&self) -> Option<i32> {
        match self.0.load(Ordering::SeqCst) {
            0 => None,
            s => Some(s),
        }
    }

    /// The process exit status for a stop by signal: 128 + its number.
    pub fn exit_status(&self) -> Option<u8> {
        self.get().map(|s| (128 + s) as u8)
    }
}

impl Blocked {
    /// Starts the thread that turns the first stop signal into a stop of
    /// `vm`. Later signals are read and ignored: the guest is already
    /// stopping (SIGKILL still ends ukvm at once). `vm`'s run waits for
    /// the thread's filter before the guest's first instruction.
    pub fn start(self, vm: &mut Vm, seccomp: SeccompMode) -> Received {
        let stop = vm.stop_handle();
        let vm_fds = vm.sandbox_fds();
        let received = Received(Arc::new(AtomicI32::new(0)));
        let seen = received.clone();
        let set = self.0;
        // SAFETY: signalfd reads the initialised set; -1 asks for a new fd.
        let fd = unsafe { libc::signalfd(-1, &set, libc::SFD_CLOEXEC) };
        let spawned = (fd >= 0).then(|| {
            // SAFETY: signalfd returned a new descriptor that nothing else owns.
            let mut signals = unsafe { File::from_raw_fd(fd) };
            // No output but stderr (always allowed).
            let fds = Fds {
                events: vm_fds.events.clone(),
                input: vec![fd],
                ..Fds::default()
            };
            let (confiner, confinement) = ukvm::confine::pair("stop-signal");
            let thread = std::thread::Builder::new()
                .name("ukvm-signals".into())
                .stack_size(64 << 10)
                .spawn(move || {
                    if !confiner.install(ThreadKind::Console, seccomp, &fds) {
                        return;
                    }
                    // One signalfd_siginfo per signal; ssi_signo comes first.
                    let mut info = [0u8; 128];
                    while signals.read_exact(&mut info).is_ok() {
                        let sig = i32::from_ne_bytes([info[0], info[1], info[2], info[3]]);
                        if seen.0.swap(sig, Ordering::SeqCst) == 0 {
                            stop.stop();
                        }
                    }
                });
            thread.map(|_| confinement)
        });
        match spawned {
            Some(Ok(confinement)) => vm.confine_before_run(confinement),
            _ => {
                // Without the thread, the signals must not stay blocked:
                // let them end the process the default way.
                // SAFETY: unblocks the set in this thread only.
                unsafe { libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut()) };
            }
        }
        received
    }
}
