//! Virtio devices and their PCI transport.
//!
//! A device (block, net) implements [`VirtioDevice`]: its type, features,
//! configuration space and queues. The transport in [`pci`] turns it into a
//! transitional virtio-pci function (legacy I/O BAR plus the modern
//! capabilities in a memory BAR) and hands it its queues when the driver
//! sets DRIVER_OK. Requests are then served wherever the device's queue
//! events are polled (the monitor's I/O thread), not by the transport.

pub mod interrupt;
pub mod pci;

pub use interrupt::Interrupt;

use std::sync::Arc;
use thiserror::Error;
use virtio_queue::Queue;
use vm_memory::GuestMemoryMmap;
use vmm_sys_util::eventfd::EventFd;

/// PCI vendor ID of virtio devices.
pub const VENDOR_ID: u16 = 0x1af4;
/// Device type of a network card.
pub const TYPE_NET: u32 = 1;
/// Device type of a block device.
pub const TYPE_BLOCK: u32 = 2;

/// Feature bit: the device speaks virtio 1.x (modern interface only).
pub const F_VERSION_1: u64 = 1 << 32;

/// Device status bits (virtio 1.2 section 2.1).
pub mod status {
    /// The guest noticed the device.
    pub const ACKNOWLEDGE: u8 = 1;
    /// The guest has a driver for it.
    pub const DRIVER: u8 = 2;
    /// The driver is ready: queues may be used.
    pub const DRIVER_OK: u8 = 4;
    /// Feature negotiation done (modern only).
    pub const FEATURES_OK: u8 = 8;
    /// The device hit an error and needs a reset.
    pub const DEVICE_NEEDS_RESET: u8 = 0x40;
    /// The driver gave up on the device.
    pub const FAILED: u8 = 0x80;
}

/// Why a device could not start.
#[derive(Debug, Error)]
pub enum ActivateError {
    /// A queue's rings are not in guest memory or its size is invalid.
    #[error("virtio queue {0} is not valid")]
    BadQueue(usize),
    /// The device could not set itself up.
    #[error("{0}")]
    Device(String),
}

/// A virtio device behind some transport.
///
/// Methods are called from the vCPU thread (through the transport) while
/// the device's queue events are served on the I/O thread, so the transport
/// and the I/O thread share the device behind a mutex.
pub trait VirtioDevice: Send {
    /// Virtio device type ([`TYPE_BLOCK`], [`TYPE_NET`]).
    fn device_type(&self) -> u32;
    /// PCI class code (class, subclass, interface) of the function.
    fn pci_class(&self) -> u32;
    /// Device feature bits. The transport adds [`F_VERSION_1`] on the
    /// modern interface; the legacy one shows only the low 32 bits.
    fn features(&self) -> u64;
    /// Maximum size of each queue; the length is the number of queues.
    fn queue_max_sizes(&self) -> &[u16];
    /// One event per queue, signalled when the driver kicks that queue
    /// (registered as ioeventfds; the transport writes them itself when
    /// KVM could not register one).
    fn queue_events(&self) -> &[EventFd];
    /// Reads the device configuration space.
    fn read_config(&self, offset: u64, data: &mut [u8]);
    /// Writes the device configuration space.
    fn write_config(&mut self, offset: u64, data: &[u8]);
    /// Starts the device with the features the driver accepted and its
    /// queues, set up and validated by the transport.
    fn activate(
        &mut self,
        mem: GuestMemoryMmap,
        features: u64,
        queues: Vec<Queue>,
        interrupt: Arc<Interrupt>,
    ) -> Result<(), ActivateError>;
    /// Stops using the queues and forgets negotiated state.
    fn reset(&mut self);
    /// Requests and chains refused so far: malformed, outside guest
    /// memory, or not allowed (a write to a read-only disk). `--timings`
    /// reports the sum as `refused`.
    fn refused(&self) -> u64 {
        0
    }
    /// Requests failed so far by the host side (a TAP that refused a
    /// read or a write). `--timings` reports the sum as `backend_errors`.
    fn backend_errors(&self) -> u64 {
        0
    }
}

/// Copies `data.len()` bytes of a configuration space held as bytes,
/// starting at `offset`; bytes past its end read as zero (the driver may
/// probe fields of features that were not offered).
pub fn read_config_bytes(config: &[u8], offset: u64, data: &mut [u8]) {
    for (i, b) in data.iter_mut().enumerate() {
        let at = (offset as usize).saturating_add(i);
        *b = config.get(at).copied().unwrap_or(0);
    }
}

/// `n` non-blocking eventfds, for [`VirtioDevice::queue_events`].
pub fn queue_events(n: usize) -> std::io::Result<Vec<EventFd>> {
    (0..n).map(|_| EventFd::new(libc::EFD_NONBLOCK)).collect()
}
