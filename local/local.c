/*
 * local.c - the local delivery agent: main() and the delivery conversation.
 *
 * qmgr connects to private/local and sends one record per request (several
 * on one connection when it pipelines; served in order until EOF)
 *   {request=deliver, queue_id, queue_file, sender, arrival, ...,
 *    [orcpt=, notify=, offset=] rcpt=ADDR ...}
 * local opens the queue file read-only, resolves and delivers each recipient
 * (local_resolve.c), logs its outcome line ("QID: to=<...>, relay=local,
 * delay=..., status=...", common/delivery_log.h, delays from the times in
 * the request) and answers one record per recipient, in request order,
 *   {rcpt, status=sent|deferred|bounced, dsn, relay=local, reason}
 * then {done=1}.  It never writes the queue file: qmgr marks recipients done.
 *
 * Runs as root in a root instance (switching to each recipient's identity
 * for the parts that touch their files) and as the instance user in a
 * non-root instance, where every delivery runs as that user.
 */
#include <ctype.h>
#include <stdarg.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "delivery_request.h"
#include "ipc.h"
#include "local.h"
#include "log.h"
#include "mem.h"
#include "queue.h"
#include "server.h"

int local_is_root;
struct local_user local_default_privs;
struct local_user local_instance_user;

/* How many distinct success texts one reply lists before "..." */
#define REASON_SUCCESS_MAX 8

/* 1 when text is already one of the ", "-separated items of list. */
static int reason_listed(const strbuf *list, const char *text)
{
    size_t n = strlen(text);
    const char *s = strbuf_str(list);
    for (const char *p = strstr(s, text); p; p = strstr(p + 1, text)) {
        int starts = p == s || (p - s >= 2 && p[-2] == ',' && p[-1] == ' ');
        int ends = p[n] == '\0' || (p[n] == ',' && p[n + 1] == ' ');
        if (starts && ends)
            return 1;
    }
    return 0;
}

void local_result_add(struct local_attempt *a, enum local_status status,
                      const char *dsn, const char *fmt, ...)
{
    struct local_result *r = &a->result;
    strbuf text;
    strbuf_init(&text);
    va_list ap;
    va_start(ap, fmt);
    strbuf_vappendf(&text, fmt, ap);
    va_end(ap);

    if (status == LOCAL_BOUNCE && a->owner != NULL) {
        /* inside a list with owner-NAME: the owner hears of it, not the
         * sender (local_owner.c) */
        local_owner_failure_add(a, dsn, strbuf_str(&text));
        strbuf_release(&text);
        return;
    }

    if (status == LOCAL_SENT) {
        r->ndelivered++;
        if (!reason_listed(&r->successes, strbuf_str(&text))) {
            if (r->nreasons < REASON_SUCCESS_MAX) {
                if (r->successes.len)
                    strbuf_append_str(&r->successes, ", ");
                strbuf_append(&r->successes, text.data, text.len);
            } else if (r->nreasons == REASON_SUCCESS_MAX) {
                strbuf_append_str(&r->successes, ", ...");
            }
            r->nreasons++;
        }
        strbuf_release(&text);
        return;
    }
    if (status == LOCAL_DEFER)
        r->ndeferred++;
    if (status > r->status || (status == r->status && r->dsn.len == 0)) {
        /* the first failure of the worst kind explains the outcome */
        r->status = status;
        strbuf_set_str(&r->dsn, dsn);
        strbuf_set(&r->reason, text.data, text.len);
    }
    strbuf_release(&text);
}

/* Log the outcome line and answer qmgr (common/delivery_request.h). */
static void local_reply(struct delivery_request *dr, const char *rcpt, const char *orcpt,
                        const struct local_result *r)
{
    static const char *const names[] = { "sent", "bounced", "deferred" };
    const char *dsn = r->status == LOCAL_SENT ? "2.0.0" : strbuf_str(&r->dsn);
    const char *reason = strbuf_str(r->status == LOCAL_SENT ? &r->successes : &r->reason);
    if (local_sync_enabled())
        local_hold_answer(dr->qid, &dr->times, rcpt, orcpt, dsn, names[r->status], reason);
    else
        delivery_request_reply(dr, rcpt, orcpt, "local", &dr->times, 0, dsn,
                               names[r->status], reason);
}

/* Split "local@domain" and prepare one attempt. */
static void local_attempt_init(struct local_attempt *a, struct local_request *req,
                               const char *rcpt, const char *orcpt)
{
    memset(a, 0, sizeof(*a));
    a->req = req;
    a->rcpt = rcpt;
    a->orcpt = orcpt ? orcpt : rcpt;
    a->sender = req->sender;
    a->delivered_to = rcpt;
    strbuf_init(&a->result.dsn);
    strbuf_init(&a->result.reason);
    strbuf_init(&a->result.successes);
    a->result.status = LOCAL_SENT;
}

