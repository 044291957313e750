/*
 * maps_db.c - hash: and btree: tables in Berkeley DB 5.3 files, and
 * map_build() which makes them from postmap-style text.
 *
 * Interface: map_open_db(type, name) through maps.c; map_build(type, file,
 * err) public (maps.h).
 *
 * Contract and decisions:
 *  - hash:NAME and btree:NAME open NAME.db read-only.  If the file is
 *    replaced (map_build renames a new one into place) the next lookup
 *    notices the changed inode or mtime and reopens it, so long-running
 *    daemons see rebuilt tables.
 *  - Keys and values are stored WITHOUT a trailing NUL; keys lowercased.
 *    For files made by Postfix's postmap (which counts the NUL) a lookup
 *    that misses retries with the NUL and strips it from the value, so an
 *    operator can reuse existing .db files.
 *  - map_build("hash"|"btree", NAME) reads NAME (map_file_read format,
 *    "missing value" is an error, first duplicate wins with a warning),
 *    writes NAME.db.tmp.PID, fsyncs it, renames it to NAME.db and fsyncs
 *    the directory.  On any error NAME.db is left as it was.
 *  - A missing NAME.db is a hard open error (the caller names the table
 *    in its own message); a failing DB->get is a temporary error (-1).
 */
#include <db.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "maps_internal.h"
#include "mem.h"

struct db_table {
    DB *db;
    DBTYPE type;
    char *path;                 /* NAME.db */
    dev_t dev;
    ino_t ino;
    struct timespec mtime;
};

static DBTYPE db_type_of(const char *type)
{
    if (strncmp(type, "btree", 5) == 0)
        return DB_BTREE;
    return DB_HASH;
}

/* Berkeley DB's own diagnostics: our error strings already say what went
 * wrong, so keep its chatter out of stderr unless -v asks for it. */
static void db_diagnostic(const DB_ENV *env, const char *prefix, const char *msg)
{
    log_debug("berkeley db: %s", msg);
}

