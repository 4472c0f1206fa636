//! The i8042 keyboard controller, present for one reason: guests (Linux with
//! `reboot=k`, many unikernels) reset the machine by writing 0xFE to its
//! command port. Emulation comes from `vm-superio`.

use crate::bus::{BusDevice, Event};
use std::cell::Cell;

/// Data port.
pub const DATA_PORT: u64 = 0x60;
/// Command/status port.
pub const COMMAND_PORT: u64 = 0x64;

#[derive(Debug, Default)]
struct ResetFlag(Cell<bool>);

impl vm_superio::Trigger for ResetFlag {
    type E = std::convert::Infallible;
    fn trigger(&self) -> Result<(), Self::E> {
        self.0.set(true);
        Ok(())
    }
}

/// The controller, mapped at both 0x60 and 0x64.
pub struct I8042 {
    dev: vm_superio::I8042Device<ResetFlag>,
}

impl Default for I8042 {
    fn default() -> Self {
        I8042 {
            dev: vm_superio::I8042Device::new(ResetFlag::default()),
        }
    }
}

impl BusDevice for I8042 {
    fn read(&mut self, base: u64, _offset: u64, data: &mut [u8]) {
        data.fill(0);
        data[0] = self.dev.read((base - DATA_PORT) as u8);
    }

    fn write(&mut self, base: u64, _offset: u64, data: &[u8]) -> Option<Event> {
        // Only the reset command can fail (through our infallible trigger).
        let _ = self.dev.write((base - DATA_PORT) as u8, data[0]);
        self.dev.reset_evt().0.take().then_some(Event::Reset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reset_command_requests_reset() {
        let mut kbd = I8042::default();
        assert_eq!(kbd.write(COMMAND_PORT, 0, &[0x20]), None);
        assert_eq!(kbd.write(COMMAND_PORT, 0, &[0xfe]), Some(Event::Reset));
    }
}
