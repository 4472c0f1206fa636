//! Debugging ukvm guests.
//!
//! - A gdb remote stub ([`serve`]): the `gdbstub` crate speaks the
//!   protocol; this crate gives it the guest's registers (in the guest's
//!   mode, with segment and control registers), memory by virtual address
//!   through the guest's page tables, software breakpoints (int3s that stop
//!   for gdb instead of reaching the guest), hardware breakpoints through
//!   KVM's debug registers, watchpoints, single-step, and Ctrl-C.
//! - ELF core files of a crashed guest ([`core`]) that `gdb KERNEL CORE`
//!   opens, created under the sandbox ([`core_file`]).
//!
//! The monitor stays in charge of running the guest: it implements
//! [`Guest`], whose `step` is its own vCPU loop body, and this crate only
//! decides when to stop and what to tell gdb.

pub mod conn;
pub mod core;
pub mod core_file;
mod error;
pub mod regs;
mod session;
mod target;
pub mod watch;

pub use conn::{Conn, GdbAddr, Listener};
pub use error::{Error, Result};
pub use regs::Layout;
pub use session::{attach, serve, Attached, Kick, ThreadSetup};

use kvm_ioctls::VcpuFd;
use vm_memory::GuestMemoryMmap;

/// What one step of the monitor's vCPU loop came to.
pub enum Stepped<D> {
    /// An exit the monitor handled (I/O, an instruction it completed, a
    /// kick): the guest can go on.
    Continue,
    /// `KVM_EXIT_DEBUG`: a single-step, a debug register or an intercepted
    /// int3.
    Debug(kvm_bindings::kvm_debug_exit_arch),
    /// KVM could not emulate an `int3` (what a software KVM does with one at
    /// CPL 0). Not yet completed: gdb's own breakpoints stop here, the
    /// guest's go to [`Guest::complete`].
    Int3,
    /// The run ended.
    Done(D),
}

/// How a run ended, as gdb is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// The guest exited with this status.
    Exited(u8),
    /// The guest crashed (reported as SIGSEGV).
    Crashed,
}

/// The monitor's side of a debug session.
pub trait Guest {
    /// How a run ends (the monitor's result type).
    type Done;
    /// The vCPU.
    fn vcpu(&mut self) -> &mut VcpuFd;
    /// Guest memory.
    fn memory(&self) -> &GuestMemoryMmap;
    /// Runs the vCPU to its next exit and handles it as a run without
    /// debugger does, except that debug exits and `int3` emulation failures
    /// come back as [`Stepped::Debug`] and [`Stepped::Int3`].
    fn step(&mut self) -> Stepped<Self::Done>;
    /// Completes the `int3` a [`Stepped::Int3`] stopped at, as a run
    /// without debugger would.
    fn complete(&mut self) -> Stepped<Self::Done>;
    /// How `done` is reported to gdb.
    fn ending(done: &Self::Done) -> Ending;
    /// The result when gdb kills the run.
    fn killed(&mut self) -> Self::Done;
}
