/*
 * test_master_cf.c - unit tests for common/master_cf.c.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "master_cf.h"
#include "mem.h"
#include "strbuf.h"

static const char sample_master_cf[] =
    "#\n"
    "# Postfix-like master process configuration file.\n"
    "#\n"
    "# ==========================================================================\n"
    "# service type  private unpriv  chroot  wakeup  maxproc command + args\n"
    "#               (yes)   (yes)   (no)    (never) (100)\n"
    "# ==========================================================================\n"
    "smtp      inet  n       -       y       -       -       smtpd\n"
    "submission inet n       -       y       -       -       smtpd\n"
    "  -o syslog_name=postern/submission\n"
    "  -o smtpd_tls_security_level=encrypt\n"
    "#  -o smtpd_sasl_auth_enable=yes\n"
    "  -o smtpd_client_restrictions=$mua_client_restrictions\n"
    "  -o milter_macro_daemon_name=\n"
    "127.0.0.1:2525 inet n   -       n       -       4       smtpd -v\n"
    "[::1]:smtp inet n       -       n       -       -       smtpd\n"
    "pickup    unix  n       -       y       60      1       pickup\n"
    "cleanup   unix  n       -       y       -       0       cleanup\n"
    "qmgr      unix  n       -       n       300     1       qmgr\n"
    "flush     unix  n       -       y       1000?   0       flush\n"
    "rewrite   unix  -       -       y       -       -       trivial-rewrite\n"
    "local     unix  -       n       n       -       -       local\n"
    "smtp      unix  -       -       y       -       -       smtp\n"
    "relay     unix  -       -       y       -       -       smtp\n"
    "        -o syslog_name=postern/$service_name\n"
    "maildrop  unix  -       n       n       -       -       pipe\n"
    "  flags=DRXhu user=vmail argv=/usr/bin/maildrop -d ${recipient} -o x=y\n"
    "qmgrfifo  fifo  n       -       n       -       1       qmgr\n"
    "tlsproxy  pass  -       -       y       -       0       tlsproxy\n";

static struct master_service *find(struct master_service *list, const char *name,
                                   const char *type)
{
    for (; list; list = list->next)
        if (strcmp(list->name, name) == 0 && strcmp(list->type_name, type) == 0)
            return list;
    return NULL;
}

START_TEST(sample_parses)
{
    struct master_service *list = NULL, *s;
    strbuf err;
    strbuf_init(&err);
    ck_assert_int_eq(master_cf_parse(sample_master_cf, "master.cf", &list, &err), 0);
    ck_assert_str_eq(strbuf_str(&err), "");
    int n = 0;
    for (s = list; s; s = s->next)
        n++;
    ck_assert_int_eq(n, 15);
    ck_assert_str_eq(list->name, "smtp");                   /* file order */

    s = find(list, "smtp", "inet");
    ck_assert_ptr_nonnull(s);
    ck_assert_int_eq(s->type, SERVICE_INET);
    ck_assert_int_eq(s->private_, 0);
    ck_assert_int_eq(s->unpriv, 1);
    ck_assert_int_eq(s->chroot, 1);
    ck_assert_int_eq(s->wakeup, 0);
    ck_assert_int_eq(s->wakeup_conditional, 0);
    ck_assert_int_eq(s->maxproc, -1);
    ck_assert_int_eq(s->argc, 1);
    ck_assert_str_eq(s->argv[0], "smtpd");
    ck_assert_ptr_null(s->argv[1]);
    ck_assert_int_eq(s->noverrides, 0);
    ck_assert_int_eq(s->line, 8);

    s = find(list, "submission", "inet");
    ck_assert_ptr_nonnull(s);
    ck_assert_int_eq(s->line, 9);
    ck_assert_int_eq(s->noverrides, 4);
    ck_assert_str_eq(s->override_names[0], "syslog_name");
    ck_assert_str_eq(s->override_values[0], "postern/submission");
    ck_assert_str_eq(s->override_names[1], "smtpd_tls_security_level");
    ck_assert_str_eq(s->override_values[1], "encrypt");
    ck_assert_str_eq(s->override_names[2], "smtpd_client_restrictions");
    ck_assert_str_eq(s->override_values[2], "$mua_client_restrictions");
    ck_assert_str_eq(s->override_names[3], "milter_macro_daemon_name");
    ck_assert_str_eq(s->override_values[3], "");
    ck_assert_int_eq(s->argc, 9);               /* smtpd + 4 x (-o, n=v) */
    ck_assert_str_eq(s->argv[1], "-o");
    ck_assert_str_eq(s->argv[2], "syslog_name=postern/submission");
    ck_assert_ptr_null(s->argv[9]);

    s = find(list, "127.0.0.1:2525", "inet");
    ck_assert_ptr_nonnull(s);
    ck_assert_int_eq(s->chroot, 0);
    ck_assert_int_eq(s->maxproc, 4);
    ck_assert_int_eq(s->argc, 2);
    ck_assert_str_eq(s->argv[1], "-v");
    ck_assert_ptr_nonnull(find(list, "[::1]:smtp", "inet"));

    s = find(list, "pickup", "unix");
    ck_assert_int_eq(s->private_, 0);
    ck_assert_int_eq(s->wakeup, 60);
    ck_assert_int_eq(s->wakeup_conditional, 0);
    ck_assert_int_eq(s->maxproc, 1);

    s = find(list, "cleanup", "unix");
    ck_assert_int_eq(s->maxproc, 0);

    s = find(list, "flush", "unix");
    ck_assert_int_eq(s->wakeup, 1000);
    ck_assert_int_eq(s->wakeup_conditional, 1);

    s = find(list, "rewrite", "unix");
    ck_assert_int_eq(s->private_, 1);
    ck_assert_str_eq(s->argv[0], "trivial-rewrite");

    s = find(list, "local", "unix");
    ck_assert_int_eq(s->unpriv, 0);
    ck_assert_int_eq(s->chroot, 0);

    /* smtp/inet and smtp/unix are different services. */
    s = find(list, "smtp", "unix");
    ck_assert_ptr_nonnull(s);
    ck_assert_str_eq(s->argv[0], "smtp");

    s = find(list, "relay", "unix");
    ck_assert_int_eq(s->noverrides, 1);
    ck_assert_str_eq(s->override_values[0], "postern/$service_name");

    /* pipe-style arguments after the options are not overrides. */
    s = find(list, "maildrop", "unix");
    ck_assert_int_eq(s->noverrides, 0);
    ck_assert_int_eq(s->argc, 8);
    ck_assert_str_eq(s->argv[3], "argv=/usr/bin/maildrop");
    ck_assert_str_eq(s->argv[6], "-o");

    s = find(list, "qmgrfifo", "fifo");
    ck_assert_int_eq(s->type, SERVICE_FIFO);
    s = find(list, "tlsproxy", "pass");
    ck_assert_int_eq(s->type, SERVICE_PASS);

    master_cf_free(list);
    strbuf_release(&err);
}
END_TEST

