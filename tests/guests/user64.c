/*
 * user64: user mode and the SYSCALL/SYSRET pair, the way a Linux kernel
 * sets them up, in a Linux-protocol vmlinux (start64.S, linux64.ld).
 *
 * Linux's GDT layout (kernel CS 0x10, DS 0x18, user32 CS 0x23, user DS
 * 0x2b, user CS 0x33) and STAR/LSTAR/SFMASK as Linux writes them; its own
 * page tables, with the kernel supervisor-only and one user code page and
 * one user stack page; a TSS whose RSP0 takes exceptions from user mode.
 * It enters user mode with IRETQ (as Linux starts /init), makes a
 * `syscall`, checks in the handler that the CPU is in ring 0 with the
 * state SYSCALL defines (CS/SS from STAR, RCX = return address, R11 =
 * RFLAGS, RFLAGS masked by SFMASK), returns with SYSRETQ, and makes a
 * second `syscall` from user mode to finish.
 *
 * A handler entered in ring 3 fetches from a supervisor page: the #PF is
 * reported (vector, error code, RIP, CS) as FAIL, exit status 1. Prints
 * PASS/FAIL per check and `user64: N of M checks passed`; exit 0 only if
 * all passed.
 */
#include "common.h"

typedef unsigned long uptr;

#define KERNEL_CS 0x10
#define KERNEL_DS 0x18
#define USER32_CS 0x23
#define USER_DS 0x2b
#define USER_CS 0x33
#define TSS_SEL 0x38

#define MSR_EFER 0xc0000080
#define MSR_STAR 0xc0000081
#define MSR_LSTAR 0xc0000082
#define MSR_SFMASK 0xc0000084

/* Linux's SFMASK: TF, DF, IF, IOPL, AC, NT. */
#define SFMASK 0x47700ull
/* User RFLAGS: reserved bit 1 and ZF, a recognisable value in R11. */
#define USER_RFLAGS 0x42ull

static u64 gdt[9] __attribute__((aligned(16))) = {
    0,
    0,
    0x00af9b000000ffffull, /* 0x10 kernel CS, long mode */
    0x00cf93000000ffffull, /* 0x18 kernel DS */
    0x00cffb000000ffffull, /* 0x23 user CS, 32-bit */
    0x00cff3000000ffffull, /* 0x2b user DS */
    0x00affb000000ffffull, /* 0x33 user CS, long mode */
    0, 0,                  /* 0x38 TSS, filled in */
};

static struct {
    u32 reserved0;
    u64 rsp[3];
    u64 reserved1;
    u64 ist[7];
    u64 reserved2;
    u16 reserved3;
    u16 iomap;
} __attribute__((packed, aligned(16))) tss;

static u64 pml4[512] __attribute__((aligned(4096)));
static u64 pdpt[512] __attribute__((aligned(4096)));
static u64 pd[512] __attribute__((aligned(4096)));
static u64 pt[512] __attribute__((aligned(4096)));
static u8 user_stack[4096] __attribute__((aligned(4096)));
static u8 kernel_stack[8192] __attribute__((aligned(16)));
static u8 fault_stack[8192] __attribute__((aligned(16)));
static u64 idt[2 * 32] __attribute__((aligned(16)));

/* What the SYSCALL entry saw, before it touched anything. */
volatile u64 sc_cs, sc_ss, sc_rcx, sc_r11, sc_rflags, sc_rsp, sc_rax, sc_count;
volatile u64 kernel_rsp;

extern char user_page[], user_entry[], user_after_first[], syscall_entry[];
extern char fault_common[], vec6[], vec8[], vec13[], vec14[];

/*
 * The user page: its own 4 KiB page, the only code with the U bit. The
 * first `syscall` passes 12 (brk, as busybox's first call), the second 60.
 */
__asm__(".section .text.user, \"ax\"\n"
        ".p2align 12\n"
        "user_page:\n"
        "user_entry:\n\t"
        "movl $12, %eax\n\t"
        "syscall\n"
        "user_after_first:\n\t"
        "movl $60, %eax\n\t"
        "syscall\n"
        "1:\tjmp 1b\n"
        ".p2align 12\n"
        ".text\n");

/*
 * The SYSCALL entry: records CS, SS, RCX, R11, RFLAGS and the (user) RSP
 * before changing any of them, switches to the kernel stack, calls
 * syscall_c and returns with SYSRETQ.
 */
