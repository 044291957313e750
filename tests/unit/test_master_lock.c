/*
 * test_master_lock.c - the master's pid file lock and the inet service
 * address parser (common/master_lock.c, common/service_addr.c).
 */
#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "master_lock.h"
#include "mem.h"
#include "service_addr.h"

static char lock_dir[64];
static char lock_file[128];

static void lock_setup(void)
{
    strcpy(lock_dir, "/tmp/postern-lock-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(lock_dir));
    snprintf(lock_file, sizeof(lock_file), "%s/master.pid", lock_dir);
}

static void lock_teardown(void)
{
    unlink(lock_file);
    rmdir(lock_dir);
}

START_TEST(lock_free_when_no_file)
{
    ck_assert_int_eq(master_lock_holder(lock_file), 0);
}
END_TEST

START_TEST(lock_path_under_queue_dir)
{
    strbuf sb;
    strbuf_init(&sb);
    master_lock_path(&sb, "/var/spool/postern");
    ck_assert_str_eq(strbuf_str(&sb), "/var/spool/postern/pid/master.pid");
    strbuf_release(&sb);
}
END_TEST

START_TEST(lock_held_by_child_refuses_second)
{
    int ready[2], go[2];
    ck_assert_int_eq(pipe(ready), 0);
    ck_assert_int_eq(pipe(go), 0);
    pid_t child = fork();
    ck_assert_int_ge(child, 0);
    if (child == 0) {
        strbuf err;
        strbuf_init(&err);
        pid_t holder;
        int fd = master_lock_acquire(lock_file, &holder, &err);
        char c = fd >= 0 ? 'y' : 'n';
        if (write(ready[1], &c, 1) != 1)
            _exit(2);
        if (read(go[0], &c, 1) < 0)
            _exit(2);
        _exit(fd >= 0 ? 0 : 1);
    }
    char c = 0;
    ck_assert_int_eq(read(ready[0], &c, 1), 1);
    ck_assert_int_eq(c, 'y');
    /* The child holds it: we see its pid, and cannot take it. */
    ck_assert_int_eq(master_lock_holder(lock_file), child);
    strbuf err;
    strbuf_init(&err);
    pid_t holder = 0;
    ck_assert_int_eq(master_lock_acquire(lock_file, &holder, &err), -1);
    ck_assert_int_eq(holder, child);
    ck_assert_ptr_nonnull(strstr(strbuf_str(&err), "already running"));
    /* The file holds the child's pid. */
    FILE *fp = fopen(lock_file, "r");
    long filepid = 0;
    ck_assert_ptr_nonnull(fp);
    ck_assert_int_eq(fscanf(fp, "%ld", &filepid), 1);
    fclose(fp);
    ck_assert_int_eq(filepid, child);
    /* Once it exits, the lock is free again (a stale file is not a lock). */
    ck_assert_int_eq(write(go[1], "x", 1), 1);
    int status;
    ck_assert_int_eq(waitpid(child, &status, 0), child);
    ck_assert_int_eq(master_lock_holder(lock_file), 0);
    strbuf_reset(&err);
    int fd = master_lock_acquire(lock_file, &holder, &err);
    ck_assert_int_ge(fd, 0);
    close(fd);
    strbuf_release(&err);
}
END_TEST

START_TEST(lock_unwritable_dir_fails_cleanly)
{
    strbuf err;
    strbuf_init(&err);
    pid_t holder = 123;
    ck_assert_int_eq(master_lock_acquire("/nonexistent-dir/x/master.pid", &holder, &err), -1);
    ck_assert_int_eq(holder, 0);
    ck_assert_ptr_nonnull(strstr(strbuf_str(&err), "/nonexistent-dir/x/master.pid"));
    strbuf_release(&err);
}
END_TEST

/* ---- service_addr ---- */

static void expect_split(const char *name, const char *want_host, const char *want_port)
{
    char *host, *port;
    strbuf err;
    strbuf_init(&err);
    ck_assert_msg(service_addr_split(name, &host, &port, &err) == 0, "%s: %s", name,
                  strbuf_str(&err));
    if (want_host)
        ck_assert_str_eq(host, want_host);
    else
        ck_assert_ptr_null(host);
    ck_assert_str_eq(port, want_port);
    xfree(host);
    xfree(port);
    strbuf_release(&err);
}

static void expect_bad(const char *name)
{
    char *host = (char *)1, *port = (char *)1;
    strbuf err;
    strbuf_init(&err);
    ck_assert_msg(service_addr_split(name, &host, &port, &err) == -1, "accepted: %s", name);
    ck_assert_ptr_null(host);
    ck_assert_ptr_null(port);
    ck_assert_msg(err.len > 0, "no reason for %s", name);
    strbuf_release(&err);
}

START_TEST(addr_good_forms)
{
    expect_split("25", NULL, "25");
    expect_split("smtp", NULL, "smtp");
    expect_split("127.0.0.1:2525", "127.0.0.1", "2525");
    expect_split("localhost:smtp", "localhost", "smtp");
    expect_split("[::1]:2525", "::1", "2525");
    expect_split("[fe80::1%eth0]:25", "fe80::1%eth0", "25");
    expect_split("65535", NULL, "65535");
}
END_TEST

START_TEST(addr_malformed)
{
    expect_bad("");
    expect_bad(":25");
    expect_bad("host:");
    expect_bad("::1:25");
    expect_bad("[::1]");
    expect_bad("[::1]25");
    expect_bad("[::1:25");
    expect_bad("[]:25");
    expect_bad("0");
    expect_bad("65536");
    expect_bad("99999999999999999999");
    expect_bad("127.0.0.1:70000");
    expect_bad("a b:25");
    expect_bad("host:sm tp");
    expect_bad("host:sm/tp");
    expect_bad("ho\x01st:25");
    expect_bad("[a]b]:25");
}
END_TEST

START_TEST(addr_null)
{
    expect_bad(NULL);
}
END_TEST

Suite *master_lock_suite(void)
{
    Suite *s = suite_create("master_lock");
    TCase *tc = tcase_create("lock");
    tcase_add_checked_fixture(tc, lock_setup, lock_teardown);
    tcase_add_test(tc, lock_free_when_no_file);
    tcase_add_test(tc, lock_path_under_queue_dir);
    tcase_add_test(tc, lock_held_by_child_refuses_second);
    tcase_add_test(tc, lock_unwritable_dir_fails_cleanly);
    suite_add_tcase(s, tc);
    TCase *ta = tcase_create("service_addr");
    tcase_add_test(ta, addr_good_forms);
    tcase_add_test(ta, addr_malformed);
    tcase_add_test(ta, addr_null);
    suite_add_tcase(s, ta);
    return s;
}
