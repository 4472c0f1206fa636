//! Unit tests of the 8259A pair: what a guest programs, what the processor
//! gets.

use super::*;

/// The PC initialisation every OS does: edge, cascade, 8086 mode, master
/// vectors at 0x20, slave at 0x28, nothing masked.
fn pc_pic() -> Pic {
    let mut pic = Pic::new();
    for (port, vals) in [
        (MASTER_PORT, [0x11, 0x20, 0x04, 0x01]),
        (SLAVE_PORT, [0x11, 0x28, 0x02, 0x01]),
    ] {
        pic.write(port, vals[0]);
        pic.write(port + 1, vals[1]);
        pic.write(port + 1, vals[2]);
        pic.write(port + 1, vals[3]);
    }
    pic.write(MASTER_PORT + 1, 0);
    pic.write(SLAVE_PORT + 1, 0);
    pic
}

const EOI: u8 = 0x20;

#[test]
fn an_edge_is_delivered_once_and_blocks_itself_until_eoi() {
    let mut pic = pc_pic();
    assert!(!pic.output());
    pic.pulse(0);
    assert!(pic.output());
    assert_eq!(pic.acknowledge(), 0x20);
    assert!(!pic.output());
    // In service: a new edge waits for the EOI.
    pic.pulse(0);
    assert!(!pic.output());
    pic.write(MASTER_PORT, 0x0b); // OCW3: read ISR
    assert_eq!(pic.read(MASTER_PORT), 1);
    pic.write(MASTER_PORT, EOI);
    assert_eq!(pic.read(MASTER_PORT), 0);
    assert!(pic.output());
    assert_eq!(pic.acknowledge(), 0x20);
    assert_eq!(pic.stats(), PicStats::default());
}

#[test]
fn fixed_priority_masks_and_irr_reads() {
    let mut pic = pc_pic();
    pic.write(MASTER_PORT + 1, 0x02); // mask IRQ1
    pic.pulse(3);
    pic.pulse(1);
    pic.write(MASTER_PORT, 0x0a); // OCW3: read IRR
    assert_eq!(pic.read(MASTER_PORT), 0x0a);
    assert_eq!(pic.read(MASTER_PORT + 1), 0x02);
    assert_eq!(pic.acknowledge(), 0x23);
    // IRQ1 is pending but masked; IRQ0 outranks IRQ3 in service.
    assert!(!pic.output());
    pic.pulse(0);
    assert!(pic.output());
    assert_eq!(pic.acknowledge(), 0x20);
    pic.write(MASTER_PORT + 1, 0);
    assert!(!pic.output(), "IRQ1 ranks below IRQ0 in service");
    pic.write(MASTER_PORT, EOI); // ends IRQ0, the highest in service
    assert!(pic.output(), "IRQ1 outranks IRQ3 in service");
    assert_eq!(pic.acknowledge(), 0x21);
    pic.write(MASTER_PORT, 0x0b);
    assert_eq!(pic.read(MASTER_PORT), 0x0a);
}

#[test]
fn slave_lines_come_through_the_cascade_and_need_two_eois() {
    let mut pic = pc_pic();
    pic.pulse(10);
    assert!(pic.output());
    assert_eq!(pic.acknowledge(), 0x2a);
    pic.write(MASTER_PORT, 0x0b);
    pic.write(SLAVE_PORT, 0x0b);
    assert_eq!(pic.read(MASTER_PORT), 1 << CASCADE_IRQ);
    assert_eq!(pic.read(SLAVE_PORT), 1 << 2);
    pic.pulse(9); // higher priority than 10 on the slave, but IR2 is in service
    assert!(!pic.output());
    pic.write(SLAVE_PORT, EOI);
    pic.write(MASTER_PORT, EOI);
    assert!(pic.output());
    assert_eq!(pic.acknowledge(), 0x29);
    // IRQ0 outranks the whole slave.
    pic.pulse(0);
    assert_eq!(pic.acknowledge(), 0x20);
    // Masking the cascade masks the slave.
    pic.write(MASTER_PORT, EOI);
    pic.write(SLAVE_PORT, EOI);
    pic.write(MASTER_PORT, EOI);
    pic.write(MASTER_PORT + 1, 1 << CASCADE_IRQ);
    pic.pulse(11);
    assert!(!pic.output());
    assert!(!pic.can_interrupt(11));
    pic.write(MASTER_PORT + 1, 0);
    assert!(pic.output());
    assert_eq!(pic.acknowledge(), 0x2b);
}

#[test]
fn specific_and_rotating_eoi_and_priority_rotation() {
    let mut pic = pc_pic();
    pic.pulse(1);
    assert_eq!(pic.acknowledge(), 0x21);
    pic.pulse(5);
    pic.write(MASTER_PORT, 0x60 | 5); // specific EOI of 5: not in service, no effect
    assert!(!pic.output());
    pic.write(MASTER_PORT, 0xa0); // rotate on non-specific EOI: IRQ1 becomes lowest
    assert_eq!(pic.acknowledge(), 0x25);
    pic.write(MASTER_PORT, 0x60 | 5);
    // Now IRQ2 has top priority and IRQ1 the lowest.
    pic.pulse(1);
    pic.pulse(3);
    assert_eq!(pic.acknowledge(), 0x23);
    pic.write(MASTER_PORT, 0xe0 | 3); // rotate on specific EOI: IRQ4 first now
    pic.write(MASTER_PORT, 0xc0 | 7); // set priority: IRQ0 first again
    pic.pulse(0);
    assert_eq!(pic.acknowledge(), 0x20);
}

#[test]
fn auto_eoi_leaves_nothing_in_service() {
    let mut pic = Pic::new();
    for v in [0x11, 0x20, 0x04, 0x03] {
        let port = if v == 0x11 {
            MASTER_PORT
        } else {
            MASTER_PORT + 1
        };
        pic.write(port, v);
    }
    pic.write(MASTER_PORT + 1, 0);
    pic.pulse(0);
    assert_eq!(pic.acknowledge(), 0x20);
    pic.write(MASTER_PORT, 0x0b);
    assert_eq!(pic.read(MASTER_PORT), 0);
    pic.pulse(0);
    assert!(pic.output());
}

#[test]
fn poll_mode_reads_the_request_as_the_acknowledge() {
    let mut pic = pc_pic();
    pic.write(MASTER_PORT, 0x0c); // OCW3: poll
    assert_eq!(pic.read(MASTER_PORT), 0);
    pic.pulse(4);
    pic.write(MASTER_PORT, 0x0c);
    assert_eq!(pic.read(MASTER_PORT), 0x84);
    assert!(!pic.output());
    pic.write(MASTER_PORT, 0x0b);
    assert_eq!(pic.read(MASTER_PORT), 1 << 4);
}

#[test]
fn a_request_gone_before_the_acknowledge_is_spurious_7_or_15() {
    let mut pic = pc_pic();
    pic.set_level_triggered(&[3, 10]);
    pic.set_level(3, true);
    pic.set_level(3, false);
    assert!(!pic.output());
    assert_eq!(pic.acknowledge(), 0x27);
    pic.write(MASTER_PORT, 0x0b);
    assert_eq!(
        pic.read(MASTER_PORT),
        0,
        "a spurious IRQ 7 is not in service"
    );
    // On the slave the edge into IR2 stays latched: IRQ 15.
    pic.set_level(10, true);
    pic.set_level(10, false);
    assert!(pic.output());
    assert_eq!(pic.acknowledge(), 0x2f);
    pic.write(SLAVE_PORT, 0x0b);
    assert_eq!(pic.read(SLAVE_PORT), 0);
    assert_eq!(pic.stats().spurious, 2);
}

