/*
 * smtp_route.c - where a nexthop's mail goes: the ordered list of server
 * addresses the agent tries.
 *
 * Interface: smtp_nexthop_parse(), smtp_route_build(), smtp_route_free()
 * (smtp.h).
 *
 * Rules (Postfix's):
 *   "[host]:port", "[host]"  no MX lookup: host's own addresses (or the
 *                            literal IP inside the brackets);
 *   "host:port", "host"      MX lookup; port defaults to smtp_tcp_port.
 *   MX records in preference order (equal ones shuffled by dns.c), each
 *   host's A (and AAAA when inet_protocols allows) in turn, at most
 *   smtp_mx_address_limit addresses in all.  No MX: the domain's own
 *   addresses (RFC 5321 5.1).  NXDOMAIN or no address anywhere: bounce
 *   5.4.4.  Temporary DNS failure: defer 4.4.3.  Null MX (RFC 7505): bounce
 *   5.1.10.  An MX that is this host (its name is myhostname, or one of its
 *   addresses is one we listen on per inet_interfaces) cuts the list at its
 *   preference; if nothing better remains: bounce 5.4.6 "mail for X loops
 *   back to myself".
 *   smtp_fallback_relay destinations are appended (resolved the same way)
 *   and are used alone when the destination is not found or its lookup
 *   failed temporarily.
 *
 * Contract: on success route->n > 0 and err is untouched; on failure
 * route->n == 0 and err says BOUNCED or DEFERRED with dsn and reason.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <ifaddrs.h>
#include <netdb.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "config.h"
#include "log.h"
#include "mem.h"
#include "smtp.h"
#include "smtp_nexthop.h"

/* ---- my own addresses ----------------------------------------------- */

static struct dns_addr_list my_addrs;
static int my_addrs_ready;

static void add_sockaddr(const struct sockaddr *sa)
{
    struct dns_addr a;
    memset(&a, 0, sizeof(a));
    if (sa->sa_family == AF_INET) {
        a.family = AF_INET;
        memcpy(a.addr, &((const struct sockaddr_in *)sa)->sin_addr, 4);
    } else if (sa->sa_family == AF_INET6) {
        a.family = AF_INET6;
        memcpy(a.addr, &((const struct sockaddr_in6 *)sa)->sin6_addr, 16);
    } else {
        return;
    }
    dns_addr_list_add(&my_addrs, &a);
}

static void add_literal(const char *s)
{
    struct dns_addr a;
    memset(&a, 0, sizeof(a));
    if (inet_pton(AF_INET, s, a.addr) == 1)
        a.family = AF_INET;
    else if (inet_pton(AF_INET6, s, a.addr) == 1)
        a.family = AF_INET6;
    else
        return;
    dns_addr_list_add(&my_addrs, &a);
}

/* The addresses mail to us arrives on (inet_interfaces), computed once. */
static void my_addrs_init(void)
{
    if (my_addrs_ready)
        return;
    my_addrs_ready = 1;
    int n = 0;
    char **list = config_list(config_str("inet_interfaces"), &n);
    for (int i = 0; i < n; i++) {
        char *item = list[i];
        if (strcasecmp(item, "all") == 0) {
            struct ifaddrs *ifa = NULL;
            if (getifaddrs(&ifa) == 0) {
                for (struct ifaddrs *p = ifa; p; p = p->ifa_next)
                    if (p->ifa_addr)
                        add_sockaddr(p->ifa_addr);
                freeifaddrs(ifa);
            } else {
                log_warning("getifaddrs: %m");
            }
        } else if (strcasecmp(item, "loopback-only") == 0 || strcasecmp(item, "localhost") == 0) {
            add_literal("127.0.0.1");
            add_literal("::1");
        } else {
            size_t l = strlen(item);
            if (item[0] == '[' && l > 2 && item[l - 1] == ']') {
                item[l - 1] = '\0';
                item++;
            }
            add_literal(item);
        }
    }
    config_list_free(list);
}

static int is_my_addr(const struct dns_addr *a)
{
    my_addrs_init();
    for (int i = 0; i < my_addrs.n; i++)
        if (my_addrs.v[i].family == a->family
            && memcmp(my_addrs.v[i].addr, a->addr, a->family == AF_INET ? 4 : 16) == 0)
            return 1;
    return 0;
}

/* ---- host addresses --------------------------------------------------- */

