//! The CMOS real-time clock at 0x70/0x71 (index, data), which unikernels
//! read once at boot for wall-clock time. Time registers come from the host
//! clock (UTC) at each read, in BCD with a 24-hour clock, as a PC BIOS
//! leaves it. Other CMOS bytes read back what was written.

use crate::bus::{BusDevice, Event};

/// Index port.
pub const INDEX_PORT: u64 = 0x70;
/// Number of ports (index and data).
pub const PORTS_LEN: u64 = 2;

const REG_SECONDS: u8 = 0x00;
const REG_MINUTES: u8 = 0x02;
const REG_HOURS: u8 = 0x04;
const REG_WEEKDAY: u8 = 0x06;
const REG_DAY: u8 = 0x07;
const REG_MONTH: u8 = 0x08;
const REG_YEAR: u8 = 0x09;
const REG_A: u8 = 0x0a;
const REG_B: u8 = 0x0b;
const REG_C: u8 = 0x0c;
const REG_D: u8 = 0x0d;
const REG_CENTURY: u8 = 0x32;

/// Broken-down UTC time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DateTime {
    /// 0-59.
    pub second: u8,
    /// 0-59.
    pub minute: u8,
    /// 0-23.
    pub hour: u8,
    /// 1-7, Sunday = 1.
    pub weekday: u8,
    /// 1-31.
    pub day: u8,
    /// 1-12.
    pub month: u8,
    /// Full year.
    pub year: u16,
}

impl DateTime {
    /// Converts seconds since the Unix epoch (days-from-civil algorithm by
    /// Howard Hinnant; no libc call on the exit path).
    pub fn from_unix(secs: u64) -> Self {
        let days = (secs / 86400) as i64;
        let rem = secs % 86400;
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = (doy - (153 * mp + 2) / 5 + 1) as u8;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u8;
        let year = (yoe + era * 400 + i64::from(month <= 2)) as u16;
        DateTime {
            second: (rem % 60) as u8,
            minute: (rem / 60 % 60) as u8,
            hour: (rem / 3600) as u8,
            // 1970-01-01 was a Thursday (5 when Sunday = 1).
            weekday: ((days + 4).rem_euclid(7) + 1) as u8,
            day,
            month,
            year,
        }
    }
}

fn bcd(v: u8) -> u8 {
    ((v / 10) << 4) | (v % 10)
}

/// The CMOS device.
pub struct Rtc {
    index: u8,
    nvram: [u8; 128],
    now: fn() -> u64,
}

fn host_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Default for Rtc {
    fn default() -> Self {
        Self::with_clock(host_now)
    }
}

impl Rtc {
    /// An RTC reading time from `now` (seconds since the epoch).
    pub fn with_clock(now: fn() -> u64) -> Self {
        let mut nvram = [0u8; 128];
        nvram[usize::from(REG_A)] = 0x26; // 32.768 kHz base, 1024 Hz rate
        nvram[usize::from(REG_B)] = 0x02; // 24-hour, BCD, no interrupts
        nvram[usize::from(REG_D)] = 0x80; // valid RAM and time
        Rtc {
            index: 0,
            nvram,
            now,
        }
    }

    fn register(&self, index: u8) -> u8 {
        let t = || DateTime::from_unix((self.now)());
        match index {
            REG_SECONDS => bcd(t().second),
            REG_MINUTES => bcd(t().minute),
            REG_HOURS => bcd(t().hour),
            REG_WEEKDAY => bcd(t().weekday),
            REG_DAY => bcd(t().day),
            REG_MONTH => bcd(t().month),
            REG_YEAR => bcd((t().year % 100) as u8),
            REG_CENTURY => bcd((t().year / 100) as u8),
            // Update-in-progress is never set: the value is computed whole.
            REG_A => self.nvram[usize::from(REG_A)] & 0x7f,
            REG_C => 0,
            i => self.nvram[usize::from(i & 0x7f)],
        }
    }
}

impl BusDevice for Rtc {
    fn read(&mut self, _base: u64, offset: u64, data: &mut [u8]) {
        data.fill(0);
        data[0] = if offset == 0 {
            self.index
        } else {
            self.register(self.index)
        };
    }

    fn write(&mut self, _base: u64, offset: u64, data: &[u8]) -> Option<Event> {
        if offset == 0 {
            // Bit 7 is the NMI mask, not part of the index.
            self.index = data[0] & 0x7f;
        } else if !matches!(self.index, REG_C | REG_D) {
            self.nvram[usize::from(self.index)] = data[0];
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_unix_time() {
        // 2026-11-29 08:42:37 UTC, a Sunday.
        let t = DateTime::from_unix(1_795_941_757);
        assert_eq!((t.year, t.month, t.day), (2026, 11, 29));
        assert_eq!((t.hour, t.minute, t.second, t.weekday), (8, 42, 37, 1));
        let epoch = DateTime::from_unix(0);
        assert_eq!(
            (epoch.year, epoch.month, epoch.day, epoch.weekday),
            (1970, 1, 1, 5)
        );
        let leap = DateTime::from_unix(951_782_400); // 2000-02-29
        assert_eq!((leap.year, leap.month, leap.day), (2000, 2, 29));
    }

    #[test]
    fn reads_bcd_time_through_index_and_data() {
        let mut rtc = Rtc::with_clock(|| 1_795_941_757);
        let mut read = |index: u8| {
            rtc.write(INDEX_PORT, 0, &[index | 0x80]);
            let mut b = [0u8];
            rtc.read(INDEX_PORT, 1, &mut b);
            b[0]
        };
        assert_eq!(read(REG_YEAR), 0x26);
        assert_eq!(read(REG_MONTH), 0x11);
        assert_eq!(read(REG_DAY), 0x29);
        assert_eq!(read(REG_HOURS), 0x08);
        assert_eq!(read(REG_CENTURY), 0x20);
        assert_eq!(read(REG_B), 0x02);
        assert_eq!(read(REG_D), 0x80);
    }
}
