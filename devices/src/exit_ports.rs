//! Ports through which a guest ends the run or reports progress.
//!
//! - `0x501`: QEMU's `isa-debug-exit` (what Solo5's virtio target writes):
//!   a write of V ends the run with process status `(V << 1) | 1`.
//! - `0x510`: ukvm "ready": any write marks the guest ready (it is serving),
//!   for boot-time measurement, like Firecracker's boot-complete marker.
//! - `0x511`: ukvm "exit": a write of V ends the run with status exactly V,
//!   for guests that want to report 0 or an even status.

use crate::bus::{le_value, BusDevice, Event};

/// I/O port of QEMU's isa-debug-exit device.
pub const DEBUG_EXIT_PORT: u64 = 0x501;
/// Width of the isa-debug-exit register (QEMU's default iosize is 2).
pub const DEBUG_EXIT_LEN: u64 = 2;
/// Base of ukvm's own ports.
pub const UKVM_PORT_BASE: u64 = 0x510;
/// Number of ukvm ports.
pub const UKVM_PORT_LEN: u64 = 2;
/// Offset of the ready port in ukvm's block.
pub const READY_OFFSET: u64 = 0;
/// Offset of the exact-exit port in ukvm's block.
pub const EXIT_OFFSET: u64 = 1;

/// QEMU-compatible isa-debug-exit.
#[derive(Debug, Default)]
pub struct DebugExit;

impl BusDevice for DebugExit {
    fn read(&mut self, _base: u64, _offset: u64, data: &mut [u8]) {
        data.fill(0xff);
    }

    fn write(&mut self, _base: u64, _offset: u64, data: &[u8]) -> Option<Event> {
        let value = le_value(data) as i32;
        Some(Event::Exit((value << 1) | 1))
    }
}

/// ukvm's ready and exact-exit ports.
#[derive(Debug, Default)]
pub struct UkvmPorts;

impl BusDevice for UkvmPorts {
    fn read(&mut self, _base: u64, _offset: u64, data: &mut [u8]) {
        data.fill(0xff);
    }

    fn write(&mut self, _base: u64, offset: u64, data: &[u8]) -> Option<Event> {
        match offset {
            READY_OFFSET => Some(Event::Ready),
            _ => Some(Event::Exit(data.first().copied().map_or(0, i32::from))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_exit_follows_qemu() {
        assert_eq!(DebugExit.write(0x501, 0, &[3]), Some(Event::Exit(7)));
        assert_eq!(DebugExit.write(0x501, 0, &[0]), Some(Event::Exit(1)));
        assert_eq!(
            DebugExit.write(0x501, 0, &[0x7f, 0]),
            Some(Event::Exit(255))
        );
    }

    #[test]
    fn ukvm_ports() {
        assert_eq!(UkvmPorts.write(0x510, 0, &[1]), Some(Event::Ready));
        assert_eq!(UkvmPorts.write(0x510, 1, &[0]), Some(Event::Exit(0)));
        assert_eq!(UkvmPorts.write(0x510, 1, &[42]), Some(Event::Exit(42)));
    }
}
