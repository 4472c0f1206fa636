//! An Intel 8254 programmable interval timer at ports 0x40-0x43, and the
//! two bits of port 0x61 that belong to it (channel 2's gate in, its output
//! out), as PC guests program and poll them.
//!
//! Written from the 8254 datasheet (Intel 231164): three 16-bit down
//! counters at 1.193182 MHz; modes 0 (interrupt on terminal count), 2 (rate
//! generator), 3 (square wave) and 4 (software strobe) start on the count
//! write, modes 1 and 5 on a rising gate (only channel 2's gate moves);
//! counter latch and read-back commands; LSB, MSB and LSB-then-MSB access;
//! binary and BCD counting. The time base is the host's monotonic clock:
//! counters are computed from when they were loaded, never ticked, so the
//! model costs nothing while nobody looks. Channel 0's output drives IRQ 0;
//! [`Pit::next_irq`] says when it next rises, [`Pit::take_irqs`] how many
//! times it rose.
//!
//! Nonsense is contained and counted ([`PitStats`]): a count of 0 is the
//! datasheet's 2^16 (10^4 in BCD); modes 6 and 7 are modes 2 and 3; a
//! periodic channel-0 period under [`MIN_PERIOD_TICKS`] (one that would
//! fire up to a million times a second) is stretched to it.

use std::time::{Duration, Instant};

/// The counters' input clock, in Hz.
pub const PIT_HZ: u64 = 1_193_182;
/// Counter 0's data port (counters 1 and 2 follow).
pub const COUNTER0_PORT: u16 = 0x40;
/// The control word port.
pub const CONTROL_PORT: u16 = 0x43;
/// Ports 0x40-0x43.
pub const PORTS_LEN: u16 = 4;
/// Port 0x61 (NMI status and control): channel 2's gate and output.
pub const PORT_61: u16 = 0x61;
/// Shortest period channel 0 may fire at in modes 2 and 3: 100 us
/// (10 kHz), ten times the fastest tick (HZ=1000) guests use.
pub const MIN_PERIOD_TICKS: u64 = 119;

/// Port 0x61's refresh-request bit toggles every 15.085 us on a PC;
/// old delay loops count its toggles.
const REFRESH_NS: u128 = 15_085;

/// What guests programmed that the model contained.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PitStats {
    /// Counts of zero (taken as 2^16, or 10^4 in BCD).
    pub zero_counts: u64,
    /// Control words with reserved mode numbers 6 and 7.
    pub reserved_modes: u64,
    /// Periodic channel-0 periods stretched to [`MIN_PERIOD_TICKS`].
    pub clamped_periods: u64,
}

/// Which bytes of the count an access moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    Lsb,
    Msb,
    Both,
}

/// A latched count or status, read out byte by byte.
#[derive(Debug, Clone, Copy, Default)]
struct Latch {
    count: Option<u16>,
    /// The MSB of a latched LSB-then-MSB count is next.
    msb_next: bool,
    status: Option<u8>,
}

#[derive(Debug, Clone)]
struct Channel {
    mode: u8,
    bcd: bool,
    access: Access,
    /// The count in input ticks (1..=65536), as used for timing.
    count: u64,
    /// When counting started; `None` until a count (and for modes 1 and 5,
    /// a gate edge) arrived.
    loaded: Option<Instant>,
    /// A count was written but has not started (modes 1 and 5).
    armed: bool,
    write_msb_next: bool,
    read_msb_next: bool,
    lsb: u8,
    latch: Latch,
    null_count: bool,
    gate: bool,
    /// Output edges already reported by `take_irqs`.
    edges_seen: u64,
}

impl Channel {
    fn new(mode: u8, gate: bool) -> Self {
        Channel {
            mode,
            bcd: false,
            access: Access::Both,
            count: 0x10000,
            loaded: None,
            armed: false,
            write_msb_next: false,
            read_msb_next: false,
            lsb: 0,
            latch: Latch::default(),
            null_count: true,
            gate,
            edges_seen: 0,
        }
    }

    fn ticks(&self, now: Instant) -> u64 {
        self.loaded.map_or(0, |at| {
            let ns = now.saturating_duration_since(at).as_nanos();
            (ns * u128::from(PIT_HZ) / 1_000_000_000) as u64
        })
    }

    fn periodic(&self) -> bool {
        matches!(self.mode, 2 | 3)
    }

    /// The counting element's value now.
    fn value(&self, now: Instant) -> u16 {
        if self.loaded.is_none() {
            return to_register(self.count, self.bcd);
        }
        let d = self.ticks(now);
        let (c, modulus) = (self.count, if self.bcd { 10_000 } else { 0x10000 });
        let v = match self.mode {
            2 => c - d % c,
            // Decrements by two, twice per period.
            3 => c - (2 * d) % c,
            _ => (c + modulus - d % modulus) % modulus,
        };
        to_register(v, self.bcd)
    }

