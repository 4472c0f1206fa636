//! The network ring of Solo5 0.11+ (`hvt_ring.h`, layout in
//! `ukvm_boot::hvt::ring`), served by its own thread as solo5-hvt serves
//! it: the guest posts NET_WRITE and NET_READ entries and kicks port 0x600
//! (an ioeventfd, so no VM exit) when the thread said it would sleep; the
//! thread sends and receives on the TAPs and posts a commit for each read.
//! A guest that takes the ring saves the VM exits of the net hypercalls;
//! one that does not (older Solo5) keeps using them, untouched.
//!
//! Like solo5-hvt, the thread polls the ring for a while before it sleeps
//! on the kick eventfd ([`POLL_ITERS`]).
//!
//! The ring is guest memory, so nothing read from it is trusted: the
//! thread keeps its own `ent_head` and `com_tail` and only ever stores
//! them; it reads the guest's `ent_tail` once per pass and treats a tail
//! more than [`ring::SIZE`] entries ahead as a broken ring (it stops, and
//! the next hypercall ends the guest with the fault); every entry's buffer
//! is checked against guest memory, and a bad one fails that request
//! (`SOLO5_R_EINVAL` in the commit of a read, a write dropped).

use super::net::{self, Nets, Recv, MAX_FRAME};
use std::sync::atomic::{fence, AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use ukvm_boot::hvt::ring::{self, commit, entry};
use ukvm_devices::bus::{self, GuestFault};
use ukvm_sandbox::{seccomp, Fds, SeccompMode, ThreadKind};
use vm_memory::{GuestAddress, GuestMemoryBackend, GuestMemoryMmap};
use vmm_sys_util::eventfd::EventFd;

/// Polls of the ring before sleeping (`HVT_RING_POLL_ITERS`).
pub(crate) const POLL_ITERS: u32 = 4096;

/// `solo5_result_t` values a commit carries.
const R_OK: i32 = 0;
const R_AGAIN: i32 = 1;
const R_EINVAL: i32 = 2;
const R_EUNSPEC: i32 = 3;

/// The ring's thread; stopped and joined when dropped.
pub(crate) struct RingServer {
    stop: Arc<AtomicBool>,
    kick: Arc<EventFd>,
    thread: Option<JoinHandle<()>>,
}

impl RingServer {
    /// Serves the ring at guest-physical `at` with `nets`, woken by
    /// `kick`. A fault it finds goes to `fault`.
    pub(crate) fn start(
        mem: GuestMemoryMmap,
        at: u64,
        nets: Nets,
        kick: Arc<EventFd>,
        fault: Arc<OnceLock<GuestFault>>,
        seccomp: SeccompMode,
    ) -> std::io::Result<RingServer> {
        let stop = Arc::new(AtomicBool::new(false));
        let server = Server {
            ring: Ring::new(mem, at)?,
            nets,
            kick: kick.clone(),
            stop: stop.clone(),
            fault,
            ent_head: 0,
            com_tail: 0,
        };
        // The ring thread reads and writes the TAPs and reads its kick:
        // the I/O thread's filter with those fds, and no KVM fd.
        let fds = Fds {
            taps: server.nets.iter().map(|(_, d)| bus::lock(d).fd()).collect(),
            events: vec![std::os::fd::AsRawFd::as_raw_fd(&*kick)],
            ..Fds::default()
        };
        let (filtered_tx, filtered) = std::sync::mpsc::sync_channel(1);
        let thread = std::thread::Builder::new()
            .name("hvt-net-ring".into())
            .spawn(move || {
                let installed = seccomp::install(ThreadKind::Io, seccomp, &fds);
                let ok = installed.is_ok();
                let _ = filtered_tx.send(installed.map_err(|e| e.to_string()));
                if ok {
                    server.run();
                }
            })?;
        // The guest never runs with an unfiltered thread.
        match filtered.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(std::io::Error::other(e)),
            Err(e) => return Err(std::io::Error::other(e)),
        }
        Ok(RingServer {
            stop,
            kick,
            thread: Some(thread),
        })
    }
}

impl Drop for RingServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.kick.write(1);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The ring in guest memory, reached through its host mapping: the thread
/// polls it thousands of times per wake-up, so each access is one load or
/// store, not a guest-memory lookup.
struct Ring {
    /// Keeps the mapping alive.
    mem: GuestMemoryMmap,
    /// Host address of the ring's first byte.
    base: *mut u8,
}

