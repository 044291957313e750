/*
 * watchdog.c - when the skeleton's watchdog timer needs a system call.
 *
 * Interface and contract: watchdog.h.  Pure bookkeeping over the caller's
 * clock readings; server.c makes the timer_settime() calls it asks for.
 */
#include "watchdog.h"

void watchdog_plan_init(struct watchdog_plan *plan, long long timeout_ms, long long tick_ms)
{
    plan->timeout_ms = timeout_ms;
    plan->slack_ms = timeout_ms / 10;
    if (plan->slack_ms > WATCHDOG_SLACK_MAX_MS)
        plan->slack_ms = WATCHDOG_SLACK_MAX_MS;
    plan->tick_ms = tick_ms > 0 ? tick_ms : 0;
    plan->armed = 0;
    plan->armed_at_ms = 0;
}

int watchdog_plan_pat(struct watchdog_plan *plan, long long now_ms)
{
    if (plan->timeout_ms <= 0)
        return 0;
    /* Both readings lag the true time by 0..tick: their difference may
     * be a tick short of the true one, so a tick is added. */
    if (plan->armed && now_ms - plan->armed_at_ms + plan->tick_ms < plan->slack_ms)
        return 0;
    plan->armed = 1;
    plan->armed_at_ms = now_ms;
    return 1;
}

int watchdog_plan_wait(struct watchdog_plan *plan, long long now_ms, long long max_wait_ms)
{
    if (!plan->armed)
        return 0;
    /* The timer fires no earlier than armed_at + timeout (the reading at
     * arming lagged, if anything); now may lag by a tick. */
    if (max_wait_ms >= 0
        && plan->armed_at_ms + plan->timeout_ms
           > now_ms + plan->tick_ms + max_wait_ms + WATCHDOG_WAIT_MARGIN_MS)
        return 0;
    plan->armed = 0;
    return 1;
}

int watchdog_plan_disarm(struct watchdog_plan *plan)
{
    if (!plan->armed)
        return 0;
    plan->armed = 0;
    return 1;
}