    /// The OUT pin now.
    fn output(&self, now: Instant) -> bool {
        if self.loaded.is_none() {
            // Mode 0 starts low; every other mode starts high.
            return self.mode != 0;
        }
        let (d, c) = (self.ticks(now), self.count);
        match self.mode {
            0 | 1 => d >= c,
            2 => d % c != c - 1,
            3 => d % c < c.div_ceil(2),
            _ => d != c,
        }
    }

    fn status(&self, now: Instant) -> u8 {
        let access = match self.access {
            Access::Lsb => 1,
            Access::Msb => 2,
            Access::Both => 3,
        };
        u8::from(self.output(now)) << 7
            | u8::from(self.null_count) << 6
            | access << 4
            | self.mode << 1
            | u8::from(self.bcd)
    }

    /// The tick count at which OUT rises for the `n`th time (n >= 1), if it
    /// ever does.
    fn edge_tick(&self, n: u64) -> Option<u64> {
        match self.mode {
            2 | 3 => Some(n * self.count),
            0 | 1 | 4 | 5 if n == 1 => Some(self.count),
            _ => None,
        }
    }

    fn start(&mut self, now: Instant) {
        self.loaded = Some(now);
        self.armed = false;
        self.edges_seen = 0;
        self.null_count = false;
    }
}

/// Returns `flag` and flips it: which byte of an LSB-then-MSB pair is next.
fn toggle(flag: &mut bool) -> bool {
    let was = *flag;
    *flag = !was;
    was
}

/// A register value (binary or BCD) from a count in ticks.
fn to_register(v: u64, bcd: bool) -> u16 {
    if bcd {
        let v = v % 10_000;
        ((v / 1000) << 12 | (v / 100 % 10) << 8 | (v / 10 % 10) << 4 | (v % 10)) as u16
    } else {
        (v & 0xffff) as u16
    }
}

/// A count in ticks from a register value; invalid BCD digits count as 9.
fn from_register(raw: u16, bcd: bool) -> u64 {
    if !bcd {
        return u64::from(raw);
    }
    (0..4).rev().fold(0, |acc, i| {
        acc * 10 + u64::from((raw >> (4 * i)) & 0xf).min(9)
    })
}

/// The three counters and port 0x61's timer bits.
#[derive(Debug, Clone)]
pub struct Pit {
    channels: [Channel; 3],
    speaker: bool,
    origin: Instant,
    stats: PitStats,
}

impl Pit {
    /// A PIT as firmware leaves it, with `origin` as the time base for
    /// port 0x61's refresh bit: channel 0 in mode 2, LSB-then-MSB, as
    /// SeaBIOS programs it (guests such as Solo5's virtio target only write
    /// counts and rely on that), but not counting until the guest writes a
    /// count, so that nothing ticks for guests that never use it; channels
    /// 1 and 2 in mode 3, as the chip resets in QEMU. Channels 0 and 1 have
    /// their gate tied high, channel 2's follows port 0x61 bit 0 (low).
    pub fn new(origin: Instant) -> Self {
        Pit {
            channels: [
                Channel::new(2, true),
                Channel::new(3, true),
                Channel::new(3, false),
            ],
            speaker: false,
            origin,
            stats: PitStats::default(),
        }
    }

    /// What the guest programmed that was contained so far.
    pub fn stats(&self) -> PitStats {
        self.stats
    }

    /// A read of ports 0x40-0x43 or 0x61.
    pub fn read(&mut self, port: u16, now: Instant) -> u8 {
        match port {
            PORT_61 => {
                let ch2 = &self.channels[2];
                let refresh = now.saturating_duration_since(self.origin).as_nanos() / REFRESH_NS;
                u8::from(ch2.gate)
                    | u8::from(self.speaker) << 1
                    | ((refresh & 1) as u8) << 4
                    | u8::from(ch2.output(now)) << 5
            }
            p if p < CONTROL_PORT => self.read_counter(usize::from(p - COUNTER0_PORT), now),
            // The control word register is write-only.
            _ => 0xff,
        }
    }

    fn read_counter(&mut self, i: usize, now: Instant) -> u8 {
        let ch = &mut self.channels[i];
        if let Some(status) = ch.latch.status.take() {
            return status;
        }
        let (value, msb) = match ch.latch.count {
            Some(v) => {
                let msb = match ch.access {
                    Access::Both => toggle(&mut ch.latch.msb_next),
                    a => a == Access::Msb,
                };
                if ch.access != Access::Both || msb {
                    ch.latch.count = None;
                }
                (v, msb)
            }
            None => {
                let msb = match ch.access {
                    Access::Both => toggle(&mut ch.read_msb_next),
                    a => a == Access::Msb,
                };
                (ch.value(now), msb)
            }
        };
        if msb {
            (value >> 8) as u8
        } else {
            value as u8
        }
    }

