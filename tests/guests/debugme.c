/*
 * debugme: a guest to debug, built with -g so gdb knows its functions,
 * globals and types (tests/tests/gdb.rs, tests/tests/dumpcore.rs).
 *
 * Default: bump(1), bump(2), bump(3) add to the global `counter`, then it
 * prints "counter=6" and exits with status 6.
 * Command line words:
 *   spin   bump the counter forever (interrupting it with gdb's Ctrl-C)
 *   crash  call crash_here(), which triple faults (empty IDT, ud2): the
 *          core-dump test's backtrace must name crash_here and guest_main
 */
#include "common.h"

volatile u32 counter;

__attribute__((noinline)) u32 bump(u32 by)
{
    counter += by;
    return counter;
}

__attribute__((noinline)) void crash_here(void)
{
    static const struct {
        u16 limit;
        u32 base;
    } __attribute__((packed)) empty_idt = { 0, 0 };
    serial_puts("debugme: crashing\n");
    __asm__ volatile("lidt %0" : : "m"(empty_idt));
    __asm__ volatile("ud2");
    /* Never reached; keeps the call from being a tail jump. */
    serial_puts("debugme: still alive\n");
}

void guest_main(u32 magic, const struct mb_info *mbi)
{
    (void)magic;
    const char *cmdline = mb_cmdline(mbi);
    serial_init();
    serial_puts("debugme\n");
    if (cmdline_has(cmdline, "crash"))
        crash_here();
    if (cmdline_has(cmdline, "spin"))
        for (;;)
            bump(1);
    for (u32 i = 1; i <= 3; i++)
        bump(i);
    kprintf("counter=%u\n", counter);
    exit_status((u8)counter);
}
