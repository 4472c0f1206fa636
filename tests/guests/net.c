/*
 * net: a minimal network responder on legacy virtio-net, for the ukvm
 * network tests and for comparing ukvm with QEMU on the same guest.
 *
 * Command line: ip=A.B.C.D[,E.F.G.H]  one address per NIC, in PCI order
 *               mrg                   accept VIRTIO_NET_F_MRG_RXBUF
 *                                     (12-byte header instead of 10)
 *               modern                drive every NIC through the virtio
 *                                     1.x interface (memory BAR, VERSION_1,
 *                                     12-byte header) instead of legacy
 *               noiret                return from interrupts without iret
 *                                     (QEMU on a machine whose KVM cannot
 *                                     emulate it; see irq.c)
 *
 * Answers ARP requests for its address, ICMP echo requests, and echoes UDP
 * datagrams back to their sender. Receive is interrupt driven through the
 * i8259 PIC (the IRQ from PCI Interrupt Line), as Solo5 and Rumprun do;
 * between interrupts the CPU halts.
 *
 * Replies are built in place in the receive buffer and transmitted from
 * there (the transmit descriptor with the same index points at it); the
 * buffer is posted for receive again when the transmit completes. No copy:
 * guest code runs emulated here, ~1,000x slower than native.
 */
#include "common.h"
#include "irq.h"
#include "pci.h"
#include "virtio.h"

#define MAX_NICS 2
#define RX_BUFS  32
#define BUF_LEN  9088           /* 12-byte header + 14 + 9000 + slack */

#define F_MTU       (1u << 3)
#define F_MAC       (1u << 5)
#define F_MRG_RXBUF (1u << 15)
#define F_STATUS    (1u << 16)
#define F_VERSION_1 (1ull << 32)

struct nic {
    struct pci_virtio pci;
    struct virtio_modern m;     /* modern interface, when used */
    int modern;
    struct virtq rx, tx;
    u8 mac[6];
    u8 ip[4];
    u32 hdr_len;
    u32 rx_frames, tx_frames;
    u8 bufs[RX_BUFS][BUF_LEN] __attribute__((aligned(16)));
};

static struct nic nics[MAX_NICS];
static int nic_count;

static u16 be16(const u8 *p) { return (u16)((p[0] << 8) | p[1]); }
static void put_be16(u8 *p, u16 v) { p[0] = (u8)(v >> 8); p[1] = (u8)v; }

static void swap_bytes(u8 *a, u8 *b, int n)
{
    for (int i = 0; i < n; i++) {
        u8 t = a[i];
        a[i] = b[i];
        b[i] = t;
    }
}

/* Parses "a.b.c.d" (ending at ',', ' ' or NUL); returns the end or NULL. */
static const char *parse_ip(const char *s, u8 ip[4])
{
    for (int i = 0; i < 4; i++) {
        u32 v = 0;
        int digits = 0;
        while (*s >= '0' && *s <= '9' && digits < 4) {
            v = v * 10 + (u32)(*s++ - '0');
            digits++;
        }
        if (!digits || v > 255 || (i < 3 && *s++ != '.'))
            return NULL;
        ip[i] = (u8)v;
    }
    return s;
}

/* ---- Replies, built in place; return the reply length or 0 ------------- */

static u32 arp(struct nic *n, u8 *f, u32 len)
{
    u8 *a = f + 14;
    if (len < 42 || be16(a) != 1 || be16(a + 2) != 0x0800 || be16(a + 6) != 1)
        return 0;
    if (memcmp(a + 24, n->ip, 4) != 0)
        return 0;
    put_be16(a + 6, 2);
    memcpy(a + 18, a + 8, 10);      /* target = asker's MAC and IP */
    memcpy(a + 8, n->mac, 6);
    memcpy(a + 14, n->ip, 4);
    memcpy(f, f + 6, 6);
    memcpy(f + 6, n->mac, 6);
    return 42;
}

