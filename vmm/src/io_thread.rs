//! The I/O thread: an event-manager epoll loop that serves device queues,
//! so a queue notification (an ioeventfd) never comes back to the vCPU
//! loop. Started only when the VM has devices.
//!
//! Serving virtio-net's queue kicks inline instead (no ioeventfd: the kick
//! exits to ukvm and the vCPU thread writes the frame to the TAP) measured
//! slower here: scripts/net-bench.sh, 7 rounds, medians, UDP echo 1,581 vs
//! 1,697 pkt/s (64 B), 1,611 vs 1,788 (1400 B), 1,875 vs 2,021 with 16 in
//! flight. An ioeventfd kick returns to the guest at once while this thread
//! sends on the other CPU; inline, the guest waits for the writev (the
//! host's network stack runs inside it). The TAP's receive side needs a
//! thread anyway: the vCPU thread sleeps in KVM_RUN while the guest halts.
//!
//! # Start-up
//! The thread is started as soon as the VM fd exists ([`IoThread::start`])
//! and confines itself at once ([`IoThread::confine`]: Landlock, then its
//! seccomp filter, which pins only the VM fd), while the vCPU thread loads
//! the kernel and sets up the vCPU and the devices on the other CPU. The
//! devices are handed over afterwards ([`IoThread::serve`]); the thread
//! touches nothing a guest controls before it is confined, and the guest's
//! first instruction waits for its confinement
//! ([`IoThread::wait_confined`]). Starting it after the devices instead
//! put its filter (~0.3 ms here) on the boot's critical path.

use crate::error::{Error, Result};
use event_manager::{EventManager, EventOps, EventSet, Events, MutEventSubscriber, SubscriberOps};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;
use ukvm_devices::virtio::VirtioDevice;
use ukvm_sandbox::{seccomp, Fds, Jail, SeccompMode, ThreadKind};
use vmm_sys_util::eventfd::EventFd;

/// Something the I/O thread serves (a device).
pub type Subscriber = Arc<Mutex<dyn MutEventSubscriber + Send>>;

/// Ends the loop when its eventfd is written.
struct Stopper {
    fd: EventFd,
    done: Arc<AtomicBool>,
}

impl MutEventSubscriber for Stopper {
    fn init(&mut self, ops: &mut EventOps) {
        // Without this event the thread could not be stopped; the VM then
        // ends with the process, which is still correct.
        let _ = ops.add(Events::new(&self.fd, EventSet::IN));
    }

    fn process(&mut self, _events: Events, _ops: &mut EventOps) {
        let _ = self.fd.read();
        self.done.store(true, Ordering::Release);
    }
}

/// How the thread confines itself ([`IoThread::confine`]).
#[derive(Debug, Clone)]
pub struct Confinement {
    /// Its seccomp filter's mode.
    pub mode: SeccompMode,
    /// The fds its filter pins calls to: the VM fd, and the devices',
    /// the kick's and its own eventfds, all made before the vCPU (the
    /// I/O thread's allowlist pins nothing to the vCPU fd).
    pub fds: Fds,
    /// Take away filesystem access with Landlock (per thread: a thread
    /// started before the jail does not inherit it).
    pub landlock: bool,
}

type Manager = EventManager<Subscriber>;

/// A running I/O thread.
pub struct IoThread {
    stop: EventFd,
    /// The thread's end of `stop`, until [`IoThread::serve`] hands it over.
    stopper: Option<Stopper>,
    stopper_fd: RawFd,
    /// Has the thread confine itself.
    confine: Option<SyncSender<Confinement>>,
    /// A confinement held back until the jail is entered.
    after_jail: Option<Confinement>,
    /// The thread's answer: confined, and when.
    confined: Receiver<Result<Instant>>,
    /// The answer came, and was yes: when.
    confined_at: Option<Instant>,
    /// Hands the thread its devices.
    serve: Option<SyncSender<Manager>>,
    /// The devices it serves, for [`IoThread::refused`].
    devices: Vec<Arc<Mutex<dyn VirtioDevice>>>,
    handle: Option<JoinHandle<()>>,
}

fn gone() -> Error {
    Error::Device("I/O thread: ended while starting".into())
}

fn io_err(what: &str) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |e| Error::Device(format!("I/O thread: {what}: {e}"))
}

/// The thread: confine, then serve what it is handed until stopped.
fn body(
    confine: Receiver<Confinement>,
    confined: SyncSender<Result<Instant>>,
    serve: Receiver<Manager>,
    done: Arc<AtomicBool>,
) {
    // Dropped without a word: the VM never ran.
    let Ok(how) = confine.recv() else {
        return;
    };
    let result = confine_self(&how);
    let ok = result.is_ok();
    let _ = confined.send(result);
    if !ok {
        return;
    }
    let Ok(mut manager) = serve.recv() else {
        return;
    };
    while !done.load(Ordering::Acquire) {
        if let Err(e) = manager.run() {
            eprintln!("ukvm: warning: I/O thread stopped: {e:?}");
            break;
        }
    }
}

fn confine_self(how: &Confinement) -> Result<Instant> {
    if how.landlock {
        Jail::landlock_thread()?;
    }
    seccomp::install(ThreadKind::Io, how.mode, &how.fds)?;
    Ok(Instant::now())
}

