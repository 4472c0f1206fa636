//! The virtio-blk device: configuration space, features, and the queue
//! served on the I/O thread.

use crate::disk::{Disk, ID_BYTES};
use crate::request::{Malformed, Request, S_IOERR, S_OK, S_UNSUPP, T_FLUSH, T_GET_ID, T_IN, T_OUT};
use crate::SECTOR_SIZE;
use event_manager::{EventOps, EventSet, Events, MutEventSubscriber};
use std::io;
use std::sync::Arc;
use ukvm_devices::virtio::{queue_events, ActivateError, Interrupt, VirtioDevice, TYPE_BLOCK};
use virtio_queue::{Queue, QueueT};
use vm_memory::{Bytes, GuestMemory, GuestMemoryMmap, Permissions, VolatileSlice};
use vmm_sys_util::eventfd::EventFd;

/// Feature: `seg_max` in config is valid.
pub const F_SEG_MAX: u64 = 1 << 2;
/// Feature: the disk is read-only.
pub const F_RO: u64 = 1 << 5;
/// Feature: `blk_size` in config is valid.
pub const F_BLK_SIZE: u64 = 1 << 6;
/// Feature: FLUSH requests are supported.
pub const F_FLUSH: u64 = 1 << 9;

/// Descriptors in the request queue.
pub const QUEUE_SIZE: u16 = 256;
/// Configuration space: capacity, size_max, seg_max, geometry, blk_size.
const CONFIG_LEN: usize = 24;
/// PCI class: mass storage, other.
const PCI_CLASS: u32 = 0x01_80_00;

/// Counters of what the device did, for tests and reports.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    /// Requests completed (any status).
    pub requests: u64,
    /// Requests completed with IOERR or UNSUPP, or malformed.
    pub failed: u64,
    /// Interrupts raised.
    pub interrupts: u64,
}

struct Active {
    mem: GuestMemoryMmap,
    queue: Queue,
    interrupt: Arc<Interrupt>,
}

/// A virtio block device.
pub struct Block {
    disk: Disk,
    kick: Vec<EventFd>,
    config: [u8; CONFIG_LEN],
    active: Option<Active>,
    io_error_logged: bool,
    stats: Stats,
}

impl Block {
    /// A device serving `disk`.
    pub fn new(disk: Disk) -> io::Result<Block> {
        let mut config = [0u8; CONFIG_LEN];
        config[0..8].copy_from_slice(&disk.sectors.to_le_bytes());
        let seg_max = u32::from(QUEUE_SIZE) - 2;
        config[12..16].copy_from_slice(&seg_max.to_le_bytes());
        config[20..24].copy_from_slice(&(SECTOR_SIZE as u32).to_le_bytes());
        Ok(Block {
            disk,
            kick: queue_events(1)?,
            config,
            active: None,
            io_error_logged: false,
            stats: Stats::default(),
        })
    }

    /// What the device did so far.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Serves every request the driver has made available, then interrupts
    /// the driver if it wants to hear about it.
    pub fn process_queue(&mut self) {
        let Some(active) = self.active.as_mut() else {
            return;
        };
        let mem = &active.mem;
        let mut completed = false;
        while let Some(chain) = active.queue.pop_descriptor_chain(mem) {
            let head = chain.head_index();
            let (status, used) = match Request::parse(chain, mem) {
                Ok(req) => {
                    let (code, written) = execute(&mut self.disk, mem, &req);
                    (Some(req.status).zip(Some(code)), written + 1)
                }
                Err(Malformed { status }) => (status.zip(Some(S_IOERR)), 1),
            };
            self.stats.requests += 1;
            let used = match status {
                Some((addr, code)) => {
                    if code != S_OK {
                        self.stats.failed += 1;
                        if code == S_IOERR_HOST {
                            log_io_error(&mut self.io_error_logged, &self.disk.name);
                        }
                    }
                    let wire = if code == S_IOERR_HOST { S_IOERR } else { code };
                    // The status address was checked to be in memory.
                    let _ = mem.write_obj(wire, addr);
                    used
                }
                None => {
                    self.stats.failed += 1;
                    0
                }
            };
            // A head the queue refuses is the driver's error; the request
            // is dropped rather than the device stopped.
            let _ = active.queue.add_used(mem, head, used);
            completed = true;
        }
        if completed && active.queue.needs_notification(mem).unwrap_or(true) {
            self.stats.interrupts += 1;
            active.interrupt.signal_used_queue();
        }
    }
}

/// Internal marker: IOERR caused by the host file (logged once), reported
/// to the guest as `S_IOERR`.
const S_IOERR_HOST: u8 = 0x80 | S_IOERR;

fn log_io_error(logged: &mut bool, name: &str) {
    if !*logged {
        eprintln!(
            "ukvm: warning: disk {name}: host I/O error; failing the request with IOERR (further errors not shown)"
        );
        *logged = true;
    }
}

