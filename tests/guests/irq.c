/* See irq.h. */
#include "irq.h"

#define PIC1_CMD  0x20
#define PIC1_DATA 0x21
#define PIC2_CMD  0xA0
#define PIC2_DATA 0xA1
#define IRQ_BASE  0x20

struct idt_entry {
    u16 off_lo;
    u16 sel;
    u8 zero;
    u8 type;            /* 0x8E: present, ring 0, 32-bit interrupt gate */
    u16 off_hi;
} __attribute__((packed));

static struct idt_entry idt[IRQ_BASE + 16] __attribute__((aligned(8)));
static irq_handler handlers[16];
static void *handler_args[16];
static u16 masks = 0xFFFF;

/* Entry stubs: push the vector and share one path into C. No FPU/SSE
 * state exists (-mgeneral-regs-only), so the general registers are all. */
#define STUB(n) ".balign 16\n.globl vec_" #n "\nvec_" #n ": pushl $" #n "\n jmp vec_common\n"
__asm__(".text\n"
        STUB(0) STUB(1) STUB(2) STUB(3) STUB(4) STUB(5) STUB(6) STUB(7)
        STUB(8) STUB(9) STUB(10) STUB(11) STUB(12) STUB(13) STUB(14) STUB(15)
        STUB(16) STUB(17) STUB(18) STUB(19) STUB(20) STUB(21) STUB(22) STUB(23)
        STUB(24) STUB(25) STUB(26) STUB(27) STUB(28) STUB(29) STUB(30) STUB(31)
        STUB(32) STUB(33) STUB(34) STUB(35) STUB(36) STUB(37) STUB(38) STUB(39)
        STUB(40) STUB(41) STUB(42) STUB(43) STUB(44) STUB(45) STUB(46) STUB(47)
        "vec_common:\n"
        " pushal\n"
        " cld\n"
        " pushl 32(%esp)\n"         /* the vector, above the 8 saved registers */
        " call irq_dispatch\n"
        " addl $4, %esp\n"
        " popal\n"
        " addl $4, %esp\n"
        /* Clobbering EFLAGS is harmless here: the interrupted code's
         * flags are in the frame, and both returns restore them. */
        " cmpb $0, irq_return_popf\n"
        " jne 1f\n"
        /* The normal return, as real unikernels do. KVM's emulator here
         * cannot execute iret at CPL 0 (emulation failure); ukvm completes
         * it (ukvm-emulator): one more exit per interrupt, which did not
         * show in scripts/net-bench.sh (5 rounds, medians, UDP echo
         * 1,950 pkt/s with iret vs 1,988 without at 64 B, 1,966 vs 1,955
         * at 1400 B: noise), next to ~480 us of emulated guest code per
         * echo. */
        " iret\n"
        /* Return without iret, for monitors that cannot complete it (QEMU
         * on this machine): rebuild the frame [eip, cs, eflags] as
         * [eflags with IF clear, eip] and use popfl; sti; ret. CS does not
         * change (one flat code segment), and sti's one-instruction shadow
         * keeps a new interrupt from arriving before ret. IF was set when
         * the interrupt came, or it would not have come. */
        "1: pushl %eax\n"             /* eax, eip, cs, eflags */
        " movl 12(%esp), %eax\n"
        " andl $0xFFFFFDFF, %eax\n"
        " movl %eax, 8(%esp)\n"        /* eax, eip, eflags', eflags */
        " movl 4(%esp), %eax\n"
        " movl %eax, 12(%esp)\n"       /* eax, eip, eflags', eip */
        " popl %eax\n"
        " addl $4, %esp\n"             /* eflags', eip */
        " popfl\n"
        " sti\n"
        " ret\n");

u8 irq_return_popf;

extern char vec_0[], vec_1[];

void irq_dispatch(u32 vector);
void irq_dispatch(u32 vector)
{
    if (vector < IRQ_BASE) {
        kprintf("exception %u\n", vector);
        exit_status(3);
    }
    u32 irq = vector - IRQ_BASE;
    if (handlers[irq])
        handlers[irq](handler_args[irq]);
    if (irq >= 8)
        outb(PIC2_CMD, 0x20);
    outb(PIC1_CMD, 0x20);
}

static void set_masks(void)
{
    outb(PIC1_DATA, (u8)masks);
    outb(PIC2_DATA, (u8)(masks >> 8));
}

void irq_init(void)
{
    u16 cs;
    __asm__ volatile("movw %%cs, %0" : "=r"(cs));
    /* Every stub is the same size, so stub n is at vec_0 + n * stride. */
    u32 stride = (u32)(vec_1 - vec_0);
    for (u32 v = 0; v < IRQ_BASE + 16; v++) {
        u32 addr = (u32)vec_0 + v * stride;
        idt[v].off_lo = (u16)addr;
        idt[v].sel = cs;
        idt[v].zero = 0;
        idt[v].type = 0x8E;
        idt[v].off_hi = (u16)(addr >> 16);
    }
    struct {
        u16 limit;
        u32 base;
    } __attribute__((packed)) idtr = { sizeof(idt) - 1, (u32)idt };
    __asm__ volatile("lidt %0" : : "m"(idtr));

    /* ICW1-4: edge triggered, cascade, vectors 0x20/0x28, 8086 mode. */
    outb(PIC1_CMD, 0x11);
    outb(PIC2_CMD, 0x11);
    outb(PIC1_DATA, IRQ_BASE);
    outb(PIC2_DATA, IRQ_BASE + 8);
    outb(PIC1_DATA, 4);
    outb(PIC2_DATA, 2);
    outb(PIC1_DATA, 1);
    outb(PIC2_DATA, 1);
    set_masks();
}

void irq_register(u8 irq, irq_handler handler, void *arg)
{
    if (irq >= 16)
        return;
    handlers[irq] = handler;
    handler_args[irq] = arg;
    masks &= (u16)~(1u << irq);
    if (irq >= 8)
        masks &= (u16)~(1u << 2);   /* the cascade */
    set_masks();
}
