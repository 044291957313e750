/*
 * addr_rewrite.c - canonical mapping, virtual alias expansion and domain
 * lists.  See addr_rewrite.h for the interface and the loop rules.
 */
#include <string.h>
#include <strings.h>

#include "addr_rewrite.h"
#include "mem.h"

/* --- address lists -------------------------------------------------------- */

void addr_vec_init(struct addr_vec *l)
{
    l->addrs = NULL;
    l->n = l->cap = 0;
}

void addr_vec_add(struct addr_vec *l, const char *addr)
{
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 8;
        l->addrs = xrealloc(l->addrs, l->cap * sizeof(*l->addrs));
    }
    l->addrs[l->n++] = xstrdup(addr);
}

/* Addresses compare case-insensitively: the domain always is, and Postfix
 * folds the local part for table lookups too. */
int addr_vec_contains(const struct addr_vec *l, const char *addr)
{
    for (size_t i = 0; i < l->n; i++)
        if (strcasecmp(l->addrs[i], addr) == 0)
            return 1;
    return 0;
}

static void addr_vec_pop(struct addr_vec *l)
{
    if (l->n > 0)
        xfree(l->addrs[--l->n]);
}

void addr_vec_release(struct addr_vec *l)
{
    for (size_t i = 0; i < l->n; i++)
        xfree(l->addrs[i]);
    xfree(l->addrs);
    addr_vec_init(l);
}

void addr_result_split(const char *value, void (*fn)(const char *addr, void *ctx),
                     void *ctx)
{
    strbuf item;
    strbuf_init(&item);
    int quoted = 0;
    for (const char *p = value;; p++) {
        char c = *p;
        if (c == '\0' || (!quoted && (c == ',' || c == ' ' || c == '\t'
                                      || c == '\r' || c == '\n'))) {
            if (item.len > 0)
                fn(strbuf_str(&item), ctx);
            strbuf_reset(&item);
            if (c == '\0')
                break;
            continue;
        }
        if (c == '"')
            quoted = !quoted;
        else if (c == '\\' && quoted && p[1] != '\0')
            strbuf_append_char(&item, *p++);
        strbuf_append_char(&item, *p);
    }
    strbuf_release(&item);
}

/* A result "@domain" keeps the local part of the address looked up; ext
 * (may be empty) is inserted into any other result's local part. */
static void apply_result(const char *addr, const char *result, const char *ext,
                         const char *delim, strbuf *out)
{
    if (result[0] == '@') {
        const char *at = strrchr(addr, '@');
        size_t local_len = at ? (size_t)(at - addr) : strlen(addr);
        strbuf_set(out, addr, local_len);
        strbuf_append_str(out, result);
        return;
    }
    const char *at = strrchr(result, '@');
    size_t local_len = at ? (size_t)(at - result) : strlen(result);
    int has_delim = 0;
    for (size_t i = 1; delim && i < local_len; i++)
        if (strchr(delim, result[i]))
            has_delim = 1;
    if (!*ext || has_delim || local_len == 0) {
        strbuf_set_str(out, result);
        return;
    }
    strbuf_set(out, result, local_len);
    strbuf_append_str(out, ext);
    strbuf_append_str(out, result + local_len);
}

/* maps_lookup_addr_ex(), also telling (in ext) the "+ext" of addr when the
 * match was made by an extension-less key only. */
static int lookup_addr(maps *ms, const char *addr, const char *delim, int flags,
                       strbuf *value, strbuf *ext)
{
    strbuf_reset(ext);
    int rc = maps_lookup_addr_ex(ms, addr, delim, flags & ~ADDR_MAP_PROPAGATE_EXT, value);
    if (rc != 1 || !(flags & ADDR_MAP_PROPAGATE_EXT) || !delim || !*delim)
        return rc;
    const char *at = strrchr(addr, '@');
    size_t local_len = at ? (size_t)(at - addr) : strlen(addr);
    size_t user_len = local_len;
    for (size_t i = 1; i < local_len; i++)
        if (strchr(delim, addr[i])) {
            user_len = i;
            break;
        }
    if (user_len == local_len)
        return rc;
    /* Did a key holding the extension match?  Then nothing to propagate. */
    strbuf probe, key;
    strbuf_init(&probe);
    strbuf_init(&key);
    int with_ext = maps_lookup(ms, addr, &probe);
    if (with_ext == 0 && !(flags & MAPS_ADDR_NO_USER) && at) {
        strbuf_set(&key, addr, local_len);
        with_ext = maps_lookup(ms, strbuf_str(&key), &probe);
    }
    if (with_ext == 0)
        strbuf_set(ext, addr + user_len, local_len - user_len);
    strbuf_release(&probe);
    strbuf_release(&key);
    return with_ext < 0 ? -1 : rc;
}

static void collect_result(const char *addr, void *ctx)
{
    addr_vec_add(ctx, addr);
}

