/*
 * blk: drives ukvm's virtio-blk disks the way Solo5's virtio target and
 * Rumprun do: scan PCI bus 0 for vendor 0x1AF4 subsystem 2, take the legacy
 * register block from I/O BAR0 and the IRQ from Interrupt Line, legacy
 * init (reset, ACK, DRIVER, features, queue PFN, DRIVER_OK).
 *
 * Modes (command line):
 *   mode=iso    every disk: read sector 64 (ISO offset 32 KiB), print the
 *               primary volume descriptor's "CD001" and label; first disk:
 *               GET_ID, then a write that must be refused.
 *   mode=rw     first disk: write a 4 KiB pattern at sector 8, FLUSH, read
 *               it back, read past the end (must fail).
 *   mode=irqlat first disk: count=N (default 20) reads, each completed by
 *               interrupt, each printing "blk0: irqlat tsc=HEX", the TSC
 *               from before the queue notify to the handler's entry (the
 *               device's work, its raise, the monitor's delivery), and
 *               "blk0: tsc_khz=N" first (scripts/irq-latency.sh).
 *   mode=irq    first disk: one read completed by interrupt (PIC line from
 *               0x3C), not by polling; waited for in hlt, or with "spin"
 *               in a loop with interrupts on that never exits.
 *   mode=modern first disk, through the virtio 1.x interface instead: walk
 *               the vendor capabilities to the memory BAR's common config,
 *               negotiate VERSION_1 (FEATURES_OK), a 16-entry queue, MMIO
 *               notification; then read and print the ISO label.
 *   mode=bench  first disk: ready (port 0x510), then count=N reads of
 *               size=BYTES each, polled, then exit at once (no output in
 *               between, so --timings shows the reads alone).
 *   mode=hostile what a compromised driver does (hostile.h), the first
 *               disk read-write, the second read-only; after each attack
 *               a good read of the first disk must still work.
 * Exit status 0 (or exit=N) on success, 1 on any failure.
 */
#include "common.h"
#include "irq.h"
#include "pci.h"
#include "virtio.h"

#define VIRTIO_BLK_F_SEG_MAX  (1u << 2)
#define VIRTIO_BLK_F_RO       (1u << 5)
#define VIRTIO_BLK_F_BLK_SIZE (1u << 6)
#define VIRTIO_BLK_F_FLUSH    (1u << 9)

#define T_IN     0
#define T_OUT    1
#define T_FLUSH  4
#define T_GET_ID 8

#define MAX_DISKS 4
#define BUF_SIZE  (64 * 1024)

struct disk {
    struct pci_virtio pci;
    struct virtq q;
    u32 features;
    u64 capacity;           /* sectors */
};

static struct disk disks[MAX_DISKS];
static struct {
    u32 type;
    u32 reserved;
    u64 sector;
} hdr;
static volatile u8 status;
static u8 buf[BUF_SIZE] __attribute__((aligned(4096)));
static u8 buf2[4096] __attribute__((aligned(4096)));
static volatile int interrupts;

static void fail(const char *what)
{
    kprintf("blk: FAIL %s\n", what);
    exit_exact(1);
}

static int disk_init(int index, struct disk *d)
{
    if (!pci_find_virtio(VIRTIO_ID_BLOCK, index, &d->pci))
        return 0;
    u16 io = d->pci.io_base;
    u32 host = virtio_begin(io);
    d->features = host & (VIRTIO_BLK_F_RO | VIRTIO_BLK_F_SEG_MAX |
                          VIRTIO_BLK_F_BLK_SIZE | VIRTIO_BLK_F_FLUSH);
    virtio_set_features(io, d->features);
    if (!virtq_init(&d->q, io, 0))
        fail("queue size");
    virtio_ready(io);
    d->capacity = inl_p(io + VIRTIO_CONFIG) | ((u64)inl_p(io + VIRTIO_CONFIG + 4) << 32);
    return 1;
}