static enum dns_status native_lookup(const char *host, struct dns_addr_list *out, strbuf *why)
{
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof(hints));
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_family = smtp_params.families == DNS_WANT_V4 ? AF_INET
                      : smtp_params.families == DNS_WANT_V6 ? AF_INET6 : AF_UNSPEC;
    int rc = getaddrinfo(host, NULL, &hints, &res);
    if (rc != 0) {
        strbuf_printf(why, "Host or domain name not found. Name service error for name=%s type=A: %s",
                      host, gai_strerror(rc));
        return rc == EAI_AGAIN ? DNS_TEMPFAIL : DNS_NOTFOUND;
    }
    for (struct addrinfo *p = res; p; p = p->ai_next) {
        struct dns_addr a;
        memset(&a, 0, sizeof(a));
        if (p->ai_family == AF_INET) {
            a.family = AF_INET;
            memcpy(a.addr, &((struct sockaddr_in *)p->ai_addr)->sin_addr, 4);
        } else if (p->ai_family == AF_INET6) {
            a.family = AF_INET6;
            memcpy(a.addr, &((struct sockaddr_in6 *)p->ai_addr)->sin6_addr, 16);
        } else {
            continue;
        }
        dns_addr_list_add(out, &a);
    }
    freeaddrinfo(res);
    return out->n ? DNS_OK : DNS_NODATA;
}

/* Addresses of one host: an IP literal, DNS and/or native lookups. */
static enum dns_status host_addrs(const char *host, struct dns_addr_list *out, strbuf *why)
{
    struct dns_addr a;
    memset(&a, 0, sizeof(a));
    if (inet_pton(AF_INET, host, a.addr) == 1) {
        a.family = AF_INET;
        dns_addr_list_add(out, &a);
        return DNS_OK;
    }
    if (inet_pton(AF_INET6, host, a.addr) == 1) {
        a.family = AF_INET6;
        dns_addr_list_add(out, &a);
        return DNS_OK;
    }
    enum dns_status st = DNS_NOTFOUND;
    if (smtp_params.host_lookup_dns) {
        st = dns_lookup_addr(host, smtp_params.families, out, why);
        if (st == DNS_OK)
            return st;
    }
    if (smtp_params.host_lookup_native) {
        strbuf_reset(why);
        st = native_lookup(host, out, why);
    }
    return st;
}

static void route_add(struct smtp_route *route, const char *host,
                      const struct dns_addr *a, int port, int from_mx)
{
    route->v = xrealloc(route->v, (size_t)(route->n + 1) * sizeof(*route->v));
    struct smtp_target *t = &route->v[route->n++];
    t->host = xstrdup(host);
    t->addr = *a;
    t->port = port;
    t->from_mx = from_mx;
}

void smtp_route_free(struct smtp_route *route)
{
    for (int i = 0; i < route->n; i++)
        xfree(route->v[i].host);
    xfree(route->v);
    route->v = NULL;
    route->n = 0;
}

static void set_error(struct smtp_route_error *err, enum smtp_status st,
                      const char *dsn, const char *reason)
{
    err->status = st;
    strbuf_set_str(&err->dsn, dsn);
    strbuf_set_str(&err->reason, reason);
}

/* Error of a failed address lookup, as a routing error. */
static void lookup_error(struct smtp_route_error *err, enum dns_status st, const char *why)
{
    if (st == DNS_NOTFOUND || st == DNS_NODATA)
        set_error(err, SMTP_BOUNCED, "5.4.4", why);
    else
        set_error(err, SMTP_DEFERRED, "4.4.3", why);
}

/* Targets of one destination.  0 ok (route grew), -1 err set. */
static int route_one(const char *nexthop, struct smtp_route *route,
                     struct smtp_route_error *err, int *not_found)
{
    char *host;
    int port, mx_lookup;
    strbuf why;
    strbuf_init(&why);
    int rc = -1;
    *not_found = 0;
    if (smtp_nexthop_parse(nexthop, smtp_params.tcp_port, &host, &port, &mx_lookup) < 0) {
        strbuf_printf(&why, "bad next-hop destination syntax: %s", nexthop);
        set_error(err, SMTP_DEFERRED, "4.3.5", strbuf_str(&why));
        strbuf_release(&why);
        return -1;
    }
    int limit = smtp_params.mx_address_limit > 0 ? smtp_params.mx_address_limit : 1000000;
    int start = route->n;

    if (!mx_lookup || !smtp_params.host_lookup_dns) {
        struct dns_addr_list al = { 0 };
        enum dns_status st = host_addrs(host, &al, &why);
        if (st != DNS_OK) {
            lookup_error(err, st, strbuf_str(&why));
            *not_found = st == DNS_NOTFOUND || st == DNS_NODATA;
        } else {
            for (int i = 0; i < al.n && route->n - start < limit; i++)
                route_add(route, host, &al.v[i], port, 0);
            rc = 0;
        }
        dns_addr_list_free(&al);
        goto out;
    }

