//! The emulated devices of a ukvm guest and the bus they sit on.
//!
//! The monitor's vCPU loop knows nothing of devices: it hands every port or
//! MMIO access to a [`Bus`], which finds the [`BusDevice`] claiming the
//! address. A write may ask the monitor to do something (end the run, note
//! that the guest is ready) by returning an [`Event`].
//!
//! - [`bus`]: the address-range bus and the device trait.
//! - [`serial`]: 16550 UART (COM1) from `vm-superio`, wired to a writer.
//! - [`exit_ports`]: QEMU's isa-debug-exit port and ukvm's own ports.
//! - [`acpi_pm`]: the ACPI PM1a registers, for power-off.
//! - [`i8042`]: the keyboard controller, for its reset line.
//! - [`rtc`]: the CMOS real-time clock.
//! - [`irq`]: interrupt lines as devices see them.
//! - [`pic`]: the cascaded 8259A interrupt controllers and their ELCR.
//! - [`pit`]: the 8254 interval timer and its port 0x61 bits.
//! - [`pci`]: PCI configuration mechanism 1, host bridge, config headers.
//! - [`virtio`]: the virtio device trait and the virtio-pci transport.

pub mod acpi_pm;
pub mod bus;
pub mod exit_ports;
pub mod i8042;
pub mod irq;
pub mod pci;
pub mod pic;
pub mod pit;
pub mod rtc;
pub mod serial;
pub mod virtio;

pub use bus::{Bus, BusDevice, Event};
