/*
 * smtp_nexthop.c - the syntax of an smtp next-hop destination (see
 * smtp_nexthop.h).
 */
#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "dns.h"
#include "mem.h"
#include "smtp_nexthop.h"

int smtp_port_parse(const char *s)
{
    if (strcmp(s, "smtp") == 0)
        return 25;
    if (strcmp(s, "submission") == 0)
        return 587;
    if (strcmp(s, "submissions") == 0 || strcmp(s, "smtps") == 0)
        return 465;
    long v = 0;
    if (*s == '\0' || strlen(s) > 5)
        return -1;
    for (const char *c = s; *c; c++) {
        if (*c < '0' || *c > '9')
            return -1;
        v = v * 10 + (*c - '0');
    }
    return v >= 1 && v <= 65535 ? (int)v : -1;
}

int smtp_nexthop_parse(const char *nexthop, int default_port, char **host, int *port,
                       int *mx_lookup)
{
    const char *p = nexthop;
    *host = NULL;
    *port = default_port;
    if (strncmp(p, "inet:", 5) == 0)
        p += 5;
    if (*p == '[') {
        const char *close = strchr(p, ']');
        if (!close || close == p + 1)
            return -1;
        *mx_lookup = 0;
        /* Strip an "ipv6:" tag before copying (an in-place memmove after the
         * copy tripped gcc's -Wstringop-overread in the sanitizer build). */
        const char *start = p + 1;
        size_t len = (size_t)(close - start);
        if (len >= 5 && strncasecmp(start, "ipv6:", 5) == 0) {
            start += 5;
            len -= 5;
        }
        char *h = xstrndup(start, len);
        const char *rest = close + 1;
        if (*rest == ':') {
            *port = smtp_port_parse(rest + 1);
        } else if (*rest != '\0') {
            *port = -1;
        }
        unsigned char buf[16];
        int literal = inet_pton(AF_INET, h, buf) == 1 || inet_pton(AF_INET6, h, buf) == 1;
        if (*port < 0 || !*h || (!literal && !dns_hostname_valid(h))) {
            xfree(h);
            return -1;
        }
        *host = h;
        return 0;
    }
    *mx_lookup = 1;
    const char *colon = strrchr(p, ':');
    char *h = colon ? xstrndup(p, (size_t)(colon - p)) : xstrdup(p);
    if (colon)
        *port = smtp_port_parse(colon + 1);
    if (*port < 0 || !*h || strchr(h, ':') || !dns_hostname_valid(h)) {
        xfree(h);
        return -1;
    }
    *host = h;
    return 0;
}