#[test]
fn elcr_makes_lines_level_triggered_and_keeps_edge_only_lines_edge() {
    let mut pic = pc_pic();
    pic.write(ELCR_PORT, 0xff);
    pic.write(ELCR_PORT + 1, 0xff);
    assert_eq!(pic.read(ELCR_PORT), 0xf8);
    assert_eq!(pic.read(ELCR_PORT + 1), 0xde);
    pic.write(ELCR_PORT, 0);
    pic.write(ELCR_PORT + 1, 0);
    pic.set_level_triggered(&[0, 5, 11, 16]);
    assert_eq!((pic.read(ELCR_PORT), pic.read(ELCR_PORT + 1)), (0x20, 0x08));
    // A level line is requested again after EOI while still high.
    pic.set_level(11, true);
    assert_eq!(pic.acknowledge(), 0x2b);
    pic.write(SLAVE_PORT, EOI);
    pic.write(MASTER_PORT, EOI);
    assert!(pic.output());
    assert_eq!(pic.acknowledge(), 0x2b);
    pic.write(SLAVE_PORT, EOI);
    pic.write(MASTER_PORT, EOI);
    // The device lowers it (the ISR read) after the EOIs re-requested it:
    // the master latched the cascade's edge, so the processor gets the
    // slave's spurious IRQ 15, as from a real pair.
    pic.set_level(11, false);
    assert_eq!(pic.acknowledge(), 0x2f);
    assert!(!pic.output());
    pic.write(MASTER_PORT, EOI); // a spurious IRQ 15 takes the master's EOI
                                 // Lowered inside the handler, before the EOIs: nothing more.
    pic.set_level(11, true);
    assert_eq!(pic.acknowledge(), 0x2b);
    pic.set_level(11, false);
    pic.write(SLAVE_PORT, EOI);
    pic.write(MASTER_PORT, EOI);
    assert!(!pic.output());
}

#[test]
fn a_level_line_never_quieted_is_held_off_until_it_goes_low() {
    let mut pic = pc_pic();
    pic.set_level_triggered(&[5]);
    pic.set_level(5, true);
    assert_eq!(deliver_all(&mut pic, 0x25), LEVEL_STORM_LIMIT);
    assert_eq!(pic.stats().level_storms, 1);
    // Other lines still work.
    pic.pulse(1);
    assert_eq!(pic.acknowledge(), 0x21);
    pic.write(MASTER_PORT, EOI);
    // The device finally lowers and raises it: delivered again.
    pic.set_level(5, false);
    pic.set_level(5, true);
    assert_eq!(pic.acknowledge(), 0x25);
}

/// The interrupts a storming master line (vector `vector`) delivers, with
/// the guest EOIing each, until the PIC stops asking.
fn deliver_all(pic: &mut Pic, vector: u8) -> u32 {
    let mut delivered = 0;
    while pic.output() {
        assert_eq!(pic.acknowledge(), vector);
        pic.write(MASTER_PORT, EOI);
        delivered += 1;
        assert!(delivered <= LEVEL_STORM_LIMIT, "never held off");
    }
    delivered
}

#[test]
fn a_held_storm_is_let_through_once_per_release_until_the_line_goes_low() {
    let mut pic = pc_pic();
    pic.set_level_triggered(&[5]);
    pic.set_level(5, true);
    assert_eq!(deliver_all(&mut pic, 0x25), LEVEL_STORM_LIMIT);
    assert!(pic.has_held());
    // The monitor's rate limit: one delivery per release, then held
    // again, and still one storm.
    for _ in 0..3 {
        pic.release_held();
        assert_eq!(deliver_all(&mut pic, 0x25), 1);
        assert!(pic.has_held());
    }
    assert_eq!(pic.stats().level_storms, 1);
    // The device finally lowers it: no longer held, and a new raise is
    // an ordinary interrupt that needs another full storm to be held.
    pic.set_level(5, false);
    assert!(!pic.has_held());
    pic.set_level(5, true);
    assert_eq!(deliver_all(&mut pic, 0x25), LEVEL_STORM_LIMIT);
    assert_eq!(pic.stats().level_storms, 2);
}

