/*
 * addr.c - RFC 5321 envelope paths, domains, local-part quoting.
 *
 * Interface: see addr.h.  The RFC 5322 header address-list parser lives in
 * addr_list.c; this file holds the envelope side and the helpers both use.
 *
 * Contract and decisions:
 *  - addr_parse_path() accepts, after optional leading SP/TAB:
 *      "<>"                      only with ADDR_ALLOW_NULL (out = "")
 *      "<[@route,...:]mailbox>"  the source route is checked and dropped
 *      "mailbox"                 only with ADDR_ALLOW_BARE
 *    where mailbox = local-part ["@" domain].  A mailbox without "@domain"
 *    is accepted (RFC 5321 requires "<Postmaster>"); whether an unqualified
 *    address is welcome is the caller's policy (see addr_is_fqdn()).
 *    Right after the path there must be SP, TAB or the end of input; the
 *    return value is the offset just past '>' (or past the bare address),
 *    so the ESMTP parameters start after the following blanks.
 *  - Internal form written to out: the local part unquoted when it is a
 *    valid dot-atom, otherwise in canonical quoted form (addr_quote_local),
 *    so `"user@remote"@local` stays a local part "user@remote" at "local"
 *    and addr_split() still splits at the real '@'.  Domain case is kept.
 *  - Limits (RFC 5321 4.5.3.1): local part 64 octets as written, domain
 *    255, each label 63, path 256 including the angle brackets.
 *  - Never accepted: NUL, CR, LF, other C0 controls, DEL; 8-bit bytes only
 *    with ADDR_UTF8 and only as well-formed UTF-8 (no overlongs, surrogates
 *    or C1 controls).  Address literals: [IPv4] and [IPv6:...] checked with
 *    inet_pton; other tagged literals are refused.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <string.h>
#include <strings.h>

#include "addr.h"
#include "addr_internal.h"
#include "mem.h"

#define ADDR_LOCAL_MAX   64
#define ADDR_DOMAIN_MAX  255
#define ADDR_LABEL_MAX   63
#define ADDR_PATH_MAX    256

/* ---- character classes ------------------------------------------------ */

int addr_is_atext(unsigned char c)
{
    if (c >= 0x80 || c == 0)
        return 0;
    if (isalnum(c))
        return 1;
    return strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL;
}

size_t addr_utf8_len(const unsigned char *p, size_t n)
{
    if (n == 0)
        return 0;
    unsigned char c = p[0];
    size_t need;
    unsigned char lo = 0x80, hi = 0xBF;

    if (c >= 0xC2 && c <= 0xDF) {
        need = 2;
        if (c == 0xC2)          /* U+0080..U+009F are C1 controls */
            lo = 0xA0;
    } else if (c >= 0xE0 && c <= 0xEF) {
        need = 3;
        if (c == 0xE0)
            lo = 0xA0;          /* overlong */
        else if (c == 0xED)
            hi = 0x9F;          /* surrogates */
    } else if (c >= 0xF0 && c <= 0xF4) {
        need = 4;
        if (c == 0xF0)
            lo = 0x90;          /* overlong */
        else if (c == 0xF4)
            hi = 0x8F;          /* above U+10FFFF */
    } else {
        return 0;
    }
    if (n < need)
        return 0;
    if (p[1] < lo || p[1] > hi)
        return 0;
    for (size_t i = 2; i < need; i++)
        if (p[i] < 0x80 || p[i] > 0xBF)
            return 0;
    return need;
}

/* Why byte c (which the caller found out of place) is not acceptable. */
const char *addr_bad_char_reason(unsigned char c)
{
    if (c == 0)
        return "NUL character in address";
    if (c == '\r' || c == '\n')
        return "CR or LF in address";
    if (c < 0x20 || c == 0x7F)
        return "control character in address";
    if (c == ' ' || c == '\t')
        return "space in address";
    return NULL;
}

/* 8-bit at p: 0 when acceptable (sets *step), else the reason. */
static const char *eight_bit_check(const char *p, size_t n, int utf8,
                                   size_t *step)
{
    if (!utf8)
        return "8-bit character without SMTPUTF8";
    size_t k = addr_utf8_len((const unsigned char *) p, n);
    if (k == 0)
        return "invalid UTF-8 in address";
    *step = k;
    return NULL;
}

/* ---- domains ----------------------------------------------------------- */

