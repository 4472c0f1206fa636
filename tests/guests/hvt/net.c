/*
 * hvt net: a tiny IPv4 host on net device "service". Answers ARP
 * requests for its address and ICMP echo requests, and halts with 0 after
 * replying to `pings=N` echoes (default 3), or with 1 when nothing came
 * for `wait=S` seconds (default 20). Command line: ip=A.B.C.D.
 */
#include "hvt.h"

HVT_ABI_NOTE(1);
HVT_MANIFEST(2, { "service", MFT_NET });

static u8 frame[2048];
static u8 mac[6];
static u8 ip[4] = { 10, 0, 0, 2 };

static u16 be16(const u8 *p) { return (u16)(p[0] << 8 | p[1]); }

static void parse_ip(void)
{
    const char *s = boot_info->cmdline;
    for (; *s; s++) {
        if (memcmp(s, "ip=", 3) == 0) {
            s += 3;
            for (int i = 0; i < 4; i++) {
                u32 v = 0;
                while (*s >= '0' && *s <= '9')
                    v = v * 10 + (u32)(*s++ - '0');
                ip[i] = (u8)v;
                if (*s == '.')
                    s++;
            }
            return;
        }
    }
}

static u16 csum(const u8 *p, size_t n)
{
    u64 sum = 0;
    for (size_t i = 0; i + 1 < n; i += 2)
        sum += be16(p + i);
    if (n & 1)
        sum += (u64)p[n - 1] << 8;
    while (sum >> 16)
        sum = (sum & 0xffff) + (sum >> 16);
    return (u16)~sum;
}

static int send(u64 h, size_t len)
{
    volatile struct hc_net n = { h, frame, len, -1 };
    hypercall(HC_NET_WRITE, &n);
    return n.ret;
}

/* Turns the received frame around: Ethernet addresses swapped. */
static void reply_eth(void)
{
    memcpy(frame, frame + 6, 6);
    memcpy(frame + 6, mac, 6);
}

static int handle_arp(u64 h, size_t len)
{
    u8 *a = frame + 14;
    if (len < 42 || be16(a + 6) != 1 || memcmp(a + 24, ip, 4) != 0)
        return 0;
    reply_eth();
    a[7] = 2;                       /* reply */
    memcpy(a + 18, a + 8, 10);      /* target = sender (mac + ip) */
    memcpy(a + 8, mac, 6);
    memcpy(a + 14, ip, 4);
    printf("arp reply ret=%d\n", send(h, 42));
    return 0;
}

static int handle_ip(u64 h, size_t len)
{
    u8 *iph = frame + 14;
    size_t ihl = (size_t)(iph[0] & 0xf) * 4;
    if (len < 14 + ihl + 8 || iph[9] != 1 || memcmp(iph + 16, ip, 4) != 0)
        return 0;
    u8 *icmp = iph + ihl;
    if (icmp[0] != 8)
        return 0;
    size_t total = be16(iph + 2);
    reply_eth();
    u8 tmp[4];
    memcpy(tmp, iph + 12, 4);
    memcpy(iph + 12, iph + 16, 4);
    memcpy(iph + 16, tmp, 4);
    iph[10] = iph[11] = 0;
    u16 c = csum(iph, ihl);
    iph[10] = (u8)(c >> 8);
    iph[11] = (u8)c;
    icmp[0] = 0;                    /* echo reply */
    icmp[2] = icmp[3] = 0;
    c = csum(icmp, total - ihl);
    icmp[2] = (u8)(c >> 8);
    icmp[3] = (u8)c;
    printf("echo reply ret=%d\n", send(h, 14 + total));
    return 1;
}

void hvt_main(void)
{
    u64 h;
    const struct mft_entry *e = mft_get("service", &h);
    if (!e || !e->attached) {
        puts("service not attached\n");
        halt(2);
    }
    memcpy(mac, e->u.net.mac, 6);
    parse_ip();
    printf("service handle=%lu mtu=%u mac=%02x:%02x:%02x:%02x:%02x:%02x ip=%u.%u.%u.%u\n",
           h, e->u.net.mtu, mac[0], mac[1], mac[2], mac[3], mac[4], mac[5],
           ip[0], ip[1], ip[2], ip[3]);
    puts("ready\n");
    u64 pings = cmdline_num("pings=", 3);
    u64 wait = cmdline_num("wait=", 20) * 1000000000;
    u64 deadline = walltime() + wait;
    u64 answered = 0;
    while (answered < pings) {
        u64 now = walltime();
        if (now >= deadline) {
            printf("timed out after %lu replies\n", answered);
            halt(1);
        }
        if (!(poll(deadline - now, NULL) & (1ul << h)))
            continue;
        for (;;) {
            volatile struct hc_net n = { h, frame, sizeof frame, -1 };
            hypercall(HC_NET_READ, &n);
            if (n.ret != R_OK)
                break;
            u16 type = be16(frame + 12);
            if (type == 0x0806)
                handle_arp(h, n.len);
            else if (type == 0x0800)
                answered += (u64)handle_ip(h, n.len);
        }
    }
    printf("answered %lu pings\n", answered);
    halt(0);
}
