//! A cascaded pair of Intel 8259A programmable interrupt controllers, as on
//! every PC: the master at ports 0x20/0x21 with the slave on its IR2, the
//! slave at 0xA0/0xA1, and the EISA edge/level control registers (ELCR) at
//! 0x4D0/0x4D1 that make PCI lines level-triggered.
//!
//! Written from the 8259A datasheet (Intel 231468) and the PIIX4 datasheet
//! (ELCR); the behaviour where the datasheet leaves a choice follows QEMU's
//! and KVM's models, which the guests we run were tested against: ICW1-ICW4,
//! OCW1 (mask), OCW2 (non-specific, specific and rotating EOI, priority
//! rotation), OCW3 (IRR/ISR read, poll, special mask), auto-EOI, special
//! fully nested mode, and a spurious IRQ 7/15 when a request disappears
//! before the acknowledge cycle. LTIM (ICW1 bit 3) is ignored, as on PIIX4:
//! the ELCR decides.
//!
//! The model has no notion of time or threads: the monitor drives lines
//! with [`Pic::set_level`], asks [`Pic::output`] whether the INTR pin is
//! up, and runs the acknowledge cycle with [`Pic::acknowledge`].
//!
//! Guest nonsense is contained, not obeyed: a level-triggered line that is
//! acknowledged [`LEVEL_STORM_LIMIT`] times without ever going low (the
//! guest's handler EOIs but never quiets the device) is held off, as
//! Linux's "nobody cared" check disables such a line; from then until the
//! device lowers it, the line requests once per [`Pic::release_held`],
//! which the monitor calls at a bounded rate (Linux polls such a line
//! every 100 ms). Edges that arrive while one is already pending merge
//! into it. Both are counted ([`PicStats`]).

/// The master's command and data ports.
pub const MASTER_PORT: u16 = 0x20;
/// The slave's command and data ports.
pub const SLAVE_PORT: u16 = 0xa0;
/// The ELCR ports (master, then slave).
pub const ELCR_PORT: u16 = 0x4d0;
/// The master input the slave is wired to.
pub const CASCADE_IRQ: u8 = 2;
/// Acknowledges of a level line with no low in between before it is held
/// off as a storm (Linux's spurious-IRQ check uses 100,000 of which 99,900
/// unhandled; guests here run ~1,000x slower, so fewer are enough).
pub const LEVEL_STORM_LIMIT: u32 = 10_000;

/// ELCR bits that can be set: IRQ 0, 1, 2, 8 and 13 are edge-only (PIIX4).
const ELCR_MASK: [u8; 2] = [0xf8, 0xde];

/// What guests did that the model contained.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PicStats {
    /// Edges that arrived while the same request was still pending.
    pub coalesced: u64,
    /// Level lines held off as a storm.
    pub level_storms: u64,
    /// Acknowledge cycles with no request left (vector of IR7).
    pub spurious: u64,
}

/// One 8259A.
#[derive(Debug, Default, Clone)]
struct Chip {
    /// Input levels as last driven (for edge detection).
    lines: u8,
    irr: u8,
    imr: u8,
    isr: u8,
    /// Lowest-priority-rotation offset: IR`priority_add` has top priority.
    priority_add: u8,
    irq_base: u8,
    read_isr: bool,
    poll: bool,
    special_mask: bool,
    /// 0: operational; 1-3: expecting ICW2-ICW4.
    init_state: u8,
    init4: bool,
    single: bool,
    auto_eoi: bool,
    rotate_on_auto_eoi: bool,
    special_fully_nested: bool,
    elcr: u8,
    /// Level lines held off as storms, until they go low or are let
    /// through once by [`Pic::release_held`].
    held: u8,
    /// Level lines that stormed and have not gone low since: held again
    /// at their next acknowledge.
    storming: u8,
    /// Acknowledges per level line since it was last low.
    acks: [u32; 8],
}

