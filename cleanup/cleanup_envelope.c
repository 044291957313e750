/*
 * cleanup_envelope.c - envelope and header address rewriting, duplicate
 * elimination, recipient records.
 *
 * Order, as Postfix's cleanup does it:
 *   sender:     qualify (user -> user@$myorigin, user@host ->
 *               user@host.$mydomain with append_dot_mydomain), then
 *               sender_canonical_maps, then canonical_maps.
 *   recipient:  qualify, recipient_canonical_maps, canonical_maps, then
 *               virtual_alias_maps (one to many, recursive; see
 *               common/addr_rewrite.h for the loop rules), then duplicate
 *               elimination on (address, orcpt, notify).
 * Automatic BCC (always_bcc, sender_bcc_maps, recipient_bcc_maps; the
 * latter looked up with the canonical recipient) adds recipients with
 * NOTIFY=NEVER, as Postfix does; they go through the same rewriting.
 * masquerade_domains follows canonical mapping, for the classes in
 * masquerade_classes (default: envelope sender, header addresses).
 * no_address_mappings (receive_override_options or envelope flag) turns
 * off canonical, masquerading, virtual and automatic BCC; qualification
 * stays.
 * propagate_unmatched_extensions (canonical, virtual) keeps a +ext that
 * only an extension-less key matched.
 * Envelope addresses are always qualified; header addresses only for local
 * submissions (flags=local), but canonical maps apply to both, so the
 * message reads as the envelope says.  A recipient in a
 * virtual_alias_domains domain without a mapping is kept with a warning
 * (rejecting it is smtpd's job, at RCPT time).
 * Table lookup errors are temporary failures (4.3.0); so are unreasonable
 * virtual alias expansions (the operator must fix the table).
 */
#include <ctype.h>
#include <string.h>
#include <strings.h>

#include "cleanup.h"
#include "header.h"
#include "log.h"
#include "mem.h"

/* --- duplicate filter: a small string hash set ---------------------------- */

struct cleanup_seen_set {
    char **slots;
    size_t *lens;
    size_t cap;                 /* power of two */
    size_t n;
};

static size_t seen_hash(const char *s, size_t len)
{
    size_t h = 1469598103934665603ULL & (size_t)-1;
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)s[i];
        h *= (size_t)1099511628211ULL;
    }
    return h;
}

/* 1 if key was new (and is now remembered), 0 if already present. */
static int seen_add(struct cleanup_seen_set *set, const char *key, size_t len, size_t limit)
{
    if (set->cap == 0) {
        set->cap = 64;
        set->slots = xcalloc(set->cap, sizeof(*set->slots));
        set->lens = xcalloc(set->cap, sizeof(*set->lens));
    }
    size_t mask = set->cap - 1;
    for (size_t i = seen_hash(key, len) & mask;; i = (i + 1) & mask) {
        if (!set->slots[i])
            break;
        if (set->lens[i] == len && memcmp(set->slots[i], key, len) == 0)
            return 0;
    }
    if (set->n >= limit)
        return 1;               /* full: stop remembering, keep delivering */
    if (2 * (set->n + 1) > set->cap) {
        struct cleanup_seen_set bigger = { .cap = set->cap * 2 };
        bigger.slots = xcalloc(bigger.cap, sizeof(*bigger.slots));
        bigger.lens = xcalloc(bigger.cap, sizeof(*bigger.lens));
        for (size_t j = 0; j < set->cap; j++) {
            if (!set->slots[j])
                continue;
            size_t k = seen_hash(set->slots[j], set->lens[j]) & (bigger.cap - 1);
            while (bigger.slots[k])
                k = (k + 1) & (bigger.cap - 1);
            bigger.slots[k] = set->slots[j];
            bigger.lens[k] = set->lens[j];
        }
        xfree(set->slots);
        xfree(set->lens);
        bigger.n = set->n;
        *set = bigger;
    }
    mask = set->cap - 1;
    size_t i = seen_hash(key, len) & mask;
    while (set->slots[i])
        i = (i + 1) & mask;
    set->slots[i] = xmemdup(key, len);
    set->lens[i] = len;
    set->n++;
    return 1;
}

static void seen_free(struct cleanup_seen_set *set)
{
    if (!set)
        return;
    for (size_t i = 0; i < set->cap; i++)
        xfree(set->slots[i]);
    xfree(set->slots);
    xfree(set->lens);
    xfree(set);
}

