/*
 * backoff.h - when a deferred message is tried again.
 *
 * Interface:
 *   backoff_delay(age, min, max)    seconds until the next attempt for a
 *                                   message that is AGE seconds old.
 *   backoff_next_attempt(now, arrival, min, max)   now + that delay.
 *
 * Rule (Postfix's): the delay is the message's age, clamped to
 * [minimal_backoff_time, maximal_backoff_time].  Since each attempt happens
 * about one delay after the previous one, the age (and so the delay)
 * roughly doubles each time: 300, 300, 600, 1200, 2400, 4000, 4000...
 * with the defaults.  No per-message counter is needed, which matters
 * because qmgr never rewrites queue files; the next attempt time is kept as
 * the queue file's mtime in deferred/.
 *
 * Contract: pure.  A negative age (clock stepped back) counts as 0; a max
 * below min is treated as min.
 */
#ifndef POSTERN_BACKOFF_H
#define POSTERN_BACKOFF_H

long long backoff_delay(long long age, long long min, long long max);
long long backoff_next_attempt(long long now, long long arrival,
                               long long min, long long max);

#endif