impl Chip {
    /// Priority (0 highest) of the best request in `mask`, 8 if none.
    fn priority(&self, mask: u8) -> u8 {
        (0..8)
            .find(|p| mask & (1 << ((p + self.priority_add) & 7)) != 0)
            .unwrap_or(8)
    }

    /// The in-service bits that block lower priorities.
    fn blocking_isr(&self, is_master: bool) -> u8 {
        let mut isr = self.isr;
        if self.special_mask {
            isr &= !self.imr;
        }
        // Special fully nested: the slave may interrupt again while its
        // cascade input is in service.
        if is_master && self.special_fully_nested {
            isr &= !(1 << CASCADE_IRQ);
        }
        isr
    }

    /// The input this chip would signal now, if any.
    fn best(&self, is_master: bool) -> Option<u8> {
        let requests = self.irr & !self.imr & !self.held;
        let p = self.priority(requests);
        if p == 8 || p >= self.priority(self.blocking_isr(is_master)) {
            return None;
        }
        Some((p + self.priority_add) & 7)
    }

    fn set_level(&mut self, irq: u8, high: bool, stats: &mut PicStats) {
        let bit = 1 << irq;
        let was = self.lines & bit != 0;
        if high {
            self.lines |= bit;
        } else {
            self.lines &= !bit;
        }
        if self.elcr & bit != 0 {
            if high {
                self.irr |= bit;
            } else {
                self.irr &= !bit;
                self.held &= !bit;
                self.storming &= !bit;
                self.acks[usize::from(irq)] = 0;
            }
        } else if high && !was {
            if self.irr & bit != 0 {
                stats.coalesced += 1;
            }
            self.irr |= bit;
        }
    }

    /// The acknowledge cycle for input `irq`.
    fn intack(&mut self, irq: u8, stats: &mut PicStats) {
        let bit = 1 << irq;
        if self.auto_eoi {
            if self.rotate_on_auto_eoi {
                self.priority_add = (irq + 1) & 7;
            }
        } else {
            self.isr |= bit;
        }
        if self.elcr & bit == 0 {
            self.irr &= !bit;
        } else if self.storming & bit != 0 {
            // Let through once by `release_held`: held again.
            self.held |= bit;
        } else {
            let acks = &mut self.acks[usize::from(irq)];
            *acks += 1;
            if *acks >= LEVEL_STORM_LIMIT {
                *acks = 0;
                self.held |= bit;
                self.storming |= bit;
                stats.level_storms += 1;
            }
        }
    }

    /// ICW1: restart initialisation. The ELCR and the input levels are
    /// outside the 8259A and survive; so do level requests.
    fn icw1(&mut self, val: u8) {
        *self = Chip {
            lines: self.lines,
            irr: self.irr & self.elcr,
            elcr: self.elcr,
            held: self.held,
            storming: self.storming,
            acks: self.acks,
            init_state: 1,
            init4: val & 1 != 0,
            single: val & 2 != 0,
            ..Chip::default()
        };
    }

    fn eoi(&mut self, irq: u8, rotate: bool) {
        self.isr &= !(1 << irq);
        if rotate {
            self.priority_add = (irq + 1) & 7;
        }
    }

    fn write_command(&mut self, val: u8) {
        if val & 0x10 != 0 {
            self.icw1(val);
        } else if val & 0x08 != 0 {
            // OCW3
            if val & 0x04 != 0 {
                self.poll = true;
            }
            if val & 0x02 != 0 {
                self.read_isr = val & 1 != 0;
            }
            if val & 0x40 != 0 {
                self.special_mask = val & 0x20 != 0;
            }
        } else {
            self.ocw2(val);
        }
    }

