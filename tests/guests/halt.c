/*
 * halt: prints a line, then stops the CPU for good. Tests how the monitor
 * treats a guest that halts with nothing left to wake it.
 *
 * Command line:
 *   (empty)  cli; hlt: interrupts off.
 *   sti      sti; hlt with interrupts on, but no timer programmed and no
 *            device: nothing can ever interrupt.
 */
#include "common.h"

void guest_main(u32 magic, const struct mb_info *mbi)
{
    (void)magic;
    serial_init();
    if (cmdline_has(mb_cmdline(mbi), "sti")) {
        serial_puts("halt: halting with interrupts on\n");
        for (;;)
            __asm__ volatile("sti; hlt" ::: "memory");
    }
    serial_puts("halt: halting\n");
    halt_forever();     /* cli; hlt, looping in case anything wakes us */
}
