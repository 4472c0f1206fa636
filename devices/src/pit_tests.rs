//! Unit tests of the 8254: counts against a clock we move by hand.

use super::*;

fn at(t0: Instant, us: u64) -> Instant {
    t0 + Duration::from_micros(us)
}

/// Ticks elapsed in `us` microseconds.
fn ticks(us: u64) -> u64 {
    us * PIT_HZ / 1_000_000
}

fn program(pit: &mut Pit, ch: u16, mode: u8, count: u16, now: Instant) {
    pit.write(CONTROL_PORT, (ch as u8) << 6 | 0x30 | mode << 1, now);
    pit.write(COUNTER0_PORT + ch, count as u8, now);
    pit.write(COUNTER0_PORT + ch, (count >> 8) as u8, now);
}

fn latch_read(pit: &mut Pit, ch: u16, now: Instant) -> u16 {
    pit.write(CONTROL_PORT, (ch as u8) << 6, now);
    let lo = pit.read(COUNTER0_PORT + ch, now);
    let hi = pit.read(COUNTER0_PORT + ch, now);
    u16::from(hi) << 8 | u16::from(lo)
}

#[test]
fn at_power_on_channel0_is_a_rate_generator_waiting_for_its_count() {
    let t0 = Instant::now();
    let mut pit = Pit::new(t0);
    assert_eq!(pit.next_irq(), None);
    assert_eq!(pit.take_irqs(at(t0, 1_000_000)), 0);
    // A count alone, as Solo5's cpu_block writes it: periodic.
    pit.write(COUNTER0_PORT, 0x9c, t0);
    pit.write(COUNTER0_PORT, 0x2e, t0); // 11932: 10 ms
    assert_eq!(pit.take_irqs(at(t0, 30_001)), 3);
    pit.write(CONTROL_PORT, 0xe2, t0);
    assert_eq!(pit.read(COUNTER0_PORT, t0) & 0x3f, 0x34);
}

#[test]
fn mode0_fires_once_at_terminal_count() {
    let t0 = Instant::now();
    let mut pit = Pit::new(t0);
    assert_eq!(pit.next_irq(), None);
    program(&mut pit, 0, 0, 11932, t0); // 10 ms
    let due = pit.next_irq().expect("armed");
    let ns = due.duration_since(t0).as_nanos();
    assert!((9_999_000..=10_001_000).contains(&ns), "{ns}");
    assert_eq!(pit.take_irqs(at(t0, 9_990)), 0);
    assert_eq!(pit.take_irqs(due), 1);
    assert_eq!(pit.take_irqs(at(t0, 50_000)), 0);
    assert_eq!(pit.next_irq(), None);
    // The counter wrapped and keeps counting down from 0xffff.
    let v = latch_read(&mut pit, 0, at(t0, 20_000));
    assert_eq!(u64::from(0x10000 - u32::from(v)), ticks(20_000) - 11932);
}

#[test]
fn mode2_is_periodic_and_late_edges_coalesce() {
    let t0 = Instant::now();
    let mut pit = Pit::new(t0);
    program(&mut pit, 0, 2, 1193, t0); // ~1 ms
    let mut last = t0;
    for k in 1..=5u64 {
        let due = pit.next_irq().expect("periodic");
        assert!(due > last);
        let expect = (k * 1193 * 1_000_000_000).div_ceil(PIT_HZ);
        assert_eq!(due.duration_since(t0).as_nanos() as u64, expect);
        assert_eq!(pit.take_irqs(due), 1);
        last = due;
    }
    // 10 periods late: one call reports all of them.
    let late = last + Duration::from_micros(10_000);
    assert_eq!(pit.take_irqs(late), 10);
    assert!(pit.next_irq().expect("periodic") > late);
    // The counter runs from the count down to 1.
    let v = latch_read(&mut pit, 0, at(t0, 500));
    assert_eq!(u64::from(v), 1193 - ticks(500) % 1193);
}

#[test]
fn mode3_and_mode4() {
    let t0 = Instant::now();
    let mut pit = Pit::new(t0);
    program(&mut pit, 0, 3, 0, t0); // 0 = 65536: 18.2 Hz, the BIOS tick
    assert_eq!(pit.stats().zero_counts, 1);
    let due = pit.next_irq().expect("periodic");
    assert_eq!(due.duration_since(t0).as_micros(), 54925);
    assert_eq!(pit.take_irqs(due + Duration::from_millis(55)), 2);
    program(&mut pit, 0, 4, 1000, t0);
    assert_eq!(pit.take_irqs(at(t0, 1_000)), 1);
    assert_eq!(pit.next_irq(), None);
}

