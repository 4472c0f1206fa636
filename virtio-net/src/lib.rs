//! virtio-net for ukvm: a network card on an existing TAP interface.
//!
//! - [`spec`]: the `--net NAME[,mac=..][,mtu=..]` option and MAC addresses.
//! - [`tap`]: attaching to a TAP through `/dev/net/tun`.
//! - [`features`]: offered features, header length and TAP offloads.
//! - [`rx`], [`tx`]: the data path between the queues and the backend.
//! - [`device`]: the [`Net`] device on the virtio-pci transport, served by
//!   the I/O thread's event loop.

#![deny(missing_docs)]

pub mod backend;
pub mod device;
pub mod features;
pub mod rx;
pub mod spec;
pub mod tap;
pub mod tx;

#[cfg(test)]
mod tests;

pub use backend::{Backend, Stats};
pub use device::{Net, NetBackend};
pub use spec::{MacAddr, NetSpec, SpecError};
pub use tap::{Tap, TapError};
