use super::*;
use crate::virtio::interrupt::tests::Recorder;
use crate::virtio::{queue_events, TYPE_BLOCK};
use vm_memory::GuestAddress;
use vmm_sys_util::eventfd::EventFd;

/// ready, size, descriptor table, available ring, used ring.
type QueueView = (bool, u16, u64, u64, u64);

#[derive(Default)]
struct Seen {
    activated: Option<(u64, Vec<QueueView>)>,
    resets: usize,
}

struct Mock {
    evts: Vec<EventFd>,
    seen: Arc<Mutex<Seen>>,
    config: [u8; 8],
}

impl VirtioDevice for Mock {
    fn device_type(&self) -> u32 {
        TYPE_BLOCK
    }
    fn pci_class(&self) -> u32 {
        0x01_80_00
    }
    fn features(&self) -> u64 {
        (1 << 9) | (1 << 2)
    }
    fn queue_max_sizes(&self) -> &[u16] {
        &[16, 8]
    }
    fn queue_events(&self) -> &[EventFd] {
        &self.evts
    }
    fn read_config(&self, offset: u64, data: &mut [u8]) {
        for (i, b) in data.iter_mut().enumerate() {
            *b = self.config.get(offset as usize + i).copied().unwrap_or(0);
        }
    }
    fn write_config(&mut self, offset: u64, data: &[u8]) {
        if let Some(b) = self.config.get_mut(offset as usize) {
            *b = data[0];
        }
    }
    fn activate(
        &mut self,
        _mem: GuestMemoryMmap,
        features: u64,
        queues: Vec<Queue>,
        _interrupt: Arc<Interrupt>,
    ) -> Result<(), ActivateError> {
        let qs = queues
            .iter()
            .map(|q| {
                (
                    q.ready(),
                    q.size(),
                    q.desc_table(),
                    q.avail_ring(),
                    q.used_ring(),
                )
            })
            .collect();
        self.seen.lock().unwrap().activated = Some((features, qs));
        Ok(())
    }
    fn reset(&mut self) {
        self.seen.lock().unwrap().resets += 1;
    }
}

const IO: u64 = 0x6000;
const MMIO: u64 = 0xc000_0000;

struct Fixture {
    pci: VirtioPci,
    seen: Arc<Mutex<Seen>>,
    line: Recorder,
    dev: Arc<Mutex<Mock>>,
}

fn fixture() -> Fixture {
    let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap();
    let seen = Arc::new(Mutex::new(Seen::default()));
    let dev = Arc::new(Mutex::new(Mock {
        evts: queue_events(2).unwrap(),
        seen: seen.clone(),
        config: [1, 2, 3, 4, 5, 6, 7, 8],
    }));
    let line = Recorder::default();
    let res = Resources {
        io_base: IO as u16,
        mmio_base: MMIO as u32,
        irq: 5,
    };
    let pci = VirtioPci::new(dev.clone(), mem, res, Box::new(line.clone())).unwrap();
    Fixture {
        pci,
        seen,
        line,
        dev,
    }
}

fn rd(p: &mut VirtioPci, base: u64, off: u64, len: usize) -> u64 {
    let mut d = [0u8; 8];
    p.read(base, off, &mut d[..len]);
    u64::from_le_bytes(d)
}

fn wr(p: &mut VirtioPci, base: u64, off: u64, len: usize, v: u64) {
    p.write(base, off, &v.to_le_bytes()[..len]);
}

#[test]
fn pci_identity_is_transitional_block() {
    let f = fixture();
    let mut d = [0u8; 4];
    f.pci.config().read(0, &mut d);
    assert_eq!(u32::from_le_bytes(d), 0x1001_1af4);
    f.pci.config().read(0x2c, &mut d);
    assert_eq!(u32::from_le_bytes(d), 0x0002_1af4);
    f.pci.config().read(0x10, &mut d);
    assert_eq!(u32::from_le_bytes(d), 0x6001);
    f.pci.config().read(0x3c, &mut d[..2]);
    assert_eq!(&d[..2], &[5, 1]);
    // The capability chain lists common, notify, ISR and device config.
    let mut types = vec![];
    let mut p = [0u8; 1];
    f.pci.config().read(0x34, &mut p);
    while p[0] != 0 {
        let mut cap = [0u8; 16];
        f.pci.config().read(usize::from(p[0]), &mut cap);
        assert_eq!(cap[0], 0x09);
        assert_eq!(cap[4], 1, "in BAR1");
        types.push(cap[3]);
        p[0] = cap[1];
    }
    assert_eq!(types, vec![1, 2, 3, 4]);
}

#[test]
fn legacy_negotiation_and_queue_setup() {
    let mut f = fixture();
    let p = &mut f.pci;
    assert_eq!(
        rd(p, IO, 0, 4),
        (1 << 9) | (1 << 2),
        "no VERSION_1 on legacy"
    );
    wr(p, IO, 18, 1, 1 | 2);
    wr(p, IO, 4, 4, 1 << 9);
    wr(p, IO, 14, 2, 1);
    assert_eq!(rd(p, IO, 12, 2), 8, "queue 1 max size");
    wr(p, IO, 14, 2, 0);
    assert_eq!(rd(p, IO, 12, 2), 16);
    wr(p, IO, 8, 4, 0x10); // PFN: rings at 64 KiB
    assert_eq!(rd(p, IO, 8, 4), 0x10);
    wr(p, IO, 18, 1, 1 | 2 | 4);
    let seen = f.seen.lock().unwrap();
    let (features, qs) = seen.activated.clone().expect("activated");
    assert_eq!(features, 1 << 9);
    // 16 descriptors (256 bytes), avail ring, used ring on the next page.
    assert_eq!(qs[0], (true, 16, 0x10000, 0x10100, 0x11000));
    assert!(!qs[1].0, "queue 1 never set up");
    drop(seen);
    // Device configuration follows the 20-byte header.
    assert_eq!(rd(p, IO, 20, 4), 0x0403_0201);
    assert_eq!(rd(p, IO, 18, 1), 7);
}

