/* See virtio.h. */
#include "virtio.h"
#include "pci.h"

#define barrier() __asm__ volatile("" ::: "memory")

u32 virtio_begin(u16 io_base)
{
    outb(io_base + VIRTIO_STATUS, 0);
    outb(io_base + VIRTIO_STATUS, VIRTIO_S_ACK);
    outb(io_base + VIRTIO_STATUS, VIRTIO_S_ACK | VIRTIO_S_DRIVER);
    return inl_p(io_base + VIRTIO_HOST_FEATURES);
}

void virtio_set_features(u16 io_base, u32 features)
{
    outl_p(io_base + VIRTIO_GUEST_FEATURES, features);
}

int virtq_init(struct virtq *q, u16 io_base, u16 index)
{
    outw_p(io_base + VIRTIO_QUEUE_SELECT, index);
    u16 size = inw_p(io_base + VIRTIO_QUEUE_SIZE);
    if (size == 0 || size > VQ_MAX)
        return 0;
    q->io_base = io_base;
    q->index = index;
    q->notify = 0;
    q->size = size;
    q->last_used = 0;
    memset(q->mem, 0, sizeof(q->mem));
    q->desc = (struct vring_desc *)q->mem;
    q->avail = (volatile u16 *)(q->mem + 16 * size);
    u32 used_off = (16 * size + 6 + 2 * size + 4095) & ~4095u;
    q->used = (volatile u16 *)(q->mem + used_off);
    outl_p(io_base + VIRTIO_QUEUE_PFN, (u32)q->mem >> 12);
    return 1;
}

void virtio_ready(u16 io_base)
{
    outb(io_base + VIRTIO_STATUS,
         VIRTIO_S_ACK | VIRTIO_S_DRIVER | VIRTIO_S_DRIVER_OK);
}

void virtq_push(struct virtq *q, u16 d)
{
    u16 idx = q->avail[1];
    q->avail[2 + idx % q->size] = d;
    barrier();              /* x86: stores are ordered; stop the compiler */
    q->avail[1] = idx + 1;
}

void virtq_kick(struct virtq *q)
{
    barrier();
    if (q->notify)
        *q->notify = q->index;
    else
        outw_p(q->io_base + VIRTIO_QUEUE_NOTIFY, q->index);
}

/* ---- modern interface ---- */

/* Common configuration registers (virtio 1.2 section 4.1.4.3). */
#define C_DEVICE_FEATURE_SELECT 0
#define C_DEVICE_FEATURE        4
#define C_DRIVER_FEATURE_SELECT 8
#define C_DRIVER_FEATURE        12
#define C_STATUS                20
#define C_QUEUE_SELECT          22
#define C_QUEUE_SIZE            24
#define C_QUEUE_ENABLE          28
#define C_QUEUE_NOTIFY_OFF      30
#define C_QUEUE_DESC            32
#define C_QUEUE_DRIVER          40
#define C_QUEUE_DEVICE          48
#define S_FEATURES_OK           8

#define W8(m, off, v)  (*(volatile u8 *)((m)->common + (off)) = (v))
#define W16(m, off, v) (*(volatile u16 *)((m)->common + (off)) = (v))
#define W32(m, off, v) (*(volatile u32 *)((m)->common + (off)) = (v))
#define R8(m, off)     (*(volatile u8 *)((m)->common + (off)))
#define R16(m, off)    (*(volatile u16 *)((m)->common + (off)))
#define R32(m, off)    (*(volatile u32 *)((m)->common + (off)))

static volatile u8 *cap_addr(u8 slot, u8 cap)
{
    u8 bar = pci_read8(slot, cap + 4);
    u32 base = pci_read32(slot, 0x10 + 4 * bar) & ~0xFu;
    return (volatile u8 *)(base + pci_read32(slot, cap + 8));
}

