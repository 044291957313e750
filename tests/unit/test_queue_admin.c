/*
 * test_queue_admin.c - unit tests for the pieces behind `postern queue`:
 * common/json.c (string escaping), common/queue_select.c (argument parser
 * and address patterns), common/queue_admin.c (file surgery) and
 * common/queue_list.c (listing records), the last two in a scratch spool.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "defer_log.h"
#include "ipc.h"
#include "json.h"
#include "mem.h"
#include "queue.h"
#include "queue_admin.h"
#include "queue_list.h"
#include "queue_select.h"

static char *json_of(const char *s, size_t len)
{
    strbuf out;
    strbuf_init(&out);
    json_append_string(&out, s, len);
    return strbuf_detach(&out, NULL);
}

START_TEST(json_escapes)
{
    struct { const char *in; size_t len; const char *want; } cases[] = {
        { "plain", 5, "\"plain\"" },
        { "a\"b\\c", 5, "\"a\\\"b\\\\c\"" },
        { "t\tn\nr\r", 6, "\"t\\tn\\nr\\r\"" },
        { "\x01\x1f\x7f", 3, "\"\\u0001\\u001f\\u007f\"" },
        { "nul\0x", 5, "\"nul\\u0000x\"" },
        { "caf\xc3\xa9", 5, "\"caf\xc3\xa9\"" },                   /* valid UTF-8 kept */
        { "\xf0\x9f\x93\xa7", 4, "\"\xf0\x9f\x93\xa7\"" },           /* 4-byte kept */
        { "l\xe9", 2, "\"l\\ufffd\"" },                             /* Latin-1 byte */
        { "\xc0\xaf", 2, "\"\\ufffd\\ufffd\"" },                    /* overlong */
        { "\xed\xa0\x80", 3, "\"\\ufffd\\ufffd\\ufffd\"" },         /* surrogate */
        { "\xf4\x90\x80\x80", 4, "\"\\ufffd\\ufffd\\ufffd\\ufffd\"" }, /* > U+10FFFF */
        { "\xe2\x82", 2, "\"\\ufffd\\ufffd\"" },                    /* truncated */
        { "", 0, "\"\"" },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *got = json_of(cases[i].in, cases[i].len);
        ck_assert_msg(strcmp(got, cases[i].want) == 0, "case %zu: got %s want %s", i, got,
                      cases[i].want);
        xfree(got);
    }
}
END_TEST

static int parse(struct queue_select *s, const char *const *args, strbuf *err)
{
    int n = 0;
    while (args[n])
        n++;
    queue_select_init(s);
    return queue_select_parse(s, n, (char **) args, err);
}

START_TEST(select_parse_good)
{
    struct queue_select s;
    strbuf err;
    strbuf_init(&err);
    const char *a1[] = { "06925A3F1B0C2E41A7F", "--from", "a@b.example", "--to=.c.example",
                         "06925A3F0B0C2E41A7E", NULL };
    ck_assert_int_eq(parse(&s, a1, &err), 0);
    ck_assert_int_eq(s.nids, 2);
    ck_assert_str_eq(s.ids[0], "06925A3F0B0C2E41A7E");      /* sorted */
    ck_assert_str_eq(s.from, "a@b.example");
    ck_assert_str_eq(s.to, ".c.example");
    ck_assert_int_eq(queue_select_any(&s), 1);
    ck_assert_int_eq(queue_select_id(&s, "06925A3F1B0C2E41A7F"), 1);
    ck_assert_int_eq(queue_select_id(&s, "06925A3F1B0C2E41A70"), 0);
    queue_select_free(&s);

    const char *a2[] = { "ALL", NULL };
    ck_assert_int_eq(parse(&s, a2, &err), 0);
    ck_assert_int_eq(s.all, 1);
    ck_assert_int_eq(queue_select_id(&s, "06925A3F1B0C2E41A70"), 1);
    queue_select_free(&s);

    const char *a3[] = { NULL };
    ck_assert_int_eq(parse(&s, a3, &err), 0);
    ck_assert_int_eq(queue_select_any(&s), 0);
    ck_assert_int_eq(queue_select_id(&s, "06925A3F1B0C2E41A70"), 1);
    queue_select_free(&s);

    const char *a4[] = { "--from", "<>", NULL };
    ck_assert_int_eq(parse(&s, a4, &err), 0);
    ck_assert_int_eq(queue_select_envelope(&s, "", NULL, 0), 1);
    ck_assert_int_eq(queue_select_envelope(&s, "x@y", NULL, 0), 0);
    queue_select_free(&s);
    strbuf_release(&err);
}
END_TEST