int addr_map_one(maps *ms, const char *addr, const char *delim, int flags,
                 strbuf *out)
{
    strbuf value, ext;
    strbuf_init(&value);
    strbuf_init(&ext);
    int rc = lookup_addr(ms, addr, delim, flags, &value, &ext);
    if (rc == 1) {
        struct addr_vec items;
        addr_vec_init(&items);
        addr_result_split(strbuf_str(&value), collect_result, &items);
        if (items.n == 0)
            rc = 0;
        else
            apply_result(addr, items.addrs[0], strbuf_str(&ext), delim, out);
        addr_vec_release(&items);
    }
    strbuf_release(&value);
    strbuf_release(&ext);
    return rc;
}

/* --- virtual alias expansion --------------------------------------------- */

struct expansion {
    maps *ms;
    const struct virtual_opts *opts;
    struct addr_vec *out;
    struct addr_vec path;      /* addresses being expanded (loop check) */
    struct addr_vec done;      /* addresses fully expanded already */
    size_t visits;
    strbuf *err;
};

static int add_final(struct expansion *ex, const char *addr)
{
    if (addr_vec_contains(ex->out, addr))
        return 0;
    if (ex->opts->expansion_limit > 0
        && ex->out->n >= (size_t)ex->opts->expansion_limit) {
        strbuf_printf(ex->err, "unreasonable virtual_alias_maps map expansion size for %s",
                      ex->path.n ? ex->path.addrs[0] : addr);
        return -3;
    }
    addr_vec_add(ex->out, addr);
    return 0;
}

static int expand_one(struct expansion *ex, const char *addr, int depth)
{
    if (ex->opts->recursion_limit > 0 && depth > ex->opts->recursion_limit) {
        strbuf_printf(ex->err, "unreasonable virtual_alias_maps map nesting for %s",
                      ex->path.n ? ex->path.addrs[0] : addr);
        return -2;
    }
    /* Every distinct address costs one lookup; bound the total so a
     * pathological table cannot make us work forever. */
    size_t budget = 2 * (size_t)(ex->opts->expansion_limit > 0 ? ex->opts->expansion_limit : 1000)
                    + (size_t)(ex->opts->recursion_limit > 0 ? ex->opts->recursion_limit : 1000);
    if (++ex->visits > budget) {
        strbuf_printf(ex->err, "unreasonable virtual_alias_maps map expansion size for %s",
                      ex->path.n ? ex->path.addrs[0] : addr);
        return -3;
    }

    int flags = ex->opts->propagate_ext ? ADDR_MAP_PROPAGATE_EXT : 0;
    if (ex->opts->is_local) {
        const char *at = strrchr(addr, '@');
        if (at && !ex->opts->is_local(at + 1, ex->opts->is_local_ctx))
            flags |= MAPS_ADDR_NO_USER;
    }
    strbuf value, ext;
    strbuf_init(&value);
    strbuf_init(&ext);
    int rc = lookup_addr(ex->ms, addr, ex->opts->delim, flags, &value, &ext);
    if (rc <= 0) {
        strbuf_release(&value);
        strbuf_release(&ext);
        if (rc < 0) {
            strbuf_printf(ex->err, "virtual_alias_maps lookup error for %s", addr);
            return -1;
        }
        return add_final(ex, addr);
    }

    struct addr_vec items;
    addr_vec_init(&items);
    addr_result_split(strbuf_str(&value), collect_result, &items);
    strbuf_release(&value);
    if (items.n == 0) {
        addr_vec_release(&items);
        strbuf_release(&ext);
        return add_final(ex, addr);
    }

    addr_vec_add(&ex->path, addr);
    strbuf next;
    strbuf_init(&next);
    int result = 0;
    for (size_t i = 0; i < items.n && result == 0; i++) {
        apply_result(addr, items.addrs[i], strbuf_str(&ext), ex->opts->delim, &next);
        if (ex->opts->canon)
            ex->opts->canon(&next, ex->opts->canon_ctx);
        const char *item = strbuf_str(&next);
        if (strcasecmp(item, addr) == 0 || addr_vec_contains(&ex->path, item)) {
            /* Expands to itself, or a loop closes here: keep it as is. */
            result = add_final(ex, item);
        } else if (addr_vec_contains(&ex->done, item)) {
            /* Already expanded on another branch: its results are in. */
            continue;
        } else {
            char *copy = xstrdup(item);
            result = expand_one(ex, copy, depth + 1);
            xfree(copy);
        }
    }
    strbuf_release(&next);
    strbuf_release(&ext);
    addr_vec_pop(&ex->path);
    if (result == 0)
        addr_vec_add(&ex->done, addr);
    addr_vec_release(&items);
    return result;
}