/// Performs `req`; returns the status and the bytes written to guest
/// memory (not counting the status byte).
fn execute(disk: &mut Disk, mem: &GuestMemoryMmap, req: &Request) -> (u8, u32) {
    match req.kind {
        T_IN | T_OUT => transfer(disk, mem, req),
        T_FLUSH => match disk.backend.flush() {
            Ok(()) => (S_OK, 0),
            Err(_) => (S_IOERR_HOST, 0),
        },
        T_GET_ID => get_id(disk, mem, req),
        _ => (S_UNSUPP, 0),
    }
}

fn transfer(disk: &mut Disk, mem: &GuestMemoryMmap, req: &Request) -> (u8, u32) {
    let sectors = req.data_len / SECTOR_SIZE;
    let in_range = req
        .sector
        .checked_add(sectors)
        .is_some_and(|end| end <= disk.sectors);
    let write = req.kind == T_OUT;
    if !req.data_len.is_multiple_of(SECTOR_SIZE) || !in_range || (write && disk.read_only) {
        return (S_IOERR, 0);
    }
    let Some(slices) = guest_slices(mem, req) else {
        return (S_IOERR, 0);
    };
    let offset = req.sector * SECTOR_SIZE;
    let done = if write {
        disk.backend.write_vectored_at(&slices, offset)
    } else {
        disk.backend.read_vectored_at(&slices, offset)
    };
    match done {
        // A short transfer (the file shrank under us) is an I/O error.
        Ok(n) if n as u64 == req.data_len => {
            let written = if write { 0 } else { req.data_len as u32 };
            (S_OK, written)
        }
        _ => (S_IOERR_HOST, 0),
    }
}

/// The request's buffers as slices of guest memory (a buffer may span
/// memory regions).
fn guest_slices<'m>(mem: &'m GuestMemoryMmap, req: &Request) -> Option<Vec<VolatileSlice<'m>>> {
    let mut out = Vec::with_capacity(req.data.len());
    for seg in &req.data {
        let slices = mem
            .get_slices(seg.addr, seg.len as usize, Permissions::ReadWrite)
            .ok()?;
        for s in slices {
            out.push(s.ok()?);
        }
    }
    Some(out)
}

fn get_id(disk: &Disk, mem: &GuestMemoryMmap, req: &Request) -> (u8, u32) {
    let mut left: &[u8] = &disk.serial[..ID_BYTES];
    let mut written = 0u32;
    for seg in &req.data {
        let n = left.len().min(seg.len as usize);
        if mem.write_slice(&left[..n], seg.addr).is_err() {
            return (S_IOERR, 0);
        }
        left = &left[n..];
        written += n as u32;
    }
    (S_OK, written)
}

impl VirtioDevice for Block {
    fn device_type(&self) -> u32 {
        TYPE_BLOCK
    }

    fn pci_class(&self) -> u32 {
        PCI_CLASS
    }

    fn features(&self) -> u64 {
        let ro = if self.disk.read_only { F_RO } else { 0 };
        F_SEG_MAX | F_BLK_SIZE | F_FLUSH | ro
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &[QUEUE_SIZE]
    }

    fn queue_events(&self) -> &[EventFd] {
        &self.kick
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        ukvm_devices::virtio::read_config_bytes(&self.config, offset, data);
    }

    fn write_config(&mut self, _offset: u64, _data: &[u8]) {
        // Nothing in the block configuration is writable without
        // CONFIG_WCE, which is not offered.
    }

    fn activate(
        &mut self,
        mem: GuestMemoryMmap,
        _features: u64,
        mut queues: Vec<Queue>,
        interrupt: Arc<Interrupt>,
    ) -> Result<(), ActivateError> {
        let queue = queues
            .pop()
            .filter(|q| q.ready())
            .ok_or(ActivateError::BadQueue(0))?;
        self.active = Some(Active {
            mem,
            queue,
            interrupt,
        });
        // Requests made before DRIVER_OK found the device asleep: look now.
        let _ = self.kick[0].write(1);
        Ok(())
    }

    fn refused(&self) -> u64 {
        self.stats().failed
    }

    fn reset(&mut self) {
        self.active = None;
    }
}

impl MutEventSubscriber for Block {
    fn init(&mut self, ops: &mut EventOps) {
        if let Err(e) = ops.add(Events::new(&self.kick[0], EventSet::IN)) {
            eprintln!(
                "ukvm: warning: disk {}: cannot watch its queue: {e:?}",
                self.disk.name
            );
        }
    }

    fn process(&mut self, events: Events, _ops: &mut EventOps) {
        if events.event_set().contains(EventSet::IN) {
            // Reading resets the counter; kicks that come in while we work
            // make it readable again.
            let _ = self.kick[0].read();
            self.process_queue();
        }
    }
}