START_TEST(select_parse_bad)
{
    struct { const char *args[4]; const char *why; } cases[] = {
        { { "--from", NULL }, "--from needs" },
        { { "--to", NULL }, "--to needs" },
        { { "--from=", NULL }, "empty address pattern" },
        { { "--to", "a b", NULL }, "bad character" },
        { { "--to", "a\tb", NULL }, "bad character" },
        { { "--to", "<a@b>", NULL }, "bad character" },
        { { "--to", "user@", NULL }, "no domain" },
        { { "--to", "a@.b", NULL }, "bad domain" },
        { { "--to", "a..b", NULL }, "bad domain" },
        { { "--to", ".", NULL }, "bad domain" },
        { { "-x", NULL }, "unknown option -x" },
        { { "--all", NULL }, "unknown option --all" },
        { { "all", NULL }, "bad queue id" },
        { { "../etc/passwd", NULL }, "bad queue id" },
        { { "06925a3f1b0c2e41a7f", NULL }, "bad queue id" },
        { { "", NULL }, "bad queue id" },
    };
    strbuf err;
    strbuf_init(&err);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct queue_select s;
        strbuf_reset(&err);
        ck_assert_msg(parse(&s, cases[i].args, &err) == -1, "case %zu accepted", i);
        ck_assert_msg(strstr(strbuf_str(&err), cases[i].why) != NULL, "case %zu: %s", i,
                      strbuf_str(&err));
        queue_select_free(&s);
    }
    char *longp = xmalloc(1100);
    memset(longp, 'a', 1099);
    longp[1099] = '\0';
    ck_assert_int_eq(queue_select_pattern_check(longp, &err), -1);
    xfree(longp);
    strbuf_release(&err);
}
END_TEST

START_TEST(select_patterns)
{
    ck_assert_int_eq(queue_select_addr_match("Bob@Example.COM", "bob@example.com"), 1);
    ck_assert_int_eq(queue_select_addr_match("bob@example.com", "bobby@example.com"), 0);
    ck_assert_int_eq(queue_select_addr_match("example.com", "x@EXAMPLE.com"), 1);
    ck_assert_int_eq(queue_select_addr_match("@example.com", "x@example.com"), 1);
    ck_assert_int_eq(queue_select_addr_match("example.com", "x@sub.example.com"), 0);
    ck_assert_int_eq(queue_select_addr_match(".example.com", "x@sub.example.com"), 1);
    ck_assert_int_eq(queue_select_addr_match(".example.com", "x@example.com"), 0);
    ck_assert_int_eq(queue_select_addr_match(".example.com", "x@badexample.com"), 0);
    ck_assert_int_eq(queue_select_addr_match("example.com", ""), 0);
    ck_assert_int_eq(queue_select_addr_match("<>", ""), 1);
    ck_assert_int_eq(queue_select_addr_match("example.com", "\"a@b\"@example.com"), 1);
    ck_assert_int_eq(queue_select_addr_match("localhost", "root"), 0);

    struct queue_select s;
    queue_select_init(&s);
    s.to = xstrdup("two.example");
    const char *rcpts[] = { "a@one.example", "b@two.example" };
    ck_assert_int_eq(queue_select_envelope(&s, "x@y", rcpts, 2), 1);
    ck_assert_int_eq(queue_select_envelope(&s, "x@y", rcpts, 1), 0);
    s.from = xstrdup("y");
    ck_assert_int_eq(queue_select_envelope(&s, "x@y", rcpts, 2), 1);
    ck_assert_int_eq(queue_select_envelope(&s, "x@z", rcpts, 2), 0);
    queue_select_free(&s);
}
END_TEST

START_TEST(action_names)
{
    ck_assert_int_eq(queue_admin_action_parse("delete"), QA_DELETE);
    ck_assert_int_eq(queue_admin_action_parse("hold"), QA_HOLD);
    ck_assert_int_eq(queue_admin_action_parse("release"), QA_RELEASE);
    ck_assert_int_eq(queue_admin_action_parse("requeue"), QA_REQUEUE);
    ck_assert_int_eq(queue_admin_action_parse("Delete"), QA_NONE);
    ck_assert_int_eq(queue_admin_action_parse(""), QA_NONE);
    ck_assert_str_eq(queue_admin_done_text(QA_HOLD), "placed on hold");
    ck_assert_str_eq(queue_admin_action_name(QA_NONE), "");
}
END_TEST

