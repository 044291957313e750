/*
 * privs.h - privilege handling: account lookup, dropping root for good,
 * chroot, and the local agent's temporary per-delivery identity.
 *
 * Interface:
 *   privs_lookup(user, group, &uid, &gid, err)
 *       uid of USER and gid of GROUP (NULL or "" = USER's primary group).
 *       Returns 0, or -1 with "unknown user: X" / "unknown group: X" in err.
 *   privs_drop(uid, gid, err)
 *       Permanently become uid/gid: setgroups({gid}), setgid, setuid (real,
 *       effective and saved ids), then verify getuid/geteuid/getgid/getegid
 *       and, when uid != 0, that setuid(0) now fails.  Returns 0, or -1 with
 *       the failing step in err (the caller must then exit: the process may
 *       be half-dropped).  Without root, dropping to the ids the process
 *       already has is a successful no-op; any other target fails.
 *   privs_chroot(dir, err)
 *       chdir(dir), chroot("."), chdir("/").  Needs root; call it before
 *       privs_drop().  Returns 0 or -1 with err.
 *   privs_chrooted()
 *       1 once privs_chroot() succeeded in this process (or a parent it
 *       forked from), else 0.  Lets code that must behave differently in
 *       a jail (the unix: tables) know without a system call.
 *   privs_set_effective(uid, gid)
 *       Temporarily act as uid/gid (effective ids and supplementary groups =
 *       {gid}) while the real and saved uid stay 0, so privs_restore_root()
 *       can come back.  Used by local for each delivery to a user.
 *       Returns 0, or -1 with errno set (identity then unspecified: call
 *       privs_restore_root() before anything else).
 *   privs_restore_root()
 *       Back to effective root with the supplementary groups the process
 *       had before the first privs_set_effective().  Returns 0 or -1/errno.
 *
 * Contract: none of these log; callers decide how fatal a failure is (a
 * failed privs_drop or privs_chroot must be fatal).  Order for a daemon:
 * privs_lookup -> (open what needs root) -> privs_chroot -> privs_drop.
 * privs_set_effective never touches the real uid, so it is NOT a security
 * boundary against code running in the process; it only makes the kernel
 * check file access as the recipient.  Not thread-safe.
 */
#ifndef POSTERN_PRIVS_H
#define POSTERN_PRIVS_H

#include <sys/types.h>

#include "strbuf.h"

int privs_lookup(const char *user, const char *group, uid_t *uid, gid_t *gid, strbuf *err);
int privs_drop(uid_t uid, gid_t gid, strbuf *err);
int privs_chroot(const char *dir, strbuf *err);
int privs_chrooted(void);
int privs_set_effective(uid_t uid, gid_t gid);
int privs_restore_root(void);

#endif