/* Parse TEXT, expect failure, return the error text. */
static const char *fails(const char *text)
{
    static strbuf err;
    struct master_service *list = (struct master_service *) 1;
    strbuf_reset(&err);
    ck_assert_int_eq(master_cf_parse(text, "/x/master.cf", &list, &err), -1);
    ck_assert_ptr_null(list);
    return strbuf_str(&err);
}

#define OK_LINE "smtp inet n - n - - smtpd\n"

START_TEST(bad_fields)
{
    ck_assert_str_eq(fails(OK_LINE "x bogus n - n - - cmd\n"),
                     "/x/master.cf, line 2: bad transport type: bogus");
    ck_assert_str_eq(fails("x unix-dgram n - n - - cmd\n"),
                     "/x/master.cf, line 1: bad transport type: unix-dgram");
    ck_assert_str_eq(fails("x unix n - n - lots cmd\n"),
                     "/x/master.cf, line 1: bad maxproc field: lots");
    ck_assert_str_eq(fails("x unix n - n - -1 cmd\n"),
                     "/x/master.cf, line 1: bad maxproc field: -1");
    ck_assert_str_eq(fails("x unix n - n - 99999999999 cmd\n"),
                     "/x/master.cf, line 1: bad maxproc field: 99999999999");
    ck_assert_str_eq(fails("x unix yes - n - - cmd\n"),
                     "/x/master.cf, line 1: bad private field: yes");
    ck_assert_str_eq(fails("x unix n Y n - - cmd\n"),
                     "/x/master.cf, line 1: bad unprivileged field: Y");
    ck_assert_str_eq(fails("x unix n - 1 - - cmd\n"),
                     "/x/master.cf, line 1: bad chroot field: 1");
    ck_assert_str_eq(fails("x unix n - n 5s - cmd\n"),
                     "/x/master.cf, line 1: bad wakeup field: 5s");
    ck_assert_str_eq(fails("x unix n - n ? - cmd\n"),
                     "/x/master.cf, line 1: bad wakeup field: ?");
    ck_assert_str_eq(fails("x unix n - n 5?? - cmd\n"),
                     "/x/master.cf, line 1: bad wakeup field: 5??");
    ck_assert_str_eq(fails("x unix n - n -5 - cmd\n"),
                     "/x/master.cf, line 1: bad wakeup field: -5");
    ck_assert_str_eq(fails("25 inet y - n - - smtpd\n"),
                     "/x/master.cf, line 1: inet service 25 cannot be private");
}
END_TEST

START_TEST(missing_fields)
{
    ck_assert_str_eq(fails(OK_LINE "\n# c\nx unix n - n - -\n"),
                     "/x/master.cf, line 4: missing command field");
    ck_assert_str_eq(fails("x unix n - n\n"),
                     "/x/master.cf, line 1: too few fields (5, need 7 and a command)");
    ck_assert_str_eq(fails("x\n"), "/x/master.cf, line 1: too few fields (1, need 7 and a command)");
    /* Continuation lines make one entry, reported at its first line. */
    ck_assert_str_eq(fails(OK_LINE "x unix\n  n -\n\n  n - -\n"),
                     "/x/master.cf, line 2: missing command field");
    ck_assert_str_eq(fails("  x unix n - n - - cmd\n"),
                     "/x/master.cf, line 1: continuation line (starts with whitespace) "
                     "without a preceding service");
}
END_TEST

START_TEST(service_names)
{
    const char *good[] = { "25", "smtp", "127.0.0.1:25", "[::1]:25", "[2001:db8::1]:submission",
                           "mail.example.com:smtp", "*:2525", "65535" };
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        strbuf text, err;
        strbuf_init(&text);
        strbuf_init(&err);
        strbuf_printf(&text, "%s inet n - n - - smtpd\n", good[i]);
        struct master_service *list = NULL;
        ck_assert_msg(master_cf_parse(text.data, "m", &list, &err) == 0, "%s: %s", good[i],
                      strbuf_str(&err));
        ck_assert_str_eq(list->name, good[i]);
        master_cf_free(list);
        strbuf_release(&text);
        strbuf_release(&err);
    }
    ck_assert_str_eq(fails("::1:25 inet n - n - - smtpd\n"),
                     "/x/master.cf, line 1: bad service name for type inet: ::1:25: "
                     "IPv6 address must be in brackets");
    ck_assert_str_eq(fails(":25 inet n - n - - smtpd\n"),
                     "/x/master.cf, line 1: bad service name for type inet: :25: "
                     "missing host before ':'");
    ck_assert_str_eq(fails("fe80::1:25 inet n - n - - smtpd\n"),
                     "/x/master.cf, line 1: bad service name for type inet: fe80::1:25: "
                     "IPv6 address must be in brackets");
    ck_assert_str_eq(fails("host: inet n - n - - smtpd\n"),
                     "/x/master.cf, line 1: bad service name for type inet: host:: bad port");
    ck_assert_str_eq(fails("0 inet n - n - - smtpd\n"),
                     "/x/master.cf, line 1: bad service name for type inet: 0: bad port");
    ck_assert_str_eq(fails("65536 inet n - n - - smtpd\n"),
                     "/x/master.cf, line 1: bad service name for type inet: 65536: bad port");
    ck_assert_str_eq(fails("[::1] inet n - n - - smtpd\n"),
                     "/x/master.cf, line 1: bad service name for type inet: [::1]: "
                     "missing ':port' after bracketed address");
    ck_assert_str_eq(fails("[::1:25 inet n - n - - smtpd\n"),
                     "/x/master.cf, line 1: bad service name for type inet: [::1:25: "
                     "bad bracketed address");
    ck_assert_str_eq(fails("[zz]:25 inet n - n - - smtpd\n"),
                     "/x/master.cf, line 1: bad service name for type inet: [zz]:25: "
                     "bad character in bracketed address");
    ck_assert_str_eq(fails("ho/st:25 inet n - n - - smtpd\n"),
                     "/x/master.cf, line 1: bad service name for type inet: ho/st:25: "
                     "bad character in host name");
    ck_assert_str_eq(fails("private/x unix n - n - - cmd\n"),
                     "/x/master.cf, line 1: bad service name for type unix: private/x");
    ck_assert_str_eq(fails(".. unix n - n - - cmd\n"),
                     "/x/master.cf, line 1: bad service name for type unix: ..");
}
END_TEST

