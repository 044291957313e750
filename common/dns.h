/*
 * dns.h - DNS lookups for mail routing: MX records and host addresses.
 *
 * Interface:
 *   dns_init(server, err)       prepare the resolver (res_ninit: reads
 *                               /etc/resolv.conf now, so call it before a
 *                               chroot).  server "" = resolv.conf's servers;
 *                               "IPv4[:port]" = only that server (postern's
 *                               smtp_dns_resolver, an operator/testing aid).
 *   dns_lookup_mx(name, list, why)      MX records of name, sorted by
 *                               preference, equal preferences shuffled.
 *   dns_lookup_addr(name, families, list, why)   A and/or AAAA records.
 *   dns_parse_mx / dns_parse_addr   the pure reply parsers behind them
 *                               (fuzzed: tests/fuzz/fuzz_dns.c).
 *   dns_mx_sort(list, shuffle)  order by preference.
 *   dns_hostname_valid(name)    LDH labels, what we accept from the wire.
 *
 * Status of a lookup (enum dns_status):
 *   DNS_OK        records found (list->n > 0)
 *   DNS_NOTFOUND  the name does not exist (NXDOMAIN)
 *   DNS_NODATA    the name exists but has no record of that type
 *   DNS_TEMPFAIL  no usable answer now (timeout, SERVFAIL): try later
 *   DNS_FAIL      permanent failure (REFUSED, FORMERR, malformed reply)
 * why holds a one-line reason for anything but DNS_OK.
 *
 * Contract: the parsers read only msg[0..len), reject (return -1, why set)
 * a reply whose header or records do not fit, skip records of other types
 * or classes (CNAME chains before the answer), and never return a host
 * name that fails dns_hostname_valid() (such MX records are skipped).  An MX
 * with the root as host is returned as host "" (RFC 7505 null MX).  Lists
 * own their memory: dns_mx_list_free / dns_addr_list_free.
 */
#ifndef POSTERN_DNS_H
#define POSTERN_DNS_H

#include <stddef.h>
#include <netinet/in.h>
#include "strbuf.h"

enum dns_status { DNS_OK = 0, DNS_NOTFOUND, DNS_NODATA, DNS_TEMPFAIL, DNS_FAIL };

struct dns_mx {
    char *host;                 /* "" = the root (null MX) */
    int pref;
};

struct dns_mx_list {
    struct dns_mx *v;
    int n;
};

struct dns_addr {
    int family;                 /* AF_INET or AF_INET6 */
    unsigned char addr[16];     /* network order; 4 bytes used for AF_INET */
};

struct dns_addr_list {
    struct dns_addr *v;
    int n;
};

#define DNS_WANT_V4 1
#define DNS_WANT_V6 2

int dns_init(const char *server, strbuf *err);
enum dns_status dns_lookup_mx(const char *name, struct dns_mx_list *out, strbuf *why);
enum dns_status dns_lookup_addr(const char *name, int families,
                                struct dns_addr_list *out, strbuf *why);

/* Parse a whole reply; append records to out.  Returns the number of
 * records added (0 = none of that type) or -1 malformed (why set). */
int dns_parse_mx(const unsigned char *msg, size_t len, struct dns_mx_list *out,
                 strbuf *why);
int dns_parse_addr(const unsigned char *msg, size_t len, int family,
                   struct dns_addr_list *out, strbuf *why);

void dns_mx_sort(struct dns_mx_list *list, int shuffle);
void dns_mx_list_free(struct dns_mx_list *list);
void dns_addr_list_free(struct dns_addr_list *list);
void dns_addr_list_add(struct dns_addr_list *list, const struct dns_addr *a);
int dns_hostname_valid(const char *name);
/* "192.0.2.1" / "2001:db8::1" into buf (>= INET6_ADDRSTRLEN). */
const char *dns_addr_str(const struct dns_addr *a, char *buf, size_t size);
const char *dns_status_name(enum dns_status st);

#endif
