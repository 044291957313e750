/*
 * test_privs.c - unit tests for common/privs.c.
 *
 * Anything that changes the process identity runs in a child forked by the
 * test itself (so it is safe even with CK_FORK=no); the child reports by
 * exit status: 0 = every check passed, otherwise the number of the failed
 * check.  Tests that need root are skipped (pass trivially, with a note on
 * stderr) when the suite does not run as root.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "mem.h"
#include "privs.h"
#include "strbuf.h"

/* Run FN in a forked child; return its exit status (or 100 + signal). */
static int run_in_child(int (*fn)(void))
{
    fflush(NULL);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0)
        _exit(fn());
    int status;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    if (WIFSIGNALED(status))
        return 100 + WTERMSIG(status);
    return WEXITSTATUS(status);
}

static int need_root(void)
{
    if (geteuid() == 0)
        return 1;
    fprintf(stderr, "test_privs: not root, skipping a root-only test\n");
    return 0;
}

START_TEST(lookup_users_and_groups)
{
    uid_t uid = 12345;
    gid_t gid = 12345;
    strbuf err;
    strbuf_init(&err);
    ck_assert_int_eq(privs_lookup("root", NULL, &uid, &gid, &err), 0);
    ck_assert_int_eq(uid, 0);
    ck_assert_int_eq(gid, 0);

    struct passwd *pw = getpwnam("nobody");
    ck_assert_ptr_nonnull(pw);
    uid_t nobody_uid = pw->pw_uid;
    gid_t nobody_gid = pw->pw_gid;
    ck_assert_int_eq(privs_lookup("nobody", NULL, &uid, &gid, &err), 0);
    ck_assert_int_eq(uid, nobody_uid);
    ck_assert_int_eq(gid, nobody_gid);
    ck_assert_int_eq(privs_lookup("nobody", "", &uid, &gid, &err), 0);
    ck_assert_int_eq(gid, nobody_gid);
    ck_assert_int_eq(privs_lookup("nobody", "root", &uid, &gid, &err), 0);
    ck_assert_int_eq(uid, nobody_uid);
    ck_assert_int_eq(gid, 0);

    uid = 777;
    gid = 777;
    ck_assert_int_eq(privs_lookup("no-such-user-postern", NULL, &uid, &gid, &err), -1);
    ck_assert_str_eq(strbuf_str(&err), "unknown user: no-such-user-postern");
    strbuf_reset(&err);
    ck_assert_int_eq(privs_lookup("root", "no-such-group-postern", &uid, &gid, &err), -1);
    ck_assert_str_eq(strbuf_str(&err), "unknown group: no-such-group-postern");
    ck_assert_int_eq(uid, 777);             /* untouched on failure */
    ck_assert_int_eq(gid, 777);
    strbuf_release(&err);
}
END_TEST

/* Drop to nobody and verify every id, the groups, and no way back. */
static int child_drop_to_nobody(void)
{
    strbuf err;
    strbuf_init(&err);
    uid_t uid;
    gid_t gid;
    if (privs_lookup("nobody", NULL, &uid, &gid, &err) < 0)
        return 1;
    if (uid == 0)
        return 2;
    if (privs_drop(uid, gid, &err) < 0) {
        fprintf(stderr, "privs_drop: %s\n", strbuf_str(&err));
        return 3;
    }
    uid_t r, e, s;
    gid_t rg, eg, sg;
    if (getresuid(&r, &e, &s) < 0 || r != uid || e != uid || s != uid)
        return 4;
    if (getresgid(&rg, &eg, &sg) < 0 || rg != gid || eg != gid || sg != gid)
        return 5;
    gid_t groups[64];
    int n = getgroups(64, groups);
    if (n != 1 || groups[0] != gid)
        return 6;
    if (setuid(0) == 0 || seteuid(0) == 0 || errno != EPERM)
        return 7;
    /* Dropping again to the ids we have is a no-op without root... */
    if (privs_drop(uid, gid, &err) < 0)
        return 8;
    /* ...and anything else fails with a message. */
    strbuf_reset(&err);
    if (privs_drop(0, 0, &err) == 0 || err.len == 0)
        return 9;
    if (privs_set_effective(0, 0) == 0)
        return 10;
    strbuf_reset(&err);
    if (privs_chroot("/", &err) == 0 || strstr(strbuf_str(&err), "chroot") == NULL)
        return 11;
    strbuf_release(&err);
    return 0;
}

START_TEST(drop_to_nobody)
{
    if (!need_root())
        return;
    ck_assert_int_eq(run_in_child(child_drop_to_nobody), 0);
}
END_TEST

