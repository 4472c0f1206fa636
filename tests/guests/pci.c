/* See pci.h. */
#include "pci.h"

#define CONFIG_ADDRESS 0xCF8
#define CONFIG_DATA    0xCFC

static inline void outl(u16 port, u32 val)
{
    __asm__ volatile("outl %0, %1" : : "a"(val), "Nd"(port));
}

static inline u32 inl(u16 port)
{
    u32 val;
    __asm__ volatile("inl %1, %0" : "=a"(val) : "Nd"(port));
    return val;
}

static inline void outw(u16 port, u16 val)
{
    __asm__ volatile("outw %0, %1" : : "a"(val), "Nd"(port));
}

static inline u16 inw(u16 port)
{
    u16 val;
    __asm__ volatile("inw %1, %0" : "=a"(val) : "Nd"(port));
    return val;
}

static void select_reg(u8 slot, u8 reg)
{
    outl(CONFIG_ADDRESS, 0x80000000u | ((u32)slot << 11) | (reg & 0xFC));
}

u32 pci_read32(u8 slot, u8 reg)
{
    select_reg(slot, reg);
    return inl(CONFIG_DATA);
}

u16 pci_read16(u8 slot, u8 reg)
{
    select_reg(slot, reg);
    return inw(CONFIG_DATA + (reg & 2));
}

u8 pci_read8(u8 slot, u8 reg)
{
    select_reg(slot, reg);
    return inb(CONFIG_DATA + (reg & 3));
}

void pci_write32(u8 slot, u8 reg, u32 val)
{
    select_reg(slot, reg);
    outl(CONFIG_DATA, val);
}

void pci_write16(u8 slot, u8 reg, u16 val)
{
    select_reg(slot, reg);
    outw(CONFIG_DATA + (reg & 2), val);
}

int pci_find_virtio(u16 subsystem, int index, struct pci_virtio *out)
{
    for (u8 slot = 0; slot < 32; slot++) {
        u32 id = pci_read32(slot, 0x00);
        if ((id & 0xFFFF) != PCI_VENDOR_VIRTIO)
            continue;
        if (pci_read16(slot, 0x2E) != subsystem)
            continue;
        if (index-- > 0)
            continue;
        u32 bar0 = pci_read32(slot, 0x10);
        if (!(bar0 & 1))
            return 0;               /* legacy registers must be in I/O space */
        out->slot = slot;
        out->io_base = (u16)(bar0 & ~3u);
        out->irq = pci_read8(slot, 0x3C);
        /* I/O space and bus master on, INTx not disabled. */
        pci_write16(slot, 0x04, (pci_read16(slot, 0x04) | 0x5) & ~0x400);
        return 1;
    }
    return 0;
}
