//! The hvt hypercall device: port `0x500 + N` takes, through a 32-bit
//! `outl`, the guest physical address of call N's argument structure
//! (`hvt_abi.h`). Every structure and buffer address is checked against
//! guest memory before use; a bad one ends the guest with an error naming
//! it (`Event::GuestFault`). A bad handle, offset or length is the
//! guest's problem: the call fails with the ABI's error code.

use super::net::{self, Nets, Recv, MAX_FRAME};
use std::os::unix::io::{AsRawFd, RawFd};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use ukvm_boot::hvt::{call, HYPERCALL_MAX};
use ukvm_devices::bus::{self, le_value, BusDevice, Event, GuestFault};
use ukvm_devices::serial::Serial;
use ukvm_virtio_blk::{Disk, SECTOR_SIZE};
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap};
use vmm_sys_util::eventfd::EventFd;

/// `solo5_result_t` values.
const R_OK: u32 = 0;
const R_AGAIN: u32 = 1;
const R_EINVAL: u32 = 2;
const R_EUNSPEC: u32 = 3;
/// `HVT_HALT_COOKIE_MAX`: bytes the halt cookie must make readable.
const HALT_COOKIE_MAX: u64 = 512;
/// A block device attached to a manifest entry.
pub(crate) struct BlockDev {
    disk: Disk,
}

impl BlockDev {
    pub(crate) fn new(disk: Disk) -> Self {
        BlockDev { disk }
    }

    /// The image's fd, for the seccomp filter.
    pub(crate) fn fd(&self) -> Option<std::os::fd::RawFd> {
        self.disk.backend.fd()
    }

    fn capacity(&self) -> u64 {
        self.disk.sectors * SECTOR_SIZE
    }
}

/// The hypercall ports and the state the calls act on.
pub(crate) struct Hypercalls {
    mem: GuestMemoryMmap,
    mem_end: u64,
    serial: Arc<Mutex<Serial>>,
    blocks: Vec<(u64, BlockDev)>,
    nets: Nets,
    /// The NICs' fds by handle, for the poll hypercall.
    poll_fds: Vec<(u64, RawFd)>,
    /// A fault the network ring thread found; the next hypercall ends the
    /// guest with it.
    ring_fault: Arc<OnceLock<GuestFault>>,
    /// The vCPU kick's eventfd: the poll hypercall also waits on it, so a
    /// stop (SIGTERM) or a gdb Ctrl-C that lands just before the wait
    /// does not sit out the guest's timeout.
    wake: Option<EventFd>,
}

type CallResult = Result<(), GuestFault>;

fn fault(what: &'static str, addr: u64, len: u64) -> GuestFault {
    GuestFault { what, addr, len }
}

impl Hypercalls {
    pub(crate) fn new(
        mem: GuestMemoryMmap,
        serial: Arc<Mutex<Serial>>,
        blocks: Vec<(u64, BlockDev)>,
        nets: Nets,
        ring_fault: Arc<OnceLock<GuestFault>>,
    ) -> Self {
        let mem_end = mem.last_addr().0 + 1;
        let poll_fds = nets.iter().map(|(h, d)| (*h, bus::lock(d).fd())).collect();
        Hypercalls {
            mem,
            mem_end,
            serial,
            blocks,
            nets,
            poll_fds,
            ring_fault,
            wake: None,
        }
    }

    /// Makes the poll hypercall return early when `wake` is written (the
    /// vCPU kick's eventfd; see `crate::kick`).
    pub(crate) fn wake_on(mut self, wake: EventFd) -> Self {
        self.wake = Some(wake);
        self
    }

    /// Checks that `[addr, addr + len)` is guest RAM.
    fn check(&self, what: &'static str, addr: u64, len: u64) -> CallResult {
        match addr.checked_add(len) {
            Some(end) if end <= self.mem_end => Ok(()),
            _ => Err(fault(what, addr, len)),
        }
    }

    fn read_u64(&self, at: u64) -> u64 {
        // Callers checked the structure's range first.
        self.mem.read_obj(GuestAddress(at)).unwrap_or(0)
    }

    fn write_u64(&self, at: u64, value: u64) {
        let _ = self.mem.write_obj(value, GuestAddress(at));
    }

    fn write_u32(&self, at: u64, value: u32) {
        let _ = self.mem.write_obj(value, GuestAddress(at));
    }

