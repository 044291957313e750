/*
 * resolve.c - recipient address to (transport, nexthop).  See resolve.h for
 * the rules; this file only implements them.
 */
#include <ctype.h>
#include <string.h>
#include <strings.h>

#include "resolve.h"
#include "mem.h"

void resolve_result_init(struct resolve_result *r)
{
    strbuf_init(&r->transport);
    strbuf_init(&r->nexthop);
    r->local = 0;
}

void resolve_result_release(struct resolve_result *r)
{
    strbuf_release(&r->transport);
    strbuf_release(&r->nexthop);
}

/* Is the list entry [start, start+len) equal to domain, ignoring case? */
static int entry_matches(const char *start, size_t len, const char *domain)
{
    return strlen(domain) == len && strncasecmp(start, domain, len) == 0;
}

int resolve_domain_is_local(const struct resolve_config *cfg, const char *domain)
{
    const char *p = cfg->mydestination ? cfg->mydestination : "";
    size_t dlen = strlen(domain);

    /* A trailing dot names the same domain ("example.org."). */
    while (dlen > 0 && domain[dlen - 1] == '.')
        dlen--;
    char *dom = xstrndup(domain, dlen);
    int found = 0;
    while (*p && !found) {
        while (*p && (isspace((unsigned char) *p) || *p == ','))
            p++;
        const char *start = p;
        while (*p && !isspace((unsigned char) *p) && *p != ',')
            p++;
        size_t len = (size_t) (p - start);
        if (len == 0 || memchr(start, ':', len) != NULL)
            continue;               /* empty, or a map: not supported here */
        if (entry_matches(start, len, dom))
            found = 1;
    }
    xfree(dom);
    return found;
}

int resolve_parse_transport(const char *value, const char *default_transport,
                            const char *default_nexthop, struct resolve_result *out)
{
    const char *colon = strchr(value, ':');
    size_t tlen = colon ? (size_t) (colon - value) : strlen(value);
    const char *nexthop = colon ? colon + 1 : "";

    /* Trim surrounding blanks of the transport name. */
    while (tlen > 0 && isspace((unsigned char) value[0])) {
        value++;
        tlen--;
    }
    while (tlen > 0 && isspace((unsigned char) value[tlen - 1]))
        tlen--;
    if (tlen > 0)
        strbuf_set(&out->transport, value, tlen);
    else
        strbuf_set_str(&out->transport, default_transport);
    if (*nexthop)
        strbuf_set_str(&out->nexthop, nexthop);
    else if (strcmp(strbuf_str(&out->transport), "error") == 0
             || strcmp(strbuf_str(&out->transport), "discard") == 0)
        strbuf_reset(&out->nexthop);   /* their "nexthop" is a text: none given */
    else
        strbuf_set_str(&out->nexthop, default_nexthop);
    return 0;
}

/* Look DOMAIN (lower case) up as itself, its parents ".parent", then "*".
 * Returns the lookup's result. */
static int lookup_domain(const struct resolve_config *cfg, const char *domain,
                         strbuf *value)
{
    int rc = cfg->transport_lookup(cfg->lookup_ctx, domain, 0, value);
    if (rc != 0)
        return rc;
    strbuf key;
    strbuf_init(&key);
    for (const char *dot = strchr(domain, '.'); dot; dot = strchr(dot + 1, '.')) {
        strbuf_set_str(&key, dot);
        rc = cfg->transport_lookup(cfg->lookup_ctx, strbuf_str(&key), 0, value);
        if (rc != 0)
            break;
    }
    strbuf_release(&key);
    if (rc == 0)
        rc = cfg->transport_lookup(cfg->lookup_ctx, "*", 0, value);
    return rc;
}

int resolve_recipient(const struct resolve_config *cfg, const char *addr,
                      struct resolve_result *out)
{
    const char *at = strrchr(addr, '@');
    const char *myhost = cfg->myhostname ? cfg->myhostname : "";
    char *domain = xstrdup(at ? at + 1 : "");
    for (char *d = domain; *d; d++)
        *d = (char) tolower((unsigned char) *d);

    int local = (at == NULL || domain[0] == '\0' || resolve_domain_is_local(cfg, domain));
    const char *def_transport;
    const char *def_nexthop;
    if (local) {
        def_transport = "local";
        def_nexthop = myhost;
    } else if (cfg->relayhost && cfg->relayhost[0]) {
        def_transport = "smtp";
        def_nexthop = cfg->relayhost;
    } else {
        def_transport = "smtp";
        def_nexthop = domain;
    }
    strbuf_set_str(&out->transport, def_transport);
    strbuf_set_str(&out->nexthop, def_nexthop);
    out->local = local;

    int status = RESOLVE_OK;
    if (cfg->transport_lookup) {
        strbuf value;
        strbuf_init(&value);
        char *lower = xstrdup(addr);
        /* Domain part in lower case; the local part is kept as given (the
         * map layer folds case for the tables that want it). */
        if (at)
            for (char *d = lower + (at - addr); *d; d++)
                *d = (char) tolower((unsigned char) *d);
        int rc = cfg->transport_lookup(cfg->lookup_ctx, lower, 1, &value);
        if (rc == 0 && domain[0])
            rc = lookup_domain(cfg, domain, &value);
        xfree(lower);
        if (rc > 0) {
            /* The default nexthop of a table entry is the recipient's
             * domain, not the relayhost (Postfix's transport(5)). */
            const char *table_nexthop = domain[0] ? domain : myhost;
            const char *v = strbuf_str(&value);
            const char *colon = strchr(v, ':');
            if (colon && colon[1] == '\0' && colon == v) {
                /* ":" alone: keep everything as resolved. */
            } else if (colon && colon == v) {
                /* ":nexthop": class transport, given nexthop. */
                char *t = xstrdup(strbuf_str(&out->transport));
                resolve_parse_transport(v, t, table_nexthop, out);
                xfree(t);
            } else {
                resolve_parse_transport(v, def_transport, table_nexthop, out);
            }
        } else if (rc < 0) {
            strbuf_set_str(&out->nexthop, "transport_maps lookup failure");
            status = RESOLVE_TEMPFAIL;
        }
        strbuf_release(&value);
    }
    xfree(domain);
    return status;
}
