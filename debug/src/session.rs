//! Running the guest under gdb: the gdbstub event loop, resuming and
//! stepping the vCPU until something gdb must hear about, and Ctrl-C.

use crate::conn::Conn;
use crate::regs::Layout;
use crate::target::{Resume, Session};
use crate::watch;
use crate::{Ending, Guest, Stepped};
use gdbstub::common::Signal;
use gdbstub::conn::ConnectionExt;
use gdbstub::stub::run_blocking::{BlockingEventLoop, Event, WaitForStopReasonError};
use gdbstub::stub::{DisconnectReason, GdbStub, SingleThreadStopReason};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

type StopReason = SingleThreadStopReason<u64>;

/// DR6.BS: the debug exception came from single-stepping.
const DR6_BS: u64 = 1 << 14;

/// What ended one resume.
enum Stop {
    /// Tell gdb.
    Reason(StopReason),
    /// gdb sent something (Ctrl-C) while the guest ran.
    Interrupted,
}

/// Watches the gdb socket while the guest runs and kicks the vCPU when gdb
/// sends something (Ctrl-C): the vCPU thread is in `KVM_RUN` then, and
/// cannot read the socket itself.
pub(crate) struct Watcher {
    shared: Arc<(Mutex<WatchState>, Condvar)>,
    pending: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

#[derive(Default)]
struct WatchState {
    running: bool,
    quit: bool,
}

impl Watcher {
    fn start(fd: RawFd, kick: Kick, setup: ThreadSetup) -> crate::Result<Watcher> {
        let shared = Arc::new((Mutex::new(WatchState::default()), Condvar::new()));
        let pending = Arc::new(AtomicBool::new(false));
        let (s, p) = (shared.clone(), pending.clone());
        let thread = std::thread::Builder::new()
            .name("ukvm-gdb-irq".into())
            .spawn(move || {
                if setup() {
                    watch_loop(fd, &s, &p, &*kick)
                }
            })
            .map_err(crate::Error::Thread)?;
        Ok(Watcher {
            shared,
            pending,
            thread: Some(thread),
        })
    }

    fn set_running(&self, running: bool) {
        let (lock, cv) = &*self.shared;
        let mut st = lock.lock().unwrap_or_else(|e| e.into_inner());
        if running {
            self.pending.store(false, Ordering::SeqCst);
        }
        st.running = running;
        cv.notify_all();
    }

