/*
 * Legacy (virtio 0.9.5) virtio-PCI for the test guests: the register block
 * in I/O BAR0 and split virtqueues in the legacy layout (descriptor table
 * and available ring, then the used ring on the next 4 KiB boundary).
 */
#ifndef UKVM_GUEST_VIRTIO_H
#define UKVM_GUEST_VIRTIO_H

#include "common.h"

/* Legacy register offsets from BAR0 (no MSI-X). */
#define VIRTIO_HOST_FEATURES  0
#define VIRTIO_GUEST_FEATURES 4
#define VIRTIO_QUEUE_PFN      8
#define VIRTIO_QUEUE_SIZE     12
#define VIRTIO_QUEUE_SELECT   14
#define VIRTIO_QUEUE_NOTIFY   16
#define VIRTIO_STATUS         18
#define VIRTIO_ISR            19
#define VIRTIO_CONFIG         20

#define VIRTIO_S_ACK       1
#define VIRTIO_S_DRIVER    2
#define VIRTIO_S_DRIVER_OK 4
#define VIRTIO_S_FAILED    0x80

#define VRING_DESC_F_NEXT  1
#define VRING_DESC_F_WRITE 2

/* Largest queue the static ring memory holds. */
#define VQ_MAX 256

struct vring_desc {
    u64 addr;
    u32 len;
    u16 flags;
    u16 next;
};

struct vring_used_elem {
    u32 id;
    u32 len;
};

struct virtq {
    u16 io_base;
    u16 index;
    volatile u16 *notify;   /* modern: MMIO notify address; 0: legacy port */
    u16 size;
    u16 last_used;          /* next used entry to look at */
    struct vring_desc *desc;
    volatile u16 *avail;    /* flags, idx, ring[size] */
    volatile u16 *used;     /* flags, idx, then elems */
    u8 mem[3 * 4096 + VQ_MAX * 8] __attribute__((aligned(4096)));
};

static inline void outw_p(u16 port, u16 val)
{
    __asm__ volatile("outw %0, %1" : : "a"(val), "Nd"(port));
}
static inline void outl_p(u16 port, u32 val)
{
    __asm__ volatile("outl %0, %1" : : "a"(val), "Nd"(port));
}
static inline u32 inl_p(u16 port)
{
    u32 v;
    __asm__ volatile("inl %1, %0" : "=a"(v) : "Nd"(port));
    return v;
}
static inline u16 inw_p(u16 port)
{
    u16 v;
    __asm__ volatile("inw %1, %0" : "=a"(v) : "Nd"(port));
    return v;
}

/* Reset, then ACKNOWLEDGE | DRIVER. Returns the device's features. */
u32 virtio_begin(u16 io_base);
/* Writes the accepted features. */
void virtio_set_features(u16 io_base, u32 features);
/* Sets up queue `index` in q's memory; 0 if the device's size won't fit. */
int virtq_init(struct virtq *q, u16 io_base, u16 index);
/* DRIVER_OK. */
void virtio_ready(u16 io_base);

/*
 * The virtio 1.x (modern) interface through the capabilities in the memory
 * BAR. The split rings keep the legacy layout (rings in q->mem), their
 * addresses written to the common configuration instead of a PFN.
 */
struct virtio_modern {
    volatile u8 *common, *notify, *isr, *device;
    u32 notify_mult;
};

/* Finds the capabilities of the function in `slot` and enables memory
 * decoding. 0 when one is missing. */
int virtio_modern_find(u8 slot, struct virtio_modern *m);
/* Reset, ACKNOWLEDGE | DRIVER; returns the 64 device feature bits. */
u64 virtio_modern_begin(struct virtio_modern *m);
/* Writes the accepted features and sets FEATURES_OK; 0 if refused. */
int virtio_modern_features(struct virtio_modern *m, u64 features);
/* Sets up queue `index` at the device's size; 0 if it won't fit. */
int virtq_init_modern(struct virtq *q, struct virtio_modern *m, u16 index);
/* DRIVER_OK. */
void virtio_modern_ready(struct virtio_modern *m);

/* Makes descriptor `d` available (the caller filled q->desc[d]). */
void virtq_push(struct virtq *q, u16 d);
/* Tells the device about pushed buffers. */
void virtq_kick(struct virtq *q);
/* Takes the next used entry: returns 1 and fills id/len, or 0 if none. */
int virtq_pop(struct virtq *q, u32 *id, u32 *len);

#endif
