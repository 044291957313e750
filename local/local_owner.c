/*
 * local_owner.c - failures inside a list that has an owner-NAME alias go
 * to the owner, not to the sender (aliases(5): "delivery diagnostics are
 * directed to that address").
 *
 * Interface: local_owner_failure_add(a, dsn, reason) records a permanent
 * failure met while a->owner is set (local_result_add diverts it here);
 * local_owner_report(a), once the recipient is expanded, sends one
 * delivery status notification (RFC 3464, common/dsn.h; null sender,
 * origin=bounce) per owner through cleanup, naming the list address as the
 * failed recipient with each reason.
 *
 * Contract: a notice that cleanup took counts as done for the recipient
 * ("failure reported to OWNER as QID"); one that could not be queued
 * defers the recipient (4.3.0), so the failure is reported on the retry.
 * Local members of such a list are resubmitted with their own queue
 * records (local_resolve.c), so only commands, files and :include:
 * problems reach this file.
 */
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "cleanup_submit.h"
#include "config.h"
#include "dsn.h"
#include "local.h"
#include "log.h"
#include "mem.h"

void local_owner_failure_add(struct local_attempt *a, const char *dsn, const char *reason)
{
    a->owner_failures = xrealloc(a->owner_failures,
                                 (size_t) (a->nowner_failures + 1) * sizeof(*a->owner_failures));
    struct local_owner_failure *f = &a->owner_failures[a->nowner_failures++];
    f->owner = xstrdup(a->sender);
    f->dsn = xstrdup(dsn && *dsn ? dsn : "5.0.0");
    f->reason = xstrdup(reason);
}

static int next_content_line(void *ctx, strbuf *line, strbuf *err)
{
    return queue_content_next(ctx, line, err);
}

/* Compose and queue the notice for one owner: 0 ok (qid set), -1 why set. */
static int report_to(struct local_attempt *a, const char *owner, strbuf *qid, strbuf *why)
{
    struct local_request *req = a->req;
    int n = 0;
    for (int i = 0; i < a->nowner_failures; i++)
        n += strcmp(a->owner_failures[i].owner, owner) == 0;
    struct dsn_rcpt_report *rr = xcalloc((size_t) n, sizeof(*rr));
    int k = 0;
    for (int i = 0; i < a->nowner_failures; i++) {
        if (strcmp(a->owner_failures[i].owner, owner) != 0)
            continue;
        rr[k].address = a->rcpt;
        rr[k].orcpt = a->orcpt != a->rcpt ? a->orcpt : NULL;
        rr[k].status = a->owner_failures[i].dsn;
        rr[k].reason = a->owner_failures[i].reason;
        k++;
    }
    char host[256];
    const char *myhostname = config_str("myhostname");
    if (myhostname == NULL || *myhostname == '\0') {
        if (gethostname(host, sizeof(host) - 1) < 0)
            strcpy(host, "localhost");
        host[sizeof(host) - 1] = '\0';
        myhostname = host;
    }
    const char *ret = queue_message_attr(&req->msg, "ret");
    struct dsn_report rep = {
        .kind = DSN_KIND_FAILURE,
        .myhostname = myhostname,
        .queue_id = req->qid,
        .sender = req->sender,
        .notify_to = owner,
        .envid = queue_message_attr(&req->msg, "envid"),
        .arrival = req->msg.arrival_sec,
        .now = time(NULL),
        .retry_until = 0,
        .headers_only = (ret && strcasecmp(ret, "HDRS") == 0)
            || req->msg.size > config_int("bounce_size_limit"),
        .rcpts = rr,
        .nrcpt = n,
    };
    strbuf text;
    strbuf_init(&text);
    int rc = -1;
    queue_content_reader *r = queue_content_open(req->queue_fd, &req->msg);
    if (r == NULL) {
        strbuf_set_str(why, "cannot read the queue file");
    } else {
        rc = dsn_compose(&rep, next_content_line, r, &text, why);
        queue_content_close(r);
    }
    if (rc == 0)
        rc = cleanup_submit_text("bounce", "", owner, &text, (int) config_time("ipc_timeout"),
                                 qid, why);
    strbuf_release(&text);
    xfree(rr);
    return rc;
}

void local_owner_report(struct local_attempt *a)
{
    strbuf qid, why;
    strbuf_init(&qid);
    strbuf_init(&why);
    for (int i = 0; i < a->nowner_failures; i++) {
        const char *owner = a->owner_failures[i].owner;
        int seen = 0;
        for (int j = 0; j < i && !seen; j++)
            seen = strcmp(a->owner_failures[j].owner, owner) == 0;
        if (seen)
            continue;
        strbuf_reset(&why);
        if (report_to(a, owner, &qid, &why) == 0) {
            log_info("%s: %s: failure reported to %s as %s", a->req->qid, a->rcpt, owner,
                     strbuf_str(&qid));
            local_result_add(a, LOCAL_SENT, "2.0.0", "failure reported to %s as %s", owner,
                             strbuf_str(&qid));
        } else {
            log_warning("%s: %s: cannot report a failure to %s: %s", a->req->qid, a->rcpt,
                        owner, strbuf_str(&why));
            local_result_add(a, LOCAL_DEFER, "4.3.0", "cannot report a failure to %s: %s",
                             owner, strbuf_str(&why));
        }
    }
    strbuf_release(&qid);
    strbuf_release(&why);
}
