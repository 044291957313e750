/*
 * maps_text.c - tables held in memory: texthash:, inline:, static:.
 *
 * Interface (through maps.c): map_open_texthash(file), map_open_inline(
 * "{ key=value, ... }"), map_open_static(value).
 *
 * Contract:
 *  - texthash:FILE reads FILE once at open, in postmap's source format
 *    ("key value" lines, see map_file_read); keys are lowercased; a line
 *    without a value fails the open ("FILE: line N: missing value"); for a
 *    duplicate key the first line wins (as postmap keeps the first), with
 *    a warning.
 *  - inline:{ k1=v1, k2=v2, { k3 = value, with commas } } - elements are
 *    separated by commas or blanks (as in Postfix); an element in braces
 *    may hold both, and there blanks around '=' are dropped.  Keys lowercased.  An element without
 *    '=' or with an empty key fails the open.
 *  - static:VALUE, or static:{ VALUE with blanks }, answers VALUE for
 *    every key.
 */
#include <ctype.h>
#include <string.h>

#include "log.h"
#include "maps_internal.h"
#include "mem.h"

/* ---- texthash: and inline: share the sorted table ----------------------- */

static int kv_lookup(void *impl, const char *key, strbuf *out)
{
    const char *value = kv_table_get(impl, key);
    if (!value)
        return 0;
    strbuf_set_str(out, value);
    return 1;
}

static void kv_close(void *impl)
{
    kv_table_free(impl);
}

static const struct map_ops kv_ops = { kv_lookup, kv_close };

struct texthash_load {
    struct kv_table *table;
    strbuf key, value;
};

static int texthash_line(const char *line, int lineno, void *ctx, strbuf *err)
{
    struct texthash_load *ld = ctx;
    if (map_split_key_value(line, &ld->key, &ld->value, err) < 0)
        return -1;
    map_lowercase(ld->key.data);
    kv_table_add(ld->table, strbuf_str(&ld->key), strbuf_str(&ld->value));
    return 0;
}

static void warn_duplicate(const char *key, void *ctx)
{
    log_warning("%s: duplicate entry \"%s\": the first one is used",
                (const char *) ctx, key);
}

int map_open_texthash(const char *name, struct map *m, strbuf *err)
{
    struct texthash_load ld;
    ld.table = kv_table_new();
    strbuf_init(&ld.key);
    strbuf_init(&ld.value);
    int rc = map_file_read(name, texthash_line, &ld, err);
    strbuf_release(&ld.key);
    strbuf_release(&ld.value);
    if (rc < 0) {
        kv_table_free(ld.table);
        return -1;
    }
    kv_table_seal(ld.table);
    kv_table_each_duplicate(ld.table, warn_duplicate, (void *) name);
    m->ops = &kv_ops;
    m->impl = ld.table;
    m->flags = MAP_FOLD_CASE;
    return 0;
}

/* Trim blanks on both ends of s[0..*n). */
static const char *trim(const char *s, size_t *n)
{
    while (*n && isspace((unsigned char) s[0])) {
        s++;
        (*n)--;
    }
    while (*n && isspace((unsigned char) s[*n - 1]))
        (*n)--;
    return s;
}

/* One "key=value" element of inline:{}. */
static int inline_element(struct kv_table *t, const char *s, size_t n,
                          const char *spec, strbuf *err)
{
    const char *eq = memchr(s, '=', n);
    if (!eq) {
        strbuf_printf(err, "inline:%s: missing '=' in \"%.*s\"", spec, (int) n, s);
        return -1;
    }
    size_t klen = (size_t) (eq - s), vlen = n - klen - 1;
    const char *k = trim(s, &klen);
    const char *v = trim(eq + 1, &vlen);
    if (klen == 0) {
        strbuf_printf(err, "inline:%s: missing key in \"%.*s\"", spec, (int) n, s);
        return -1;
    }
    char *key = xstrndup(k, klen), *value = xstrndup(v, vlen);
    map_lowercase(key);
    kv_table_add(t, key, value);
    xfree(key);
    xfree(value);
    return 0;
}

int map_open_inline(const char *name, struct map *m, strbuf *err)
{
    size_t n = strlen(name);
    const char *body = trim(name, &n);
    if (n < 2 || body[0] != '{' || body[n - 1] != '}') {
        strbuf_printf(err, "inline:%s: expected inline:{ key=value, ... }", name);
        return -1;
    }
    const char *p = body + 1, *end = body + n - 1;
    struct kv_table *t = kv_table_new();
    while (p < end) {
        if (*p == ',' || isspace((unsigned char) *p)) {
            p++;
            continue;
        }
        const char *start = p;
        size_t len;
        if (*p == '{') {
            const char *close = memchr(p, '}', (size_t) (end - p));
            if (!close) {
                strbuf_printf(err, "inline:%s: missing '}'", name);
                kv_table_free(t);
                return -1;
            }
            start = p + 1;
            len = (size_t) (close - start);
            p = close + 1;
        } else {
            while (p < end && *p != ',' && *p != '{' && *p != '}'
                   && !isspace((unsigned char) *p))
                p++;
            if (p == start) {   /* a stray '}' */
                strbuf_printf(err, "inline:%s: unexpected '%c'", name, *p);
                kv_table_free(t);
                return -1;
            }
            len = (size_t) (p - start);
        }
        if (inline_element(t, start, len, name, err) < 0) {
            kv_table_free(t);
            return -1;
        }
    }
    kv_table_seal(t);
    m->ops = &kv_ops;
    m->impl = t;
    m->flags = MAP_FOLD_CASE;
    return 0;
}

/* ---- static: ------------------------------------------------------------ */

static int static_lookup(void *impl, const char *key, strbuf *out)
{
    strbuf_set_str(out, impl);
    return 1;
}

static void static_close(void *impl)
{
    xfree(impl);
}

static const struct map_ops static_ops = { static_lookup, static_close };

int map_open_static(const char *name, struct map *m, strbuf *err)
{
    size_t n = strlen(name);
    const char *v = name;
    if (n >= 2 && name[0] == '{' && name[n - 1] == '}') {
        v = name + 1;
        n -= 2;
        v = trim(v, &n);
    }
    m->ops = &static_ops;
    m->impl = xstrndup(v, n);
    m->flags = 0;
    return 0;
}
