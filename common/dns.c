/*
 * dns.c - MX and address lookups through libresolv (see dns.h).
 *
 * One resolver state per process, set up by dns_init() before any chroot
 * (res_ninit reads /etc/resolv.conf then and never again).  Replies are
 * walked with libresolv's ns_initparse/ns_parserr, which bound every record
 * by the end of the message; names in MX rdata are expanded with dn_expand
 * against the same end and must fill the rdata exactly.  Anything that does
 * not add up makes the whole reply malformed: a half-believed reply is
 * worse than none.
 */
#include <arpa/inet.h>
#include <arpa/nameser.h>
#include <ctype.h>
#include <netdb.h>
#include <netinet/in.h>
#include <resolv.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "dns.h"
#include "mem.h"

static struct __res_state dns_state;
static int dns_ready;

/* Largest reply we accept (TCP fallback happens inside res_nquery). */
#define DNS_ANSWER_MAX 65535

int dns_init(const char *server, strbuf *err)
{
    if (dns_ready) {
        res_nclose(&dns_state);
        dns_ready = 0;
    }
    memset(&dns_state, 0, sizeof(dns_state));
    if (res_ninit(&dns_state) != 0) {
        strbuf_printf(err, "res_ninit failed");
        return -1;
    }
    dns_ready = 1;
    if (server && *server) {
        char *copy = xstrdup(server);
        char *colon = strchr(copy, ':');
        long port = 53;
        if (colon) {
            char *end;
            *colon = '\0';
            port = strtol(colon + 1, &end, 10);
            if (*end != '\0' || port < 1 || port > 65535) {
                strbuf_printf(err, "bad DNS server port in \"%s\"", server);
                xfree(copy);
                return -1;
            }
        }
        struct in_addr ip;
        if (inet_pton(AF_INET, copy, &ip) != 1) {
            strbuf_printf(err, "DNS server \"%s\" is not IPv4[:port]", server);
            xfree(copy);
            return -1;
        }
        xfree(copy);
        /* Only this server: IPv6 servers from resolv.conf are dropped too. */
        for (int i = 0; i < MAXNS; i++)
            dns_state._u._ext.nsaddrs[i] = NULL;
        dns_state._u._ext.nscount = 0;
        dns_state.nscount = 1;
        memset(&dns_state.nsaddr_list[0], 0, sizeof(dns_state.nsaddr_list[0]));
        dns_state.nsaddr_list[0].sin_family = AF_INET;
        dns_state.nsaddr_list[0].sin_port = htons((uint16_t)port);
        dns_state.nsaddr_list[0].sin_addr = ip;
    }
    return 0;
}

const char *dns_status_name(enum dns_status st)
{
    switch (st) {
    case DNS_OK: return "ok";
    case DNS_NOTFOUND: return "not found";
    case DNS_NODATA: return "no data";
    case DNS_TEMPFAIL: return "temporary failure";
    default: return "failure";
    }
}

int dns_hostname_valid(const char *name)
{
    size_t len = strlen(name);
    if (len == 0 || len > 253)
        return 0;
    size_t label = 0;
    for (const char *p = name; *p; p++) {
        unsigned char c = (unsigned char)*p;
        if (c == '.') {
            if (label == 0)
                return 0;
            label = 0;
            continue;
        }
        if (!isalnum(c) && c != '-' && c != '_')
            return 0;
        if (++label > 63)
            return 0;
    }
    return 1;
}

const char *dns_addr_str(const struct dns_addr *a, char *buf, size_t size)
{
    if (!inet_ntop(a->family, a->addr, buf, (socklen_t)size))
        snprintf(buf, size, "?");
    return buf;
}

void dns_mx_list_free(struct dns_mx_list *list)
{
    for (int i = 0; i < list->n; i++)
        xfree(list->v[i].host);
    xfree(list->v);
    list->v = NULL;
    list->n = 0;
}

void dns_addr_list_free(struct dns_addr_list *list)
{
    xfree(list->v);
    list->v = NULL;
    list->n = 0;
}

void dns_addr_list_add(struct dns_addr_list *list, const struct dns_addr *a)
{
    for (int i = 0; i < list->n; i++)
        if (list->v[i].family == a->family
            && memcmp(list->v[i].addr, a->addr, a->family == AF_INET ? 4 : 16) == 0)
            return;                     /* duplicates waste connect attempts */
    list->v = xrealloc(list->v, (size_t)(list->n + 1) * sizeof(*list->v));
    list->v[list->n++] = *a;
}