/* Queues one request (header, optional data, status) without waiting. */
static void submit(struct disk *d, u32 type, u64 sector, void *data, u32 len)
{
    struct vring_desc *desc = d->q.desc;
    hdr.type = type;
    hdr.reserved = 0;
    hdr.sector = sector;
    status = 0xFF;
    desc[0] = (struct vring_desc){ (u32)&hdr, 16, VRING_DESC_F_NEXT, 1 };
    u16 s = 1;
    if (len) {
        u16 dir = (type == T_IN || type == T_GET_ID) ? VRING_DESC_F_WRITE : 0;
        desc[1] = (struct vring_desc){ (u32)data, len, VRING_DESC_F_NEXT | dir, 2 };
        s = 2;
    }
    desc[s] = (struct vring_desc){ (u32)&status, 1, VRING_DESC_F_WRITE, 0 };
    virtq_push(&d->q, 0);
    virtq_kick(&d->q);
}

/* One request, polling the used ring. Returns the status byte. */
static u8 request(struct disk *d, u32 type, u64 sector, void *data, u32 len)
{
    u32 id, used;
    submit(d, type, sector, data, len);
    while (!virtq_pop(&d->q, &id, &used))
        ;
    return status;
}

static void print_label(int i, struct disk *d)
{
    u8 st = request(d, T_IN, 64, buf, 2048);
    if (st != 0)
        fail("read of sector 64");
    char id[6] = { 0 }, label[33] = { 0 };
    memcpy(id, buf + 1, 5);
    memcpy(label, buf + 40, 32);
    for (int k = 31; k >= 0 && label[k] == ' '; k--)
        label[k] = 0;
    kprintf("blk%d: pvd type %u id %s label %s\n", i, buf[0], id, label);
}

static void mode_iso(int n)
{
    for (int i = 0; i < n; i++)
        print_label(i, &disks[i]);
    struct disk *d = &disks[0];
    memset(buf2, 0, 21);
    if (request(d, T_GET_ID, 0, buf2, 20) != 0)
        fail("GET_ID");
    kprintf("blk0: id %s\n", (char *)buf2);
    memset(buf, 0x55, 512);
    u8 st = request(d, T_OUT, 64, buf, 512);
    if (st == 0)
        fail("write to a read-only disk succeeded");
    kprintf("blk0: write refused, status %u\n", st);
}

static void mode_rw(void)
{
    struct disk *d = &disks[0];
    for (u32 k = 0; k < 4096; k++)
        buf[k] = (u8)(k * 7 + 3);
    memcpy(buf, "UKVMBLK!", 8);
    if (request(d, T_OUT, 8, buf, 4096) != 0)
        fail("write");
    if (request(d, T_FLUSH, 0, NULL, 0) != 0)
        fail("flush");
    memset(buf2, 0, 4096);
    if (request(d, T_IN, 8, buf2, 4096) != 0)
        fail("read back");
    if (memcmp(buf, buf2, 4096) != 0)
        fail("read back differs");
    kprintf("blk0: wrote 4096 bytes at sector 8, flushed, read back ok\n");
    u8 st = request(d, T_IN, d->capacity, buf2, 512);
    if (st == 0)
        fail("read past the end succeeded");
    kprintf("blk0: read past end refused, status %u\n", st);
}

static volatile u64 irq_tsc;

static void on_irq(void *arg)
{
    struct disk *d = arg;
    irq_tsc = rdtsc();
    /* Reading the ISR acknowledges and lowers the line. */
    if (inb(d->pci.io_base + VIRTIO_ISR) & 1)
        interrupts++;
}

/* One 512-byte read, waited for with sti; hlt until its interrupt, or
 * (spin) with interrupts on in a loop that never exits to the monitor,
 * which must then kick the vCPU out of the guest to deliver it. Returns the
 * used length. */
static u32 read_by_interrupt(struct disk *d, int spin)
{
    irq_disable();
    interrupts = 0;
    submit(d, T_IN, 0, buf, 512);
    if (spin) {
        irq_enable();
        while (!interrupts)
            ;
    }
    while (!interrupts)
        irq_wait();
    irq_disable();
    u32 id, used;
    if (!virtq_pop(&d->q, &id, &used) || status != 0)
        fail("interrupt without a completed request");
    return used;
}

static void mode_irq(int spin)
{
    struct disk *d = &disks[0];
    irq_init();
    irq_register(d->pci.irq, on_irq, d);
    u32 used = read_by_interrupt(d, spin);
    kprintf("blk0: read completed by interrupt on irq %u (used len %u)\n",
            d->pci.irq, used);
}

