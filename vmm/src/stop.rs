//! Ending a running VM from another thread: [`StopHandle`], what the CLI's
//! SIGTERM/SIGINT handling and the OCI runtime's `kill` use.

use crate::kick::Kicker;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Stops a VM's [`crate::Vm::run`] from any thread. Get one with
/// [`crate::Vm::stop_handle`]; cheap to clone.
///
/// [`StopHandle::stop`] makes the vCPU leave the guest at once (see
/// `kick.rs`); `run` then finishes as after any other exit (serial output
/// flushed, the I/O thread stopped, timings recorded) and returns
/// [`crate::Exit::Stopped`], reported as `"outcome":"stopped"` by
/// `--timings`. A stop requested before `run` starts makes `run` return at
/// once; the request stays set, so a later `run` returns at once too.
#[derive(Clone)]
pub struct StopHandle {
    requested: Arc<AtomicBool>,
    /// The VM also stops on the process's stop signals
    /// ([`crate::Vm::stop_on_signals`]).
    on_signals: Arc<AtomicBool>,
    kicker: Kicker,
}

impl StopHandle {
    pub(crate) fn new(kicker: Kicker) -> Self {
        StopHandle {
            requested: Arc::new(AtomicBool::new(false)),
            on_signals: Arc::new(AtomicBool::new(false)),
            kicker,
        }
    }

    /// Asks the VM to stop and returns without waiting for it.
    pub fn stop(&self) {
        self.requested.store(true, Ordering::SeqCst);
        self.kicker.kick();
    }

    /// Whether [`StopHandle::stop`] was called, or a stop signal came for
    /// a VM that takes them.
    pub fn is_requested(&self) -> bool {
        self.requested.load(Ordering::SeqCst)
            || (self.on_signals.load(Ordering::SeqCst) && crate::stop_signals::received().is_some())
    }

    pub(crate) fn take_signals(&self) {
        self.on_signals.store(true, Ordering::SeqCst);
    }
}

impl std::fmt::Debug for StopHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StopHandle")
            .field("requested", &self.is_requested())
            .finish()
    }
}