/* Open a reply; -1 with why when its header or sections do not fit. */
static int dns_open_reply(const unsigned char *msg, size_t len, ns_msg *handle,
                          strbuf *why)
{
    if (len < HFIXEDSZ || len > DNS_ANSWER_MAX) {
        strbuf_printf(why, "malformed DNS reply (length %zu)", len);
        return -1;
    }
    if (ns_initparse(msg, (int)len, handle) < 0) {
        strbuf_printf(why, "malformed DNS reply");
        return -1;
    }
    return 0;
}

int dns_parse_mx(const unsigned char *msg, size_t len, struct dns_mx_list *out,
                 strbuf *why)
{
    ns_msg handle;
    if (dns_open_reply(msg, len, &handle, why) < 0)
        return -1;
    int count = ns_msg_count(handle, ns_s_an), added = 0;
    for (int i = 0; i < count; i++) {
        ns_rr rr;
        if (ns_parserr(&handle, ns_s_an, i, &rr) < 0) {
            strbuf_printf(why, "malformed DNS reply (answer record %d)", i + 1);
            return -1;
        }
        if (ns_rr_type(rr) != ns_t_mx || ns_rr_class(rr) != ns_c_in)
            continue;
        const unsigned char *rd = ns_rr_rdata(rr);
        int rdlen = ns_rr_rdlen(rr);
        if (rdlen < 3) {
            strbuf_printf(why, "malformed DNS reply (short MX record)");
            return -1;
        }
        char host[NS_MAXDNAME];
        int used = dn_expand(msg, msg + len, rd + 2, host, sizeof(host));
        if (used < 0 || used != rdlen - 2) {
            strbuf_printf(why, "malformed DNS reply (bad MX host name)");
            return -1;
        }
        if (strcmp(host, ".") == 0)
            host[0] = '\0';
        size_t hl = strlen(host);
        if (hl > 0 && host[hl - 1] == '.')
            host[--hl] = '\0';
        if (hl > 0 && !dns_hostname_valid(host))
            continue;                   /* unusable name: skip the record */
        out->v = xrealloc(out->v, (size_t)(out->n + 1) * sizeof(*out->v));
        out->v[out->n].host = xstrdup(host);
        out->v[out->n].pref = (rd[0] << 8) | rd[1];
        out->n++;
        added++;
    }
    return added;
}

int dns_parse_addr(const unsigned char *msg, size_t len, int family,
                   struct dns_addr_list *out, strbuf *why)
{
    ns_msg handle;
    if (dns_open_reply(msg, len, &handle, why) < 0)
        return -1;
    ns_type want_type = family == AF_INET6 ? ns_t_aaaa : ns_t_a;
    int want_len = family == AF_INET6 ? 16 : 4;
    int count = ns_msg_count(handle, ns_s_an), added = 0;
    for (int i = 0; i < count; i++) {
        ns_rr rr;
        if (ns_parserr(&handle, ns_s_an, i, &rr) < 0) {
            strbuf_printf(why, "malformed DNS reply (answer record %d)", i + 1);
            return -1;
        }
        if (ns_rr_type(rr) != want_type || ns_rr_class(rr) != ns_c_in)
            continue;
        if (ns_rr_rdlen(rr) != want_len) {
            strbuf_printf(why, "malformed DNS reply (address record of length %d)",
                          ns_rr_rdlen(rr));
            return -1;
        }
        struct dns_addr a;
        memset(&a, 0, sizeof(a));
        a.family = family;
        memcpy(a.addr, ns_rr_rdata(rr), (size_t)want_len);
        int before = out->n;
        dns_addr_list_add(out, &a);
        added += out->n - before;
    }
    return added;
}

static int mx_cmp(const void *a, const void *b)
{
    const struct dns_mx *x = a, *y = b;
    return x->pref - y->pref;
}

void dns_mx_sort(struct dns_mx_list *list, int shuffle)
{
    if (list->n < 2)
        return;
    if (shuffle) {
        /* Fisher-Yates first, then a stable-enough sort by preference:
         * qsort is not stable, so shuffle again inside each run. */
        qsort(list->v, (size_t)list->n, sizeof(*list->v), mx_cmp);
        int start = 0;
        while (start < list->n) {
            int end = start + 1;
            while (end < list->n && list->v[end].pref == list->v[start].pref)
                end++;
            for (int i = end - 1; i > start; i--) {
                unsigned int r = 0;
                if (getrandom(&r, sizeof(r), GRND_NONBLOCK) != (ssize_t)sizeof(r))
                    r = (unsigned int)random();
                int j = start + (int)(r % (unsigned int)(i - start + 1));
                struct dns_mx t = list->v[i];
                list->v[i] = list->v[j];
                list->v[j] = t;
            }
            start = end;
        }
    } else {
        qsort(list->v, (size_t)list->n, sizeof(*list->v), mx_cmp);
    }
}

