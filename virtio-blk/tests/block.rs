//! The block device driven through a hand-written virtqueue: every request
//! type, read-only enforcement, and each kind of malformed chain.

mod common;

use common::*;
use std::sync::atomic::Ordering;
use ukvm_devices::virtio::VirtioDevice;
use ukvm_virtio_blk::device::{F_BLK_SIZE, F_FLUSH, F_RO, F_SEG_MAX};
use ukvm_virtio_blk::request::{S_IOERR, S_OK, S_UNSUPP, T_FLUSH, T_GET_ID, T_IN, T_OUT};
use vm_memory::Bytes;

#[test]
fn config_and_features() {
    let rig = Rig::new(8, true);
    assert_eq!(rig.dev.features(), F_SEG_MAX | F_BLK_SIZE | F_FLUSH | F_RO);
    assert_eq!(Rig::new(8, false).dev.features() & F_RO, 0);
    let mut cap = [0u8; 8];
    rig.dev.read_config(0, &mut cap);
    assert_eq!(u64::from_le_bytes(cap), 8);
    let mut w = [0u8; 4];
    rig.dev.read_config(20, &mut w);
    assert_eq!(u32::from_le_bytes(w), 512, "blk_size");
    rig.dev.read_config(12, &mut w);
    assert_eq!(u32::from_le_bytes(w), 254, "seg_max");
}

#[test]
fn read_spans_descriptors_without_copy_through_host_buffers() {
    let mut rig = Rig::new(8, true);
    let head = rig.request(T_IN, 2, &[(0x20000, 512), (0x30000, 1024)], true);
    rig.run();
    assert_eq!(rig.status(), S_OK);
    assert_eq!(rig.used_idx(), 1);
    assert_eq!(rig.used(0), (u32::from(head), 1536 + 1));
    let expect: Vec<u8> = (1024..1024 + 1536).map(pattern).collect();
    assert_eq!(rig.guest(0x20000, 512), expect[..512]);
    assert_eq!(rig.guest(0x30000, 1024), expect[512..]);
    assert_eq!(rig.irq.peek(), 1, "used-queue interrupt raised");
}

#[test]
fn write_reaches_the_image_unless_read_only() {
    let mut rig = Rig::new(8, false);
    rig.mem
        .write_slice(&[0xab; 512], vm_memory::GuestAddress(0x20000))
        .unwrap();
    rig.request(T_OUT, 7, &[(0x20000, 512)], false);
    rig.run();
    assert_eq!(rig.status(), S_OK);
    assert_eq!(rig.used(0).1, 1);
    assert!(rig.disk.data.lock().unwrap()[7 * 512..]
        .iter()
        .all(|&b| b == 0xab));

    let mut ro = Rig::new(8, true);
    let before = ro.disk.data.lock().unwrap().clone();
    ro.request(T_OUT, 0, &[(0x20000, 512)], false);
    ro.run();
    assert_eq!(ro.status(), S_IOERR);
    assert_eq!(*ro.disk.data.lock().unwrap(), before);
}

#[test]
fn flush_get_id_and_unknown_types() {
    let mut rig = Rig::new(8, false);
    rig.request(T_FLUSH, 0, &[], false);
    rig.run();
    assert_eq!(rig.status(), S_OK);
    assert_eq!(
        rig.disk.flushes.load(Ordering::SeqCst),
        1,
        "FLUSH reached the backend's fsync"
    );

    rig.request(T_GET_ID, 0, &[(0x20000, 20)], true);
    rig.run();
    assert_eq!(rig.status(), S_OK);
    assert_eq!(rig.guest(0x20000, 20), b"ukvm-test-serial-000");
    assert_eq!(rig.used(1).1, 21);

    rig.request(99, 0, &[], false);
    rig.run();
    assert_eq!(rig.status(), S_UNSUPP);
}

