/*
 * test_tmpfile_link.c - unit tests for common/tmpfile_link.c: an unnamed
 * file gets its name with both ways of linking, leaves nothing when
 * closed unnamed, never replaces an existing name, reports a missing
 * target directory as ENOENT without giving up on the method, a
 * process that knows it cannot link gets EOPNOTSUPP at once, and the
 * fallback copy copies exactly what was asked.
 */
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tmpfile_link.h"

static char dir[64];
static char path[128];

static int remove_entry(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(p);
}

static void dir_setup(void)
{
    strcpy(dir, "/tmp/test_tmpfile_XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    tmpfile_method_set(TMPFILE_UNKNOWN);
}

static void dir_teardown(void)
{
    nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    tmpfile_method_set(TMPFILE_UNKNOWN);
}

static int count_entries(void)
{
    DIR *d = opendir(dir);
    ck_assert_ptr_nonnull(d);
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL)
        if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
            n++;
    closedir(d);
    return n;
}

/* An unnamed file holding text, fsynced. */
static int unnamed_with(const char *text)
{
    int fd = tmpfile_open(dir, O_WRONLY, 0640);
    ck_assert_msg(fd >= 0, "tmpfile_open: %s", strerror(errno));
    ck_assert_int_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    ck_assert_int_eq(fsync(fd), 0);
    return fd;
}

static void check_file(const char *p, const char *text)
{
    char buf[256];
    int fd = open(p, O_RDONLY);
    ck_assert_int_ge(fd, 0);
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    ck_assert_int_ge(n, 0);
    buf[n] = '\0';
    ck_assert_str_eq(buf, text);
    struct stat st;
    ck_assert_int_eq(fstat(fd, &st), 0);
    ck_assert_int_eq(st.st_nlink, 1);
    ck_assert_int_eq(st.st_uid, geteuid());
    close(fd);
}

START_TEST(link_gives_name)
{
    mode_t old = umask(022);
    int fd = unnamed_with("hello\n");
    snprintf(path, sizeof(path), "%s/name", dir);
    ck_assert_int_eq(tmpfile_link(fd, path), 0);
    ck_assert_int_eq(close(fd), 0);
    umask(old);
    /* This kernel names it one way or the other. */
    ck_assert(tmpfile_method() == TMPFILE_EMPTY_PATH || tmpfile_method() == TMPFILE_PROC);
    ck_assert_int_eq(count_entries(), 1);
    check_file(path, "hello\n");
    struct stat st;
    ck_assert_int_eq(stat(path, &st), 0);
    ck_assert_int_eq(st.st_mode & 07777, 0640 & ~022);
}
END_TEST

START_TEST(link_via_proc)
{
    tmpfile_method_set(TMPFILE_PROC);
    int fd = unnamed_with("by proc\n");
    snprintf(path, sizeof(path), "%s/byproc", dir);
    ck_assert_int_eq(tmpfile_link(fd, path), 0);
    close(fd);
    ck_assert_int_eq(tmpfile_method(), TMPFILE_PROC);
    check_file(path, "by proc\n");
}
END_TEST

START_TEST(closed_unnamed_leaves_nothing)
{
    int fd = unnamed_with("gone\n");
    ck_assert_int_eq(count_entries(), 0);
    ck_assert_int_eq(close(fd), 0);
    ck_assert_int_eq(count_entries(), 0);
}
END_TEST

START_TEST(existing_name_is_kept)
{
    snprintf(path, sizeof(path), "%s/taken", dir);
    int old = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
    ck_assert_int_ge(old, 0);
    ck_assert_int_eq(write(old, "old\n", 4), 4);
    close(old);
    int fd = unnamed_with("new\n");
    errno = 0;
    ck_assert_int_eq(tmpfile_link(fd, path), -1);
    ck_assert_int_eq(errno, EEXIST);
    close(fd);
    check_file(path, "old\n");
    ck_assert_int_eq(count_entries(), 1);
    ck_assert_int_ne(tmpfile_method(), TMPFILE_NONE);
}
END_TEST

START_TEST(missing_directory_is_enoent)
{
    int fd = unnamed_with("x");
    snprintf(path, sizeof(path), "%s/nosuchdir/name", dir);
    errno = 0;
    ck_assert_int_eq(tmpfile_link(fd, path), -1);
    ck_assert_int_eq(errno, ENOENT);
    /* Not taken for "cannot link": the next one works. */
    ck_assert_int_ne(tmpfile_method(), TMPFILE_NONE);
    snprintf(path, sizeof(path), "%s/name", dir);
    ck_assert_int_eq(tmpfile_link(fd, path), 0);
    close(fd);
    check_file(path, "x");
}
END_TEST

START_TEST(known_unusable_is_eopnotsupp)
{
    int fd = unnamed_with("x");
    tmpfile_method_set(TMPFILE_NONE);
    snprintf(path, sizeof(path), "%s/name", dir);
    errno = 0;
    ck_assert_int_eq(tmpfile_link(fd, path), -1);
    ck_assert_int_eq(errno, EOPNOTSUPP);
    close(fd);
    errno = 0;
    ck_assert_int_eq(tmpfile_open(dir, O_WRONLY, 0600), -1);
    ck_assert_int_eq(errno, EOPNOTSUPP);
    ck_assert_int_eq(count_entries(), 0);
}
END_TEST

START_TEST(open_missing_dir_fails_plainly)
{
    snprintf(path, sizeof(path), "%s/nosuchdir", dir);
    errno = 0;
    ck_assert_int_eq(tmpfile_open(path, O_WRONLY, 0600), -1);
    ck_assert_int_eq(errno, ENOENT);
    ck_assert_int_eq(tmpfile_method(), TMPFILE_UNKNOWN);
}
END_TEST

START_TEST(copy_to_named_file)
{
    int fd = tmpfile_open(dir, O_RDWR, 0600);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, "copied\n", 7), 7);
    snprintf(path, sizeof(path), "%s/copy", dir);
    int to = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
    ck_assert_int_ge(to, 0);
    ck_assert_int_eq(tmpfile_copy(fd, to, 7), 0);
    /* Asked for more than there is: EIO, not a short file passed as whole. */
    errno = 0;
    ck_assert_int_eq(tmpfile_copy(fd, to, 100), -1);
    ck_assert_int_eq(errno, EIO);
    ck_assert_int_eq(ftruncate(to, 7), 0);
    close(to);
    close(fd);
    check_file(path, "copied\n");
}
END_TEST

Suite *tmpfile_link_suite(void)
{
    Suite *s = suite_create("tmpfile_link");
    TCase *tc = tcase_create("link");
    tcase_add_checked_fixture(tc, dir_setup, dir_teardown);
    tcase_add_test(tc, link_gives_name);
    tcase_add_test(tc, link_via_proc);
    tcase_add_test(tc, closed_unnamed_leaves_nothing);
    tcase_add_test(tc, existing_name_is_kept);
    tcase_add_test(tc, missing_directory_is_enoent);
    tcase_add_test(tc, known_unusable_is_eopnotsupp);
    tcase_add_test(tc, open_missing_dir_fails_plainly);
    tcase_add_test(tc, copy_to_named_file);
    suite_add_tcase(s, tc);
    return s;
}
