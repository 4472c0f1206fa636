/*
 * sse64: the instruction-completion test in 64-bit mode (the sse guest is
 * its 32-bit counterpart). Entered in long mode through the 64-bit Linux
 * boot protocol, like linux64 (same entry stub start64.S, which calls
 * linux64_main, and link map). Each case runs right after a port I/O exit
 * (outb to the unused port 0x80), so KVM on hosts like PVM emulates it, and
 * is compared with the result the build host computed natively for the
 * same asm (sse64_cases.h, sse64_expect.c): RIP-relative SSE memory
 * operands (loads, a store, REX registers), 64-bit general-register
 * operands, POPCNT and CRC32, FWAIT, cmpxchg16b hit and miss. Then FXSAVE64/FXRSTOR64 and the
 * XSAVE family in 64-bit form (XSAVE64/XRSTOR64, XSAVEC64 and XRSTOR64 of
 * the compacted area as Linux uses them, XSAVES64/XRSTORS64, when the CPU
 * offers them), int3 and int $0x40 through a 64-bit IDT, and #GP for a
 * misaligned SSE operand and a misaligned cmpxchg16b, delivered to the
 * guest's handler. Prints PASS/FAIL per check and exits 0 only if every
 * line passed.
 *
 * Built with SSE enabled (only this file); all SSE is in the asm.
 */
#include "common.h"
#include "sse_check.h"

#define SSE64_PIO_EXIT "outb %%al, $0x80\n\t"
#include "sse64_cases.h"
#include "sse64_expect.h"

typedef unsigned long uptr;

SSE64_CASES(SSE64_CASE_FN)

static void run_case(const char *name, void (*fn)(struct sse64_io *), u32 i)
{
    struct sse64_io io = { .a = SSE64_A, .b = SSE64_B, .m = SSE64_M,
                           .r = SSE64_R, .s = SSE64_S };
    const struct sse64_expect *e = &sse64_expect[i];
    fn(&io);
    int ok = !memcmp(io.o, e->o, sizeof io.o) && !memcmp(io.m, e->m, sizeof io.m) &&
             io.r == e->r && io.s == e->s;
    result(name, ok);
    if (!ok)
        kprintf("  got  o %08x %08x %08x %08x m %08x %08x %08x %08x r=%llx s=%llx\n"
                "  want o %08x %08x %08x %08x m %08x %08x %08x %08x r=%llx s=%llx\n",
                io.o[0], io.o[1], io.o[2], io.o[3], io.m[0], io.m[1], io.m[2], io.m[3],
                io.r, io.s, e->o[0], e->o[1], e->o[2], e->o[3], e->m[0], e->m[1],
                e->m[2], e->m[3], e->r, e->s);
}

/* ---- FXSAVE64 / FXRSTOR64 / the XSAVE family ---------------------------- */

static u8 area[4096] __attribute__((aligned(64)));
static const u32 vec_a[4] = SSE64_A, vec_b[4] = SSE64_B;

static u32 rd32(const u8 *p) { u32 v; memcpy(&v, p, 4); return v; }
static u64 rd64(const u8 *p) { u64 v; memcpy(&v, p, 8); return v; }

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

static u32 mx = 0x3f80, def = 0x1f80, up = 0x5f80, got, out[4];

static void cpuid_sub(u32 leaf, u32 sub, u32 *a, u32 *b, u32 *c, u32 *d)
{
    __asm__ volatile("cpuid" : "=a"(*a), "=b"(*b), "=c"(*c), "=d"(*d) : "a"(leaf), "c"(sub));
}

/* Save with `save` (EDX:EAX = rfbm), check the image, then change xmm0 and
 * MXCSR in it and restore with `restore`. */
static void save_restore(const char *save, const char *restore, u32 rfbm, u64 want_xcomp)
{
    memset(area, 0, sizeof area);
    if (!strcmp(save, "xsave64"))
        SAVE_STATE("xsave64", "a"(rfbm), "d"(0));
    else if (!strcmp(save, "xsavec64"))
        SAVE_STATE("xsavec64", "a"(rfbm), "d"(0));
    else
        SAVE_STATE("xsaves64", "a"(rfbm), "d"(0));
    check_state_image(save, mx);
    u64 bv = rd64(area + 512), xcomp = rd64(area + 520);
    kprintf("  %s: XSTATE_BV %llx XCOMP_BV %llx\n", save, bv, xcomp);
    char name[32];
    memcpy(name, save, strlen(save) + 1);
    memcpy(name + strlen(save), " header", 8);
    result(name, (bv & 2) && !(bv & ~(u64)rfbm) && xcomp == want_xcomp);

    memcpy(area + 160, vec_b, 16);
    memcpy(area + 24, &up, 4);
    if (!strcmp(restore, "xrstors64"))
        RESTORE_STATE("xrstors64", "a"(rfbm), "d"(0));
    else
        RESTORE_STATE("xrstor64", "a"(rfbm), "d"(0));
    memcpy(name, restore, strlen(restore) + 1);
    if (want_xcomp)
        memcpy(name + strlen(restore), " compacted", 11);
    result(name, !memcmp(out, vec_b, 16) && got == up);
}

