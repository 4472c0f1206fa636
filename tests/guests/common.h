/*
 * Shared definitions for the ukvm test guests: fixed-width types, port I/O,
 * the Multiboot 1 information structures, the serial console, a small
 * printf, command-line parsing and the ways out of the VM.
 *
 * Guests are freestanding 32-bit code with no libc and no libgcc, so
 * nothing here divides 64-bit numbers (64-bit values are printed in hex).
 */
#ifndef UKVM_GUEST_COMMON_H
#define UKVM_GUEST_COMMON_H

typedef unsigned char u8;
typedef unsigned short u16;
typedef unsigned int u32;
typedef unsigned long long u64;
typedef int s32;
typedef unsigned int size_t;

#define NULL ((void *)0)

/* ---- Port I/O ---------------------------------------------------------- */

static inline void outb(u16 port, u8 val)
{
    __asm__ volatile("outb %0, %1" : : "a"(val), "Nd"(port));
}

static inline u8 inb(u16 port)
{
    u8 val;
    __asm__ volatile("inb %1, %0" : "=a"(val) : "Nd"(port));
    return val;
}

/*
 * Read low physical memory (the BIOS Data Area) through asm: GCC treats
 * constant addresses below 4 KiB as null-pointer dereferences.
 */
static inline u16 peek16(u32 addr)
{
    u16 val;
    __asm__ volatile("movw (%1), %0" : "=r"(val) : "r"(addr) : "memory");
    return val;
}

static inline u64 rdtsc(void)
{
    u32 lo, hi;
    __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
    return ((u64)hi << 32) | lo;
}

static inline void cpuid(u32 leaf, u32 *a, u32 *b, u32 *c, u32 *d)
{
    __asm__ volatile("cpuid"
                     : "=a"(*a), "=b"(*b), "=c"(*c), "=d"(*d)
                     : "a"(leaf), "c"(0));
}

/* ---- Ports of the ukvm machine ------------------------------------------ */

#define COM1_PORT       0x3F8   /* 16550 UART */
#define DEBUG_EXIT_PORT 0x501   /* QEMU isa-debug-exit: status (v << 1) | 1 */
#define READY_PORT      0x510   /* ukvm: any write marks the guest ready */
#define EXACT_EXIT_PORT 0x511   /* ukvm: status is exactly the byte written */

/* ---- Multiboot 1 information (spec 0.6.96, section 3.3) ---------------- */

#define MB_BOOTLOADER_MAGIC 0x2BADB002

#define MB_INFO_MEMORY      (1u << 0)   /* mem_lower, mem_upper */
#define MB_INFO_CMDLINE     (1u << 2)
#define MB_INFO_MODS        (1u << 3)
#define MB_INFO_MMAP        (1u << 6)
#define MB_INFO_LOADER_NAME (1u << 9)

struct mb_info {
    u32 flags;
    u32 mem_lower;              /* KiB below 1 MiB */
    u32 mem_upper;              /* KiB from 1 MiB to the first hole */
    u32 boot_device;
    u32 cmdline;
    u32 mods_count;
    u32 mods_addr;
    u32 syms[4];
    u32 mmap_length;
    u32 mmap_addr;
    u32 drives_length;
    u32 drives_addr;
    u32 config_table;
    u32 boot_loader_name;
    u32 apm_table;
};

/* An entry's `size` does not count the size field itself. */
struct mb_mmap_entry {
    u32 size;
    u64 base;
    u64 len;
    u32 type;
} __attribute__((packed));

#define MB_MMAP_AVAILABLE 1
#define MB_MMAP_RESERVED  2

struct mb_module {
    u32 mod_start;
    u32 mod_end;
    u32 string;
    u32 reserved;
};

/* Iterate over the memory map; stops on a malformed (zero-size) entry. */
const struct mb_mmap_entry *mmap_first(const struct mb_info *mbi);
const struct mb_mmap_entry *mmap_next(const struct mb_info *mbi,
                                      const struct mb_mmap_entry *e);

/* The command line as the loader gave it ("<kernel file name> <args>"),
 * the command line without that first word, and the loader name; ""
 * when the loader gave none. */
const char *mb_raw_cmdline(const struct mb_info *mbi);
const char *mb_cmdline(const struct mb_info *mbi);
const char *mb_loader_name(const struct mb_info *mbi);

/* ---- State at entry, saved by start.S before anything clobbers it ------ */

struct entry_state {
    u32 eax, ebx, eflags, cr0;
    u16 cs, ds, es, ss, fs, gs;
};
extern struct entry_state entry_state;

/* ---- Serial console and formatting ------------------------------------- */

void serial_init(void);
void serial_putc(char c);
void serial_puts(const char *s);

/*
 * printf subset: %s %c %d %u %x, %llx (64-bit hex), %%, with an optional
 * '0' flag and field width (e.g. %08x). No %llu: that needs libgcc.
 */
void kprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void vkprintf(const char *fmt, __builtin_va_list ap);

/* ---- Command line ------------------------------------------------------ */

/* Does the space-separated command line contain exactly this word? */
int cmdline_has(const char *cmdline, const char *word);

/*
 * Value of the first word "key=value", or NULL if there is none. The value
 * ends at the next space or the end of the string.
 */
const char *cmdline_value(const char *cmdline, const char *key);

/*
 * Decimal number at s, ending at a space or the end of the string. Returns
 * 0 and leaves *out untouched if s is not a number or overflows 32 bits.
 */
int parse_u32(const char *s, u32 *out);

/* ---- Leaving the VM ---------------------------------------------------- */

void signal_ready(void);
void halt_forever(void) __attribute__((noreturn));   /* in start.S */
/* Status exactly v through ukvm's port 0x511. */
void exit_exact(u8 v) __attribute__((noreturn));
/*
 * Status v by whichever port can express it: odd values through the
 * QEMU-compatible 0x501 (which yields (x << 1) | 1), even ones through 0x511.
 */
void exit_status(u8 v) __attribute__((noreturn));

/* ---- Minimal libc (GCC may emit calls to the mem* ones) ---------------- */

void *memset(void *d, int c, size_t n);
void *memcpy(void *d, const void *s, size_t n);
int memcmp(const void *a, const void *b, size_t n);
size_t strlen(const char *s);
int strcmp(const char *a, const char *b);

#endif