int virtio_modern_find(u8 slot, struct virtio_modern *m)
{
    memset(m, 0, sizeof(*m));
    pci_write16(slot, 0x04, pci_read16(slot, 0x04) | 0x2);
    for (u8 cap = pci_read8(slot, 0x34); cap; cap = pci_read8(slot, cap + 1)) {
        if (pci_read8(slot, cap) != 0x09)       /* vendor-specific */
            continue;
        switch (pci_read8(slot, cap + 3)) {
        case 1: m->common = cap_addr(slot, cap); break;
        case 2:
            m->notify = cap_addr(slot, cap);
            m->notify_mult = pci_read32(slot, cap + 16);
            break;
        case 3: m->isr = cap_addr(slot, cap); break;
        case 4: m->device = cap_addr(slot, cap); break;
        }
    }
    return m->common && m->notify && m->isr && m->device;
}

u64 virtio_modern_begin(struct virtio_modern *m)
{
    W8(m, C_STATUS, 0);
    W8(m, C_STATUS, VIRTIO_S_ACK | VIRTIO_S_DRIVER);
    W32(m, C_DEVICE_FEATURE_SELECT, 1);
    u64 hi = R32(m, C_DEVICE_FEATURE);
    W32(m, C_DEVICE_FEATURE_SELECT, 0);
    return (hi << 32) | R32(m, C_DEVICE_FEATURE);
}

int virtio_modern_features(struct virtio_modern *m, u64 features)
{
    W32(m, C_DRIVER_FEATURE_SELECT, 0);
    W32(m, C_DRIVER_FEATURE, (u32)features);
    W32(m, C_DRIVER_FEATURE_SELECT, 1);
    W32(m, C_DRIVER_FEATURE, (u32)(features >> 32));
    W8(m, C_STATUS, VIRTIO_S_ACK | VIRTIO_S_DRIVER | S_FEATURES_OK);
    return (R8(m, C_STATUS) & S_FEATURES_OK) != 0;
}

int virtq_init_modern(struct virtq *q, struct virtio_modern *m, u16 index)
{
    W16(m, C_QUEUE_SELECT, index);
    u16 size = R16(m, C_QUEUE_SIZE);
    if (size == 0 || size > VQ_MAX)
        return 0;
    q->io_base = 0;
    q->index = index;
    q->size = size;
    q->last_used = 0;
    memset(q->mem, 0, sizeof(q->mem));
    q->desc = (struct vring_desc *)q->mem;
    q->avail = (volatile u16 *)(q->mem + 16 * size);
    u32 used_off = (16 * size + 6 + 2 * size + 4095) & ~4095u;
    q->used = (volatile u16 *)(q->mem + used_off);
    W32(m, C_QUEUE_DESC, (u32)q->desc);
    W32(m, C_QUEUE_DESC + 4, 0);
    W32(m, C_QUEUE_DRIVER, (u32)q->avail);
    W32(m, C_QUEUE_DRIVER + 4, 0);
    W32(m, C_QUEUE_DEVICE, (u32)q->used);
    W32(m, C_QUEUE_DEVICE + 4, 0);
    q->notify = (volatile u16 *)(m->notify + R16(m, C_QUEUE_NOTIFY_OFF) * m->notify_mult);
    W16(m, C_QUEUE_ENABLE, 1);
    return 1;
}

void virtio_modern_ready(struct virtio_modern *m)
{
    W8(m, C_STATUS, VIRTIO_S_ACK | VIRTIO_S_DRIVER | S_FEATURES_OK | VIRTIO_S_DRIVER_OK);
}

int virtq_pop(struct virtq *q, u32 *id, u32 *len)
{
    if (q->used[1] == q->last_used)
        return 0;
    barrier();
    volatile struct vring_used_elem *e =
        (volatile struct vring_used_elem *)(q->used + 2) + q->last_used % q->size;
    *id = e->id;
    *len = e->len;
    q->last_used++;
    return 1;
}
