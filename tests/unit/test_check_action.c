/*
 * test_check_action.c - unit tests for common/check_action.c: parsing of
 * header_checks / body_checks results, good and malformed.
 */
#include <check.h>
#include <string.h>

#include "check_action.h"

static void text_is(const struct check_action *a, const char *expect)
{
    ck_assert_uint_eq(a->text_len, strlen(expect));
    ck_assert_int_eq(memcmp(a->text, expect, a->text_len), 0);
}

START_TEST(reject_defaults)
{
    struct check_action a;
    ck_assert_int_eq(check_action_parse("REJECT", &a), 0);
    ck_assert_int_eq(a.action, CHECK_REJECT);
    ck_assert_int_eq(a.status, 5);
    ck_assert_str_eq(a.dsn, "5.7.1");
    text_is(&a, "Message content rejected");

    ck_assert_int_eq(check_action_parse("reject  no spam here  ", &a), 0);
    ck_assert_int_eq(a.action, CHECK_REJECT);
    ck_assert_int_eq(a.status, 5);
    ck_assert_str_eq(a.dsn, "5.7.1");
    text_is(&a, "no spam here");
}
END_TEST

START_TEST(reject_with_status_code)
{
    struct check_action a;
    ck_assert_int_eq(check_action_parse("REJECT 4.7.0 try later", &a), 0);
    ck_assert_int_eq(a.status, 4);
    ck_assert_str_eq(a.dsn, "4.7.0");
    text_is(&a, "try later");

    ck_assert_int_eq(check_action_parse("REJECT 5.2.300", &a), 0);
    ck_assert_int_eq(a.status, 5);
    ck_assert_str_eq(a.dsn, "5.2.300");
    text_is(&a, "Message content rejected");

    /* not codes: kept as text, default code */
    ck_assert_int_eq(check_action_parse("REJECT 2.0.0 fine", &a), 0);
    ck_assert_str_eq(a.dsn, "5.7.1");
    text_is(&a, "2.0.0 fine");
    ck_assert_int_eq(check_action_parse("REJECT 5.7.1234 x", &a), 0);
    ck_assert_str_eq(a.dsn, "5.7.1");
    text_is(&a, "5.7.1234 x");
    ck_assert_int_eq(check_action_parse("REJECT 5.7.1x", &a), 0);
    ck_assert_str_eq(a.dsn, "5.7.1");
    text_is(&a, "5.7.1x");
    ck_assert_int_eq(check_action_parse("REJECT 5..1 x", &a), 0);
    ck_assert_str_eq(a.dsn, "5.7.1");
}
END_TEST

START_TEST(other_actions)
{
    struct check_action a;
    ck_assert_int_eq(check_action_parse("DISCARD", &a), 0);
    ck_assert_int_eq(a.action, CHECK_DISCARD);
    ck_assert_int_eq(check_action_parse("hold suspicious", &a), 0);
    ck_assert_int_eq(a.action, CHECK_HOLD);
    text_is(&a, "suspicious");
    ck_assert_int_eq(check_action_parse("IGNORE", &a), 0);
    ck_assert_int_eq(a.action, CHECK_IGNORE);
    ck_assert_int_eq(check_action_parse("Warn logged only", &a), 0);
    ck_assert_int_eq(a.action, CHECK_WARN);
    text_is(&a, "logged only");
    ck_assert_int_eq(check_action_parse("PREPEND X-Seen: yes", &a), 0);
    ck_assert_int_eq(a.action, CHECK_PREPEND);
    text_is(&a, "X-Seen: yes");
    ck_assert_int_eq(check_action_parse("REPLACE X-New: 1", &a), 0);
    ck_assert_int_eq(a.action, CHECK_REPLACE);
    text_is(&a, "X-New: 1");
    ck_assert_int_eq(check_action_parse("DUNNO", &a), 0);
    ck_assert_int_eq(a.action, CHECK_DUNNO);
    ck_assert_int_eq(check_action_parse("  OK", &a), 0);
    ck_assert_int_eq(a.action, CHECK_DUNNO);
    ck_assert_str_eq(check_action_name(CHECK_WARN), "warning");
    ck_assert_str_eq(check_action_name(CHECK_REJECT), "reject");
}
END_TEST

START_TEST(malformed_results)
{
    struct check_action a;
    ck_assert_int_eq(check_action_parse("", &a), -1);
    ck_assert_int_eq(a.action, CHECK_UNKNOWN);
    ck_assert_int_eq(check_action_parse("   ", &a), -1);
    ck_assert_int_eq(check_action_parse("REJECTED", &a), -1);
    ck_assert_int_eq(check_action_parse("REJ", &a), -1);
    ck_assert_int_eq(check_action_parse("FILTER smtp:x", &a), -1);
    ck_assert_int_eq(check_action_parse("PREPEND", &a), -1);
    ck_assert_int_eq(check_action_parse("REPLACE   ", &a), -1);
    ck_assert_int_eq(a.action, CHECK_UNKNOWN);
}
END_TEST

Suite *check_action_suite(void)
{
    Suite *s = suite_create("check_action");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, reject_defaults);
    tcase_add_test(tc, reject_with_status_code);
    tcase_add_test(tc, other_actions);
    tcase_add_test(tc, malformed_results);
    suite_add_tcase(s, tc);
    return s;
}
