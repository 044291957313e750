/*
 * test_dsn.c - unit tests for common/dsn.c (delivery status notices),
 * common/defer_log.c (per-message deferral log) and common/mail_date.c.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "dsn.h"
#include "defer_log.h"
#include "mail_date.h"
#include "mem.h"

/* Line source over a NULL-terminated array. */
struct lines { const char *const *v; int i; int fail_at; };

static int next_line(void *ctx, strbuf *line, strbuf *err)
{
    struct lines *l = ctx;
    if (l->fail_at >= 0 && l->i == l->fail_at) {
        strbuf_set_str(err, "read error");
        return -1;
    }
    if (l->v[l->i] == NULL)
        return 0;
    strbuf_set_str(line, l->v[l->i++]);
    return 1;
}

static const char *const original[] = {
    "From: alice@example.org", "Subject: hello", "", "body line 1",
    "--h.example", "body line 3", NULL,
};

/* Count occurrences of needle in hay. */
static int count(const char *hay, const char *needle)
{
    int n = 0;
    for (const char *p = hay; (p = strstr(p, needle)) != NULL; p += strlen(needle))
        n++;
    return n;
}

static struct dsn_report base_report(struct dsn_rcpt_report *rc, int n)
{
    struct dsn_report r = {
        .kind = DSN_KIND_FAILURE, .myhostname = "h.example",
        .queue_id = "6925A3F1B0C2E41A7F", .sender = "alice@example.org",
        .notify_to = "alice@example.org", .arrival = 1764098825,
        .now = 1764099000, .rcpts = rc, .nrcpt = n,
    };
    return r;
}

START_TEST(failure_notice_structure)
{
    struct dsn_rcpt_report rc[2] = {
        { .address = "bob@far.example", .orcpt = "rfc822;Bob@far.example",
          .status = "5.1.1", .remote_mta = "mx.far.example", .diag_type = "smtp",
          .reason = "host mx.far.example[192.0.2.1] said: 550 5.1.1 no such user (in reply to RCPT TO command)" },
        { .address = "carol@h.example", .status = "5.0.0",
          .reason = "User unknown\r\nInjected: header" },
    };
    struct dsn_report r = base_report(rc, 2);
    struct lines l = { original, 0, -1 };
    strbuf out, err;
    strbuf_init(&out);
    strbuf_init(&err);
    ck_assert_int_eq(dsn_compose(&r, next_line, &l, &out, &err), 0);
    const char *s = strbuf_str(&out);
    ck_assert_ptr_nonnull(strstr(s, "From: MAILER-DAEMON@h.example (Mail Delivery System)\n"));
    ck_assert_ptr_nonnull(strstr(s, "Subject: Undelivered Mail Returned to Sender\n"));
    ck_assert_ptr_nonnull(strstr(s, "Content-Type: multipart/report; report-type=delivery-status;\n\tboundary=\"6925A3F1B0C2E41A7F.1764099000/h.example\"\n"));
    ck_assert_ptr_nonnull(strstr(s, "Reporting-MTA: dns; h.example\n"));
    ck_assert_ptr_nonnull(strstr(s, "X-Postern-Queue-ID: 6925A3F1B0C2E41A7F\n"));
    ck_assert_ptr_nonnull(strstr(s, "Final-Recipient: rfc822; bob@far.example\n"));
    ck_assert_ptr_nonnull(strstr(s, "Original-Recipient: rfc822;Bob@far.example\n"));
    ck_assert_ptr_nonnull(strstr(s, "Action: failed\nStatus: 5.1.1\n"));
    ck_assert_ptr_nonnull(strstr(s, "Remote-MTA: dns; mx.far.example\n"));
    ck_assert_ptr_nonnull(strstr(s, "Diagnostic-Code: smtp; 550 5.1.1 no such user\n"));
    ck_assert_ptr_nonnull(strstr(s, "Diagnostic-Code: x-unix; User unknown??Injected: header\n"));
    ck_assert_ptr_null(strstr(s, "\nInjected"));
    ck_assert_ptr_nonnull(strstr(s, "Content-Type: message/rfc822\n"));
    /* The whole original comes back, body included. */
    ck_assert_ptr_nonnull(strstr(s, "\nbody line 1\n--h.example\nbody line 3\n"));
    /* Three parts, one closing delimiter. */
    ck_assert_int_eq(count(s, "\n--6925A3F1B0C2E41A7F.1764099000/h.example\n"), 3);
    ck_assert_int_eq(count(s, "\n--6925A3F1B0C2E41A7F.1764099000/h.example--\n"), 1);
    strbuf_release(&out);
    strbuf_release(&err);
}
END_TEST

