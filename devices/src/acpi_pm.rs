//! The ACPI PM1a event and control registers, where QEMU's PC (PIIX4 PM)
//! has them, present for one reason: entering S5 ends the run as a
//! power-off. Linux's `poweroff` (any ACPI OS) writes `\_S5`'s SLP_TYP
//! with SLP_EN to PM1a_CNT; Unikraft and other guests built for QEMU write
//! 0x2000 (SLP_EN, SLP_TYP 0: PIIX4's S5) to port 0x604 without reading
//! ACPI at all. ukvm's DSDT says `\_S5` is 0, as QEMU's does, so both are
//! the same write.
//!
//! Six ports from [`PM1A_EVT_PORT`]: PM1a_STS (2 bytes, write 1 to clear),
//! PM1a_EN (2 bytes), then PM1a_CNT (2 bytes). The machine is always in
//! ACPI mode (SCI_EN reads 1) and raises no SCI: nothing sets a status bit.
//! Other sleep states are not supported: their SLP_EN write is ignored.

use crate::bus::{BusDevice, Event};

/// First port of the PM1a event block (status, then enable).
pub const PM1A_EVT_PORT: u64 = 0x600;
/// Length of the PM1a event block.
pub const PM1_EVT_LEN: u64 = 4;
/// Port of the PM1a control register.
pub const PM1A_CNT_PORT: u64 = PM1A_EVT_PORT + PM1_EVT_LEN;
/// Length of the PM1a control register.
pub const PM1_CNT_LEN: u64 = 2;
/// Ports the device occupies from [`PM1A_EVT_PORT`].
pub const PORTS_LEN: u64 = PM1_EVT_LEN + PM1_CNT_LEN;
/// SLP_TYP of S5 (soft off) on QEMU's PIIX4 PM, which the DSDT's `\_S5`
/// declares.
pub const SLP_TYP_S5: u16 = 0;
/// PM1_CNT: SCI_EN, the machine is in ACPI mode.
const SCI_EN: u16 = 1 << 0;
/// PM1_CNT: SLP_EN, enter the state in SLP_TYP (write-only).
const SLP_EN: u16 = 1 << 13;
const SLP_TYP_SHIFT: u16 = 10;
const SLP_TYP_MASK: u16 = 0b111 << SLP_TYP_SHIFT;

/// The PM1a registers.
#[derive(Debug, Default)]
pub struct AcpiPm {
    status: u16,
    enable: u16,
    control: u16,
}

impl AcpiPm {
    /// The six register bytes as the guest reads them.
    fn bytes(&self) -> [u8; PORTS_LEN as usize] {
        let mut b = [0u8; PORTS_LEN as usize];
        b[0..2].copy_from_slice(&self.status.to_le_bytes());
        b[2..4].copy_from_slice(&self.enable.to_le_bytes());
        b[4..6].copy_from_slice(&((self.control | SCI_EN) & !SLP_EN).to_le_bytes());
        b
    }
}

/// The 16-bit register value after writing `data` at byte `offset` into
/// the register starting at byte `reg`; `None` when the write misses it.
fn merge(old: u16, reg: usize, offset: usize, data: &[u8]) -> Option<u16> {
    let mut b = old.to_le_bytes();
    let mut hit = false;
    for (i, byte) in data.iter().enumerate() {
        if let Some(at) = (offset + i).checked_sub(reg).filter(|at| *at < 2) {
            b[at] = *byte;
            hit = true;
        }
    }
    hit.then_some(u16::from_le_bytes(b))
}

impl BusDevice for AcpiPm {
    fn read(&mut self, _base: u64, offset: u64, data: &mut [u8]) {
        let regs = self.bytes();
        for (i, byte) in data.iter_mut().enumerate() {
            *byte = regs.get(offset as usize + i).copied().unwrap_or(0xff);
        }
    }

    fn write(&mut self, _base: u64, offset: u64, data: &[u8]) -> Option<Event> {
        let offset = offset as usize;
        if let Some(v) = merge(0, 0, offset, data) {
            // Write 1 to clear.
            self.status &= !v;
        }
        if let Some(v) = merge(self.enable, 2, offset, data) {
            self.enable = v;
        }
        let control = merge(self.control, 4, offset, data)?;
        self.control = control & !SLP_EN;
        let slp_typ = (control & SLP_TYP_MASK) >> SLP_TYP_SHIFT;
        (control & SLP_EN != 0 && slp_typ == SLP_TYP_S5).then_some(Event::PowerOff)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read16(pm: &mut AcpiPm, offset: u64) -> u16 {
        let mut b = [0u8; 2];
        pm.read(PM1A_EVT_PORT, offset, &mut b);
        u16::from_le_bytes(b)
    }

    #[test]
    fn s5_with_slp_en_powers_off() {
        let mut pm = AcpiPm::default();
        // What Unikraft does first: outw(0x604, 0x2000).
        assert_eq!(
            pm.write(PM1A_EVT_PORT, 4, &0x2000u16.to_le_bytes()),
            Some(Event::PowerOff)
        );
        // Linux writes SLP_TYP first, then SLP_TYP | SLP_EN.
        let typ = (SLP_TYP_S5 << SLP_TYP_SHIFT) | SCI_EN;
        assert_eq!(pm.write(PM1A_EVT_PORT, 4, &typ.to_le_bytes()), None);
        assert_eq!(read16(&mut pm, 4), typ);
        let go = (typ | SLP_EN).to_le_bytes();
        assert_eq!(pm.write(PM1A_EVT_PORT, 4, &go), Some(Event::PowerOff));
        // SLP_EN is write-only.
        assert_eq!(read16(&mut pm, 4) & SLP_EN, 0);
        // A byte write of the high half alone works too.
        assert_eq!(pm.write(PM1A_EVT_PORT, 5, &[go[1]]), Some(Event::PowerOff));
    }

    #[test]
    fn other_sleep_states_are_ignored() {
        let mut pm = AcpiPm::default();
        for typ in [1u16, 3, 4, 5, 7] {
            let v = (typ << SLP_TYP_SHIFT) | SLP_EN;
            assert_eq!(pm.write(PM1A_EVT_PORT, 4, &v.to_le_bytes()), None, "{typ}");
        }
    }

    #[test]
    fn sci_en_reads_set_and_status_clears_on_write() {
        let mut pm = AcpiPm::default();
        assert_eq!(read16(&mut pm, 4), SCI_EN);
        pm.status = 0x8001;
        assert_eq!(pm.write(PM1A_EVT_PORT, 0, &0x8000u16.to_le_bytes()), None);
        assert_eq!(read16(&mut pm, 0), 1);
        assert_eq!(pm.write(PM1A_EVT_PORT, 2, &0x0120u16.to_le_bytes()), None);
        assert_eq!(read16(&mut pm, 2), 0x0120);
        // A 32-bit read of the event block: status then enable.
        let mut b = [0u8; 4];
        pm.read(PM1A_EVT_PORT, 0, &mut b);
        assert_eq!(b, [1, 0, 0x20, 0x01]);
        // Past the end reads all-ones.
        let mut b = [0u8; 2];
        pm.read(PM1A_EVT_PORT, 5, &mut b);
        assert_eq!(b, [0, 0xff]);
    }
}
