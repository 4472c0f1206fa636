//! The virtio-net device: configuration space, features, and the receive
//! and transmit queues served on the I/O thread.

use crate::backend::{Backend, Stats};
use crate::features::{negotiate, offered, Negotiated};
use crate::rx::{Rx, Stop};
use crate::spec::MacAddr;
use crate::tx::{BackendGone, Tx};
use event_manager::{EventOps, EventSet, Events, MutEventSubscriber};
use std::io;
use std::os::unix::io::{AsRawFd, RawFd};
use std::sync::Arc;
use ukvm_devices::virtio::{queue_events, ActivateError, Interrupt, VirtioDevice, TYPE_NET};
use virtio_queue::{Queue, QueueT};
use vm_memory::GuestMemoryMmap;
use vmm_sys_util::eventfd::EventFd;

/// Descriptors per queue.
pub const QUEUE_SIZE: u16 = 256;
const RX: usize = 0;
const TX: usize = 1;
/// Event data of the backend's fd (queue kicks use their index).
const BACKEND: u32 = 2;
/// PCI class: network controller, Ethernet.
const PCI_CLASS: u32 = 0x02_00_00;
/// Configuration space: mac[6], status, max_virtqueue_pairs, mtu.
const CONFIG_LEN: usize = 12;
const STATUS_LINK_UP: u16 = 1;

/// What the backend must do besides moving frames: be polled and take
/// the negotiated header length and offloads.
pub trait NetBackend: Backend + AsRawFd {
    /// Name for messages.
    fn name(&self) -> &str;
    /// TUNSETOFFLOAD flags it can accept.
    fn supported_offloads(&self) -> u32;
    /// Applies the negotiated header length and offloads.
    fn configure(&mut self, n: &Negotiated) -> io::Result<()>;
}

impl NetBackend for crate::tap::Tap {
    fn name(&self) -> &str {
        crate::tap::Tap::name(self)
    }
    fn supported_offloads(&self) -> u32 {
        crate::tap::Tap::supported_offloads(self)
    }
    fn configure(&mut self, n: &Negotiated) -> io::Result<()> {
        self.set_vnet_hdr_size(n.hdr_len)
            .and_then(|()| self.set_offload(n.tap_offloads))
            .map_err(io::Error::other)
    }
}

struct Active {
    mem: GuestMemoryMmap,
    queues: Vec<Queue>,
    interrupt: Arc<Interrupt>,
    neg: Negotiated,
}

/// A virtio network card on a backend (a TAP).
pub struct Net<B: NetBackend> {
    backend: B,
    kick: Vec<EventFd>,
    config: [u8; CONFIG_LEN],
    active: Option<Active>,
    rx: Rx,
    tx: Tx,
    /// The backend may have frames (edge-triggered: set on each edge,
    /// cleared when a read finds nothing).
    readable: bool,
    /// The backend failed for good; said once.
    gone: bool,
    stats: Stats,
}

impl<B: NetBackend> Net<B> {
    /// A card with `mac` and `mtu` on `backend`.
    pub fn new(backend: B, mac: MacAddr, mtu: u16) -> io::Result<Self> {
        let mut config = [0u8; CONFIG_LEN];
        config[..6].copy_from_slice(&mac.0);
        config[6..8].copy_from_slice(&STATUS_LINK_UP.to_le_bytes());
        config[8..10].copy_from_slice(&1u16.to_le_bytes());
        config[10..12].copy_from_slice(&mtu.to_le_bytes());
        Ok(Net {
            backend,
            kick: queue_events(2)?,
            config,
            active: None,
            rx: Rx::default(),
            tx: Tx::default(),
            readable: true,
            gone: false,
            stats: Stats::default(),
        })
    }

    /// What the card did so far.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// The backend.
    pub fn backend(&self) -> &B {
        &self.backend
    }

    fn link_up(&self) -> bool {
        u16::from_le_bytes([self.config[6], self.config[7]]) & STATUS_LINK_UP != 0
    }

    /// Serves the receive side: backend frames into posted buffers.
    pub fn process_rx(&mut self) {
        let Some(a) = self.active.as_mut() else {
            return;
        };
        if self.gone || !(self.readable || self.rx.has_pending()) {
            return;
        }
        let mut used = false;
        let r = self.rx.process(
            &mut a.queues[RX],
            &a.mem,
            &mut self.backend,
            &a.neg,
            &mut self.stats,
            &mut used,
        );
        notify(a, RX, used);
        match r {
            Ok(Stop::BackendEmpty) => self.readable = false,
            Ok(Stop::NoBuffers) => {}
            Err(e) => self.backend_gone(e),
        }
    }

