/*
 * local_forward.c - forwarding: alias and .forward items that are full
 * addresses (user@domain) become a new message through cleanup.
 *
 * Interface: local_forward_add(a, address) collects an address with the
 * current sender (duplicate filtered per message); local_forward_flush(a)
 * sends one message per distinct sender with its collected addresses, as the "enqueue" conversation of
 * doc/internals.md: {queue_id} from cleanup, the envelope
 * {request=enqueue, origin=local, sender, rcpt...}, the content as
 * {data=CHUNK} records ("Delivered-To: RECIPIENT" first, so a message that
 * comes back is recognised as a loop), {end=1}, and cleanup's status.
 *
 * Contract: the copy keeps the original envelope sender (or owner-NAME of
 * the alias that forwarded it); a cleanup failure defers (4.3.0) or, when
 * cleanup rejects the message permanently, bounces the recipient.
 */
#include <errno.h>
#include <string.h>

#include "config.h"
#include "ipc.h"
#include "local.h"
#include "log.h"
#include "mem.h"

#define FORWARD_CHUNK 65536

void local_forward_add(struct local_attempt *a, const char *address)
{
    strbuf key;
    strbuf_init(&key);
    strbuf_printf(&key, "forward:%s:%s", a->sender, address);
    if (!local_dup_check(a, strbuf_str(&key))) {
        a->forward_addr = xrealloc(a->forward_addr, (size_t)(a->nforward + 1) * sizeof(char *));
        a->forward_sender = xrealloc(a->forward_sender, (size_t)(a->nforward + 1) * sizeof(char *));
        a->forward_addr[a->nforward] = xstrdup(address);
        a->forward_sender[a->nforward] = xstrdup(a->sender);
        a->nforward++;
        /* the outcome is known at flush time; remember the key now so a
         * second mention in this message is not sent twice */
        local_dup_record(a, strbuf_str(&key), LOCAL_SENT, "2.0.0", "forwarded");
    }
    strbuf_release(&key);
}

/* Send the content as data records: Delivered-To first, then the lines. */
static int forward_send_content(struct local_attempt *a, ipc_stream *s, ipc_record *rec,
                                strbuf *why)
{
    struct local_request *req = a->req;
    strbuf chunk, line;
    strbuf_init(&chunk);
    strbuf_init(&line);
    int rc = 0;
    strbuf_printf(&chunk, "Delivered-To: %s\n", a->delivered_to);
    queue_content_reader *r = queue_content_open(req->queue_fd, &req->msg);
    int got = r ? 1 : -1;
    while (r != NULL && (got = queue_content_next(r, &line, why)) == 1) {
        strbuf_append(&chunk, line.data, line.len);
        strbuf_append_char(&chunk, '\n');
        if (chunk.len >= FORWARD_CHUNK) {
            ipc_record_reset(rec);
            ipc_record_add(rec, "data", chunk.data, chunk.len);
            if (ipc_send(s, rec) < 0) {
                strbuf_printf(why, "cleanup: %s", ipc_error(s));
                rc = -1;
                break;
            }
            strbuf_reset(&chunk);
        }
    }
    if (r != NULL)
        queue_content_close(r);
    if (rc == 0 && got < 0) {
        if (why->len == 0)
            strbuf_set_str(why, "queue file read error");
        rc = -1;
    }
    if (rc == 0 && chunk.len) {
        ipc_record_reset(rec);
        ipc_record_add(rec, "data", chunk.data, chunk.len);
        if (ipc_send(s, rec) < 0) {
            strbuf_printf(why, "cleanup: %s", ipc_error(s));
            rc = -1;
        }
    }
    strbuf_release(&chunk);
    strbuf_release(&line);
    return rc;
}

/* One message through cleanup to the addresses collected with sender. */
static void forward_send(struct local_attempt *a, const char *sender)
{
    strbuf why;
    strbuf_init(&why);
    ipc_record *rec = ipc_record_new();
    ipc_stream *s = NULL;
    enum local_status status = LOCAL_DEFER;
    const char *dsn = "4.3.0";
    int timeout = (int)config_time("ipc_timeout");

    int fd = ipc_connect_unix("private/cleanup", timeout);
    if (fd < 0) {
        strbuf_printf(&why, "cannot connect to cleanup: %s", strerror(errno));
        goto report;
    }
    s = ipc_stream_open(fd, timeout);
    if (ipc_recv(s, rec) != 0) {
        strbuf_printf(&why, "cleanup: %s", ipc_error(s));
        goto report;
    }
    const char *qid = ipc_record_get_str(rec, "queue_id");
    if (qid == NULL) {
        const char *reason = ipc_record_get_str(rec, "reason");
        strbuf_printf(&why, "cleanup: %s", reason ? reason : "no queue id");
        goto report;
    }
    strbuf new_qid;
    strbuf_init(&new_qid);
    strbuf_set_str(&new_qid, qid);

    ipc_build(rec, "request", "enqueue", "origin", "local", "sender", sender, NULL);
    const char *envid = queue_message_attr(&a->req->msg, "envid");
    if (envid)
        ipc_record_add_str(rec, "envid", envid);
    const char *ret = queue_message_attr(&a->req->msg, "ret");
    if (ret)
        ipc_record_add_str(rec, "ret", ret);
    for (int i = 0; i < a->nforward; i++) {
        if (a->forward_sender[i] == NULL || strcmp(a->forward_sender[i], sender) != 0)
            continue;
        ipc_record_add_str(rec, "orcpt", a->orcpt);
        ipc_record_add_str(rec, "rcpt", a->forward_addr[i]);
    }
    if (ipc_send(s, rec) < 0 || forward_send_content(a, s, rec, &why) < 0) {
        if (why.len == 0)
            strbuf_printf(&why, "cleanup: %s", ipc_error(s));
        strbuf_release(&new_qid);
        goto report;
    }
    ipc_build(rec, "end", "1", NULL);
    if (ipc_send(s, rec) < 0 || ipc_recv(s, rec) != 0) {
        strbuf_printf(&why, "cleanup: %s", ipc_error(s));
        strbuf_release(&new_qid);
        goto report;
    }
    long long st = -1;
    ipc_record_get_int(rec, "status", &st);
    if (st == 0) {
        status = LOCAL_SENT;
        dsn = "2.0.0";
        strbuf_printf(&why, "forwarded as %s", strbuf_str(&new_qid));
    } else {
        const char *rdsn = ipc_record_get_str(rec, "dsn");
        const char *reason = ipc_record_get_str(rec, "reason");
        status = st == 5 ? LOCAL_BOUNCE : LOCAL_DEFER;
        dsn = rdsn ? rdsn : (st == 5 ? "5.3.0" : "4.3.0");
        strbuf_printf(&why, "cannot forward: %s", reason ? reason : "cleanup error");
    }
    strbuf_release(&new_qid);

report:
    if (status != LOCAL_SENT)
        log_warning("%s: %s: %s", a->req->qid, a->rcpt, strbuf_str(&why));
    /* reflect the real outcome; dsn is a static or record string, copy it */
    strbuf dsn_copy;
    strbuf_init(&dsn_copy);
    strbuf_set_str(&dsn_copy, dsn);
    local_result_add(a, status, strbuf_str(&dsn_copy), "%s", strbuf_str(&why));
    strbuf_release(&dsn_copy);
    if (s)
        ipc_stream_close(s);
    ipc_record_free(rec);
    strbuf_release(&why);
}

void local_forward_flush(struct local_attempt *a)
{
    /* one message per distinct sender (owner-NAME aliases change it) */
    for (int i = 0; i < a->nforward; i++) {
        if (a->forward_sender[i] == NULL)
            continue;
        char *sender = xstrdup(a->forward_sender[i]);
        forward_send(a, sender);
        for (int j = i; j < a->nforward; j++) {
            if (a->forward_sender[j] && strcmp(a->forward_sender[j], sender) == 0) {
                xfree(a->forward_sender[j]);
                a->forward_sender[j] = NULL;
            }
        }
        xfree(sender);
    }
    for (int i = 0; i < a->nforward; i++) {
        xfree(a->forward_addr[i]);
        xfree(a->forward_sender[i]);
    }
    xfree(a->forward_addr);
    xfree(a->forward_sender);
    a->forward_addr = a->forward_sender = NULL;
    a->nforward = 0;
}
