/*
 * The instruction cases of the sse64 guest, shared by the guest (sse64.c)
 * and by the host program that computes the expected results at build time
 * (sse64_expect.c): both run exactly the same asm text, the guest in
 * 64-bit ring 0 under ukvm right after a port I/O exit, the host natively.
 *
 * Each case starts with xmm0 = a, xmm1 = b, r8 = r, r9 = s; its text may
 * use %[m] (16 bytes, 16-aligned, in/out), the RIP-relative variables
 * below, and clobber rax, rbx, rcx, rdx and xmm9. The result is xmm0, r8,
 * r9, m and the variables.
 */
#ifndef UKVM_SSE64_CASES_H
#define UKVM_SSE64_CASES_H

struct sse64_io {
    unsigned int a[4], b[4], m[4], o[4];
    unsigned long long r, s;
} __attribute__((aligned(16)));

/* 1.5f, -2.25f, pi, 100.0f   and   2.0f, 0.5f, -1.0f, 10.0f */
#define SSE64_A { 0x3fc00000u, 0xc0100000u, 0x40490fdbu, 0x42c80000u }
#define SSE64_B { 0x40000000u, 0x3f000000u, 0xbf800000u, 0x41200000u }
#define SSE64_M { 0x11111111u, 0x22222222u, 0x33333333u, 0x44444444u }
#define SSE64_R 0x0123456789abcdefull
#define SSE64_S 0xfedcba9876543210ull

/* Operands the cases reach RIP-relative (what -mcmodel=small and PIE
 * code use for static data): a constant vector, a word written by a store,
 * a cmpxchg16b target, two MXCSR values. */
static const unsigned int sse64_k[4] __attribute__((aligned(16), used)) =
    { 0x3f800000u, 0x40400000u, 0x0c0d0e0fu, 0x00010203u };
static unsigned long long sse64_w __attribute__((aligned(16), used));
static unsigned long long sse64_cx[2] __attribute__((aligned(16), used)) =
    { 0x5555555555555555ull, 0x6666666666666666ull };
static const unsigned int sse64_mx_down __attribute__((used)) = 0x3f80u;
static const unsigned int sse64_mx_default __attribute__((used)) = 0x1f80u;

#define SSE64_CASES(X) \
    X(mulps_rip, "mulps sse64_k(%%rip), %%xmm0") \
    X(paddd_rip, "paddd sse64_k(%%rip), %%xmm0") \
    X(pshufb_rip, "pshufb sse64_k(%%rip), %%xmm0") \
    X(addsd_rip, "addsd sse64_k(%%rip), %%xmm0") \
    X(pxor_rip_xmm9, "movdqa %%xmm0, %%xmm9\n\tpxor sse64_k(%%rip), %%xmm9\n\t" \
                     "movdqa %%xmm9, %%xmm0") \
    X(pextrq_to_rip, "pextrq $1, %%xmm1, sse64_w(%%rip)\n\tmovq sse64_w(%%rip), %%r8") \
    X(stmxcsr_rip, "ldmxcsr sse64_mx_down(%%rip)\n\tstmxcsr sse64_w(%%rip)\n\t" \
                   "ldmxcsr sse64_mx_default(%%rip)\n\tmovl sse64_w(%%rip), %%r9d") \
    X(ldmxcsr_rip, "ldmxcsr sse64_mx_down(%%rip)\n\tcvtps2dq %%xmm0, %%xmm0\n\t" \
                   "ldmxcsr sse64_mx_default(%%rip)") \
    X(cvtsi2sdq, "cvtsi2sdq %%r8, %%xmm0") \
    X(cvttsd2siq, "cvttsd2siq %%xmm0, %%r9") \
    X(pinsrq, "pinsrq $1, %%r9, %%xmm0") \
    X(pextrq, "pextrq $1, %%xmm1, %%r8") \
    X(pmovmskb_r64, "pmovmskb %%xmm1, %%r9") \
    X(crc32q, "crc32q %%r9, %%r8") \
    X(popcnt, "popcnt %%r8, %%r9") \
    X(fwait, "fninit\n\tfwait\n\tfnstsw %%ax\n\tmovzwq %%ax, %%r9") \
    X(cmpxchg16b_hit, "movq %[m], %%rax\n\tmovq 8+%[m], %%rdx\n\t" \
                      "movq %%r8, %%rbx\n\tmovq %%r9, %%rcx\n\t" \
                      "lock cmpxchg16b %[m]\n\tsetz %%r8b\n\tmovq %%rdx, %%r9") \
    X(cmpxchg16b_miss, "movq %[m], %%rax\n\tnotq %%rax\n\tmovq 8+%[m], %%rdx\n\t" \
                       "movq %%r8, %%rbx\n\tmovq %%r9, %%rcx\n\t" \
                       "lock cmpxchg16b %[m]\n\tsetz %%r8b\n\tmovq %%rax, %%r9") \
    X(cmpxchg16b_rip, "movq sse64_cx(%%rip), %%rax\n\tmovq sse64_cx+8(%%rip), %%rdx\n\t" \
                      "movq %%r8, %%rbx\n\tmovq %%r9, %%rcx\n\t" \
                      "lock cmpxchg16b sse64_cx(%%rip)\n\tsetz %%r8b\n\t" \
                      "movq sse64_cx+8(%%rip), %%r9")

/*
 * One function per case. SSE64_PIO_EXIT is a port write in the guest (so
 * KVM takes an exit and, on hosts like PVM, emulates what follows) and
 * empty on the host.
 */
#define SSE64_CASE_FN(name, text) \
    static void sse64_case_##name(struct sse64_io *io) \
    { \
        __asm__ volatile("movdqu %[a], %%xmm0\n\t" \
                         "movdqu %[b], %%xmm1\n\t" \
                         "movq %[r], %%r8\n\t" \
                         "movq %[s], %%r9\n\t" \
                         SSE64_PIO_EXIT \
                         text "\n\t" \
                         "movdqu %%xmm0, %[o]\n\t" \
                         "movq %%r8, %[r]\n\t" \
                         "movq %%r9, %[s]" \
                         : [o] "=m"(io->o), [r] "+m"(io->r), [s] "+m"(io->s), \
                           [m] "+m"(io->m) \
                         : [a] "m"(io->a), [b] "m"(io->b) \
                         : "xmm0", "xmm1", "xmm9", "rax", "rbx", "rcx", "rdx", \
                           "r8", "r9", "cc", "memory"); \
    }

#endif
