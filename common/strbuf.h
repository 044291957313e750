/*
 * strbuf.h - the one growable, binary-safe string type used everywhere.
 *
 * Interface: a strbuf owns a heap buffer `data` of `len` bytes, always
 * followed by a NUL (so strbuf_str() is a C string when the content holds no
 * NUL).  Appends grow the buffer geometrically; allocation never fails (see
 * mem.h).
 *
 * Contract: callers may read `data`/`len` directly but must change them only
 * through these functions.  strbuf_init() on a stack object, or strbuf_new()
 * for a heap one; strbuf_release() / strbuf_free() give the memory back.
 * An optional `limit` (0 = none) makes strbuf_append* return -1 instead of
 * growing past it, so parsers can bound input without a second check.
 */
#ifndef POSTERN_STRBUF_H
#define POSTERN_STRBUF_H

#include <stdarg.h>
#include <stddef.h>

typedef struct strbuf {
    char *data;
    size_t len;
    size_t cap;
    size_t limit;               /* 0 = unlimited */
} strbuf;

void strbuf_init(strbuf *sb);
strbuf *strbuf_new(void);
void strbuf_release(strbuf *sb);
void strbuf_free(strbuf *sb);
void strbuf_reset(strbuf *sb);
void strbuf_truncate(strbuf *sb, size_t len);
void strbuf_reserve(strbuf *sb, size_t extra);

/* Return 0, or -1 when the limit would be exceeded (nothing appended). */
int strbuf_append(strbuf *sb, const void *data, size_t len);
int strbuf_append_str(strbuf *sb, const char *s);
int strbuf_append_char(strbuf *sb, int c);
int strbuf_appendf(strbuf *sb, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
int strbuf_vappendf(strbuf *sb, const char *fmt, va_list ap);
/* Decimal digits of val, as "%lld" gives them, without printf. */
int strbuf_append_int(strbuf *sb, long long val);

/* Replace the content. */
int strbuf_set(strbuf *sb, const void *data, size_t len);
int strbuf_set_str(strbuf *sb, const char *s);
int strbuf_printf(strbuf *sb, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static inline const char *strbuf_str(const strbuf *sb)
{
    return sb->data ? sb->data : "";
}

/* Remove trailing whitespace (space, tab, CR, LF). */
void strbuf_rtrim(strbuf *sb);
/* Take ownership of the buffer (NUL-terminated); sb is reset to empty. */
char *strbuf_detach(strbuf *sb, size_t *len);

#endif
