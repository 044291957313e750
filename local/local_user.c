/*
 * local_user.c - passwd lookups and the temporary effective identity.
 *
 * Interface: see local.h (local_user_lookup, local_user_by_uid,
 * local_user_copy/free, local_become/unbecome, local_user_name_safe).
 *
 * Passwd entries found by name are kept for LOCAL_PASSWD_TTL seconds
 * (Postfix's local keeps them for the life of the process): a delivery
 * would otherwise read and parse the passwd database through NSS, an open,
 * a read and a parse of /etc/passwd per message.  Names not found are not
 * kept, so a user just added gets mail at once instead of a bounce; an
 * edited entry (home, uid) counts at most LOCAL_PASSWD_TTL seconds later.
 *
 * Contract: in a root instance local_become() switches the effective uid
 * and gid (privs.h) and local_unbecome() returns to root; failing to return
 * to root is fatal, because the next recipient would run as the wrong
 * user.  In a non-root instance both are no-ops: every delivery runs as the
 * instance user.
 */
#include <errno.h>
#include <pwd.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "local.h"
#include "log.h"
#include "mem.h"
#include "privs.h"

static void local_user_fill(struct local_user *u, const struct passwd *pw)
{
    u->name = xstrdup(pw->pw_name);
    u->uid = pw->pw_uid;
    u->gid = pw->pw_gid;
    u->home = xstrdup(pw->pw_dir && *pw->pw_dir ? pw->pw_dir : "/");
    u->shell = xstrdup(pw->pw_shell && *pw->pw_shell ? pw->pw_shell : "/bin/sh");
}

#define LOCAL_PASSWD_TTL    10  /* seconds an entry found by name is kept */
#define LOCAL_PASSWD_SLOTS  16  /* distinct names kept at once */

static struct passwd_slot {
    char *key;                  /* the name asked for; NULL = free slot */
    struct local_user user;
    time_t found;               /* CLOCK_MONOTONIC seconds */
} passwd_cache[LOCAL_PASSWD_SLOTS];

static time_t monotonic_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec;
}

static void passwd_slot_clear(struct passwd_slot *slot)
{
    xfree(slot->key);
    slot->key = NULL;
    local_user_free(&slot->user);
}

int local_user_lookup(const char *name, struct local_user *u)
{
    memset(u, 0, sizeof(*u));
    time_t now = monotonic_seconds();
    struct passwd_slot *oldest = &passwd_cache[0];
    for (int i = 0; i < LOCAL_PASSWD_SLOTS; i++) {
        struct passwd_slot *slot = &passwd_cache[i];
        if (slot->key != NULL && now - slot->found >= LOCAL_PASSWD_TTL)
            passwd_slot_clear(slot);
        if (slot->key != NULL && strcmp(slot->key, name) == 0) {
            local_user_copy(u, &slot->user);
            return 1;
        }
        if (slot->key == NULL || (oldest->key != NULL && slot->found < oldest->found))
            oldest = slot;
    }
    struct passwd *pw = getpwnam(name);
    if (pw == NULL)
        return 0;
    local_user_fill(u, pw);
    passwd_slot_clear(oldest);
    oldest->key = xstrdup(name);
    local_user_copy(&oldest->user, u);
    oldest->found = now;
    return 1;
}

int local_user_by_uid(uid_t uid, struct local_user *u)
{
    memset(u, 0, sizeof(*u));
    struct passwd *pw = getpwuid(uid);
    if (pw == NULL)
        return 0;
    local_user_fill(u, pw);
    return 1;
}

void local_user_copy(struct local_user *dst, const struct local_user *src)
{
    dst->name = xstrdup(src->name);
    dst->uid = src->uid;
    dst->gid = src->gid;
    dst->home = xstrdup(src->home);
    dst->shell = xstrdup(src->shell);
}

void local_user_free(struct local_user *u)
{
    xfree(u->name);
    xfree(u->home);
    xfree(u->shell);
    memset(u, 0, sizeof(*u));
}

int local_become(uid_t uid, gid_t gid)
{
    if (!local_is_root || uid == 0)
        return 0;
    if (privs_set_effective(uid, gid) < 0) {
        log_warning("cannot switch to uid %ld gid %ld: %m", (long)uid, (long)gid);
        privs_restore_root();
        return -1;
    }
    return 0;
}

void local_unbecome(void)
{
    if (!local_is_root)
        return;
    if (geteuid() != 0)
        privs_restore_root();
    if (geteuid() != 0)
        log_fatal("cannot return to root privileges");
}

int local_user_name_safe(const char *name)
{
    if (name[0] == '\0' || name[0] == '.' || strlen(name) > 255)
        return 0;
    for (const unsigned char *p = (const unsigned char *)name; *p; p++)
        if (*p == '/' || *p < 0x20 || *p == 0x7f)
            return 0;
    return 1;
}
