/*
 * pvh: checks what a PVH kernel finds at entry on ukvm (32-bit protected
 * mode, paging off, EBX = hvm_start_info with the memory map, command line
 * and initrd), one line per check ("PASS name" or "FAIL name: detail"),
 * then "pvh: N checks, M failed", and exits through port 0x511 with 0 when
 * everything passed, 1 otherwise.
 *
 * The command line says what to expect: "mem_mib=N" (RAM size) and, when
 * an initrd is given, "initrd_len=N"; the initrd must start with
 * "UKVM-INITRD".
 */
#include "common.h"

#define XEN_HVM_START_MAGIC 0x336ec578

struct hvm_start_info {
    u32 magic, version, flags, nr_modules;
    u64 modlist_paddr, cmdline_paddr, rsdp_paddr, memmap_paddr;
    u32 memmap_entries, reserved;
} __attribute__((packed));

struct hvm_memmap_entry {
    u64 addr, size;
    u32 type, reserved;
} __attribute__((packed));

struct hvm_modlist_entry {
    u64 paddr, size, cmdline_paddr, reserved;
} __attribute__((packed));

extern u32 entry_cr4;
static u32 n_checks, n_failed;

static void check(int ok, const char *name, const char *detail, u32 value)
{
    n_checks++;
    if (!ok)
        n_failed++;
    if (ok)
        kprintf("PASS %s\n", name);
    else
        kprintf("FAIL %s: %s (0x%x)\n", name, detail, value);
}

static void check_memmap(const struct hvm_start_info *si, u32 mem_bytes)
{
    const struct hvm_memmap_entry *e =
        (const struct hvm_memmap_entry *)(u32)si->memmap_paddr;
    int low = 0, high = 0;
    for (u32 i = 0; i < si->memmap_entries; i++) {
        if (e[i].addr == 0 && e[i].size == 0x9fc00 && e[i].type == 1)
            low = 1;
        if (e[i].addr == 0x100000 && e[i].type == 1
            && e[i].addr + e[i].size == mem_bytes)
            high = 1;
    }
    check(si->memmap_entries >= 3, "memmap-entries", "too few", si->memmap_entries);
    check(low, "memmap-low-ram", "no [0, 0x9fc00) RAM entry", 0);
    check(high, "memmap-ram-at-1mib", "no RAM entry from 1 MiB to the end of RAM", mem_bytes);
}

static void check_initrd(const struct hvm_start_info *si, const char *cmdline, u32 mem_bytes)
{
    u32 want_len;
    if (!parse_u32(cmdline_value(cmdline, "initrd_len") ?: "", &want_len)) {
        check(si->nr_modules == 0, "no-modules", "modules without an initrd", si->nr_modules);
        return;
    }
    check(si->nr_modules == 1, "one-module", "nr_modules", si->nr_modules);
    if (si->nr_modules != 1)
        return;
    const struct hvm_modlist_entry *m =
        (const struct hvm_modlist_entry *)(u32)si->modlist_paddr;
    u32 addr = (u32)m->paddr;
    check(m->size == want_len, "initrd-size", "size", (u32)m->size);
    check((addr & 0xfff) == 0, "initrd-page-aligned", "paddr", addr);
    /* Highest page-aligned place below the end of RAM. */
    check(addr + want_len <= mem_bytes && addr + want_len + 4096 > mem_bytes,
          "initrd-at-top", "paddr", addr);
    check(memcmp((const void *)addr, "UKVM-INITRD", 11) == 0, "initrd-bytes",
          "does not start with UKVM-INITRD", *(const u32 *)addr);
}

void pvh_main(const struct hvm_start_info *si)
{
    serial_init();
    kprintf("pvh: start_info at 0x%x\n", (u32)si);
    check(entry_state.ebx != 0 && entry_state.ebx < 0x100000, "ebx-start-info",
          "EBX", entry_state.ebx);
    check(si->magic == XEN_HVM_START_MAGIC, "start-info-magic", "magic", si->magic);
    check(si->version >= 1, "start-info-version", "version", si->version);
    check((entry_state.cr0 & 1) == 1, "cr0-pe", "CR0", entry_state.cr0);
    check((entry_state.cr0 & 0x80000000u) == 0, "cr0-paging-off", "CR0", entry_state.cr0);
    check((entry_cr4 & 0x20) == 0, "cr4-no-pae", "CR4", entry_cr4);
    check((entry_state.eflags & 0x200) == 0, "interrupts-off", "EFLAGS", entry_state.eflags);
    check(entry_state.ds == entry_state.ss && entry_state.es == entry_state.ds,
          "flat-data-segments", "DS", entry_state.ds);

    const char *cmdline = (const char *)(u32)si->cmdline_paddr;
    check(si->cmdline_paddr != 0 && cmdline_has(cmdline, "pvh-test"), "cmdline",
          "no pvh-test word", (u32)si->cmdline_paddr);
    kprintf("pvh: cmdline \"%s\"\n", cmdline);
    u32 mem_mib = 0;
    parse_u32(cmdline_value(cmdline, "mem_mib") ?: "", &mem_mib);
    check_memmap(si, mem_mib << 20);
    check_initrd(si, cmdline, mem_mib << 20);
    check(si->rsdp_paddr == 0xe0000 && memcmp((const void *)0xe0000, "RSD PTR ", 8) == 0,
          "acpi-rsdp", "rsdp_paddr", (u32)si->rsdp_paddr);

    kprintf("pvh: %u checks, %u failed\n", n_checks, n_failed);
    exit_exact(n_failed ? 1 : 0);
}
