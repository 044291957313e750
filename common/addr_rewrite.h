/*
 * addr_rewrite.h - table-driven address rewriting: canonical (one address
 * to one) and virtual alias expansion (one address to many), as cleanup
 * applies them; reusable by anything that must predict cleanup's result
 * (smtpd recipient validation, postern map query).
 *
 * Interface:
 *   addr_map_one(maps, addr, delim, flags, out)
 *       One lookup with maps_lookup_addr_ex() (Postfix's search order;
 *       flags MAPS_ADDR_NO_USER when addr's domain is not local, so bare
 *       "user" keys only match local addresses, as in Postfix).  The
 *       result's first address (comma/blank separated) replaces addr; a
 *       result "@domain" keeps addr's local part (catch-all domain move).
 *       Returns 1 rewritten (out = new address), 0 no match, -1 temporary
 *       lookup error.
 *   virtual_alias_expand(maps, addr, opts, out, err)
 *       Expand addr recursively: a found address is replaced by every
 *       address of its result, each expanded in turn.  An address whose
 *       result contains itself stays (the "expand to yourself plus others"
 *       idiom); an address seen again further down the same branch (a loop
 *       such as a -> b -> a) stops there and stays too.  Duplicates are
 *       kept once, in first-seen order.  Returns 0 with out->addrs filled
 *       (an address without a mapping gives itself), -1 temporary lookup
 *       error, -2 nesting deeper than opts->recursion_limit, -3 more than
 *       opts->expansion_limit addresses; err says which address.
 *       opts->canon (optional) is applied to every result address before
 *       it is compared or looked up (cleanup uses it to append @$myorigin).
 *       opts->is_local (optional) says whether a domain is local; bare
 *       "user" keys are tried only for local addresses (all when NULL).
 *   addr_vec_*: a small owned vector of strings; contains() compares
 *       case-insensitively.
 *   addr_masquerade(addr, domains, exceptions, out)
 *       Postfix's masquerade_domains: when addr's domain is a subdomain of
 *       an entry of the list domains (in order), it becomes that entry
 *       ("user@host.example.com" -> "user@example.com").  The first entry
 *       that equals or contains the domain decides; one written "!name"
 *       leaves name and its subdomains alone.  Local parts in the list
 *       exceptions (case-insensitive; e.g. "root") are never masqueraded.
 *       Returns 1 with out set when rewritten, else 0.
 *   addr_result_split(value, fn, ctx)  split a table result on commas and
 *       blanks outside double quotes.
 *   domain_list_open(list, err) / domain_list_match(dl, domain) /
 *   domain_list_free(dl)   a Postfix domain list such as
 *       virtual_alias_domains: names compared case-insensitively,
 *       "type:table" entries looked up with the domain as key.  open returns
 *       NULL + err when a table cannot be opened; match returns 1 in the
 *       list, 0 not, -1 temporary lookup error.
 *
 * Contract: no I/O beyond the maps; inputs never modified; bounded work
 * (every loop is limited by the two limits).
 */
#ifndef POSTERN_ADDR_REWRITE_H
#define POSTERN_ADDR_REWRITE_H

#include <stddef.h>
#include "maps.h"
#include "strbuf.h"

/* An ordered vector of address strings (owned copies). */
struct addr_vec {
    char **addrs;
    size_t n;
    size_t cap;
};

void addr_vec_init(struct addr_vec *l);
void addr_vec_add(struct addr_vec *l, const char *addr);
int addr_vec_contains(const struct addr_vec *l, const char *addr);
void addr_vec_release(struct addr_vec *l);

#define ADDR_MAP_PROPAGATE_EXT 0x100   /* beside the MAPS_ADDR_* flags */
int addr_map_one(maps *ms, const char *addr, const char *delim, int flags,
                 strbuf *out);

struct virtual_opts {
    const char *delim;          /* recipient_delimiter */
    int recursion_limit;        /* virtual_alias_recursion_limit */
    int expansion_limit;        /* virtual_alias_expansion_limit */
    void (*canon)(strbuf *addr, void *ctx);
    void *canon_ctx;
    int (*is_local)(const char *domain, void *ctx);
    void *is_local_ctx;
    int propagate_ext;          /* propagate_unmatched_extensions has virtual */
};

int virtual_alias_expand(maps *ms, const char *addr,
                         const struct virtual_opts *opts,
                         struct addr_vec *out, strbuf *err);

int addr_masquerade(const char *addr, const char *domains, const char *exceptions,
                    strbuf *out);

void addr_result_split(const char *value, void (*fn)(const char *addr, void *ctx),
                     void *ctx);

typedef struct domain_list domain_list;
domain_list *domain_list_open(const char *list, strbuf *err);
int domain_list_match(domain_list *dl, const char *domain);
void domain_list_free(domain_list *dl);

#endif
