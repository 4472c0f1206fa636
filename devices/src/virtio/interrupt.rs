//! The virtio ISR and the INTx line behind it: the line is high exactly
//! while an ISR bit is set, and reading the ISR clears it and lowers the
//! line (virtio 1.2 section 4.1.4.5).

use crate::irq::LevelIrq;
use std::sync::Mutex;

/// ISR bit: a used ring was updated.
pub const ISR_QUEUE: u8 = 1;
/// ISR bit: the device configuration changed.
pub const ISR_CONFIG: u8 = 2;

/// A device's interrupt status and line.
pub struct Interrupt {
    /// The mutex orders "set bit, raise" against "read and clear, lower",
    /// so a completion that lands between the guest's read and the lowering
    /// cannot be lost with the line low.
    isr: Mutex<u8>,
    line: Box<dyn LevelIrq>,
}

impl Interrupt {
    /// An ISR driving `line`.
    pub fn new(line: Box<dyn LevelIrq>) -> Self {
        Interrupt {
            isr: Mutex::new(0),
            line,
        }
    }

    fn raise(&self, bit: u8) {
        let mut isr = crate::bus::lock(&self.isr);
        let was = *isr;
        *isr |= bit;
        if was == 0 {
            // A line that cannot be driven loses only this interrupt;
            // polling drivers still see the used ring.
            let _ = self.line.set_level(true);
        }
    }

    /// Tells the driver a used ring has new entries.
    pub fn signal_used_queue(&self) {
        self.raise(ISR_QUEUE);
    }

    /// Tells the driver the configuration space changed.
    pub fn signal_config_change(&self) {
        self.raise(ISR_CONFIG);
    }

    /// The ISR register read: returns and clears the bits, lowers the line.
    pub fn read_and_clear(&self) -> u8 {
        let mut isr = crate::bus::lock(&self.isr);
        let bits = std::mem::take(&mut *isr);
        if bits != 0 {
            let _ = self.line.set_level(false);
        }
        bits
    }

    /// The ISR without side effects.
    pub fn peek(&self) -> u8 {
        *crate::bus::lock(&self.isr)
    }

    /// Device reset: no pending interrupt, line low.
    pub fn reset(&self) {
        self.read_and_clear();
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::sync::Arc;

    /// Records every level change.
    #[derive(Clone, Default)]
    pub struct Recorder(pub Arc<Mutex<Vec<bool>>>);
    impl LevelIrq for Recorder {
        fn set_level(&self, high: bool) -> std::io::Result<()> {
            self.0.lock().unwrap().push(high);
            Ok(())
        }
    }

    #[test]
    fn line_follows_isr() {
        let rec = Recorder::default();
        let irq = Interrupt::new(Box::new(rec.clone()));
        assert_eq!(irq.read_and_clear(), 0);
        irq.signal_used_queue();
        irq.signal_used_queue();
        irq.signal_config_change();
        assert_eq!(irq.peek(), 3);
        assert_eq!(irq.read_and_clear(), 3);
        assert_eq!(irq.read_and_clear(), 0);
        assert_eq!(*rec.0.lock().unwrap(), vec![true, false]);
    }
}
