/*
 * The instruction cases of the sse guest, shared by the guest (sse.c) and
 * by the host program that computes the expected results at build time
 * (sse_expect.c): both run exactly the same asm text, the guest in ring 0
 * under ukvm right after a port I/O exit, the host natively.
 *
 * Each case starts with xmm0 = a, xmm1 = b, r as given; its text may use
 * %[b] (16-byte memory), %[r] (32-bit register, in/out), %[mi] / %[mo] /
 * %[md] (MXCSR to load, MXCSR stored, default MXCSR to restore). The
 * result is xmm0, r and mo.
 */
#ifndef UKVM_SSE_CASES_H
#define UKVM_SSE_CASES_H

struct sse_io {
    unsigned int a[4], b[4], o[4];
    unsigned int r, mi, mo, md;
} __attribute__((aligned(16)));

/* 1.5f, -2.25f, pi, 100.0f   and   2.0f, 0.5f, -1.0f, 10.0f */
#define SSE_A { 0x3fc00000u, 0xc0100000u, 0x40490fdbu, 0x42c80000u }
#define SSE_B { 0x40000000u, 0x3f000000u, 0xbf800000u, 0x41200000u }
#define SSE_R 0x12345678u
/* Round toward -inf, all exceptions masked. */
#define SSE_MXCSR_DOWN 0x3f80u
#define SSE_MXCSR_DEFAULT 0x1f80u

