/*
 * halt: prints a line, then stops the CPU with interrupts off, never to
 * wake up. Tests how the monitor treats a guest that halts for good
 * (KVM_EXIT_HLT without an in-kernel irqchip).
 */
#include "common.h"

void guest_main(u32 magic, const struct mb_info *mbi)
{
    (void)magic;
    (void)mbi;
    serial_init();
    serial_puts("halt: halting\n");
    halt_forever();     /* cli; hlt, looping in case anything wakes us */
}
