/*
 * header.c - RFC 5322 header field recognition, unfolding, Message-Id
 * formatting, and address-list rewriting.  See header.h.
 *
 * The address-list walker is deliberately tolerant: it only needs to find
 * where each addr-spec is so a caller can replace it, and copies anything it
 * does not understand.  It refuses (returns -1) only on structure it cannot
 * skip safely: an unterminated quoted string, comment, domain literal or
 * angle address, or a stray '>'.
 */
#include <string.h>
#include <strings.h>

#include "header.h"

static int is_blank(int c)
{
    return c == ' ' || c == '\t';
}

size_t header_name_length(const char *line, size_t len, size_t *value_off)
{
    size_t n = 0;
    while (n < len) {
        unsigned char c = (unsigned char)line[n];
        if (c < 33 || c > 126 || c == ':')
            break;
        n++;
    }
    if (n == 0)
        return 0;
    size_t i = n;
    while (i < len && is_blank(line[i]))
        i++;
    if (i >= len || line[i] != ':')
        return 0;
    if (value_off)
        *value_off = i + 1;
    return n;
}

int header_is_continuation(const char *line, size_t len)
{
    return len > 0 && is_blank(line[0]);
}

int header_name_is(const char *line, size_t len, const char *name)
{
    size_t n = header_name_length(line, len, NULL);
    return n > 0 && n == strlen(name) && strncasecmp(line, name, n) == 0;
}

void header_unfold(const char *raw, size_t len, strbuf *out)
{
    strbuf_reset(out);
    size_t start = 0;
    for (size_t i = 0; i < len; i++) {
        if (raw[i] == '\r' || raw[i] == '\n') {
            strbuf_append(out, raw + start, i - start);
            start = i + 1;
        }
    }
    strbuf_append(out, raw + start, len - start);
}

size_t header_parse_block(const char *text, size_t len,
                          void (*cb)(const char *raw, size_t rawlen, void *ctx),
                          void *ctx)
{
    size_t pos = 0;
    size_t cur_start = 0, cur_end = 0;
    int have_cur = 0;

    while (pos < len) {
        const char *nl = memchr(text + pos, '\n', len - pos);
        size_t line_end = nl ? (size_t)(nl - text) : len;
        const char *line = text + pos;
        size_t line_len = line_end - pos;

        if (line_len == 0)
            break;
        if (header_is_continuation(line, line_len) && have_cur) {
            cur_end = line_end;
        } else if (header_name_length(line, line_len, NULL) > 0) {
            if (have_cur)
                cb(text + cur_start, cur_end - cur_start, ctx);
            cur_start = pos;
            cur_end = line_end;
            have_cur = 1;
        } else {
            break;
        }
        pos = nl ? line_end + 1 : len;
    }
    if (have_cur)
        cb(text + cur_start, cur_end - cur_start, ctx);
    return pos;
}

void header_format_message_id(const char *id, const char *host, strbuf *out)
{
    strbuf_printf(out, "<%s@%s>", id, host);
}

/* --- address-list rewriting ---------------------------------------------- */

/* Skip a quoted string, comment or domain literal starting at value[i]
 * (the opening character).  Returns the index just past its end, or
 * (size_t)-1 when unterminated. */
static size_t skip_quoted(const char *v, size_t len, size_t i)
{
    i++;
    while (i < len) {
        if (v[i] == '\\') {
            i += 2;
            continue;
        }
        if (v[i] == '"')
            return i + 1;
        i++;
    }
    return (size_t)-1;
}

static size_t skip_comment(const char *v, size_t len, size_t i)
{
    int depth = 0;
    while (i < len) {
        char c = v[i];
        if (c == '\\') {
            i += 2;
            continue;
        }
        if (c == '(') {
            depth++;
        } else if (c == ')') {
            if (--depth == 0)
                return i + 1;
        }
        i++;
    }
    return (size_t)-1;
}

static size_t skip_literal(const char *v, size_t len, size_t i)
{
    i++;
    while (i < len) {
        if (v[i] == '\\') {
            i += 2;
            continue;
        }
        if (v[i] == ']')
            return i + 1;
        if (v[i] == '[')
            return (size_t)-1;
        i++;
    }
    return (size_t)-1;
}

struct rewrite_state {
    const char *v;
    size_t len;
    header_addr_fn fn;
    void *ctx;
    strbuf *out;
    size_t copied;              /* v[0..copied) already in out */
    int count;
    strbuf addr;
    strbuf repl;
};

