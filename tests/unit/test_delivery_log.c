/*
 * test_delivery_log.c - unit tests for common/delivery_log.c: the exact
 * outcome line, Postfix's delay numbers, and the request times (round trip
 * and malformed values).
 */
#include <check.h>
#include <math.h>
#include <string.h>

#include "delivery_log.h"
#include "ipc.h"
#include "strbuf.h"

static void check_delay(double s, const char *want)
{
    strbuf sb;
    strbuf_init(&sb);
    delivery_format_delay(&sb, s);
    ck_assert_msg(strcmp(strbuf_str(&sb), want) == 0, "%g: got \"%s\", want \"%s\"", s,
                  strbuf_str(&sb), want);
    strbuf_release(&sb);
}

START_TEST(delay_numbers)
{
    check_delay(0, "0");
    check_delay(0.004, "0");
    check_delay(-3, "0");
    check_delay(NAN, "0");
    check_delay(0.01, "0.01");
    check_delay(0.1, "0.1");
    check_delay(0.25, "0.25");
    check_delay(1, "1");
    check_delay(1.5, "1.5");
    check_delay(9.99, "9.99");
    check_delay(9.999, "10");
    check_delay(10, "10");
    check_delay(125.4, "125");
    check_delay(125.6, "126");
    check_delay(1e300, "999999999999");
}
END_TEST

START_TEST(line_exact)
{
    struct delivery_times t = { .arrival = 1000, .active = 1000.25, .request = 1001.5,
                                .session = 1001.5 };
    strbuf sb;
    strbuf_init(&sb);
    delivery_log_format(&sb, "4F2A1B", "u@h.example", NULL, "local", &t, 1012.25, "2.0.0",
                        "sent", "delivered to maildir");
    ck_assert_str_eq(strbuf_str(&sb),
                     "4F2A1B: to=<u@h.example>, relay=local, delay=12, "
                     "delays=0.25/1.25/0/11, dsn=2.0.0, status=sent (delivered to maildir)");

    strbuf_reset(&sb);
    struct delivery_times r = { .arrival = 1000, .active = 1000, .request = 1000.5,
                                .session = 1002.75 };
    delivery_log_format(&sb, "Q1", "r@x.example", "rfc822;Alias@x.example",
                        "mx1.example.net[192.0.2.1]:25", &r, 1003, "2.0.0", "sent",
                        "250 2.0.0 Ok: queued as X");
    ck_assert_str_eq(strbuf_str(&sb),
                     "Q1: to=<r@x.example>, orig_to=<Alias@x.example>, "
                     "relay=mx1.example.net[192.0.2.1]:25, delay=3, delays=0/0.5/2.25/0.25, "
                     "dsn=2.0.0, status=sent (250 2.0.0 Ok: queued as X)");
    strbuf_release(&sb);
}
END_TEST

START_TEST(line_defaults)
{
    struct delivery_times t = { 50, 50, 50, 50 };
    strbuf sb;
    strbuf_init(&sb);
    /* orcpt equal to the recipient but for case: no orig_to; bare orcpt */
    delivery_log_format(&sb, "Q", "a@b", "rfc822;A@B", "", &t, 50, "", "bounced", NULL);
    ck_assert_str_eq(strbuf_str(&sb), "Q: to=<a@b>, relay=none, delay=0, delays=0/0/0/0, "
                     "dsn=5.0.0, status=bounced ()");
    strbuf_reset(&sb);
    delivery_log_format(&sb, "Q", "a@b", "c@d", NULL, &t, 49, NULL, "deferred", "later");
    ck_assert_str_eq(strbuf_str(&sb), "Q: to=<a@b>, orig_to=<c@d>, relay=none, delay=0, "
                     "delays=0/0/0/0, dsn=4.0.0, status=deferred (later)");
    strbuf_reset(&sb);
    delivery_log_format(&sb, "Q", "a@b", NULL, "none", &t, 50, NULL, "sent", "discarded");
    ck_assert_str_eq(strbuf_str(&sb), "Q: to=<a@b>, relay=none, delay=0, "
                     "delays=0/0/0/0, dsn=2.0.0, status=sent (discarded)");
    strbuf_release(&sb);
}
END_TEST

START_TEST(times_round_trip)
{
    double now = delivery_now();
    struct delivery_times in = { .arrival = now - 100.25, .active = now - 3.5,
                                 .request = now - 0.125 };
    ipc_record *r = ipc_record_new();
    ipc_record_add_int(r, "arrival", (long long) (now - 100.25));
    delivery_times_add(r, &in);
    struct delivery_times out;
    delivery_times_get(r, now, &out);
    ck_assert(fabs(out.arrival - in.arrival) < 1e-5);
    ck_assert(fabs(out.active - in.active) < 1e-5);
    ck_assert(fabs(out.request - in.request) < 1e-5);
    ck_assert(out.session == now);
    ipc_record_free(r);
}
END_TEST

START_TEST(times_malformed)
{
    double now = 2000000000.0;
    struct delivery_times t;

    /* nothing at all: every stage is now */
    ipc_record *r = ipc_record_new();
    delivery_times_get(r, now, &t);
    ck_assert(t.arrival == now && t.active == now && t.request == now && t.session == now);
    ipc_record_free(r);

    /* only the old arrival=SEC; garbage and negative values ignored */
    r = ipc_record_new();
    ipc_record_add_int(r, "arrival", 1999999000);
    ipc_record_add_str(r, "arrival_us", "12x");
    ipc_record_add_int(r, "active_us", -5);
    ipc_record_add_str(r, "request_us", "");
    delivery_times_get(r, now, &t);
    ck_assert(t.arrival == 1999999000.0);
    ck_assert(t.active == t.arrival && t.request == t.arrival);
    ipc_record_free(r);

    /* out of order or far in the future: the previous stage's time */
    r = ipc_record_new();
    ipc_record_add_int(r, "arrival", 1999999999999LL);
    ipc_record_add_int(r, "arrival_us", 1999999000LL * 1000000);
    ipc_record_add_int(r, "active_us", 1999998000LL * 1000000);
    ipc_record_add_int(r, "request_us", 2000001000LL * 1000000);
    delivery_times_get(r, now, &t);
    ck_assert(t.arrival == 1999999000.0);
    ck_assert(t.active == t.arrival);
    ck_assert(t.request == t.active);
    ipc_record_free(r);

    /* a future arrival= with no arrival_us falls back to now */
    r = ipc_record_new();
    ipc_record_add_int(r, "arrival", 9000000000LL);
    delivery_times_get(r, now, &t);
    ck_assert(t.arrival == now);
    ipc_record_free(r);
}
END_TEST

Suite *delivery_log_suite(void)
{
    Suite *s = suite_create("delivery_log");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, delay_numbers);
    tcase_add_test(tc, line_exact);
    tcase_add_test(tc, line_defaults);
    tcase_add_test(tc, times_round_trip);
    tcase_add_test(tc, times_malformed);
    suite_add_tcase(s, tc);
    return s;
}