/* ---- scratch spool ---- */

static char spool[64];
static char oldcwd[4096];

static void spool_setup(void)
{
    snprintf(spool, sizeof(spool), "/tmp/test-qadmin-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(spool));
    ck_assert_int_eq(queue_dirs_create(spool, getuid(), getgid(), getgid()), 0);
    ck_assert_ptr_nonnull(getcwd(oldcwd, sizeof(oldcwd)));
    ck_assert_int_eq(chdir(spool), 0);
}

static void spool_teardown(void)
{
    ck_assert_int_eq(chdir(oldcwd), 0);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", spool);
    ck_assert_int_eq(system(cmd), 0);
}

/* A committed message in incoming/; returns its id (static buffer). */
static const char *make_message(const char *sender, const char *const *rcpts, int n)
{
    static char qid[QUEUE_ID_MAX];
    strbuf err;
    strbuf_init(&err);
    queue_writer *w = queue_writer_create("incoming", &err);
    ck_assert_ptr_nonnull(w);
    queue_writer_record_str(w, QREC_VERSION, "1");
    queue_writer_record_str(w, QREC_TIME, "1764000000 5");
    queue_writer_record_str(w, QREC_SENDER, sender);
    for (int i = 0; i < n; i++) {
        strbuf r;
        strbuf_init(&r);
        strbuf_printf(&r, "-%s", rcpts[i]);
        queue_writer_record(w, QREC_RCPT, r.data, r.len);
        strbuf_release(&r);
    }
    queue_writer_content_begin(w);
    queue_writer_line(w, "Subject: x", 10);
    queue_writer_line(w, "", 0);
    queue_writer_line(w, "body", 4);
    queue_writer_content_end(w);
    ck_assert_int_eq(queue_writer_commit(w, &err), 0);
    snprintf(qid, sizeof(qid), "%s", queue_writer_id(w));
    queue_writer_abort(w);
    strbuf_release(&err);
    return qid;
}

static int exists(const char *queue, const char *qid)
{
    strbuf p;
    strbuf_init(&p);
    queue_path(&p, queue, qid);
    struct stat st;
    int rc = stat(strbuf_str(&p), &st) == 0;
    strbuf_release(&p);
    return rc;
}

START_TEST(apply_moves_and_deletes)
{
    const char *rcpts[] = { "bob@example.com" };
    char qid[QUEUE_ID_MAX];
    snprintf(qid, sizeof(qid), "%s", make_message("a@example.org", rcpts, 1));
    ck_assert_int_eq(queue_admin_apply(QA_REQUEUE, "incoming", qid), 0);   /* already */
    ck_assert_int_eq(queue_admin_apply(QA_RELEASE, "incoming", qid), 0);   /* not held */
    ck_assert_int_eq(queue_admin_apply(QA_HOLD, "incoming", qid), 1);
    ck_assert(exists("hold", qid) && !exists("incoming", qid));
    ck_assert_int_eq(queue_admin_apply(QA_HOLD, "hold", qid), 0);
    ck_assert_int_eq(queue_admin_apply(QA_HOLD, "incoming", qid), -1);     /* moved */
    ck_assert_int_eq(errno, ENOENT);
    ck_assert_int_eq(queue_admin_apply(QA_RELEASE, "hold", qid), 1);
    ck_assert(exists("deferred", qid));
    strbuf p;
    strbuf_init(&p);
    queue_path(&p, "deferred", qid);
    struct stat st;
    ck_assert_int_eq(stat(strbuf_str(&p), &st), 0);
    ck_assert(st.st_mtime >= time(NULL) - 60);                  /* due now */
    /* requeue: to requeue/, for pickup to pass through cleanup again */
    ck_assert_int_eq(queue_admin_apply(QA_REQUEUE, "deferred", qid), 1);
    ck_assert(exists("requeue", qid) && !exists("deferred", qid));
    ck_assert_int_eq(queue_admin_apply(QA_REQUEUE, "requeue", qid), 0);     /* already */
    ck_assert_int_eq(queue_admin_apply(QA_HOLD, "requeue", qid), 1);
    ck_assert_int_eq(queue_admin_apply_nosync(QA_REQUEUE, "hold", qid), 1);
    ck_assert_int_eq(queue_admin_sync(), 0);
    ck_assert(exists("requeue", qid) && !exists("hold", qid));
    queue_path(&p, "defer", qid);
    ck_assert_int_eq(defer_log_append(strbuf_str(&p), "bob@example.com", "4.0.0", "none", "x"), 0);
    ck_assert_int_eq(queue_admin_apply(QA_DELETE, "requeue", qid), 1);
    ck_assert(!exists("requeue", qid) && !exists("defer", qid));
    ck_assert_int_eq(queue_admin_apply(QA_DELETE, "requeue", qid), -1);
    ck_assert_int_eq(errno, ENOENT);
    strbuf_release(&p);
}
END_TEST

static int collect(const ipc_record *r, void *ctx)
{
    strbuf *out = ctx;
    for (size_t i = 0; i < r->n; i++)
        strbuf_appendf(out, "%s=%s;", r->attrs[i].name, strbuf_str(&r->attrs[i].value));
    strbuf_append_char(out, '\n');
    return 0;
}

START_TEST(list_records)
{
    const char *rcpts[] = { "bob@example.com", "carol@example.com" };
    char qid[QUEUE_ID_MAX];
    snprintf(qid, sizeof(qid), "%s", make_message("", rcpts, 2));
    ck_assert_int_eq(queue_admin_apply(QA_RELEASE, "hold", qid), -1);    /* not there */
    ck_assert_int_eq(queue_move(qid, "incoming", "deferred"), 0);
    strbuf p, out, want;
    strbuf_init(&p);
    strbuf_init(&out);
    strbuf_init(&want);
    queue_path(&p, "defer", qid);
    ck_assert_int_eq(defer_log_append(strbuf_str(&p), "carol@example.com", "4.4.1", "none",
                                      "first"), 0);
    ck_assert_int_eq(defer_log_append(strbuf_str(&p), "carol@example.com", "4.4.1", "none",
                                      "second"), 0);
    ck_assert_int_eq(defer_log_append(strbuf_str(&p), "zed@example.com", "4.4.1", "none",
                                      "unknown rcpt"), 0);
    /* A file that is not a queue file is skipped, not listed. */
    int fd = open("hold/06925A3F1B0C2E41A7F", O_WRONLY | O_CREAT, 0600);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, "garbage", 7), 7);
    close(fd);
    /* maildrop: a postdrop record stream (bare recipients), and a
     * malformed one that is skipped. */
    static const char drop[] = "V1:1\nT12:1764000001 0\nS8:u@x.test\nR8:r@y.test\n"
                               "L6:Hello!\nE0:\n";
    fd = open("maildrop/06925A3F2B0C2E41A7F", O_WRONLY | O_CREAT, 0600);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, drop, sizeof(drop) - 1), (ssize_t) sizeof(drop) - 1);
    close(fd);
    fd = open("maildrop/06925A3F3B0C2E41A7F", O_WRONLY | O_CREAT, 0600);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, "S1:x\nE0:\n", 10), 10);
    close(fd);
    ck_assert_int_eq(queue_list_walk(collect, &out), 0);
    strbuf_printf(&want, "queue_name=maildrop;queue_id=06925A3F2B0C2E41A7F;"
                  "arrival_time=1764000001;message_size=%zu;sender=u@x.test;"
                  "rcpt=r@y.test;delay_reason=;\n", sizeof(drop) - 1);
    strbuf_appendf(&want, "queue_name=deferred;queue_id=%s;arrival_time=1764000000;"
                  "message_size=20;sender=;rcpt=bob@example.com;delay_reason=;"
                  "rcpt=carol@example.com;delay_reason=second;\n", qid);
    ck_assert_str_eq(strbuf_str(&out), strbuf_str(&want));
    strbuf_release(&p);
    strbuf_release(&out);
    strbuf_release(&want);
}
END_TEST

Suite *queue_admin_suite(void)
{
    Suite *s = suite_create("queue_admin");
    TCase *tc = tcase_create("pure");
    tcase_add_test(tc, json_escapes);
    tcase_add_test(tc, select_parse_good);
    tcase_add_test(tc, select_parse_bad);
    tcase_add_test(tc, select_patterns);
    tcase_add_test(tc, action_names);
    suite_add_tcase(s, tc);
    TCase *fs = tcase_create("spool");
    tcase_add_checked_fixture(fs, spool_setup, spool_teardown);
    tcase_add_test(fs, apply_moves_and_deletes);
    tcase_add_test(fs, list_records);
    suite_add_tcase(s, fs);
    return s;
}
