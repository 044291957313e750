/*
 * test_watchdog.c - common/watchdog.c: when a pat arms the timer (disarmed,
 * or armed slack or more ago, the clock's tick counted in) and when a wait
 * disarms it (it could fire before the wait plus the margin is over;
 * always for an unbounded wait), with an injected clock.
 */
#include <check.h>

#include "watchdog.h"

START_TEST(slack_is_a_tenth_capped_at_a_minute)
{
    struct watchdog_plan w;
    watchdog_plan_init(&w, 2000, 5);
    ck_assert_int_eq(w.slack_ms, 200);
    watchdog_plan_init(&w, 18000LL * 1000, 5);
    ck_assert_int_eq(w.slack_ms, 60000);
}
END_TEST

START_TEST(pats_arm_once_per_slack)
{
    struct watchdog_plan w;
    watchdog_plan_init(&w, 18000LL * 1000, 4);     /* the default: slack 60 s */
    long long t = 1000000;
    ck_assert_int_eq(watchdog_plan_pat(&w, t), 1);  /* disarmed: arm */
    int calls = 0;
    /* A command every millisecond for 10 minutes: one arm per slack. */
    for (long long now = t + 1; now <= t + 600000; now++)
        calls += watchdog_plan_pat(&w, now);
    ck_assert_int_ge(calls, 10);
    ck_assert_int_le(calls, 11);
    /* Never skipped when the last arm is slack (less a tick) old. */
    long long armed = w.armed_at_ms;
    ck_assert_int_eq(watchdog_plan_pat(&w, armed + 60000 - 4 - 1), 0);
    ck_assert_int_eq(watchdog_plan_pat(&w, armed + 60000 - 4), 1);
    ck_assert_int_eq(w.armed_at_ms, armed + 60000 - 4);
}
END_TEST

START_TEST(short_timeout_pats_every_slack)
{
    struct watchdog_plan w;
    watchdog_plan_init(&w, 2000, 0);                /* the tests' 2 s: slack 200 ms */
    ck_assert_int_eq(watchdog_plan_pat(&w, 0), 1);
    ck_assert_int_eq(watchdog_plan_pat(&w, 199), 0);
    ck_assert_int_eq(watchdog_plan_pat(&w, 200), 1);
    ck_assert_int_eq(watchdog_plan_pat(&w, 700), 1); /* a line every 0.5 s */
}
END_TEST

START_TEST(waits_disarm_only_when_the_timer_could_fire)
{
    struct watchdog_plan w;
    watchdog_plan_init(&w, 18000LL * 1000, 4);
    ck_assert_int_eq(watchdog_plan_wait(&w, 0, -1), 0);     /* not armed: nothing */
    ck_assert_int_eq(watchdog_plan_pat(&w, 0), 1);
    /* qmgr's poll (<= 60 s) and an idle child's max_idle: the timer stays. */
    ck_assert_int_eq(watchdog_plan_wait(&w, 10, 60000), 0);
    ck_assert_int_eq(watchdog_plan_wait(&w, 10, 100000), 0);
    ck_assert_int_eq(watchdog_plan_pat(&w, 20), 0);         /* still armed: no call */
    /* A wait that reaches the expiry (with the margin and a tick) disarms. */
    long long expiry = 18000LL * 1000;
    ck_assert_int_eq(watchdog_plan_wait(&w, 0, expiry - WATCHDOG_WAIT_MARGIN_MS - 4 - 1), 0);
    ck_assert_int_eq(watchdog_plan_wait(&w, 0, expiry - WATCHDOG_WAIT_MARGIN_MS - 4), 1);
    ck_assert_int_eq(watchdog_plan_wait(&w, 0, -1), 0);     /* already disarmed */
    ck_assert_int_eq(watchdog_plan_pat(&w, 30), 1);         /* disarmed: arm again */
    ck_assert_int_eq(watchdog_plan_wait(&w, 30, -1), 1);    /* unbounded: disarm */
    ck_assert_int_eq(watchdog_plan_pat(&w, 31), 1);
}
END_TEST

START_TEST(short_timeout_waits)
{
    struct watchdog_plan w;
    watchdog_plan_init(&w, 2000, 0);
    ck_assert_int_eq(watchdog_plan_pat(&w, 0), 1);
    ck_assert_int_eq(watchdog_plan_wait(&w, 100, 0), 0);    /* a turn with more work */
    ck_assert_int_eq(watchdog_plan_wait(&w, 100, 1000), 1); /* 100 + 1000 + 1000 >= 2000 */
}
END_TEST

START_TEST(disarm_and_no_watchdog)
{
    struct watchdog_plan w;
    watchdog_plan_init(&w, 0, 4);                   /* daemon_timeout 0: nothing ever */
    ck_assert_int_eq(watchdog_plan_pat(&w, 0), 0);
    ck_assert_int_eq(watchdog_plan_wait(&w, 0, -1), 0);
    ck_assert_int_eq(watchdog_plan_disarm(&w), 0);
    watchdog_plan_init(&w, 5000, 4);
    ck_assert_int_eq(watchdog_plan_disarm(&w), 0);
    ck_assert_int_eq(watchdog_plan_pat(&w, 0), 1);
    ck_assert_int_eq(watchdog_plan_disarm(&w), 1);
    ck_assert_int_eq(watchdog_plan_disarm(&w), 0);
    ck_assert_int_eq(watchdog_plan_pat(&w, 1), 1);
}
END_TEST

Suite *watchdog_suite(void)
{
    Suite *s = suite_create("watchdog");
    TCase *tc = tcase_create("watchdog");
    tcase_add_test(tc, slack_is_a_tenth_capped_at_a_minute);
    tcase_add_test(tc, pats_arm_once_per_slack);
    tcase_add_test(tc, short_timeout_pats_every_slack);
    tcase_add_test(tc, waits_disarm_only_when_the_timer_could_fire);
    tcase_add_test(tc, short_timeout_waits);
    tcase_add_test(tc, disarm_and_no_watchdog);
    suite_add_tcase(s, tc);
    return s;
}