/* ---- virtio 1.x (modern) interface through the memory BAR ---- */

struct modern {
    volatile u8 *common, *notify, *device;
    u32 notify_mult;
};

static volatile u8 *cap_addr(u8 slot, u8 cap)
{
    u8 bar = pci_read8(slot, cap + 4);
    u32 base = pci_read32(slot, 0x10 + 4 * bar) & ~0xFu;
    return (volatile u8 *)(base + pci_read32(slot, cap + 8));
}

static int modern_find(u8 slot, struct modern *m)
{
    memset(m, 0, sizeof(*m));
    for (u8 cap = pci_read8(slot, 0x34); cap; cap = pci_read8(slot, cap + 1)) {
        if (pci_read8(slot, cap) != 0x09)
            continue;
        switch (pci_read8(slot, cap + 3)) {
        case 1: m->common = cap_addr(slot, cap); break;
        case 2:
            m->notify = cap_addr(slot, cap);
            m->notify_mult = pci_read32(slot, cap + 16);
            break;
        case 4: m->device = cap_addr(slot, cap); break;
        }
    }
    return m->common && m->notify && m->device;
}

#define MW8(m, off, v)  (*(volatile u8 *)((m)->common + (off)) = (v))
#define MW16(m, off, v) (*(volatile u16 *)((m)->common + (off)) = (v))
#define MW32(m, off, v) (*(volatile u32 *)((m)->common + (off)) = (v))
#define MR8(m, off)     (*(volatile u8 *)((m)->common + (off)))
#define MR16(m, off)    (*(volatile u16 *)((m)->common + (off)))
#define MR32(m, off)    (*(volatile u32 *)((m)->common + (off)))

static void mode_modern(void)
{
    struct disk *d = &disks[0];
    struct modern m;
    /* Memory space on, so the BAR decodes (ukvm decodes regardless). */
    pci_write16(d->pci.slot, 0x04, pci_read16(d->pci.slot, 0x04) | 0x2);
    if (!modern_find(d->pci.slot, &m))
        fail("modern capabilities");
    MW8(&m, 20, 0);
    MW8(&m, 20, VIRTIO_S_ACK | VIRTIO_S_DRIVER);
    MW32(&m, 0, 1);
    if (!(MR32(&m, 4) & 1))
        fail("VERSION_1 not offered");
    MW32(&m, 0, 0);
    u32 low = MR32(&m, 4) & (VIRTIO_BLK_F_RO | VIRTIO_BLK_F_BLK_SIZE | VIRTIO_BLK_F_FLUSH);
    MW32(&m, 8, 0);
    MW32(&m, 12, low);
    MW32(&m, 8, 1);
    MW32(&m, 12, 1);
    MW8(&m, 20, VIRTIO_S_ACK | VIRTIO_S_DRIVER | 8);
    if (!(MR8(&m, 20) & 8))
        fail("FEATURES_OK refused");
    struct virtq *q = &d->q;
    MW16(&m, 22, 0);
    u16 max = MR16(&m, 24);
    q->size = 16;
    q->last_used = 0;
    memset(q->mem, 0, sizeof(q->mem));
    q->desc = (struct vring_desc *)q->mem;
    q->avail = (volatile u16 *)(q->mem + 16 * q->size);
    q->used = (volatile u16 *)(q->mem + 4096);
    MW16(&m, 24, q->size);
    MW32(&m, 32, (u32)q->desc);
    MW32(&m, 36, 0);
    MW32(&m, 40, (u32)q->avail);
    MW32(&m, 44, 0);
    MW32(&m, 48, (u32)q->used);
    MW32(&m, 52, 0);
    MW16(&m, 28, 1);
    volatile u16 *notify = (volatile u16 *)(m.notify + MR16(&m, 30) * m.notify_mult);
    MW8(&m, 20, VIRTIO_S_ACK | VIRTIO_S_DRIVER | 8 | VIRTIO_S_DRIVER_OK);
    u32 cap_lo = *(volatile u32 *)m.device;
    kprintf("modern: max queue %u, using 16, capacity %u, features 0x%x\n", max, cap_lo, low);

    /* The same request as the legacy path, kicked through MMIO. */
    hdr.type = T_IN;
    hdr.reserved = 0;
    hdr.sector = 64;
    status = 0xFF;
    q->desc[0] = (struct vring_desc){ (u32)&hdr, 16, VRING_DESC_F_NEXT, 1 };
    q->desc[1] = (struct vring_desc){ (u32)buf, 2048, VRING_DESC_F_NEXT | VRING_DESC_F_WRITE, 2 };
    q->desc[2] = (struct vring_desc){ (u32)&status, 1, VRING_DESC_F_WRITE, 0 };
    virtq_push(q, 0);
    *notify = 0;
    u32 id, used;
    while (!virtq_pop(q, &id, &used))
        ;
    if (status != 0)
        fail("modern read");
    char label[33] = { 0 };
    memcpy(label, buf + 40, 32);
    for (int k = 31; k >= 0 && label[k] == ' '; k--)
        label[k] = 0;
    kprintf("modern: pvd id %c%c%c%c%c label %s\n", buf[1], buf[2], buf[3], buf[4],
            buf[5], label);
}

