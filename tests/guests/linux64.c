/*
 * linux64: checks what a kernel booted with the 64-bit Linux boot protocol
 * finds at entry on ukvm (long mode with the boot area and RAM
 * identity-mapped, RSI = zero page with setup header, E820 map, command
 * line and initrd), one line per check ("PASS name" or "FAIL name:
 * detail"), then "linux64: N checks, M failed", and exits through port
 * 0x511 with 0 when everything passed, 1 otherwise. Built as an ELF64
 * vmlinux (linux64.bin) and as a bzImage (linux64-bz.bin).
 *
 * The command line says what to expect: "mem_mib=N" and, with an initrd,
 * "initrd_len=N"; the initrd must start with "UKVM-INITRD". With
 * "poweroff" it ends by entering ACPI S5 (the DSDT's \_S5 SLP_TYP, 0 as on
 * QEMU's PIIX4, | SLP_EN to PM1a_CNT, as Linux's poweroff does) instead of
 * writing port 0x511; with "halt" it ends with cli; hlt (under KVM's
 * irqchip, which handles hlt in the kernel, ukvm must notice on its own).
 */
#include "common.h"

typedef unsigned long uptr;

struct entry64 {
    u64 rsi, rflags, cr0, cr3, cr4, efer;
    u16 cs, ds, ss;
} __attribute__((packed));
extern struct entry64 entry64;

/* boot_params offsets (Documentation/arch/x86/zero-page.rst, boot.rst). */
#define ZP_ACPI_RSDP_ADDR    0x070
#define ZP_EXT_RAMDISK_IMAGE 0x0c0
#define ZP_E820_ENTRIES      0x1e8
#define ZP_BOOT_FLAG         0x1fe
#define ZP_HEADER            0x202
#define ZP_TYPE_OF_LOADER    0x210
#define ZP_RAMDISK_IMAGE     0x218
#define ZP_RAMDISK_SIZE      0x21c
#define ZP_CMD_LINE_PTR      0x228
#define ZP_E820_TABLE        0x2d0

struct e820_entry {
    u64 addr, size;
    u32 type;
} __attribute__((packed));

static u32 n_checks, n_failed;

static void check(int ok, const char *name, const char *detail, u64 value)
{
    n_checks++;
    if (!ok)
        n_failed++;
    if (ok)
        kprintf("PASS %s\n", name);
    else
        kprintf("FAIL %s: %s (0x%llx)\n", name, detail, value);
}

#define ZP8(zp, off)  (*(const u8 *)((zp) + (off)))
#define ZP16(zp, off) (*(const u16 *)((zp) + (off)))
#define ZP32(zp, off) (*(const u32 *)((zp) + (off)))

static void check_cpu(void)
{
    check(entry64.rsi != 0 && entry64.rsi < 0x100000, "rsi-zero-page", "RSI", entry64.rsi);
    check((entry64.efer & (1 << 10)) != 0, "efer-lma", "EFER", entry64.efer);
    check((entry64.cr0 & 0x80000001u) == 0x80000001u, "cr0-pg-pe", "CR0", entry64.cr0);
    check((entry64.cr4 & 0x20) != 0, "cr4-pae", "CR4", entry64.cr4);
    check((entry64.rflags & 0x200) == 0, "interrupts-off", "RFLAGS", entry64.rflags);
    check(entry64.ds == entry64.ss, "flat-data-segments", "DS", entry64.ds);
}

static void check_e820(const u8 *zp, u32 mem_bytes)
{
    u32 n = ZP8(zp, ZP_E820_ENTRIES);
    const struct e820_entry *e = (const struct e820_entry *)(zp + ZP_E820_TABLE);
    int high = 0;
    for (u32 i = 0; i < n; i++)
        if (e[i].addr == 0x100000 && e[i].type == 1 && e[i].addr + e[i].size == mem_bytes)
            high = 1;
    check(n >= 3, "e820-entries", "too few", n);
    check(high, "e820-ram-at-1mib", "no RAM entry from 1 MiB to the end of RAM", mem_bytes);
}

