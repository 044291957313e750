/*
 * maps.c - "type:name" lookup tables: opening by type, lists of tables,
 * the address search order, and the text-file reader the types share.
 *
 * Interface: see maps.h (public) and maps_internal.h (for the types).
 *
 * Contract and decisions:
 *  - "proxy:type:name" opens type:name directly (there is no proxymap
 *    service), so Postfix settings such as proxy:unix:passwd.byname work.
 *  - A list ("hash:/a, regexp:/b  inline:{x=y, z=w}") is split on commas
 *    and blanks outside braces; an empty list opens as zero tables
 *    (maps_count() == 0, every lookup says "not found").
 *  - maps_lookup(): tables in order, first hit wins; a temporary error in
 *    any table stops the search with -1 (never fall through to a later
 *    table: that could turn a tempfail into a wrong answer).
 *  - maps_lookup_addr(): for user+ext@domain tries, in this order and each
 *    over all tables before the next form:
 *        user+ext@domain, user@domain, user+ext, user, @domain
 *    Forms that do not differ are tried once (no extension, no domain).
 *    regexp: and cidr: tables see only the first (full) form.  The
 *    extension starts at the first byte of the local part that is one of
 *    the characters of delim (Postfix's recipient_delimiter; NULL or ""
 *    means no extensions), and never at the local part's first byte.
 *    maps_lookup_addr_ex() with MAPS_ADDR_NO_USER leaves out the two bare
 *    user forms: for tables like virtual_alias_maps the caller passes it
 *    when the domain is not local, as Postfix does.
 *  - Keys are lowercased before lookup in tables marked MAP_FOLD_CASE
 *    (hash, btree, texthash, inline, unix); the caller's key is never
 *    modified.
 *  - Text files hold "key value" lines (postmap format); "key: value"
 *    (aliases(5) format) is read the same way, the colon dropped, so one
 *    reader serves texthash:, hash: tables and alias files.
 *  - Text files: a line starting with blanks continues the previous one;
 *    lines whose first non-blank byte is '#' and blank lines are skipped
 *    (a continuation may follow them); lines may be any length; a NUL
 *    byte in a file is an error.
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "log.h"
#include "maps.h"
#include "maps_internal.h"
#include "mem.h"

struct maps {
    struct map **list;
    int count;
};

/* ---- shared helpers ----------------------------------------------------- */

void map_lowercase(char *s)
{
    for (; *s; s++)
        if ((unsigned char) *s < 0x80)
            *s = (char) tolower((unsigned char) *s);
}

int map_split_key_value(const char *line, strbuf *key, strbuf *value,
                        strbuf *err)
{
    const char *p = line;
    while (*p == ' ' || *p == '\t')
        p++;
    const char *k = p;
    while (*p && *p != ' ' && *p != '\t')
        p++;
    size_t klen = (size_t) (p - k);
    /* aliases(5) style "name: value": the colon is not part of the key
     * (an IPv6 key ending in "::" keeps its colons) */
    if (klen > 1 && k[klen - 1] == ':' && k[klen - 2] != ':')
        klen--;
    strbuf_set(key, k, klen);
    while (*p == ' ' || *p == '\t')
        p++;
    strbuf_set_str(value, p);
    strbuf_rtrim(value);
    if (key->len == 0) {
        strbuf_set_str(err, "missing key");
        return -1;
    }
    if (value->len == 0) {
        strbuf_set_str(err, "missing value");
        return -1;
    }
    return 0;
}

/* Deliver the pending logical line, if any. */
static int flush_line(strbuf *logical, int lineno, map_line_fn fn, void *ctx,
                      strbuf *err)
{
    if (logical->len == 0)
        return 0;
    strbuf_rtrim(logical);
    int rc = logical->len ? fn(strbuf_str(logical), lineno, ctx, err) : 0;
    strbuf_reset(logical);
    return rc;
}

