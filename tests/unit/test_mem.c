/*
 * test_mem.c - common/mem.c: the never-NULL allocation wrappers, and the
 * exit (status 75, a fatal log line) when memory cannot be had.
 */
#include <check.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "log.h"
#include "mem.h"

START_TEST(wrappers_behave)
{
    void *p = xmalloc(0);
    ck_assert_ptr_nonnull(p);
    xfree(p);
    xfree(NULL);
    char *s = xstrndup("abcdef", 3);
    ck_assert_str_eq(s, "abc");
    xfree(s);
    s = xstrndup("ab", 10);
    ck_assert_str_eq(s, "ab");
    xfree(s);
    unsigned char bytes[4] = { 0, 1, 0, 2 };
    unsigned char *d = xmemdup(bytes, sizeof(bytes));
    ck_assert(memcmp(d, bytes, sizeof(bytes)) == 0);
    xfree(d);
    int *z = xcalloc(16, sizeof(int));
    for (int i = 0; i < 16; i++)
        ck_assert_int_eq(z[i], 0);
    z = xrealloc(z, 1024 * sizeof(int));
    ck_assert_int_eq(z[15], 0);
    xfree(z);
}
END_TEST

/* Exhaustion: the process logs "fatal: out of memory ..." and exits 75.
 * (Not under AddressSanitizer, whose allocator aborts on such sizes.) */
static void expect_exhaustion(int which)
{
#ifndef __SANITIZE_ADDRESS__
    int pfd[2];
    ck_assert_int_eq(pipe(pfd), 0);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        close(pfd[0]);
        dup2(pfd[1], 2);
        log_open("unittest");
        log_use_stderr();
        volatile void *p = NULL;
        if (which == 0)
            p = xmalloc(SIZE_MAX - 4096);
        else if (which == 1)
            p = xcalloc(SIZE_MAX / 2, 4);
        else
            p = xrealloc(NULL, SIZE_MAX - 4096);
        (void) p;
        _exit(0);
    }
    close(pfd[1]);
    char buf[512] = { 0 };
    ssize_t n = 0, got;
    while (n < (ssize_t) sizeof(buf) - 1 && (got = read(pfd[0], buf + n, sizeof(buf) - 1 - n)) > 0)
        n += got;
    close(pfd[0]);
    int status = 0;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert(WIFEXITED(status));
    ck_assert_int_eq(WEXITSTATUS(status), 75);
    ck_assert_msg(strstr(buf, "fatal: out of memory") != NULL, "%s", buf);
#else
    (void) which;
#endif
}

START_TEST(exhaustion_exits_75)
{
    expect_exhaustion(0);
    expect_exhaustion(1);
    expect_exhaustion(2);
}
END_TEST

Suite *mem_suite(void)
{
    Suite *s = suite_create("mem");
    TCase *tc = tcase_create("mem");
    tcase_add_test(tc, wrappers_behave);
    tcase_add_test(tc, exhaustion_exits_75);
    suite_add_tcase(s, tc);
    return s;
}
