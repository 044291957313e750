/*
 * delivery_log.h - the per-recipient delivery outcome line, Postfix's shape:
 *
 *   QID: to=<rcpt>, [orig_to=<orcpt>, ]relay=R, delay=D, delays=a/b/c/d,
 *        dsn=X.Y.Z, status=sent|deferred|bounced (reason)
 *
 * Written by the delivery agent that decided the outcome (local, smtp), and
 * by qmgr only for outcomes it decides itself (error:, discard:, dead or
 * missing transports, an agent that failed or timed out).
 *
 * The four delays are the time before the active queue (a), in the active
 * queue until the delivery request started (b), from the request to an
 * established session -- connection, greeting, TLS; ~0 for local -- (c),
 * and the delivery itself (d); delay is their sum (arrival to end).
 * A negative span (clock step) shows as 0.
 *
 * qmgr passes the times in the delivery request (doc/internals.md,
 * "delivery"): arrival=SEC and arrival_us, active_us, request_us, each
 * in microseconds since the epoch.  delivery_times_get() takes them from
 * a request, defaulting what is absent or malformed to sane values, so a
 * bad request can only skew the numbers, never the delivery.
 */
#ifndef POSTERN_DELIVERY_LOG_H
#define POSTERN_DELIVERY_LOG_H

#include "ipc.h"
#include "strbuf.h"

struct delivery_times {
    double arrival;             /* message arrival (queue file) */
    double active;              /* entered the active queue */
    double request;             /* qmgr started the delivery request */
    double session;             /* the agent had a usable session */
};

/* Seconds since the epoch, microsecond resolution. */
double delivery_now(void);

/* Postfix's delay numbers: "0" below 5 ms, two decimals without trailing
 * zeros below 10 s ("0.01", "1.5", "9.99"), whole seconds from 10 s. */
void delivery_format_delay(strbuf *out, double seconds);

/* Append the outcome line (without the program tag) to out.  orcpt is
 * the ORCPT as stored ("rfc822;addr" or a bare address) or NULL; it shows
 * as orig_to only when it differs from rcpt (ignoring case).  An empty or
 * NULL relay shows as "none"; an empty dsn as the status's default. */
void delivery_log_format(strbuf *out, const char *qid, const char *rcpt,
                         const char *orcpt, const char *relay,
                         const struct delivery_times *t, double end,
                         const char *dsn, const char *status, const char *reason);

/* delivery_log_format() then log_info(). */
void delivery_log(const char *qid, const char *rcpt, const char *orcpt,
                  const char *relay, const struct delivery_times *t, double end,
                  const char *dsn, const char *status, const char *reason);

/* Add arrival_us, active_us and request_us to a delivery request. */
void delivery_times_add(ipc_record *r, const struct delivery_times *t);

/* Times from a delivery request received at `now`: a missing or
 * out-of-range value becomes the previous stage's time (arrival: now), so
 * the spans stay non-negative.  session is set to now. */
void delivery_times_get(const ipc_record *r, double now, struct delivery_times *t);

#endif