    /// Whether gdb sent something since the guest was resumed.
    fn pending(&self) -> bool {
        self.pending.load(Ordering::Relaxed)
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        {
            let (lock, cv) = &*self.shared;
            let mut st = lock.lock().unwrap_or_else(|e| e.into_inner());
            st.quit = true;
            cv.notify_all();
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn watch_loop(
    fd: RawFd,
    shared: &(Mutex<WatchState>, Condvar),
    pending: &AtomicBool,
    kick: &(dyn Fn() + Send + Sync),
) {
    let (lock, cv) = shared;
    loop {
        {
            let mut st = lock.lock().unwrap_or_else(|e| e.into_inner());
            while !st.running && !st.quit {
                st = cv.wait(st).unwrap_or_else(|e| e.into_inner());
            }
            if st.quit {
                return;
            }
        }
        let mut pfd = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        let timeout = libc::timespec {
            tv_sec: 0,
            tv_nsec: 50_000_000,
        };
        // SAFETY: one valid pollfd; the fd outlives this thread (the
        // session joins it before the connection drops). The timeout bounds
        // how long a stop or quit goes unnoticed.
        let n = unsafe { libc::ppoll(&mut pfd, 1, &timeout, std::ptr::null()) };
        if n <= 0 {
            continue;
        }
        let mut st = lock.lock().unwrap_or_else(|e| e.into_inner());
        // Kick only a guest that still runs: a kick while the vCPU thread
        // talks to gdb would end its next run for nothing.
        if st.running && !pending.load(Ordering::SeqCst) {
            pending.store(true, Ordering::SeqCst);
            kick();
        }
        // The data stays unread until the vCPU thread reads it: wait for
        // the stop instead of polling a readable socket in a loop.
        while st.running && !st.quit {
            st = cv.wait(st).unwrap_or_else(|e| e.into_inner());
        }
    }
}

impl<G: Guest> Session<'_, G> {
    /// Completes I/O KVM left pending at the last exit (an `in`'s value in
    /// RAX, RIP past the instruction): a `KVM_RUN` with `immediate_exit`
    /// does that and returns without entering the guest. Then gdb sees the
    /// state the guest would have.
    fn settle(&mut self) {
        let vcpu = self.guest.vcpu();
        vcpu.get_kvm_run().immediate_exit = 1;
        let _ = vcpu.run();
        vcpu.get_kvm_run().immediate_exit = 0;
        self.invalidate();
    }

    fn stop_for(&mut self, reason: StopReason) -> Stop {
        self.settle();
        Stop::Reason(reason)
    }

    /// Runs the guest until something gdb must hear about.
    fn run_until_stop(&mut self) -> Stop {
        if self.done.is_some() {
            // The guest crashed and gdb saw it; continuing ends the run.
            return Stop::Reason(StopReason::Terminated(Signal::SIGSEGV));
        }
        self.invalidate();
        let stepping = self.resume == Resume::Step || !self.watch.is_empty();
        if let Err(e) = self.apply_debug(stepping) {
            eprintln!("ukvm: gdb: KVM_SET_GUEST_DEBUG failed: {e}");
            return Stop::Reason(StopReason::Signal(Signal::SIGABRT));
        }
        loop {
            // Before a step: where we are and what the instruction touches.
            let before = if stepping { self.before_step() } else { None };
            let mut stepped = self.guest.step();
            if matches!(stepped, Stepped::Int3) {
                match self.pc() {
                    Some(pc) if self.sw.contains_key(&pc) => {
                        return self.stop_for(StopReason::SwBreak(()));
                    }
                    // The guest's own int3: complete it as without gdb.
                    _ => {
                        self.invalidate();
                        stepped = self.guest.complete();
                    }
                }
            }
            match stepped {
                Stepped::Continue | Stepped::Int3 => {
                    if self.watcher.as_ref().is_some_and(Watcher::pending) {
                        self.settle();
                        return Stop::Interrupted;
                    }
                    let Some((rip, accesses)) = before else {
                        continue;
                    };
                    // An exit ukvm handled (I/O, a completed instruction)
                    // may have ended the step without a debug exit.
                    self.settle();
                    match self.state() {
                        Ok(st) if st.regs.rip != rip => {
                            if let Some(stop) = self.after_step(&accesses) {
                                return stop;
                            }
                        }
                        _ => {}
                    }
                }
                Stepped::Debug(arch) => {
                    self.invalidate();
                    if arch.exception == 3 {
                        return self.stop_for(StopReason::SwBreak(()));
                    }
                    if self.hw_hit(arch.dr6) {
                        return self.stop_for(StopReason::HwBreak(()));
                    }
                    if arch.dr6 & DR6_BS != 0 && stepping {
                        let accesses = before.map(|b| b.1).unwrap_or_default();
                        if let Some(stop) = self.after_step(&accesses) {
                            return stop;
                        }
                        continue;
                    }
                    return self.stop_for(StopReason::Signal(Signal::SIGTRAP));
                }
                Stepped::Done(done) => {
                    let ending = G::ending(&done);
                    self.done = Some(done);
                    return Stop::Reason(match ending {
                        Ending::Exited(code) => StopReason::Exited(code),
                        Ending::Crashed => StopReason::Signal(Signal::SIGSEGV),
                    });
                }
            }
        }
    }

    /// RIP and the memory accesses of the instruction about to run.
    fn before_step(&mut self) -> Option<(u64, Vec<watch::Access>)> {
        let st = self.state().ok()?;
        if self.watch.is_empty() {
            return Some((st.regs.rip, Vec::new()));
        }
        let pc = self.pc()?;
        let mut bytes = [0u8; ukvm_emulator::MAX_INSN_LEN];
        // An instruction near the end of a mapping: decode what is there.
        let mut n = bytes.len();
        while n > 0 && !self.read_linear(pc, &mut bytes[..n]) {
            n -= 1;
        }
        Some((st.regs.rip, watch::accesses(&st, &bytes[..n])))
    }

    /// After one instruction: a watchpoint hit, or the end of a `stepi`.
    fn after_step(&mut self, accesses: &[watch::Access]) -> Option<Stop> {
        if let Some((w, addr)) = watch::hit(&self.watch, accesses) {
            let kind = match w.kind {
                watch::Kind::Write => gdbstub::target::ext::breakpoints::WatchKind::Write,
                watch::Kind::Read => gdbstub::target::ext::breakpoints::WatchKind::Read,
                watch::Kind::Access => gdbstub::target::ext::breakpoints::WatchKind::ReadWrite,
            };
            return Some(self.stop_for(StopReason::Watch {
                tid: (),
                kind,
                addr,
            }));
        }
        if self.resume == Resume::Step {
            return Some(self.stop_for(StopReason::DoneStep));
        }
        self.invalidate();
        None
    }
}

struct EventLoop<'g, G>(std::marker::PhantomData<&'g mut G>);

impl<'g, G: Guest> BlockingEventLoop for EventLoop<'g, G> {
    type Target = Session<'g, G>;
    type Connection = Conn;
    type StopReason = StopReason;

