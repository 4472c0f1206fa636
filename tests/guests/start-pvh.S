/*
 * Entry stub of the PVH test kernel: a XEN_ELFNOTE_PHYS32_ENTRY note (what
 * makes the loader choose PVH) and a 32-bit entry that saves the machine
 * state before anything changes it. No Multiboot header: that would win.
 * Layout of entry_state as in common.h.
 */
#define XEN_ELFNOTE_PHYS32_ENTRY 18
#define STACK_SIZE 16384

    .section .note.Xen, "a", @note
    .p2align 2
    .long 4                     /* namesz: "Xen\0" */
    .long 4                     /* descsz */
    .long XEN_ELFNOTE_PHYS32_ENTRY
    .asciz "Xen"
    .long _start

    .data
    .p2align 2
    .globl entry_state
entry_state:
    .long 0, 0, 0, 0            /* eax ebx eflags cr0 */
    .word 0, 0, 0, 0, 0, 0      /* cs ds es ss fs gs */
    .globl entry_cr4
entry_cr4:
    .long 0

    .section .text.entry, "ax"
    .code32
    .globl _start
    .type _start, @function
_start:
    movl %eax, entry_state + 0
    movl %ebx, entry_state + 4
    movl $stack_top, %esp
    pushfl
    popl entry_state + 8
    movl %cr0, %ecx
    movl %ecx, entry_state + 12
    movl %cr4, %ecx
    movl %ecx, entry_cr4
    movw %cs, entry_state + 16
    movw %ds, entry_state + 18
    movw %es, entry_state + 20
    movw %ss, entry_state + 22
    movw %fs, entry_state + 24
    movw %gs, entry_state + 26
    cld
    subl $12, %esp
    pushl %ebx
    call pvh_main
    .globl halt_forever
halt_forever:
1:  cli
    hlt
    jmp 1b
    .size _start, . - _start

    .bss
    .p2align 4
    .skip STACK_SIZE
stack_top:
