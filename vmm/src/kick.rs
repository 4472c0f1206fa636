//! Making the vCPU thread leave `KVM_RUN` from another thread.
//!
//! A device thread that raised an interrupt, a stop request, a debugger's
//! Ctrl-C: each needs the vCPU thread back in ukvm promptly, whether it is
//! inside `KVM_RUN` (the guest spins, or KVM sleeps for it in `hlt`), between
//! two `KVM_RUN`s handling an exit, or sleeping in ukvm's own `hlt` wait.
//! [`Kicker::kick`] covers all three:
//!
//! - it sets `kvm_run.immediate_exit`, so a `KVM_RUN` entered after the kick
//!   returns `EINTR` at once: a kick that lands while the vCPU thread is
//!   handling an exit is not lost;
//! - it sends [`kick_signal`] to the vCPU thread, which makes a `KVM_RUN`
//!   in progress return `EINTR`. The handler sets the thread's own
//!   `immediate_exit` too, so a signal from elsewhere (the PIT's POSIX
//!   timer, see `interrupts::pit_timer`) that lands between two `KVM_RUN`s
//!   is not lost either. It is installed with `SA_RESTART`, so the other
//!   system calls of the vCPU thread (console writes) do not see it;
//! - it writes an eventfd that the vCPU thread's sleep (ukvm's `hlt`) polls.
//!
//! A signal is the only way to interrupt a running `KVM_RUN`; KVM checks
//! `immediate_exit` only on entry. Measured here (a guest spinning in ring
//! 0, `StopHandle::stop` to `Vm::run` returning, 16 samples on a loaded
//! host): 88-133 us typically, of which the run's own wind-down is part;
//! one in eight took ~16 ms, the vCPU thread waiting for a CPU. A vCPU
//! asleep in ukvm's `hlt` gets the eventfd alone (see `Kicker::sleeping`). The vCPU thread clears the flag with
//! [`Armed::clear`] after each `EINTR` and then looks at what it was kicked
//! for; the kicker records that before kicking, so nothing is missed.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, Once};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

/// The signal that interrupts `KVM_RUN`: `SIGRTMIN`. ukvm installs a no-op
/// handler for it the first time a VM is created; embedders must leave it
/// alone.
pub fn kick_signal() -> libc::c_int {
    libc::SIGRTMIN()
}

thread_local! {
    /// `kvm_run.immediate_exit` of the vCPU this thread runs, while armed.
    /// Const-initialised, so the signal handler's access allocates nothing.
    static IMMEDIATE_EXIT: Cell<*const AtomicU8> = const { Cell::new(std::ptr::null()) };
}

extern "C" fn on_kick(_: libc::c_int) {
    interrupt_this_thread();
}

/// Sets `immediate_exit` of the vCPU the calling thread runs, if it runs
/// one: from a signal handler, so that a `KVM_RUN` entered after the signal
/// returns at once. Async-signal-safe.
pub(crate) fn interrupt_this_thread() {
    let flag = IMMEDIATE_EXIT.with(Cell::get);
    if !flag.is_null() {
        // SAFETY: set by `Kicker::arm` for this thread and cleared before
        // the vCPU can go away; an atomic store is async-signal-safe.
        unsafe { (*flag).store(1, Ordering::SeqCst) };
    }
}

