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
    /// Someone types at this console: show partial lines (prompts,
    /// echoed keys) as soon as the guest looks at the UART again.
    interactive: bool,
}

impl Serial {
    /// A UART writing to `out`, raising `irq` when the guest enabled
    /// interrupts.
    pub fn new(out: Box<dyn Write + Send>, irq: IrqTrigger) -> Self {
        Serial {
            uart: vm_superio::Serial::new(irq, ConsoleWriter::new(out)),
            interactive: false,
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

    /// Makes output without a line end (a prompt, an echoed key) visible
    /// when the guest next reads a UART register, that is when it waits
    /// for input or for the transmitter. Only then: a guest that just
    /// prints keeps its line buffering.
    pub fn set_interactive(&mut self) {
        self.interactive = true;
    }

    /// Console input: puts as many of `bytes` in the receive FIFO as fit
    /// (16550: 64 bytes), sets LSR data-ready and raises the receive
    /// interrupt if the guest enabled it. Returns how many were taken.
    pub fn receive(&mut self, bytes: &[u8]) -> usize {
        if self.uart.fifo_capacity() == 0 {
            return 0;
        }
        // Only a failing interrupt trigger errs after the bytes are in; a
        // polling guest still sees them.
        let n = bytes.len().min(self.uart.fifo_capacity());
        let _ = self.uart.enqueue_raw_bytes(&bytes[..n]);
        n
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
        if self.interactive && !self.uart.writer().buf.is_empty() {
            // Errors are remembered by the writer; the guest runs on.
            let _ = self.uart.writer_mut().flush_all();
        }
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
    fn received_bytes_set_data_ready_and_fill_the_fifo() {
        let mut s = Serial::new(Box::new(io::sink()), IrqTrigger::disconnected());
        let mut reg = [0u8];
        s.read(COM1_BASE, 5, &mut reg);
        assert_eq!(reg[0] & 1, 0, "no data yet");
        assert_eq!(s.receive(b"hi"), 2);
        s.read(COM1_BASE, 5, &mut reg);
        assert_eq!(reg[0] & 1, 1, "LSR data ready");
        s.read(COM1_BASE, 0, &mut reg);
        assert_eq!(reg[0], b'h');
        s.read(COM1_BASE, 0, &mut reg);
        assert_eq!(reg[0], b'i');
        s.read(COM1_BASE, 5, &mut reg);
        assert_eq!(reg[0] & 1, 0, "drained");
        // The FIFO holds 64 bytes; the rest waits with the caller.
        assert_eq!(s.receive(&[b'x'; 100]), 64);
        assert_eq!(s.receive(b"y"), 0);
    }

    #[test]
    fn interactive_output_shows_partial_lines_at_the_next_read() {
        let out = Shared::default();
        let mut s = Serial::new(Box::new(out.clone()), IrqTrigger::disconnected());
        s.set_interactive();
        for b in b"login: " {
            s.write(COM1_BASE, 0, &[*b]);
        }
        assert!(out.0.lock().unwrap().is_empty(), "no read yet");
        s.read(COM1_BASE, 5, &mut [0u8]);
        assert_eq!(&*out.0.lock().unwrap(), b"login: ");
    }

    #[test]
    fn line_status_always_reports_transmitter_empty() {
        let mut s = Serial::new(Box::new(io::sink()), IrqTrigger::disconnected());
        let mut lsr = [0u8];
        s.read(COM1_BASE, 5, &mut lsr);
        assert_eq!(lsr[0] & 0x60, 0x60);
    }
}
