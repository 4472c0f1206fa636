/*
 * sse: exercises the instructions ukvm completes for KVM when KVM's own
 * instruction emulator gives up (hosts like PVM emulate all ring-0 code).
 * Each case runs right after a port I/O exit (outb to the unused port
 * 0x80) and is compared with the result the build host computed natively
 * for the same asm (sse_cases.h, sse_expect.c). Then: FXSAVE/FXRSTOR,
 * XSAVE/XRSTOR/XSAVEOPT (when the CPU offers them), int3 and int $0x40
 * through an IDT, and a #GP from a misaligned SSE operand delivered to the
 * guest's handler. Prints PASS/FAIL per instruction and exits 0 only if
 * every line passed.
 *
 * Command line word `uncovered`: instead, run MASKMOVDQU (an SSE2 store
 * through an implicit [EDI] operand, which ukvm does not complete), to see
 * the monitor report it and stop. `bench=N`: a timing loop, see bench().
 *
 * Built with SSE enabled (only this file); the C code itself stays scalar
 * (-fno-tree-vectorize), all SSE is in the asm.
 */
#include "common.h"
#include "sse_check.h"

#define SSE_PIO_EXIT "outb %%al, $0x80\n\t"
#include "sse_cases.h"
#include "sse_expect.h"

SSE_CASES(SSE_CASE_FN)

static void run_case(const char *name, void (*fn)(struct sse_io *), u32 i)
{
    struct sse_io io = { .a = SSE_A, .b = SSE_B, .r = SSE_R,
                         .mi = SSE_MXCSR_DOWN, .md = SSE_MXCSR_DEFAULT };
    const struct sse_expect *e = &sse_expect[i];
    fn(&io);
    int ok = !memcmp(io.o, e->o, sizeof io.o) && io.r == e->r && io.mo == e->mo;
    result(name, ok);
    if (!ok)
        kprintf("  got %08x %08x %08x %08x r=%08x mxcsr=%08x\n"
                "  want %08x %08x %08x %08x r=%08x mxcsr=%08x\n",
                io.o[0], io.o[1], io.o[2], io.o[3], io.r, io.mo,
                e->o[0], e->o[1], e->o[2], e->o[3], e->r, e->mo);
}

/* ---- FXSAVE / FXRSTOR / XSAVE family ---------------------------------- */

static u8 area[1024] __attribute__((aligned(64)));
static const u32 vec_a[4] = SSE_A, vec_b[4] = SSE_B;

static u32 rd32(const u8 *p) { u32 v; memcpy(&v, p, 4); return v; }

static void check_state_image(const char *name, u32 mxcsr)
{
    result(name, rd32(area + 24) == mxcsr && !memcmp(area + 160, vec_a, 16));
}

/* Load xmm0 and MXCSR, take a port exit, save the state with `save`. */
#define SAVE_STATE(save, extra_in...) \
    __asm__ volatile("movdqu %[v], %%xmm0\n\tldmxcsr %[m]\n\t" \
                     "outb %%al, $0x80\n\t" save " %[area]\n\t" \
                     "ldmxcsr %[d]" \
                     : [area] "=m"(area) \
                     : [v] "m"(vec_a), [m] "m"(mx), [d] "m"(def), ##extra_in \
                     : "xmm0", "memory")

/* Take a port exit, restore the state with `restore`, read it back. */
#define RESTORE_STATE(restore, extra_in...) \
    __asm__ volatile("outb %%al, $0x80\n\t" restore " %[area]\n\t" \
                     "movdqu %%xmm0, %[out]\n\tstmxcsr %[got]\n\t" \
                     "ldmxcsr %[d]" \
                     : [out] "=m"(out), [got] "=m"(got) \
                     : [area] "m"(area), [d] "m"(def), ##extra_in \
                     : "xmm0", "memory")

static void state_tests(void)
{
    u32 mx = SSE_MXCSR_DOWN, def = SSE_MXCSR_DEFAULT, up = 0x5f80, got;
    u32 out[4];

    memset(area, 0, sizeof area);
    SAVE_STATE("fxsave");
    check_state_image("fxsave", mx);
    memcpy(area + 160, vec_b, 16);
    memcpy(area + 24, &up, 4);
    RESTORE_STATE("fxrstor");
    result("fxrstor", !memcmp(out, vec_b, 16) && got == up);

    u32 a, b, c, d;
    cpuid(1, &a, &b, &c, &d);
    if (!(c & (1u << 26))) {
        kprintf("SKIP xsave: the CPU does not offer XSAVE\n");
        return;
    }
    u32 cr4;
    __asm__ volatile("mov %%cr4, %0" : "=r"(cr4));
    __asm__ volatile("mov %0, %%cr4" : : "r"(cr4 | (1u << 18)));   /* OSXSAVE */
    __asm__ volatile("xsetbv" : : "c"(0), "a"(3), "d"(0));         /* x87|SSE */

    memset(area, 0, sizeof area);
    SAVE_STATE("xsave", "a"(3), "d"(0));
    check_state_image("xsave", mx);
    u32 bv = rd32(area + 512);
    result("xsave header", (bv & 2) != 0 && (bv & ~3u) == 0);
    memcpy(area + 160, vec_b, 16);
    memcpy(area + 24, &up, 4);
    RESTORE_STATE("xrstor", "a"(3), "d"(0));
    result("xrstor", !memcmp(out, vec_b, 16) && got == up);

    cpuid(0, &a, &b, &c, &d);
    u32 xsaveopt = 0;
    if (a >= 0xd) {
        __asm__ volatile("cpuid" : "=a"(a), "=b"(b), "=c"(c), "=d"(d) : "a"(0xd), "c"(1));
        xsaveopt = a & 1;
    }
    if (!xsaveopt) {
        kprintf("SKIP xsaveopt: the CPU does not offer it\n");
        return;
    }
    memset(area, 0, sizeof area);
    SAVE_STATE("xsaveopt", "a"(3), "d"(0));
    check_state_image("xsaveopt", mx);
}