static void check_initrd(const u8 *zp, const char *cmdline, u32 mem_bytes)
{
    u32 want_len;
    u64 addr = ZP32(zp, ZP_RAMDISK_IMAGE) | ((u64)ZP32(zp, ZP_EXT_RAMDISK_IMAGE) << 32);
    u32 len = ZP32(zp, ZP_RAMDISK_SIZE);
    if (!parse_u32(cmdline_value(cmdline, "initrd_len") ?: "", &want_len)) {
        check(addr == 0 && len == 0, "no-initrd", "ramdisk_image", addr);
        return;
    }
    check(len == want_len, "initrd-size", "ramdisk_size", len);
    check((addr & 0xfff) == 0, "initrd-page-aligned", "ramdisk_image", addr);
    check(addr + want_len <= mem_bytes && addr + want_len + 4096 > mem_bytes,
          "initrd-at-top", "ramdisk_image", addr);
    check(memcmp((const void *)(uptr)addr, "UKVM-INITRD", 11) == 0, "initrd-bytes",
          "does not start with UKVM-INITRD", addr);
}

/* ACPI: ukvm's PM1a control register, S5 (PIIX4's SLP_TYP 0, what the
 * DSDT's \_S5 says) and SLP_EN. */
#define PM1A_CNT   0x604
#define SLP_TYP_S5 (0 << 10)
#define SLP_EN     (1 << 13)

static void check_acpi(const u8 *zp)
{
    u64 rsdp = *(const u64 *)(zp + ZP_ACPI_RSDP_ADDR);
    check(rsdp == 0xe0000, "acpi-rsdp-addr", "acpi_rsdp_addr", rsdp);
    if (rsdp != 0xe0000)
        return;
    const u8 *r = (const u8 *)(uptr)rsdp;
    u8 sum = 0;
    for (int i = 0; i < 20; i++)
        sum += r[i];
    check(memcmp(r, "RSD PTR ", 8) == 0 && sum == 0, "acpi-rsdp", "signature/checksum", sum);
}

static void power_off(void)
{
    u16 v = SLP_TYP_S5 | SLP_EN;
    __asm__ volatile("outw %0, %1" : : "a"(v), "Nd"((u16)PM1A_CNT));
}

void linux64_main(const u8 *zp)
{
    serial_init();
    kprintf("linux64: zero page at 0x%llx\n", (u64)(uptr)zp);
    check_cpu();
    check(ZP16(zp, ZP_BOOT_FLAG) == 0xaa55, "boot-flag", "boot_flag", ZP16(zp, ZP_BOOT_FLAG));
    check(ZP32(zp, ZP_HEADER) == 0x53726448, "hdrs-magic", "header", ZP32(zp, ZP_HEADER));
    check(ZP8(zp, ZP_TYPE_OF_LOADER) == 0xff, "type-of-loader", "type_of_loader",
          ZP8(zp, ZP_TYPE_OF_LOADER));
    const char *cmdline = (const char *)(uptr)ZP32(zp, ZP_CMD_LINE_PTR);
    check(cmdline && cmdline_has(cmdline, "linux-test"), "cmdline", "cmd_line_ptr",
          (u64)(uptr)cmdline);
    kprintf("linux64: cmdline \"%s\"\n", cmdline ? cmdline : "");
    u32 mem_mib = 0;
    parse_u32(cmdline_value(cmdline, "mem_mib") ?: "", &mem_mib);
    check_e820(zp, mem_mib << 20);
    check_initrd(zp, cmdline, mem_mib << 20);
    check_acpi(zp);
    kprintf("linux64: %u checks, %u failed\n", n_checks, n_failed);
    if (cmdline && cmdline_has(cmdline, "poweroff") && !n_failed)
        power_off();
    if (cmdline && cmdline_has(cmdline, "halt") && !n_failed) {
        kprintf("linux64: halting\n");
        halt_forever();
    }
    exit_exact(n_failed ? 1 : 0);
}