int map_file_read(const char *path, map_line_fn fn, void *ctx, strbuf *err)
{
    FILE *fp = fopen(path, "r");
    if (!fp) {
        strbuf_printf(err, "%s: %s", path, strerror(errno));
        return -1;
    }
    strbuf logical, reason;
    strbuf_init(&logical);
    strbuf_init(&reason);
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    int lineno = 0, logical_lineno = 0, rc = 0;

    while ((n = getline(&line, &cap, fp)) >= 0) {
        lineno++;
        if ((size_t) n != strlen(line)) {
            strbuf_set_str(&reason, "NUL byte in line");
            logical_lineno = lineno;
            rc = -1;
            break;
        }
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
            line[--n] = '\0';
        const char *p = line;
        while (*p == ' ' || *p == '\t')
            p++;
        if (*p == '\0' || *p == '#')
            continue;                       /* transparent, as in Postfix */
        if (p != line) {                    /* continuation */
            if (logical.len == 0) {
                strbuf_set_str(&reason, "continuation line without a preceding line");
                logical_lineno = lineno;
                rc = -1;
                break;
            }
            strbuf_append_char(&logical, ' ');
            strbuf_append_str(&logical, p);
            continue;
        }
        if (flush_line(&logical, logical_lineno, fn, ctx, &reason) < 0) {
            rc = -1;
            break;
        }
        logical_lineno = lineno;
        strbuf_append_str(&logical, line);
    }
    if (rc == 0 && ferror(fp)) {
        strbuf_printf(err, "%s: read error: %s", path, strerror(errno));
        rc = -2;
    } else if (rc == 0 && flush_line(&logical, logical_lineno, fn, ctx,
                                      &reason) < 0) {
        rc = -1;
    }
    if (rc == -1) {
        if (logical_lineno > 0)
            strbuf_printf(err, "%s: line %d: %s", path, logical_lineno,
                          strbuf_str(&reason));
        else
            strbuf_printf(err, "%s: %s", path, strbuf_str(&reason));
    }
    free(line);
    fclose(fp);
    strbuf_release(&logical);
    strbuf_release(&reason);
    return rc < 0 ? -1 : 0;
}

/* ---- sorted key/value table -------------------------------------------- */

struct kv_entry {
    char *key;
    char *value;
    size_t order;               /* insertion order: the first key wins */
};

struct kv_table {
    struct kv_entry *entries;
    size_t count, cap;
};

struct kv_table *kv_table_new(void)
{
    return xcalloc(1, sizeof(struct kv_table));
}

void kv_table_add(struct kv_table *t, const char *key, const char *value)
{
    if (t->count == t->cap) {
        t->cap = t->cap ? t->cap * 2 : 32;
        t->entries = xrealloc(t->entries, t->cap * sizeof(*t->entries));
    }
    struct kv_entry *e = &t->entries[t->count];
    e->key = xstrdup(key);
    e->value = xstrdup(value);
    e->order = t->count++;
}

static int kv_compare(const void *a, const void *b)
{
    const struct kv_entry *x = a, *y = b;
    int c = strcmp(x->key, y->key);
    if (c)
        return c;
    return x->order < y->order ? -1 : x->order > y->order;
}

void kv_table_seal(struct kv_table *t)
{
    if (t->count)
        qsort(t->entries, t->count, sizeof(*t->entries), kv_compare);
}

