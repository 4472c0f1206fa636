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

use crate::error::{Error, Result};
use event_manager::{EventManager, EventOps, EventSet, Events, MutEventSubscriber, SubscriberOps};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use ukvm_devices::virtio::VirtioDevice;
use ukvm_sandbox::{seccomp, Fds, SeccompMode, ThreadKind};
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

/// A running I/O thread.
pub struct IoThread {
    stop: EventFd,
    /// The fd of the [`Stopper`]'s copy of `stop`, which the thread reads.
    stopper_fd: std::os::fd::RawFd,
    /// Lets the thread start serving, under its filter ([`IoThread::serve`]).
    go: Option<SyncSender<(SeccompMode, Fds)>>,
    /// The thread's answer: its filter is in place.
    filtered: Receiver<Result<()>>,
    /// The answer came, and was yes.
    filter_confirmed: bool,
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

impl IoThread {
    /// Registers `subscribers` and starts a thread that will serve them
    /// once [`IoThread::serve`] says so.
    pub fn spawn(subscribers: Vec<Subscriber>) -> Result<IoThread> {
        let stop = EventFd::new(libc::EFD_NONBLOCK).map_err(io_err("eventfd"))?;
        let done = Arc::new(AtomicBool::new(false));
        let stopper = Stopper {
            fd: stop.try_clone().map_err(io_err("eventfd"))?,
            done: done.clone(),
        };
        let stopper_fd = stopper.fd.as_raw_fd();
        let mut manager = EventManager::<Subscriber>::new()
            .map_err(|e| Error::Device(format!("I/O thread: epoll: {e:?}")))?;
        for s in subscribers {
            manager.add_subscriber(s);
        }
        manager.add_subscriber(Arc::new(Mutex::new(stopper)));
        let (go, go_rx) = sync_channel::<(SeccompMode, Fds)>(1);
        let (filtered_tx, filtered) = sync_channel(1);
        let handle = std::thread::Builder::new()
            .name("ukvm-io".into())
            .spawn(move || {
                // Dropped without a word: the VM never ran.
                let Ok((mode, fds)) = go_rx.recv() else {
                    return;
                };
                let installed = seccomp::install(ThreadKind::Io, mode, &fds).map_err(Error::from);
                let ok = installed.is_ok();
                let _ = filtered_tx.send(installed);
                if !ok {
                    return;
                }
                while !done.load(Ordering::Acquire) {
                    if let Err(e) = manager.run() {
                        eprintln!("ukvm: warning: I/O thread stopped: {e:?}");
                        break;
                    }
                }
            })
            .map_err(io_err("spawn"))?;
        Ok(IoThread {
            stop,
            stopper_fd,
            go: Some(go),
            filtered,
            filter_confirmed: false,
            devices: Vec::new(),
            handle: Some(handle),
        })
    }

    /// The eventfds that stop the thread: the vCPU thread writes one, the
    /// I/O thread reads the other.
    pub fn event_fds(&self) -> [std::os::fd::RawFd; 2] {
        [self.stop.as_raw_fd(), self.stopper_fd]
    }

    /// Has [`IoThread::refused`] count what `devices` refused.
    pub fn count_refusals_of(&mut self, devices: Vec<Arc<Mutex<dyn VirtioDevice>>>) {
        self.devices = devices;
    }

    /// Requests and chains the devices refused (see
    /// `VirtioDevice::refused`).
    pub fn refused(&self) -> u64 {
        self.devices
            .iter()
            .map(|d| ukvm_devices::bus::lock(d).refused())
            .sum()
    }

    /// Has the thread install its seccomp filter (`mode`, ioctls pinned
    /// to `fds`) and then serve, and returns at once: the filter's
    /// compilation and the kernel's JIT of it (~0.3 ms here) overlap the
    /// vCPU thread's own. [`IoThread::wait_filtered`] waits for it. It is
    /// the I/O thread's own filter because the thread was started before
    /// the vCPU thread's.
    pub fn serve(&mut self, mode: SeccompMode, fds: Fds) -> Result<()> {
        let go = self.go.take().ok_or_else(gone)?;
        go.send((mode, fds)).map_err(|_| gone())
    }

    /// Waits until the filter asked for by [`IoThread::serve`] is in
    /// place, so that the guest never runs with an unfiltered thread.
    pub fn wait_filtered(&mut self) -> Result<()> {
        if self.filter_confirmed {
            return Ok(());
        }
        self.filtered.recv().map_err(|_| gone())??;
        self.filter_confirmed = true;
        Ok(())
    }

    /// Finishes the request in progress, then stops and joins the thread.
    pub fn stop(&mut self) {
        // A thread still waiting for `serve` ends when its channel closes.
        self.go = None;
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
