/*
 * grind: burns a requested number of loop iterations, for benchmarks of
 * guest execution. Command line: loop=N (default 0). Each iteration is
 * exactly two instructions (dec, jnz), so the cost is predictable.
 */
#include "common.h"

void guest_main(u32 magic, const struct mb_info *mbi)
{
    (void)magic;
    u32 n = 0;
    parse_u32(cmdline_value(mb_cmdline(mbi), "loop"), &n);

    serial_init();
    serial_puts("grind start\n");
    if (n) {
        /* asm, so the compiler can neither drop nor reshape the loop */
        __asm__ volatile("1: decl %0\n\t"
                         "jnz 1b"
                         : "+r"(n));
    }
    serial_puts("grind done\n");
    exit_exact(0);
}
