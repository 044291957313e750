/*
 * maps_cidr.c - cidr: tables and cidr_list_match() for mynetworks.
 *
 * Interface: map_open_cidr(file) through maps.c; cidr_list_match(list,
 * addr, err) public (maps.h).
 *
 * Contract and decisions:
 *  - A network is written a.b.c.d/len, a.b.c.d (one host), v6/len, v6,
 *    [v6]/len or [v6]; len is 0..32 or 0..128 in plain decimal.  A network
 *    with bits set beyond len (1.2.3.4/24) is an error, not a warning:
 *    the operator almost certainly meant something else.
 *  - cidr:FILE lines are "network result"; the result is the rest of the
 *    line (blanks inside kept) and must not be empty.  First match wins.
 *    Lookups take an IPv4 or IPv6 address, with or without brackets; a
 *    key that is not an address is simply not found.  IPv4 entries match
 *    only IPv4 keys and IPv6 entries only IPv6 keys (as Postfix), where a
 *    key ::ffff:a.b.c.d (IPv4-mapped, from a dual-stack socket) counts as
 *    the IPv4 address a.b.c.d.
 *  - cidr_list_match: entries separated by blanks and commas; "!network"
 *    negates (first matching entry decides, as Postfix's match lists).
 *    Postfix's "/file/name" and "type:table" entries are refused with a
 *    clear reason (a table would have to be opened before the chroot).
 *    Returns 1 / 0, or -1 on the first malformed entry, err naming it.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "maps_internal.h"
#include "mem.h"

struct cidr_net {
    int family;                 /* AF_INET or AF_INET6 */
    unsigned char addr[16];
    int prefix;
};

/* Parse an address (no prefix) with optional brackets into family/bytes. */
static int cidr_parse_addr(const char *s, size_t n, int *family,
                           unsigned char *bytes)
{
    if (n >= 2 && s[0] == '[' && s[n - 1] == ']') {
        s++;
        n -= 2;
        if (n >= 5 && strncasecmp(s, "IPv6:", 5) == 0) {
            s += 5;
            n -= 5;
        }
        if (n == 0 || memchr(s, ':', n) == NULL)
            return -1;          /* brackets are for IPv6 only */
    }
    if (n == 0 || n > INET6_ADDRSTRLEN)
        return -1;              /* longer than any address: not one */
    char *text = xstrndup(s, n);
    *family = memchr(text, ':', n) ? AF_INET6 : AF_INET;
    int ok = inet_pton(*family, text, bytes) == 1;
    xfree(text);
    return ok ? 0 : -1;
}

/* A key to look up: an address as cidr_parse_addr takes it, where an
 * IPv4-mapped IPv6 address (::ffff:a.b.c.d, what a dual-stack socket
 * reports for IPv4 clients) is taken as the IPv4 address it carries. */
static int cidr_parse_key(const char *s, size_t n, int *family,
                          unsigned char *bytes)
{
    if (cidr_parse_addr(s, n, family, bytes) < 0)
        return -1;
    static const unsigned char mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
    if (*family == AF_INET6 && memcmp(bytes, mapped, sizeof(mapped)) == 0) {
        memmove(bytes, bytes + 12, 4);
        *family = AF_INET;
    }
    return 0;
}

/* Parse "net[/len]" from s[0..n); NULL if fine, else the reason. */
static const char *cidr_parse_net(const char *s, size_t n, struct cidr_net *net)
{
    const char *slash = memchr(s, '/', n);
    size_t alen = slash ? (size_t) (slash - s) : n;
    memset(net, 0, sizeof(*net));
    if (cidr_parse_addr(s, alen, &net->family, net->addr) < 0)
        return "bad network address";
    int max = net->family == AF_INET ? 32 : 128;
    if (!slash) {
        net->prefix = max;
        return NULL;
    }
    const char *p = slash + 1;
    size_t plen = n - alen - 1;
    if (plen == 0 || plen > 3)
        return "bad network prefix length";
    int prefix = 0;
    for (size_t i = 0; i < plen; i++) {
        if (!isdigit((unsigned char) p[i]))
            return "bad network prefix length";
        prefix = prefix * 10 + (p[i] - '0');
    }
    if (prefix > max)
        return "bad network prefix length";
    net->prefix = prefix;
    int bytes = max / 8;
    for (int bit = prefix; bit < bytes * 8; bit++)
        if (net->addr[bit / 8] & (0x80 >> (bit % 8)))
            return "non-null host address bits";
    return NULL;
}

