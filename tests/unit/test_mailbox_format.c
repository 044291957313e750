/*
 * test_mailbox_format.c - unit tests for common/mailbox_format.c: the mbox
 * separator line and quoting, Maildir names, Delivered-To recognition.
 */
#include <check.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mailbox_format.h"

START_TEST(from_line_asctime_utc)
{
    setenv("TZ", "UTC", 1);
    tzset();
    strbuf sb;
    strbuf_init(&sb);
    /* 2026-11-25 19:27:05 UTC is a Wednesday */
    mbox_from_line(&sb, "alice@example.org", (time_t)1795634825);
    ck_assert_str_eq(strbuf_str(&sb), "From alice@example.org Wed Nov 25 19:27:05 2026\n");
    strbuf_reset(&sb);
    /* day of month padded with a space, as asctime does */
    mbox_from_line(&sb, "", (time_t)0);
    ck_assert_str_eq(strbuf_str(&sb), "From MAILER-DAEMON Thu Jan  1 00:00:00 1970\n");
    strbuf_reset(&sb);
    mbox_from_line(&sb, "\"a b\"@x\ty", (time_t)0);
    ck_assert_str_eq(strbuf_str(&sb), "From \"a_b\"@x_y Thu Jan  1 00:00:00 1970\n");
    strbuf_release(&sb);
}
END_TEST

static const char *quoted(strbuf *sb, const char *line)
{
    strbuf_reset(sb);
    mbox_quote_line(sb, line, strlen(line));
    return strbuf_str(sb);
}

START_TEST(from_quoting)
{
    strbuf sb;
    strbuf_init(&sb);
    ck_assert_str_eq(quoted(&sb, "From here on"), ">From here on");
    ck_assert_str_eq(quoted(&sb, ">From here on"), ">>From here on");
    ck_assert_str_eq(quoted(&sb, ">>>From x"), ">>>>From x");
    ck_assert_str_eq(quoted(&sb, "From "), ">From ");
    ck_assert_str_eq(quoted(&sb, "From"), "From");
    ck_assert_str_eq(quoted(&sb, "From:"), "From:");
    ck_assert_str_eq(quoted(&sb, " From x"), " From x");
    ck_assert_str_eq(quoted(&sb, "from x"), "from x");
    ck_assert_str_eq(quoted(&sb, ">"), ">");
    ck_assert_str_eq(quoted(&sb, ""), "");
    ck_assert_str_eq(quoted(&sb, "> From x"), "> From x");
    /* length bounds the test: "From" followed by a space past len is not seen */
    ck_assert_int_eq(mbox_needs_quote("From x", 4), 0);
    ck_assert_int_eq(mbox_needs_quote("From x", 5), 1);
    strbuf_release(&sb);
}
END_TEST

START_TEST(maildir_names)
{
    strbuf sb;
    strbuf_init(&sb);
    maildir_unique_name(&sb, 1795634825LL, 42, 1234, 7, "mail.example.org");
    ck_assert_str_eq(strbuf_str(&sb), "1795634825.M42P1234Q7.mail.example.org");
    maildir_unique_name(&sb, 1, 0, 2, 0, "a/b:c");
    ck_assert_str_eq(strbuf_str(&sb), "1.M0P2Q0.a\\057b\\072c");
    strbuf_release(&sb);
}
END_TEST

START_TEST(delivered_to_header)
{
    strbuf v;
    strbuf_init(&v);
    const char *h = "Delivered-To: alice@example.org  ";
    ck_assert_int_eq(header_delivered_to(h, strlen(h), &v), 1);
    ck_assert_str_eq(strbuf_str(&v), "alice@example.org");
    h = "delivered-to :bob@x\r";
    ck_assert_int_eq(header_delivered_to(h, strlen(h), &v), 1);
    ck_assert_str_eq(strbuf_str(&v), "bob@x");
    h = "Delivered-To:";
    ck_assert_int_eq(header_delivered_to(h, strlen(h), &v), 1);
    ck_assert_str_eq(strbuf_str(&v), "");
    h = "Delivered-Tox: a";
    ck_assert_int_eq(header_delivered_to(h, strlen(h), &v), 0);
    h = "X-Delivered-To: a";
    ck_assert_int_eq(header_delivered_to(h, strlen(h), &v), 0);
    h = "Delivered-To";
    ck_assert_int_eq(header_delivered_to(h, strlen(h), &v), 0);
    h = "Delivered";
    ck_assert_int_eq(header_delivered_to(h, strlen(h), &v), 0);
    /* len bounds the name */
    ck_assert_int_eq(header_delivered_to("Delivered-To: a", 11, &v), 0);
    strbuf_release(&v);
}
END_TEST

Suite *mailbox_format_suite(void)
{
    Suite *s = suite_create("mailbox_format");
    TCase *tc = tcase_create("format");
    tcase_add_test(tc, from_line_asctime_utc);
    tcase_add_test(tc, from_quoting);
    tcase_add_test(tc, maildir_names);
    tcase_add_test(tc, delivered_to_header);
    suite_add_tcase(s, tc);
    return s;
}
