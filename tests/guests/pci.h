/*
 * PCI configuration mechanism 1 (ports 0xCF8/0xCFC) for the test guests:
 * register access and finding virtio functions on bus 0, the way Solo5's
 * and Rumprun's virtio drivers do (vendor 0x1AF4, subsystem ID = device
 * type, I/O BAR0, Interrupt Line from register 0x3C).
 */
#ifndef UKVM_GUEST_PCI_H
#define UKVM_GUEST_PCI_H

#include "common.h"

#define PCI_VENDOR_VIRTIO   0x1AF4
#define VIRTIO_ID_NET       1
#define VIRTIO_ID_BLOCK     2

u32 pci_read32(u8 slot, u8 reg);
u16 pci_read16(u8 slot, u8 reg);
u8 pci_read8(u8 slot, u8 reg);
void pci_write32(u8 slot, u8 reg, u32 val);
void pci_write16(u8 slot, u8 reg, u16 val);

struct pci_virtio {
    u8 slot;
    u16 io_base;        /* legacy register block (I/O BAR0) */
    u8 irq;             /* Interrupt Line */
};

/*
 * The index-th (0-based) virtio function on bus 0 with this subsystem ID.
 * Enables its I/O decoding and bus mastering. Returns 0 when not found.
 * Only bus 0 is scanned: 32 slots, a few exits each.
 */
int pci_find_virtio(u16 subsystem, int index, struct pci_virtio *out);

#endif