impl IoThread {
    /// Starts a thread that waits to be confined, then to be handed its
    /// devices.
    pub fn start() -> Result<IoThread> {
        let stop = EventFd::new(libc::EFD_NONBLOCK).map_err(io_err("eventfd"))?;
        let done = Arc::new(AtomicBool::new(false));
        let stopper = Stopper {
            fd: stop.try_clone().map_err(io_err("eventfd"))?,
            done: done.clone(),
        };
        let stopper_fd = stopper.fd.as_raw_fd();
        let (confine, confine_rx) = sync_channel(1);
        let (confined_tx, confined) = sync_channel(1);
        let (serve, serve_rx) = sync_channel(1);
        let handle = std::thread::Builder::new()
            .name("ukvm-io".into())
            .spawn(move || body(confine_rx, confined_tx, serve_rx, done))
            .map_err(io_err("spawn"))?;
        Ok(IoThread {
            stop,
            stopper: Some(stopper),
            stopper_fd,
            confine: Some(confine),
            after_jail: None,
            confined,
            confined_at: None,
            serve: Some(serve),
            devices: Vec::new(),
            handle: Some(handle),
        })
    }

    /// The eventfds that stop the thread: the vCPU thread writes one, the
    /// I/O thread reads the other.
    pub fn event_fds(&self) -> [RawFd; 2] {
        [self.stop.as_raw_fd(), self.stopper_fd]
    }

    /// Starts the I/O thread for `machine`'s devices, if it has any, and
    /// has it confine itself at once, while the caller loads the kernel
    /// and sets up the vCPU: its filter pins only fds that exist by now
    /// (the VM's, the kick's, the devices' and its own). With
    /// `--user` the confinement waits for
    /// [`IoThread::confine_after_jail`]: libc changes the user on every
    /// thread (a signal makes each call setresuid), which the filter
    /// refuses.
    pub(crate) fn start_for(
        machine: &dyn crate::machine::Machine,
        cfg: &crate::config::VmConfig,
        vm: &kvm_ioctls::VmFd,
        kicker: &crate::kick::Kicker,
    ) -> Result<Option<IoThread>> {
        if !machine.serves_queues() {
            return Ok(None);
        }
        let mut io = IoThread::start()?;
        let fds = crate::vm_fds::io_thread(vm, kicker, &machine.device_fds(), io.event_fds());
        let how = Confinement {
            mode: cfg.seccomp,
            fds,
            landlock: cfg.jail.landlock,
        };
        if cfg.jail.user.is_some() {
            io.after_jail = Some(how);
        } else {
            io.confine(how)?;
        }
        Ok(Some(io))
    }

    /// Sends the confinement [`IoThread::start_for`] held back, if any.
    pub(crate) fn confine_after_jail(&mut self) -> Result<()> {
        match self.after_jail.take() {
            Some(how) => self.confine(how),
            None => Ok(()),
        }
    }

    /// Has the thread confine itself (`how`) and returns at once: the
    /// filter's compilation and the kernel's preparation of it overlap
    /// the vCPU thread's work. [`IoThread::wait_confined`] waits for it.
    pub fn confine(&mut self, how: Confinement) -> Result<()> {
        let confine = self.confine.take().ok_or_else(gone)?;
        confine.send(how).map_err(|_| gone())
    }

    /// Hands the thread `subscribers` (the devices' queue and backend
    /// events) to serve once it is confined. `devices` are counted by
    /// [`IoThread::refused`].
    pub fn serve(
        &mut self,
        subscribers: Vec<Subscriber>,
        devices: Vec<Arc<Mutex<dyn VirtioDevice>>>,
    ) -> Result<()> {
        let stopper = self.stopper.take().ok_or_else(gone)?;
        let mut manager =
            Manager::new().map_err(|e| Error::Device(format!("I/O thread: epoll: {e:?}")))?;
        for s in subscribers {
            manager.add_subscriber(s);
        }
        manager.add_subscriber(Arc::new(Mutex::new(stopper)));
        self.devices = devices;
        let serve = self.serve.take().ok_or_else(gone)?;
        serve.send(manager).map_err(|_| gone())
    }

    /// Requests and chains the devices refused (see
    /// `VirtioDevice::refused`).
    pub fn refused(&self) -> u64 {
        self.devices
            .iter()
            .map(|d| ukvm_devices::bus::lock(d).refused())
            .sum()
    }

    /// Requests the devices failed because of their host backend (see
    /// `VirtioDevice::backend_errors`).
    pub fn backend_errors(&self) -> u64 {
        self.devices
            .iter()
            .map(|d| ukvm_devices::bus::lock(d).backend_errors())
            .sum()
    }

    /// Waits until the confinement asked for by [`IoThread::confine`] is
    /// in place, so that the guest never runs with an unfiltered thread;
    /// returns when it was put in place.
    pub fn wait_confined(&mut self) -> Result<Instant> {
        if let Some(at) = self.confined_at {
            return Ok(at);
        }
        if self.confine.is_some() {
            // Never asked to: waiting would never end.
            return Err(Error::Device("I/O thread: never confined".into()));
        }
        let at = self.confined.recv().map_err(|_| gone())??;
        self.confined_at = Some(at);
        Ok(at)
    }

    /// Finishes the request in progress, then stops and joins the thread.
    pub fn stop(&mut self) {
        // A thread still waiting to be confined or served ends when its
        // channel closes.
        self.confine = None;
        self.serve = None;
        if let Some(handle) = self.handle.take() {
            // If the write fails the thread is already gone or never will
            // read it; joining would hang, so leave it to process exit.
            if self.stop.write(1).is_ok() {
                let _ = handle.join();
            }
        }
    }
}

impl Drop for IoThread {
    fn drop(&mut self) {
        self.stop();
    }
}
