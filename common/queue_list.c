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
#include "maildrop.h"
#include "mem.h"
#include "queue.h"
#include "queue_list.h"

const char *const queue_list_queues[] = { "maildrop", "requeue", "incoming", "active",
                                           "deferred", "hold", NULL };

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
 * postdrop, so read as untrusted input with pickup's own reader
 * (common/maildrop.c), up to the first content record; a file it calls
 * malformed (pickup will move it to corrupt/) is not listed.  The arrival
 * time is the T record's, else the file's mtime; recipients are listed
 * as written (none for sendmail -t, whose come from the headers). */
static int list_maildrop(const char *qid, ipc_record *r)
{
    strbuf path, line, why;
    strbuf_init(&path);
    strbuf_init(&line);
    strbuf_init(&why);
    struct maildrop_msg m;
    maildrop_msg_init(&m);
    queue_path(&path, "maildrop", qid);
    int rc = -1, first;
    FILE *fp = fopen(strbuf_str(&path), "re");
    struct stat st;
    if (fp == NULL || fstat(fileno(fp), &st) < 0 || !S_ISREG(st.st_mode)) {
        strbuf_set_str(&why, fp ? "not a regular file" : "cannot open");
        goto done;
    }
    if (maildrop_read_envelope(fp, &m, &first, &line, &why) < 0)
        goto done;
    ipc_record_reset(r);
    ipc_record_add_str(r, "queue_name", "maildrop");
    ipc_record_add_str(r, "queue_id", qid);
    ipc_record_add_int(r, "arrival_time", m.arrival ? m.arrival : (long long) st.st_mtime);
    ipc_record_add_int(r, "message_size", (long long) st.st_size);
    ipc_record_add_str(r, "sender", strbuf_str(&m.sender));
    for (size_t i = 0; i < m.env->n; i++) {
        if (strcmp(m.env->attrs[i].name, "rcpt") != 0)
            continue;
        ipc_record_add(r, "rcpt", m.env->attrs[i].value.data, m.env->attrs[i].value.len);
        ipc_record_add_str(r, "delay_reason", "");
    }
    rc = 0;
done:
    if (fp)
        fclose(fp);
    if (rc < 0)
        log_debug("%s: not listed: %s", strbuf_str(&path), strbuf_str(&why));
    maildrop_msg_free(&m);
    strbuf_release(&path);
    strbuf_release(&line);
    strbuf_release(&why);
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
    if (rc == 0 && !queue_message_unchanged(fd, &msg)) {
        /* Finished, recycled and taken for another message while we read
         * it: it is gone from the queue (queue.h, recycle/). */
        queue_message_free(&msg);
        strbuf_set_str(&err, "rewritten for another message while read");
        rc = -1;
    }
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