/* Offer v[a..b) (an addr-spec candidate) to fn; splice its replacement. */
static void offer(struct rewrite_state *st, size_t a, size_t b, int strip_cfws)
{
    strbuf_reset(&st->addr);
    if (strip_cfws) {
        /* A bare mailbox: drop comments; give up if blanks remain inside
         * (that is a phrase, not an address). */
        size_t i = a;
        while (i < b) {
            char c = st->v[i];
            if (c == '(') {
                size_t e = skip_comment(st->v, b, i);
                i = e == (size_t)-1 ? b : e;
            } else if (c == '"' || c == '[') {
                size_t e = c == '"' ? skip_quoted(st->v, b, i)
                                    : skip_literal(st->v, b, i);
                if (e == (size_t)-1)
                    e = b;
                strbuf_append(&st->addr, st->v + i, e - i);
                i = e;
            } else if (is_blank(c) || c == '\r' || c == '\n') {
                return;
            } else {
                strbuf_append_char(&st->addr, c);
                i++;
            }
        }
    } else {
        strbuf_append(&st->addr, st->v + a, b - a);
    }
    if (st->addr.len == 0)
        return;
    strbuf_reset(&st->repl);
    if (st->fn(strbuf_str(&st->addr), st->addr.len, &st->repl, st->ctx) == 1) {
        strbuf_append(st->out, st->v + st->copied, a - st->copied);
        strbuf_append(st->out, st->repl.data ? st->repl.data : "", st->repl.len);
        st->copied = b;
        st->count++;
    }
}

/* Parse an angle address starting at v[i] == '<'; offer its addr-spec
 * (source route stripped, blanks trimmed).  Returns index past '>'. */
static size_t angle_addr(struct rewrite_state *st, size_t i)
{
    const char *v = st->v;
    size_t start = i + 1, j = start;
    size_t route_end = start;
    while (j < st->len && v[j] != '>') {
        size_t e;
        if (v[j] == '"') {
            e = skip_quoted(v, st->len, j);
        } else if (v[j] == '(') {
            e = skip_comment(v, st->len, j);
        } else if (v[j] == '[') {
            e = skip_literal(v, st->len, j);
        } else if (v[j] == '<') {
            return (size_t)-1;
        } else {
            if (v[j] == ':')
                route_end = j + 1;
            e = j + 1;
        }
        if (e == (size_t)-1)
            return (size_t)-1;
        j = e;
    }
    if (j >= st->len)
        return (size_t)-1;
    size_t a = route_end, b = j;
    while (a < b && (is_blank(v[a]) || v[a] == '\r' || v[a] == '\n'))
        a++;
    while (b > a && (is_blank(v[b - 1]) || v[b - 1] == '\r' || v[b - 1] == '\n'))
        b--;
    if (b > a)
        offer(st, a, b, 0);
    return j + 1;
}

int header_addr_rewrite(const char *value, size_t len, header_addr_fn fn,
                        void *ctx, strbuf *out)
{
    struct rewrite_state st = { .v = value, .len = len, .fn = fn, .ctx = ctx,
                                .out = out };
    strbuf_init(&st.addr);
    strbuf_init(&st.repl);
    strbuf_reset(out);

    size_t i = 0;
    size_t bare_first = 0, bare_end = 0;
    int have_bare = 0, saw_angle = 0, ok = 1;

    for (;;) {
        int end_mailbox = 0;
        if (i >= len) {
            end_mailbox = 1;
        } else {
            char c = value[i];
            size_t e;
            switch (c) {
            case '"':
            case '[':
                e = c == '"' ? skip_quoted(value, len, i) : skip_literal(value, len, i);
                if (e == (size_t)-1) {
                    ok = 0;
                    break;
                }
                if (!have_bare)
                    bare_first = i;
                have_bare = 1;
                bare_end = e;
                i = e;
                break;
            case '(':
                e = skip_comment(value, len, i);
                if (e == (size_t)-1) {
                    ok = 0;
                    break;
                }
                i = e;
                break;
            case '<':
                e = angle_addr(&st, i);
                if (e == (size_t)-1) {
                    ok = 0;
                    break;
                }
                saw_angle = 1;
                i = e;
                break;
            case '>':
                ok = 0;
                break;
            case ':':
                /* Group start: what came before was the group's name. */
                have_bare = saw_angle = 0;
                i++;
                break;
            case ',':
            case ';':
                end_mailbox = 1;
                i++;
                break;
            case ' ':
            case '\t':
            case '\r':
            case '\n':
                i++;
                break;
            default:
                if (!have_bare)
                    bare_first = i;
                have_bare = 1;
                bare_end = ++i;
                break;
            }
            if (!ok)
                break;
        }
        if (end_mailbox) {
            if (have_bare && !saw_angle)
                offer(&st, bare_first, bare_end, 1);
            have_bare = saw_angle = 0;
            if (i >= len)
                break;
        }
    }

    strbuf_release(&st.addr);
    strbuf_release(&st.repl);
    if (!ok) {
        strbuf_set(out, value, len);
        return -1;
    }
    strbuf_append(out, value + st.copied, len - st.copied);
    return st.count;
}