static void state_tests(void)
{
    memset(area, 0, sizeof area);
    SAVE_STATE("fxsave64");
    check_state_image("fxsave64", mx);
    memcpy(area + 160, vec_b, 16);
    memcpy(area + 24, &up, 4);
    RESTORE_STATE("fxrstor64");
    result("fxrstor64", !memcmp(out, vec_b, 16) && got == up);

    u32 a, b, c, d;
    cpuid(1, &a, &b, &c, &d);
    if (!(c & (1u << 26))) {
        kprintf("SKIP xsave: the CPU does not offer XSAVE\n");
        return;
    }
    /* x87, SSE and, where offered, AVX: the components Linux enables first. */
    cpuid_sub(0xd, 0, &a, &b, &c, &d);
    u32 xcr0 = 3 | (a & 4);
    u64 cr4;
    __asm__ volatile("mov %%cr4, %0" : "=r"(cr4));
    __asm__ volatile("mov %0, %%cr4" : : "r"(cr4 | (1ull << 18)));   /* OSXSAVE */
    __asm__ volatile("xsetbv" : : "c"(0), "a"(xcr0), "d"(0));
    kprintf("  XCR0 %x\n", xcr0);

    save_restore("xsave64", "xrstor64", xcr0, 0);
    cpuid_sub(0xd, 1, &a, &b, &c, &d);
    if (!(a & 2)) {
        kprintf("SKIP xsavec64: the CPU does not offer XSAVEC\n");
        return;
    }
    save_restore("xsavec64", "xrstor64", xcr0, (1ull << 63) | xcr0);
    if (!(a & 8)) {
        kprintf("SKIP xsaves64: the CPU does not offer XSAVES\n");
        return;
    }
    save_restore("xsaves64", "xrstors64", xcr0, (1ull << 63) | xcr0);
}

/* ---- int3, int n and #GP through a 64-bit IDT --------------------------- */

extern char bp_handler[], int40_handler[], gp_handler[], after_int3[], after_int40[];
extern char gp_pxor_end[], gp_cx_end[];
volatile u64 trap_rip, trap_vector, gp_count, gp_error, gp_resume;

__asm__(".text\n"
        "bp_handler:\n\t"
        "pushq %rax\n\tmovq 8(%rsp), %rax\n\tmovq %rax, trap_rip(%rip)\n\t"
        "movq $3, trap_vector(%rip)\n\tpopq %rax\n\tiretq\n"
        "int40_handler:\n\t"
        "pushq %rax\n\tmovq 8(%rsp), %rax\n\tmovq %rax, trap_rip(%rip)\n\t"
        "movq $0x40, trap_vector(%rip)\n\tpopq %rax\n\tiretq\n"
        /* #GP pushes an error code; resume where the test said. */
        "gp_handler:\n\t"
        "popq gp_error(%rip)\n\tincq gp_count(%rip)\n\tpushq %rax\n\t"
        "movq gp_resume(%rip), %rax\n\tmovq %rax, 8(%rsp)\n\tpopq %rax\n\tiretq\n");

static u64 idt[2 * 0x41] __attribute__((aligned(16)));

static void set_gate(u32 vector, void *handler)
{
    u16 cs;
    __asm__ volatile("movw %%cs, %0" : "=r"(cs));
    u64 off = (uptr)handler;
    /* Present, DPL 0, 64-bit interrupt gate, IST 0. */
    idt[2 * vector] = (off & 0xffff) | ((u64)cs << 16) | (0x8e00ull << 32) |
                      ((off & 0xffff0000ull) << 32);
    idt[2 * vector + 1] = off >> 32;
}

static void interrupt_tests(void)
{
    static struct {
        u16 limit;
        u64 base;
    } __attribute__((packed)) idtr;
    set_gate(3, bp_handler);
    set_gate(13, gp_handler);
    set_gate(0x40, int40_handler);
    idtr.limit = sizeof idt - 1;
    idtr.base = (uptr)idt;
    __asm__ volatile("lidt %0" : : "m"(idtr));

    __asm__ volatile("outb %%al, $0x80\n\tint3\n"
                     "after_int3:" : : : "memory");
    result("int3", trap_vector == 3 && trap_rip == (uptr)after_int3);
    trap_vector = 0;
    __asm__ volatile("outb %%al, $0x80\n\tint $0x40\n"
                     "after_int40:" : : : "memory");
    result("int 0x40", trap_vector == 0x40 && trap_rip == (uptr)after_int40);

    /* Legacy SSE wants 16-byte aligned operands, cmpxchg16b too: #GP(0). */
    static u8 buf[48] __attribute__((aligned(16)));
    gp_resume = (uptr)gp_pxor_end;
    __asm__ volatile("outb %%al, $0x80\n"
                     "gp_pxor:\n\tpxor 1(%0), %%xmm0\n"
                     "gp_pxor_end:"
                     : : "r"(buf) : "xmm0", "memory");
    result("#GP on misaligned pxor", gp_count == 1 && gp_error == 0);
    gp_resume = (uptr)gp_cx_end;
    __asm__ volatile("outb %%al, $0x80\n"
                     "gp_cx:\n\tlock cmpxchg16b 8(%0)\n"
                     "gp_cx_end:"
                     : : "r"(buf), "a"(0), "d"(0), "b"(0), "c"(0) : "cc", "memory");
    result("#GP on misaligned cmpxchg16b", gp_count == 2 && gp_error == 0);
}

/* Called by start64.S (the entry shared with linux64) with RDI = zero page. */
void linux64_main(const u8 *zp)
{
    (void)zp;
    enable_sse();
    serial_init();
    kprintf("ukvm sse64 test\n");
    u32 i = 0;
#define RUN(name, text) run_case(#name, sse64_case_##name, i++);
    SSE64_CASES(RUN)
    state_tests();
    interrupt_tests();
    kprintf("sse64: %u of %u checks passed\n", passed, passed + failed);
    exit_status(failed ? 1 : 0);
}
