/*
 * timer: a device-less guest that programs the 8254 PIT and measures its
 * interrupts against the TSC, the way unikernels sleep and calibrate.
 *
 *   1. mode 0 (one-shot): three times, a 20 ms count, waited for with
 *      sti; hlt. Prints each TSC delta from the count write to the handler.
 *   2. mode 2 (rate generator): 10 ms period, 10 ticks waited for with
 *      sti; hlt, then 5 more spinning with interrupts on (no hlt: the
 *      monitor must interrupt a running guest). Prints the TSC delta from
 *      the count write to the 10th and the 15th tick.
 *   3. mode 0 with the count latched and read back while it runs: must
 *      count down.
 *
 * TSC frequency from CPUID 0x40000010 (EAX, kHz), printed; the test turns
 * deltas into time (no 64-bit division here). Output lines:
 *   timer: tsc_khz=N
 *   timer: oneshot ticks=23864 tsc=0x...
 *   timer: periodic ticks=11932 n=10 tsc=0x...
 *   timer: periodic ticks=11932 n=15 tsc=0x...   (spinning)
 *   timer: latch ok
 *   timer: done
 * Exit status 0, or 1 with "timer: FAIL ..." on any failure.
 */
#include "common.h"
#include "irq.h"

#define PIT_CH0  0x40
#define PIT_CMD  0x43
#define ONESHOT  23864      /* 20 ms at 1.193182 MHz */
#define PERIOD   11932      /* 10 ms */

static volatile u32 ticks;
static volatile u64 last_tick_tsc;

static void on_tick(void *arg)
{
    (void)arg;
    last_tick_tsc = rdtsc();
    ticks++;
}

static void fail(const char *what)
{
    kprintf("timer: FAIL %s\n", what);
    exit_exact(1);
}

/* Mode `mode`, LSB then MSB, binary; returns the TSC at the count write. */
static u64 program(u8 mode, u16 count)
{
    outb(PIT_CMD, 0x30 | (mode << 1));
    outb(PIT_CH0, (u8)count);
    u64 t = rdtsc();
    outb(PIT_CH0, (u8)(count >> 8));
    return t;
}

static u16 latch(void)
{
    outb(PIT_CMD, 0x00);
    u8 lo = inb(PIT_CH0);
    u8 hi = inb(PIT_CH0);
    return (u16)(lo | (hi << 8));
}

static void oneshot(void)
{
    irq_disable();
    ticks = 0;
    u64 start = program(0, ONESHOT);
    while (ticks == 0)
        irq_wait();     /* sti; hlt */
    irq_disable();
    kprintf("timer: oneshot ticks=%u tsc=%llx\n", ONESHOT, last_tick_tsc - start);
    /* One-shot: nothing more may come. */
    u32 seen = ticks;
    for (volatile u32 i = 0; i < 1000; i++)
        ;
    irq_enable();
    for (volatile u32 i = 0; i < 1000; i++)
        ;
    irq_disable();
    if (ticks != seen)
        fail("mode 0 fired twice");
}

static void periodic(void)
{
    irq_disable();
    ticks = 0;
    u64 start = program(2, PERIOD);
    while (ticks < 10)
        irq_wait();
    kprintf("timer: periodic ticks=%u n=10 tsc=%llx\n", PERIOD, last_tick_tsc - start);
    irq_enable();
    while (ticks < 15)
        ;               /* spin: the monitor must interrupt us */
    irq_disable();
    kprintf("timer: periodic ticks=%u n=15 tsc=%llx\n", PERIOD, last_tick_tsc - start);
}

void guest_main(u32 magic, const struct mb_info *mbi)
{
    (void)magic;
    (void)mbi;
    serial_init();
    u32 a, b, c, d;
    cpuid(0x40000010, &a, &b, &c, &d);
    if (a == 0)
        fail("no TSC frequency in CPUID 0x40000010");
    kprintf("timer: tsc_khz=%u\n", a);
    irq_init();
    irq_register(0, on_tick, NULL);
    for (int i = 0; i < 3; i++)
        oneshot();
    periodic();

    /* A long one-shot, latched twice: the count goes down. */
    program(0, 0xFFFF);
    u16 first = latch();
    for (volatile u32 i = 0; i < 2000; i++)
        ;
    u16 second = latch();
    if (!(second < first))
        fail("latched count did not go down");
    kprintf("timer: latch ok\n");
    kprintf("timer: done\n");
    exit_exact(0);
}
