/*
 * backoff.c - retry delay of deferred mail; the rule is in backoff.h.
 */
#include "backoff.h"

long long backoff_delay(long long age, long long min, long long max)
{
    if (min < 0)
        min = 0;
    if (max < min)
        max = min;
    if (age < min)
        return min;
    if (age > max)
        return max;
    return age;
}

long long backoff_next_attempt(long long now, long long arrival,
                               long long min, long long max)
{
    return now + backoff_delay(now - arrival, min, max);
}
