/*
 * fault: triple faults on purpose, to test how the monitor reports a
 * guest shutdown (KVM_EXIT_SHUTDOWN).
 *
 * With an empty IDT (limit 0) no exception can be delivered: the #UD from
 * ud2 cannot find its gate and becomes #GP, that one a double fault, and
 * the double fault a triple fault, which shuts the CPU down.
 */
#include "common.h"

void guest_main(u32 magic, const struct mb_info *mbi)
{
    (void)magic;
    (void)mbi;
    static const struct {
        u16 limit;
        u32 base;
    } __attribute__((packed)) empty_idt = { 0, 0 };

    serial_init();
    serial_puts("fault: about to triple fault\n");

    __asm__ volatile("lidt %0" : : "m"(empty_idt));
    __asm__ volatile("ud2");
    /* Second try, should ud2 somehow be skipped: a selector beyond the GDT
     * limit (index 0x1FFF) raises #GP. */
    __asm__ volatile("movw %w0, %%ds" : : "r"(0xFFF8) : "memory");

    /* Still here: the fault was not delivered as a shutdown. Say so. */
    serial_puts("fault: still alive after the faults\n");
    exit_exact(1);
}