    /// Serves the transmit side.
    pub fn process_tx(&mut self) {
        let Some(a) = self.active.as_mut() else {
            return;
        };
        let hdr_len = a.neg.hdr_len;
        let r = self.tx.process(
            &mut a.queues[TX],
            &a.mem,
            &mut self.backend,
            hdr_len,
            &mut self.stats,
        );
        match r {
            Ok(used) => notify(a, TX, used),
            Err(BackendGone(e)) => {
                notify(a, TX, true);
                self.backend_gone(e);
            }
        }
    }

    /// The TAP went away: say so once, show the guest link down, and keep
    /// the monitor running (transmits are then dropped and counted).
    fn backend_gone(&mut self, e: io::Error) {
        if self.gone {
            return;
        }
        self.gone = true;
        eprintln!(
            "ukvm: warning: net {}: TAP failed ({e}); link is down for the guest, the VM keeps running",
            self.backend.name()
        );
        let status = self.link_up() as u16 & !STATUS_LINK_UP;
        self.config[6..8].copy_from_slice(&status.to_le_bytes());
        if let Some(a) = &self.active {
            a.interrupt.signal_config_change();
        }
    }
}

fn notify(a: &mut Active, q: usize, used: bool) {
    if used && a.queues[q].needs_notification(&a.mem).unwrap_or(true) {
        a.interrupt.signal_used_queue();
    }
}

impl<B: NetBackend> VirtioDevice for Net<B> {
    fn device_type(&self) -> u32 {
        TYPE_NET
    }

    fn pci_class(&self) -> u32 {
        PCI_CLASS
    }

    fn features(&self) -> u64 {
        offered(self.backend.supported_offloads())
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &[QUEUE_SIZE, QUEUE_SIZE]
    }

    fn queue_events(&self) -> &[EventFd] {
        &self.kick
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        ukvm_devices::virtio::read_config_bytes(&self.config, offset, data);
    }

    fn write_config(&mut self, _offset: u64, _data: &[u8]) {
        // The MAC is read-only without VIRTIO_NET_F_CTRL_MAC_ADDR; legacy
        // drivers may still write it, and are ignored.
    }

    fn activate(
        &mut self,
        mem: GuestMemoryMmap,
        features: u64,
        queues: Vec<Queue>,
        interrupt: Arc<Interrupt>,
    ) -> Result<(), ActivateError> {
        if queues.len() != 2 {
            return Err(ActivateError::BadQueue(queues.len()));
        }
        if let Some(i) = queues.iter().position(|q| !q.ready()) {
            return Err(ActivateError::BadQueue(i));
        }
        let neg = negotiate(features);
        self.backend
            .configure(&neg)
            .map_err(|e| ActivateError::Device(format!("net {}: {e}", self.backend.name())))?;
        self.active = Some(Active {
            mem,
            queues,
            interrupt,
            neg,
        });
        self.rx.reset();
        // Frames may have queued before the guest was ready.
        self.readable = true;
        for k in &self.kick {
            let _ = k.write(1);
        }
        Ok(())
    }

    fn refused(&self) -> u64 {
        let s = self.stats();
        s.rx_bad_chains + s.tx_bad_chains + s.tx_dropped_too_big
    }

    fn backend_errors(&self) -> u64 {
        let s = self.stats();
        s.rx_errors + s.tx_errors
    }

    fn reset(&mut self) {
        self.active = None;
        self.rx.reset();
    }
}

impl<B: NetBackend> MutEventSubscriber for Net<B> {
    fn init(&mut self, ops: &mut EventOps) {
        let fd: RawFd = self.backend.as_raw_fd();
        let watches = [
            Events::with_data(&self.kick[RX], RX as u32, EventSet::IN),
            Events::with_data(&self.kick[TX], TX as u32, EventSet::IN),
            Events::with_data_raw(fd, BACKEND, EventSet::IN | EventSet::EDGE_TRIGGERED),
        ];
        for w in watches {
            if let Err(e) = ops.add(w) {
                eprintln!(
                    "ukvm: warning: net {}: cannot watch an event source: {e:?}",
                    self.backend.name()
                );
            }
        }
    }

    fn process(&mut self, events: Events, ops: &mut EventOps) {
        match events.data() {
            d if d == RX as u32 => {
                let _ = self.kick[RX].read();
                self.process_rx();
            }
            d if d == TX as u32 => {
                let _ = self.kick[TX].read();
                self.process_tx();
            }
            BACKEND => {
                self.readable = true;
                self.process_rx();
                if self.gone {
                    // A dead TAP may stay "readable" forever.
                    let _ = ops.remove(events);
                }
            }
            _ => {}
        }
    }
}