/* Check a dot-separated domain name s[0..n); NULL if fine, else why not. */
static const char *domain_name_problem(const char *s, size_t n, int utf8)
{
    if (n == 0)
        return "empty domain";
    if (n > ADDR_DOMAIN_MAX)
        return "domain too long";
    if (s[0] == '.')
        return "leading dot in domain";
    if (s[n - 1] == '.')
        return "trailing dot in domain";
    size_t label_start = 0;
    for (size_t i = 0; i <= n; i++) {
        if (i == n || s[i] == '.') {
            size_t label_len = i - label_start;
            if (label_len == 0)
                return "empty label in domain";
            if (label_len > ADDR_LABEL_MAX)
                return "domain label too long";
            if (s[label_start] == '-' || s[i - 1] == '-')
                return "domain label starts or ends with '-'";
            label_start = i + 1;
            continue;
        }
        unsigned char c = (unsigned char) s[i];
        if (c >= 0x80) {
            size_t step = 0;
            const char *why = eight_bit_check(s + i, n - i, utf8, &step);
            if (why)
                return why;
            i += step - 1;
            continue;
        }
        if (!isalnum(c) && c != '-') {
            const char *why = addr_bad_char_reason(c);
            return why ? why : "invalid character in domain";
        }
    }
    return NULL;
}

/* Check "[...]" content s[0..n) (without brackets); NULL if fine. */
static const char *address_literal_problem(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char) s[i];
        if (c < 33 || c > 126 || c == '[' || c == '\\') {
            const char *why = addr_bad_char_reason(c);
            return why ? why : "invalid character in address literal";
        }
    }
    char *text = xstrndup(s, n);
    const char *why = NULL;
    unsigned char bin[16];
    if (n >= 5 && strncasecmp(text, "IPv6:", 5) == 0) {
        if (inet_pton(AF_INET6, text + 5, bin) != 1)
            why = "bad IPv6 address literal";
    } else if (memchr(text, ':', n)) {
        why = "unsupported address literal";
    } else if (inet_pton(AF_INET, text, bin) != 1) {
        why = "bad IPv4 address literal";
    }
    xfree(text);
    return why;
}

/* Domain or "[literal]" in s[0..n); NULL if valid, else the reason. */
const char *addr_domain_problem(const char *s, size_t n, int utf8)
{
    if (n > 0 && s[0] == '[') {
        if (n < 2 || s[n - 1] != ']')
            return "missing ']'";
        if (n > ADDR_DOMAIN_MAX)
            return "domain too long";
        return address_literal_problem(s + 1, n - 2);
    }
    return domain_name_problem(s, n, utf8);
}

int addr_domain_valid(const char *domain, int utf8)
{
    return addr_domain_problem(domain, strlen(domain), utf8) == NULL;
}

/* ---- local parts ------------------------------------------------------- */

/* Is local[0..n) a dot-atom (so it needs no quotes)?  8-bit bytes count as
 * atext (UTF-8 validity is checked where the text enters). */
static int local_is_dot_atom(const char *local, size_t n)
{
    if (n == 0 || local[0] == '.' || local[n - 1] == '.')
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char) local[i];
        if (c == '.') {
            if (local[i + 1] == '.')
                return 0;
        } else if (c < 0x80 && !addr_is_atext(c)) {
            return 0;
        }
    }
    return 1;
}

void addr_quote_local_n(const char *local, size_t n, strbuf *out)
{
    if (local_is_dot_atom(local, n)) {
        strbuf_append(out, local, n);
        return;
    }
    strbuf_append_char(out, '"');
    for (size_t i = 0; i < n; i++) {
        if (local[i] == '"' || local[i] == '\\')
            strbuf_append_char(out, '\\');
        strbuf_append_char(out, local[i]);
    }
    strbuf_append_char(out, '"');
}

void addr_quote_local(const char *local, strbuf *out)
{
    addr_quote_local_n(local, strlen(local), out);
}

/* Offset of the '@' that separates local part and domain: the last one
 * outside a quoted string; -1 when there is none. */
static long split_at(const char *addr)
{
    long at = -1;
    int quoted = 0;
    for (long i = 0; addr[i]; i++) {
        if (quoted && addr[i] == '\\' && addr[i + 1]) {
            i++;
        } else if (addr[i] == '"') {
            quoted = !quoted;
        } else if (!quoted && addr[i] == '@') {
            at = i;
        }
    }
    return at;
}

void addr_split(const char *addr, strbuf *local, strbuf *domain)
{
    long at = split_at(addr);
    if (at < 0) {
        strbuf_set_str(local, addr);
        strbuf_reset(domain);
        return;
    }
    strbuf_set(local, addr, (size_t) at);
    strbuf_set_str(domain, addr + at + 1);
}

int addr_is_fqdn(const char *addr)
{
    long at = split_at(addr);
    if (at < 0)
        return 0;
    const char *domain = addr + at + 1;
    if (domain[0] == '[')
        return addr_domain_valid(domain, 1);
    return strchr(domain, '.') != NULL && addr_domain_valid(domain, 1);
}