void cleanup_envelope_init(struct cleanup_state *st)
{
    st->seen = xcalloc(1, sizeof(*st->seen));
    addr_vec_init(&st->late_addr);
    addr_vec_init(&st->late_orcpt);
    addr_vec_init(&st->late_notify);
}

void cleanup_envelope_free(struct cleanup_state *st)
{
    seen_free(st->seen);
    st->seen = NULL;
    addr_vec_release(&st->late_addr);
    addr_vec_release(&st->late_orcpt);
    addr_vec_release(&st->late_notify);
}

/* --- rewriting ------------------------------------------------------------ */

void cleanup_qualify(strbuf *addr)
{
    if (addr->len == 0)
        return;
    const char *s = strbuf_str(addr);
    const char *at = strrchr(s, '@');
    if (!at) {
        if (!*cleanup_cfg.myorigin)
            return;
        strbuf_append_char(addr, '@');
        strbuf_append_str(addr, cleanup_cfg.myorigin);
        s = strbuf_str(addr);
        at = strrchr(s, '@');
    }
    if (cleanup_cfg.append_dot_mydomain && *cleanup_cfg.mydomain
        && at[1] != '\0' && at[1] != '[' && !strchr(at + 1, '.')) {
        strbuf_append_char(addr, '.');
        strbuf_append_str(addr, cleanup_cfg.mydomain);
    }
}

int cleanup_is_local(const char *domain, void *ctx)
{
    (void)ctx;
    if (strcasecmp(domain, cleanup_cfg.myorigin) == 0)
        return 1;
    return cleanup_cfg.local_domains && domain_list_match(cleanup_cfg.local_domains, domain) == 1;
}

/* Lookup flags for addr: bare "user" keys only match local addresses. */
static int lookup_flags(const char *addr)
{
    const char *at = strrchr(addr, '@');
    return at && !cleanup_is_local(at + 1, NULL) ? MAPS_ADDR_NO_USER : 0;
}

/* masquerade_domains, when this class of address is to be masqueraded. */
static void masquerade(struct cleanup_state *st, int enabled, strbuf *addr)
{
    if (!enabled || st->no_mappings || !*cleanup_cfg.masq_domains || addr->len == 0)
        return;
    strbuf out;
    strbuf_init(&out);
    if (addr_masquerade(strbuf_str(addr), cleanup_cfg.masq_domains,
                        cleanup_cfg.masq_exceptions, &out) == 1) {
        log_debug("%s: masquerade: %s -> %s", st->qid, strbuf_str(addr), strbuf_str(&out));
        strbuf_set(addr, out.data, out.len);
    }
    strbuf_release(&out);
}

static void qualify_cb(strbuf *addr, void *ctx)
{
    (void)ctx;
    cleanup_qualify(addr);
}

/* Apply one canonical table to addr in place.  -1 on lookup error. */
static int canonical_step(struct cleanup_state *st, maps *tables, const char *name,
                          strbuf *addr)
{
    if (!tables || addr->len == 0 || st->no_mappings)
        return 0;
    strbuf out;
    strbuf_init(&out);
    int flags = lookup_flags(strbuf_str(addr));
    if (cleanup_cfg.propagate_canonical)
        flags |= ADDR_MAP_PROPAGATE_EXT;
    int rc = addr_map_one(tables, strbuf_str(addr), cleanup_cfg.delim, flags, &out);
    if (rc < 0) {
        log_warning("%s: %s lookup error for %s", st->qid, name, strbuf_str(addr));
        cleanup_fail(st, 4, "4.3.0", "Error: %s lookup error", name);
    } else if (rc == 1) {
        log_debug("%s: %s: %s -> %s", st->qid, name, strbuf_str(addr), strbuf_str(&out));
        strbuf_set(addr, out.data ? out.data : "", out.len);
        cleanup_qualify(addr);
    }
    strbuf_release(&out);
    return rc < 0 ? -1 : 0;
}

void cleanup_set_sender(struct cleanup_state *st, const char *sender)
{
    strbuf addr;
    strbuf_init(&addr);
    strbuf_set_str(&addr, sender);
    if (addr.len > 0) {
        cleanup_qualify(&addr);
        canonical_step(st, cleanup_cfg.sender_canonical, "sender_canonical_maps", &addr);
        canonical_step(st, cleanup_cfg.canonical, "canonical_maps", &addr);
        masquerade(st, cleanup_cfg.masq_env_sender, &addr);
    }
    xfree(st->sender);
    st->sender = strbuf_detach(&addr, NULL);
    if (!st->sender)
        st->sender = xstrdup("");
}