/* res_nquery; returns reply length or -1 with status and why set. */
static int dns_query(const char *name, int type, unsigned char *answer,
                     enum dns_status *status, strbuf *why)
{
    static const char *const tname[] = { [ns_t_a] = "A", [ns_t_mx] = "MX", [ns_t_aaaa] = "AAAA" };
    const char *tn = (type == ns_t_a || type == ns_t_mx || type == ns_t_aaaa) ? tname[type] : "?";
    if (!dns_ready) {
        strbuf tmp;
        strbuf_init(&tmp);
        if (dns_init("", &tmp) < 0) {
            *status = DNS_TEMPFAIL;
            strbuf_printf(why, "DNS resolver: %s", strbuf_str(&tmp));
            strbuf_release(&tmp);
            return -1;
        }
        strbuf_release(&tmp);
    }
    int len = res_nquery(&dns_state, name, ns_c_in, type, answer, DNS_ANSWER_MAX);
    if (len >= 0) {
        if (len > DNS_ANSWER_MAX)
            len = DNS_ANSWER_MAX;
        return len;
    }
    switch (dns_state.res_h_errno) {
    case HOST_NOT_FOUND:
        *status = DNS_NOTFOUND;
        strbuf_printf(why, "Host or domain name not found. Name service error for name=%s type=%s: Host not found", name, tn);
        break;
    case NO_DATA:
        *status = DNS_NODATA;
        strbuf_printf(why, "no %s record for %s", tn, name);
        break;
    case NO_RECOVERY:
        *status = DNS_FAIL;
        strbuf_printf(why, "Name service error for name=%s type=%s: Non-recoverable error", name, tn);
        break;
    default:
        *status = DNS_TEMPFAIL;
        strbuf_printf(why, "Host or domain name not found. Name service error for name=%s type=%s: Host not found, try again", name, tn);
        break;
    }
    return -1;
}

enum dns_status dns_lookup_mx(const char *name, struct dns_mx_list *out, strbuf *why)
{
    unsigned char *answer = xmalloc(DNS_ANSWER_MAX);
    enum dns_status st = DNS_OK;
    int len = dns_query(name, ns_t_mx, answer, &st, why);
    if (len >= 0) {
        int n = dns_parse_mx(answer, (size_t)len, out, why);
        if (n < 0)
            st = DNS_TEMPFAIL;          /* a broken reply may be a passing fault */
        else if (n == 0) {
            st = DNS_NODATA;
            strbuf_printf(why, "no MX record for %s", name);
        } else
            dns_mx_sort(out, 1);
    }
    xfree(answer);
    return st;
}

enum dns_status dns_lookup_addr(const char *name, int families,
                                struct dns_addr_list *out, strbuf *why)
{
    unsigned char *answer = xmalloc(DNS_ANSWER_MAX);
    enum dns_status result = DNS_NOTFOUND;
    static const int order[2] = { AF_INET, AF_INET6 };
    strbuf one;
    strbuf_init(&one);
    int tried = 0;
    for (int k = 0; k < 2; k++) {
        int fam = order[k];
        if (!(families & (fam == AF_INET ? DNS_WANT_V4 : DNS_WANT_V6)))
            continue;
        enum dns_status st = DNS_OK;
        strbuf_reset(&one);
        int len = dns_query(name, fam == AF_INET ? ns_t_a : ns_t_aaaa, answer, &st, &one);
        if (len >= 0) {
            int n = dns_parse_addr(answer, (size_t)len, fam, out, &one);
            if (n < 0)
                st = DNS_TEMPFAIL;
            else if (n == 0)
                st = DNS_NODATA;
        }
        /* Best outcome over both families wins: OK > TEMPFAIL > NODATA >
         * NOTFOUND > FAIL; its reason is kept. */
        static const int rank[] = { [DNS_OK] = 5, [DNS_TEMPFAIL] = 4, [DNS_NODATA] = 3,
                                    [DNS_NOTFOUND] = 2, [DNS_FAIL] = 1 };
        if (!tried || rank[st] > rank[result]) {
            result = st;
            strbuf_reset(why);
            strbuf_append(why, one.data, one.len);
        }
        tried = 1;
    }
    if (result == DNS_NODATA && why->len == 0)
        strbuf_printf(why, "no address for %s", name);
    if (result == DNS_OK)
        strbuf_reset(why);
    strbuf_release(&one);
    xfree(answer);
    return result;
}