    fn ocw2(&mut self, val: u8) {
        let level = val & 7;
        match val >> 5 {
            0 => self.rotate_on_auto_eoi = false,
            4 => self.rotate_on_auto_eoi = true,
            cmd @ (1 | 5) => {
                // Non-specific EOI: the highest-priority bit in service.
                let p = self.priority(self.isr);
                if p != 8 {
                    self.eoi((p + self.priority_add) & 7, cmd == 5);
                }
            }
            3 => self.eoi(level, false),
            6 => self.priority_add = (level + 1) & 7,
            7 => self.eoi(level, true),
            _ => {} // 2: no operation
        }
    }

    fn write_data(&mut self, val: u8) {
        match self.init_state {
            1 => {
                self.irq_base = val & 0xf8;
                self.init_state = match (self.single, self.init4) {
                    (false, _) => 2,
                    (true, true) => 3,
                    (true, false) => 0,
                };
            }
            2 => self.init_state = if self.init4 { 3 } else { 0 },
            3 => {
                self.special_fully_nested = val & 0x10 != 0;
                self.auto_eoi = val & 0x02 != 0;
                self.init_state = 0;
            }
            _ => self.imr = val,
        }
    }
}

/// The master/slave pair and their ELCRs.
#[derive(Debug, Clone)]
pub struct Pic {
    chips: [Chip; 2],
    stats: PicStats,
}

impl Default for Pic {
    fn default() -> Self {
        Self::new()
    }
}

impl Pic {
    /// A pair as after power-on: nothing masked, every line edge-triggered,
    /// not initialised (the guest programs ICW1-ICW4 first).
    pub fn new() -> Self {
        Pic {
            chips: [Chip::default(), Chip::default()],
            stats: PicStats::default(),
        }
    }

    /// Masks every line but the cascade, as SeaBIOS's `pic_reset` leaves
    /// the pair: a device's interrupt reaches the guest only once its
    /// driver unmasks the line (Solo5's bindings keep the masks they find
    /// and poll virtio-blk without a handler).
    pub fn mask_as_firmware_leaves_it(&mut self) {
        self.chips[0].imr = !(1 << CASCADE_IRQ);
        self.chips[1].imr = 0xff;
        self.cascade();
    }

    /// Makes `irqs` level-triggered in the ELCR, as firmware does for the
    /// PCI interrupt lines it assigns.
    pub fn set_level_triggered(&mut self, irqs: &[u8]) {
        for &irq in irqs.iter().filter(|&&irq| irq < 16) {
            let chip = &mut self.chips[usize::from(irq / 8)];
            chip.elcr |= (1 << (irq % 8)) & ELCR_MASK[usize::from(irq / 8)];
        }
        self.cascade();
    }

    /// Drives input `irq` (0-15) high or low. Edge-triggered inputs request
    /// on the rising edge, level-triggered ones while high.
    pub fn set_level(&mut self, irq: u8, high: bool) {
        if irq >= 16 || irq == CASCADE_IRQ {
            return;
        }
        self.chips[usize::from(irq / 8)].set_level(irq % 8, high, &mut self.stats);
        self.cascade();
    }

    /// A rising and a falling edge: one request on an edge-triggered line.
    pub fn pulse(&mut self, irq: u8) {
        self.set_level(irq, true);
        self.set_level(irq, false);
    }

    /// The slave's INT drives the master's IR2.
    fn cascade(&mut self) {
        let up = self.chips[1].best(false).is_some();
        let mut stats = PicStats::default();
        self.chips[0].set_level(CASCADE_IRQ, up, &mut stats);
        // The cascade is edge-triggered but re-evaluated on every change:
        // a slave request that stays up while IR2 is pending again keeps
        // IR2 requested.
        if up {
            self.chips[0].irr |= 1 << CASCADE_IRQ;
        }
    }

    /// Whether the master's INTR output is up: an interrupt is waiting for
    /// the processor to acknowledge it.
    pub fn output(&self) -> bool {
        self.chips[0].best(true).is_some()
    }

