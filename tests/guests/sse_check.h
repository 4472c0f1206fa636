/*
 * What the sse (32-bit) and sse64 (64-bit) instruction-completion guests
 * share: PASS/FAIL counting and turning SSE on. Included once by each.
 */
#ifndef SSE_CHECK_H
#define SSE_CHECK_H

#include "common.h"

static u32 passed, failed;

static void result(const char *name, int ok)
{
    if (ok)
        passed++;
    else
        failed++;
    kprintf("%s %s\n", ok ? "PASS" : "FAIL", name);
}

/* CR0.EM off, CR0.MP on, CR4.OSFXSR and OSXMMEXCPT on. `unsigned long`
 * is the control-register width in both builds. */
static void enable_sse(void)
{
    unsigned long cr0, cr4;
    __asm__ volatile("mov %%cr0, %0" : "=r"(cr0));
    cr0 = (cr0 & ~(1ul << 2)) | (1ul << 1);
    __asm__ volatile("mov %0, %%cr0" : : "r"(cr0));
    __asm__ volatile("mov %%cr4, %0" : "=r"(cr4));
    cr4 |= (1ul << 9) | (1ul << 10);
    __asm__ volatile("mov %0, %%cr4" : : "r"(cr4));
}

#endif