    fn wait_for_stop_reason(
        run: &mut Session<'g, G>,
        conn: &mut Conn,
    ) -> Result<Event<StopReason>, WaitForStopReasonError<crate::Error, std::io::Error>> {
        if let Some(w) = &run.watcher {
            w.set_running(true);
        }
        let stop = run.run_until_stop();
        if let Some(w) = &run.watcher {
            w.set_running(false);
        }
        match stop {
            Stop::Reason(r) => Ok(Event::TargetStopped(r)),
            Stop::Interrupted => conn
                .read()
                .map(Event::IncomingData)
                .map_err(WaitForStopReasonError::Connection),
        }
    }

    fn on_interrupt(_run: &mut Session<'g, G>) -> Result<Option<StopReason>, crate::Error> {
        Ok(Some(StopReason::Signal(Signal::SIGINT)))
    }
}

/// Makes the vCPU thread leave `KVM_RUN` (called from another thread).
pub type Kick = Arc<dyn Fn() + Send + Sync>;

/// Runs first on the Ctrl-C thread (a system call filter, say); returns
/// false if the thread must not go on.
pub type ThreadSetup = Box<dyn FnOnce() -> bool + Send>;

/// gdb's connection with its Ctrl-C thread running: everything a session
/// needs that makes system calls a sandboxed vCPU thread may not (threads).
pub struct Attached {
    conn: Conn,
    watcher: Watcher,
}

/// Starts the thread that turns gdb's Ctrl-C into `kick`; it runs
/// `setup` first.
pub fn attach(conn: Conn, kick: Kick, setup: ThreadSetup) -> crate::Result<Attached> {
    let watcher = Watcher::start(conn.as_raw_fd(), kick, setup)?;
    Ok(Attached { conn, watcher })
}

/// Serves gdb until the run ends, gdb kills it, or gdb goes away; in the
/// last case the guest runs on without a debugger. Returns how the run
/// ended.
pub fn serve<G: Guest>(
    guest: &mut G,
    attached: Attached,
    layout: Layout,
) -> crate::Result<G::Done> {
    let Attached { conn, watcher } = attached;
    let mut session = Session::new(guest, layout);
    session.watcher = Some(watcher);
    let result = GdbStub::new(conn).run_blocking::<EventLoop<'_, G>>(&mut session);
    // The watcher polls the connection's fd: it goes first.
    session.watcher = None;
    session.release();
    if let Some(done) = session.done.take() {
        return Ok(done);
    }
    match result {
        Ok(DisconnectReason::Kill) => return Ok(session.guest.killed()),
        Ok(_) => eprintln!("ukvm: gdb detached; the guest runs on"),
        Err(e) => eprintln!("ukvm: gdb connection lost ({e}); the guest runs on"),
    }
    Ok(run_free(session.guest))
}

/// Runs the guest to its end without a debugger (after gdb detached).
fn run_free<G: Guest>(guest: &mut G) -> G::Done {
    loop {
        match guest.step() {
            Stepped::Done(done) => return done,
            Stepped::Int3 => {
                if let Stepped::Done(done) = guest.complete() {
                    return done;
                }
            }
            Stepped::Continue | Stepped::Debug(_) => {}
        }
    }
}
