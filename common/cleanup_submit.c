/*
 * cleanup_submit.c - a message to cleanup from a daemon that already holds
 * it; see cleanup_submit.h for the interface and contract.
 */
#include <errno.h>
#include <string.h>

#include "cleanup_submit.h"
#include "mem.h"

struct cleanup_submit {
    ipc_stream *stream;
    ipc_record *record;
};

static void submit_io_error(cleanup_submit *cs, strbuf *why)
{
    strbuf_printf(why, "cleanup: %s", ipc_error(cs->stream));
}

cleanup_submit *cleanup_submit_open(int timeout, strbuf *why)
{
    int fd = ipc_connect_unix("private/cleanup", timeout);
    if (fd < 0) {
        strbuf_printf(why, "connect to private/cleanup: %s", strerror(errno));
        return NULL;
    }
    cleanup_submit *cs = xmalloc(sizeof(*cs));
    cs->stream = ipc_stream_open(fd, timeout);
    cs->record = ipc_record_new();
    if (ipc_recv(cs->stream, cs->record) != 0) {
        submit_io_error(cs, why);
    } else if (ipc_record_get_str(cs->record, "queue_id") == NULL) {
        const char *reason = ipc_record_get_str(cs->record, "reason");
        strbuf_printf(why, "cleanup refused: %s", reason ? reason : "no queue id");
    } else {
        ipc_record_reset(cs->record);
        return cs;
    }
    cleanup_submit_close(cs);
    return NULL;
}

ipc_record *cleanup_submit_envelope(cleanup_submit *cs)
{
    ipc_record_reset(cs->record);
    return cs->record;
}

int cleanup_submit_send(cleanup_submit *cs, strbuf *why)
{
    if (ipc_send(cs->stream, cs->record) == 0)
        return 0;
    submit_io_error(cs, why);
    return -1;
}

int cleanup_submit_data(cleanup_submit *cs, const char *p, size_t len, strbuf *why)
{
    ipc_record_reset(cs->record);
    ipc_record_add(cs->record, "data", p, len);
    return cleanup_submit_send(cs, why);
}

int cleanup_submit_end(cleanup_submit *cs, strbuf *new_qid, strbuf *why)
{
    ipc_record *r = cs->record;
    ipc_build(r, "end", "1", (char *) NULL);
    if (ipc_send(cs->stream, r) != 0 || ipc_recv(cs->stream, r) != 0) {
        submit_io_error(cs, why);
        return -1;
    }
    long long status = -1;
    if (ipc_record_get_int(r, "status", &status) != 0 || status != 0) {
        const char *reason = ipc_record_get_str(r, "reason");
        const char *dsn = ipc_record_get_str(r, "dsn");
        strbuf_printf(why, "cleanup status %lld: %s%s%s", status, dsn ? dsn : "",
                      dsn ? " " : "", reason ? reason : "no reason");
        return status == 4 || status == 5 ? (int) status : -1;
    }
    const char *qid = ipc_record_get_str(r, "queue_id");
    strbuf_set_str(new_qid, qid ? qid : "?");
    return 0;
}

void cleanup_submit_close(cleanup_submit *cs)
{
    if (cs == NULL)
        return;
    ipc_record_free(cs->record);
    ipc_stream_close(cs->stream);
    xfree(cs);
}

int cleanup_submit_text(const char *origin, const char *from, const char *to,
                        const strbuf *text, int timeout, strbuf *new_qid, strbuf *why)
{
    cleanup_submit *cs = cleanup_submit_open(timeout, why);
    if (cs == NULL)
        return -1;
    ipc_build(cleanup_submit_envelope(cs), "request", "enqueue", "origin", origin,
              "sender", from, "rcpt", to, (char *) NULL);
    int rc = cleanup_submit_send(cs, why);
    /* Content in chunks, cut at line ends when one is near. */
    for (size_t pos = 0; rc == 0 && pos < text->len;) {
        size_t len = text->len - pos;
        if (len > CLEANUP_SUBMIT_CHUNK) {
            len = CLEANUP_SUBMIT_CHUNK;
            const char *nl = memrchr(text->data + pos, '\n', len);
            if (nl)
                len = (size_t) (nl - (text->data + pos)) + 1;
        }
        rc = cleanup_submit_data(cs, text->data + pos, len, why);
        pos += len;
    }
    if (rc == 0)
        rc = cleanup_submit_end(cs, new_qid, why) == 0 ? 0 : -1;
    cleanup_submit_close(cs);
    return rc;
}