    struct dns_mx_list mx = { 0 };
    enum dns_status st = dns_lookup_mx(host, &mx, &why);
    if (st == DNS_NOTFOUND) {
        set_error(err, SMTP_BOUNCED, "5.4.4", strbuf_str(&why));
        *not_found = 1;
    } else if (st == DNS_TEMPFAIL || st == DNS_FAIL) {
        set_error(err, SMTP_DEFERRED, "4.4.3", strbuf_str(&why));
    } else if (st == DNS_NODATA) {
        /* RFC 5321 5.1: no MX, the domain itself is the mail server */
        struct dns_addr_list al = { 0 };
        strbuf_reset(&why);
        st = host_addrs(host, &al, &why);
        if (st != DNS_OK) {
            lookup_error(err, st, strbuf_str(&why));
            *not_found = st == DNS_NOTFOUND || st == DNS_NODATA;
        } else {
            for (int i = 0; i < al.n && route->n - start < limit; i++) {
                if (is_my_addr(&al.v[i])) {
                    strbuf_printf(&why, "mail for %s loops back to myself", host);
                    set_error(err, SMTP_BOUNCED, "5.4.6", strbuf_str(&why));
                    break;
                }
                route_add(route, host, &al.v[i], port, 1);
            }
            rc = route->n > start ? 0 : -1;
        }
        dns_addr_list_free(&al);
    } else {
        /* null MX: "MX 0 ." (RFC 7505); any root host makes it one */
        for (int i = 0; i < mx.n; i++)
            if (mx.v[i].host[0] == '\0') {
                strbuf_printf(&why, "Domain %s does not accept mail (nullMX)", host);
                set_error(err, SMTP_BOUNCED, "5.1.10", strbuf_str(&why));
                goto mx_done;
            }
        /* Cut at the first MX that is this host (by name). */
        int cut = mx.n;
        for (int i = 0; i < mx.n; i++)
            if (strcasecmp(mx.v[i].host, smtp_params.myhostname) == 0) {
                while (cut > 0 && mx.v[cut - 1].pref >= mx.v[i].pref)
                    cut--;
                break;
            }
        int cut_pref = -1, tempfail = 0, any_addr = 0;
        strbuf last;
        strbuf_init(&last);
        for (int i = 0; i < cut && route->n - start < limit; i++) {
            if (cut_pref >= 0 && mx.v[i].pref >= cut_pref)
                break;
            struct dns_addr_list al = { 0 };
            strbuf_reset(&last);
            enum dns_status ast = host_addrs(mx.v[i].host, &al, &last);
            if (ast != DNS_OK) {
                if (ast == DNS_TEMPFAIL || ast == DNS_FAIL)
                    tempfail = 1;
                strbuf_set(&why, last.data, last.len);
                log_info("%s: MX host %s: %s", host, mx.v[i].host, strbuf_str(&last));
            }
            for (int k = 0; k < al.n; k++) {
                any_addr = 1;
                if (is_my_addr(&al.v[k])) {
                    /* this MX is us: it and everything as bad go */
                    cut_pref = mx.v[i].pref;
                    /* drop targets of this MX and of equal preference */
                    int keep = start;
                    for (int j = start; j < route->n; j++) {
                        int pref = -1;
                        for (int m = 0; m < mx.n; m++)
                            if (strcmp(mx.v[m].host, route->v[j].host) == 0) {
                                pref = mx.v[m].pref;
                                break;
                            }
                        if (pref >= 0 && pref >= cut_pref) {
                            xfree(route->v[j].host);
                            continue;
                        }
                        route->v[keep++] = route->v[j];
                    }
                    route->n = keep;
                    break;
                }
                if (route->n - start < limit)
                    route_add(route, mx.v[i].host, &al.v[k], port, 1);
            }
            dns_addr_list_free(&al);
        }
        strbuf_release(&last);
        if (route->n > start) {
            rc = 0;
        } else if (cut == 0 || cut_pref >= 0) {
            strbuf_printf(&why, "mail for %s loops back to myself", host);
            set_error(err, SMTP_BOUNCED, "5.4.6", strbuf_str(&why));
        } else if (tempfail || any_addr) {
            set_error(err, SMTP_DEFERRED, "4.4.3", strbuf_str(&why));
        } else {
            set_error(err, SMTP_BOUNCED, "5.4.4", strbuf_str(&why));
        }
    }
mx_done:
    dns_mx_list_free(&mx);
out:
    xfree(host);
    strbuf_release(&why);
    return rc;
}

int smtp_route_build(const char *nexthop, struct smtp_route *route,
                     struct smtp_route_error *err)
{
    route->v = NULL;
    route->n = 0;
    int not_found = 0;
    int rc = route_one(nexthop, route, err, &not_found);
    int use_fallback = rc == 0 || err->status == SMTP_DEFERRED || not_found;
    const char *fb = smtp_params.fallback_relay;
    if (use_fallback && fb && *fb) {
        int n = 0;
        char **list = config_list(fb, &n);
        struct smtp_route_error ferr;
        strbuf_init(&ferr.dsn);
        strbuf_init(&ferr.reason);
        for (int i = 0; i < n; i++) {
            int nf;
            if (strcasecmp(list[i], nexthop) == 0)
                continue;
            if (route_one(list[i], route, &ferr, &nf) < 0)
                log_warning("smtp_fallback_relay %s: %s", list[i], strbuf_str(&ferr.reason));
        }
        strbuf_release(&ferr.dsn);
        strbuf_release(&ferr.reason);
        config_list_free(list);
    }
    return route->n > 0 ? 0 : -1;
}