static int db_table_open(struct db_table *t, strbuf *err)
{
    struct stat st;
    int fd = open(t->path, O_RDONLY);
    if (fd < 0 || fstat(fd, &st) < 0) {
        strbuf_printf(err, "%s: %s", t->path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    close(fd);
    DB *db;
    int rc = db_create(&db, NULL, 0);
    if (rc != 0) {
        strbuf_printf(err, "%s: db_create: %s", t->path, db_strerror(rc));
        return -1;
    }
    db->set_errcall(db, db_diagnostic);
    rc = db->open(db, NULL, t->path, NULL, t->type, DB_RDONLY, 0);
    if (rc != 0) {
        strbuf_printf(err, "%s: cannot open as %s table: %s", t->path,
                      t->type == DB_BTREE ? "btree" : "hash", db_strerror(rc));
        db->close(db, 0);
        return -1;
    }
    t->db = db;
    t->dev = st.st_dev;
    t->ino = st.st_ino;
    t->mtime = st.st_mtim;
    return 0;
}

/* Reopen when the file was replaced since we opened it. */
static int db_table_refresh(struct db_table *t)
{
    struct stat st;
    if (stat(t->path, &st) < 0)
        return 0;               /* keep using what we have */
    if (st.st_dev == t->dev && st.st_ino == t->ino
        && st.st_mtim.tv_sec == t->mtime.tv_sec
        && st.st_mtim.tv_nsec == t->mtime.tv_nsec)
        return 0;
    DB *old = t->db;
    strbuf err;
    strbuf_init(&err);
    int rc = db_table_open(t, &err);
    if (rc < 0) {
        log_warning("%s", strbuf_str(&err));
        t->db = old;
    } else {
        old->close(old, 0);
    }
    strbuf_release(&err);
    return rc;
}

static int db_get(DB *db, const char *key, size_t klen, strbuf *out, int *err)
{
    DBT k, v;
    memset(&k, 0, sizeof(k));
    memset(&v, 0, sizeof(v));
    k.data = (void *) key;
    k.size = (u_int32_t) klen;
    int rc = db->get(db, NULL, &k, &v, 0);
    if (rc == DB_NOTFOUND)
        return 0;
    if (rc != 0) {
        *err = rc;
        return -1;
    }
    strbuf_set(out, v.data, v.size);
    return 1;
}

static int db_lookup(void *impl, const char *key, strbuf *out)
{
    struct db_table *t = impl;
    int dberr = 0;
    db_table_refresh(t);
    size_t klen = strlen(key);
    int rc = db_get(t->db, key, klen, out, &dberr);
    if (rc == 0) {
        /* a Postfix-built file: key and value carry their NUL */
        rc = db_get(t->db, key, klen + 1, out, &dberr);
        if (rc == 1 && out->len > 0 && out->data[out->len - 1] == '\0')
            strbuf_truncate(out, out->len - 1);
    }
    if (rc < 0)
        log_warning("%s: lookup of \"%s\": %s", t->path, key,
                    db_strerror(dberr));
    return rc;
}

static void db_close(void *impl)
{
    struct db_table *t = impl;
    if (t->db)
        t->db->close(t->db, 0);
    xfree(t->path);
    xfree(t);
}

static const struct map_ops db_ops = { db_lookup, db_close };

int map_open_db(const char *type, const char *name, struct map *m, strbuf *err)
{
    if (!*name) {
        strbuf_printf(err, "%s: missing file name", type);
        return -1;
    }
    struct db_table *t = xcalloc(1, sizeof(*t));
    t->type = db_type_of(type);
    t->path = xmalloc(strlen(name) + 4);
    strcpy(t->path, name);
    strcat(t->path, ".db");
    if (db_table_open(t, err) < 0) {
        xfree(t->path);
        xfree(t);
        return -1;
    }
    m->ops = &db_ops;
    m->impl = t;
    m->flags = MAP_FOLD_CASE;
    return 0;
}

/* ---- building ------------------------------------------------------------ */

struct db_build {
    DB *db;
    const char *source;
    strbuf key, value;
};

static int build_line(const char *line, int lineno, void *ctx, strbuf *err)
{
    struct db_build *b = ctx;
    if (map_split_key_value(line, &b->key, &b->value, err) < 0)
        return -1;
    map_lowercase(b->key.data);
    DBT k, v;
    memset(&k, 0, sizeof(k));
    memset(&v, 0, sizeof(v));
    k.data = b->key.data;
    k.size = (u_int32_t) b->key.len;
    v.data = b->value.data;
    v.size = (u_int32_t) b->value.len;
    int rc = b->db->put(b->db, NULL, &k, &v, DB_NOOVERWRITE);
    if (rc == DB_KEYEXIST) {
        log_warning("%s: line %d: duplicate entry \"%s\" ignored",
                    b->source, lineno, strbuf_str(&b->key));
        return 0;
    }
    if (rc != 0) {
        strbuf_printf(err, "cannot store \"%s\": %s", strbuf_str(&b->key),
                      db_strerror(rc));
        return -1;
    }
    return 0;
}

static int fsync_path(const char *path, int flags)
{
    int fd = open(path, flags);
    if (fd < 0)
        return -1;
    int rc = fsync(fd);
    close(fd);
    return rc;
}

int map_build(const char *type, const char *file, strbuf *err)
{
    size_t tlen = strcspn(type, ":");
    if (!((tlen == 4 && strncmp(type, "hash", 4) == 0)
          || (tlen == 5 && strncmp(type, "btree", 5) == 0))) {
        strbuf_printf(err, "%s: map_build supports only hash and btree", type);
        return -1;
    }
    strbuf final_path, temp_path;
    strbuf_init(&final_path);
    strbuf_init(&temp_path);
    strbuf_printf(&final_path, "%s.db", file);
    strbuf_printf(&temp_path, "%s.db.tmp.%ld", file, (long) getpid());
    unlink(strbuf_str(&temp_path));

    struct db_build b = { NULL, file, { 0 }, { 0 } };
    strbuf_init(&b.key);
    strbuf_init(&b.value);
    int rc = -1;
    int dbrc = db_create(&b.db, NULL, 0);
    if (dbrc != 0) {
        strbuf_printf(err, "db_create: %s", db_strerror(dbrc));
        b.db = NULL;
        goto done;
    }
    b.db->set_errcall(b.db, db_diagnostic);
    dbrc = b.db->open(b.db, NULL, strbuf_str(&temp_path), NULL,
                      db_type_of(type), DB_CREATE | DB_EXCL, 0644);
    if (dbrc != 0) {
        strbuf_printf(err, "%s: %s", strbuf_str(&temp_path), db_strerror(dbrc));
        goto done;
    }
    if (map_file_read(file, build_line, &b, err) < 0)
        goto done;
    dbrc = b.db->close(b.db, 0);
    b.db = NULL;
    if (dbrc != 0) {
        strbuf_printf(err, "%s: %s", strbuf_str(&temp_path), db_strerror(dbrc));
        goto done;
    }
    if (fsync_path(strbuf_str(&temp_path), O_RDONLY) < 0
        || rename(strbuf_str(&temp_path), strbuf_str(&final_path)) < 0) {
        strbuf_printf(err, "%s: %s", strbuf_str(&final_path), strerror(errno));
        goto done;
    }
    char *dir_copy = xstrdup(strbuf_str(&final_path));
    fsync_path(dirname(dir_copy), O_RDONLY | O_DIRECTORY);
    xfree(dir_copy);
    rc = 0;
done:
    if (b.db)
        b.db->close(b.db, 0);
    if (rc < 0)
        unlink(strbuf_str(&temp_path));
    strbuf_release(&b.key);
    strbuf_release(&b.value);
    strbuf_release(&final_path);
    strbuf_release(&temp_path);
    return rc;
}