#[test]
fn access_modes_latch_and_read_back() {
    let t0 = Instant::now();
    let mut pit = Pit::new(t0);
    // LSB only, then MSB only.
    pit.write(CONTROL_PORT, 0x10 | 2 << 1, t0);
    pit.write(COUNTER0_PORT, 200, t0);
    assert_eq!(pit.read(COUNTER0_PORT, t0), 200);
    pit.write(CONTROL_PORT, 0x20 | 2 << 1, t0);
    pit.write(COUNTER0_PORT, 0x12, t0);
    assert_eq!(pit.read(COUNTER0_PORT, t0), 0x12);
    // A latch holds its value while time passes, until read out.
    program(&mut pit, 0, 2, 60000, t0);
    pit.write(CONTROL_PORT, 0x00, at(t0, 1000));
    pit.write(CONTROL_PORT, 0x00, at(t0, 2000)); // ignored: already latched
    let lo = pit.read(COUNTER0_PORT, at(t0, 3000));
    let hi = pit.read(COUNTER0_PORT, at(t0, 4000));
    assert_eq!(
        u64::from(u16::from(hi) << 8 | u16::from(lo)),
        60000 - ticks(1000)
    );
    // Read-back: status and count of channel 0.
    pit.write(CONTROL_PORT, 0xc2, at(t0, 5000));
    let status = pit.read(COUNTER0_PORT, at(t0, 6000));
    assert_eq!(status & 0x3f, 0x34, "LSB-MSB, mode 2, binary: {status:#x}");
    assert_eq!(status & 0x40, 0, "count loaded");
    let v = u16::from(pit.read(COUNTER0_PORT, t0)) | u16::from(pit.read(COUNTER0_PORT, t0)) << 8;
    assert_eq!(u64::from(v), 60000 - ticks(5000));
    // The control port reads nothing.
    assert_eq!(pit.read(CONTROL_PORT, t0), 0xff);
}

#[test]
fn bcd_counts_in_decimal() {
    let t0 = Instant::now();
    let mut pit = Pit::new(t0);
    pit.write(CONTROL_PORT, 0x30 | 2 << 1 | 1, t0);
    pit.write(COUNTER0_PORT, 0x00, t0);
    pit.write(COUNTER0_PORT, 0x10, t0); // 1000 decimal
    let due = pit.next_irq().expect("periodic");
    assert_eq!(
        due.duration_since(t0).as_nanos() as u64,
        (1000 * 1_000_000_000u64).div_ceil(PIT_HZ)
    );
    assert_eq!(latch_read(&mut pit, 0, t0), 0x1000);
    assert_eq!(
        latch_read(
            &mut pit,
            0,
            t0 + Duration::from_nanos(1_000_000_000 * 3 / PIT_HZ + 1)
        ),
        0x0997
    );
}

#[test]
fn channel2_gate_and_output_through_port_61() {
    let t0 = Instant::now();
    let mut pit = Pit::new(t0);
    assert_eq!(pit.read(PORT_61, t0) & 0x03, 0, "gate low, speaker off");
    // Linux's TSC calibration: gate on, speaker off, mode 0, poll bit 5.
    pit.write(PORT_61, 0x01, t0);
    program(&mut pit, 2, 0, 11932, t0);
    assert_eq!(pit.read(PORT_61, at(t0, 9_000)) & 0x21, 0x01);
    assert_eq!(pit.read(PORT_61, at(t0, 10_001)) & 0x21, 0x21);
    // Channel 2 never interrupts.
    assert_eq!(pit.next_irq(), None);
    // Mode 1 starts on the gate's rising edge.
    pit.write(PORT_61, 0x00, t0);
    program(&mut pit, 2, 1, 1193, t0);
    assert_eq!(
        pit.read(PORT_61, at(t0, 5_000)) & 0x20,
        0x20,
        "not triggered: high"
    );
    pit.write(PORT_61, 0x01, at(t0, 5_000));
    assert_eq!(
        pit.read(PORT_61, at(t0, 5_500)) & 0x20,
        0,
        "one-shot pulse: low"
    );
    assert_eq!(pit.read(PORT_61, at(t0, 6_001)) & 0x20, 0x20);
    // The refresh bit toggles.
    let bits: std::collections::HashSet<u8> = (0..10)
        .map(|i| pit.read(PORT_61, at(t0, i * 15)) & 0x10)
        .collect();
    assert_eq!(bits.len(), 2);
}

#[test]
fn nonsense_is_contained_and_counted() {
    let t0 = Instant::now();
    let mut pit = Pit::new(t0);
    // A 1-tick rate generator would fire 1.19 million times a second.
    program(&mut pit, 0, 2, 1, t0);
    assert_eq!(pit.stats().clamped_periods, 1);
    let due = pit.next_irq().expect("periodic");
    assert!(due.duration_since(t0) >= Duration::from_micros(99));
    assert_eq!(pit.take_irqs(at(t0, 1_000_000)), PIT_HZ / MIN_PERIOD_TICKS);
    // Reserved modes 6 and 7 are 2 and 3.
    pit.write(CONTROL_PORT, 0x30 | 6 << 1, t0);
    pit.write(CONTROL_PORT, 0x30 | 7 << 1, t0);
    assert_eq!(pit.stats().reserved_modes, 2);
    pit.write(COUNTER0_PORT, 0xa9, t0);
    pit.write(COUNTER0_PORT, 0x04, t0); // 1193
    pit.write(CONTROL_PORT, 0xe2, at(t0, 10));
    assert_eq!(pit.read(COUNTER0_PORT, t0) & 0x0e, 3 << 1);
    // Mode 1 on channel 0 (its gate never rises) never fires.
    program(&mut pit, 0, 1, 100, t0);
    assert_eq!(pit.next_irq(), None);
    assert_eq!(pit.take_irqs(at(t0, 1_000_000)), 0);
    // Zero in one-shot mode is 65536 ticks.
    program(&mut pit, 0, 0, 0, t0);
    assert_eq!(
        pit.next_irq()
            .expect("one-shot")
            .duration_since(t0)
            .as_micros(),
        54925
    );
    // Any byte to any port, in any order: no panic.
    for v in 0..=255u8 {
        for port in [0x40, 0x41, 0x42, 0x43, 0x61] {
            pit.write(port, v, at(t0, u64::from(v)));
            pit.read(port, at(t0, u64::from(v) * 7));
        }
        pit.next_irq();
        pit.take_irqs(at(t0, u64::from(v) * 1000));
    }
}
