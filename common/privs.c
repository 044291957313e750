/*
 * privs.c - account lookup, permanent privilege drop, chroot, and
 * temporary effective identity.  See privs.h for the contract.
 */
#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <string.h>
#include <unistd.h>

#include "mem.h"
#include "privs.h"

/* Supplementary groups before the first privs_set_effective(). */
static gid_t *saved_groups;
static int saved_group_count = -1;      /* -1 = not saved yet */

int privs_lookup(const char *user, const char *group, uid_t *uid, gid_t *gid, strbuf *err)
{
    errno = 0;
    struct passwd *pw = getpwnam(user);
    if (pw == NULL) {
        if (errno != 0 && errno != ENOENT && errno != ESRCH)
            strbuf_printf(err, "look up user %s: %s", user, strerror(errno));
        else
            strbuf_printf(err, "unknown user: %s", user);
        return -1;
    }
    uid_t found_uid = pw->pw_uid;
    gid_t found_gid = pw->pw_gid;
    if (group && *group) {
        errno = 0;
        struct group *gr = getgrnam(group);
        if (gr == NULL) {
            if (errno != 0 && errno != ENOENT && errno != ESRCH)
                strbuf_printf(err, "look up group %s: %s", group, strerror(errno));
            else
                strbuf_printf(err, "unknown group: %s", group);
            return -1;
        }
        found_gid = gr->gr_gid;
    }
    *uid = found_uid;
    *gid = found_gid;
    return 0;
}

int privs_drop(uid_t uid, gid_t gid, strbuf *err)
{
    /* A process that is only temporarily someone else (privs_set_effective)
     * must be root again for setgroups/setgid/setuid to set every id. */
    if (getuid() == 0 && geteuid() != 0 && seteuid(0) < 0) {
        strbuf_printf(err, "seteuid(0): %s", strerror(errno));
        return -1;
    }
    if (geteuid() == 0) {
        if (setgroups(1, &gid) < 0) {
            strbuf_printf(err, "setgroups(%ld): %s", (long) gid, strerror(errno));
            return -1;
        }
    } else {
        /* Without root we cannot change groups; it is a no-op only when
         * nothing needs to change. */
        if (getuid() != uid || geteuid() != uid || getgid() != gid || getegid() != gid) {
            strbuf_printf(err, "cannot change to uid %ld gid %ld without root privilege",
                          (long) uid, (long) gid);
            return -1;
        }
    }
    if (setgid(gid) < 0) {
        strbuf_printf(err, "setgid(%ld): %s", (long) gid, strerror(errno));
        return -1;
    }
    if (setuid(uid) < 0) {
        strbuf_printf(err, "setuid(%ld): %s", (long) uid, strerror(errno));
        return -1;
    }
    if (getuid() != uid || geteuid() != uid) {
        strbuf_printf(err, "uid is %ld/%ld after setuid(%ld)",
                      (long) getuid(), (long) geteuid(), (long) uid);
        return -1;
    }
    if (getgid() != gid || getegid() != gid) {
        strbuf_printf(err, "gid is %ld/%ld after setgid(%ld)",
                      (long) getgid(), (long) getegid(), (long) gid);
        return -1;
    }
    if (uid != 0 && (setuid(0) == 0 || seteuid(0) == 0)) {
        strbuf_printf(err, "could regain root after dropping to uid %ld", (long) uid);
        return -1;
    }
    return 0;
}

static int privs_in_chroot;

int privs_chrooted(void)
{
    return privs_in_chroot;
}

int privs_chroot(const char *dir, strbuf *err)
{
    if (chdir(dir) < 0) {
        strbuf_printf(err, "chdir %s: %s", dir, strerror(errno));
        return -1;
    }
    if (chroot(".") < 0) {
        strbuf_printf(err, "chroot %s: %s", dir, strerror(errno));
        return -1;
    }
    if (chdir("/") < 0) {
        strbuf_printf(err, "chdir / in chroot %s: %s", dir, strerror(errno));
        return -1;
    }
    privs_in_chroot = 1;
    return 0;
}

int privs_set_effective(uid_t uid, gid_t gid)
{
    if (geteuid() != 0 && seteuid(0) < 0)
        return -1;
    if (saved_group_count < 0) {
        int n = getgroups(0, NULL);
        if (n < 0)
            return -1;
        saved_groups = xcalloc((size_t) n + 1, sizeof(gid_t));
        n = getgroups(n, saved_groups);
        if (n < 0) {
            xfree(saved_groups);
            saved_groups = NULL;
            return -1;
        }
        saved_group_count = n;
    }
    if (setgroups(1, &gid) < 0)
        return -1;
    if (setegid(gid) < 0)
        return -1;
    if (seteuid(uid) < 0)
        return -1;
    return 0;
}

int privs_restore_root(void)
{
    if (geteuid() != 0 && seteuid(0) < 0)
        return -1;
    if (setegid(getgid()) < 0)
        return -1;
    if (saved_group_count >= 0 && setgroups((size_t) saved_group_count, saved_groups) < 0)
        return -1;
    return 0;
}