const char *kv_table_get(const struct kv_table *t, const char *key)
{
    size_t lo = 0, hi = t->count;
    while (lo < hi) {               /* first entry with entry.key >= key */
        size_t mid = lo + (hi - lo) / 2;
        if (strcmp(t->entries[mid].key, key) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo < t->count && strcmp(t->entries[lo].key, key) == 0)
        return t->entries[lo].value;
    return NULL;
}

void kv_table_each_duplicate(const struct kv_table *t,
                             void (*fn)(const char *key, void *ctx), void *ctx)
{
    for (size_t i = 1; i < t->count; i++)
        if (strcmp(t->entries[i].key, t->entries[i - 1].key) == 0
            && (i < 2 || strcmp(t->entries[i].key, t->entries[i - 2].key) != 0))
            fn(t->entries[i].key, ctx);
}

void kv_table_free(struct kv_table *t)
{
    if (!t)
        return;
    for (size_t i = 0; i < t->count; i++) {
        xfree(t->entries[i].key);
        xfree(t->entries[i].value);
    }
    xfree(t->entries);
    xfree(t);
}

/* ---- one table ---------------------------------------------------------- */

map *map_open(const char *spec, strbuf *err)
{
    /* Postfix's proxy: goes through proxymap; we have none, so the process
     * opens the inner table itself (it must be reachable from a chroot). */
    const char *inner = spec;
    while (strncmp(inner, "proxy:", 6) == 0)
        inner += 6;
    if (inner != spec) {
        map *m = map_open(inner, err);
        if (m) {
            xfree(m->spec);
            m->spec = xstrdup(spec);
        }
        return m;
    }
    const char *colon = strchr(spec, ':');
    if (!colon || colon == spec) {
        strbuf_printf(err, "%s: expected type:name", spec);
        return NULL;
    }
    char *type = xstrndup(spec, (size_t) (colon - spec));
    const char *name = colon + 1;
    struct map *m = xcalloc(1, sizeof(*m));
    m->spec = xstrdup(spec);
    int rc;

    if (strcmp(type, "hash") == 0 || strcmp(type, "btree") == 0)
        rc = map_open_db(type, name, m, err);
    else if (strcmp(type, "texthash") == 0)
        rc = map_open_texthash(name, m, err);
    else if (strcmp(type, "inline") == 0)
        rc = map_open_inline(name, m, err);
    else if (strcmp(type, "static") == 0)
        rc = map_open_static(name, m, err);
    else if (strcmp(type, "cidr") == 0)
        rc = map_open_cidr(name, m, err);
    else if (strcmp(type, "regexp") == 0)
        rc = map_open_regexp(name, m, err);
    else if (strcmp(type, "unix") == 0)
        rc = map_open_unix(name, m, err);
    else {
        strbuf_printf(err, "%s: unsupported map type \"%s\"", spec, type);
        rc = -1;
    }
    xfree(type);
    if (rc < 0) {
        xfree(m->spec);
        xfree(m);
        return NULL;
    }
    return m;
}

int map_lookup(map *m, const char *key, strbuf *out)
{
    strbuf_reset(out);
    if (!(m->flags & MAP_FOLD_CASE))
        return m->ops->lookup(m->impl, key, out);
    char *folded = xstrdup(key);
    map_lowercase(folded);
    int rc = m->ops->lookup(m->impl, folded, out);
    xfree(folded);
    if (rc != 1)
        strbuf_reset(out);
    return rc;
}

const char *map_spec(const map *m)
{
    return m->spec;
}

void map_close(map *m)
{
    if (!m)
        return;
    if (m->ops && m->ops->close)
        m->ops->close(m->impl);
    xfree(m->spec);
    xfree(m);
}

/* ---- lists of tables ---------------------------------------------------- */

maps *maps_open(const char *list, strbuf *err)
{
    struct maps *ms = xcalloc(1, sizeof(*ms));
    const char *p = list ? list : "";
    strbuf spec;
    strbuf_init(&spec);

    while (*p) {
        while (*p == ',' || isspace((unsigned char) *p))
            p++;
        if (!*p)
            break;
        const char *start = p;
        int depth = 0;
        while (*p && (depth > 0 || (*p != ',' && !isspace((unsigned char) *p)))) {
            if (*p == '{')
                depth++;
            else if (*p == '}' && depth > 0)
                depth--;
            p++;
        }
        if (depth > 0) {
            strbuf_printf(err, "%s: missing '}'", start);
            maps_close(ms);
            strbuf_release(&spec);
            return NULL;
        }
        strbuf_set(&spec, start, (size_t) (p - start));
        map *m = map_open(strbuf_str(&spec), err);
        if (!m) {
            maps_close(ms);
            strbuf_release(&spec);
            return NULL;
        }
        ms->list = xrealloc(ms->list, (size_t) (ms->count + 1) * sizeof(*ms->list));
        ms->list[ms->count++] = m;
    }
    strbuf_release(&spec);
    return ms;
}

maps *maps_open_param(const char *param, void (*report)(const char *fmt, ...))
{
    const char *spec = config_str(param);
    if (!*spec)
        return NULL;
    strbuf err;
    strbuf_init(&err);
    maps *m = maps_open(spec, &err);
    if (!m)
        report("%s: %s", param, strbuf_str(&err));
    strbuf_release(&err);
    return m;
}

int maps_count(const maps *ms)
{
    return ms ? ms->count : 0;
}

void maps_close(maps *ms)
{
    if (!ms)
        return;
    for (int i = 0; i < ms->count; i++)
        map_close(ms->list[i]);
    xfree(ms->list);
    xfree(ms);
}

/* Search every table (or only those that take partial keys). */
static int maps_find(maps *ms, const char *key, int partial, strbuf *out)
{
    for (int i = 0; ms && i < ms->count; i++) {
        map *m = ms->list[i];
        if (partial && (m->flags & MAP_FULL_KEY_ONLY))
            continue;
        int rc = map_lookup(m, key, out);
        if (rc != 0) {
            if (rc < 0)
                log_warning("%s: lookup of \"%s\" failed", m->spec, key);
            return rc;
        }
    }
    strbuf_reset(out);
    return 0;
}

int maps_lookup(maps *ms, const char *key, strbuf *out)
{
    return maps_find(ms, key, 0, out);
}

int maps_lookup_addr_ex(maps *ms, const char *addr, const char *delim,
                        int flags, strbuf *out)
{
    /* Split at the last '@' outside quotes: the domain never holds '@'
     * or '"', so the last '@' that follows the last '"' is the one. */
    const char *at = strrchr(addr, '@');
    const char *last_quote = strrchr(addr, '"');
    if (at && last_quote && last_quote > at)
        at = NULL;
    size_t local_len = at ? (size_t) (at - addr) : strlen(addr);
    size_t user_len = local_len;
    if (delim && *delim && local_len > 1) {
        for (size_t i = 1; i < local_len; i++)
            if (strchr(delim, addr[i])) {
                user_len = i;
                break;
            }
    }
    int has_ext = user_len < local_len;
    strbuf key;
    strbuf_init(&key);
    int rc;

    /* 1. user+ext@domain, as given */
    if ((rc = maps_find(ms, addr, 0, out)) != 0)
        goto done;
    /* 2. user@domain */
    if (at && has_ext) {
        strbuf_set(&key, addr, user_len);
        strbuf_append_str(&key, at);
        if ((rc = maps_find(ms, strbuf_str(&key), 1, out)) != 0)
            goto done;
    }
    /* 3. user+ext, 4. user (the bare local part, for local domains) */
    if (!(flags & MAPS_ADDR_NO_USER)) {
        if (at && local_len > 0) {
            strbuf_set(&key, addr, local_len);
            if ((rc = maps_find(ms, strbuf_str(&key), 1, out)) != 0)
                goto done;
        }
        if (has_ext) {
            strbuf_set(&key, addr, user_len);
            if ((rc = maps_find(ms, strbuf_str(&key), 1, out)) != 0)
                goto done;
        }
    }
    /* 5. @domain */
    if (at) {
        if ((rc = maps_find(ms, at, 1, out)) != 0)
            goto done;
    }
    rc = 0;
done:
    strbuf_release(&key);
    return rc;
}

int maps_lookup_addr(maps *ms, const char *addr, const char *delim, strbuf *out)
{
    return maps_lookup_addr_ex(ms, addr, delim, 0, out);
}
