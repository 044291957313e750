/*
 * watchdog.h - when the skeleton's watchdog timer needs a system call.
 *
 * The decisions behind server_watchdog_pat() and server_watchdog_pause_for()
 * (server.h), kept apart from the POSIX timer so that they can be tested
 * with an injected clock.  Times are milliseconds of CLOCK_MONOTONIC; the
 * caller reads a coarse clock (vDSO, no system call) whose value lags the
 * true time by at most tick_ms.
 *
 * A pat wants the timer armed (for timeout_ms) only when it is disarmed
 * or was armed slack_ms or more ago, slack_ms = min(timeout_ms / 10,
 * 60 s): most pats cost a clock read, and at most one timer_settime per
 * slack_ms is made.  The price: a process stuck right after a pat is ended
 * between timeout_ms - slack_ms and timeout_ms after that pat, not exactly
 * timeout_ms after it.  (The tick is counted in: the "at least timeout_ms
 * - slack_ms" holds against the true time.)
 *
 * A wait of at most max_wait_ms wants the timer disarmed only when it
 * could fire before the wait is over plus WATCHDOG_WAIT_MARGIN_MS (for the
 * clock's lag and a wait that overruns); an unbounded wait (max_wait_ms <
 * 0) always does.  After a wait that kept the timer, the next pat finds
 * it armed long enough ago or not: either way what follows gets at least
 * timeout_ms - slack_ms.
 *
 * Contract: each watchdog_plan_*() returns 1 when the caller must make the
 * system call now (arm for timeout_ms, or disarm) and has already recorded
 * that as done; 0 when nothing is to be done.  With timeout_ms <= 0 (no
 * watchdog) every call returns 0.
 */
#ifndef POSTERN_WATCHDOG_H
#define POSTERN_WATCHDOG_H

#define WATCHDOG_SLACK_MAX_MS 60000LL
#define WATCHDOG_WAIT_MARGIN_MS 1000LL

struct watchdog_plan {
    long long timeout_ms;       /* daemon_timeout; <= 0: no watchdog */
    long long slack_ms;         /* min(timeout_ms / 10, 60 s) */
    long long tick_ms;          /* how far the caller's clock may lag */
    int armed;
    long long armed_at_ms;      /* the clock's value when last armed */
};

void watchdog_plan_init(struct watchdog_plan *plan, long long timeout_ms, long long tick_ms);
/* A sign of progress: 1 = arm the timer for timeout_ms now. */
int watchdog_plan_pat(struct watchdog_plan *plan, long long now_ms);
/* Before a wait of at most max_wait_ms (< 0: unbounded): 1 = disarm now. */
int watchdog_plan_wait(struct watchdog_plan *plan, long long now_ms, long long max_wait_ms);
/* An unconditional pause: 1 = the timer is armed, disarm it now. */
int watchdog_plan_disarm(struct watchdog_plan *plan);

#endif