#define SSE_CASES(X) \
    X(addps, "addps %%xmm1, %%xmm0") \
    X(subps, "subps %%xmm1, %%xmm0") \
    X(mulps, "mulps %%xmm1, %%xmm0") \
    X(divps, "divps %%xmm1, %%xmm0") \
    X(sqrtps, "sqrtps %%xmm1, %%xmm0") \
    X(maxps, "maxps %%xmm1, %%xmm0") \
    X(minss, "minss %%xmm1, %%xmm0") \
    X(addsd, "addsd %%xmm1, %%xmm0") \
    X(mulpd, "mulpd %%xmm1, %%xmm0") \
    X(divsd, "divsd %%xmm1, %%xmm0") \
    X(sqrtsd, "sqrtsd %%xmm1, %%xmm0") \
    X(andps, "andps %%xmm1, %%xmm0") \
    X(andnps, "andnps %%xmm1, %%xmm0") \
    X(orps, "orps %%xmm1, %%xmm0") \
    X(xorps, "xorps %%xmm1, %%xmm0") \
    X(pxor, "pxor %%xmm1, %%xmm0") \
    X(por, "por %%xmm1, %%xmm0") \
    X(pand, "pand %%xmm1, %%xmm0") \
    X(paddb, "paddb %%xmm1, %%xmm0") \
    X(paddw, "paddw %%xmm1, %%xmm0") \
    X(paddd, "paddd %%xmm1, %%xmm0") \
    X(paddq, "paddq %%xmm1, %%xmm0") \
    X(psubd, "psubd %%xmm1, %%xmm0") \
    X(pmullw, "pmullw %%xmm1, %%xmm0") \
    X(pmuludq, "pmuludq %%xmm1, %%xmm0") \
    X(pmaddwd, "pmaddwd %%xmm1, %%xmm0") \
    X(psadbw, "psadbw %%xmm1, %%xmm0") \
    X(pavgb, "pavgb %%xmm1, %%xmm0") \
    X(pcmpeqb, "pcmpeqb %%xmm1, %%xmm0") \
    X(pcmpgtd, "pcmpgtd %%xmm1, %%xmm0") \
    X(psllq, "psllq $7, %%xmm0") \
    X(psrad, "psrad $3, %%xmm0") \
    X(pshufd, "pshufd $0x1b, %%xmm1, %%xmm0") \
    X(punpcklbw, "punpcklbw %%xmm1, %%xmm0") \
    X(packsswb, "packsswb %%xmm1, %%xmm0") \
    X(pminub, "pminub %%xmm1, %%xmm0") \
    X(shufps, "shufps $0x4e, %%xmm1, %%xmm0") \
    X(unpcklps, "unpcklps %%xmm1, %%xmm0") \
    X(cvtdq2ps, "cvtdq2ps %%xmm1, %%xmm0") \
    X(cvtps2dq, "cvtps2dq %%xmm0, %%xmm0") \
    X(cvttps2dq, "cvttps2dq %%xmm0, %%xmm0") \
    X(cvtps2pd, "cvtps2pd %%xmm1, %%xmm0") \
    X(cvtpd2ps, "cvtpd2ps %%xmm0, %%xmm0") \
    X(cvtsi2sd, "cvtsi2sd %[r], %%xmm0") \
    X(cvttss2si, "cvttss2si %%xmm0, %[r]") \
    X(pmovmskb, "pmovmskb %%xmm1, %[r]") \
    X(movmskps, "movmskps %%xmm0, %[r]") \
    X(pextrw, "pextrw $3, %%xmm0, %[r]") \
    X(pinsrw, "pinsrw $5, %[r], %%xmm0") \
    X(comiss, "comiss %%xmm1, %%xmm0\n\tsbb %[r], %[r]") \
    X(ucomisd, "ucomisd %%xmm0, %%xmm0\n\tsetz %b[r]") \
    X(haddps, "haddps %%xmm1, %%xmm0") \
    X(addsubps, "addsubps %%xmm1, %%xmm0") \
    X(movshdup, "movshdup %%xmm1, %%xmm0") \
    X(pshufb, "pshufb %%xmm1, %%xmm0") \
    X(phaddd, "phaddd %%xmm1, %%xmm0") \
    X(pabsb, "pabsb %%xmm1, %%xmm0") \
    X(palignr, "palignr $5, %%xmm1, %%xmm0") \
    X(pmulhrsw, "pmulhrsw %%xmm1, %%xmm0") \
    X(pmulld, "pmulld %%xmm1, %%xmm0") \
    X(pminsd, "pminsd %%xmm1, %%xmm0") \
    X(pmaxud, "pmaxud %%xmm1, %%xmm0") \
    X(blendps, "blendps $5, %%xmm1, %%xmm0") \
    X(pblendw, "pblendw $0x3c, %%xmm1, %%xmm0") \
    X(roundps, "roundps $1, %%xmm0, %%xmm0") \
    X(dpps, "dpps $0xf1, %%xmm1, %%xmm0") \
    X(ptest, "ptest %%xmm1, %%xmm0\n\tsetz %b[r]") \
    X(pmovzxbw, "pmovzxbw %%xmm1, %%xmm0") \
    X(pextrd, "pextrd $2, %%xmm0, %[r]") \
    X(pinsrd, "pinsrd $1, %[r], %%xmm0") \
    X(insertps, "insertps $0x90, %%xmm1, %%xmm0") \
    X(packusdw, "packusdw %%xmm1, %%xmm0") \
    X(pcmpgtq, "pcmpgtq %%xmm1, %%xmm0") \
    X(crc32, "crc32l %[b], %[r]") \
    X(pcmpistri, "pcmpistri $0x0c, %%xmm1, %%xmm0\n\tmov %%ecx, %[r]") \
    X(mulps_mem, "mulps %[b], %%xmm0") \
    X(paddd_mem, "paddd %[b], %%xmm0") \
    X(pshufb_mem, "pshufb %[b], %%xmm0") \
    X(cvtdq2pd_mem, "cvtdq2pd %[b], %%xmm0") \
    X(addss_mem, "addss %[b], %%xmm0") \
    X(ldmxcsr, "ldmxcsr %[mi]\n\tcvtps2dq %%xmm0, %%xmm0\n\tstmxcsr %[mo]\n\tldmxcsr %[md]") \
    X(stmxcsr, "divps %%xmm1, %%xmm0\n\tstmxcsr %[mo]\n\tldmxcsr %[md]")

/*
 * One function per case. SSE_PIO_EXIT is a port write in the guest (so
 * KVM takes an exit and, on hosts like PVM, emulates what follows) and
 * empty on the host.
 */
#define SSE_CASE_FN(name, text) \
    static void sse_case_##name(struct sse_io *io) \
    { \
        __asm__ volatile("movdqu %[a], %%xmm0\n\t" \
                         "movdqu %[b], %%xmm1\n\t" \
                         SSE_PIO_EXIT \
                         text "\n\t" \
                         "movdqu %%xmm0, %[o]" \
                         : [o] "=m"(io->o), [r] "+q"(io->r), [mo] "=m"(io->mo) \
                         : [a] "m"(io->a), [b] "m"(io->b), [mi] "m"(io->mi), \
                           [md] "m"(io->md) \
                         : "xmm0", "xmm1", "ecx", "cc", "memory"); \
    }

#endif