// SAFETY: `base` points into the mapping `mem` owns (and keeps alive); the
// ring is shared memory by design, every access is a volatile or atomic
// one, and only the ring thread uses this value.
unsafe impl Send for Ring {}

impl Ring {
    /// The ring at guest-physical `at`, which must lie in RAM with
    /// [`ring::BYTES`] after it (the loader checked the placement).
    fn new(mem: GuestMemoryMmap, at: u64) -> std::io::Result<Ring> {
        let slice = mem
            .get_slice(GuestAddress(at), ring::BYTES as usize)
            .map_err(|e| std::io::Error::other(format!("ring at {at:#x}: {e}")))?;
        let base = slice.ptr_guard_mut().as_ptr();
        Ok(Ring { mem, base })
    }

    fn index(&self, offset: u64) -> &AtomicU32 {
        debug_assert!(offset.is_multiple_of(4) && offset < ring::ENTRIES);
        // SAFETY: the ring is 4 KiB-aligned, `offset` is one of the 4-byte
        // aligned index fields below ring::ENTRIES, inside the mapping
        // (Ring::new); AtomicU32 has u32's layout, and the guest's
        // concurrent accesses to the same word are its own atomic ones.
        unsafe { AtomicU32::from_ptr(self.base.add(offset as usize).cast()) }
    }

    fn load(&self, offset: u64) -> u32 {
        self.index(offset).load(Ordering::Acquire)
    }

    fn store(&self, offset: u64, value: u32) {
        self.index(offset).store(value, Ordering::Release);
    }

    fn read<T: Copy>(&self, offset: u64) -> T {
        assert!(offset + std::mem::size_of::<T>() as u64 <= ring::BYTES);
        // SAFETY: in bounds (checked above) of the mapping; the fields read
        // this way (entries) are naturally aligned; volatile, because the
        // guest may write them at any time.
        unsafe { std::ptr::read_volatile(self.base.add(offset as usize).cast()) }
    }

    fn write<T: Copy>(&self, offset: u64, value: T) {
        assert!(offset + std::mem::size_of::<T>() as u64 <= ring::BYTES);
        // SAFETY: as in read(): in bounds, aligned, volatile.
        unsafe { std::ptr::write_volatile(self.base.add(offset as usize).cast(), value) }
    }
}

/// One submission, as read (once) from the ring.
struct Entry {
    op: u32,
    handle: u64,
    data: u64,
    len: u64,
    id: u32,
}

struct Server {
    ring: Ring,
    nets: Nets,
    kick: Arc<EventFd>,
    stop: Arc<AtomicBool>,
    fault: Arc<OnceLock<GuestFault>>,
    /// The host's own indices; the copies in guest memory are only
    /// written.
    ent_head: u32,
    com_tail: u32,
}

impl Server {
    fn run(mut self) {
        while !self.stop.load(Ordering::Relaxed) {
            if !self.wait_for_work() {
                break;
            }
            if let Err(f) = self.serve() {
                let _ = self.fault.set(f);
                break;
            }
        }
    }

    /// Polls, then sleeps on the kick eventfd until the guest posts work.
    /// Returns false when asked to stop.
    fn wait_for_work(&self) -> bool {
        for _ in 0..POLL_ITERS {
            if self.ring.load(ring::ENT_TAIL) != self.ent_head {
                return true;
            }
            std::hint::spin_loop();
        }
        self.ring.store(ring::NEEDS_KICK, 1);
        // Store needs_kick, then load ent_tail: the guest does the
        // reverse, and this full fence keeps each side from missing the
        // other (hvt_mb()).
        fence(Ordering::SeqCst);
        if self.ring.load(ring::ENT_TAIL) == self.ent_head {
            // Blocking read: the guest's kick or Drop's wake-up.
            let _ = self.kick.read();
        }
        self.ring.store(ring::NEEDS_KICK, 0);
        !self.stop.load(Ordering::Relaxed)
    }