    /// A write to ports 0x40-0x43 or 0x61.
    pub fn write(&mut self, port: u16, val: u8, now: Instant) {
        match port {
            PORT_61 => {
                self.speaker = val & 2 != 0;
                self.set_gate2(val & 1 != 0, now);
            }
            CONTROL_PORT => self.control(val, now),
            p if p < CONTROL_PORT => self.write_counter(usize::from(p - COUNTER0_PORT), val, now),
            _ => {}
        }
    }

    fn set_gate2(&mut self, high: bool, now: Instant) {
        let ch = &mut self.channels[2];
        let rising = high && !ch.gate;
        ch.gate = high;
        // Modes 1, 2, 3 and 5 (re)start on a rising gate; 0 and 4 only
        // pause while it is low, which no guest relies on for channel 2.
        if rising && (ch.armed || ch.loaded.is_some()) && matches!(ch.mode, 1 | 2 | 3 | 5) {
            ch.start(now);
        }
    }

    fn control(&mut self, val: u8, now: Instant) {
        let select = val >> 6;
        if select == 3 {
            return self.read_back(val, now);
        }
        let ch = &mut self.channels[usize::from(select)];
        let access = match (val >> 4) & 3 {
            0 => {
                // Counter latch: the first latch holds until read.
                if ch.latch.count.is_none() {
                    ch.latch.count = Some(ch.value(now));
                    ch.latch.msb_next = false;
                }
                return;
            }
            1 => Access::Lsb,
            2 => Access::Msb,
            _ => Access::Both,
        };
        let mut mode = (val >> 1) & 7;
        if mode > 5 {
            self.stats.reserved_modes += 1;
            mode -= 4;
        }
        *ch = Channel {
            mode,
            bcd: val & 1 != 0,
            access,
            ..Channel::new(mode, ch.gate)
        };
    }

    /// The 8254's read-back command: latch count and/or status of any
    /// counters at once.
    fn read_back(&mut self, val: u8, now: Instant) {
        for (i, ch) in self.channels.iter_mut().enumerate() {
            if val & (2 << i) == 0 {
                continue;
            }
            if val & 0x20 == 0 && ch.latch.count.is_none() {
                ch.latch.count = Some(ch.value(now));
                ch.latch.msb_next = false;
            }
            if val & 0x10 == 0 && ch.latch.status.is_none() {
                ch.latch.status = Some(ch.status(now));
            }
        }
    }

    fn write_counter(&mut self, i: usize, val: u8, now: Instant) {
        let ch = &mut self.channels[i];
        let raw = match ch.access {
            Access::Lsb => u16::from(val),
            Access::Msb => u16::from(val) << 8,
            Access::Both if !ch.write_msb_next => {
                ch.lsb = val;
                ch.write_msb_next = true;
                return;
            }
            Access::Both => {
                ch.write_msb_next = false;
                u16::from(val) << 8 | u16::from(ch.lsb)
            }
        };
        let mut count = from_register(raw, ch.bcd);
        if count == 0 {
            self.stats.zero_counts += 1;
            count = if ch.bcd { 10_000 } else { 0x10000 };
        }
        if i == 0 && ch.periodic() && count < MIN_PERIOD_TICKS {
            self.stats.clamped_periods += 1;
            count = MIN_PERIOD_TICKS;
        }
        ch.count = count;
        if matches!(ch.mode, 1 | 5) {
            ch.armed = true;
            ch.null_count = true;
        } else {
            ch.start(now);
        }
    }

    /// When channel 0's output next rises (an IRQ 0 request), if it will.
    pub fn next_irq(&self) -> Option<Instant> {
        let ch = &self.channels[0];
        let at = ch.loaded?;
        let tick = ch.edge_tick(ch.edges_seen + 1)?;
        let ns = (u128::from(tick) * 1_000_000_000).div_ceil(u128::from(PIT_HZ));
        Some(at + Duration::from_nanos(ns as u64))
    }

    /// How many times channel 0's output rose since the last call (more
    /// than one when the caller was late: the requests coalesce).
    pub fn take_irqs(&mut self, now: Instant) -> u64 {
        let ch = &mut self.channels[0];
        if ch.loaded.is_none() {
            return 0;
        }
        let d = ch.ticks(now);
        let total = match ch.mode {
            2 | 3 => d / ch.count,
            _ => u64::from(d >= ch.count),
        };
        let new = total.saturating_sub(ch.edges_seen);
        ch.edges_seen = ch.edges_seen.max(total);
        new
    }
}

#[cfg(test)]
#[path = "pit_tests.rs"]
mod tests;