#[test]
fn out_of_range_and_odd_lengths_fail() {
    let mut rig = Rig::new(8, false);
    for (sector, len) in [(8, 512), (7, 1024), (u64::MAX, 512), (0, 100)] {
        rig.request(T_IN, sector, &[(0x20000, len)], true);
        rig.run();
        assert_eq!(rig.status(), S_IOERR, "sector {sector} len {len}");
    }
    assert_eq!(rig.dev.stats().failed, 4);
}

#[test]
fn wrong_direction_fails() {
    let mut rig = Rig::new(8, false);
    // IN whose data buffer the device may not write.
    rig.request(T_IN, 0, &[(0x20000, 512)], false);
    rig.run();
    assert_eq!(rig.status(), S_IOERR);
    // OUT whose data buffer is device-writable.
    rig.request(T_OUT, 0, &[(0x20000, 512)], true);
    rig.run();
    assert_eq!(rig.status(), S_IOERR);
    assert_eq!(rig.disk.data.lock().unwrap()[0], pattern(0));
}

#[test]
fn missing_status_or_header_fails() {
    let mut rig = Rig::new(8, false);
    // No writable status byte: nothing can be reported, used length 0.
    let head = rig.chain(&[(0x10000, 16, false), (0x20000, 512, false)]);
    rig.run();
    assert_eq!(rig.used(0), (u32::from(head), 0));
    // A header shorter than 16 bytes.
    rig.mem
        .write_obj(0xffu8, vm_memory::GuestAddress(0x10100))
        .unwrap();
    rig.chain(&[(0x10000, 8, false), (0x10100, 1, true)]);
    rig.run();
    assert_eq!(rig.status(), S_IOERR);
    // A lone status descriptor.
    rig.mem
        .write_obj(0xffu8, vm_memory::GuestAddress(0x10100))
        .unwrap();
    rig.chain(&[(0x10100, 1, true)]);
    rig.run();
    assert_eq!(rig.status(), S_IOERR);
    // Buffers outside guest memory.
    rig.request(T_IN, 0, &[(MEM_SIZE as u64 - 256, 512)], true);
    rig.run();
    assert_eq!(rig.status(), S_IOERR);
    assert_eq!(rig.used_idx(), 4);
}

#[test]
fn loops_and_overlong_chains_end() {
    let mut rig = Rig::new(8, false);
    // 0 -> 1 -> 0 -> ...: the chain never ends.
    rig.desc(0, 0x10000, 16, F_NEXT, 1);
    rig.desc(1, 0x10100, 1, F_NEXT | F_WRITE, 0);
    rig.publish(0);
    // A chain through every descriptor whose last still says NEXT.
    for i in 0..QSIZE {
        rig.desc(i, 0x10000, 16, F_NEXT, (i + 1) % QSIZE);
    }
    rig.publish(3);
    rig.run();
    assert_eq!(rig.used_idx(), 2);
    assert_eq!(rig.used(0).1, 0);
    assert_eq!(rig.used(1).1, 0);
    assert_eq!(rig.dev.stats().failed, 2);
}

#[test]
fn host_io_error_fails_request_and_device_keeps_going() {
    let mut rig = Rig::new(8, false);
    rig.disk.fail.store(true, Ordering::SeqCst);
    rig.request(T_IN, 0, &[(0x20000, 512)], true);
    rig.run();
    assert_eq!(rig.status(), S_IOERR);
    rig.disk.fail.store(false, Ordering::SeqCst);
    rig.request(T_IN, 0, &[(0x20000, 512)], true);
    rig.run();
    assert_eq!(rig.status(), S_OK);
    assert_eq!(
        rig.guest(0x20000, 4),
        (0..4).map(pattern).collect::<Vec<_>>()
    );
}

#[test]
fn reset_stops_serving() {
    let mut rig = Rig::new(8, false);
    rig.dev.reset();
    rig.request(T_IN, 0, &[(0x20000, 512)], true);
    rig.run();
    assert_eq!(rig.used_idx(), 0);
}
