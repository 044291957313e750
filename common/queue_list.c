/*
 * queue_list.c - listing records for the queue (format in queue_list.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "defer_log.h"
#include "log.h"
#include "mem.h"
#include "queue.h"
#include "queue_list.h"

const char *const queue_list_queues[] = { "maildrop", "incoming", "active", "deferred",
                                           "hold", NULL };

struct reasons {
    const struct queue_message *msg;
    char **reason;              /* parallel to msg->rcpts, NULL = none */
};

/* Last D line per recipient wins (defer_log.h). */
static void note_reason(const struct defer_entry *e, void *ctx)
{
    struct reasons *rs = ctx;
    if (e->type != DEFER_ENTRY_DEFER)
        return;
    for (int i = 0; i < rs->msg->nrcpt; i++)
        if (rs->msg->rcpts[i].status == RCPT_PENDING
            && strcmp(rs->msg->rcpts[i].address, e->recipient) == 0) {
            xfree(rs->reason[i]);
            rs->reason[i] = xstrdup(e->reason);
        }
}

/* A maildrop file (doc/submission.md): written by any local user through
 * postdrop, so read as untrusted input, up to the first content record.
 * Recipients are bare addresses (no status byte). */
static int list_maildrop(const char *qid, ipc_record *r)
{
    strbuf path, data, err;
    strbuf_init(&path);
    strbuf_init(&data);
    strbuf_init(&err);
    queue_path(&path, "maildrop", qid);
    int rc = -1;
    FILE *fp = fopen(strbuf_str(&path), "re");
    struct stat st;
    if (fp == NULL || fstat(fileno(fp), &st) < 0 || !S_ISREG(st.st_mode))
        goto done;
    ipc_record_reset(r);
    ipc_record_add_str(r, "queue_name", "maildrop");
    ipc_record_add_str(r, "queue_id", qid);
    long long arrival = (long long) st.st_mtime;
    ipc_record *rcpts = ipc_record_new();
    int type, n = 0, sender = 0;
    for (;;) {
        int got = queue_record_read(fp, &type, &data, &err);
        if (got <= 0 || (n++ == 0 && type != QREC_VERSION)
            || (data.len && memchr(data.data, '\0', data.len)))
            break;
        if (type == QREC_TIME) {
            arrival = strtoll(strbuf_str(&data), NULL, 10);
        } else if (type == QREC_SENDER && !sender) {
            sender = 1;
            ipc_record_add_int(r, "arrival_time", arrival);
            ipc_record_add_int(r, "message_size", (long long) st.st_size);
            ipc_record_add_str(r, "sender", strbuf_str(&data));
        } else if (type == QREC_RCPT) {
            ipc_record_add_str(rcpts, "rcpt", strbuf_str(&data));
        } else if (type == QREC_LINE || type == QREC_END) {
            rc = sender ? 0 : -1;
            break;
        }
    }
    if (rc == 0)
        for (size_t i = 0; i < rcpts->n; i++) {
            ipc_record_add(r, "rcpt", rcpts->attrs[i].value.data, rcpts->attrs[i].value.len);
            ipc_record_add_str(r, "delay_reason", "");
        }
    ipc_record_free(rcpts);
done:
    if (fp)
        fclose(fp);
    if (rc < 0)
        log_debug("%s: not listed", strbuf_str(&path));
    strbuf_release(&path);
    strbuf_release(&data);
    strbuf_release(&err);
    return rc;
}

int queue_list_message(const char *queue, const char *qid, ipc_record *r)
{
    if (strcmp(queue, "maildrop") == 0)
        return list_maildrop(qid, r);
    strbuf path, err;
    strbuf_init(&path);
    strbuf_init(&err);
    queue_path(&path, queue, qid);
    int fd = open(strbuf_str(&path), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno != ENOENT)
            log_warning("%s: open %s: %s", qid, strbuf_str(&path), strerror(errno));
        strbuf_release(&path);
        strbuf_release(&err);
        return -1;
    }
    struct queue_message msg;
    int rc = queue_message_load(fd, qid, &msg, &err);
    close(fd);
    if (rc < 0) {
        log_debug("%s: not listed: %s", strbuf_str(&path), strbuf_str(&err));
        strbuf_release(&path);
        strbuf_release(&err);
        return -1;
    }
    struct reasons rs = { &msg, xcalloc((size_t) msg.nrcpt + 1, sizeof(char *)) };
    queue_path(&path, "defer", qid);
    defer_log_read(strbuf_str(&path), note_reason, &rs);

    ipc_record_reset(r);
    ipc_record_add_str(r, "queue_name", queue);
    ipc_record_add_str(r, "queue_id", qid);
    ipc_record_add_int(r, "arrival_time", msg.arrival_sec);
    ipc_record_add_int(r, "message_size", msg.size);
    ipc_record_add_str(r, "sender", msg.sender);
    for (int i = 0; i < msg.nrcpt; i++) {
        if (msg.rcpts[i].status != RCPT_PENDING)
            continue;
        ipc_record_add_str(r, "rcpt", msg.rcpts[i].address);
        ipc_record_add_str(r, "delay_reason", rs.reason[i] ? rs.reason[i] : "");
    }
    for (int i = 0; i < msg.nrcpt; i++)
        xfree(rs.reason[i]);
    xfree(rs.reason);
    queue_message_free(&msg);
    strbuf_release(&path);
    strbuf_release(&err);
    return 0;
}

struct walk_ctx {
    const char *queue;
    ipc_record *r;
    int (*emit)(const ipc_record *r, void *ctx);
    void *ctx;
};

static int walk_one(const char *qid, void *ctx)
{
    struct walk_ctx *w = ctx;
    if (queue_list_message(w->queue, qid, w->r) < 0)
        return 0;
    return w->emit(w->r, w->ctx);
}

int queue_list_walk(int (*emit)(const ipc_record *r, void *ctx), void *ctx)
{
    struct walk_ctx w = { NULL, ipc_record_new(), emit, ctx };
    int rc = 0;
    for (int q = 0; rc == 0 && queue_list_queues[q]; q++) {
        w.queue = queue_list_queues[q];
        rc = queue_scan(w.queue, walk_one, &w);
        if (rc < 0 && errno == ENOENT)
            rc = 0;             /* not created yet: nothing queued there */
    }
    ipc_record_free(w.r);
    return rc;
}
