/*
 * Multiboot 1 header and entry stub shared by all test guests.
 *
 * Assembled twice: with -DMB_KLUDGE the header carries the a.out-kludge
 * address fields (flag bit 16), as ELF64 unikernels such as Rumprun and
 * Solo5 use, so the loader must take the load addresses from the header.
 * Without it the header only asks for page-aligned modules and memory
 * information (bits 0 and 1), and the loader has to read the ELF program
 * headers.
 */

#define MB_HEADER_MAGIC     0x1BADB002
#define MB_FLAG_PAGE_ALIGN  (1 << 0)
#define MB_FLAG_MEMINFO     (1 << 1)
#define MB_FLAG_AOUT_KLUDGE (1 << 16)

#ifdef MB_KLUDGE
#define MB_HEADER_FLAGS (MB_FLAG_PAGE_ALIGN | MB_FLAG_MEMINFO | MB_FLAG_AOUT_KLUDGE)
#else
#define MB_HEADER_FLAGS (MB_FLAG_PAGE_ALIGN | MB_FLAG_MEMINFO)
#endif

#define STACK_SIZE 16384

    .section .multiboot, "a"
    .p2align 2
mb_header:
    .long MB_HEADER_MAGIC
    .long MB_HEADER_FLAGS
    .long -(MB_HEADER_MAGIC + MB_HEADER_FLAGS)
#ifdef MB_KLUDGE
    .long mb_header             /* header_addr: where this header is loaded */
    .long __load_start          /* load_addr: start of the image (1 MiB) */
    .long _edata                /* load_end_addr: end of text+data */
    .long _end                  /* bss_end_addr: end of bss */
    .long _start                /* entry_addr */
#endif

/*
 * Machine state at entry, saved before anything can change it. Kept in
 * .data, not .bss: the stub writes it before C runs, and the entry guest
 * checks that the loader zeroed the bss.
 * Layout must match struct entry_state in common.h.
 */
    .data
    .p2align 2
    .globl entry_state
entry_state:
    .long 0                     /*  0: eax */
    .long 0                     /*  4: ebx */
    .long 0                     /*  8: eflags */
    .long 0                     /* 12: cr0 */
    .word 0                     /* 16: cs */
    .word 0                     /* 18: ds */
    .word 0                     /* 20: es */
    .word 0                     /* 22: ss */
    .word 0                     /* 24: fs */
    .word 0                     /* 26: gs */

    .section .text.entry, "ax"
    .code32
    .globl _start
    .type _start, @function
_start:
    /* No instruction here may change EFLAGS before pushfl: mov doesn't. */
    movl %eax, entry_state + 0
    movl %ebx, entry_state + 4
    movl $stack_top, %esp       /* ESP is undefined at multiboot entry */
    pushfl
    popl entry_state + 8
    movl %cr0, %ecx
    movl %ecx, entry_state + 12
    movw %cs, entry_state + 16
    movw %ds, entry_state + 18
    movw %es, entry_state + 20
    movw %ss, entry_state + 22
    movw %fs, entry_state + 24
    movw %gs, entry_state + 26

    cld                         /* the C ABI wants DF clear */

    /* guest_main(magic, info); keep the stack 16-byte aligned at the call */
    subl $8, %esp
    pushl %ebx
    pushl %eax
    call guest_main

    /* guest_main should not return; if it does, stop the CPU for good. */
    .globl halt_forever
halt_forever:
1:  cli
    hlt
    jmp 1b
    .size _start, . - _start

    .bss
    .p2align 4
stack_bottom:
    .skip STACK_SIZE
stack_top:
