/*
 * Freestanding Solo5 hvt guests for ukvm's tests, written from Solo5's
 * public ABI headers (hvt_abi.h, elf_abi.h, mft_abi.h): the two ELF notes
 * a monitor recognises an hvt image by, the boot information it passes in
 * RDI, and the hypercalls (outl of a 32-bit argument address to port
 * 0x500 + N). 64-bit code, no SSE, no libc.
 */
#ifndef UKVM_HVT_GUEST_H
#define UKVM_HVT_GUEST_H

typedef unsigned char u8;
typedef unsigned short u16;
typedef unsigned int u32;
typedef unsigned long u64;
typedef long s64;
typedef unsigned long size_t;

#define NULL ((void *)0)

/* ---- Boot information (RDI at entry) ----------------------------------- */

struct hvt_boot_info {
    u64 mem_size;
    u64 kernel_end;
    u64 cpu_cycle_freq;
    const char *cmdline;
    const void *mft;
};

/* ---- Hypercalls ---------------------------------------------------------- */

#define HVT_HYPERCALL_PIO_BASE 0x500
enum {
    HC_WALLTIME = 1, HC_PUTS, HC_POLL, HC_BLOCK_WRITE, HC_BLOCK_READ,
    HC_NET_WRITE, HC_NET_READ, HC_HALT
};

static inline void hypercall(int n, volatile void *arg)
{
    __asm__ volatile("outl %0, %1"
                     :
                     : "a"((u32)(u64)arg), "d"((u16)(HVT_HYPERCALL_PIO_BASE + n))
                     : "memory");
}

struct hc_walltime { u64 nsecs; };
struct hc_puts { const char *data; size_t len; };
struct hc_poll { u64 timeout_nsecs; u64 ready_set; int ret; };
struct hc_block { u64 handle; u64 offset; void *data; size_t len; int ret; };
struct hc_net { u64 handle; void *data; size_t len; int ret; };
struct hc_halt { void *cookie; int exit_status; };

/* solo5_result_t */
#define R_OK 0
#define R_AGAIN 1
#define R_EINVAL 2
#define R_EUNSPEC 3

/* ---- ELF notes ----------------------------------------------------------- */

struct solo5_nhdr { u32 namesz, descsz, type; char name[8]; };

/* .note.solo5.abi: target hvt (1), ABI version 1. */
#define HVT_ABI_NOTE(version)                                               \
    const struct { struct solo5_nhdr h; u32 target, ver, r0, r1; }          \
    solo5_abi_note __attribute__((section(".note.solo5.abi"), aligned(4),  \
                                  used)) = {                                \
        { 6, 16, 0x31494241, "Solo5" }, 1, (version), 0, 0 }

#define MFT_NAME_SIZE 68
#define MFT_BLOCK 1
#define MFT_NET 2
#define MFT_RESERVED_FIRST (1u << 30)

struct mft_entry {
    char name[MFT_NAME_SIZE];
    u32 type;
    union {
        struct { u64 capacity; u16 block_size; } block;
        struct { u8 mac[6]; u16 mtu; } net;
    } u;
    union { int hostfd; void *data; } b;
    _Bool attached;
};

/*
 * .note.solo5.manifest with N entries (the reserved one included). The
 * manifest holds 64-bit fields, so it sits at offset 24 of the note and
 * the descriptor starts with 4 bytes of padding, as in Solo5's MFT1 note.
 */
#define HVT_MANIFEST(N, ...)                                                \
    struct mft_n { u32 version, entries; struct mft_entry e[N]; };          \
    const struct { struct solo5_nhdr h; struct mft_n m; }                   \
    solo5_manifest_note __attribute__((section(".note.solo5.manifest"),    \
                                       used)) = {                           \
        { 6, sizeof(struct { struct solo5_nhdr h; struct mft_n m; }) - 20,  \
          0x3154464d, "Solo5" },                                            \
        { 1, N, { { "", MFT_RESERVED_FIRST }, __VA_ARGS__ } } }

/* ---- Helpers (hvt_common.c) ---------------------------------------------- */

extern const struct hvt_boot_info *boot_info;

void puts(const char *s);
void printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void halt(int status) __attribute__((noreturn));
u64 walltime(void);
/* Waits up to ns for network input; returns the ready handle set. */
u64 poll(u64 ns, int *ret);
/* The manifest entry NAME and its handle, or NULL. */
const struct mft_entry *mft_get(const char *name, u64 *handle);
int cmdline_has(const char *word);
/* Number after "key=" on the command line, or def. */
u64 cmdline_num(const char *key, u64 def);

void *memset(void *d, int c, size_t n);
void *memcpy(void *d, const void *s, size_t n);
int memcmp(const void *a, const void *b, size_t n);
size_t strlen(const char *s);
int strcmp(const char *a, const char *b);

/* Each guest's main, called by _start with the boot information. */
void hvt_main(void);

#endif
