//! SIGTERM and SIGINT in the `ukvm` command: stop the guest cleanly (serial
//! output flushed, `--timings` written) and exit with 128 + the signal's
//! number, as a shell reports a process the signal ended (143 for SIGTERM,
//! 130 for SIGINT). Container engines send SIGTERM to stop a container.
//!
//! The signals are blocked in every thread from the start of `main` (the
//! mask is inherited by the threads the VM creates later) and taken on the
//! vCPU thread while it runs the guest (`ukvm::stop_signals`): no thread
//! and no seccomp filter of their own. A signal that arrives before the
//! run stays pending and stops the guest as the run starts.

use ukvm::stop_signals::StopSignals;
use ukvm::vm::Vm;

/// The signals that stop the guest.
const STOP_SIGNALS: [libc::c_int; 2] = [libc::SIGTERM, libc::SIGINT];

/// The blocked stop signals, until [`Blocked::start`] hands them to a VM;
/// `None` if their handler could not be installed (they then keep their
/// default action: the process ends).
pub struct Blocked(Option<StopSignals>);

/// Blocks the stop signals in the calling thread and in every thread it
/// creates from now on. Call first thing in `main`.
pub fn block() -> Blocked {
    Blocked(StopSignals::block(&STOP_SIGNALS).ok())
}

/// Which stop signal arrived, if any.
#[derive(Clone, Copy)]
pub struct Received;

impl Received {
    /// The signal's number, or None.
    pub fn get(&self) -> Option<i32> {
        ukvm::stop_signals::received()
    }

    /// The process exit status for a stop by signal: 128 + its number.
    pub fn exit_status(&self) -> Option<u8> {
        self.get().map(|s| (128 + s) as u8)
    }
}

impl Blocked {
    /// Has `vm` stop on the first stop signal. Later ones change nothing:
    /// the guest is already stopping (SIGKILL still ends ukvm at once).
    pub fn start(self, vm: &mut Vm) -> Received {
        if let Some(signals) = self.0 {
            vm.stop_on_signals(signals);
        }
        Received
    }
}
