/* See virtio.h. */
#include "virtio.h"

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
    outw_p(q->io_base + VIRTIO_QUEUE_NOTIFY, q->index);
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
