/*
 * maps_unix.c - unix:passwd.byname and unix:group.byname, the system's
 * account databases through getpwnam_r / getgrnam_r (so NSS works).
 *
 * Interface: map_open_unix("passwd.byname" | "group.byname") via maps.c.
 *
 * Contract: the value is the entry in /etc/passwd (or /etc/group) line
 * form, as Postfix's unix: table gives it:
 *     passwd.byname: name:passwd:uid:gid:gecos:home:shell
 *     group.byname:  name:passwd:gid:member1,member2,...
 * Keys are lowercased before lookup (the table is MAP_FOLD_CASE, as local
 * delivery folds recipient names).  "Not found" is 0; a lookup that fails
 * for another reason (NSS down, EIO) is a temporary error (-1).  A key
 * with an '@' is not found without asking NSS: callers look up the whole
 * address before its local part (smtpd's local_recipient_maps for every
 * RCPT), no account is named like an address, and a miss costs every NSS
 * module (files, then systemd's userdb directories) -- about 40 system
 * calls per RCPT.
 *
 * Chroot: smtpd checks local_recipient_maps (unix:passwd.byname by
 * default) from inside its jail, where /etc/passwd is gone and getpwnam
 * would say "no such user" for everyone.  So map_open (done before the
 * chroot) also takes a snapshot of the whole database, and a lookup made
 * after privs_chroot() answers from it.  Outside a jail lookups are always
 * live.  (The jail is known from privs_chrooted(), not probed per lookup.)
 */
#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <string.h>
#include <unistd.h>

#include "maps_internal.h"
#include "mem.h"
#include "privs.h"

/* The buffer getpw*_r / getgr*_r need: grown on ERANGE. */
static size_t initial_bufsize(void)
{
    long n = sysconf(_SC_GETPW_R_SIZE_MAX);
    return n > 0 ? (size_t) n : 4096;
}

static void passwd_format(const struct passwd *pw, strbuf *out)
{
    strbuf_printf(out, "%s:%s:%lu:%lu:%s:%s:%s", pw->pw_name,
                  pw->pw_passwd ? pw->pw_passwd : "",
                  (unsigned long) pw->pw_uid, (unsigned long) pw->pw_gid,
                  pw->pw_gecos ? pw->pw_gecos : "", pw->pw_dir,
                  pw->pw_shell ? pw->pw_shell : "");
}

static void group_format(const struct group *gr, strbuf *out)
{
    strbuf_printf(out, "%s:%s:%lu:", gr->gr_name,
                  gr->gr_passwd ? gr->gr_passwd : "", (unsigned long) gr->gr_gid);
    for (char **m = gr->gr_mem; m && *m; m++) {
        if (m != gr->gr_mem)
            strbuf_append_char(out, ',');
        strbuf_append_str(out, *m);
    }
}

struct unix_table {
    struct kv_table *snapshot;  /* for lookups from inside a chroot */
};

/* Answer from the snapshot when the live database is out of reach. */
static int snapshot_lookup(const struct unix_table *t, const char *key,
                           strbuf *out)
{
    const char *line = kv_table_get(t->snapshot, key);
    if (!line)
        return 0;
    strbuf_set_str(out, line);
    return 1;
}

/*
 * One getXXnam_r call with a caller-sized buffer: returns its error number
 * and, when the entry exists, formats it into out and sets *hit.
 */
typedef int (*nss_fetch_fn)(const char *key, char *buf, size_t size,
                            strbuf *out, int *hit);

static int passwd_fetch(const char *key, char *buf, size_t size,
                        strbuf *out, int *hit)
{
    struct passwd pw, *res = NULL;
    int rc = getpwnam_r(key, &pw, buf, size, &res);
    if (rc == 0 && res != NULL) {
        passwd_format(&pw, out);
        *hit = 1;
    }
    return rc;
}

static int group_fetch(const char *key, char *buf, size_t size,
                       strbuf *out, int *hit)
{
    struct group gr, *res = NULL;
    int rc = getgrnam_r(key, &gr, buf, size, &res);
    if (rc == 0 && res != NULL) {
        group_format(&gr, out);
        *hit = 1;
    }
    return rc;
}

/* The live lookup: grow the buffer on ERANGE up to max_size, and tell
 * "not found" (0) from a temporary failure (-1). */
static int nss_lookup(const struct unix_table *t, const char *key, strbuf *out,
                      nss_fetch_fn fetch, size_t max_size)
{
    if (strchr(key, '@') != NULL)
        return 0;                       /* an address, never an account */
    if (privs_chrooted())
        return snapshot_lookup(t, key, out);
    size_t size = initial_bufsize();
    for (;;) {
        char *buf = xmalloc(size);
        int hit = 0;
        int rc = fetch(key, buf, size, out, &hit);
        xfree(buf);
        if (rc == ERANGE && size < max_size) {
            size *= 2;
            continue;
        }
        if (rc == 0)
            return hit;
        /* some NSS modules say "not found" with ENOENT or ESRCH */
        return (rc == ENOENT || rc == ESRCH) ? 0 : -1;
    }
}

static int passwd_lookup(void *impl, const char *key, strbuf *out)
{
    return nss_lookup(impl, key, out, passwd_fetch, 1u << 20);
}

static int group_lookup(void *impl, const char *key, strbuf *out)
{
    /* group entries list every member, so they may be much larger */
    return nss_lookup(impl, key, out, group_fetch, 1u << 24);
}

static void unix_close(void *impl)
{
    struct unix_table *t = impl;
    kv_table_free(t->snapshot);
    xfree(t);
}

static const struct map_ops passwd_ops = { passwd_lookup, unix_close };
static const struct map_ops group_ops = { group_lookup, unix_close };

/* Every entry, keyed by lowercased name; the first of duplicates wins. */
static struct kv_table *take_snapshot(int passwd)
{
    struct kv_table *snap = kv_table_new();
    strbuf line, name;
    strbuf_init(&line);
    strbuf_init(&name);
    if (passwd) {
        struct passwd *pw;
        setpwent();
        while ((pw = getpwent()) != NULL) {
            strbuf_reset(&line);
            passwd_format(pw, &line);
            strbuf_set_str(&name, pw->pw_name);
            map_lowercase(name.data);
            kv_table_add(snap, strbuf_str(&name), strbuf_str(&line));
        }
        endpwent();
    } else {
        struct group *gr;
        setgrent();
        while ((gr = getgrent()) != NULL) {
            strbuf_reset(&line);
            group_format(gr, &line);
            strbuf_set_str(&name, gr->gr_name);
            map_lowercase(name.data);
            kv_table_add(snap, strbuf_str(&name), strbuf_str(&line));
        }
        endgrent();
    }
    kv_table_seal(snap);
    strbuf_release(&line);
    strbuf_release(&name);
    return snap;
}

int map_open_unix(const char *name, struct map *m, strbuf *err)
{
    int passwd;
    if (strcmp(name, "passwd.byname") == 0)
        passwd = 1;
    else if (strcmp(name, "group.byname") == 0)
        passwd = 0;
    else {
        strbuf_printf(err, "unix:%s: unknown table (passwd.byname or group.byname)",
                      name);
        return -1;
    }
    struct unix_table *t = xmalloc(sizeof(*t));
    t->snapshot = take_snapshot(passwd);
    m->ops = passwd ? &passwd_ops : &group_ops;
    m->impl = t;
    m->flags = MAP_FOLD_CASE;
    return 0;
}
