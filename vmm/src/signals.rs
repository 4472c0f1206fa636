//! SIGTERM and SIGINT in the `ukvm` command: stop the guest cleanly (serial
//! output flushed, `--timings` written) and exit with 128 + the signal's
//! number, as a shell reports a process the signal ended (143 for SIGTERM,
//! 130 for SIGINT). Container engines send SIGTERM to stop a container.
//!
//! The signals are blocked in every thread from the start of `main` (the
//! mask is inherited by the threads the VM creates later), and one thread
//! waits for them with `sigwait` and calls [`StopHandle::stop`], which is
//! not async-signal-safe and so cannot run in a handler. A signal that
//! arrives before the thread exists stays pending and is taken then.

use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Arc;
use ukvm::StopHandle;

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
    /// Starts the thread that turns the first stop signal into
    /// `stop.stop()`. Later signals are taken and ignored: the guest is
    /// already stopping (SIGKILL still ends ukvm at once).
    pub fn start(self, stop: StopHandle) -> Received {
        let received = Received(Arc::new(AtomicI32::new(0)));
        let seen = received.clone();
        let set = self.0;
        let spawned = std::thread::Builder::new()
            .name("ukvm-signals".into())
            .stack_size(64 << 10)
            .spawn(move || loop {
                let mut sig = 0;
                // SAFETY: sigwait reads the set and writes the signal
                // number into `sig`.
                if unsafe { libc::sigwait(&set, &mut sig) } != 0 {
                    return;
                }
                if seen.0.swap(sig, Ordering::SeqCst) == 0 {
                    stop.stop();
                }
            });
        if spawned.is_err() {
            // Without the thread, the signals must not stay blocked: let
            // them end the process the default way.
            // SAFETY: unblocks the set in this thread only.
            unsafe { libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut()) };
        }
        received
    }
}
