//! Stop signals (the `ukvm` command's SIGTERM and SIGINT) handled on the
//! vCPU thread itself: the first one received stops the VM as
//! [`crate::StopHandle::stop`] does.
//!
//! [`StopSignals::block`] blocks the signals in the calling thread, and so
//! in every thread started after it, and installs their handler. A VM that
//! takes them ([`crate::Vm::stop_on_signals`]) unblocks them on its vCPU
//! thread only while it runs the guest, so the kernel delivers them there:
//! the handler records the signal and sets the vCPU's `immediate_exit`
//! (as the kick handler does, see `kick.rs`), the signal itself ends a
//! `KVM_RUN` or a `ppoll` in progress with `EINTR`, and the run loop then
//! finds the stop requested. One that arrives before the run (or after it)
//! stays pending while blocked, and is taken when the run starts (or never:
//! the guest has stopped by then anyway).
//!
//! A thread reading a signalfd did this before. It cost a thread start and
//! a seccomp filter of its own, which the kernel JIT-compiles at install:
//! ~0.3 ms of CPU per boot, more than half of what the whole sandbox cost
//! (`perf stat`, hvt-exit, filters on against off: 1.79 against 1.05 ms of
//! task clock with the thread, 1.43 against 1.05 without).
//!
//! A signal's disposition is process-wide, so what the handler records is
//! too: [`received`] is the first stop signal this process received.

use std::sync::atomic::{AtomicI32, Ordering};

/// The first stop signal received; 0 before.
static RECEIVED: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_stop(signal: libc::c_int) {
    let _ = RECEIVED.compare_exchange(0, signal, Ordering::SeqCst, Ordering::SeqCst);
    crate::kick::interrupt_this_thread();
}

/// The first stop signal this process received, if any.
pub fn received() -> Option<i32> {
    match RECEIVED.load(Ordering::SeqCst) {
        0 => None,
        s => Some(s),
    }
}

/// Blocked stop signals with their handler installed, for
/// [`crate::Vm::stop_on_signals`].
#[derive(Clone, Copy)]
pub struct StopSignals {
    set: libc::sigset_t,
}

impl StopSignals {
    /// Blocks `signals` in the calling thread (and the threads it starts
    /// from now on) and installs their handler. Call before any other
    /// thread exists. On error the signals are left unblocked, with their
    /// default action.
    pub fn block(signals: &[libc::c_int]) -> std::io::Result<StopSignals> {
        // SAFETY: a zeroed sigset_t is a valid argument to sigemptyset,
        // which initialises it; sigaddset only writes it.
        let set = unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            for &s in signals {
                libc::sigaddset(&mut set, s);
            }
            set
        };
        let stop = StopSignals { set };
        stop.mask(libc::SIG_BLOCK);
        for &s in signals {
            if let Err(e) = install(s) {
                stop.mask(libc::SIG_UNBLOCK);
                return Err(e);
            }
        }
        Ok(stop)
    }

    /// Changes the calling thread's mask for the stop signals.
    pub(crate) fn mask(&self, how: libc::c_int) {
        // SAFETY: reads the initialised set; no old mask is asked for.
        unsafe { libc::pthread_sigmask(how, &self.set, std::ptr::null_mut()) };
    }
}

/// `on_stop` for `signal`, with SA_RESTART: the vCPU thread's other system
/// calls (console writes) carry on; `KVM_RUN` and `ppoll` end with `EINTR`
/// anyway.
fn install(signal: libc::c_int) -> std::io::Result<()> {
    crate::kick::install_handler_for(signal, on_stop)
}

/// Unblocks the stop signals on the vCPU thread while the guest runs;
/// blocks them again on drop.
pub(crate) struct Unblocked(StopSignals);

impl Unblocked {
    pub(crate) fn new(signals: StopSignals) -> Unblocked {
        signals.mask(libc::SIG_UNBLOCK);
        Unblocked(signals)
    }
}

impl Drop for Unblocked {
    fn drop(&mut self) {
        self.0.mask(libc::SIG_BLOCK);
    }
}
