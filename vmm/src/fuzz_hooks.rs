//! Monitor internals a guest controls, opened to the `ukvm-fuzz` crate:
//! the Solo5 hvt hypercall handlers, driven without a VM. Not a stable
//! API.

use crate::hvt::hypercalls::{BlockDev, Hypercalls};
use std::sync::{Arc, Mutex};
use ukvm_devices::irq::IrqTrigger;
use ukvm_devices::serial::Serial;
use ukvm_devices::BusDevice;
use ukvm_virtio_blk::Disk;
use vm_memory::GuestMemoryMmap;

/// The hvt hypercall device over `mem`, with `disks` attached at their
/// manifest handles and the console going to `console`. Write the
/// argument structure's guest address to offset N for hypercall N.
pub fn hvt_hypercalls(
    mem: GuestMemoryMmap,
    console: Box<dyn std::io::Write + Send>,
    disks: Vec<(u64, Disk)>,
) -> Box<dyn BusDevice> {
    let serial = Arc::new(Mutex::new(Serial::new(console, IrqTrigger::disconnected())));
    let blocks = disks
        .into_iter()
        .map(|(h, d)| (h, BlockDev::new(d)))
        .collect();
    Box::new(Hypercalls::new(
        mem,
        serial,
        blocks,
        Arc::new([]),
        Arc::default(),
    ))
}