static void local_attempt_free(struct local_attempt *a)
{
    xfree(a->local_part);
    xfree(a->extension);
    xfree(a->domain);
    for (int i = 0; i < a->nalias_stack; i++)
        xfree(a->alias_stack[i]);
    xfree(a->alias_stack);
    for (int i = 0; i < a->nforward_stack; i++)
        xfree(a->forward_stack[i]);
    xfree(a->forward_stack);
    strbuf_release(&a->result.dsn);
    strbuf_release(&a->result.reason);
    strbuf_release(&a->result.successes);
    for (int i = 0; i < a->nretry; i++) {
        xfree(a->retry_name[i]);
        xfree(a->retry_sender[i]);
    }
    xfree(a->retry_name);
    xfree(a->retry_sender);
    for (int i = 0; i < a->nowner_failures; i++) {
        xfree(a->owner_failures[i].owner);
        xfree(a->owner_failures[i].dsn);
        xfree(a->owner_failures[i].reason);
    }
    xfree(a->owner_failures);
}

static void local_request_free(struct local_request *req)
{
    for (int i = 0; i < req->ndelivered_to; i++)
        xfree(req->delivered_to[i]);
    xfree(req->delivered_to);
    for (int i = 0; i < req->ndups; i++) {
        xfree(req->dups[i].key);
        xfree(req->dups[i].dsn);
        xfree(req->dups[i].reason);
    }
    xfree(req->dups);
    if (req->queue_fd >= 0) {
        queue_message_free(&req->msg);
        close(req->queue_fd);
    }
}

/* One request: deliver each recipient and answer qmgr. */
static void local_deliver(struct delivery_request *dr)
{
    struct local_request req;
    memset(&req, 0, sizeof(req));
    req.queue_fd = -1;
    strbuf why;
    strbuf_init(&why);

    req.qid = dr->qid;
    req.sender = dr->sender;
    req.queue_fd = delivery_queue_file_open(dr->qid, dr->queue_file, &req.msg, &why);
    int open_ok = req.queue_fd >= 0;
    if (!open_ok)
        log_warning("%s: %s", req.qid, strbuf_str(&why));
    else if (local_scan_headers(&req, &why) < 0) {
        log_warning("%s: %s", req.qid, strbuf_str(&why));
        open_ok = 0;
    }

    if (open_ok)
        local_aliases_open();
    for (int i = 0; i < dr->nrcpt; i++) {
        const struct delivery_rcpt *dx = &dr->rcpts[i];
        struct local_attempt a;
        local_attempt_init(&a, &req, dx->address, dx->orcpt);
        if (!open_ok)
            local_result_add(&a, LOCAL_DEFER, "4.3.0", "cannot read queue file: %s",
                             strbuf_str(&why));
        else
            local_resolve(&a);
        local_reply(dr, a.rcpt, dx->orcpt, &a.result);
        local_attempt_free(&a);
    }
    if (open_ok)
        local_aliases_close();
    if (local_sync_enabled())
        local_hold_done();
    else
        delivery_request_done(dr);

    local_request_free(&req);
    strbuf_release(&why);
}

/* Most requests whose answers wait for one group commit. */
#define LOCAL_GROUP_COMMIT_MAX 32

/* One connection from qmgr: its requests in order, until EOF (qmgr may
 * pipeline several; common/delivery_request.h).  While the next request
 * is already there, the answers wait, so that one fsync of a Maildir's
 * new/ covers the batch (local_sync.c); they go out before any wait for
 * more input, so qmgr never waits on us while we wait on it. */
static void local_serve(int client_fd)
{
    struct delivery_request dr;
    local_sync_enable(1);
    int more = delivery_request_receive(&dr, client_fd, 0);
    while (more > 0) {
        server_watchdog_pat();          /* each request gets daemon_timeout */
        local_deliver(&dr);
        if (local_held_requests() >= LOCAL_GROUP_COMMIT_MAX || !delivery_request_waiting(&dr))
            local_release_answers(&dr);
        more = delivery_request_next(&dr, 0);
    }
    local_release_answers(&dr);
    local_sync_enable(0);
    delivery_request_free(&dr);
}

static void local_post_jail(int argc, char **argv)
{
    local_is_root = geteuid() == 0;
    if (!local_user_by_uid(geteuid(), &local_instance_user)) {
        /* an instance user without a passwd entry still gets a name */
        local_instance_user.name = xstrdup("nobody");
        local_instance_user.uid = geteuid();
        local_instance_user.gid = getegid();
        local_instance_user.home = xstrdup("/");
        local_instance_user.shell = xstrdup("/bin/sh");
    }
    if (local_is_root) {
        const char *dp = config_str("default_privs");
        if (!local_user_lookup(dp, &local_default_privs))
            log_fatal("default_privs: unknown user: %s", dp);
        if (local_default_privs.uid == 0)
            log_fatal("default_privs: %s is a privileged user", dp);
    } else {
        local_user_copy(&local_default_privs, &local_instance_user);
    }
}

int main(int argc, char **argv)
{
    static const struct server_spec spec = {
        .program = "local",
        .mode = SERVER_SINGLE,
        .post_jail = local_post_jail,
        .serve = local_serve,
    };
    return server_main(argc, argv, &spec);
}