    /// The acknowledge cycle: returns the vector to deliver and moves the
    /// request in service. Without a request (it went away), the vector of
    /// IR7 on the chip concerned, with nothing put in service: a spurious
    /// interrupt, as the datasheet describes.
    pub fn acknowledge(&mut self) -> u8 {
        let vector = match self.chips[0].best(true) {
            Some(CASCADE_IRQ) => {
                let slave = match self.chips[1].best(false) {
                    Some(irq) => {
                        self.chips[1].intack(irq, &mut self.stats);
                        irq
                    }
                    None => {
                        self.stats.spurious += 1;
                        7
                    }
                };
                self.chips[0].intack(CASCADE_IRQ, &mut self.stats);
                self.chips[1].irq_base | slave
            }
            Some(irq) => {
                self.chips[0].intack(irq, &mut self.stats);
                self.chips[0].irq_base | irq
            }
            None => {
                self.stats.spurious += 1;
                self.chips[0].irq_base | 7
            }
        };
        self.cascade();
        vector
    }

    /// Whether a request on `irq` could interrupt the processor now: the
    /// line and (for slave lines) the cascade are unmasked and nothing of
    /// higher priority is in service. The monitor asks this to decide
    /// whether a halted guest can ever be woken.
    pub fn can_interrupt(&self, irq: u8) -> bool {
        if irq >= 16 {
            return false;
        }
        let (chip, line) = (usize::from(irq / 8), irq % 8);
        let mut probe = self.chips[chip].clone();
        probe.irr = 1 << line;
        probe.held &= !(1 << line);
        if probe.best(chip == 0) != Some(line) {
            return false;
        }
        chip == 0 || self.can_interrupt(CASCADE_IRQ)
    }

    /// Whether a line is held off as a storm.
    pub fn has_held(&self) -> bool {
        self.chips.iter().any(|c| c.held != 0)
    }

    /// Lets every line held off as a storm request once more; each is
    /// held again at its acknowledge, until its device lowers it. The
    /// monitor calls this at a bounded rate: the storm goes on at that
    /// rate, and a guest that services the device late still gets it.
    pub fn release_held(&mut self) {
        for chip in &mut self.chips {
            chip.held = 0;
        }
        self.cascade();
    }

    /// What the guest did that was contained so far.
    pub fn stats(&self) -> PicStats {
        self.stats
    }

    /// A port read (`port` is one of the six the pair decodes).
    pub fn read(&mut self, port: u16) -> u8 {
        if port == ELCR_PORT || port == ELCR_PORT + 1 {
            return self.chips[usize::from(port - ELCR_PORT)].elcr;
        }
        let i = usize::from(port == SLAVE_PORT || port == SLAVE_PORT + 1);
        let chip = &mut self.chips[i];
        let value = if chip.poll {
            chip.poll = false;
            self.poll(i)
        } else if port & 1 == 0 && chip.read_isr {
            chip.isr
        } else if port & 1 == 0 {
            chip.irr
        } else {
            chip.imr
        };
        self.cascade();
        value
    }

    /// Poll mode (OCW3 bit 2): the read is the acknowledge, without a
    /// vector: bit 7 set and the input number when a request is there.
    fn poll(&mut self, i: usize) -> u8 {
        match self.chips[i].best(i == 0) {
            Some(irq) => {
                self.chips[i].intack(irq, &mut self.stats);
                0x80 | irq
            }
            None => 0,
        }
    }

    /// A port write.
    pub fn write(&mut self, port: u16, val: u8) {
        match port {
            p if p == ELCR_PORT || p == ELCR_PORT + 1 => {
                let i = usize::from(p - ELCR_PORT);
                self.chips[i].elcr = val & ELCR_MASK[i];
            }
            p => {
                let chip = &mut self.chips[usize::from(p == SLAVE_PORT || p == SLAVE_PORT + 1)];
                if p & 1 == 0 {
                    chip.write_command(val);
                } else {
                    chip.write_data(val);
                }
            }
        }
        self.cascade();
    }
}

#[cfg(test)]
#[path = "pic_tests.rs"]
mod tests;
