/*
 * entry: checks the machine state a Multiboot 1 kernel finds at entry on
 * ukvm, one line per check ("PASS name" or "FAIL name: detail"), then
 * "entry: N checks, M failed", and exits through port 0x511 with 0 when
 * everything passed, 1 otherwise.
 *
 * It is a plain ELF32 kernel (no a.out kludge), so the loader must follow
 * the ELF program headers. Registers at entry are those start.S saved.
 */
#include "common.h"

static u32 n_checks, n_failed;

/*
 * Record one check. The detail (printf format) is printed after FAIL, and
 * after PASS too when `show` is set (for values worth seeing either way).
 */
static int check(int ok, int show, const char *name, const char *fmt, ...)
{
    n_checks++;
    if (!ok)
        n_failed++;
    kprintf("%s %s", ok ? "PASS" : "FAIL", name);
    if (!ok || show) {
        __builtin_va_list ap;
        __builtin_va_start(ap, fmt);
        serial_puts(": ");
        vkprintf(fmt, ap);
        __builtin_va_end(ap);
    }
    serial_putc('\n');
    return ok;
}

/* ---- Segments ----------------------------------------------------------- */

struct seg {
    const char *name;
    u16 sel;
};

struct gdt_desc {
    u32 lo, hi;
};

/* The descriptor a selector names in the GDT the monitor loaded. */
static int gdt_lookup(u16 sel, struct gdt_desc *d)
{
    struct {
        u16 limit;
        u32 base;
    } __attribute__((packed)) gdtr;
    __asm__ volatile("sgdt %0" : "=m"(gdtr));

    u32 index = sel >> 3;
    if ((sel & 4) || index == 0 || index * 8 + 7 > gdtr.limit)
        return 0;       /* LDT selector, null selector, or past the limit */
    const struct gdt_desc *gdt = (const struct gdt_desc *)gdtr.base;
    *d = gdt[index];
    return 1;
}

static u32 desc_base(const struct gdt_desc *d)
{
    return (d->lo >> 16) | ((d->hi & 0xFF) << 16) | (d->hi & 0xFF000000);
}

/*
 * Segment limit in bytes, as `lsl` would report it: the 20-bit limit field,
 * scaled to 4 KiB pages when the granularity bit is set. Computed from the
 * descriptor because this machine's KVM emulates ring-0 code and cannot
 * execute `lsl` (0f 03): it stops the VM with an emulation failure. On the
 * descriptors used here (present, DPL 0, code or data) `lsl` reads exactly
 * these bits.
 */
static u32 desc_limit(const struct gdt_desc *d)
{
    u32 raw = (d->lo & 0xFFFF) | (d->hi & 0xF0000);
    return (d->hi & (1u << 23)) ? (raw << 12) | 0xFFF : raw;
}

static void check_segments(void)
{
    const struct seg segs[] = {
        { "cs", entry_state.cs }, { "ds", entry_state.ds },
        { "es", entry_state.es }, { "ss", entry_state.ss },
        { "fs", entry_state.fs }, { "gs", entry_state.gs },
    };
    struct gdt_desc d = { 0, 0 };

    /* CS must be a present code segment with D=1 (32-bit), L=0. */
    int ok = gdt_lookup(entry_state.cs, &d);
    u32 need = (1u << 15) | (1u << 12) | (1u << 11) | (1u << 22);  /* P S code D */
    check(ok && (d.hi & need) == need && !(d.hi & (1u << 21)), 0, "cs_32bit",
          "cs=0x%x in_gdt=%d desc=0x%08x%08x", entry_state.cs, ok, d.hi, d.lo);

    /* Every segment register must name a present, flat descriptor
     * (limit 4 GiB, base 0). Report the first bad one of each kind. */
    const struct seg *bad_limit = NULL, *bad_base = NULL;
    u32 limit = 0, base = 0;
    struct gdt_desc bad_desc = { 0, 0 };
    for (u32 i = 0; i < 6; i++) {
        d.lo = d.hi = 0;
        int found = gdt_lookup(segs[i].sel, &d) &&
                    (d.hi & (1u << 15)) && (d.hi & (1u << 12));   /* P, S */
        if (!bad_limit && (!found || desc_limit(&d) != 0xFFFFFFFF)) {
            bad_limit = &segs[i];
            limit = found ? desc_limit(&d) : 0;
        }
        if (!bad_base && (!found || desc_base(&d) != 0)) {
            bad_base = &segs[i];
            base = found ? desc_base(&d) : 0;
            bad_desc = d;
        }
    }
    check(!bad_limit, 0, "seg_limits", "%s=0x%x limit=0x%x",
          bad_limit ? bad_limit->name : "", bad_limit ? bad_limit->sel : 0, limit);
    check(!bad_base, 0, "seg_bases", "%s=0x%x base=0x%x desc=0x%08x%08x",
          bad_base ? bad_base->name : "", bad_base ? bad_base->sel : 0, base,
          bad_desc.hi, bad_desc.lo);
}

/* ---- CPUID -------------------------------------------------------------- */