static u32 ipv4(struct nic *n, u8 *f, u32 len)
{
    u8 *ip = f + 14;
    if (len < 34 || (ip[0] >> 4) != 4 || memcmp(ip + 16, n->ip, 4) != 0)
        return 0;
    u32 ihl = (ip[0] & 15u) * 4;
    u32 total = be16(ip + 2);
    if (ihl < 20 || total < ihl + 8 || 14 + total > len)
        return 0;
    if (be16(ip + 6) & 0x3FFF)
        return 0;                   /* fragments: not for this responder */
    u8 *l4 = ip + ihl;
    if (ip[9] == 1 && l4[0] == 8) {
        /* Echo request -> reply: only the type changes, so the checksum
         * moves by the same amount (RFC 1624), with end-around carry. */
        l4[0] = 0;
        u32 c = (u32)be16(l4 + 2) + 0x0800;
        put_be16(l4 + 2, (u16)(c + (c >> 16)));
    } else if (ip[9] == 17) {
        /* Swapping ports and addresses leaves both checksums valid. */
        swap_bytes(l4, l4 + 2, 2);
    } else {
        return 0;
    }
    swap_bytes(ip + 12, ip + 16, 4);
    memcpy(f, f + 6, 6);
    memcpy(f + 6, n->mac, 6);
    return 14 + total;
}

/* A received buffer: reply from it, or give it back to the device. */
static void handle(struct nic *n, u32 id, u32 len, int *kick_rx, int *kick_tx)
{
    n->rx_frames++;
    u8 *buf = n->bufs[id];
    u8 *f = buf + n->hdr_len;
    u32 flen = len > n->hdr_len ? len - n->hdr_len : 0;
    u32 out = 0;
    if (flen >= 14 && id < RX_BUFS) {
        u16 type = be16(f + 12);
        if (type == 0x0806)
            out = arp(n, f, flen);
        else if (type == 0x0800)
            out = ipv4(n, f, flen);
    }
    if (out) {
        memset(buf, 0, n->hdr_len);
        n->tx.desc[id].addr = (u32)buf;
        n->tx.desc[id].len = n->hdr_len + out;
        n->tx.desc[id].flags = 0;
        virtq_push(&n->tx, (u16)id);
        n->tx_frames++;
        *kick_tx = 1;
    } else if (id < RX_BUFS) {
        virtq_push(&n->rx, (u16)id);
        *kick_rx = 1;
    }
}

static int has_work(struct nic *n)
{
    return n->rx.used[1] != n->rx.last_used || n->tx.used[1] != n->tx.last_used;
}

static void service(struct nic *n)
{
    int kick_rx = 0, kick_tx = 0;
    u32 id, len;
    while (virtq_pop(&n->tx, &id, &len)) {
        if (id < RX_BUFS) {         /* transmitted: the buffer can receive */
            virtq_push(&n->rx, (u16)id);
            kick_rx = 1;
        }
    }
    while (virtq_pop(&n->rx, &id, &len))
        handle(n, id, len, &kick_rx, &kick_tx);
    if (kick_tx)
        virtq_kick(&n->tx);
    if (kick_rx)
        virtq_kick(&n->rx);
}

static void on_irq(void *arg)
{
    struct nic *n = arg;
    /* Reading the ISR acknowledges and lowers INTx. */
    if (n->modern)
        (void)*n->m.isr;
    else
        inb(n->pci.io_base + VIRTIO_ISR);
}

/* Legacy setup: features, config and queues through I/O BAR0. */
static int legacy_setup(struct nic *n, int mrg, u16 *status, u16 *mtu)
{
    u16 io = n->pci.io_base;
    u32 host = virtio_begin(io);
    u32 want = F_MAC | F_MTU | F_STATUS | (mrg ? F_MRG_RXBUF : 0);
    u32 feat = host & want;
    virtio_set_features(io, feat);
    n->hdr_len = (feat & F_MRG_RXBUF) ? 12 : 10;
    for (int i = 0; i < 6; i++)
        n->mac[i] = inb(io + VIRTIO_CONFIG + i);
    *status = (feat & F_STATUS) ? inw_p(io + VIRTIO_CONFIG + 6) : 1;
    *mtu = (feat & F_MTU) ? inw_p(io + VIRTIO_CONFIG + 10) : 1500;
    return virtq_init(&n->rx, io, 0) && virtq_init(&n->tx, io, 1);
}

/* Modern setup: VERSION_1 (the header is 12 bytes whether or not
 * MRG_RXBUF is taken), config and queues through the memory BAR. */
