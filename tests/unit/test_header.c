/*
 * test_header.c - unit tests for common/header.c: header field recognition,
 * unfolding, header sections, Message-Id formatting, Date (mail_date.c) in the header's
 * time zones, and
 * address-list rewriting (including malformed lists).
 */
#include <check.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "header.h"
#include "mail_date.h"
#include "strbuf.h"

#define S(lit) lit, sizeof(lit) - 1

START_TEST(name_length_valid)
{
    size_t off = 0;
    ck_assert_uint_eq(header_name_length(S("Subject: hi"), &off), 7);
    ck_assert_uint_eq(off, 8);
    ck_assert_uint_eq(header_name_length(S("X-Foo:"), &off), 5);
    ck_assert_uint_eq(off, 6);
    /* obsolete syntax: blanks before the colon */
    ck_assert_uint_eq(header_name_length(S("To \t: a@b"), &off), 2);
    ck_assert_uint_eq(off, 5);
}
END_TEST

START_TEST(name_length_invalid)
{
    size_t off = 99;
    ck_assert_uint_eq(header_name_length(S(""), &off), 0);
    ck_assert_uint_eq(header_name_length(S(": value"), &off), 0);
    ck_assert_uint_eq(header_name_length(S(" Subject: x"), &off), 0);
    ck_assert_uint_eq(header_name_length(S("From alice Mon Jan 1"), &off), 0);
    ck_assert_uint_eq(header_name_length(S("Subject"), &off), 0);
    ck_assert_uint_eq(header_name_length(S("Sub ject: x"), &off), 0);
    ck_assert_uint_eq(header_name_length(S("Sub\x01ject: x"), &off), 0);
    ck_assert_uint_eq(header_name_length(S("Sub\xc3\xa9: x"), &off), 0);
    ck_assert_uint_eq(off, 99);
    /* the colon must be inside len */
    ck_assert_uint_eq(header_name_length("To: x", 2, &off), 0);
}
END_TEST

START_TEST(name_is_case_insensitive)
{
    ck_assert_int_eq(header_name_is(S("message-ID: <x>"), "Message-Id"), 1);
    ck_assert_int_eq(header_name_is(S("Message-Ids: <x>"), "Message-Id"), 0);
    ck_assert_int_eq(header_name_is(S("Message: <x>"), "Message-Id"), 0);
    ck_assert_int_eq(header_name_is(S("\tBcc: x"), "Bcc"), 0);
    ck_assert_int_eq(header_is_continuation(S("\tmore")), 1);
    ck_assert_int_eq(header_is_continuation(S(" more")), 1);
    ck_assert_int_eq(header_is_continuation(S("more")), 0);
    ck_assert_int_eq(header_is_continuation(S("")), 0);
}
END_TEST

START_TEST(unfold_removes_line_breaks_only)
{
    strbuf out;
    strbuf_init(&out);
    header_unfold(S("Subject: one\n\ttwo\r\n three"), &out);
    ck_assert_str_eq(strbuf_str(&out), "Subject: one\ttwo three");
    header_unfold(S("X: plain"), &out);
    ck_assert_str_eq(strbuf_str(&out), "X: plain");
    header_unfold(S("\n\n"), &out);
    ck_assert_uint_eq(out.len, 0);
    strbuf_release(&out);
}
END_TEST

struct collected {
    int n;
    char items[8][64];
};

static void collect(const char *raw, size_t len, void *ctx)
{
    struct collected *c = ctx;
    if (c->n < 8 && len < 64) {
        memcpy(c->items[c->n], raw, len);
        c->items[c->n][len] = '\0';
    }
    c->n++;
}

START_TEST(parse_block_logical_headers)
{
    struct collected c = { 0 };
    const char text[] = "From: a@b\nSubject: one\n two\nTo: c@d\n\nbody\n";
    size_t stop = header_parse_block(S(text), collect, &c);
    ck_assert_int_eq(c.n, 3);
    ck_assert_str_eq(c.items[0], "From: a@b");
    ck_assert_str_eq(c.items[1], "Subject: one\n two");
    ck_assert_str_eq(c.items[2], "To: c@d");
    ck_assert_str_eq(text + stop, "\nbody\n");
}
END_TEST

