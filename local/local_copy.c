/*
 * local_copy.c - the message as local writes it to a mailbox, file, command
 * or cleanup, and the Delivered-To: scan for loop detection.
 *
 * Interface: local_copy_message(a, fd, flags, limit, why) and
 * local_scan_headers(req, why); see local.h.
 *
 * Contract: the content is re-read from the queue file for every copy (the
 * queue file is opened read-only and never changed).  Every copy starts
 * with "Delivered-To: RECIPIENT" (and "Return-Path: <SENDER>" for mailboxes,
 * files and commands) before the original headers; lines end in LF.  Writes
 * are buffered and retried on short writes; the first error stops the copy
 * and is returned as an errno value.
 */
#include <ctype.h>
#include <errno.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "local.h"
#include "mailbox_format.h"
#include "mem.h"

#define COPY_FLUSH_SIZE 65536

struct copy_sink {
    int fd;
    strbuf buf;
    long long written;
    long long limit;
    int error;                  /* errno of the first failure, 0 if none */
};

static void sink_flush(struct copy_sink *k)
{
    size_t off = 0;
    while (k->error == 0 && off < k->buf.len) {
        ssize_t n = write(k->fd, k->buf.data + off, k->buf.len - off);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            k->error = errno ? errno : EIO;
        } else {
            off += (size_t)n;
        }
    }
    strbuf_reset(&k->buf);
}

static void sink_add(struct copy_sink *k, const char *data, size_t len)
{
    if (k->error)
        return;
    k->written += (long long)len;
    if (k->limit > 0 && k->written > k->limit) {
        k->error = EFBIG;
        return;
    }
    strbuf_append(&k->buf, data, len);
    if (k->buf.len >= COPY_FLUSH_SIZE)
        sink_flush(k);
}

int local_copy_message(struct local_attempt *a, int fd, int flags,
                       long long limit, strbuf *why)
{
    struct local_request *req = a->req;
    struct copy_sink k = { .fd = fd, .limit = limit };
    strbuf_init(&k.buf);
    strbuf line, tmp;
    strbuf_init(&line);
    strbuf_init(&tmp);

    if (flags & COPY_MBOX) {
        mbox_from_line(&tmp, a->sender, time(NULL));
        sink_add(&k, tmp.data, tmp.len);
    }
    if (flags & COPY_RETURN_PATH) {
        strbuf_printf(&tmp, "Return-Path: <%s>\n", a->sender);
        sink_add(&k, tmp.data, tmp.len);
    }
    strbuf_printf(&tmp, "Delivered-To: %s\n", a->delivered_to);
    sink_add(&k, tmp.data, tmp.len);

    queue_content_reader *r = queue_content_open(req->queue_fd, &req->msg);
    int rc = -1;
    if (r == NULL)
        k.error = EIO;
    while (r != NULL && k.error == 0 && (rc = queue_content_next(r, &line, why)) == 1) {
        if (flags & COPY_MBOX) {
            if (mbox_needs_quote(line.data, line.len))
                sink_add(&k, ">", 1);
        }
        sink_add(&k, line.data, line.len);
        sink_add(&k, "\n", 1);
    }
    if (r != NULL)
        queue_content_close(r);
    if (rc < 0 && (k.error == 0 || k.error == EIO)) {
        k.error = EIO;
        if (why->len == 0)
            strbuf_set_str(why, "queue file read error");
    }
    if (flags & COPY_MBOX)
        sink_add(&k, "\n", 1);
    sink_flush(&k);
    strbuf_release(&k.buf);
    strbuf_release(&line);
    strbuf_release(&tmp);
    return k.error;
}

/* Lowercase copy of s. */
static char *lowercase_dup(const char *s, size_t len)
{
    char *d = xstrndup(s, len);
    for (char *p = d; *p; p++)
        *p = (char)tolower((unsigned char)*p);
    return d;
}

int local_scan_headers(struct local_request *req, strbuf *why)
{
    long long budget = config_size("local_header_limit");
    strbuf line, value;
    strbuf_init(&line);
    strbuf_init(&value);
    queue_content_reader *r = queue_content_open(req->queue_fd, &req->msg);
    int rc = -1;
    while (r != NULL && (rc = queue_content_next(r, &line, why)) == 1) {
        if (line.len == 0)
            break;              /* end of headers */
        budget -= (long long)line.len + 1;
        if (budget < 0)
            break;
        if (header_delivered_to(line.data, line.len, &value)) {
            req->delivered_to = xrealloc(req->delivered_to,
                                         (size_t)(req->ndelivered_to + 1) * sizeof(char *));
            req->delivered_to[req->ndelivered_to++] = lowercase_dup(value.data, value.len);
        }
    }
    if (r != NULL)
        queue_content_close(r);
    strbuf_release(&line);
    strbuf_release(&value);
    if (rc < 0) {
        if (why->len == 0)
            strbuf_set_str(why, "queue file read error");
        return -1;
    }
    return 0;
}
