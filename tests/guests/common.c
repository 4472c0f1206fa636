/*
 * Code shared by the test guests. See common.h for the interface.
 *
 * Guest code runs under an instruction emulator at about a million
 * instructions per second, so everything here is short and simple.
 */
#include "common.h"

/* ---- Serial console: a polled 16550 at COM1 ----------------------------- */

#define UART_THR 0      /* transmit holding register (DLAB=0) */
#define UART_DLL 0      /* divisor latch low (DLAB=1) */
#define UART_IER 1      /* interrupt enable (DLAB=0) */
#define UART_DLM 1      /* divisor latch high (DLAB=1) */
#define UART_FCR 2
#define UART_LCR 3
#define UART_MCR 4
#define UART_LSR 5
#define UART_LSR_THRE 0x20

void serial_init(void)
{
    outb(COM1_PORT + UART_IER, 0x00);   /* no interrupts: we poll */
    outb(COM1_PORT + UART_LCR, 0x80);   /* DLAB on to set the divisor */
    outb(COM1_PORT + UART_DLL, 0x01);   /* 115200 baud */
    outb(COM1_PORT + UART_DLM, 0x00);
    outb(COM1_PORT + UART_LCR, 0x03);   /* 8N1, DLAB off */
    outb(COM1_PORT + UART_FCR, 0xC7);   /* FIFOs on and cleared */
    outb(COM1_PORT + UART_MCR, 0x0B);   /* DTR, RTS, OUT2 */
}

void serial_putc(char c)
{
    /* Like a real driver: wait for room before writing. "\n" is sent as is,
     * because tests compare the text. */
    while (!(inb(COM1_PORT + UART_LSR) & UART_LSR_THRE))
        ;
    outb(COM1_PORT + UART_THR, (u8)c);
}

void serial_puts(const char *s)
{
    while (*s)
        serial_putc(*s++);
}

/* ---- kprintf ------------------------------------------------------------ */

static void put_padded(const char *digits, int n, int width, char pad)
{
    while (width-- > n)
        serial_putc(pad);
    while (n--)
        serial_putc(digits[n]);     /* digits are stored least significant first */
}

static void put_dec(u32 v, int neg, int width, char pad)
{
    char buf[11];
    int n = 0;
    do {
        buf[n++] = (char)('0' + v % 10);    /* 32-bit division: no libgcc */
        v /= 10;
    } while (v);
    if (neg)
        buf[n++] = '-';
    put_padded(buf, n, width, pad);
}

static void put_hex(u64 v, int width, char pad)
{
    char buf[16];
    int n = 0;
    do {
        buf[n++] = "0123456789abcdef"[v & 0xF];
        v >>= 4;                            /* 64-bit shifts are inline */
    } while (v);
    put_padded(buf, n, width, pad);
}

void vkprintf(const char *fmt, __builtin_va_list ap)
{
    for (; *fmt; fmt++) {
        if (*fmt != '%') {
            serial_putc(*fmt);
            continue;
        }
        fmt++;
        char pad = ' ';
        int width = 0, longs = 0;
        if (*fmt == '0') {
            pad = '0';
            fmt++;
        }
        while (*fmt >= '0' && *fmt <= '9')
            width = width * 10 + (*fmt++ - '0');
        while (*fmt == 'l') {
            longs++;
            fmt++;
        }

        switch (*fmt) {
        case 's': {
            const char *s = __builtin_va_arg(ap, const char *);
            serial_puts(s ? s : "(null)");
            break;
        }
        case 'c':
            serial_putc((char)__builtin_va_arg(ap, int));
            break;
        case 'd': {
            s32 v = __builtin_va_arg(ap, s32);
            put_dec(v < 0 ? 0u - (u32)v : (u32)v, v < 0, width, pad);
            break;
        }
        case 'u':
            put_dec(__builtin_va_arg(ap, u32), 0, width, pad);
            break;
        case 'x':
            if (longs >= 2)
                put_hex(__builtin_va_arg(ap, u64), width, pad);
            else
                put_hex(__builtin_va_arg(ap, u32), width, pad);
            break;
        case '%':
            serial_putc('%');
            break;
        case '\0':
            fmt--;          /* lone '%' at the end: stop at the NUL */
            break;
        default:            /* unknown conversion: show it verbatim */
            serial_putc('%');
            serial_putc(*fmt);
            break;
        }
    }
}

