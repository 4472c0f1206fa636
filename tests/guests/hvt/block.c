/*
 * hvt block: writes a pattern to sectors 1..4 of block device "storage",
 * reads them back and compares; reads sector 0 and prints its first
 * bytes. Prints every call's result. Command line: ro (expect the write
 * to be refused), sectors=N, hostile (then hypercalls whose structures
 * and buffers sit at the last bytes of memory: the legal ones work, a
 * block read into the last byte is refused and ends the guest).
 */
#include "hvt.h"

HVT_ABI_NOTE(1);
HVT_MANIFEST(2, { "storage", MFT_BLOCK });

static u8 wbuf[4 * 512], rbuf[4 * 512];

static int block(int call, u64 h, u64 off, void *data, size_t len)
{
    volatile struct hc_block b = { h, off, data, len, -1 };
    hypercall(call, &b);
    return b.ret;
}

void hvt_main(void)
{
    u64 h;
    const struct mft_entry *e = mft_get("storage", &h);
    if (!e || !e->attached) {
        puts("storage not attached\n");
        halt(1);
    }
    printf("storage handle=%lu capacity=%lu block_size=%u\n", h,
           e->u.block.capacity, e->u.block.block_size);
    for (u32 i = 0; i < sizeof wbuf; i++)
        wbuf[i] = (u8)(i * 7 + 3);
    int w = block(HC_BLOCK_WRITE, h, 512, wbuf, sizeof wbuf);
    printf("write ret=%d\n", w);
    int r = block(HC_BLOCK_READ, h, 512, rbuf, sizeof rbuf);
    printf("read ret=%d\n", r);
    if (w == R_OK)
        printf("readback %s\n", memcmp(wbuf, rbuf, sizeof wbuf) ? "differs" : "matches");
    r = block(HC_BLOCK_READ, h, 0, rbuf, 512);
    printf("sector0 ret=%d first=%c%c%c%c\n", r, rbuf[0], rbuf[1], rbuf[2], rbuf[3]);
    /* Past the end and unaligned: refused with EINVAL. */
    printf("past_end ret=%d\n", block(HC_BLOCK_READ, h, e->u.block.capacity, rbuf, 512));
    printf("unaligned ret=%d\n", block(HC_BLOCK_READ, h, 100, rbuf, 512));
    printf("bad_handle ret=%d\n", block(HC_BLOCK_READ, 9, 0, rbuf, 512));
    if (cmdline_has("hostile")) {
        u64 end = boot_info->mem_size;
        volatile char *last = (volatile char *)(end - 1);
        *last = '!';
        volatile struct hc_puts p = { (const char *)last, 1 };
        hypercall(HC_PUTS, &p);
        puts(" <- puts of the last byte\n");
        volatile struct hc_walltime *w = (volatile struct hc_walltime *)(end - 8);
        w->nsecs = 0;
        hypercall(HC_WALLTIME, w);
        printf("walltime in the last 8 bytes: %s\n", w->nsecs ? "set" : "zero");
        puts("block read into the last byte:\n");
        block(HC_BLOCK_READ, h, 0, (void *)(end - 1), 512);
        puts("FAIL: the read into the last byte was accepted\n");
        halt(1);
    }
    halt(0);
}
