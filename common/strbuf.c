/*
 * strbuf.c - growable binary-safe strings.  See strbuf.h for the contract.
 * The buffer always has room for a trailing NUL beyond len.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mem.h"
#include "strbuf.h"

void strbuf_init(strbuf *sb)
{
    sb->data = NULL;
    sb->len = 0;
    sb->cap = 0;
    sb->limit = 0;
}

strbuf *strbuf_new(void)
{
    strbuf *sb = xmalloc(sizeof(*sb));
    strbuf_init(sb);
    return sb;
}

void strbuf_release(strbuf *sb)
{
    xfree(sb->data);
    sb->data = NULL;
    sb->len = sb->cap = 0;
}

void strbuf_free(strbuf *sb)
{
    if (sb) {
        strbuf_release(sb);
        xfree(sb);
    }
}

void strbuf_reset(strbuf *sb)
{
    sb->len = 0;
    if (sb->data)
        sb->data[0] = '\0';
}

void strbuf_truncate(strbuf *sb, size_t len)
{
    if (len < sb->len) {
        sb->len = len;
        sb->data[len] = '\0';
    }
}

void strbuf_reserve(strbuf *sb, size_t extra)
{
    size_t need = sb->len + extra + 1;
    if (need <= sb->cap)
        return;
    size_t cap = sb->cap ? sb->cap : 64;
    while (cap < need)
        cap *= 2;
    sb->data = xrealloc(sb->data, cap);
    sb->cap = cap;
}

int strbuf_append(strbuf *sb, const void *data, size_t len)
{
    if (sb->limit && sb->len + len > sb->limit)
        return -1;
    strbuf_reserve(sb, len);
    if (len)
        memcpy(sb->data + sb->len, data, len);
    sb->len += len;
    sb->data[sb->len] = '\0';
    return 0;
}

int strbuf_append_str(strbuf *sb, const char *s)
{
    return strbuf_append(sb, s, strlen(s));
}

int strbuf_append_char(strbuf *sb, int c)
{
    char ch = (char) c;
    return strbuf_append(sb, &ch, 1);
}

int strbuf_vappendf(strbuf *sb, const char *fmt, va_list ap)
{
    /* Format straight into the spare room first: the text usually fits, and
     * formatting it once instead of measuring it and then writing it halves
     * the cost of every printf-style append on the hot paths. */
    if (sb->cap == 0)
        strbuf_reserve(sb, 64);
    va_list ap2;
    va_copy(ap2, ap);
    size_t room = sb->cap - sb->len;            /* includes the NUL's byte */
    int n = vsnprintf(sb->data + sb->len, room, fmt, ap2);
    va_end(ap2);
    if (n < 0 || (sb->limit && sb->len + (size_t) n > sb->limit)) {
        sb->data[sb->len] = '\0';             /* nothing appended */
        return -1;
    }
    if ((size_t) n >= room) {
        /* Did not fit: grow to the exact need and format again. */
        strbuf_reserve(sb, (size_t) n);
        vsnprintf(sb->data + sb->len, (size_t) n + 1, fmt, ap);
    }
    sb->len += (size_t) n;
    return 0;
}

int strbuf_append_int(strbuf *sb, long long val)
{
    char digits[24];
    char *p = digits + sizeof(digits);
    /* unsigned arithmetic, so LLONG_MIN has a magnitude too */
    unsigned long long mag = val < 0 ? 0ULL - (unsigned long long) val : (unsigned long long) val;
    do {
        *--p = (char) ('0' + mag % 10);
        mag /= 10;
    } while (mag);
    if (val < 0)
        *--p = '-';
    return strbuf_append(sb, p, (size_t) (digits + sizeof(digits) - p));
}

int strbuf_appendf(strbuf *sb, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = strbuf_vappendf(sb, fmt, ap);
    va_end(ap);
    return rc;
}

int strbuf_set(strbuf *sb, const void *data, size_t len)
{
    strbuf_reset(sb);
    return strbuf_append(sb, data, len);
}

int strbuf_set_str(strbuf *sb, const char *s)
{
    return strbuf_set(sb, s, strlen(s));
}

int strbuf_printf(strbuf *sb, const char *fmt, ...)
{
    va_list ap;
    strbuf_reset(sb);
    va_start(ap, fmt);
    int rc = strbuf_vappendf(sb, fmt, ap);
    va_end(ap);
    return rc;
}

void strbuf_rtrim(strbuf *sb)
{
    while (sb->len > 0) {
        char c = sb->data[sb->len - 1];
        if (c != ' ' && c != '\t' && c != '\r' && c != '\n')
            break;
        sb->len--;
    }
    if (sb->data)
        sb->data[sb->len] = '\0';
}

char *strbuf_detach(strbuf *sb, size_t *len)
{
    if (sb->data == NULL)
        strbuf_reserve(sb, 0), sb->data[0] = '\0';
    char *p = sb->data;
    if (len)
        *len = sb->len;
    sb->data = NULL;
    sb->len = sb->cap = 0;
    return p;
}
