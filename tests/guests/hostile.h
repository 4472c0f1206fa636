/*
 * mode=hostile of the blk guest: a compromised virtio-blk driver. Each
 * attack hands the device a chain no honest driver would (into the MMIO
 * hole, past RAM, across the end of RAM, over its own descriptor table,
 * a looping chain, a 4 GiB length, a write to the read-only disk, a flood
 * of notifications, BARs moved over RAM and over each other), waits a
 * bounded time for the answer and prints it; then a good read of the
 * first disk must return what was written there first. Included by blk.c
 * (it uses its disks and request helpers).
 */

/* Polls the used ring a bounded number of times: a device may drop a
 * chain it cannot parse, and the guest must not hang on it. */
static int wait_used(struct disk *d)
{
    u32 id, len;
    for (u32 spin = 0; spin < 200000; spin++)
        if (virtq_pop(&d->q, &id, &len))
            return 1;
    return 0;
}

/* Queues the descriptors already in d->q.desc from head 0, kicks, and
 * reports the status byte (or that nothing came back). */
static void attack(struct disk *d, const char *what)
{
    status = 0xFF;
    virtq_push(&d->q, 0);
    virtq_kick(&d->q);
    if (wait_used(d))
        kprintf("hostile: %s: status %u\n", what, status);
    else
        kprintf("hostile: %s: no answer\n", what);
}

/* header -> one data buffer (addr, len, flags) -> status. */
static void chain3(struct disk *d, u32 type, u64 addr, u32 len, u16 flags)
{
    struct vring_desc *desc = d->q.desc;
    hdr.type = type;
    hdr.reserved = 0;
    hdr.sector = 0;
    desc[0] = (struct vring_desc){ (u32)&hdr, 16, VRING_DESC_F_NEXT, 1 };
    desc[1] = (struct vring_desc){ addr, len, VRING_DESC_F_NEXT | flags, 2 };
    desc[2] = (struct vring_desc){ (u32)&status, 1, VRING_DESC_F_WRITE, 0 };
}

/* The good read after each attack: sector 0 of the first disk. */
static void still_serving(struct disk *d, const char *after)
{
    memset(buf2, 0, 512);
    if (request(d, T_IN, 0, buf2, 512) != 0 || memcmp(buf, buf2, 512) != 0) {
        kprintf("hostile: FAIL good read after %s\n", after);
        exit_exact(1);
    }
}

static void bars(struct disk *a, struct disk *b)
{
    u32 a0 = pci_read32(a->pci.slot, 0x10), a1 = pci_read32(a->pci.slot, 0x14);
    u32 b0 = pci_read32(b->pci.slot, 0x10), b1 = pci_read32(b->pci.slot, 0x14);
    pci_write32(b->pci.slot, 0x10, a0);          /* I/O BARs over each other */
    pci_write32(b->pci.slot, 0x14, a1);          /* memory BARs over each other */
    pci_write32(a->pci.slot, 0x14, 0x00100000);  /* a memory BAR over our RAM */
    kprintf("hostile: bars moved; read back %x %x %x (were %x %x %x)\n",
            pci_read32(b->pci.slot, 0x10), pci_read32(b->pci.slot, 0x14),
            pci_read32(a->pci.slot, 0x14), a0, b1, a1);
    pci_write32(a->pci.slot, 0x14, a1);
    pci_write32(b->pci.slot, 0x10, b0);
    pci_write32(b->pci.slot, 0x14, b1);
}

static void mode_hostile(int n, const struct mb_info *mbi)
{
    struct disk *d = &disks[0];
    if (n < 2 || (d->features & VIRTIO_BLK_F_RO) || !(disks[1].features & VIRTIO_BLK_F_RO))
        fail("mode=hostile needs a read-write disk, then a read-only one");
    u32 ram_end = (mbi->mem_upper + 1024) * 1024;
    for (u32 k = 0; k < 512; k++)
        buf[k] = (u8)(k * 13 + 5);
    if (request(d, T_OUT, 0, buf, 512) != 0)
        fail("first write");
    still_serving(d, "the first write");

    chain3(d, T_IN, 0xE0000000u, 512, VRING_DESC_F_WRITE);
    attack(d, "read into the MMIO hole");
    still_serving(d, "the MMIO hole");
    chain3(d, T_IN, 0x40000000u, 512, VRING_DESC_F_WRITE);
    attack(d, "read past RAM");
    still_serving(d, "past RAM");
    chain3(d, T_IN, ram_end - 256, 512, VRING_DESC_F_WRITE);
    attack(d, "read across the end of RAM");
    still_serving(d, "the end of RAM");
    chain3(d, T_OUT, ram_end - 1, 512, 0);
    attack(d, "write from the last byte of RAM");
    still_serving(d, "the last byte");
    chain3(d, T_IN, (u32)d->q.desc, 512, VRING_DESC_F_WRITE);
    attack(d, "read over its own descriptor table");
    still_serving(d, "its own ring");
    chain3(d, T_IN, (u32)buf2, 0xFFFFFFFFu, VRING_DESC_F_WRITE);
    attack(d, "4 GiB length");
    still_serving(d, "4 GiB");
    chain3(d, T_IN, (u32)buf2, 512, VRING_DESC_F_WRITE);
    d->q.desc[2].flags |= VRING_DESC_F_NEXT;     /* status -> header -> ... */
    d->q.desc[2].next = 0;
    attack(d, "looping chain");
    still_serving(d, "the loop");
    d->q.desc[0].next = 0;                       /* header -> itself */
    attack(d, "chain looping on itself");
    still_serving(d, "the self loop");

    struct disk *ro = &disks[1];
    memset(buf2, 0x55, 512);
    u8 st = request(ro, T_OUT, 0, buf2, 512);
    kprintf("hostile: write to the read-only disk: status %u\n", st);
    if (st == 0)
        fail("write to a read-only disk succeeded");

    for (u32 k = 0; k < 2000; k++)
        virtq_kick(&d->q);
    kprintf("hostile: 2000 notifications with nothing queued\n");
    still_serving(d, "the flood");

    bars(d, ro);
    still_serving(d, "the BARs");
    kprintf("hostile: still serving\n");
}
