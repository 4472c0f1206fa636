/*
 * Interrupts for the test guests: an IDT (32-bit interrupt gates) and the
 * i8259 PIC pair remapped to vectors 0x20-0x2F. Exceptions print the
 * vector and exit with status 3.
 */
#ifndef UKVM_GUEST_IRQ_H
#define UKVM_GUEST_IRQ_H

#include "common.h"

typedef void (*irq_handler)(void *arg);

/* Non-zero: handlers return with popfl; sti; ret instead of iret (for
 * monitors that cannot complete iret at CPL 0 on this machine). */
extern u8 irq_return_popf;

/* Loads the IDT and remaps the PICs with every line masked. */
void irq_init(void);
/* Calls handler(arg) on each interrupt of ISA line `irq` and unmasks it. */
void irq_register(u8 irq, irq_handler handler, void *arg);

static inline void irq_enable(void) { __asm__ volatile("sti" ::: "memory"); }
static inline void irq_disable(void) { __asm__ volatile("cli" ::: "memory"); }
/* Atomically enable interrupts and wait for one (sti's one-instruction
 * shadow covers the hlt, so no wakeup is lost). */
static inline void irq_wait(void) { __asm__ volatile("sti; hlt" ::: "memory"); }

#endif