static int modern_setup(struct nic *n, int mrg, u16 *status, u16 *mtu)
{
    n->modern = 1;
    if (!virtio_modern_find(n->pci.slot, &n->m))
        return 0;
    u64 host = virtio_modern_begin(&n->m);
    u64 want = F_VERSION_1 | F_MAC | F_MTU | F_STATUS | (mrg ? F_MRG_RXBUF : 0);
    u64 feat = host & want;
    if (!(feat & F_VERSION_1) || !virtio_modern_features(&n->m, feat))
        return 0;
    n->hdr_len = 12;
    volatile u8 *cfg = n->m.device;
    for (int i = 0; i < 6; i++)
        n->mac[i] = cfg[i];
    *status = (feat & F_STATUS) ? *(volatile u16 *)(cfg + 6) : 1;
    *mtu = (feat & F_MTU) ? *(volatile u16 *)(cfg + 10) : 1500;
    return virtq_init_modern(&n->rx, &n->m, 0) && virtq_init_modern(&n->tx, &n->m, 1);
}

static int nic_setup(struct nic *n, int index, int mrg, int modern)
{
    if (!pci_find_virtio(VIRTIO_ID_NET, index, &n->pci)) {
        kprintf("net%d: no virtio-net device\n", index);
        return 0;
    }
    u16 io = n->pci.io_base;
    u16 status, mtu;
    int ok = modern ? modern_setup(n, mrg, &status, &mtu) : legacy_setup(n, mrg, &status, &mtu);
    if (!ok) {
        kprintf("net%d: %s setup failed\n", index, modern ? "modern" : "legacy");
        outb(io + VIRTIO_STATUS, VIRTIO_S_FAILED);
        return 0;
    }
    for (u16 i = 0; i < RX_BUFS; i++) {
        n->rx.desc[i].addr = (u32)n->bufs[i];
        n->rx.desc[i].len = BUF_LEN;
        n->rx.desc[i].flags = VRING_DESC_F_WRITE;
        virtq_push(&n->rx, i);
    }
    irq_register(n->pci.irq, on_irq, n);
    if (modern)
        virtio_modern_ready(&n->m);
    else
        virtio_ready(io);
    virtq_kick(&n->rx);
    kprintf("net%d: slot %u io %x irq %u mac %02x:%02x:%02x:%02x:%02x:%02x "
            "mtu %u hdr %u link %s ip %u.%u.%u.%u%s\n",
            index, n->pci.slot, io, n->pci.irq, n->mac[0], n->mac[1],
            n->mac[2], n->mac[3], n->mac[4], n->mac[5], mtu, n->hdr_len,
            (status & 1) ? "up" : "down", n->ip[0], n->ip[1], n->ip[2], n->ip[3],
            modern ? " modern" : "");
    return 1;
}

void guest_main(u32 magic, struct mb_info *mbi);
void guest_main(u32 magic, struct mb_info *mbi)
{
    serial_init();
    if (magic != MB_BOOTLOADER_MAGIC)
        exit_status(1);
    const char *cmdline = mb_cmdline(mbi);
    const char *s = cmdline_value(cmdline, "ip");
    while (s && nic_count < MAX_NICS) {
        s = parse_ip(s, nics[nic_count].ip);
        if (!s)
            break;
        nic_count++;
        if (*s != ',')
            break;
        s++;
    }
    if (!nic_count) {
        kprintf("usage: ip=A.B.C.D[,A.B.C.D]\n");
        exit_status(2);
    }
    irq_return_popf = (u8)cmdline_has(cmdline, "noiret");
    irq_init();
    int mrg = cmdline_has(cmdline, "mrg");
    int modern = cmdline_has(cmdline, "modern");
    for (int i = 0; i < nic_count; i++)
        if (!nic_setup(&nics[i], i, mrg, modern))
            exit_status(5);
    kprintf("ready\n");
    signal_ready();
    for (;;) {
        irq_disable();
        int work = 0;
        for (int i = 0; i < nic_count; i++)
            work |= has_work(&nics[i]);
        if (!work) {
            irq_wait();
            continue;
        }
        irq_enable();
        for (int i = 0; i < nic_count; i++)
            service(&nics[i]);
    }
}