#[test]
fn release_without_a_storm_changes_nothing() {
    let mut pic = pc_pic();
    pic.set_level_triggered(&[11]);
    pic.release_held();
    assert!(!pic.output() && !pic.has_held());
    pic.set_level(11, true);
    assert_eq!(pic.acknowledge(), 0x2b);
}

#[test]
fn edges_while_pending_coalesce_and_are_counted() {
    let mut pic = pc_pic();
    for _ in 0..1000 {
        pic.pulse(0);
    }
    assert_eq!(pic.acknowledge(), 0x20);
    assert!(!pic.output());
    assert_eq!(pic.stats().coalesced, 999);
}

#[test]
fn icw1_clears_masks_and_service_but_keeps_elcr_and_level_requests() {
    let mut pic = pc_pic();
    pic.set_level_triggered(&[5]);
    pic.pulse(0);
    pic.acknowledge();
    pic.write(MASTER_PORT + 1, 0xff);
    pic.set_level(5, true);
    pic.write(MASTER_PORT, 0x11);
    pic.write(MASTER_PORT + 1, 0x40);
    pic.write(MASTER_PORT + 1, 0x04);
    pic.write(MASTER_PORT + 1, 0x01);
    assert_eq!(pic.read(MASTER_PORT + 1), 0);
    assert_eq!(pic.read(ELCR_PORT), 0x20);
    assert_eq!(pic.acknowledge(), 0x45);
}

#[test]
fn special_mask_mode_lets_lower_priorities_through() {
    let mut pic = pc_pic();
    pic.pulse(3);
    assert_eq!(pic.acknowledge(), 0x23);
    pic.pulse(5);
    assert!(!pic.output());
    pic.write(MASTER_PORT + 1, 1 << 3);
    pic.write(MASTER_PORT, 0x68); // OCW3: set special mask
    assert!(pic.output());
    assert_eq!(pic.acknowledge(), 0x25);
    pic.write(MASTER_PORT, 0x48); // reset special mask
}

#[test]
fn firmware_masks_leave_only_the_cascade_open() {
    let mut pic = Pic::new();
    pic.mask_as_firmware_leaves_it();
    assert_eq!(pic.read(MASTER_PORT + 1), 0xfb);
    assert_eq!(pic.read(SLAVE_PORT + 1), 0xff);
    pic.pulse(0);
    pic.pulse(10);
    assert!(!pic.output());
    assert!(!pic.can_interrupt(0) && !pic.can_interrupt(10));
}

#[test]
fn can_interrupt_follows_masks_and_service() {
    let mut pic = pc_pic();
    assert!(pic.can_interrupt(0) && pic.can_interrupt(14));
    pic.write(MASTER_PORT + 1, 0x01);
    assert!(!pic.can_interrupt(0));
    pic.write(MASTER_PORT + 1, 0);
    pic.pulse(0);
    pic.acknowledge();
    assert!(!pic.can_interrupt(0), "IRQ0 in service blocks everything");
    assert!(!pic.can_interrupt(9));
    assert!(!pic.can_interrupt(16));
}

#[test]
fn single_mode_without_icw4_and_garbage_never_panics() {
    let mut pic = Pic::new();
    pic.write(MASTER_PORT, 0x12); // single, no ICW4
    pic.write(MASTER_PORT + 1, 0x30);
    pic.write(MASTER_PORT + 1, 0); // OCW1
    pic.pulse(6);
    assert_eq!(pic.acknowledge(), 0x36);
    for v in 0..=255u8 {
        for port in [MASTER_PORT, MASTER_PORT + 1, SLAVE_PORT, SLAVE_PORT + 1] {
            pic.write(port, v);
            pic.read(port);
        }
        pic.set_level(v % 20, v & 1 != 0);
        pic.acknowledge();
    }
}
