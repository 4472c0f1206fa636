/*
 * The few libc functions every test guest needs (gcc may also emit calls
 * to memset/memcpy on its own). One copy of the source for all three guest
 * builds: common.c (32-bit and 64-bit Multiboot/Linux guests) and
 * hvt/hvt_common.c (Solo5 hvt guests) each #include this file after their
 * own header, which provides size_t and u8.
 */

void *memset(void *d, int c, size_t n)
{
    u8 *p = d;
    while (n--)
        *p++ = (u8)c;
    return d;
}

void *memcpy(void *d, const void *s, size_t n)
{
    u8 *p = d;
    const u8 *q = s;
    while (n--)
        *p++ = *q++;
    return d;
}

int memcmp(const void *a, const void *b, size_t n)
{
    const u8 *p = a, *q = b;
    for (; n--; p++, q++)
        if (*p != *q)
            return *p - *q;
    return 0;
}

size_t strlen(const char *s)
{
    size_t n = 0;
    while (s[n])
        n++;
    return n;
}

int strcmp(const char *a, const char *b)
{
    while (*a && *a == *b) {
        a++;
        b++;
    }
    return (u8)*a - (u8)*b;
}
