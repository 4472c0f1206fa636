//! The COM1 16550 UART. Register emulation comes from `vm-superio`; this
//! module only puts it on the bus and gives it a cheap output path: bytes
//! are buffered and reach the caller's writer at each newline, when the
//! buffer fills, and when the run ends, instead of one syscall per byte.

use crate::bus::{BusDevice, Event};
use crate::irq::IrqTrigger;
use std::io::{self, Write};
use std::time::Instant;
use vm_superio::serial::NoEvents;

/// I/O base of COM1.
pub const COM1_BASE: u64 = 0x3f8;
/// Number of UART registers.
pub const COM1_LEN: u64 = 8;
/// Legacy IRQ of COM1.
pub const COM1_IRQ: u32 = 4;
const FLUSH_AT: usize = 4096;

/// Buffers guest console output for a writer.
pub struct ConsoleWriter {
    out: Box<dyn Write + Send>,
    buf: Vec<u8>,
    first_byte: Option<Instant>,
    bytes: u64,
    failed: bool,
}

impl ConsoleWriter {
    /// Wraps `out`.
    pub fn new(out: Box<dyn Write + Send>) -> Self {
        ConsoleWriter {
            out,
            buf: Vec::with_capacity(FLUSH_AT),
            first_byte: None,
            bytes: 0,
            failed: false,
        }
    }

    /// Writes everything buffered to the underlying writer.
    pub fn flush_all(&mut self) -> io::Result<()> {
        let result = self.out.write_all(&self.buf).and_then(|_| self.out.flush());
        self.buf.clear();
        // A console that cannot be written (closed pipe) must not stop the
        // guest; the error is reported once by whoever calls flush_all.
        if result.is_err() {
            self.failed = true;
        }
        result
    }
}

impl Write for ConsoleWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.first_byte.is_none() && !data.is_empty() {
            self.first_byte = Some(Instant::now());
        }
        self.bytes += data.len() as u64;
        if !self.failed {
            self.buf.extend_from_slice(data);
        }
        Ok(data.len())
    }

    /// Called by the UART after every byte: only pass output on at line
    /// ends or when the buffer is full.
    fn flush(&mut self) -> io::Result<()> {
        if self.buf.last() == Some(&b'\n') || self.buf.len() >= FLUSH_AT {
            // Errors are remembered in `failed`; the guest keeps running.
            let _ = self.flush_all();
        }
        Ok(())
    }
}

/// COM1 on the bus.
pub struct Serial {
    uart: vm_superio::Serial<IrqTrigger, NoEvents, ConsoleWriter>,
}

impl Serial {
    /// A UART writing to `out`, raising `irq` when the guest enabled
    /// interrupts.
    pub fn new(out: Box<dyn Write + Send>, irq: IrqTrigger) -> Self {
        Serial {
            uart: vm_superio::Serial::new(irq, ConsoleWriter::new(out)),
        }
    }

    /// When the guest wrote its first byte, if it did.
    pub fn first_byte(&self) -> Option<Instant> {
        self.uart.writer().first_byte
    }

    /// Bytes the guest has written.
    pub fn bytes_written(&self) -> u64 {
        self.uart.writer().bytes
    }

    /// Console output that does not go through the UART registers (Solo5
    /// hvt guests' puts hypercall): same buffering, same accounting.
    pub fn write_console(&mut self, data: &[u8]) {
        let writer = self.uart.writer_mut();
        // ConsoleWriter::write never fails; flush passes complete lines on.
        let _ = writer.write(data);
        let _ = writer.flush();
    }

    /// Passes all buffered output on (call when the run ends).
    pub fn flush(&mut self) -> io::Result<()> {
        self.uart.writer_mut().flush_all()
    }
}

impl BusDevice for Serial {
    fn read(&mut self, _base: u64, offset: u64, data: &mut [u8]) {
        // vm-superio reports the transmitter always empty (LSR THRE|TEMT),
        // so a polling guest never spins.
        let value = self.uart.read(offset as u8);
        data.fill(0);
        data[0] = value;
    }

    fn write(&mut self, _base: u64, offset: u64, data: &[u8]) -> Option<Event> {
        // A failing trigger or writer must not stop the guest; the writer
        // records its own failure.
        let _ = self.uart.write(offset as u8, data[0]);
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);
    impl Write for Shared {
        fn write(&mut self, d: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(d);
            Ok(d.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn output_is_line_buffered_and_flushed_at_the_end() {
        let out = Shared::default();
        let mut s = Serial::new(Box::new(out.clone()), IrqTrigger::disconnected());
        for b in b"hi\nthere" {
            s.write(COM1_BASE, 0, &[*b]);
        }
        assert_eq!(&*out.0.lock().unwrap(), b"hi\n");
        s.flush().unwrap();
        assert_eq!(&*out.0.lock().unwrap(), b"hi\nthere");
        assert!(s.first_byte().is_some());
        assert_eq!(s.bytes_written(), 8);
    }

    #[test]
    fn line_status_always_reports_transmitter_empty() {
        let mut s = Serial::new(Box::new(io::sink()), IrqTrigger::disconnected());
        let mut lsr = [0u8];
        s.read(COM1_BASE, 5, &mut lsr);
        assert_eq!(lsr[0] & 0x60, 0x60);
    }
}
