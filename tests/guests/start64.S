/*
 * Entry stub of the Linux-boot-protocol test kernel (64-bit). Assembled
 * twice: plain, it is the entry of an ELF64 "vmlinux" (e_entry); with
 * -DBZIMAGE it also carries a bzImage setup header (protocol 2.15,
 * XLF_KERNEL_64) and the image is laid out like a bzImage: 32-bit entry at
 * the load address (unused: it only halts), 64-bit entry at +0x200.
 * Saves the machine state before anything changes it (struct entry64).
 */
#define STACK_SIZE 16384

#ifdef BZIMAGE
    .section .setup, "a"
    .fill 0x1f1, 1, 0
    .byte 1                     /* 0x1f1 setup_sects: 1 (+ boot sector) */
    .word 0                     /* root_flags */
    .long _syssize              /* syssize, 16-byte units */
    .word 0                     /* ram_size */
    .word 0xffff                /* vid_mode */
    .word 0                     /* root_dev */
    .word 0xaa55                /* 0x1fe boot_flag */
    .word 0                     /* 0x200 jump */
    .ascii "HdrS"               /* 0x202 header */
    .word 0x020f                /* 0x206 version */
    .long 0                     /* realmode_swtch */
    .word 0                     /* start_sys_seg */
    .word 0                     /* kernel_version */
    .byte 0                     /* 0x210 type_of_loader */
    .byte 1                     /* 0x211 loadflags: LOADED_HIGH */
    .word 0                     /* setup_move_size */
    .long __load_start          /* 0x214 code32_start */
    .long 0, 0                  /* ramdisk_image, ramdisk_size */
    .long 0                     /* bootsect_kludge */
    .word 0                     /* heap_end_ptr */
    .byte 0, 0                  /* ext_loader_ver, ext_loader_type */
    .long 0                     /* 0x228 cmd_line_ptr */
    .long 0x7fffffff            /* 0x22c initrd_addr_max */
    .long 0x200000              /* 0x230 kernel_alignment */
    .byte 0                     /* 0x234 relocatable_kernel: no */
    .byte 21                    /* min_alignment */
    .word 0x3                   /* 0x236 xloadflags: KERNEL_64 | ABOVE_4G */
    .long 2047                  /* 0x238 cmdline_size */
    .long 0                     /* hardware_subarch */
    .quad 0                     /* hardware_subarch_data */
    .long 0                     /* 0x248 payload_offset */
    .long _payload_len          /* 0x24c payload_length */
    .quad 0                     /* setup_data */
    .quad __load_start          /* 0x258 pref_address */
    .long _init_size            /* 0x260 init_size */
    .long 0, 0                  /* handover_offset, kernel_info_offset */

    .section .text.head, "ax"
    .code32
startup_32:                     /* not used by ukvm: halts */
    cli
1:  hlt
    jmp 1b
    .fill 0x200 - (. - startup_32), 1, 0x90
#endif

    .data
    .p2align 3
    .globl entry64
entry64:
    .quad 0, 0, 0, 0, 0, 0      /* rsi rflags cr0 cr3 cr4 efer */
    .word 0, 0, 0               /* cs ds ss */

    .section .text.entry, "ax"
    .code64
    .globl _start64
    .type _start64, @function
_start64:
    movq %rsi, entry64 + 0(%rip)
    leaq stack_top(%rip), %rsp
    pushfq
    popq entry64 + 8(%rip)
    movq %cr0, %rax
    movq %rax, entry64 + 16(%rip)
    movq %cr3, %rax
    movq %rax, entry64 + 24(%rip)
    movq %cr4, %rax
    movq %rax, entry64 + 32(%rip)
    movl $0xc0000080, %ecx
    rdmsr
    movl %eax, entry64 + 40(%rip)
    movl %edx, entry64 + 44(%rip)
    movw %cs, entry64 + 48(%rip)
    movw %ds, entry64 + 50(%rip)
    movw %ss, entry64 + 52(%rip)
    cld
    movq entry64(%rip), %rdi
    call linux64_main
    .globl halt_forever
halt_forever:
1:  cli
    hlt
    jmp 1b
    .size _start64, . - _start64

    .bss
    .p2align 4
    .skip STACK_SIZE
stack_top:
