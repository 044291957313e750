/*
 * pickup_requeue.c - requeued messages through cleanup again (Postfix's
 * postsuper -r): `postern queue requeue`, and qmgr for an active message
 * at the end of its round, move the queue file to requeue/
 * (common/queue_admin.c) and wake pickup.
 *
 * Interface (pickup.h): pickup_requeue_scan(timeout), called on every
 * pickup wakeup before maildrop/ is scanned.
 *
 * For each requeue/QID (a queue file, doc/queue-file.md; requeue/ is mode
 * 0700 of mail_owner, so only mail_owner and root put files there -- still
 * read with the checking queue file reader):
 *   - the envelope goes to cleanup (enqueue conversation, doc/internals.md)
 *     as it was received: sender; envid, ret, origin and the client
 *     attributes; the pending recipients (done ones are not repeated) with
 *     their NOTIFY and ORCPT; no flags (what flags=local did is already in
 *     the content), so canonical and virtual alias mapping, masquerading
 *     and header/body checks apply again with the current configuration;
 *   - the content follows as it is in the file;
 *   - cleanup's status=0 (also discarded=1 or held=1) ends it: requeue/QID
 *     and its defer/ bounce/ trace/ logs are removed, logged
 *     "QID: requeued as NEWQID".  Only then: a crash before leaves the file
 *     here and the message is passed again (a duplicate, never a loss).
 *   - cleanup refusing it for good (status=5, e.g. a header_checks REJECT
 *     added since): the file goes to hold/ as it was, with a warning; the
 *     administrator releases (no second cleanup pass) or deletes it.
 *   - no pending recipient left: removed ("QID: removed").
 *   - a file the reader refuses goes to corrupt/ with a warning.
 *   - cleanup unreachable or status=4: the file stays, the scan ends, the
 *     next wakeup retries.
 * The new message's arrival time is the time of the requeue (cleanup sets
 * it), so maximal_queue_lifetime counts from there.
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "cleanup_submit.h"
#include "ipc.h"
#include "log.h"
#include "pickup.h"
#include "queue.h"
#include "queue_admin.h"
#include "strbuf.h"

enum { RQ_DONE, RQ_RETRY };

static int requeue_timeout;

static const char *const passed_attrs[] = {
    "client_name", "client_addr", "helo_name", "protocol", "sasl_method",
    "sasl_username", "envid", "ret", "origin", NULL };

static void requeue_move(const char *qid, const char *to, const char *why)
{
    if (queue_move(qid, "requeue", to) == 0)
        log_warning("requeue/%s: %s; moved to %s/%s", qid, why, to, qid);
    else
        log_warning("requeue/%s: %s; cannot move it to %s/: %s", qid, why, to,
                    strerror(errno));
}

/* The enqueue conversation for one loaded message.  Returns 0 with the
 * new queue id, 5 refused for good (why), -1 try again later (why). */
static int requeue_submit(int fd, const struct queue_message *msg, strbuf *new_qid,
                          strbuf *why)
{
    cleanup_submit *cs = cleanup_submit_open(requeue_timeout, why);
    if (cs == NULL)
        return -1;
    ipc_record *r = cleanup_submit_envelope(cs);
    ipc_build(r, "request", "enqueue", "sender", msg->sender, (char *) NULL);
    for (int i = 0; passed_attrs[i]; i++) {
        const char *v = queue_message_attr(msg, passed_attrs[i]);
        if (v)
            ipc_record_add_str(r, passed_attrs[i], v);
    }
    for (int i = 0; i < msg->nrcpt; i++) {
        const struct queue_rcpt *rcpt = &msg->rcpts[i];
        if (rcpt->status != RCPT_PENDING)
            continue;
        if (rcpt->notify)
            ipc_record_add_str(r, "notify", rcpt->notify);
        if (rcpt->orcpt)
            ipc_record_add_str(r, "orcpt", rcpt->orcpt);
        ipc_record_add_str(r, "rcpt", rcpt->address);
    }
    int rc = cleanup_submit_send(cs, why);
    strbuf line, chunk, err;
    strbuf_init(&line);
    strbuf_init(&chunk);
    strbuf_init(&err);
    queue_content_reader *cr = queue_content_open(fd, msg);
    int got = 0;
    while (rc == 0 && (got = queue_content_next(cr, &line, &err)) == 1) {
        strbuf_append(&chunk, line.data, line.len);
        strbuf_append_char(&chunk, '\n');
        if (chunk.len >= CLEANUP_SUBMIT_CHUNK) {
            rc = cleanup_submit_data(cs, chunk.data, chunk.len, why);
            strbuf_reset(&chunk);
        }
    }
    if (rc == 0 && got < 0) {
        /* The file was checked by queue_message_load: a read error now. */
        strbuf_printf(why, "reading the content: %s", strbuf_str(&err));
        rc = -1;
    }
    if (rc == 0 && chunk.len)
        rc = cleanup_submit_data(cs, chunk.data, chunk.len, why);
    if (rc == 0) {
        rc = cleanup_submit_end(cs, new_qid, why);
        if (rc == 4)
            rc = -1;                    /* cleanup's temporary refusal: later */
    }
    queue_content_close(cr);
    cleanup_submit_close(cs);
    strbuf_release(&line);
    strbuf_release(&chunk);
    strbuf_release(&err);
    return rc;
}

static int requeue_one(const char *qid, void *ctx)
{
    (void) ctx;
    strbuf path, why, new_qid;
    strbuf_init(&path);
    strbuf_init(&why);
    strbuf_init(&new_qid);
    int outcome = RQ_DONE;
    queue_path(&path, "requeue", qid);
    int fd = open(strbuf_str(&path), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ELOOP)
            requeue_move(qid, "corrupt", "symbolic link");
        else if (errno != ENOENT)
            log_warning("open %s: %s", strbuf_str(&path), strerror(errno));
        goto done;
    }
    struct queue_message msg;
    if (queue_message_load(fd, qid, &msg, &why) < 0) {
        close(fd);
        requeue_move(qid, "corrupt", why.len ? strbuf_str(&why) : "malformed queue file");
        goto done;
    }
    int pending = 0;
    for (int i = 0; i < msg.nrcpt; i++)
        pending += msg.rcpts[i].status == RCPT_PENDING;
    if (pending == 0) {
        if (queue_admin_apply(QA_DELETE, "requeue", qid) > 0)
            log_info("%s: removed", qid);
    } else {
        int rc = requeue_submit(fd, &msg, &new_qid, &why);
        if (rc == 0) {
            log_info("%s: requeued as %s", qid, strbuf_str(&new_qid));
            if (queue_admin_apply(QA_DELETE, "requeue", qid) < 0 && errno != ENOENT)
                log_warning("%s: cannot remove requeue/%s: %s", qid, qid, strerror(errno));
        } else if (rc == 5) {
            requeue_move(qid, "hold", strbuf_str(&why));
        } else {
            log_warning("%s: requeue deferred: %s", qid, strbuf_str(&why));
            outcome = RQ_RETRY;
        }
    }
    queue_message_free(&msg);
    close(fd);
done:
    strbuf_release(&path);
    strbuf_release(&why);
    strbuf_release(&new_qid);
    return outcome == RQ_RETRY;         /* nonzero ends the scan */
}

void pickup_requeue_scan(int timeout)
{
    requeue_timeout = timeout;
    if (queue_scan("requeue", requeue_one, NULL) < 0 && errno != ENOENT)
        log_warning("scan requeue: %s", strerror(errno));
}