static void write_rcpt(struct cleanup_state *st, const char *addr,
                       const char *orcpt, const char *notify)
{
    if (!cleanup_writing(st))
        return;
    if (notify && *notify)
        queue_writer_record_str(st->writer, QREC_NOTIFY, notify);
    if (orcpt && *orcpt)
        queue_writer_record_str(st->writer, QREC_ORCPT, orcpt);
    strbuf r;
    strbuf_init(&r);
    strbuf_append_char(&r, RCPT_PENDING);
    strbuf_append_str(&r, addr);
    queue_writer_record(st->writer, QREC_RCPT, r.data, r.len);
    strbuf_release(&r);
}

/* Final step for one address: drop duplicates, then write or keep for
 * after the content. */
static void add_final_rcpt(struct cleanup_state *st, const char *addr,
                           const char *orcpt, const char *notify, int late)
{
    strbuf key;
    strbuf_init(&key);
    strbuf_set_str(&key, addr);
    char *at = strrchr(key.data, '@');
    for (char *p = at; p && *p; p++)
        *p = (char)tolower((unsigned char)*p);
    strbuf_append_char(&key, '\0');
    strbuf_append_str(&key, orcpt ? orcpt : "");
    strbuf_append_char(&key, '\0');
    strbuf_append_str(&key, notify ? notify : "");
    int fresh = seen_add(st->seen, key.data, key.len, cleanup_cfg.dup_limit);
    strbuf_release(&key);
    if (!fresh) {
        log_debug("%s: duplicate recipient %s dropped", st->qid, addr);
        return;
    }
    if (late) {
        addr_vec_add(&st->late_addr, addr);
        addr_vec_add(&st->late_orcpt, orcpt ? orcpt : "");
        addr_vec_add(&st->late_notify, notify ? notify : "");
    } else {
        write_rcpt(st, addr, orcpt, notify);
    }
    st->nrcpt++;
    if (!st->first_rcpt)
        st->first_rcpt = xstrdup(addr);
}

/* virtual_alias_maps for one (canonical) recipient; every result is a
 * final recipient. */
static void expand_virtual(struct cleanup_state *st, const char *addr,
                           const char *orcpt, const char *notify, int late)
{
    struct virtual_opts opts = {
        .delim = cleanup_cfg.delim,
        .recursion_limit = cleanup_cfg.virtual_recursion_limit,
        .expansion_limit = cleanup_cfg.virtual_expansion_limit,
        .canon = qualify_cb,
        .is_local = cleanup_is_local,
        .propagate_ext = cleanup_cfg.propagate_virtual,
    };
    struct addr_vec out;
    addr_vec_init(&out);
    strbuf err;
    strbuf_init(&err);
    int rc = virtual_alias_expand(cleanup_cfg.virtual_alias, addr, &opts, &out, &err);
    if (rc < 0) {
        log_warning("%s: %s -- message not accepted, try again later",
                    st->qid, strbuf_str(&err));
        cleanup_fail(st, 4, "4.3.0", "Error: %s", strbuf_str(&err));
    } else {
        if (out.n == 1 && strcmp(out.addrs[0], addr) == 0 && cleanup_cfg.virtual_domains) {
            const char *at = strrchr(addr, '@');
            if (at && domain_list_match(cleanup_cfg.virtual_domains, at + 1) == 1)
                log_warning("%s: virtual alias domain recipient <%s> has no mapping; kept",
                            st->qid, addr);
        }
        for (size_t i = 0; i < out.n; i++) {
            if (strcmp(out.addrs[i], addr) != 0)
                log_debug("%s: virtual_alias_maps: %s -> %s", st->qid, addr, out.addrs[i]);
            add_final_rcpt(st, out.addrs[i], orcpt, notify, late);
        }
    }
    strbuf_release(&err);
    addr_vec_release(&out);
}

static void add_rcpt(struct cleanup_state *st, const char *addr_in,
                     const char *orcpt, const char *notify, int late, int is_bcc);

struct bcc_ctx {
    struct cleanup_state *st;
    int late;
};

static void add_bcc_cb(const char *addr, void *ctx)
{
    struct bcc_ctx *bc = ctx;
    /* Postfix: an automatic BCC asks for no delivery status notification. */
    add_rcpt(bc->st, addr, NULL, "NEVER", bc->late, 1);
}