void addr_lowercase_domain(char *addr)
{
    long at = split_at(addr);
    if (at < 0)
        return;
    for (char *p = addr + at + 1; *p; p++)
        if ((unsigned char) *p < 0x80)
            *p = (char) tolower((unsigned char) *p);
}

/* ---- envelope path parser ---------------------------------------------- */

struct path_parser {
    const char *in;
    size_t len;
    size_t pos;
    int flags;
    strbuf *err;
};

static int fail(struct path_parser *pp, const char *why)
{
    strbuf_set_str(pp->err, why);
    return -1;
}

/* Is c where a local part or domain ends?  '@' is handled by the caller. */
static int path_stop(const struct path_parser *pp, size_t pos)
{
    if (pos >= pp->len)
        return 1;
    char c = pp->in[pos];
    if (c == ' ' || c == '\t')
        return 1;
    return c == '>';
}

/* Quoted local part starting at '"'; appends the decoded text to local. */
static int parse_quoted_local(struct path_parser *pp, strbuf *local)
{
    const char *in = pp->in;
    size_t pos = pp->pos + 1;
    for (;;) {
        if (pos >= pp->len)
            return fail(pp, "unbalanced quote");
        unsigned char c = (unsigned char) in[pos];
        if (c == '"')
            break;
        if (c == '\\') {
            pos++;
            if (pos >= pp->len)
                return fail(pp, "unbalanced quote");
            c = (unsigned char) in[pos];
            if (c < 0x20 || c > 0x7E)
                return fail(pp, addr_bad_char_reason(c) ? addr_bad_char_reason(c)
                                : "bad quoted-pair in local part");
            strbuf_append_char(local, c);
            pos++;
            continue;
        }
        if (c >= 0x80) {
            size_t step = 0;
            const char *why = eight_bit_check(in + pos, pp->len - pos,
                                              pp->flags & ADDR_UTF8, &step);
            if (why)
                return fail(pp, why);
            strbuf_append(local, in + pos, step);
            pos += step;
            continue;
        }
        if (c < 0x20 || c == 0x7F)
            return fail(pp, addr_bad_char_reason(c));
        strbuf_append_char(local, c);
        pos++;
    }
    pp->pos = pos + 1;
    return 0;
}

/* Dot-string local part; appends it to local. */
static int parse_dot_local(struct path_parser *pp, strbuf *local)
{
    const char *in = pp->in;
    size_t pos = pp->pos;
    size_t start = pos;
    while (!path_stop(pp, pos) && in[pos] != '@') {
        unsigned char c = (unsigned char) in[pos];
        if (c == '.') {
            if (pos == start)
                return fail(pp, "leading dot in local part");
            if (in[pos - 1] == '.')
                return fail(pp, "double dot in local part");
            pos++;
            continue;
        }
        if (c >= 0x80) {
            size_t step = 0;
            const char *why = eight_bit_check(in + pos, pp->len - pos,
                                              pp->flags & ADDR_UTF8, &step);
            if (why)
                return fail(pp, why);
            pos += step;
            continue;
        }
        if (!addr_is_atext(c)) {
            const char *why = addr_bad_char_reason(c);
            if (c == '"')
                why = "misplaced quote in local part";
            return fail(pp, why ? why : "invalid character in local part");
        }
        pos++;
    }
    if (pos > start && in[pos - 1] == '.')
        return fail(pp, "trailing dot in local part");
    strbuf_append(local, in + start, pos - start);
    pp->pos = pos;
    return 0;
}

/* A domain or address literal at pp->pos, ending before any byte in stops
 * (or space, tab, '>', end).  Sets *dstart and *dlen on success. */
static int parse_domain(struct path_parser *pp, const char *stops,
                        size_t *dstart, size_t *dlen)
{
    const char *in = pp->in;
    size_t pos = pp->pos;
    size_t start = pos;
    if (pos < pp->len && in[pos] == '[') {
        while (pos < pp->len && in[pos] != ']') {
            unsigned char c = (unsigned char) in[pos];
            if (c == '>' || c == ' ' || c == '\t')
                return fail(pp, "missing ']'");
            if (c < 0x20 || c == 0x7F)
                return fail(pp, addr_bad_char_reason(c));
            pos++;
        }
        if (pos >= pp->len)
            return fail(pp, "missing ']'");
        pos++;
    } else {
        while (!path_stop(pp, pos) && !strchr(stops, in[pos]))
            pos++;
        /* strchr(stops, '\0') matches: a NUL stops the scan here and is
         * reported below as what it is. */
    }
    if (pos < pp->len && in[pos] == '\0')
        return fail(pp, addr_bad_char_reason(0));
    const char *why = addr_domain_problem(in + start, pos - start,
                                          pp->flags & ADDR_UTF8);
    if (why)
        return fail(pp, why);
    *dstart = start;
    *dlen = pos - start;
    pp->pos = pos;
    return 0;
}