__asm__(".text\n"
        "syscall_entry:\n\t"
        "movq %rcx, sc_rcx(%rip)\n\t"
        "movq %r11, sc_r11(%rip)\n\t"
        "movq %rsp, sc_rsp(%rip)\n\t"
        "movq %rax, sc_rax(%rip)\n\t"
        "movq $0, %rcx\n\t"
        "movw %cs, %cx\n\t"
        "movq %rcx, sc_cs(%rip)\n\t"
        "movw %ss, %cx\n\t"
        "movq %rcx, sc_ss(%rip)\n\t"
        "movq kernel_rsp(%rip), %rsp\n\t"
        "pushfq\n\t"
        "popq sc_rflags(%rip)\n\t"
        "call syscall_c\n\t"
        "movq sc_rcx(%rip), %rcx\n\t"
        "movq sc_r11(%rip), %r11\n\t"
        "movq sc_rsp(%rip), %rsp\n\t"
        "sysretq\n");

/* Exceptions: push a dummy error code where the CPU pushes none. */
__asm__(".text\n"
        "vec6:\n\tpushq $0\n\tpushq $6\n\tjmp fault_common\n"
        "vec8:\n\tpushq $8\n\tjmp fault_common\n"
        "vec13:\n\tpushq $13\n\tjmp fault_common\n"
        "vec14:\n\tpushq $14\n\tjmp fault_common\n"
        "fault_common:\n\t"
        "movq %rsp, %rdi\n\t"
        "andq $-16, %rsp\n\t"
        "call fault_c\n"
        "1:\tcli\n\thlt\n\tjmp 1b\n");

static u32 passed, failed;

static void check(const char *name, int ok)
{
    kprintf("%s %s\n", ok ? "PASS" : "FAIL", name);
    if (ok)
        passed++;
    else
        failed++;
}

static void finish(void)
{
    kprintf("user64: %u of %u checks passed\n", passed, passed + failed);
    exit_status(failed ? 1 : 0);
}

static u64 read_cr2(void)
{
    u64 v;
    __asm__ volatile("movq %%cr2, %0" : "=r"(v));
    return v;
}

/* frame: vector, error code, RIP, CS, RFLAGS, RSP, SS. */
void fault_c(const u64 *frame)
{
    kprintf("FAIL exception %llu error %llx at rip %llx cs %llx rflags %llx rsp %llx ss %llx "
            "cr2 %llx%s\n",
            frame[0], frame[1], frame[2], frame[3], frame[4], frame[5], frame[6], read_cr2(),
            frame[0] == 14 && (frame[3] & 3) == 3 && frame[2] == (uptr)syscall_entry
                ? " (the SYSCALL entry ran in ring 3)"
                : "");
    failed++;
    finish();
}

void syscall_c(void)
{
    sc_count++;
    if (sc_count == 1) {
        kprintf("syscall: rax %llx cs %llx ss %llx rcx %llx r11 %llx rflags %llx rsp %llx\n",
                sc_rax, sc_cs, sc_ss, sc_rcx, sc_r11, sc_rflags, sc_rsp);
        check("syscall enters ring 0 with CS from STAR", sc_cs == KERNEL_CS);
        check("syscall loads SS from STAR", sc_ss == KERNEL_DS);
        check("syscall saves the return address in RCX", sc_rcx == (uptr)user_after_first);
        check("syscall saves RFLAGS in R11", (sc_r11 & 0x3c7fd7) == USER_RFLAGS);
        check("syscall masks RFLAGS with SFMASK", (sc_rflags & SFMASK) == 0);
        check("syscall keeps the user stack", sc_rsp == (uptr)user_stack + sizeof user_stack);
        check("the first call's number", sc_rax == 12);
        return;
    }
    check("sysretq returns to user mode and the next syscall arrives", sc_rax == 60 &&
          sc_cs == KERNEL_CS && sc_rcx > (uptr)user_after_first);
    finish();
}

static void set_gate(u32 vector, void *handler, u32 ist)
{
    u64 off = (uptr)handler;
    /* Present, DPL 0, 64-bit interrupt gate. */
    idt[2 * vector] = (off & 0xffff) | ((u64)KERNEL_CS << 16) | ((u64)ist << 32) |
                      (0x8e00ull << 32) | ((off & 0xffff0000ull) << 32);
    idt[2 * vector + 1] = off >> 32;
}

static void wrmsr(u32 msr, u64 v)
{
    __asm__ volatile("wrmsr" : : "c"(msr), "a"((u32)v), "d"((u32)(v >> 32)));
}

static u64 rdmsr(u32 msr)
{
    u32 lo, hi;
    __asm__ volatile("rdmsr" : "=a"(lo), "=d"(hi) : "c"(msr));
    return ((u64)hi << 32) | lo;
}