START_TEST(duplicates)
{
    ck_assert_str_eq(fails("a unix - - - - - x\nb unix - - - - - x\n\na unix - - - - - y\n"),
                     "/x/master.cf, line 4: duplicate service a/unix (first defined at line 1)");
    ck_assert_str_eq(fails(OK_LINE "smtp inet n - n - - smtpd\n"),
                     "/x/master.cf, line 2: duplicate service smtp/inet (first defined at line 1)");
}
END_TEST

START_TEST(override_syntax)
{
    ck_assert_str_eq(fails("x unix - - - - - cmd -o\n"),
                     "/x/master.cf, line 1: missing name=value after -o");
    ck_assert_str_eq(fails("x unix - - - - - cmd -o name\n"),
                     "/x/master.cf, line 1: bad -o argument (need name=value): name");
    ck_assert_str_eq(fails("x unix - - - - - cmd -o =value\n"),
                     "/x/master.cf, line 1: bad -o argument (need name=value): =value");
    ck_assert_str_eq(fails("x unix - - - - - cmd -o bad-name=value\n"),
                     "/x/master.cf, line 1: bad -o argument (need name=value): bad-name=value");
    /* "-o name = value" splits into three words: "name" has no '='. */
    ck_assert_str_eq(fails("x unix - - - - - cmd -o name = value\n"),
                     "/x/master.cf, line 1: bad -o argument (need name=value): name");
    ck_assert_str_eq(fails("x unix - - - - - cmd -oname=value\n"),
                     "/x/master.cf, line 1: write \"-o name=value\" as two words: -oname=value");

    struct master_service *list = NULL;
    strbuf err;
    strbuf_init(&err);
    ck_assert_int_eq(master_cf_parse("x unix - - - - - cmd -v -o a=b=c -o e= -- -o not=this\n",
                                     "m", &list, &err), 0);
    ck_assert_int_eq(list->noverrides, 2);
    ck_assert_str_eq(list->override_names[0], "a");
    ck_assert_str_eq(list->override_values[0], "b=c");
    ck_assert_str_eq(list->override_names[1], "e");
    ck_assert_str_eq(list->override_values[1], "");
    ck_assert_int_eq(list->argc, 9);
    master_cf_free(list);
    strbuf_release(&err);
}
END_TEST

