/*
 * maps_internal.h - what the map types (maps_db.c, maps_text.c,
 * maps_cidr.c, maps_regexp.c, maps_unix.c) share with maps.c.
 * Not for use outside common/maps*.c.
 *
 * Interface:
 *   struct map / struct map_ops   one open table: its lookup and close.
 *   MAP_FOLD_CASE                 maps.c lowercases the key before lookup.
 *   MAP_FULL_KEY_ONLY             maps_lookup_addr() gives this table only
 *                                 the full address (regexp:, cidr:).
 *   map_open_TYPE(...)            each type's opener: fills m->ops, m->impl,
 *                                 m->flags; 0 ok, -1 with err set.
 *   map_file_read(path, fn, ctx, err)  the text-file reader every file
 *                                 based type uses: calls fn with each
 *                                 logical line (continuation lines joined
 *                                 with one space, blank and '#' lines
 *                                 skipped, trailing blanks removed) and its
 *                                 first line number; fn returns -1 with a
 *                                 reason in err to stop.  Errors are
 *                                 reported as "PATH: line N: reason".
 *   map_split_key_value(line, key, value, err)  "key value" (value = rest,
 *                                 trimmed); -1 "missing value".
 *   map_lowercase(s)              ASCII lowercase in place.
 */
#ifndef POSTERN_MAPS_INTERNAL_H
#define POSTERN_MAPS_INTERNAL_H

#include "maps.h"
#include "strbuf.h"

#define MAP_FOLD_CASE      0x01
#define MAP_FULL_KEY_ONLY  0x02

struct map_ops {
    /* 1 found (value in out), 0 not found, -1 temporary error */
    int (*lookup)(void *impl, const char *key, strbuf *out);
    void (*close)(void *impl);
};

struct map {
    char *spec;                 /* "type:name" as opened */
    const struct map_ops *ops;
    void *impl;
    unsigned flags;
};

int map_open_db(const char *type, const char *name, struct map *m, strbuf *err);
int map_open_texthash(const char *name, struct map *m, strbuf *err);
int map_open_inline(const char *name, struct map *m, strbuf *err);
int map_open_static(const char *name, struct map *m, strbuf *err);
int map_open_cidr(const char *name, struct map *m, strbuf *err);
int map_open_regexp(const char *name, struct map *m, strbuf *err);
int map_open_unix(const char *name, struct map *m, strbuf *err);

typedef int (*map_line_fn)(const char *line, int lineno, void *ctx, strbuf *err);
int map_file_read(const char *path, map_line_fn fn, void *ctx, strbuf *err);
int map_split_key_value(const char *line, strbuf *key, strbuf *value, strbuf *err);
void map_lowercase(char *s);

/* A sorted in-memory key/value table (texthash:, inline:), first key wins. */
struct kv_table;
struct kv_table *kv_table_new(void);
void kv_table_add(struct kv_table *t, const char *key, const char *value);
void kv_table_seal(struct kv_table *t);     /* sort; call once after adds */
const char *kv_table_get(const struct kv_table *t, const char *key);
/* After seal: fn for every key that was added more than once (once each). */
void kv_table_each_duplicate(const struct kv_table *t,
                             void (*fn)(const char *key, void *ctx), void *ctx);
void kv_table_free(struct kv_table *t);

#endif