    fn dispatch(&mut self, nr: u16, gpa: u64) -> Result<Option<Event>, GuestFault> {
        match nr {
            call::WALLTIME => self.walltime(gpa),
            call::PUTS => self.puts(gpa),
            call::POLL => self.poll(gpa),
            call::BLOCK_WRITE => self.block_io(gpa, true),
            call::BLOCK_READ => self.block_io(gpa, false),
            call::NET_WRITE => self.net_write(gpa),
            call::NET_READ => self.net_read(gpa),
            call::HALT => return self.halt(gpa).map(Some),
            _ => Err(fault("unknown hypercall number", u64::from(nr), 0)),
        }
        .map(|()| None)
    }

    /// `struct hvt_hc_walltime { u64 nsecs; }`
    fn walltime(&mut self, gpa: u64) -> CallResult {
        self.check("walltime argument", gpa, 8)?;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        self.write_u64(gpa, now.as_nanos() as u64);
        Ok(())
    }

    /// `struct hvt_hc_puts { u64 data; u64 len; }`
    fn puts(&mut self, gpa: u64) -> CallResult {
        self.check("puts argument", gpa, 16)?;
        let (data, len) = (self.read_u64(gpa), self.read_u64(gpa + 8));
        self.check("puts data", data, len)?;
        let mut text = vec![0u8; len as usize];
        self.mem
            .read_slice(&mut text, GuestAddress(data))
            .map_err(|_| fault("puts data", data, len))?;
        bus::lock(&self.serial).write_console(&text);
        Ok(())
    }