static int cidr_net_contains(const struct cidr_net *net, int family,
                             const unsigned char *addr)
{
    if (net->family != family)
        return 0;
    int full = net->prefix / 8, rest = net->prefix % 8;
    if (memcmp(net->addr, addr, (size_t) full) != 0)
        return 0;
    if (rest) {
        unsigned char mask = (unsigned char) (0xFF << (8 - rest));
        if ((net->addr[full] & mask) != (addr[full] & mask))
            return 0;
    }
    return 1;
}

/* ---- cidr: tables -------------------------------------------------------- */

struct cidr_rule {
    struct cidr_net net;
    char *result;
};

struct cidr_table {
    struct cidr_rule *rules;
    size_t count, cap;
};

static int cidr_line(const char *line, int lineno, void *ctx, strbuf *err)
{
    struct cidr_table *t = ctx;
    size_t n = strcspn(line, " \t");
    const char *result = line + n;
    while (*result == ' ' || *result == '\t')
        result++;
    struct cidr_net net;
    const char *why = cidr_parse_net(line, n, &net);
    if (why) {
        strbuf_printf(err, "%s \"%.*s\"", why, (int) n, line);
        return -1;
    }
    if (!*result) {
        strbuf_set_str(err, "missing result");
        return -1;
    }
    if (t->count == t->cap) {
        t->cap = t->cap ? t->cap * 2 : 16;
        t->rules = xrealloc(t->rules, t->cap * sizeof(*t->rules));
    }
    t->rules[t->count].net = net;
    t->rules[t->count].result = xstrdup(result);
    t->count++;
    return 0;
}

static int cidr_lookup(void *impl, const char *key, strbuf *out)
{
    struct cidr_table *t = impl;
    int family;
    unsigned char addr[16];
    if (cidr_parse_key(key, strlen(key), &family, addr) < 0)
        return 0;
    for (size_t i = 0; i < t->count; i++)
        if (cidr_net_contains(&t->rules[i].net, family, addr)) {
            strbuf_set_str(out, t->rules[i].result);
            return 1;
        }
    return 0;
}

static void cidr_close(void *impl)
{
    struct cidr_table *t = impl;
    for (size_t i = 0; i < t->count; i++)
        xfree(t->rules[i].result);
    xfree(t->rules);
    xfree(t);
}

static const struct map_ops cidr_ops = { cidr_lookup, cidr_close };

int map_open_cidr(const char *name, struct map *m, strbuf *err)
{
    struct cidr_table *t = xcalloc(1, sizeof(*t));
    if (map_file_read(name, cidr_line, t, err) < 0) {
        cidr_close(t);
        return -1;
    }
    m->ops = &cidr_ops;
    m->impl = t;
    m->flags = MAP_FULL_KEY_ONLY;
    return 0;
}

/* ---- mynetworks-style lists --------------------------------------------- */

/* "type:name"?  The type is letters and, unlike an IPv6 group, has one
 * outside a-f (hash, btree, cidr, texthash, ...). */
static int looks_like_table(const char *s, size_t n)
{
    size_t i = 0;
    int non_hex = 0;
    while (i < n && isalpha((unsigned char) s[i])) {
        if (tolower((unsigned char) s[i]) > 'f')
            non_hex = 1;
        i++;
    }
    return i > 0 && i < n && s[i] == ':' && non_hex;
}

int cidr_list_match(const char *list, const char *addr, strbuf *err)
{
    int family;
    unsigned char bytes[16];
    int have_addr = cidr_parse_key(addr, strlen(addr), &family, bytes) == 0;
    const char *p = list;
    while (*p) {
        if (*p == ',' || isspace((unsigned char) *p)) {
            p++;
            continue;
        }
        size_t n = strcspn(p, ", \t\r\n");
        int negate = 0;
        const char *entry = p;
        size_t elen = n;
        if (*entry == '!') {
            negate = 1;
            entry++;
            elen--;
        }
        struct cidr_net net;
        const char *why = cidr_parse_net(entry, elen, &net);
        if (why && elen > 0 && (entry[0] == '/' || looks_like_table(entry, elen)))
            why = "files and tables are not supported in a network list";
        if (why) {
            strbuf_printf(err, "%s \"%.*s\"", why, (int) n, p);
            return -1;
        }
        if (have_addr && cidr_net_contains(&net, family, bytes))
            return negate ? 0 : 1;
        p += n;
    }
    return 0;
}
