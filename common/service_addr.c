/*
 * service_addr.c - split an inet service name into host and port;
 * see service_addr.h for the accepted forms and the contract.
 */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "mem.h"
#include "service_addr.h"

static int port_ok(const char *p, strbuf *err)
{
    if (!*p) {
        strbuf_set_str(err, "empty port");
        return 0;
    }
    if (isdigit((unsigned char)*p)) {
        char *end;
        long v = strtol(p, &end, 10);
        if (*end || v < 1 || v > 65535 || strlen(p) > 5) {
            strbuf_printf(err, "bad port number: %s", p);
            return 0;
        }
        return 1;
    }
    for (const char *q = p; *q; q++) {
        if (!isalnum((unsigned char)*q) && *q != '-' && *q != '_') {
            strbuf_printf(err, "bad port name: %s", p);
            return 0;
        }
    }
    return 1;
}

static int host_ok(const char *h, size_t len, strbuf *err)
{
    if (len == 0) {
        strbuf_set_str(err, "empty host");
        return 0;
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)h[i];
        if (c <= ' ' || c == 0x7f || c == '[' || c == ']') {
            strbuf_set_str(err, "bad character in host");
            return 0;
        }
    }
    return 1;
}

int service_addr_split(const char *name, char **host, char **port, strbuf *err)
{
    *host = NULL;
    *port = NULL;
    if (!name || !*name) {
        strbuf_set_str(err, "empty service name");
        return -1;
    }
    const char *h, *p;
    size_t hlen;
    if (name[0] == '[') {
        const char *close_br = strchr(name, ']');
        if (!close_br || close_br[1] != ':') {
            strbuf_printf(err, "bad address (want [host]:port): %s", name);
            return -1;
        }
        h = name + 1;
        hlen = (size_t)(close_br - h);
        p = close_br + 2;
    } else {
        const char *colon = strchr(name, ':');
        if (!colon) {
            if (!port_ok(name, err))
                return -1;
            *port = xstrdup(name);
            return 0;
        }
        if (strchr(colon + 1, ':')) {
            strbuf_printf(err, "bad address (IPv6 needs [brackets]): %s", name);
            return -1;
        }
        h = name;
        hlen = (size_t)(colon - name);
        p = colon + 1;
    }
    if (!host_ok(h, hlen, err) || !port_ok(p, err))
        return -1;
    *host = xstrndup(h, hlen);
    *port = xstrdup(p);
    return 0;
}
