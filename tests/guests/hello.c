/*
 * hello: the smallest useful unikernel. Booted through the a.out-kludge
 * multiboot header (like Rumprun and Solo5), it prints what the loader
 * handed over and exits with the status asked for on the command line.
 *
 * Command line words:
 *   exit=N   exit status N (0..255, default 0); odd N leaves through the
 *            QEMU-compatible port 0x501, even N through ukvm's port 0x511
 *   quiet    print nothing: just signal ready and exit (boot benchmarks)
 *   reset    after printing, reset the machine through the i8042
 *            (command 0xFE to port 0x64), as Linux's reboot=k does
 *   poweroff after printing, write S5 to QEMU's PIIX4 PM1a_CNT (0x2000 to
 *            port 0x604), as Unikraft does
 */
#include "common.h"

static void print_info(const struct mb_info *mbi)
{
    kprintf("raw cmdline: %s\n", mb_raw_cmdline(mbi));
    kprintf("cmdline: %s\n", mb_cmdline(mbi));
    kprintf("boot loader: %s\n", mb_loader_name(mbi));

    if (mbi->flags & MB_INFO_MEMORY)
        kprintf("mem_lower=%uK mem_upper=%uK\n", mbi->mem_lower, mbi->mem_upper);
    else
        kprintf("mem: not provided\n");

    if (!(mbi->flags & MB_INFO_MMAP))
        kprintf("mmap: not provided\n");
    for (const struct mb_mmap_entry *e = mmap_first(mbi); e; e = mmap_next(mbi, e))
        kprintf("mmap: base=0x%llx len=0x%llx type=%u\n", e->base, e->len, e->type);

    u32 count = (mbi->flags & MB_INFO_MODS) ? mbi->mods_count : 0;
    kprintf("modules: %u\n", count);
    const struct mb_module *mod = (const struct mb_module *)mbi->mods_addr;
    for (u32 i = 0; i < count; i++)
        kprintf("module: start=0x%x end=0x%x string=%s\n", mod[i].mod_start,
                mod[i].mod_end, mod[i].string ? (const char *)mod[i].string : "");
}

void guest_main(u32 magic, const struct mb_info *mbi)
{
    (void)magic;
    const char *cmdline = mb_cmdline(mbi);

    u32 status = 0;
    if (parse_u32(cmdline_value(cmdline, "exit"), &status) && status > 255)
        status = 255;

    if (cmdline_has(cmdline, "quiet")) {
        signal_ready();
        exit_status((u8)status);
    }

    serial_init();
    serial_puts("ukvm hello unikernel\n");
    signal_ready();

    print_info(mbi);
    if (cmdline_has(cmdline, "reset")) {
        serial_puts("resetting\n");
        outb(0x64, 0xfe);
    }
    if (cmdline_has(cmdline, "poweroff")) {
        serial_puts("powering off\n");
        __asm__ volatile("outw %0, %1" : : "a"((u16)0x2000), "Nd"((u16)0x604));
    }
    kprintf("exiting with %u\n", status);
    exit_status((u8)status);
}