static int child_drop_to_self(void)
{
    strbuf err;
    strbuf_init(&err);
    uid_t uid = getuid();
    gid_t gid = getgid();
    if (geteuid() != 0) {
        /* Non-root: the same ids are a successful no-op. */
        if (privs_drop(uid, gid, &err) < 0)
            return 1;
        if (getuid() != uid || getgid() != gid)
            return 2;
        if (privs_drop(uid + 1, gid, &err) == 0)
            return 3;
        return 0;
    }
    /* Root dropping to root keeps root and sets groups to {0}. */
    if (privs_drop(0, 0, &err) < 0)
        return 4;
    if (getuid() != 0 || geteuid() != 0)
        return 5;
    gid_t groups[64];
    int n = getgroups(64, groups);
    if (n != 1 || groups[0] != 0)
        return 6;
    return 0;
}

START_TEST(drop_to_self)
{
    ck_assert_int_eq(run_in_child(child_drop_to_self), 0);
}
END_TEST

static char secret_path[64];

/* Temporary identity: file access is checked as nobody, and root returns. */
static int child_effective_identity(void)
{
    strbuf err;
    strbuf_init(&err);
    uid_t uid;
    gid_t gid;
    if (privs_lookup("nobody", NULL, &uid, &gid, &err) < 0)
        return 1;
    gid_t extra = 4242;                 /* a supplementary group to restore */
    if (setgroups(1, &extra) < 0)
        return 2;
    for (int round = 0; round < 3; round++) {
        if (privs_set_effective(uid, gid) < 0)
            return 3;
        if (geteuid() != uid || getegid() != gid || getuid() != 0)
            return 4;
        gid_t groups[64];
        int n = getgroups(64, groups);
        if (n != 1 || groups[0] != gid)
            return 5;
        int fd = open(secret_path, O_RDONLY);
        if (fd >= 0 || errno != EACCES)
            return 6;
        if (privs_restore_root() < 0)
            return 7;
        if (geteuid() != 0 || getegid() != 0)
            return 8;
        n = getgroups(64, groups);
        if (n != 1 || groups[0] != extra)
            return 9;
        fd = open(secret_path, O_RDONLY);
        if (fd < 0)
            return 10;
        close(fd);
    }
    /* privs_drop works from a temporary identity too. */
    if (privs_set_effective(uid, gid) < 0)
        return 11;
    if (privs_drop(uid, gid, &err) < 0)
        return 12;
    if (getuid() != uid || setuid(0) == 0)
        return 13;
    strbuf_release(&err);
    return 0;
}

START_TEST(effective_identity_round_trip)
{
    if (!need_root())
        return;
    snprintf(secret_path, sizeof(secret_path), "/tmp/postern-privs-test.XXXXXX");
    int fd = mkstemp(secret_path);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(fchmod(fd, 0600), 0);
    close(fd);
    int rc = run_in_child(child_effective_identity);
    unlink(secret_path);
    ck_assert_int_eq(rc, 0);
}
END_TEST

static char jail_dir[64];

static int child_chroot(void)
{
    strbuf err;
    strbuf_init(&err);
    if (privs_chroot(jail_dir, &err) < 0) {
        fprintf(stderr, "privs_chroot: %s\n", strbuf_str(&err));
        return 1;
    }
    if (access("/marker", F_OK) < 0)
        return 2;
    if (access("./marker", F_OK) < 0)       /* cwd is the new root */
        return 3;
    if (access("/../marker", F_OK) < 0)     /* ".." of "/" stays inside */
        return 4;
    strbuf_reset(&err);
    if (privs_chroot("/no/such/dir", &err) == 0 || strstr(err.data, "chdir /no/such/dir") == NULL)
        return 5;
    strbuf_release(&err);
    return 0;
}

START_TEST(chroot_jail)
{
    if (!need_root())
        return;
    snprintf(jail_dir, sizeof(jail_dir), "/tmp/postern-jail.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(jail_dir));
    strbuf marker;
    strbuf_init(&marker);
    strbuf_printf(&marker, "%s/marker", jail_dir);
    int fd = open(strbuf_str(&marker), O_CREAT | O_WRONLY, 0600);
    ck_assert_int_ge(fd, 0);
    close(fd);
    int rc = run_in_child(child_chroot);
    unlink(strbuf_str(&marker));
    rmdir(jail_dir);
    strbuf_release(&marker);
    ck_assert_int_eq(rc, 0);
}
END_TEST

Suite *privs_suite(void)
{
    Suite *s = suite_create("privs");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, lookup_users_and_groups);
    tcase_add_test(tc, drop_to_nobody);
    tcase_add_test(tc, drop_to_self);
    tcase_add_test(tc, effective_identity_round_trip);
    tcase_add_test(tc, chroot_jail);
    suite_add_tcase(s, tc);
    return s;
}
