/*
 * Entry point and helpers shared by the hvt test guests. The monitor
 * enters _start in long mode with RDI = struct hvt_boot_info and RSP at
 * the top of memory, aligned as for a function call: a C function is a
 * valid entry point.
 */
#include "hvt.h"

const struct hvt_boot_info *boot_info;

void _start(const struct hvt_boot_info *bi)
{
    boot_info = bi;
    hvt_main();
    halt(0);
}

void halt(int status)
{
    volatile struct hc_halt h = { NULL, status };
    hypercall(HC_HALT, &h);
    for (;;)
        __asm__ volatile("hlt");
}

static void write_out(const char *s, size_t n)
{
    volatile struct hc_puts p = { s, n };
    hypercall(HC_PUTS, &p);
}

void puts(const char *s)
{
    write_out(s, strlen(s));
}

u64 walltime(void)
{
    volatile struct hc_walltime t = { 0 };
    hypercall(HC_WALLTIME, &t);
    return t.nsecs;
}

u64 poll(u64 ns, int *ret)
{
    volatile struct hc_poll p = { ns, 0, 0 };
    hypercall(HC_POLL, &p);
    if (ret)
        *ret = p.ret;
    return p.ready_set;
}

/* printf subset: %s %c %d %u %x %lu %lx, with '0' flag and width. Output
 * is collected in a buffer and written with one hypercall. */
struct buf { char b[256]; size_t n; };

static void put(struct buf *o, char c)
{
    if (o->n == sizeof o->b) {
        write_out(o->b, o->n);
        o->n = 0;
    }
    o->b[o->n++] = c;
}

static void put_num(struct buf *o, u64 v, unsigned base, int neg, int width, char pad)
{
    char d[24];
    int n = 0;
    do {
        d[n++] = "0123456789abcdef"[v % base];
        v /= base;
    } while (v);
    if (neg)
        d[n++] = '-';
    while (width-- > n)
        put(o, pad);
    while (n--)
        put(o, d[n]);
}

void printf(const char *fmt, ...)
{
    struct buf o;
    o.n = 0;
    __builtin_va_list ap;
    __builtin_va_start(ap, fmt);
    for (; *fmt; fmt++) {
        if (*fmt != '%') {
            put(&o, *fmt);
            continue;
        }
        fmt++;
        char pad = ' ';
        int width = 0, lng = 0;
        if (*fmt == '0') {
            pad = '0';
            fmt++;
        }
        while (*fmt >= '0' && *fmt <= '9')
            width = width * 10 + (*fmt++ - '0');
        while (*fmt == 'l') {
            lng = 1;
            fmt++;
        }
        switch (*fmt) {
        case 's': {
            const char *s = __builtin_va_arg(ap, const char *);
            for (s = s ? s : "(null)"; *s; s++)
                put(&o, *s);
            break;
        }
        case 'c':
            put(&o, (char)__builtin_va_arg(ap, int));
            break;
        case 'd': {
            s64 v = lng ? __builtin_va_arg(ap, s64) : __builtin_va_arg(ap, int);
            put_num(&o, v < 0 ? (u64)-v : (u64)v, 10, v < 0, width, pad);
            break;
        }
        case 'u':
            put_num(&o, lng ? __builtin_va_arg(ap, u64) : __builtin_va_arg(ap, u32), 10, 0, width, pad);
            break;
        case 'x':
            put_num(&o, lng ? __builtin_va_arg(ap, u64) : __builtin_va_arg(ap, u32), 16, 0, width, pad);
            break;
        case '\0':
            fmt--;
            break;
        default:
            put(&o, '%');
            put(&o, *fmt);
        }
    }
    __builtin_va_end(ap);
    if (o.n)
        write_out(o.b, o.n);
}

const struct mft_entry *mft_get(const char *name, u64 *handle)
{
    const u32 *hdr = boot_info->mft;
    const struct mft_entry *e = (const struct mft_entry *)(hdr + 2);
    for (u32 i = 0; i < hdr[1]; i++) {
        if (strcmp(e[i].name, name) == 0) {
            *handle = i;
            return &e[i];
        }
    }
    return NULL;
}

/* Start of word w on the command line, or NULL; sets *after past it. */
static const char *find_word(const char *w, const char **after)
{
    size_t n = strlen(w);
    for (const char *s = boot_info->cmdline; *s;) {
        while (*s == ' ')
            s++;
        if (memcmp(s, w, n) == 0) {
            *after = s + n;
            return s;
        }
        while (*s && *s != ' ')
            s++;
    }
    return NULL;
}

int cmdline_has(const char *word)
{
    const char *after;
    return find_word(word, &after) && (*after == ' ' || *after == 0);
}

u64 cmdline_num(const char *key, u64 def)
{
    const char *p;
    if (!find_word(key, &p) || *p < '0' || *p > '9')
        return def;
    u64 v = 0;
    while (*p >= '0' && *p <= '9')
        v = v * 10 + (u64)(*p++ - '0');
    return v;
}

#include "../libc.c"