/// Installs `handler` for `signal` with `SA_RESTART` and an empty mask.
/// The handler must be async-signal-safe.
pub(crate) fn install_handler_for(
    signal: libc::c_int,
    handler: extern "C" fn(libc::c_int),
) -> std::io::Result<()> {
    // SAFETY: a zeroed sigaction is valid; we fill the handler, an empty
    // mask and the flags; the caller vouches for the handler.
    unsafe {
        let mut act: libc::sigaction = std::mem::zeroed();
        act.sa_sigaction = handler as usize;
        act.sa_flags = libc::SA_RESTART;
        libc::sigemptyset(&mut act.sa_mask);
        if libc::sigaction(signal, &act, std::ptr::null_mut()) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Installs the no-op handler once per process: a signal disposition is
/// process-wide by nature.
fn install_handler() -> std::io::Result<()> {
    static ONCE: Once = Once::new();
    let mut result = Ok(());
    ONCE.call_once(|| result = install_handler_for(kick_signal(), on_kick));
    result
}

/// The vCPU thread while it runs the guest.
#[derive(Clone, Copy)]
struct Target {
    thread: libc::pthread_t,
    /// `kvm_run.immediate_exit` of the vCPU being run.
    immediate_exit: *const AtomicU8,
}

// SAFETY: the pointer is only dereferenced under `Shared::target`'s lock,
// and only while the vCPU thread has it registered, that is while its
// `Armed` guard (which borrows the vCPU, keeping `kvm_run` mapped) lives.
unsafe impl Send for Target {}

struct Shared {
    target: Mutex<Option<Target>>,
    wake: EventFd,
    /// The vCPU thread sleeps on `wake` (not in `KVM_RUN`): the eventfd is
    /// enough, no signal needed.
    sleeping: AtomicBool,
}

/// Kicks the vCPU thread of one VM. Cheap to clone; `Send + Sync`.
#[derive(Clone)]
pub struct Kicker(Arc<Shared>);

impl Kicker {
    /// A kicker for a VM whose vCPU does not run yet. Installs the signal
    /// handler on first use.
    pub fn new() -> std::io::Result<Kicker> {
        install_handler()?;
        Ok(Kicker(Arc::new(Shared {
            target: Mutex::new(None),
            wake: EventFd::new(EFD_NONBLOCK)?,
            sleeping: AtomicBool::new(false),
        })))
    }

    /// Makes the vCPU thread return from `KVM_RUN` (or from its `hlt` sleep)
    /// as soon as possible. Record why before calling this.
    pub fn kick(&self) {
        let target = *ukvm_devices::bus::lock(&self.0.target);
        let mine = IMMEDIATE_EXIT.with(Cell::get);
        if target.is_some_and(|t| std::ptr::eq(t.immediate_exit, mine)) {
            // This VM's vCPU thread itself (a device it runs raised a
            // line): it looks for work before it enters the guest again.
            return;
        }
        // A full eventfd counter only means a wake-up is already pending.
        let _ = self.0.wake.write(1);
        if self.0.sleeping.load(Ordering::SeqCst) {
            // It polls the eventfd and looks at why it woke before it runs
            // the guest again: a signal would only add its delivery.
            return;
        }
        if let Some(t) = target {
            // SAFETY: registered targets point into a live kvm_run mapping
            // (see `Target`); AtomicU8 has u8's layout.
            unsafe { (*t.immediate_exit).store(1, Ordering::SeqCst) };
            // SAFETY: the thread is alive while registered (it unregisters
            // before leaving `Vm::run`). ESRCH cannot happen then; any error
            // leaves immediate_exit to catch the next entry.
            unsafe { libc::pthread_kill(t.thread, kick_signal()) };
        }
    }

    /// The eventfd a sleeping vCPU thread polls; [`Kicker::kick`] writes it.
    pub fn wake_fd(&self) -> &EventFd {
        &self.0.wake
    }

    /// Marks the vCPU thread as sleeping on [`Kicker::wake_fd`] (ukvm's
    /// `hlt`) until the guard drops: kicks then only write the eventfd.
    /// Take it before draining the eventfd and checking for work.
    pub fn sleeping(&self) -> Sleeping<'_> {
        self.0.sleeping.store(true, Ordering::SeqCst);
        Sleeping(self)
    }

    /// Registers the calling thread as the one running `vcpu` until the
    /// returned guard drops.
    ///
    /// # Safety
    /// `vcpu` must outlive the guard (its `kvm_run` mapping is written by
    /// kicks until then). The guard does not borrow it, so that the vCPU
    /// thread can keep running the vCPU.
    pub unsafe fn arm(&self, vcpu: &mut kvm_ioctls::VcpuFd) -> Armed {
        let run = vcpu.get_kvm_run();
        let immediate_exit = std::ptr::addr_of_mut!(run.immediate_exit) as *const AtomicU8;
        // SAFETY: pthread_self has no preconditions.
        let thread = unsafe { libc::pthread_self() };
        *ukvm_devices::bus::lock(&self.0.target) = Some(Target {
            thread,
            immediate_exit,
        });
        IMMEDIATE_EXIT.with(|f| f.set(immediate_exit));
        Armed {
            kicker: self.clone(),
            immediate_exit,
        }
    }
}

/// The vCPU thread sleeps on the wake eventfd; see [`Kicker::sleeping`].
pub struct Sleeping<'a>(&'a Kicker);

impl Drop for Sleeping<'_> {
    fn drop(&mut self) {
        self.0 .0.sleeping.store(false, Ordering::SeqCst);
    }
}

/// The vCPU thread's registration; unregisters on drop.
pub struct Armed {
    kicker: Kicker,
    immediate_exit: *const AtomicU8,
}

impl Armed {
    /// Clears `immediate_exit` after `KVM_RUN` returned `EINTR`. Check what
    /// the kick was for afterwards: a kick that comes later sets it again.
    pub fn clear(&self) {
        // SAFETY: `arm`'s contract keeps the vCPU and its kvm_run alive.
        unsafe { (*self.immediate_exit).store(0, Ordering::SeqCst) };
    }
}

impl Drop for Armed {
    fn drop(&mut self) {
        *ukvm_devices::bus::lock(&self.kicker.0.target) = None;
        IMMEDIATE_EXIT.with(|f| f.set(std::ptr::null()));
        self.clear();
    }
}
