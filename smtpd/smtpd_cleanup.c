/*
 * smtpd_cleanup.c - smtpd's side of the "enqueue" conversation with cleanup
 * (doc/internals.md), and the Received: header.
 *
 * Interface (smtpd.h):
 *   smtpd_cleanup_open(st, reply)      connect private/cleanup, read
 *       {queue_id}, log "QID: client=name[addr]"  (at the first accepted RCPT)
 *   smtpd_cleanup_envelope(st, reply)  queue the envelope record and the
 *       Received: header as the first content           (at DATA/first BDAT)
 *   smtpd_cleanup_content(st, buf, len, reply)  queue {data=...} records
 *   smtpd_cleanup_finish(st, reply)    queue {end=1}, send what is queued,
 *       read the verdict; reply gets "250 2.0.0 Ok: queued as QID" only for
 *       status=0
 *   smtpd_cleanup_abort(st)            close without end=1: cleanup leaves
 *       nothing in the queue (st->queue_id is kept for logging; the
 *       transaction reset frees it)
 * All return 0, or -1 with the SMTP reply for the client in reply.
 *
 * Coalescing: after the synchronous {queue_id}, everything for cleanup goes
 * through the stream's write queue (ipc_queue), which is written when it
 * reaches 64 KiB and at finish.  A message of up to about 64 KiB therefore
 * reaches cleanup as one write (envelope + Received + content + end) and
 * wakes it once; a larger one streams in writes of about 64 KiB, with
 * memory bounded by that.  Cleanup answers only after {end=1} (its verdicts
 * on content, e.g. header_checks REJECT or its size limit, come with the
 * final reply), so nothing is lost by not writing earlier; a cleanup that
 * went away shows as a failed write, at the next 64 KiB or at finish.
 *
 * Contract: any failure to reach or talk to cleanup is a temporary error
 * for the client (451 4.3.0); cleanup's own verdicts are passed on with its
 * enhanced status code and reason.  The stream is closed after finish or on
 * any error, so a broken conversation is never reused.
 */
#include <errno.h>
#include <string.h>
#include <time.h>

#include "ipc.h"
#include "log.h"
#include "mail_date.h"
#include "mem.h"
#include "smtpd.h"

#define CLEANUP_SOCKET "private/cleanup"

static void set_queue_error(strbuf *reply)
{
    strbuf_set_str(reply, "451 4.3.0 Error: queue file write error");
}

/* Turn a cleanup {status=4|5, dsn, reason} record into an SMTP reply. */
static void cleanup_verdict_reply(const ipc_record *r, long long status, strbuf *reply)
{
    const char *dsn = ipc_record_get_str(r, "dsn");
    const char *reason = ipc_record_get_str(r, "reason");

    if (status == 4) {
        if (dsn && strcmp(dsn, "4.3.1") == 0)
            strbuf_printf(reply, "452 4.3.1 %s", reason ? reason : "Insufficient system storage");
        else if (dsn && dsn[0] == '4' && reason)
            strbuf_printf(reply, "451 %s %s", dsn, reason);
        else
            set_queue_error(reply);
    } else if (status == 5) {
        if (dsn == NULL || dsn[0] != '5')
            dsn = "5.3.0";
        if (strcmp(dsn, "5.3.4") == 0)
            strbuf_printf(reply, "552 %s %s", dsn, reason ? reason : "Message size exceeds fixed limit");
        else if (strncmp(dsn, "5.7.", 4) == 0)
            strbuf_printf(reply, "550 %s %s", dsn, reason ? reason : "Message content rejected");
        else
            strbuf_printf(reply, "554 %s %s", dsn, reason ? reason : "Error: message rejected");
    } else {
        set_queue_error(reply);
    }
}

int smtpd_cleanup_open(struct smtpd_state *st, strbuf *reply)
{
    ipc_record *r = ipc_record_new();
    int fd = ipc_connect_unix(CLEANUP_SOCKET, smtpd_params.ipc_timeout);
    long long status;

    xfree(st->queue_id);
    st->queue_id = NULL;
    if (fd < 0) {
        log_warning("connect to %s: %s", CLEANUP_SOCKET, strerror(errno));
        set_queue_error(reply);
        ipc_record_free(r);
        return -1;
    }
    st->cleanup = ipc_stream_open(fd, smtpd_params.ipc_timeout);
    if (ipc_recv(st->cleanup, r) != 0) {
        log_warning("%s: no queue id: %s", CLEANUP_SOCKET, ipc_error(st->cleanup));
        set_queue_error(reply);
        goto fail;
    }
    const char *qid = ipc_record_get_str(r, "queue_id");
    if (qid == NULL) {
        if (ipc_record_get_int(r, "status", &status) != 0)
            status = 4;
        cleanup_verdict_reply(r, status, reply);
        goto fail;
    }
    st->queue_id = xstrdup(qid);
    st->envelope_sent = 0;
    if (st->sasl_username)
        log_info("%s: client=%s, sasl_method=%s, sasl_username=%s", st->queue_id, st->namaddr,
                 st->sasl_method, st->sasl_username);
    else
        log_info("%s: client=%s", st->queue_id, st->namaddr);
    ipc_record_free(r);
    return 0;
fail:
    ipc_record_free(r);
    smtpd_cleanup_abort(st);
    return -1;
}