static void check_cpuid(void)
{
    u32 a, b, c, d;

    cpuid(1, &a, &b, &c, &d);
    check(!!(c & (1u << 31)), 0, "cpuid_hypervisor", "leaf 1 ecx=0x%x", c);

    cpuid(0x80000000, &a, &b, &c, &d);
    u32 max_ext = a;
    d = 0;
    if (max_ext >= 0x80000007)
        cpuid(0x80000007, &a, &b, &c, &d);
    check(!!(d & (1u << 8)), 0, "cpuid_invariant_tsc",
          "max ext leaf=0x%x leaf 0x80000007 edx=0x%x", max_ext, d);

    cpuid(0x40000000, &a, &b, &c, &d);
    u32 max_hv = a;
    char sig[13];
    memcpy(sig, &b, 4);
    memcpy(sig + 4, &c, 4);
    memcpy(sig + 8, &d, 4);
    sig[12] = '\0';
    check(memcmp(sig, "KVMKVMKVM\0\0\0", 12) == 0, 0, "cpuid_kvm_signature",
          "ebx=0x%x ecx=0x%x edx=0x%x (\"%s\")", b, c, d, sig);
    check(max_hv >= 0x40000010, 0, "cpuid_max_hv_leaf", "eax=0x%x", max_hv);

    a = b = 0;
    if (max_hv >= 0x40000010)
        cpuid(0x40000010, &a, &b, &c, &d);
    check(a != 0, 1, "cpuid_tsc_khz", "tsc_khz=%u apic_khz=%u", a, b);
}

/* ---- Multiboot memory information -------------------------------------- */

static void check_memory(const struct mb_info *mbi)
{
    const struct mb_mmap_entry *first = mmap_first(mbi);
    check(first && first->base == 0 && first->len == 0x9FC00 &&
              first->type == MB_MMAP_AVAILABLE,
          0, "mmap_low", "first entry base=0x%llx len=0x%llx type=%u",
          first ? first->base : 0, first ? first->len : 0, first ? first->type : 0);

    const struct mb_mmap_entry *high = NULL;
    for (const struct mb_mmap_entry *e = first; e && !high; e = mmap_next(mbi, e))
        if (e->base == 0x100000 && e->type == MB_MMAP_AVAILABLE)
            high = e;
    check(high != NULL, 0, "mmap_high", "no AVAILABLE entry starts at 0x100000");

    int has_mem = (mbi->flags & MB_INFO_MEMORY) != 0;
    check(has_mem && mbi->mem_lower == 639, 0, "mem_lower", "flag=%d mem_lower=%u",
          has_mem, mbi->mem_lower);

    /* mem_upper is the KiB of RAM from 1 MiB up to the first hole, which is
     * where the AVAILABLE entry at 1 MiB ends. */
    u64 want = high ? high->base + high->len : 0;
    u64 got = 0x100000 + ((u64)mbi->mem_upper << 10);
    check(has_mem && high && got == want, 0, "mem_upper",
          "mem_upper=%uK ends at 0x%llx, mmap entry at 1MiB ends at 0x%llx",
          mbi->mem_upper, got, want);
}

/* ---- Everything --------------------------------------------------------- */

/* Untouched by the program: must read as zero if the loader cleared .bss. */
static u32 bss_probe[256];

void guest_main(u32 magic, const struct mb_info *mbi)
{
    (void)magic;        /* checked through entry_state, like the rest */
    serial_init();
    serial_puts("ukvm entry-state checks\n");

    check(entry_state.eax == MB_BOOTLOADER_MAGIC, 0, "eax_magic", "eax=0x%x",
          entry_state.eax);

    const u32 need = MB_INFO_MEMORY | MB_INFO_CMDLINE | MB_INFO_MMAP | MB_INFO_LOADER_NAME;
    check((mbi->flags & need) == need, 0, "info_flags", "flags=0x%x missing=0x%x",
          mbi->flags, need & ~mbi->flags);

    u32 cr0 = entry_state.cr0;
    check((cr0 & 1) && !(cr0 & (1u << 31)), 0, "cr0", "cr0=0x%x (want PE=1 PG=0)", cr0);

    u32 fl = entry_state.eflags;
    check(!(fl & (1u << 9)) && !(fl & (1u << 17)), 0, "eflags",
          "eflags=0x%x (want IF=0 VM=0)", fl);

    check_segments();

    u32 nonzero = 0;
    for (u32 i = 0; i < 256; i++)
        nonzero |= bss_probe[i];
    check(nonzero == 0, 0, "bss_zero", "bss not cleared by the loader");

    u16 com1 = peek16(0x400), crtc = peek16(0x463);
    check(com1 == 0x3F8, 0, "bda_com1", "[0x400]=0x%x", com1);
    check(crtc == 0, 0, "bda_vga", "[0x463]=0x%x", crtc);

    check_cpuid();
    check_memory(mbi);

    check((mbi->flags & MB_INFO_CMDLINE) != 0, 0, "cmdline", "no command line");
    const char *raw = mb_raw_cmdline(mbi);
    check(raw[0] != ' ' && raw[0] && mb_cmdline(mbi) != raw, 0, "cmdline_name",
          "no kernel name first: \"%s\"", raw);
    kprintf("cmdline: %s\n", mb_cmdline(mbi));

    const char *name = mb_loader_name(mbi);
    check(strcmp(name, "ukvm") == 0, 0, "loader_name", "\"%s\"", name);

    kprintf("entry: %u checks, %u failed\n", n_checks, n_failed);
    exit_exact(n_failed ? 1 : 0);
}
