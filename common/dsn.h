/*
 * dsn.h - delivery status notifications (RFC 3464) as message text.
 *
 * Interface:
 *   dsn_notify_parse(notify)   the NOTIFY= value of a recipient as a bit
 *                              mask; NULL or "" means the default,
 *                              FAILURE|DELAY (a delay notice still needs
 *                              delay_warning_time > 0).
 *   dsn_compose(report, next_line, ctx, out, err)
 *                              the whole notice: headers, a readable part,
 *                              a message/delivery-status part and the
 *                              returned message (message/rfc822) or its
 *                              headers (text/rfc822-headers), LF line ends.
 *   dsn_diagnostic(reason, out)  the server reply inside an smtp agent's
 *                              reason ("host X said: 550 5.1.1 no (in reply
 *                              to RCPT TO command)" -> "550 5.1.1 no").
 *   dsn_remote_mta(relay, out) host name of a relay ("mx.x[1.2.3.4]:25" ->
 *                              "mx.x"); 0 when there is none ("local",
 *                              "none", "").
 *
 * Kinds: failure ("Undelivered Mail Returned to Sender", Action: failed,
 * whole message returned unless RET=HDRS or over the size limit), delay
 * ("Delayed Mail (still being retried)", Action: delayed, headers only),
 * success ("Successful Mail Delivery Report", Action: delivered, headers
 * only).
 *
 * Contract: pure apart from calling next_line.  Every text that comes from
 * outside (addresses, reasons) is reduced to printable US-ASCII before it
 * goes into a header or the report, and long report fields are folded.
 * The MIME boundary is chosen so that it occurs nowhere in the returned
 * text.  Returns 0, or -1 when next_line fails (err set).
 */
#ifndef POSTERN_DSN_H
#define POSTERN_DSN_H

#include <time.h>
#include "strbuf.h"

#define DSN_NOTIFY_NEVER    0x01
#define DSN_NOTIFY_SUCCESS  0x02
#define DSN_NOTIFY_FAILURE  0x04
#define DSN_NOTIFY_DELAY    0x08
#define DSN_NOTIFY_DEFAULT  (DSN_NOTIFY_FAILURE | DSN_NOTIFY_DELAY)

enum dsn_kind { DSN_KIND_FAILURE, DSN_KIND_DELAY, DSN_KIND_SUCCESS };

struct dsn_rcpt_report {
    const char *address;        /* final recipient */
    const char *orcpt;          /* ORCPT as given ("rfc822;x@y"), or NULL */
    const char *status;         /* enhanced status code, "5.1.1" */
    const char *remote_mta;     /* host name, or NULL */
    const char *diag_type;      /* "smtp" (reason is a server reply) or NULL for x-unix */
    const char *reason;         /* the text */
};

struct dsn_report {
    enum dsn_kind kind;
    const char *myhostname;
    const char *queue_id;       /* of the original message */
    const char *sender;         /* its envelope sender ("" = null) */
    const char *notify_to;      /* recipient of this notice */
    const char *envid;          /* ENVID, or NULL */
    long long arrival;          /* arrival time of the original */
    time_t now;
    long long retry_until;      /* delay notices: end of retries */
    int headers_only;           /* return only the headers (RET=HDRS) */
    const struct dsn_rcpt_report *rcpts;
    int nrcpt;
};

/* 1 = got a line (without terminator), 0 = end, -1 = error (err set). */
typedef int (*dsn_line_fn)(void *ctx, strbuf *line, strbuf *err);

int dsn_notify_parse(const char *notify);
int dsn_compose(const struct dsn_report *r, dsn_line_fn next_line, void *ctx,
                strbuf *out, strbuf *err);
void dsn_diagnostic(const char *reason, strbuf *out);
int dsn_remote_mta(const char *relay, strbuf *out);

#endif