START_TEST(nul_and_empty)
{
    struct master_service *list = (struct master_service *) 1;
    strbuf err;
    strbuf_init(&err);
    ck_assert_int_eq(master_cf_parse("", "m", &list, &err), 0);
    ck_assert_ptr_null(list);
    ck_assert_int_eq(master_cf_parse("# only\n\n   \n", "m", &list, &err), 0);
    ck_assert_ptr_null(list);

    char path[] = "/tmp/postern-master-cf-test.XXXXXX";
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    static const char data[] = "a unix - - - - - x\nb unix - - - - - y\0z\n";
    ck_assert_int_eq(write(fd, data, sizeof(data) - 1), (ssize_t) sizeof(data) - 1);
    close(fd);
    ck_assert_int_eq(master_cf_load(path, &list, &err), -1);
    strbuf expected;
    strbuf_init(&expected);
    strbuf_printf(&expected, "%s, line 2: NUL byte in file", path);
    ck_assert_str_eq(strbuf_str(&err), strbuf_str(&expected));
    ck_assert_ptr_null(list);

    FILE *fp = fopen(path, "w");
    fputs(sample_master_cf, fp);
    fclose(fp);
    strbuf_reset(&err);
    ck_assert_int_eq(master_cf_load(path, &list, &err), 0);
    ck_assert_ptr_nonnull(list);
    master_cf_free(list);
    unlink(path);

    strbuf_reset(&err);
    ck_assert_int_eq(master_cf_load("/nonexistent/master.cf", &list, &err), -1);
    ck_assert_str_eq(strbuf_str(&err), "open /nonexistent/master.cf: No such file or directory");
    strbuf_release(&expected);
    strbuf_release(&err);
}
END_TEST

START_TEST(long_entry)
{
    /* A 100 KB argument list parses; every -o is collected. */
    strbuf text, err;
    strbuf_init(&text);
    strbuf_init(&err);
    strbuf_append_str(&text, "x unix - - - - - cmd\n");
    for (int i = 0; i < 5000; i++)
        strbuf_appendf(&text, "  -o p%d=value%d\n", i, i);
    struct master_service *list = NULL;
    ck_assert_int_eq(master_cf_parse(text.data, "m", &list, &err), 0);
    ck_assert_int_eq(list->noverrides, 5000);
    ck_assert_str_eq(list->override_names[4999], "p4999");
    ck_assert_str_eq(list->override_values[4999], "value4999");
    master_cf_free(list);
    strbuf_release(&text);
    strbuf_release(&err);
}
END_TEST