void kprintf(const char *fmt, ...)
{
    __builtin_va_list ap;
    __builtin_va_start(ap, fmt);
    vkprintf(fmt, ap);
    __builtin_va_end(ap);
}

/* ---- Multiboot information ---------------------------------------------- */

const char *mb_raw_cmdline(const struct mb_info *mbi)
{
    if (!(mbi->flags & MB_INFO_CMDLINE) || !mbi->cmdline)
        return "";
    return (const char *)mbi->cmdline;
}

const char *mb_cmdline(const struct mb_info *mbi)
{
    /* GRUB, QEMU and ukvm put the kernel's file name first: skip that
     * word and the one space after it, as Solo5's virtio bindings do. */
    const char *s = mb_raw_cmdline(mbi);
    while (*s && *s != ' ')
        s++;
    return *s ? s + 1 : s;
}

const char *mb_loader_name(const struct mb_info *mbi)
{
    if (!(mbi->flags & MB_INFO_LOADER_NAME) || !mbi->boot_loader_name)
        return "";
    return (const char *)mbi->boot_loader_name;
}

const struct mb_mmap_entry *mmap_first(const struct mb_info *mbi)
{
    if (!(mbi->flags & MB_INFO_MMAP) || mbi->mmap_length < sizeof(struct mb_mmap_entry))
        return NULL;
    return (const struct mb_mmap_entry *)mbi->mmap_addr;
}

const struct mb_mmap_entry *mmap_next(const struct mb_info *mbi,
                                      const struct mb_mmap_entry *e)
{
    /* Entries are variable-sized: `size` excludes the size field. */
    u32 next = (u32)e + e->size + sizeof(e->size);
    u32 end = mbi->mmap_addr + mbi->mmap_length;
    if (e->size == 0 || next + sizeof(struct mb_mmap_entry) > end)
        return NULL;
    return (const struct mb_mmap_entry *)next;
}

/* ---- Command line ------------------------------------------------------- */

/* Does the word starting at w begin with prefix p? Sets *rest past it. */
static int word_starts_with(const char *w, const char *p, const char **rest)
{
    while (*p) {
        if (*w != *p)
            return 0;
        w++;
        p++;
    }
    *rest = w;
    return 1;
}

static const char *next_word(const char *s)
{
    while (*s && *s != ' ')
        s++;
    while (*s == ' ')
        s++;
    return s;
}

int cmdline_has(const char *cmdline, const char *word)
{
    const char *w = cmdline, *rest;
    while (*w == ' ')
        w++;
    for (; *w; w = next_word(w))
        if (word_starts_with(w, word, &rest) && (*rest == '\0' || *rest == ' '))
            return 1;
    return 0;
}

const char *cmdline_value(const char *cmdline, const char *key)
{
    const char *w = cmdline, *rest;
    while (*w == ' ')
        w++;
    for (; *w; w = next_word(w))
        if (word_starts_with(w, key, &rest) && *rest == '=')
            return rest + 1;
    return NULL;
}

int parse_u32(const char *s, u32 *out)
{
    u32 v = 0;
    if (!s || *s < '0' || *s > '9')
        return 0;
    for (; *s >= '0' && *s <= '9'; s++) {
        u32 d = (u32)(*s - '0');
        if (v > (0xFFFFFFFFu - d) / 10)
            return 0;
        v = v * 10 + d;
    }
    if (*s != '\0' && *s != ' ')
        return 0;
    *out = v;
    return 1;
}

/* ---- Leaving the VM ----------------------------------------------------- */

void signal_ready(void)
{
    outb(READY_PORT, 1);
}

void exit_exact(u8 v)
{
    outb(EXACT_EXIT_PORT, v);
    halt_forever();             /* only reached if the port did nothing */
}

void exit_status(u8 v)
{
    if (v & 1)
        outb(DEBUG_EXIT_PORT, v >> 1);  /* (v >> 1) << 1 | 1 == v */
    else
        outb(EXACT_EXIT_PORT, v);
    halt_forever();
}

/* ---- Minimal libc ------------------------------------------------------- */

#include "libc.c"