    /// `struct hvt_hc_poll { u64 timeout_nsecs; u64 ready_set; int ret; }`:
    /// waits up to the timeout for input on any attached TAP.
    fn poll(&mut self, gpa: u64) -> CallResult {
        self.check("poll argument", gpa, 20)?;
        let timeout = Duration::from_nanos(self.read_u64(gpa));
        let mut fds: Vec<libc::pollfd> = self
            .poll_fds
            .iter()
            .map(|&(_, fd)| libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        let taps = fds.len();
        if let Some(wake) = &self.wake {
            fds.push(libc::pollfd {
                fd: wake.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            });
        }
        let ts = libc::timespec {
            tv_sec: timeout.as_secs().min(i64::MAX as u64) as libc::time_t,
            tv_nsec: timeout.subsec_nanos() as libc::c_long,
        };
        // SAFETY: `fds` is a valid array of `fds.len()` pollfds and `ts` a
        // valid timespec, both alive for the call; a null sigmask keeps
        // the thread's mask.
        let n = unsafe {
            libc::ppoll(
                fds.as_mut_ptr(),
                fds.len() as libc::nfds_t,
                &ts,
                std::ptr::null(),
            )
        };
        let woken = fds[taps..].iter().any(|fd| fd.revents != 0);
        if let (true, Some(wake)) = (woken, &self.wake) {
            // The vCPU loop looks at why it was kicked when this returns;
            // the count only has to go, or every later poll returns at once.
            let _ = wake.read();
        }
        let mut ready = 0u64;
        for ((handle, _), fd) in self.poll_fds.iter().zip(&fds) {
            if fd.revents & libc::POLLIN != 0 && *handle < 64 {
                ready |= 1 << handle;
            }
        }
        self.write_u64(gpa + 8, ready);
        // An interrupted wait (a signal, a kick) reports nothing ready.
        let n = (n.max(0) as u32).saturating_sub(u32::from(woken));
        self.write_u32(gpa + 16, n);
        Ok(())
    }

    /// `struct hvt_hc_block_{write,read} { u64 handle, offset, data, len;
    /// int ret; }`
    fn block_io(&mut self, gpa: u64, write: bool) -> CallResult {
        let what = if write { "block write" } else { "block read" };
        self.check(what, gpa, 36)?;
        let handle = self.read_u64(gpa);
        let offset = self.read_u64(gpa + 8);
        let data = self.read_u64(gpa + 16);
        let len = self.read_u64(gpa + 24);
        let ret = self.block_transfer(what, handle, offset, data, len, write)?;
        self.write_u32(gpa + 32, ret);
        Ok(())
    }

    fn block_transfer(
        &mut self,
        what: &'static str,
        handle: u64,
        offset: u64,
        data: u64,
        len: u64,
        write: bool,
    ) -> Result<u32, GuestFault> {
        let Some((_, dev)) = self.blocks.iter_mut().find(|(h, _)| *h == handle) else {
            return Ok(R_EINVAL);
        };
        // Whole sectors inside the device, as the Solo5 API requires.
        let aligned =
            offset.is_multiple_of(SECTOR_SIZE) && len.is_multiple_of(SECTOR_SIZE) && len > 0;
        if !aligned || offset.checked_add(len).is_none_or(|e| e > dev.capacity()) {
            return Ok(R_EINVAL);
        }
        if write && dev.disk.read_only {
            return Ok(R_EUNSPEC);
        }
        let end = data.checked_add(len).filter(|&e| e <= self.mem_end);
        if end.is_none() {
            return Err(fault(what, data, len));
        }
        let slice = self
            .mem
            .get_slice(GuestAddress(data), len as usize)
            .map_err(|_| fault(what, data, len))?;
        let done = if write {
            dev.disk.backend.write_vectored_at(&[slice], offset)
        } else {
            dev.disk.backend.read_vectored_at(&[slice], offset)
        };
        Ok(match done {
            Ok(n) if n as u64 == len => R_OK,
            _ => R_EUNSPEC,
        })
    }

    /// `struct hvt_hc_net_write { u64 handle, data, len; int ret; }`
    fn net_write(&mut self, gpa: u64) -> CallResult {
        self.check("net write argument", gpa, 28)?;
        let (handle, data, len) = (
            self.read_u64(gpa),
            self.read_u64(gpa + 8),
            self.read_u64(gpa + 16),
        );
        let ret = match net::find(&self.nets, handle) {
            None => R_EINVAL,
            Some(_) if len == 0 || len > MAX_FRAME => R_EINVAL,
            Some(dev) => {
                self.check("net write data", data, len)?;
                let slice = self
                    .mem
                    .get_slice(GuestAddress(data), len as usize)
                    .map_err(|_| fault("net write data", data, len))?;
                match bus::lock(dev).send(&slice) {
                    Ok(()) => R_OK,
                    Err(_) => R_EUNSPEC,
                }
            }
        };
        self.write_u32(gpa + 24, ret);
        Ok(())
    }

    /// `struct hvt_hc_net_read { u64 handle, data, len (in/out); int ret; }`
    fn net_read(&mut self, gpa: u64) -> CallResult {
        self.check("net read argument", gpa, 28)?;
        let (handle, data, len) = (
            self.read_u64(gpa),
            self.read_u64(gpa + 8),
            self.read_u64(gpa + 16),
        );
        self.check("net read buffer", data, len)?;
        let Some(dev) = net::find(&self.nets, handle) else {
            self.write_u32(gpa + 24, R_EINVAL);
            return Ok(());
        };
        let ret = match bus::lock(dev).recv(&self.mem, data, len) {
            Recv::Frame(got) => {
                self.write_u64(gpa + 16, got);
                R_OK
            }
            Recv::Again => R_AGAIN,
            Recv::Failed => R_EUNSPEC,
        };
        self.write_u32(gpa + 24, ret);
        Ok(())
    }

    /// `struct hvt_hc_halt { u64 cookie; int exit_status; }`
    fn halt(&mut self, gpa: u64) -> Result<Event, GuestFault> {
        self.check("halt argument", gpa, 12)?;
        let cookie = self.read_u64(gpa);
        if cookie != 0 {
            self.check("halt cookie", cookie, HALT_COOKIE_MAX)?;
        }
        let status: i32 = self.mem.read_obj(GuestAddress(gpa + 8)).unwrap_or(0);
        // The process exit status is the low byte, as solo5-hvt's exit().
        Ok(Event::Exit(status & 0xff))
    }
}

impl BusDevice for Hypercalls {
    /// Hypercall ports are write-only.
    fn read(&mut self, _base: u64, _offset: u64, data: &mut [u8]) {
        data.fill(0xff);
    }

