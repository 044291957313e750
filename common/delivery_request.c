/*
 * delivery_request.c - decode qmgr's delivery request, open its queue
 * file, and answer per recipient; the one copy every delivery agent uses.
 * Interface and contract: delivery_request.h.
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "delivery_request.h"
#include "log.h"
#include "mem.h"

void delivery_request_init(struct delivery_request *dr)
{
    memset(dr, 0, sizeof(*dr));
}

/* The value of attribute at as a C string, or NULL when it holds a NUL. */
static const char *attr_str(const struct ipc_attr *at)
{
    if (memchr(at->value.data, '\0', at->value.len) != NULL)
        return NULL;
    return strbuf_str(&at->value);
}

/* The single fields: name -> where it goes. */
struct single_field {
    const char *name;
    const char **dest;
};

int delivery_request_decode(struct delivery_request *dr, const ipc_record *in,
                            double now, unsigned flags, strbuf *why)
{
    const char *request = NULL;
    struct single_field fields[] = {
        { "request", &request },
        { "queue_id", &dr->qid },
        { "queue_file", &dr->queue_file },
        { "sender", &dr->sender },
        { "nexthop", &dr->nexthop },
        { "envid", &dr->envid },
        { "ret", &dr->ret },
    };
    const size_t nfields = sizeof(fields) / sizeof(fields[0]);

    xfree(dr->rcpts);
    dr->rcpts = NULL;
    dr->nrcpt = 0;
    for (size_t f = 0; f < nfields; f++)
        *fields[f].dest = NULL;

    /* Pass 1: the single fields, each at most once and NUL-free. */
    size_t nrcpt = 0;
    for (size_t i = 0; i < in->n; i++) {
        const struct ipc_attr *at = &in->attrs[i];
        if (strcmp(at->name, "rcpt") == 0) {
            nrcpt++;
            continue;
        }
        for (size_t f = 0; f < nfields; f++) {
            if (strcmp(at->name, fields[f].name) != 0)
                continue;
            if (*fields[f].dest != NULL) {
                strbuf_printf(why, "duplicate %s", at->name);
                return -1;
            }
            if ((*fields[f].dest = attr_str(at)) == NULL) {
                strbuf_printf(why, "NUL byte in %s", at->name);
                return -1;
            }
        }
    }
    if (request == NULL) {
        strbuf_set_str(why, "missing request");
        return -1;
    }
    if (strcmp(request, "wakeup") == 0)
        return 0;
    if (strcmp(request, "deliver") != 0) {
        strbuf_set_str(why, "unknown request");
        return -1;
    }
    if (dr->qid == NULL || dr->queue_file == NULL || dr->sender == NULL) {
        strbuf_printf(why, "missing %s",
                      !dr->qid ? "queue_id" : !dr->queue_file ? "queue_file" : "sender");
        return -1;
    }
    if (!queue_id_valid(dr->qid)) {
        strbuf_set_str(why, "bad queue_id");
        return -1;
    }
    if (!*dr->queue_file || strlen(dr->queue_file) > DELIVERY_QUEUE_FILE_MAX) {
        strbuf_set_str(why, "bad queue_file");
        return -1;
    }
    if ((flags & DELIVERY_NEED_NEXTHOP) && (dr->nexthop == NULL || !*dr->nexthop)) {
        strbuf_set_str(why, "missing nexthop");
        return -1;
    }
    if (nrcpt == 0) {
        strbuf_set_str(why, "no rcpt");
        return -1;
    }

    /* Pass 2: recipients in request order; orcpt= and notify= belong to
     * the rcpt= that follows them. */
    dr->rcpts = xcalloc(nrcpt, sizeof(*dr->rcpts));
    const char *orcpt = NULL, *notify = NULL;
    for (size_t i = 0; i < in->n; i++) {
        const struct ipc_attr *at = &in->attrs[i];
        const char **slot = NULL;
        if (strcmp(at->name, "orcpt") == 0)
            slot = &orcpt;
        else if (strcmp(at->name, "notify") == 0)
            slot = &notify;
        else if (strcmp(at->name, "rcpt") != 0)
            continue;
        const char *value = attr_str(at);
        if (value == NULL) {
            strbuf_printf(why, "NUL byte in %s", at->name);
            goto bad;
        }
        if (slot != NULL) {
            if (*slot != NULL) {
                strbuf_printf(why, "two %s before one rcpt", at->name);
                goto bad;
            }
            *slot = value;
            continue;
        }
        if (!*value) {
            strbuf_set_str(why, "empty rcpt");
            goto bad;
        }
        struct delivery_rcpt *r = &dr->rcpts[dr->nrcpt++];
        r->address = value;
        r->orcpt = orcpt;
        r->notify = notify;
        orcpt = notify = NULL;
    }
    if (orcpt != NULL || notify != NULL) {
        strbuf_printf(why, "%s without rcpt", orcpt ? "orcpt" : "notify");
        goto bad;
    }
    delivery_times_get(in, now, &dr->times);
    return 1;

bad:
    xfree(dr->rcpts);
    dr->rcpts = NULL;
    dr->nrcpt = 0;
    return -1;
}

