/*
 * test_log.c - common/log.c: Postfix's line format in the file sink, the
 * level prefixes, -v gating of debug lines, control characters neutralised
 * (no forged lines), and log_fatal's exit status.
 */
#include <check.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "log.h"
#include "mem.h"
#include "strbuf.h"

static char log_dir[64];
static char log_path[128];

static void log_setup(void)
{
    strcpy(log_dir, "/tmp/postern-log-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(log_dir));
    snprintf(log_path, sizeof(log_path), "%s/maillog", log_dir);
    log_open("unittest");
    log_set_syslog_name("postern");
    log_set_hostname("mx");
    ck_assert_int_eq(log_use_file(log_path), 0);
    log_verbose = 0;
}

static void log_teardown(void)
{
    log_use_stderr();
    unlink(log_path);
    rmdir(log_dir);
}

/* The whole file as one string (caller frees). */
static char *slurp(void)
{
    FILE *f = fopen(log_path, "r");
    ck_assert_ptr_nonnull(f);
    strbuf sb;
    strbuf_init(&sb);
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof(buf), f)) > 0)
        strbuf_append(&sb, buf, n);
    fclose(f);
    char *out = xstrdup(strbuf_str(&sb));
    strbuf_release(&sb);
    return out;
}

static int matches(const char *text, const char *pattern)
{
    regex_t re;
    ck_assert_int_eq(regcomp(&re, pattern, REG_EXTENDED | REG_NEWLINE | REG_NOSUB), 0);
    int rc = regexec(&re, text, 0, NULL, 0);
    regfree(&re);
    return rc == 0;
}

START_TEST(line_format_and_levels)
{
    log_info("hello %d", 42);
    log_warning("careful");
    log_error("broken");
    char *text = slurp();
    char pattern[256];
    snprintf(pattern, sizeof(pattern),
             "^[A-Z][a-z]{2} [ 1-3][0-9] [0-2][0-9]:[0-5][0-9]:[0-6][0-9] mx "
             "postern/unittest\\[%ld\\]: hello 42$", (long) getpid());
    ck_assert_msg(matches(text, pattern), "%s", text);
    ck_assert_msg(matches(text, "\\]: warning: careful$"), "%s", text);
    ck_assert_msg(matches(text, "\\]: error: broken$"), "%s", text);
    /* three lines, each ending in a newline */
    int lines = 0;
    for (const char *p = text; *p; p++)
        lines += *p == '\n';
    ck_assert_int_eq(lines, 3);
    ck_assert_int_eq(text[strlen(text) - 1], '\n');
    xfree(text);
}
END_TEST

START_TEST(debug_only_with_verbose)
{
    log_debug("quiet");
    log_verbose = 1;
    log_debug("loud");
    char *text = slurp();
    ck_assert_ptr_null(strstr(text, "quiet"));
    ck_assert_ptr_nonnull(strstr(text, "]: loud\n"));
    xfree(text);
}
END_TEST

START_TEST(control_characters_cannot_forge_lines)
{
    log_info("client said: a\nMar  1 00:00:00 mx postern/smtpd[1]: forged\r\tend");
    char *text = slurp();
    int lines = 0;
    for (const char *p = text; *p; p++)
        lines += *p == '\n';
    ck_assert_int_eq(lines, 1);
    ck_assert_ptr_null(strchr(text, '\r'));
    ck_assert_ptr_nonnull(strstr(text, "client said: a?Mar"));
    xfree(text);
}
END_TEST

START_TEST(syslog_name_and_long_lines)
{
    log_set_syslog_name("postern/submission");
    char big[5000];
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    log_info("%s", big);
    char *text = slurp();
    ck_assert_msg(matches(text, " postern/submission/unittest\\[[0-9]+\\]: x+$"), "%.200s", text);
    xfree(text);
}
END_TEST

START_TEST(fatal_exits_with_status_one)
{
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0)
        log_fatal("cannot go on: %s", "reason");
    int status = 0;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert(WIFEXITED(status));
    ck_assert_int_eq(WEXITSTATUS(status), 1);
    char *text = slurp();
    ck_assert_msg(matches(text, "\\]: fatal: cannot go on: reason$"), "%s", text);
    xfree(text);
}
END_TEST

/* The pid is cached (log_pid): a child of fork() must log its own, and
 * so must its child, even when the parent logged (and cached) first. */
START_TEST(forked_child_logs_its_own_pid)
{
    log_info("parent %ld", (long)getpid());
    ck_assert_int_eq(log_pid(), getpid());
    int fds[2];
    ck_assert_int_eq(pipe(fds), 0);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        log_info("child %ld", (long)getpid());
        pid_t grandchild = fork();
        if (grandchild == 0) {
            log_info("grandchild %ld", (long)getpid());
            _exit(0);
        }
        int st;
        waitpid(grandchild, &st, 0);
        long gc = (long)grandchild;
        ssize_t w = write(fds[1], &gc, sizeof(gc));
        _exit(w == (ssize_t)sizeof(gc) && log_pid() == getpid() ? 0 : 1);
    }
    close(fds[1]);
    long grandchild = 0;
    ck_assert_int_eq(read(fds[0], &grandchild, sizeof(grandchild)), sizeof(grandchild));
    close(fds[0]);
    int status = 0;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    log_info("parent again %ld", (long)getpid());
    char *text = slurp();
    char want[128];
    snprintf(want, sizeof(want), "\\[%ld\\]: parent %ld$", (long)getpid(), (long)getpid());
    ck_assert_msg(matches(text, want), "%s", text);
    snprintf(want, sizeof(want), "\\[%ld\\]: child %ld$", (long)pid, (long)pid);
    ck_assert_msg(matches(text, want), "%s", text);
    snprintf(want, sizeof(want), "\\[%ld\\]: grandchild %ld$", grandchild, grandchild);
    ck_assert_msg(matches(text, want), "%s", text);
    snprintf(want, sizeof(want), "\\[%ld\\]: parent again %ld$", (long)getpid(), (long)getpid());
    ck_assert_msg(matches(text, want), "%s", text);
    xfree(text);
}
END_TEST

Suite *log_suite(void)
{
    Suite *s = suite_create("log");
    TCase *tc = tcase_create("log");
    tcase_add_checked_fixture(tc, log_setup, log_teardown);
    tcase_add_test(tc, line_format_and_levels);
    tcase_add_test(tc, debug_only_with_verbose);
    tcase_add_test(tc, control_characters_cannot_forge_lines);
    tcase_add_test(tc, syslog_name_and_long_lines);
    tcase_add_test(tc, fatal_exits_with_status_one);
    tcase_add_test(tc, forked_child_logs_its_own_pid);
    suite_add_tcase(s, tc);
    return s;
}