START_TEST(boundary_avoids_content)
{
    const char *const tricky[] = {
        "Subject: x", "", "--6925A3F1B0C2E41A7F.1764099000/h.example", NULL,
    };
    struct dsn_rcpt_report rc = { .address = "b@x", .status = "5.0.0", .reason = "no" };
    struct dsn_report r = base_report(&rc, 1);
    struct lines l = { tricky, 0, -1 };
    strbuf out, err;
    strbuf_init(&out);
    strbuf_init(&err);
    ck_assert_int_eq(dsn_compose(&r, next_line, &l, &out, &err), 0);
    ck_assert_ptr_nonnull(strstr(strbuf_str(&out), "boundary=\"6925A3F1B0C2E41A7F.1764099000.1/h.example\""));
    strbuf_release(&out);
    strbuf_release(&err);
}
END_TEST

START_TEST(headers_only_and_kinds)
{
    struct dsn_rcpt_report rc = { .address = "b@x", .status = "2.0.0", .reason = "delivered to mailbox" };
    struct dsn_report r = base_report(&rc, 1);
    r.kind = DSN_KIND_SUCCESS;
    struct lines l = { original, 0, -1 };
    strbuf out, err;
    strbuf_init(&out);
    strbuf_init(&err);
    ck_assert_int_eq(dsn_compose(&r, next_line, &l, &out, &err), 0);
    const char *s = strbuf_str(&out);
    ck_assert_ptr_nonnull(strstr(s, "Subject: Successful Mail Delivery Report\n"));
    ck_assert_ptr_nonnull(strstr(s, "Action: delivered\nStatus: 2.0.0\n"));
    ck_assert_ptr_nonnull(strstr(s, "Content-Type: text/rfc822-headers\n"));
    ck_assert_ptr_null(strstr(s, "body line 1"));
    ck_assert_ptr_nonnull(strstr(s, "Subject: hello\n"));

    strbuf_reset(&out);
    r.kind = DSN_KIND_DELAY;
    r.retry_until = r.arrival + 5 * 86400;
    l.i = 0;
    ck_assert_int_eq(dsn_compose(&r, next_line, &l, &out, &err), 0);
    s = strbuf_str(&out);
    ck_assert_ptr_nonnull(strstr(s, "Subject: Delayed Mail (still being retried)\n"));
    ck_assert_ptr_nonnull(strstr(s, "Action: delayed\n"));
    ck_assert_ptr_nonnull(strstr(s, "Will-Retry-Until: "));

    strbuf_reset(&out);
    r.kind = DSN_KIND_FAILURE;
    r.headers_only = 1;
    l.i = 0;
    ck_assert_int_eq(dsn_compose(&r, next_line, &l, &out, &err), 0);
    ck_assert_ptr_null(strstr(strbuf_str(&out), "body line"));
    ck_assert_ptr_nonnull(strstr(strbuf_str(&out), "Undelivered Message Headers"));
    strbuf_release(&out);
    strbuf_release(&err);
}
END_TEST

START_TEST(read_error_propagates)
{
    struct dsn_rcpt_report rc = { .address = "b@x", .status = "5.0.0", .reason = "no" };
    struct dsn_report r = base_report(&rc, 1);
    struct lines l = { original, 0, 2 };
    strbuf out, err;
    strbuf_init(&out);
    strbuf_init(&err);
    ck_assert_int_eq(dsn_compose(&r, next_line, &l, &out, &err), -1);
    ck_assert_str_eq(strbuf_str(&err), "read error");
    strbuf_release(&out);
    strbuf_release(&err);
}
END_TEST