    fn write(&mut self, _base: u64, offset: u64, data: &[u8]) -> Option<Event> {
        let nr = offset as u16;
        if data.len() != 4 || nr == 0 || nr >= HYPERCALL_MAX {
            let what = if data.len() != 4 {
                "hypercall not made with a 32-bit outl, port"
            } else {
                "unknown hypercall number"
            };
            return Some(Event::GuestFault(fault(what, offset, 0)));
        }
        if let Some(f) = self.ring_fault.get() {
            return Some(Event::GuestFault(*f));
        }
        match self.dispatch(nr, le_value(data)) {
            Ok(event) => event,
            Err(f) => Some(Event::GuestFault(f)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{self, Write};
    use ukvm_devices::irq::IrqTrigger;

    #[derive(Clone, Default)]
    struct Out(Arc<Mutex<Vec<u8>>>);
    impl Write for Out {
        fn write(&mut self, d: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(d);
            Ok(d.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn device() -> (Hypercalls, Out) {
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 4 << 20)]).unwrap();
        let out = Out::default();
        let serial = Serial::new(Box::new(out.clone()), IrqTrigger::disconnected());
        let hc = Hypercalls::new(
            mem,
            Arc::new(Mutex::new(serial)),
            vec![],
            Arc::new([]),
            Arc::default(),
        );
        (hc, out)
    }

    fn call(hc: &mut Hypercalls, nr: u16, gpa: u32) -> Option<Event> {
        hc.write(0x500, u64::from(nr), &gpa.to_le_bytes())
    }

    #[test]
    fn puts_walltime_and_halt() {
        let (mut hc, out) = device();
        hc.mem.write_slice(b"hi\n", GuestAddress(0x2000)).unwrap();
        hc.write_u64(0x1000, 0x2000);
        hc.write_u64(0x1008, 3);
        assert_eq!(call(&mut hc, call::PUTS, 0x1000), None);
        assert_eq!(&*out.0.lock().unwrap(), b"hi\n");
        assert_eq!(call(&mut hc, call::WALLTIME, 0x1100), None);
        let ns = hc.read_u64(0x1100);
        assert!(ns > 1_600_000_000 * 1_000_000_000, "{ns}");
        hc.write_u64(0x1200, 0);
        hc.write_u32(0x1208, 7);
        assert_eq!(call(&mut hc, call::HALT, 0x1200), Some(Event::Exit(7)));
    }

    #[test]
    fn addresses_outside_memory_end_the_guest() {
        let (mut hc, _) = device();
        let top = (4 << 20) - 8;
        assert!(matches!(
            call(&mut hc, call::PUTS, top),
            Some(Event::GuestFault(GuestFault {
                what: "puts argument",
                ..
            }))
        ));
        hc.write_u64(0x1000, 0x3f_ff00);
        hc.write_u64(0x1008, 0x1000);
        let e = call(&mut hc, call::PUTS, 0x1000);
        assert_eq!(
            e,
            Some(Event::GuestFault(GuestFault {
                what: "puts data",
                addr: 0x3f_ff00,
                len: 0x1000
            }))
        );
        assert!(matches!(
            call(&mut hc, 0, 0x1000),
            Some(Event::GuestFault(_))
        ));
        assert!(matches!(
            hc.write(0x500, 2, &[0, 0x10]),
            Some(Event::GuestFault(_))
        ));
        // Unknown handles fail the call, not the guest.
        hc.write_u64(0x1000, 5);
        assert_eq!(call(&mut hc, call::BLOCK_READ, 0x1000), None);
        assert_eq!(
            hc.mem.read_obj::<u32>(GuestAddress(0x1020)).unwrap(),
            R_EINVAL
        );
    }

    #[test]
    fn poll_without_nets_waits_for_the_timeout() {
        let (mut hc, _) = device();
        hc.write_u64(0x1000, 20_000_000);
        let start = std::time::Instant::now();
        assert_eq!(call(&mut hc, call::POLL, 0x1000), None);
        assert!(start.elapsed() >= Duration::from_millis(20));
        assert_eq!(hc.read_u64(0x1008), 0);
    }

    #[test]
    fn a_kick_before_the_poll_ends_it_and_is_consumed() {
        let wake = EventFd::new(libc::EFD_NONBLOCK).unwrap();
        let (hc, _) = device();
        let mut hc = hc.wake_on(wake.try_clone().unwrap());
        // A stop that lands between the guest's exit and the wait: without
        // the eventfd in the poll set this would wait the full 60 s.
        wake.write(1).unwrap();
        hc.write_u64(0x1000, 60_000_000_000);
        hc.write_u32(0x1010, 7);
        let start = std::time::Instant::now();
        assert_eq!(call(&mut hc, call::POLL, 0x1000), None);
        assert!(start.elapsed() < Duration::from_secs(30));
        assert_eq!(hc.read_u64(0x1008), 0, "nothing ready");
        assert_eq!(
            hc.mem.read_obj::<u32>(GuestAddress(0x1010)).unwrap(),
            0,
            "the kick is not counted as a ready device"
        );
        // Consumed: the next poll waits for its timeout again.
        hc.write_u64(0x1000, 20_000_000);
        let start = std::time::Instant::now();
        call(&mut hc, call::POLL, 0x1000);
        assert!(start.elapsed() >= Duration::from_millis(20));
    }
}