int virtual_alias_expand(maps *ms, const char *addr,
                         const struct virtual_opts *opts,
                         struct addr_vec *out, strbuf *err)
{
    struct expansion ex = { .ms = ms, .opts = opts, .out = out, .err = err };
    addr_vec_init(&ex.path);
    addr_vec_init(&ex.done);
    int rc = expand_one(&ex, addr, 0);
    addr_vec_release(&ex.path);
    addr_vec_release(&ex.done);
    return rc;
}

/* --- masquerading --------------------------------------------------------- */

struct masq_ctx {
    const char *domain;
    size_t domain_len;
    const char *result;         /* entry that decided, or NULL */
    int decided;
    int rewrite;
};

static void masq_entry(const char *entry, void *ctx)
{
    struct masq_ctx *m = ctx;
    if (m->decided)
        return;
    int excluded = entry[0] == '!';
    if (excluded)
        entry++;
    size_t len = strlen(entry);
    if (len == 0 || len > m->domain_len)
        return;
    const char *tail = m->domain + m->domain_len - len;
    if (strcasecmp(tail, entry) != 0)
        return;
    if (len < m->domain_len && tail[-1] != '.')
        return;
    m->decided = 1;
    if (!excluded && len < m->domain_len) {
        m->rewrite = 1;
        m->result = tail;
    }
}

struct masq_user {
    const char *local;
    size_t len;
    int found;
};

static void masq_exception(const char *user, void *ctx)
{
    struct masq_user *u = ctx;
    if (strlen(user) == u->len && strncasecmp(user, u->local, u->len) == 0)
        u->found = 1;
}

int addr_masquerade(const char *addr, const char *domains, const char *exceptions,
                    strbuf *out)
{
    const char *at = strrchr(addr, '@');
    if (!at || !domains || !*domains)
        return 0;
    struct masq_user u = { addr, (size_t)(at - addr), 0 };
    if (exceptions && *exceptions)
        addr_result_split(exceptions, masq_exception, &u);
    if (u.found)
        return 0;
    struct masq_ctx m = { .domain = at + 1, .domain_len = strlen(at + 1) };
    addr_result_split(domains, masq_entry, &m);
    if (!m.rewrite)
        return 0;
    strbuf_set(out, addr, (size_t)(at - addr) + 1);
    strbuf_append_str(out, m.result);
    return 1;
}

/* --- domain lists -------------------------------------------------------- */

struct domain_list {
    struct addr_vec names;     /* plain domain names */
    maps **tables;
    size_t ntables;
};

static void domain_list_collect(const char *item, void *ctx)
{
    addr_vec_add(ctx, item);
}

/* Split a parameter list on commas and blanks outside {...} (so that
 * "inline:{ a=b, c=d }" stays one item). */
static void list_split_braced(const char *list, void (*fn)(const char *, void *),
                              void *ctx)
{
    strbuf item;
    strbuf_init(&item);
    int depth = 0;
    for (const char *p = list;; p++) {
        char c = *p;
        if (c == '\0' || (depth == 0 && (c == ',' || c == ' ' || c == '\t'
                                         || c == '\r' || c == '\n'))) {
            if (item.len > 0)
                fn(strbuf_str(&item), ctx);
            strbuf_reset(&item);
            if (c == '\0')
                break;
            continue;
        }
        if (c == '{')
            depth++;
        else if (c == '}' && depth > 0)
            depth--;
        strbuf_append_char(&item, c);
    }
    strbuf_release(&item);
}

domain_list *domain_list_open(const char *list, strbuf *err)
{
    domain_list *dl = xcalloc(1, sizeof(*dl));
    struct addr_vec items;
    addr_vec_init(&items);
    addr_vec_init(&dl->names);
    list_split_braced(list, domain_list_collect, &items);
    for (size_t i = 0; i < items.n; i++) {
        const char *item = items.addrs[i];
        if (strchr(item, ':') && item[0] != '[') {
            maps *m = maps_open(item, err);
            if (!m) {
                addr_vec_release(&items);
                domain_list_free(dl);
                return NULL;
            }
            dl->tables = xrealloc(dl->tables, (dl->ntables + 1) * sizeof(*dl->tables));
            dl->tables[dl->ntables++] = m;
        } else {
            addr_vec_add(&dl->names, item);
        }
    }
    addr_vec_release(&items);
    return dl;
}

int domain_list_match(domain_list *dl, const char *domain)
{
    if (addr_vec_contains(&dl->names, domain))
        return 1;
    strbuf value;
    strbuf_init(&value);
    int result = 0;
    for (size_t i = 0; i < dl->ntables && result == 0; i++) {
        int rc = maps_lookup(dl->tables[i], domain, &value);
        if (rc != 0)
            result = rc;
    }
    strbuf_release(&value);
    return result;
}

void domain_list_free(domain_list *dl)
{
    if (!dl)
        return;
    addr_vec_release(&dl->names);
    for (size_t i = 0; i < dl->ntables; i++)
        maps_close(dl->tables[i]);
    xfree(dl->tables);
    xfree(dl);
}