START_TEST(long_diagnostic_is_folded)
{
    char reason[400];
    memset(reason, 0, sizeof(reason));
    for (int i = 0; i < 40; i++)
        strcat(reason, "word1234 ");
    struct dsn_rcpt_report rc = { .address = "b@x", .status = "5.0.0", .reason = reason };
    struct dsn_report r = base_report(&rc, 1);
    strbuf out, err;
    strbuf_init(&out);
    strbuf_init(&err);
    ck_assert_int_eq(dsn_compose(&r, NULL, NULL, &out, &err), 0);
    /* No line of the report is longer than 78 + fold slack. */
    const char *s = strbuf_str(&out);
    for (const char *p = s; *p;) {
        const char *nl = strchr(p, '\n');
        size_t len = nl ? (size_t) (nl - p) : strlen(p);
        ck_assert_uint_le(len, 80);
        p += len + (nl ? 1 : 0);
    }
    ck_assert_ptr_nonnull(strstr(s, "Diagnostic-Code: x-unix; word1234"));
    ck_assert_ptr_nonnull(strstr(s, "\n    word1234"));
    strbuf_release(&out);
    strbuf_release(&err);
}
END_TEST

START_TEST(overlong_tokens_keep_lines_legal)
{
    /* One 3000-octet token as address and reason: no line may pass
     * RFC 5322's 998 octets, and nothing outside ASCII may appear. */
    char *big = xmalloc(3001);
    memset(big, 'x', 3000);
    big[3000] = '\0';
    big[10] = '\x80';
    struct dsn_rcpt_report rc = { .address = big, .status = "5.0.0", .reason = big,
                                  .diag_type = "smtp", .remote_mta = big, .orcpt = big };
    struct dsn_report r = base_report(&rc, 1);
    r.notify_to = big;
    r.envid = big;
    strbuf out, err;
    strbuf_init(&out);
    strbuf_init(&err);
    ck_assert_int_eq(dsn_compose(&r, NULL, NULL, &out, &err), 0);
    size_t col = 0, longest = 0;
    for (size_t i = 0; i < out.len; i++) {
        unsigned char c = (unsigned char) out.data[i];
        ck_assert_msg(c == '\n' || c == '\t' || (c >= 0x20 && c < 0x7f), "byte %u at %zu", c, i);
        col = c == '\n' ? 0 : col + 1;
        if (col > longest)
            longest = col;
    }
    ck_assert_uint_le(longest, 998);
    ck_assert_uint_gt(longest, 800);        /* the token was cut, not dropped */
    strbuf_release(&out);
    strbuf_release(&err);
    xfree(big);
}
END_TEST

START_TEST(notify_parsing)
{
    ck_assert_int_eq(dsn_notify_parse(NULL), DSN_NOTIFY_DEFAULT);
    ck_assert_int_eq(dsn_notify_parse(""), DSN_NOTIFY_DEFAULT);
    ck_assert_int_eq(dsn_notify_parse("NEVER"), DSN_NOTIFY_NEVER);
    ck_assert_int_eq(dsn_notify_parse("success,Failure"), DSN_NOTIFY_SUCCESS | DSN_NOTIFY_FAILURE);
    ck_assert_int_eq(dsn_notify_parse("DELAY"), DSN_NOTIFY_DELAY);
    ck_assert_int_eq(dsn_notify_parse("NEVER,SUCCESS"), DSN_NOTIFY_NEVER);
    ck_assert_int_eq(dsn_notify_parse(",,bogus,"), DSN_NOTIFY_DEFAULT);
    ck_assert_int_eq(dsn_notify_parse("SUCCESSX"), DSN_NOTIFY_DEFAULT);
}
END_TEST

START_TEST(diagnostic_and_remote_mta)
{
    strbuf out;
    strbuf_init(&out);
    dsn_diagnostic("host a[1.2.3.4] said: 452 4.2.2 full (in reply to RCPT TO command)", &out);
    ck_assert_str_eq(strbuf_str(&out), "452 4.2.2 full");
    dsn_diagnostic("connection refused", &out);
    ck_assert_str_eq(strbuf_str(&out), "connection refused");
    ck_assert_int_eq(dsn_remote_mta("mx.x.example[192.0.2.1]:25", &out), 1);
    ck_assert_str_eq(strbuf_str(&out), "mx.x.example");
    ck_assert_int_eq(dsn_remote_mta("local", &out), 0);
    ck_assert_int_eq(dsn_remote_mta("none", &out), 0);
    ck_assert_int_eq(dsn_remote_mta("", &out), 0);
    ck_assert_int_eq(dsn_remote_mta("[192.0.2.1]", &out), 0);
    strbuf_release(&out);
}
END_TEST

