/*
 * resolve.h - recipient address to (transport, nexthop), as qmgr needs it.
 *
 * Interface:
 *   resolve_recipient(cfg, addr, out)   decide where ADDR goes.
 *   resolve_domain_is_local(cfg, dom)   1 when DOM is in mydestination.
 *   resolve_parse_transport(value, default_transport, default_nexthop, out)
 *                                       apply one transport_maps result.
 *
 * Rules (Postfix's, for the classes postern has):
 *   - a bare local part (no '@') or a domain listed in mydestination
 *     (case-insensitive) is local: "local:$myhostname";
 *   - anything else goes to "smtp:$relayhost" when relayhost is set, else
 *     "smtp:DOMAIN";
 *   - transport_maps, when given as a lookup callback, override: first the
 *     full address, then the domain, then each parent domain as ".parent",
 *     then "*".  A result "transport:nexthop" sets both; ":nexthop" keeps
 *     the class's default transport; "transport:" (or "transport" without a
 *     colon) uses the recipient domain as nexthop (for a bare local part:
 *     $myhostname); ":" alone changes nothing.
 *   - the transports "error" and "discard" keep the nexthop as their text
 *     (error:5.1.1 User unknown, discard:reason) - qmgr acts on them itself;
 *     for them an empty nexthop stays empty.
 *
 * Contract: pure, no I/O except through the lookup callback (which returns
 * 1 found, 0 not found, -1 temporary failure).  Domains are compared and
 * looked up in lower case; the address itself is never modified.
 * mydestination entries that look like maps ("type:name") are ignored.
 */
#ifndef POSTERN_RESOLVE_H
#define POSTERN_RESOLVE_H

#include "strbuf.h"

/* key lookup: is_address=1 for the full address (lookup with address
 * semantics), 0 for a plain key (domain, ".parent", "*"). */
typedef int (*resolve_lookup_fn)(void *ctx, const char *key, int is_address,
                                 strbuf *out);

struct resolve_config {
    const char *myhostname;
    const char *mydestination;          /* list: whitespace and/or commas */
    const char *relayhost;              /* "" or NULL = none */
    resolve_lookup_fn transport_lookup; /* NULL = no transport_maps */
    void *lookup_ctx;
};

enum resolve_status { RESOLVE_OK = 0, RESOLVE_TEMPFAIL = -1 };

struct resolve_result {
    strbuf transport;
    strbuf nexthop;
    int local;                          /* 1 = address class local */
};

void resolve_result_init(struct resolve_result *r);
void resolve_result_release(struct resolve_result *r);

int resolve_domain_is_local(const struct resolve_config *cfg, const char *domain);
/* RESOLVE_OK with out filled, or RESOLVE_TEMPFAIL (map lookup failed;
 * reason in out->nexthop). */
int resolve_recipient(const struct resolve_config *cfg, const char *addr,
                      struct resolve_result *out);
/* Apply one transport table value to defaults.  Returns 0. */
int resolve_parse_transport(const char *value, const char *default_transport,
                            const char *default_nexthop, struct resolve_result *out);

#endif