#include "hostile.h"

static void mode_irqlat(const char *cmdline)
{
    u32 count = 20, a, b, c, e;
    parse_u32(cmdline_value(cmdline, "count"), &count);
    cpuid(0x40000010, &a, &b, &c, &e);
    kprintf("blk0: tsc_khz=%u\n", a);
    struct disk *d = &disks[0];
    irq_init();
    irq_register(d->pci.irq, on_irq, d);
    for (u32 k = 0; k < count; k++) {
        u64 t0 = rdtsc();
        read_by_interrupt(d, 0);
        kprintf("blk0: irqlat tsc=%llx\n", irq_tsc - t0);
    }
}

static void mode_bench(const char *cmdline)
{
    u32 size = 4096, count = 256;
    const char *v;
    if ((v = cmdline_value(cmdline, "size")))
        parse_u32(v, &size);
    if ((v = cmdline_value(cmdline, "count")))
        parse_u32(v, &count);
    if (size == 0 || size > BUF_SIZE || size % 512)
        fail("size");
    struct disk *d = &disks[0];
    u64 per = size / 512, sector = 0;
    signal_ready();
    for (u32 k = 0; k < count; k++) {
        if (sector + per > d->capacity)
            sector = 0;
        if (request(d, T_IN, sector, buf, size) != 0)
            exit_exact(1);
        sector += per;
    }
    exit_exact(0);
}

void guest_main(u32 magic, const struct mb_info *mbi)
{
    serial_init();
    if (magic != MB_BOOTLOADER_MAGIC)
        fail("not booted by multiboot");
    const char *cmdline = mb_cmdline(mbi);
    int n = 0;
    while (n < MAX_DISKS && disk_init(n, &disks[n]))
        n++;
    if (n == 0)
        fail("no virtio-blk device");
    const char *mode = cmdline_value(cmdline, "mode");
    if (!mode || !cmdline_has(cmdline, "mode=bench")) {
        for (int i = 0; i < n; i++) {
            struct disk *d = &disks[i];
            kprintf("blk%d: slot %u io 0x%x irq %u capacity %u ro %u\n", i,
                    d->pci.slot, d->pci.io_base, d->pci.irq,
                    (u32)d->capacity, !!(d->features & VIRTIO_BLK_F_RO));
        }
    }
    if (cmdline_has(cmdline, "mode=iso"))
        mode_iso(n);
    else if (cmdline_has(cmdline, "mode=rw"))
        mode_rw();
    else if (cmdline_has(cmdline, "mode=irqlat"))
        mode_irqlat(cmdline);
    else if (cmdline_has(cmdline, "mode=irq"))
        mode_irq(cmdline_has(cmdline, "spin"));
    else if (cmdline_has(cmdline, "mode=modern"))
        mode_modern();
    else if (cmdline_has(cmdline, "mode=bench"))
        mode_bench(cmdline);
    else if (cmdline_has(cmdline, "mode=hostile"))
        mode_hostile(n, mbi);
    else
        fail("no mode= given");
    kprintf("blk: done\n");
    /* exit=N: end with status N (odd N through port 0x501, which QEMU's
     * isa-debug-exit understands too: the boot benchmark uses exit=3). */
    u32 status = 0;
    parse_u32(cmdline_value(cmdline, "exit"), &status);
    exit_status((u8)status);
}