static void add_opt(ipc_record *r, const char *name, const char *value)
{
    if (value != NULL && *value != '\0')
        ipc_record_add_str(r, name, value);
}

static void build_received(struct smtpd_state *st, strbuf *out)
{
    strbuf_printf(out, "Received: from %s (%s [%s%s])\n",
                  st->helo_name ? st->helo_name : st->client_name,
                  st->client_name, strchr(st->client_addr, ':') ? "IPv6:" : "",
                  st->client_addr);
    smtpd_tls_received(st, out);
    smtpd_sasl_received(st, out);
    strbuf_appendf(out, "\tby %s (postern) with %s id %s",
                   smtpd_params.myhostname, smtpd_protocol_name(st), st->queue_id);
    /* Like Postfix: name the recipient only when there is exactly one, so
     * the header does not disclose a list of Bcc recipients. */
    if (st->nrcpt == 1)
        strbuf_appendf(out, "\n\tfor <%s>", st->rcpts[0].addr);
    strbuf_append_str(out, "; ");
    mail_date_format(out, time(NULL));
    strbuf_append_char(out, '\n');
}

int smtpd_cleanup_envelope(struct smtpd_state *st, strbuf *reply)
{
    if (st->cleanup == NULL) {
        set_queue_error(reply);
        return -1;
    }
    ipc_record *r = ipc_record_new();
    ipc_record_add_str(r, "request", "enqueue");
    ipc_record_add_str(r, "origin", "smtp");
    ipc_record_add_str(r, "sender", st->sender);
    add_opt(r, "envid", st->envid);
    add_opt(r, "ret", st->ret);
    ipc_record_add_str(r, "client_name", st->client_name);
    ipc_record_add_str(r, "client_addr", st->client_addr);
    add_opt(r, "helo_name", st->helo_name);
    ipc_record_add_str(r, "protocol", smtpd_protocol_name(st));
    add_opt(r, "sasl_method", st->sasl_method);
    add_opt(r, "sasl_username", st->sasl_username);
    for (size_t i = 0; i < st->nrcpt; i++) {
        add_opt(r, "notify", st->rcpts[i].notify);
        add_opt(r, "orcpt", st->rcpts[i].orcpt);
        ipc_record_add_str(r, "rcpt", st->rcpts[i].addr);
    }
    int rc = ipc_queue(st->cleanup, r);
    ipc_record_free(r);
    if (rc != 0) {
        log_warning("%s: send envelope to cleanup: %s", st->queue_id, ipc_error(st->cleanup));
        set_queue_error(reply);
        smtpd_cleanup_abort(st);
        return -1;
    }
    st->envelope_sent = 1;

    strbuf received;
    strbuf_init(&received);
    build_received(st, &received);
    rc = smtpd_cleanup_content(st, received.data, received.len, reply);
    strbuf_release(&received);
    return rc;
}

int smtpd_cleanup_content(struct smtpd_state *st, const char *data, size_t len,
                          strbuf *reply)
{
    if (st->cleanup == NULL) {
        set_queue_error(reply);
        return -1;
    }
    int rc = 0;
    while (len > 0 && rc == 0) {
        size_t n = len < 65536 ? len : 65536;
        rc = ipc_queue_attr(st->cleanup, "data", data, n);
        data += n;
        len -= n;
    }
    if (rc != 0) {
        log_warning("%s: send content to cleanup: %s", st->queue_id, ipc_error(st->cleanup));
        set_queue_error(reply);
        smtpd_cleanup_abort(st);
        return -1;
    }
    return 0;
}

int smtpd_cleanup_finish(struct smtpd_state *st, strbuf *reply)
{
    long long status;
    int rc = -1;

    if (st->cleanup == NULL) {
        set_queue_error(reply);
        return -1;
    }
    ipc_record *r = ipc_record_new();
    if (ipc_queue_attr(st->cleanup, "end", "1", 1) != 0 || ipc_flush(st->cleanup) != 0
        || ipc_recv(st->cleanup, r) != 0) {
        log_warning("%s: cleanup did not confirm: %s", st->queue_id, ipc_error(st->cleanup));
        set_queue_error(reply);
    } else if (ipc_record_get_int(r, "status", &status) != 0) {
        log_warning("%s: malformed reply from cleanup", st->queue_id);
        set_queue_error(reply);
    } else if (status == 0) {
        const char *qid = ipc_record_get_str(r, "queue_id");
        strbuf_printf(reply, "250 2.0.0 Ok: queued as %s", qid ? qid : st->queue_id);
        rc = 0;
    } else {
        cleanup_verdict_reply(r, status, reply);
        log_info("%s: reject: DATA from %s: %s; from=<%s> proto=%s%s%s%s",
                 st->queue_id, st->namaddr, strbuf_str(reply), st->sender,
                 st->esmtp ? "ESMTP" : "SMTP", st->helo_name ? " helo=<" : "",
                 st->helo_name ? st->helo_name : "", st->helo_name ? ">" : "");
    }
    ipc_record_free(r);
    smtpd_cleanup_abort(st);
    return rc;
}

void smtpd_cleanup_abort(struct smtpd_state *st)
{
    /* The queue id stays until the transaction is reset, so the reject log
     * line of an abandoned message still names it. */
    if (st->cleanup != NULL) {
        ipc_stream_close(st->cleanup);
        st->cleanup = NULL;
    }
    st->envelope_sent = 0;
}