    /// Processes every entry posted so far.
    fn serve(&mut self) -> Result<(), GuestFault> {
        let tail = self.ring.load(ring::ENT_TAIL);
        let pending = tail.wrapping_sub(self.ent_head);
        if pending > ring::SIZE {
            return Err(GuestFault {
                what:
                    "network ring: ent_tail runs more than 1024 entries ahead of ent_head, ent_tail",
                addr: u64::from(tail),
                len: 0,
            });
        }
        for _ in 0..pending {
            let e = self.entry(self.ent_head & ring::MASK);
            match e.op {
                ring::OP_NET_WRITE => self.write(&e),
                ring::OP_NET_READ => self.read(&e),
                // Unknown operations are skipped, as solo5-hvt does.
                _ => {}
            }
            self.ent_head = self.ent_head.wrapping_add(1);
            self.ring.store(ring::ENT_HEAD, self.ent_head);
        }
        Ok(())
    }

    fn entry(&self, index: u32) -> Entry {
        let at = ring::ENTRIES + u64::from(index) * ring::ENTRY_SIZE;
        Entry {
            op: self.ring.read(at + entry::OPERATION),
            handle: u64::from(self.ring.read::<u32>(at + entry::HANDLE)),
            data: self.ring.read(at + entry::DATA),
            len: u64::from(self.ring.read::<u32>(at + entry::LEN)),
            id: self.ring.read(at + entry::ID),
        }
    }

    /// Whether `[data, data + len)` is guest RAM.
    fn in_ram(&self, data: u64, len: u64) -> bool {
        data.checked_add(len)
            .is_some_and(|end| end <= self.ring.mem.last_addr().0 + 1)
    }

    /// NET_WRITE: fire and forget, as in solo5-hvt (no commit).
    fn write(&self, e: &Entry) {
        let Some(dev) = net::find(&self.nets, e.handle) else {
            return;
        };
        if e.len == 0 || e.len > MAX_FRAME || !self.in_ram(e.data, e.len) {
            return;
        }
        if let Ok(slice) = self
            .ring
            .mem
            .get_slice(GuestAddress(e.data), e.len as usize)
        {
            // A frame the TAP refuses is lost, as on a wire.
            let _ = bus::lock(dev).send(&slice);
        }
    }

    /// NET_READ: receive into the entry's buffer and post a commit.
    fn read(&mut self, e: &Entry) {
        let (ret, got) = match net::find(&self.nets, e.handle) {
            Some(dev) if self.in_ram(e.data, e.len) => {
                match bus::lock(dev).recv(&self.ring.mem, e.data, e.len) {
                    Recv::Frame(n) => (R_OK, n as u32),
                    Recv::Again => (R_AGAIN, 0),
                    Recv::Failed => (R_EUNSPEC, 0),
                }
            }
            _ => (R_EINVAL, 0),
        };
        let at = ring::COMMITS + u64::from(self.com_tail & ring::MASK) * ring::COMMIT_SIZE;
        self.ring.write(at + commit::ID, e.id);
        self.ring.write(at + commit::RET, ret);
        self.ring.write(at + commit::LEN, got);
        // The commit's fields before the index that publishes them.
        self.com_tail = self.com_tail.wrapping_add(1);
        self.ring.store(ring::COM_TAIL, self.com_tail);
    }
}

/// Port 0x600, the guest's kick. KVM signals the eventfd itself when it
/// accepted the ioeventfd (no VM exit); otherwise the write exits and this
/// device signals it. It also owns the ring's thread, which stops when the
/// port bus goes.
pub(crate) struct KickPort {
    kick: Arc<EventFd>,
    _server: RingServer,
}

impl KickPort {
    /// Starts serving the ring at `at` and returns the port device to put
    /// at [`ring::KICK_PORT`].
    pub(crate) fn start(
        vm: &kvm_ioctls::VmFd,
        mem: GuestMemoryMmap,
        at: u64,
        nets: Nets,
        fault: Arc<OnceLock<GuestFault>>,
        seccomp: SeccompMode,
    ) -> std::io::Result<KickPort> {
        let kick = Arc::new(EventFd::new(0)?);
        // Without an ioeventfd a kick costs a VM exit, but still works.
        let _ = vm.register_ioevent(
            &kick,
            &kvm_ioctls::IoEventAddress::Pio(u64::from(ring::KICK_PORT)),
            kvm_ioctls::NoDatamatch,
        );
        let server = RingServer::start(mem, at, nets, kick.clone(), fault, seccomp)?;
        Ok(KickPort {
            kick,
            _server: server,
        })
    }

    /// The kick's eventfd.
    pub(crate) fn fd(&self) -> std::os::fd::RawFd {
        std::os::fd::AsRawFd::as_raw_fd(&*self.kick)
    }
}