extern char __load_start[], _end[];

/*
 * Identity map of the first 1 GiB: 2 MiB supervisor pages, except the
 * 2-4 MiB region (the image), mapped with 4 KiB pages so the user code
 * and user stack pages alone carry the U bit. U is set on every table
 * above a leaf, as Linux does: the leaf decides.
 */
static void build_page_tables(void)
{
    const u64 p = 1, rw = 2, us = 4, ps = 0x80;
    pml4[0] = (uptr)pdpt | p | rw | us;
    pdpt[0] = (uptr)pd | p | rw | us;
    for (u64 i = 0; i < 512; i++)
        pd[i] = (i << 21) | p | rw | ps;
    pd[1] = (uptr)pt | p | rw | us;
    for (u64 i = 0; i < 512; i++) {
        u64 addr = 0x200000 + (i << 12);
        u64 user = addr == (uptr)user_page || addr == (uptr)user_stack;
        pt[i] = addr | p | rw | (user ? us : 0);
    }
    __asm__ volatile("movq %0, %%cr3" : : "r"((uptr)pml4) : "memory");
}

static void load_gdt_and_tss(void)
{
    static struct {
        u16 limit;
        u64 base;
    } __attribute__((packed)) gdtr, idtr;
    u64 base = (uptr)&tss, limit = sizeof tss - 1;
    tss.rsp[0] = (uptr)fault_stack + sizeof fault_stack;
    tss.iomap = sizeof tss;
    /* 64-bit available TSS, present. */
    gdt[7] = (limit & 0xffff) | ((base & 0xffffff) << 16) | (0x89ull << 40) |
             ((limit & 0xf0000) << 32) | ((base & 0xff000000ull) << 32);
    gdt[8] = base >> 32;
    gdtr.limit = sizeof gdt - 1;
    gdtr.base = (uptr)gdt;
    __asm__ volatile("lgdt %0\n\t"
                     "pushq %1\n\t"
                     "leaq 1f(%%rip), %%rax\n\t"
                     "pushq %%rax\n\t"
                     "lretq\n"
                     "1:\tmovw %w2, %%ds\n\t"
                     "movw %w2, %%es\n\t"
                     "movw %w2, %%ss\n\t"
                     "ltr %w3\n"
                     : : "m"(gdtr), "i"((u64)KERNEL_CS), "r"(KERNEL_DS), "r"(TSS_SEL)
                     : "rax", "memory");
    set_gate(6, vec6, 0);
    set_gate(8, vec8, 0);
    set_gate(13, vec13, 0);
    set_gate(14, vec14, 0);
    idtr.limit = sizeof idt - 1;
    idtr.base = (uptr)idt;
    __asm__ volatile("lidt %0" : : "m"(idtr));
}

/* Called by start64.S with RDI = zero page. */
void linux64_main(const u8 *zp)
{
    (void)zp;
    serial_init();
    kprintf("ukvm user64 test\n");
    if ((uptr)_end > 0x400000) {
        kprintf("FAIL image ends at %llx, past the 4 KiB-mapped region\n", (u64)(uptr)_end);
        exit_status(1);
    }
    load_gdt_and_tss();
    build_page_tables();
    kernel_rsp = (uptr)kernel_stack + sizeof kernel_stack;
    wrmsr(MSR_STAR, ((u64)USER32_CS << 48) | ((u64)KERNEL_CS << 32));
    wrmsr(MSR_LSTAR, (uptr)syscall_entry);
    wrmsr(MSR_SFMASK, SFMASK);
    wrmsr(MSR_EFER, rdmsr(MSR_EFER) | 1);
    check("EFER.SCE set", rdmsr(MSR_EFER) & 1);
    kprintf("layout: syscall_entry %llx user_stack_top %llx\n", (u64)(uptr)syscall_entry,
            (u64)(uptr)(user_stack + sizeof user_stack));
    kprintf("entering user mode at %llx\n", (u64)(uptr)user_entry);
    /* As Linux starts /init: IRETQ to CS 0x33, SS 0x2b. */
    __asm__ volatile("pushq %0\n\t"
                     "pushq %1\n\t"
                     "pushq %2\n\t"
                     "pushq %3\n\t"
                     "pushq %4\n\t"
                     "iretq\n"
                     : : "i"((u64)USER_DS), "r"((uptr)user_stack + sizeof user_stack),
                       "i"(USER_RFLAGS), "i"((u64)USER_CS), "r"((uptr)user_entry)
                     : "memory");
    __builtin_unreachable();
}
