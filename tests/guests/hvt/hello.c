/*
 * hvt hello: prints what the monitor handed over and halts with the
 * status asked for on the command line.
 *
 * Command line words: exit=N (halt status), wrtext (write to its own
 * read-only text: must fault), abort (halt with a cookie, like
 * solo5_abort).
 */
#include "hvt.h"

#ifndef ABI_VERSION
#define ABI_VERSION 1
#endif
HVT_ABI_NOTE(ABI_VERSION);

#ifdef BIG_MANIFEST
/* 65 entries: one more than MFT_MAX_ENTRIES. */
HVT_MANIFEST(65, { "disk", MFT_BLOCK });
#else
HVT_MANIFEST(1);
#endif

extern char _end[];

void hvt_main(void)
{
    const struct hvt_boot_info *bi = boot_info;
    puts("hvt hello\n");
    printf("cmdline: %s\n", bi->cmdline);
    printf("mem_size=0x%lx kernel_end=0x%lx end_ok=%d\n", bi->mem_size,
           bi->kernel_end, bi->kernel_end == (u64)_end);
    printf("cpu_cycle_freq_nonzero=%d\n", bi->cpu_cycle_freq != 0);
    u64 rsp;
    __asm__ volatile("mov %%rsp, %0" : "=r"(rsp));
    printf("stack_top_ok=%d\n", rsp < bi->mem_size && rsp > bi->mem_size - 0x10000);
    if (cmdline_has("wrtext")) {
        puts("writing to text\n");
        *(volatile u8 *)hvt_main = 0x90;
        puts("text was writable\n");
    }
    if (cmdline_has("abort")) {
        static char trap_frame[512];
        volatile struct hc_halt h = { trap_frame, 255 };
        hypercall(HC_HALT, &h);
    }
    u64 status = cmdline_num("exit=", 0);
    printf("halting with %lu\n", status);
    halt((int)status);
}