impl bus::BusDevice for KickPort {
    fn read(&mut self, _base: u64, _offset: u64, data: &mut [u8]) {
        data.fill(0xff);
    }

    fn write(
        &mut self,
        _base: u64,
        _offset: u64,
        _data: &[u8],
    ) -> Option<ukvm_devices::bus::Event> {
        let _ = self.kick.write(1);
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vm_memory::Bytes;

    const AT: u64 = 0x10_0000;

    fn server() -> (Server, GuestMemoryMmap) {
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 4 << 20)]).unwrap();
        let server = Server {
            ring: Ring::new(mem.clone(), AT).unwrap(),
            nets: Arc::new([]),
            kick: Arc::new(EventFd::new(0).unwrap()),
            stop: Arc::default(),
            fault: Arc::default(),
            ent_head: 0,
            com_tail: 0,
        };
        (server, mem)
    }

    fn post(mem: &GuestMemoryMmap, index: u64, op: u32, handle: u32, data: u64, len: u32) {
        let e = AT + ring::ENTRIES + index * ring::ENTRY_SIZE;
        mem.write_obj(op, GuestAddress(e)).unwrap();
        mem.write_obj(handle, GuestAddress(e + entry::HANDLE))
            .unwrap();
        mem.write_obj(data, GuestAddress(e + entry::DATA)).unwrap();
        mem.write_obj(len, GuestAddress(e + entry::LEN)).unwrap();
        mem.write_obj(77u32 + index as u32, GuestAddress(e + entry::ID))
            .unwrap();
    }

    fn rd32(mem: &GuestMemoryMmap, at: u64) -> u32 {
        mem.read_obj(GuestAddress(AT + at)).unwrap()
    }

    #[test]
    fn reads_of_unknown_nics_or_bad_buffers_fail_in_their_commit() {
        let (mut s, mem) = server();
        post(&mem, 0, ring::OP_NET_READ, 1, 0x2000, 1514);
        post(&mem, 1, ring::OP_NET_WRITE, 1, u64::MAX - 4, 60);
        post(&mem, 2, 99, 0, 0, 0);
        mem.write_obj(3u32, GuestAddress(AT + ring::ENT_TAIL))
            .unwrap();
        s.serve().unwrap();
        // All three consumed; one commit, for the read, saying EINVAL.
        assert_eq!(rd32(&mem, ring::ENT_HEAD), 3);
        assert_eq!(rd32(&mem, ring::COM_TAIL), 1);
        assert_eq!(rd32(&mem, ring::COMMITS + commit::ID), 77);
        assert_eq!(rd32(&mem, ring::COMMITS + commit::RET), R_EINVAL as u32);
        assert_eq!(rd32(&mem, ring::COMMITS + commit::LEN), 0);
    }

    #[test]
    fn guest_written_indices_are_not_trusted() {
        let (mut s, mem) = server();
        // The guest scribbles over the host's indices: ignored, the host
        // keeps its own and overwrites them.
        mem.write_obj(500u32, GuestAddress(AT + ring::ENT_HEAD))
            .unwrap();
        mem.write_obj(900u32, GuestAddress(AT + ring::COM_TAIL))
            .unwrap();
        post(&mem, 0, ring::OP_NET_READ, 1, 0x2000, 64);
        mem.write_obj(1u32, GuestAddress(AT + ring::ENT_TAIL))
            .unwrap();
        s.serve().unwrap();
        assert_eq!(rd32(&mem, ring::ENT_HEAD), 1);
        assert_eq!(rd32(&mem, ring::COM_TAIL), 1);
        // A tail more than the ring's size ahead is a broken ring: a fault
        // naming it, nothing processed.
        mem.write_obj(1u32 + ring::SIZE + 1, GuestAddress(AT + ring::ENT_TAIL))
            .unwrap();
        let f = s.serve().unwrap_err();
        assert_eq!(f.addr, u64::from(ring::SIZE + 2));
        assert!(f.what.starts_with("network ring: ent_tail"), "{f}");
        assert_eq!(rd32(&mem, ring::ENT_HEAD), 1);
        // A tail behind the head (wrapping) is as broken.
        mem.write_obj(0u32, GuestAddress(AT + ring::ENT_TAIL))
            .unwrap();
        assert!(s.serve().is_err());
    }
}