START_TEST(brace_groups)
{
    struct master_service *list = NULL;
    strbuf err;
    strbuf_init(&err);
    const char *text =
        "submission inet n - n - - smtpd\n"
        "  -o { smtpd_client_restrictions = permit_sasl_authenticated, reject }\n"
        "  -o {syslog_name=postern/sub}\n"
        "  -o { empty_value = }\n"
        "  -o plain=one\n"
        "  { an argument {with} blanks } last\n";
    ck_assert_int_eq(master_cf_parse(text, "m", &list, &err), 0);
    ck_assert_int_eq(list->noverrides, 4);
    ck_assert_str_eq(list->override_names[0], "smtpd_client_restrictions");
    ck_assert_str_eq(list->override_values[0], "permit_sasl_authenticated, reject");
    ck_assert_str_eq(list->override_names[1], "syslog_name");
    ck_assert_str_eq(list->override_values[1], "postern/sub");
    ck_assert_str_eq(list->override_names[2], "empty_value");
    ck_assert_str_eq(list->override_values[2], "");
    ck_assert_str_eq(list->override_values[3], "one");
    ck_assert_int_eq(list->argc, 11);
    ck_assert_str_eq(list->argv[2], "smtpd_client_restrictions=permit_sasl_authenticated, reject");
    ck_assert_str_eq(list->argv[4], "syslog_name=postern/sub");
    ck_assert_str_eq(list->argv[6], "empty_value=");
    ck_assert_str_eq(list->argv[9], "an argument {with} blanks");
    ck_assert_str_eq(list->argv[10], "last");
    master_cf_free(list);

    ck_assert_str_eq(fails("x unix - - - - - cmd -o { a = b\n"),
                     "/x/master.cf, line 1: missing '}' in argument: { a = b");
    ck_assert_str_eq(fails("x unix - - - - - cmd -o { a = b }c\n"),
                     "/x/master.cf, line 1: text after '}' in argument: { a = b }");
    ck_assert_str_eq(fails("x unix - - - - - cmd -o { a b }\n"),
                     "/x/master.cf, line 1: bad -o argument (need { name = value }): {a b}");
    ck_assert_str_eq(fails("x unix - - - - - cmd -o { = b }\n"),
                     "/x/master.cf, line 1: bad -o argument (need { name = value }): {= b}");
    /* Braces in the first seven columns are not groups. */
    ck_assert_str_eq(fails("{x y} unix - - - - - cmd\n"),
                     "/x/master.cf, line 1: bad transport type: y}");
    /* A group ends the options: a later -o is an ordinary argument. */
    ck_assert_int_eq(master_cf_parse("x unix - - - - - cmd { -v } -o a=b\n", "m", &list, &err), 0);
    ck_assert_int_eq(list->noverrides, 0);
    ck_assert_str_eq(list->argv[1], "-v");
    master_cf_free(list);
    strbuf_release(&err);
}
END_TEST

START_TEST(random_input_never_crashes)
{
    static const char *pieces[] = {
        "smtp", "inet", "unix", "fifo", "pass", "x", "n", "y", "-", "0", "60?", "100",
        "cmd", "-o", "a=b", "=", "[::1]:25", "127.0.0.1:", ":", "?", " ", "\t", "\n",
        "\n  ", "#", "\x80", "-oa=b", "--", "argv=/bin/x", "9999999999", "{", "}",
        "{ a = b }", "{a=", "}x"
    };
    unsigned state = 4242;
    strbuf text, err;
    strbuf_init(&text);
    strbuf_init(&err);
    int bad = 0;
    for (int round = 0; round < 3000; round++) {
        strbuf_reset(&text);
        int n = 1 + (int) ((state = state * 1103515245u + 12345u) >> 16) % 40;
        for (int i = 0; i < n; i++) {
            state = state * 1103515245u + 12345u;
            strbuf_append_str(&text, pieces[(state >> 16) % (sizeof(pieces) / sizeof(pieces[0]))]);
            strbuf_append_char(&text, ' ');
        }
        struct master_service *list = NULL;
        strbuf_reset(&err);
        if (master_cf_parse(text.data, "m", &list, &err) == 0) {
            for (struct master_service *s = list; s; s = s->next) {
                ck_assert_int_ge(s->argc, 1);
                ck_assert_ptr_null(s->argv[s->argc]);
            }
            master_cf_free(list);
        } else {
            bad++;
            ck_assert_ptr_null(list);
            ck_assert_msg(strncmp(strbuf_str(&err), "m, line ", 8) == 0, "%s", strbuf_str(&err));
        }
    }
    ck_assert_int_gt(bad, 100);
    strbuf_release(&text);
    strbuf_release(&err);
}
END_TEST

Suite *master_cf_suite(void)
{
    Suite *s = suite_create("master_cf");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, sample_parses);
    tcase_add_test(tc, bad_fields);
    tcase_add_test(tc, missing_fields);
    tcase_add_test(tc, service_names);
    tcase_add_test(tc, duplicates);
    tcase_add_test(tc, override_syntax);
    tcase_add_test(tc, nul_and_empty);
    tcase_add_test(tc, long_entry);
    tcase_add_test(tc, brace_groups);
    tcase_add_test(tc, random_input_never_crashes);
    suite_add_tcase(s, tc);
    return s;
}