/* Look addr up in a *_bcc_maps table and add every address found. */
static void add_bcc_from(struct cleanup_state *st, maps *tables, const char *name,
                         const char *addr, int late)
{
    if (!tables || !*addr || st->no_mappings)
        return;
    strbuf value;
    strbuf_init(&value);
    int rc = maps_lookup_addr_ex(tables, addr, cleanup_cfg.delim, lookup_flags(addr), &value);
    if (rc < 0) {
        log_warning("%s: %s lookup error for %s", st->qid, name, addr);
        cleanup_fail(st, 4, "4.3.0", "Error: %s lookup error", name);
    } else if (rc == 1) {
        struct bcc_ctx bc = { st, late };
        addr_result_split(strbuf_str(&value), add_bcc_cb, &bc);
    }
    strbuf_release(&value);
}

void cleanup_add_sender_bcc(struct cleanup_state *st)
{
    if (st->no_mappings)
        return;
    if (*cleanup_cfg.always_bcc)
        add_rcpt(st, cleanup_cfg.always_bcc, NULL, "NEVER", 0, 1);
    add_bcc_from(st, cleanup_cfg.sender_bcc, "sender_bcc_maps", st->sender, 0);
}

void cleanup_add_rcpt(struct cleanup_state *st, const char *addr_in,
                      const char *orcpt, const char *notify, int late)
{
    add_rcpt(st, addr_in, orcpt, notify, late, 0);
}

static void add_rcpt(struct cleanup_state *st, const char *addr_in,
                     const char *orcpt, const char *notify, int late, int is_bcc)
{
    strbuf addr;
    strbuf_init(&addr);
    strbuf_set_str(&addr, addr_in);
    cleanup_qualify(&addr);
    if (addr.len == 0
        || canonical_step(st, cleanup_cfg.recipient_canonical, "recipient_canonical_maps", &addr) < 0
        || canonical_step(st, cleanup_cfg.canonical, "canonical_maps", &addr) < 0) {
        strbuf_release(&addr);
        return;
    }
    masquerade(st, cleanup_cfg.masq_env_rcpt, &addr);
    if (!cleanup_cfg.virtual_alias || st->no_mappings)
        add_final_rcpt(st, strbuf_str(&addr), orcpt, notify, late);
    else
        expand_virtual(st, strbuf_str(&addr), orcpt, notify, late);
    /* The copy for recipient_bcc_maps follows the recipient. */
    if (!is_bcc)
        add_bcc_from(st, cleanup_cfg.recipient_bcc, "recipient_bcc_maps", strbuf_str(&addr), late);
    strbuf_release(&addr);
}

void cleanup_write_late_rcpts(struct cleanup_state *st)
{
    for (size_t i = 0; i < st->late_addr.n; i++)
        write_rcpt(st, st->late_addr.addrs[i], st->late_orcpt.addrs[i],
                   st->late_notify.addrs[i]);
}

/* --- header addresses ----------------------------------------------------- */

struct header_rewrite_ctx {
    struct cleanup_state *st;
    int addr_class;
};

static int header_addr_cb(const char *addr, size_t len, strbuf *repl, void *ctx)
{
    struct header_rewrite_ctx *hc = ctx;
    struct cleanup_state *st = hc->st;
    strbuf_set(repl, addr, len);
    if (memchr(addr, '\0', len))
        return 0;
    if (st->flag_local)
        cleanup_qualify(repl);
    if (hc->addr_class == 's')
        canonical_step(st, cleanup_cfg.sender_canonical, "sender_canonical_maps", repl);
    else
        canonical_step(st, cleanup_cfg.recipient_canonical, "recipient_canonical_maps", repl);
    canonical_step(st, cleanup_cfg.canonical, "canonical_maps", repl);
    masquerade(st, hc->addr_class == 's' ? cleanup_cfg.masq_hdr_sender : cleanup_cfg.masq_hdr_rcpt,
               repl);
    return repl->len != len || memcmp(repl->data, addr, len) != 0;
}

int cleanup_rewrite_header_addrs(struct cleanup_state *st, int addr_class,
                                 const char *value, size_t len, strbuf *out)
{
    if (!st->flag_local && !cleanup_cfg.canonical && !*cleanup_cfg.masq_domains
        && !(addr_class == 's' ? cleanup_cfg.sender_canonical : cleanup_cfg.recipient_canonical))
        return 0;
    struct header_rewrite_ctx hc = { st, addr_class };
    int n = header_addr_rewrite(value, len, header_addr_cb, &hc, out);
    return n > 0;
}