START_TEST(mail_date_shape)
{
    setenv("TZ", "UTC", 1);
    tzset();
    strbuf out;
    strbuf_init(&out);
    mail_date_format(&out, 1764098825);
    ck_assert_str_eq(strbuf_str(&out), "Tue, 25 Nov 2025 19:27:05 +0000 (UTC)");
    strbuf_release(&out);
}
END_TEST

struct collected { int n; int warnings; char last_reason[200]; char last_rcpt[100]; };

static void collect(const struct defer_entry *e, void *ctx)
{
    struct collected *c = ctx;
    if (e->type == DEFER_ENTRY_WARNING) {
        c->warnings++;
        return;
    }
    c->n++;
    snprintf(c->last_reason, sizeof(c->last_reason), "%s", e->reason);
    snprintf(c->last_rcpt, sizeof(c->last_rcpt), "%s", e->recipient);
}

START_TEST(defer_log_roundtrip)
{
    char path[] = "/tmp/test_defer_log_XXXXXX";
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    close(fd);
    unlink(path);
    struct collected c = { 0 };
    ck_assert_int_eq(defer_log_read(path, collect, &c), 0);   /* missing file */
    ck_assert_int_eq(c.n, 0);
    ck_assert_int_eq(defer_log_append(path, "a@x", "4.4.1", "mx[1.2.3.4]", "connection refused"), 0);
    ck_assert_int_eq(defer_log_append(path, "b@x", "4.3.0", NULL, "evil\treason\nD\t1\tforged"), 0);
    ck_assert_int_eq(defer_log_append_warning(path, 12345), 0);
    /* A garbage line in the middle is skipped and counted. */
    FILE *fp = fopen(path, "a");
    fputs("Z\tjunk\n", fp);
    fputs("D\t12\tonly-three\n", fp);
    fclose(fp);
    ck_assert_int_eq(defer_log_read(path, collect, &c), 2);
    ck_assert_int_eq(c.n, 2);
    ck_assert_int_eq(c.warnings, 1);
    ck_assert_str_eq(c.last_rcpt, "b@x");
    ck_assert_str_eq(c.last_reason, "evil?reason?D?1?forged");
    unlink(path);
}
END_TEST

START_TEST(defer_log_malformed_lines)
{
    struct defer_entry e;
    defer_entry_init(&e);
    const char *bad[] = {
        "", "D", "W", "W\t", "W\tx1", "W\t12\textra", "D\t1\ta\tb\tc",
        "D\t1\t\t4.0.0\tnone\treason", "DD\t1\ta\tb\tc\td",
        "D\t-1\ta\tb\tc\td", "D\t1\ta\tb\tc\td\te", "X\t1",
        "W\t1234567890123456789012",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        ck_assert_msg(defer_log_parse_line(bad[i], strlen(bad[i]), &e) == -1,
                      "accepted: %s", bad[i]);
    ck_assert_int_eq(defer_log_parse_line("W\t1\0", 4, &e), -1);
    ck_assert_int_eq(defer_log_parse_line("D\t7\tr@x\t4.1.1\tnone\twhy not", 26, &e), 0);
    ck_assert_int_eq(e.type, DEFER_ENTRY_DEFER);
    ck_assert_int_eq(e.when, 7);
    ck_assert_str_eq(e.recipient, "r@x");
    ck_assert_str_eq(e.dsn, "4.1.1");
    ck_assert_str_eq(e.relay, "none");
    ck_assert_str_eq(e.reason, "why not");
    ck_assert_int_eq(defer_log_parse_line("W\t99", 4, &e), 0);
    ck_assert_int_eq(e.type, DEFER_ENTRY_WARNING);
    ck_assert_int_eq(e.when, 99);
    defer_entry_release(&e);
}
END_TEST

Suite *dsn_suite(void)
{
    Suite *s = suite_create("dsn");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, failure_notice_structure);
    tcase_add_test(tc, boundary_avoids_content);
    tcase_add_test(tc, headers_only_and_kinds);
    tcase_add_test(tc, read_error_propagates);
    tcase_add_test(tc, long_diagnostic_is_folded);
    tcase_add_test(tc, overlong_tokens_keep_lines_legal);
    tcase_add_test(tc, notify_parsing);
    tcase_add_test(tc, diagnostic_and_remote_mta);
    tcase_add_test(tc, mail_date_shape);
    tcase_add_test(tc, defer_log_roundtrip);
    tcase_add_test(tc, defer_log_malformed_lines);
    suite_add_tcase(s, tc);
    return s;
}
