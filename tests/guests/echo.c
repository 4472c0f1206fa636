/*
 * echo: the console-input test guest. Polls COM1's line status for data
 * ready (LSR bit 0), reads the receive buffer and writes each byte back;
 * '!' ends the run (prints "bye", exit 0). With `irq`, it enables the
 * receive interrupt (IER bit 0) and checks that IIR reports "received
 * data available" before the first read (vm-superio's IIR clears on
 * reading it, not when the FIFO drains, so only the first is checked).
 * With `pic`, it also takes COM1's IRQ 4 through the 8259 and waits for
 * input with sti; hlt instead of polling: only the interrupt wakes it.
 */
#include "common.h"
#include "irq.h"

static volatile u32 rx_interrupts;

static void on_rx(void *arg)
{
    (void)arg;
    rx_interrupts++;
}

#define UART_RBR 0
#define UART_IER 1
#define UART_IIR 2
#define UART_LSR 5

void guest_main(u32 magic, const struct mb_info *mbi)
{
    (void)magic;
    int pic = cmdline_has(mb_cmdline(mbi), "pic");
    int irq = pic || cmdline_has(mb_cmdline(mbi), "irq");
    int checked = 0;
    serial_init();
    if (pic) {
        irq_init();
        irq_register(4, on_rx, NULL);
    }
    if (irq)
        outb(COM1_PORT + UART_IER, 0x01);
    serial_puts("echo ready\n");
    for (;;) {
        irq_disable();
        while (!(inb(COM1_PORT + UART_LSR) & 0x01)) {
            if (pic)
                irq_wait();     /* sti; hlt: woken by IRQ 4 */
            irq_disable();
        }
        if (irq && !checked++ && (inb(COM1_PORT + UART_IIR) & 0x0F) != 0x04) {
            serial_puts("echo: FAIL IIR does not say data available\n");
            exit_status(1);
        }
        char c = (char)inb(COM1_PORT + UART_RBR);
        if (c == '!') {
            if (pic)
                kprintf("\necho: %u receive interrupts", rx_interrupts);
            serial_puts("\nbye\n");
            exit_status(0);
        }
        serial_putc(c == '\r' ? '\n' : c);
    }
}
