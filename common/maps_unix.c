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
 * for another reason (NSS down, EIO) is a temporary error (-1).
 */
#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <string.h>
#include <unistd.h>

#include "maps_internal.h"
#include "mem.h"

/* The buffer getpw*_r / getgr*_r need: grown on ERANGE. */
static size_t initial_bufsize(void)
{
    long n = sysconf(_SC_GETPW_R_SIZE_MAX);
    return n > 0 ? (size_t) n : 4096;
}

static int passwd_lookup(void *impl, const char *key, strbuf *out)
{
    size_t size = initial_bufsize();
    for (;;) {
        char *buf = xmalloc(size);
        struct passwd pw, *res = NULL;
        int rc = getpwnam_r(key, &pw, buf, size, &res);
        if (rc == ERANGE && size < (1u << 20)) {
            xfree(buf);
            size *= 2;
            continue;
        }
        int found = -1;
        if (rc == 0 && res == NULL)
            found = 0;          /* no such user */
        else if (rc == 0) {
            strbuf_printf(out, "%s:%s:%lu:%lu:%s:%s:%s", pw.pw_name,
                          pw.pw_passwd ? pw.pw_passwd : "",
                          (unsigned long) pw.pw_uid, (unsigned long) pw.pw_gid,
                          pw.pw_gecos ? pw.pw_gecos : "", pw.pw_dir,
                          pw.pw_shell ? pw.pw_shell : "");
            found = 1;
        } else if (rc == ENOENT || rc == ESRCH) {
            found = 0;          /* some NSS modules say "not found" this way */
        }
        xfree(buf);
        return found;
    }
}

static int group_lookup(void *impl, const char *key, strbuf *out)
{
    size_t size = initial_bufsize();
    for (;;) {
        char *buf = xmalloc(size);
        struct group gr, *res = NULL;
        int rc = getgrnam_r(key, &gr, buf, size, &res);
        if (rc == ERANGE && size < (1u << 24)) {
            xfree(buf);
            size *= 2;
            continue;
        }
        int found = -1;
        if (rc == 0 && res == NULL) {
            found = 0;
        } else if (rc == 0) {
            strbuf_printf(out, "%s:%s:%lu:", gr.gr_name,
                          gr.gr_passwd ? gr.gr_passwd : "",
                          (unsigned long) gr.gr_gid);
            for (char **m = gr.gr_mem; m && *m; m++) {
                if (m != gr.gr_mem)
                    strbuf_append_char(out, ',');
                strbuf_append_str(out, *m);
            }
            found = 1;
        } else if (rc == ENOENT || rc == ESRCH) {
            found = 0;
        }
        xfree(buf);
        return found;
    }
}

static const struct map_ops passwd_ops = { passwd_lookup, NULL };
static const struct map_ops group_ops = { group_lookup, NULL };

int map_open_unix(const char *name, struct map *m, strbuf *err)
{
    if (strcmp(name, "passwd.byname") == 0)
        m->ops = &passwd_ops;
    else if (strcmp(name, "group.byname") == 0)
        m->ops = &group_ops;
    else {
        strbuf_printf(err, "unix:%s: unknown table (passwd.byname or group.byname)",
                      name);
        return -1;
    }
    m->impl = NULL;
    m->flags = MAP_FOLD_CASE;
    return 0;
}
