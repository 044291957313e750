/*
 * cleanup_submit.c - a composed message to cleanup; see cleanup_submit.h.
 */
#include <errno.h>
#include <string.h>

#include "cleanup_submit.h"
#include "ipc.h"

#define SUBMIT_CHUNK 65536

int cleanup_submit_text(const char *origin, const char *from, const char *to,
                        const strbuf *text, int timeout, strbuf *new_qid, strbuf *why)
{
    int fd = ipc_connect_unix("private/cleanup", timeout);
    if (fd < 0) {
        strbuf_printf(why, "connect to private/cleanup: %s", strerror(errno));
        return -1;
    }
    ipc_stream *s = ipc_stream_open(fd, timeout);
    ipc_record *r = ipc_record_new();
    int rc = -1;
    const char *v;
    if (ipc_recv(s, r) != 0) {
        strbuf_printf(why, "cleanup: %s", ipc_error(s));
        goto out;
    }
    if ((v = ipc_record_get_str(r, "queue_id")) == NULL) {
        v = ipc_record_get_str(r, "reason");
        strbuf_printf(why, "cleanup refused: %s", v ? v : "no queue id");
        goto out;
    }
    ipc_build(r, "request", "enqueue", "origin", origin, "sender", from,
              "rcpt", to, (char *) NULL);
    if (ipc_send(s, r) != 0)
        goto ioerr;
    /* Content in chunks, cut at line ends when one is near. */
    size_t pos = 0;
    while (pos < text->len) {
        size_t len = text->len - pos;
        if (len > SUBMIT_CHUNK) {
            len = SUBMIT_CHUNK;
            const char *nl = memrchr(text->data + pos, '\n', len);
            if (nl)
                len = (size_t) (nl - (text->data + pos)) + 1;
        }
        ipc_record_reset(r);
        ipc_record_add(r, "data", text->data + pos, len);
        if (ipc_send(s, r) != 0)
            goto ioerr;
        pos += len;
    }
    ipc_build(r, "end", "1", (char *) NULL);
    if (ipc_send(s, r) != 0 || ipc_recv(s, r) != 0)
        goto ioerr;
    long long status = -1;
    if (ipc_record_get_int(r, "status", &status) != 0 || status != 0) {
        v = ipc_record_get_str(r, "reason");
        strbuf_printf(why, "cleanup status %lld: %s", status, v ? v : "no reason");
        goto out;
    }
    v = ipc_record_get_str(r, "queue_id");
    strbuf_set_str(new_qid, v ? v : "?");
    rc = 0;
    goto out;
ioerr:
    strbuf_printf(why, "cleanup: %s", ipc_error(s));
out:
    ipc_record_free(r);
    ipc_stream_close(s);
    return rc;
}