/* "@a,@b:" before the mailbox: checked, then dropped. */
static int parse_source_route(struct path_parser *pp)
{
    int first = 1;
    for (;;) {
        if (pp->pos >= pp->len || pp->in[pp->pos] != '@')
            return fail(pp, "bad source route");
        pp->pos++;
        size_t ds, dl;
        if (parse_domain(pp, ",:@", &ds, &dl) < 0)
            return -1;
        if (pp->pos >= pp->len)
            return fail(pp, "missing '>'");
        char c = pp->in[pp->pos];
        if (c == ':') {
            pp->pos++;
            return 0;
        }
        if (c == ',') {
            pp->pos++;
            first = 0;
            continue;
        }
        if (first && c == '>')
            return fail(pp, "empty local part");
        return fail(pp, "bad source route");
    }
}

long addr_parse_path(const char *in, size_t len, int flags, strbuf *out,
                     strbuf *err)
{
    struct path_parser pp = { in, len, 0, flags, err };
    strbuf local;
    strbuf_init(&local);
    long result = -1;

    strbuf_reset(out);
    strbuf_reset(err);
    while (pp.pos < len && (in[pp.pos] == ' ' || in[pp.pos] == '\t'))
        pp.pos++;
    if (pp.pos >= len) {
        fail(&pp, "missing address");
        goto done;
    }
    size_t start = pp.pos;
    int bracketed = in[pp.pos] == '<';
    if (!bracketed && !(flags & ADDR_ALLOW_BARE)) {
        fail(&pp, "missing '<'");
        goto done;
    }
    if (bracketed) {
        pp.pos++;
        if (pp.pos < len && in[pp.pos] == '>') {
            if (!(flags & ADDR_ALLOW_NULL)) {
                fail(&pp, "null address not allowed here");
                goto done;
            }
            pp.pos++;
            goto check_end;
        }
        if (pp.pos < len && in[pp.pos] == '@' && parse_source_route(&pp) < 0)
            goto done;
    }

    /* local part */
    size_t local_start = pp.pos;
    int quoted = pp.pos < len && in[pp.pos] == '"';
    if (quoted ? parse_quoted_local(&pp, &local)
               : parse_dot_local(&pp, &local))
        goto done;
    if (pp.pos - local_start > ADDR_LOCAL_MAX) {
        fail(&pp, "local part too long");
        goto done;
    }
    if (pp.pos - local_start == 0) {
        if (pp.pos < len && in[pp.pos] == '@')
            fail(&pp, "empty local part");
        else if (pp.pos < len && (in[pp.pos] == ' ' || in[pp.pos] == '\t'))
            fail(&pp, "space in address");
        else
            fail(&pp, "missing address");
        goto done;
    }
    addr_quote_local_n(strbuf_str(&local), local.len, out);

    /* domain */
    if (pp.pos < len && in[pp.pos] == '@') {
        pp.pos++;
        size_t ds, dl;
        if (parse_domain(&pp, "@", &ds, &dl) < 0)
            goto done;
        if (pp.pos < len && in[pp.pos] == '@') {
            fail(&pp, "too many '@'");
            goto done;
        }
        strbuf_append_char(out, '@');
        strbuf_append(out, in + ds, dl);
    } else if (pp.pos < len && quoted && !path_stop(&pp, pp.pos)) {
        const char *why = addr_bad_char_reason((unsigned char) in[pp.pos]);
        fail(&pp, why ? why : "text after quoted local part");
        goto done;
    }

    if (bracketed) {
        if (pp.pos < len && (in[pp.pos] == ' ' || in[pp.pos] == '\t')) {
            fail(&pp, "space in address");
            goto done;
        }
        if (pp.pos >= len || in[pp.pos] != '>') {
            fail(&pp, "missing '>'");
            goto done;
        }
        pp.pos++;
    } else if (pp.pos < len && in[pp.pos] == '>') {
        fail(&pp, "unbalanced '>'");
        goto done;
    }

check_end:
    if (pp.pos < len && in[pp.pos] != ' ' && in[pp.pos] != '\t') {
        const char *why = addr_bad_char_reason((unsigned char) in[pp.pos]);
        fail(&pp, why ? why : "unexpected text after address");
        goto done;
    }
    if (pp.pos - start + (bracketed ? 0 : 2) > ADDR_PATH_MAX) {
        fail(&pp, "address too long");
        goto done;
    }
    result = (long) pp.pos;
done:
    if (result < 0)
        strbuf_reset(out);
    strbuf_release(&local);
    return result;
}