int delivery_request_receive(struct delivery_request *dr, int client_fd, unsigned flags)
{
    delivery_request_init(dr);
    int fd = dup(client_fd);
    if (fd < 0) {
        log_warning("dup: %m");
        return 0;
    }
    dr->stream = ipc_stream_open(fd, (int)config_time("ipc_timeout"));
    dr->in = ipc_record_new();
    dr->out = ipc_record_new();
    return delivery_request_next(dr, flags);
}

int delivery_request_next(struct delivery_request *dr, unsigned flags)
{
    if (dr->stream == NULL)
        return 0;
    /* The previous request's fields point into dr->in: drop them first. */
    xfree(dr->rcpts);
    dr->rcpts = NULL;
    dr->nrcpt = 0;
    int rc = ipc_recv(dr->stream, dr->in);
    if (rc != 0) {
        if (rc < 0)
            log_warning("reading delivery request: %s", ipc_error(dr->stream));
        return 0;
    }
    strbuf why;
    strbuf_init(&why);
    rc = delivery_request_decode(dr, dr->in, delivery_now(), flags, &why);
    if (rc < 0)
        log_warning("malformed delivery request: %s", strbuf_str(&why));
    strbuf_release(&why);
    return rc > 0;
}

int delivery_queue_file_open(const char *qid, const char *queue_file,
                             struct queue_message *msg, strbuf *why)
{
    /* queue_file comes from qmgr, but stay inside the spool anyway */
    if (queue_file[0] == '/' || strstr(queue_file, "..") != NULL) {
        strbuf_printf(why, "bad queue file name: %s", queue_file);
        return -1;
    }
    int fd = open(queue_file, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) {
        strbuf_printf(why, "open %s: %s", queue_file, strerror(errno));
        return -1;
    }
    if (queue_message_load(fd, qid, msg, why) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

void delivery_request_reply(struct delivery_request *dr, const char *rcpt,
                            const char *orcpt, const char *relay,
                            const struct delivery_times *times, double end,
                            const char *dsn, const char *status, const char *reason)
{
    delivery_request_reply_for(dr, dr->qid, rcpt, orcpt, relay, times, end, dsn, status,
                               reason);
}

void delivery_request_reply_for(struct delivery_request *dr, const char *qid,
                                const char *rcpt, const char *orcpt, const char *relay,
                                const struct delivery_times *times, double end,
                                const char *dsn, const char *status, const char *reason)
{
    delivery_log(qid, rcpt, orcpt, relay, times, end > 0 ? end : delivery_now(),
                 dsn, status, reason);
    ipc_record *rec = dr->out;
    ipc_record_reset(rec);
    ipc_record_add_str(rec, "rcpt", rcpt);
    ipc_record_add_str(rec, "status", status);
    ipc_record_add_str(rec, "dsn", dsn);
    ipc_record_add_str(rec, "relay", relay && *relay ? relay : "none");
    ipc_record_add_str(rec, "reason", reason);
    if (ipc_send(dr->stream, rec) < 0)
        log_warning("%s: reply to qmgr: %s", rcpt, ipc_error(dr->stream));
}

void delivery_request_done(struct delivery_request *dr)
{
    ipc_build(dr->out, "done", "1", NULL);
    if (ipc_send(dr->stream, dr->out) < 0)
        log_warning("%s: reply to qmgr: %s", dr->qid, ipc_error(dr->stream));
}

int delivery_request_waiting(const struct delivery_request *dr)
{
    return dr->stream != NULL && ipc_input_ready(dr->stream);
}

void delivery_request_free(struct delivery_request *dr)
{
    xfree(dr->rcpts);
    if (dr->in)
        ipc_record_free(dr->in);
    if (dr->out)
        ipc_record_free(dr->out);
    if (dr->stream)
        ipc_stream_close(dr->stream);
    delivery_request_init(dr);
}