#[test]
fn legacy_notify_and_isr() {
    let mut f = fixture();
    wr(&mut f.pci, IO, 16, 2, 1);
    assert_eq!(f.dev.lock().unwrap().evts[1].read().unwrap(), 1);
    assert!(f.dev.lock().unwrap().evts[0].read().is_err(), "not kicked");
    f.pci.interrupt().signal_used_queue();
    assert_eq!(*f.line.0.lock().unwrap(), vec![true]);
    assert_eq!(rd(&mut f.pci, IO, 19, 1), 1);
    assert_eq!(rd(&mut f.pci, IO, 19, 1), 0, "read clears");
    assert_eq!(*f.line.0.lock().unwrap(), vec![true, false]);
}

#[test]
fn modern_negotiation_and_queue_setup() {
    let mut f = fixture();
    let p = &mut f.pci;
    wr(p, MMIO, 0, 4, 1);
    assert_eq!(rd(p, MMIO, 4, 4), 1, "VERSION_1 in the high word");
    wr(p, MMIO, 0, 4, 0);
    assert_eq!(rd(p, MMIO, 4, 4), (1 << 9) | (1 << 2));
    assert_eq!(rd(p, MMIO, 18, 2), 2, "num_queues");
    // Accepting a feature that was not offered fails FEATURES_OK.
    wr(p, MMIO, 8, 4, 0);
    wr(p, MMIO, 12, 4, 1 << 3);
    wr(p, MMIO, 20, 1, 1 | 2 | 8);
    assert_eq!(rd(p, MMIO, 20, 1), 3);
    wr(p, MMIO, 12, 4, 1 << 9);
    wr(p, MMIO, 8, 4, 1);
    wr(p, MMIO, 12, 4, 1);
    wr(p, MMIO, 20, 1, 1 | 2 | 8);
    assert_eq!(rd(p, MMIO, 20, 1), 11, "FEATURES_OK kept");
    wr(p, MMIO, 22, 2, 0);
    assert_eq!(rd(p, MMIO, 24, 2), 16);
    assert_eq!(rd(p, MMIO, 26, 2), 0xffff, "no MSI-X");
    wr(p, MMIO, 24, 2, 8);
    wr(p, MMIO, 32, 4, 0x2000);
    wr(p, MMIO, 36, 4, 0);
    wr(p, MMIO, 40, 8, 0x3000);
    wr(p, MMIO, 48, 4, 0x4000);
    wr(p, MMIO, 52, 4, 0);
    wr(p, MMIO, 28, 2, 1);
    assert_eq!(rd(p, MMIO, 32, 8), 0x2000);
    assert_eq!(rd(p, MMIO, 30, 2), 0, "notify offset of queue 0");
    wr(p, MMIO, 20, 1, 1 | 2 | 8 | 4);
    let (features, qs) = f.seen.lock().unwrap().activated.clone().unwrap();
    assert_eq!(features, F_VERSION_1 | 1 << 9);
    assert_eq!(qs[0], (true, 8, 0x2000, 0x3000, 0x4000));
    // Notification of queue 1 through its slot; device config at 0x2000.
    let addr = f.pci.resources().notify_addr(1);
    f.pci.write(MMIO, addr - MMIO, &1u16.to_le_bytes());
    assert_eq!(f.dev.lock().unwrap().evts[1].read().unwrap(), 1);
    assert_eq!(rd(&mut f.pci, MMIO, 0x2000 + 4, 2), 0x0605);
    f.pci.interrupt().signal_config_change();
    assert_eq!(rd(&mut f.pci, MMIO, 0x1000, 1), 2);
}

#[test]
fn reset_forgets_everything() {
    let mut f = fixture();
    let p = &mut f.pci;
    wr(p, IO, 4, 4, 1 << 2);
    wr(p, IO, 8, 4, 0x10);
    wr(p, IO, 18, 1, 7);
    p.interrupt().signal_used_queue();
    wr(p, IO, 18, 1, 0);
    assert_eq!(f.seen.lock().unwrap().resets, 1);
    assert_eq!(rd(p, IO, 8, 4), 0);
    assert_eq!(rd(p, IO, 4, 4), 0);
    assert_eq!(rd(p, IO, 18, 1), 0);
    assert_eq!(*f.line.0.lock().unwrap(), vec![true, false], "line lowered");
}

#[test]
fn rings_outside_memory_need_reset() {
    let mut f = fixture();
    let p = &mut f.pci;
    wr(p, IO, 8, 4, 0x200); // 2 MiB: past the 1 MiB of guest memory
    wr(p, IO, 18, 1, 7);
    assert!(f.seen.lock().unwrap().activated.is_none());
    assert_eq!(rd(p, IO, 18, 1) as u8 & status::DEVICE_NEEDS_RESET, 0x40);
}