START_TEST(parse_block_stops_at_non_header)
{
    struct collected c = { 0 };
    const char text[] = "X: 1\nnot a header line\nY: 2\n";
    size_t stop = header_parse_block(S(text), collect, &c);
    ck_assert_int_eq(c.n, 1);
    ck_assert_str_eq(c.items[0], "X: 1");
    ck_assert_str_eq(text + stop, "not a header line\nY: 2\n");

    /* a continuation with nothing to continue ends the section at once */
    struct collected d = { 0 };
    stop = header_parse_block(S(" orphan\nX: 1\n"), collect, &d);
    ck_assert_int_eq(d.n, 0);
    ck_assert_uint_eq(stop, 0);

    /* no final newline, empty input */
    struct collected e = { 0 };
    stop = header_parse_block(S("A: 1\n\tb"), collect, &e);
    ck_assert_int_eq(e.n, 1);
    ck_assert_str_eq(e.items[0], "A: 1\n\tb");
    ck_assert_uint_eq(stop, 7);
    struct collected f = { 0 };
    ck_assert_uint_eq(header_parse_block("", 0, collect, &f), 0);
    ck_assert_int_eq(f.n, 0);
}
END_TEST

START_TEST(date_format_utc)
{
    setenv("TZ", "UTC0", 1);
    tzset();
    strbuf out;
    strbuf_init(&out);
    strbuf_reset(&out);
    mail_date_format(&out, 0);
    ck_assert_str_eq(strbuf_str(&out), "Thu, 1 Jan 1970 00:00:00 +0000 (UTC)");
    strbuf_reset(&out);
    mail_date_format(&out, 1795627625);     /* 2026-11-25 17:27:05 UTC */
    ck_assert_str_eq(strbuf_str(&out), "Wed, 25 Nov 2026 17:27:05 +0000 (UTC)");
    strbuf_release(&out);
}
END_TEST

START_TEST(date_format_offsets)
{
    strbuf out;
    strbuf_init(&out);
    setenv("TZ", "IST-5:30", 1);
    tzset();
    strbuf_reset(&out);
    mail_date_format(&out, 0);
    ck_assert_str_eq(strbuf_str(&out), "Thu, 1 Jan 1970 05:30:00 +0530 (IST)");
    setenv("TZ", "EST5", 1);
    tzset();
    strbuf_reset(&out);
    mail_date_format(&out, 0);
    ck_assert_str_eq(strbuf_str(&out), "Wed, 31 Dec 1969 19:00:00 -0500 (EST)");
    setenv("TZ", "<+03>-3", 1);
    tzset();
    strbuf_reset(&out);
    mail_date_format(&out, 86400 * 59);     /* 1970-03-01 */
    ck_assert_str_eq(strbuf_str(&out), "Sun, 1 Mar 1970 03:00:00 +0300 (+03)");
    setenv("TZ", "UTC0", 1);
    tzset();
    strbuf_release(&out);
}
END_TEST

START_TEST(message_id_format)
{
    strbuf out;
    strbuf_init(&out);
    header_format_message_id("6925A3F1B0C2E41A7F", "mx.example.org", &out);
    ck_assert_str_eq(strbuf_str(&out), "<6925A3F1B0C2E41A7F@mx.example.org>");
    strbuf_release(&out);
}
END_TEST

/* Rewriter used by the tests: append "@origin" to addresses without '@',
 * and record what it saw. */
struct seen {
    int n;
    char addrs[8][64];
};

static int qualify(const char *addr, size_t len, strbuf *repl, void *ctx)
{
    struct seen *s = ctx;
    if (s->n < 8 && len < 64)
        memcpy(s->addrs[s->n], addr, len + 1);
    s->n++;
    if (memchr(addr, '@', len))
        return 0;
    strbuf_set(repl, addr, len);
    strbuf_append_str(repl, "@origin");
    return 1;
}

