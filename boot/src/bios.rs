//! The BIOS Data Area. With no firmware, the BDA is whatever the monitor
//! leaves there, and guests read it: Rumprun chooses its console from the
//! COM1 base (0x400) and the VGA CRTC base (0x463).

use crate::{Error, Result};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

/// BDA word: I/O base of COM1.
pub const BDA_COM1: u64 = 0x400;
/// BDA word: equipment list.
pub const BDA_EQUIPMENT: u64 = 0x410;
/// BDA word: conventional memory size in KiB.
pub const BDA_BASE_MEM_KB: u64 = 0x413;
/// BDA word: I/O base of the video CRT controller (0 = no VGA).
pub const BDA_VGA_CRTC: u64 = 0x463;

/// Writes a BDA describing one serial port at 0x3F8, no VGA, and 639 KiB
/// of conventional memory.
pub fn write_bda(mem: &GuestMemoryMmap) -> Result<()> {
    // Equipment word: bits 9-11 = number of serial ports (1); video bits 4-5
    // = 00 ("EGA or later / none"), which with CRTC base 0 means no display.
    let words: [(u64, u16); 4] = [
        (BDA_COM1, 0x3f8),
        (BDA_EQUIPMENT, 1 << 9),
        (BDA_BASE_MEM_KB, 639),
        (BDA_VGA_CRTC, 0),
    ];
    for (addr, value) in words {
        mem.write_obj(value, GuestAddress(addr))
            .map_err(|source| Error::GuestMemory { addr, source })?;
    }
    Ok(())
}