/* ---- int3, int n and a #GP through the guest's IDT --------------------- */

extern char bp_handler[], int40_handler[], gp_handler[], after_int3[], after_int40[];
volatile u32 trap_eip, trap_vector, gp_count, gp_error;

__asm__(".text\n"
        "bp_handler:\n\t"
        "pushl %eax\n\tmovl 4(%esp), %eax\n\tmovl %eax, trap_eip\n\t"
        "movl $3, trap_vector\n\tpopl %eax\n\tiret\n"
        "int40_handler:\n\t"
        "pushl %eax\n\tmovl 4(%esp), %eax\n\tmovl %eax, trap_eip\n\t"
        "movl $0x40, trap_vector\n\tpopl %eax\n\tiret\n"
        /* #GP pushes an error code; skip the 5-byte faulting pxor. */
        "gp_handler:\n\t"
        "popl gp_error\n\tincl gp_count\n\taddl $5, (%esp)\n\tiret\n");

static u32 idt[2 * 0x41];

static void set_gate(u32 vector, void *handler)
{
    u16 cs;
    __asm__ volatile("movw %%cs, %0" : "=r"(cs));
    u32 off = (u32)handler;
    idt[2 * vector] = (off & 0xffff) | ((u32)cs << 16);
    idt[2 * vector + 1] = (off & 0xffff0000u) | 0x8e00;   /* present, DPL 0, 32-bit interrupt gate */
}

static void interrupt_tests(void)
{
    static struct {
        u16 limit;
        u32 base;
    } __attribute__((packed)) idtr;
    set_gate(3, bp_handler);
    set_gate(13, gp_handler);
    set_gate(0x40, int40_handler);
    idtr.limit = sizeof idt - 1;
    idtr.base = (u32)idt;
    __asm__ volatile("lidt %0" : : "m"(idtr));

    __asm__ volatile("outb %%al, $0x80\n\tint3\n"
                     "after_int3:" : : : "memory");
    result("int3", trap_vector == 3 && trap_eip == (u32)after_int3);
    trap_vector = 0;
    __asm__ volatile("outb %%al, $0x80\n\tint $0x40\n"
                     "after_int40:" : : : "memory");
    result("int 0x40", trap_vector == 0x40 && trap_eip == (u32)after_int40);

    /* Legacy SSE wants 16-byte aligned operands: #GP(0), handled above. */
    static u8 buf[32] __attribute__((aligned(16)));
    __asm__ volatile("outb %%al, $0x80\n\tpxor 1(%0), %%xmm0"
                     : : "r"(buf) : "xmm0", "memory");
    result("#GP on misaligned pxor", gp_count == 1 && gp_error == 0);
}

/* bench=N: signal ready (port 0x510), run N pxor (each completed by ukvm
 * on hosts like PVM, with the SSE state round trip), with `popcnt` N
 * popcnt (completed without it) or, with `movdqa`, N register moves (KVM's
 * emulator does those itself: the baseline), then exit 0. The time from
 * ready to exit in --timings, over N, is the cost per instruction. */
static void bench(const char *cmdline)
{
    u32 n = 0;
    parse_u32(cmdline_value(cmdline, "bench"), &n);
    int baseline = cmdline_has(cmdline, "movdqa");
    int popcnt = cmdline_has(cmdline, "popcnt");
    u32 x = 0x1234;
    signal_ready();
    if (popcnt)
        for (u32 i = 0; i < n; i++)
            __asm__ volatile("popcnt %0, %0" : "+r"(x) : : "cc");
    else if (baseline)
        for (u32 i = 0; i < n; i++)
            __asm__ volatile("movdqa %%xmm1, %%xmm0" : : : "xmm0");
    else
        for (u32 i = 0; i < n; i++)
            __asm__ volatile("pxor %%xmm1, %%xmm0" : : : "xmm0");
    exit_status(0);
}

static void uncovered(void)
{
    static u8 buf[16] __attribute__((aligned(16)));
    kprintf("running maskmovdqu\n");
    __asm__ volatile("outb %%al, $0x80\n\tmaskmovdqu %%xmm1, %%xmm0"
                     : : "D"(buf) : "memory");
    kprintf("maskmovdqu completed\n");
    exit_status(0);
}

void guest_main(u32 magic, const struct mb_info *mbi)
{
    (void)magic;
    enable_sse();
    serial_init();
    kprintf("ukvm sse test\n");
    if (cmdline_has(mb_cmdline(mbi), "uncovered"))
        uncovered();
    if (cmdline_value(mb_cmdline(mbi), "bench"))
        bench(mb_cmdline(mbi));
    u32 i = 0;
#define RUN(name, text) run_case(#name, sse_case_##name, i++);
    SSE_CASES(RUN)
    state_tests();
    interrupt_tests();
    kprintf("sse: %u of %u checks passed\n", passed, passed + failed);
    exit_status(failed ? 1 : 0);
}