static void check_rewrite(const char *in, const char *expect, int expect_rc)
{
    struct seen s = { 0 };
    strbuf out;
    strbuf_init(&out);
    int rc = header_addr_rewrite(in, strlen(in), qualify, &s, &out);
    ck_assert_int_eq(rc, expect_rc);
    ck_assert_str_eq(strbuf_str(&out), expect);
    strbuf_release(&out);
}

START_TEST(addr_rewrite_forms)
{
    check_rewrite(" alice", " alice@origin", 1);
    check_rewrite(" alice@example.com", " alice@example.com", 0);
    check_rewrite(" Alice Smith <alice>", " Alice Smith <alice@origin>", 1);
    check_rewrite(" \"Smith, Alice\" <alice>, bob (Bob B)",
                  " \"Smith, Alice\" <alice@origin>, bob@origin (Bob B)", 2);
    check_rewrite(" friends: carol, dave@x.org;, erin",
                  " friends: carol@origin, dave@x.org;, erin@origin", 2);
    check_rewrite(" undisclosed-recipients:;", " undisclosed-recipients:;", 0);
    check_rewrite(" <@relay.example:frank>", " <@relay.example:frank@origin>", 1);
    check_rewrite(" a,\n\tb", " a@origin,\n\tb@origin", 2);
    check_rewrite(" \"john doe\"", " \"john doe\"@origin", 1);
    check_rewrite(" <>", " <>", 0);
    check_rewrite("", "", 0);
    /* a phrase without an address is not an address */
    check_rewrite(" John Doe", " John Doe", 0);
}
END_TEST

START_TEST(addr_rewrite_passes_addr_specs)
{
    struct seen s = { 0 };
    strbuf out;
    strbuf_init(&out);
    const char *in = " \"A, B\" <a@x.org>, (c) c@y.org (d), g: h@z.org;";
    ck_assert_int_eq(header_addr_rewrite(in, strlen(in), qualify, &s, &out), 0);
    ck_assert_int_eq(s.n, 3);
    ck_assert_str_eq(s.addrs[0], "a@x.org");
    ck_assert_str_eq(s.addrs[1], "c@y.org");
    ck_assert_str_eq(s.addrs[2], "h@z.org");
    ck_assert_str_eq(strbuf_str(&out), in);
    strbuf_release(&out);
}
END_TEST

START_TEST(addr_rewrite_malformed)
{
    /* Malformed lists are refused and copied unchanged. */
    check_rewrite(" \"unterminated <a>", " \"unterminated <a>", -1);
    check_rewrite(" (unclosed comment a", " (unclosed comment a", -1);
    check_rewrite(" (nested (comment) a", " (nested (comment) a", -1);
    check_rewrite(" <a", " <a", -1);
    check_rewrite(" a>", " a>", -1);
    check_rewrite(" <<a>>", " <<a>>", -1);
    check_rewrite(" a@[1.2.3.4", " a@[1.2.3.4", -1);
    check_rewrite(" \"trailing backslash\\", " \"trailing backslash\\", -1);
    /* An embedded NUL is just a byte: no crash, nothing read past len. */
    struct seen s = { 0 };
    strbuf out;
    strbuf_init(&out);
    int rc = header_addr_rewrite("a\0b, c", 6, qualify, &s, &out);
    ck_assert_int_ge(rc, 0);
    ck_assert_uint_ge(out.len, 6);
    strbuf_release(&out);
}
END_TEST

Suite *header_suite(void)
{
    Suite *s = suite_create("header");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, name_length_valid);
    tcase_add_test(tc, name_length_invalid);
    tcase_add_test(tc, name_is_case_insensitive);
    tcase_add_test(tc, unfold_removes_line_breaks_only);
    tcase_add_test(tc, parse_block_logical_headers);
    tcase_add_test(tc, parse_block_stops_at_non_header);
    tcase_add_test(tc, date_format_utc);
    tcase_add_test(tc, date_format_offsets);
    tcase_add_test(tc, message_id_format);
    tcase_add_test(tc, addr_rewrite_forms);
    tcase_add_test(tc, addr_rewrite_passes_addr_specs);
    tcase_add_test(tc, addr_rewrite_malformed);
    suite_add_tcase(s, tc);
    return s;
}
