/*
 * qmgr_remove.c - remove finished queue files outside qmgr's loop.
 *
 * Why: unlinking a queue file that was fsynced frees its blocks, and on a
 * file system that discards freed blocks at once (ext4 mounted with
 * "discard", without a journal, as on the machine of doc/performance.md)
 * that unlink waits for the device: about 1 ms per message.  In qmgr's
 * single poll() loop every delivery result and every new delivery waited
 * for it.  One worker thread now does the unlinks; the loop goes on.
 *
 * Interface (qmgr.h):
 *   qmgr_remove_start()        start the worker (at qmgr start-up); when
 *                              it cannot be started, removals are done
 *                              in the caller, as before.
 *   qmgr_remove(qid)           queue active/QID and defer/QID for removal.
 *   qmgr_remove_pollfd()       readable when removals have completed;
 *   qmgr_remove_collect()      then logs "QID: removed" (or the warning)
 *                              for each, in the loop's thread.
 *   qmgr_remove_pending(qid)   queued and not collected yet (the admin
 *                              requests must not touch that file).
 *   at exit (atexit, in qmgr's own process only) the worker finishes what
 *   is queued and the results are logged.
 *
 * Contract: durability is unchanged.  By the time a message is queued
 * here every recipient is marked done in its file; the unlink was never
 * made durable by a directory fsync (the mark of the last recipient is
 * not fsynced either: qmgr_message.c), so a crash before or after it
 * could and still can only repeat a delivery, never lose one.  No other
 * file can take the name meanwhile: a queue id includes the file's inode
 * number, which stays allocated until the unlink.  The worker touches
 * nothing but the two paths handed to it and calls no logging; the log
 * line is written when the loop collects the result, so "removed" in the
 * log still means the file is gone.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "qmgr.h"
#include "log.h"
#include "mem.h"

struct removal {
    struct removal *next;
    char *qid;
    char *path;                 /* active/QID */
    char *defer_path;           /* its defer log, if any */
    int err;                    /* errno of the queue file's unlink, 0 ok */
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t work_cond = PTHREAD_COND_INITIALIZER;
static struct removal *todo_head, *todo_tail;   /* for the worker */
static struct removal *done_head, *done_tail;   /* for the loop */
static int stopping;
static int started;
static pid_t owner_pid;
static pthread_t worker;
static int wake_pipe[2] = { -1, -1 };
static struct qid_set pending;                  /* loop thread only */

static void log_result(struct removal *r)
{
    if (r->err && r->err != ENOENT)
        log_warning("%s: unlink %s: %s", r->qid, r->path, strerror(r->err));
    else
        log_info("%s: removed", r->qid);
}

static void removal_free(struct removal *r)
{
    xfree(r->qid);
    xfree(r->path);
    xfree(r->defer_path);
    xfree(r);
}

static void do_unlink(struct removal *r)
{
    r->err = unlink(r->path) < 0 ? errno : 0;
    (void) unlink(r->defer_path);
}

static void *worker_main(void *arg)
{
    (void) arg;
    pthread_mutex_lock(&lock);
    for (;;) {
        while (!todo_head && !stopping)
            pthread_cond_wait(&work_cond, &lock);
        if (!todo_head)
            break;                      /* stopping, nothing left */
        struct removal *batch = todo_head;
        todo_head = todo_tail = NULL;
        pthread_mutex_unlock(&lock);
        struct removal *last = NULL;
        for (struct removal *r = batch; r; r = r->next) {
            do_unlink(r);
            last = r;
        }
        pthread_mutex_lock(&lock);
        if (done_tail)
            done_tail->next = batch;
        else
            done_head = batch;
        done_tail = last;
        /* one byte per batch; a full pipe already says "collect" */
        ssize_t w = write(wake_pipe[1], "", 1);
        (void) w;
    }
    pthread_mutex_unlock(&lock);
    return NULL;
}

static void remove_finish(void)
{
    if (!started || getpid() != owner_pid)
        return;
    pthread_mutex_lock(&lock);
    stopping = 1;
    pthread_cond_signal(&work_cond);
    pthread_mutex_unlock(&lock);
    pthread_join(worker, NULL);
    started = 0;
    qmgr_remove_collect();
}

void qmgr_remove_start(void)
{
    if (started)
        return;
    if (pipe2(wake_pipe, O_CLOEXEC | O_NONBLOCK) < 0) {
        log_warning("removal worker: pipe: %s (queue files removed in the loop)",
                    strerror(errno));
        return;
    }
    /* The worker takes no signals: SIGTERM must reach the loop's ppoll. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int rc = pthread_create(&worker, NULL, worker_main, NULL);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        log_warning("removal worker: %s (queue files removed in the loop)", strerror(rc));
        close(wake_pipe[0]);
        close(wake_pipe[1]);
        wake_pipe[0] = wake_pipe[1] = -1;
        return;
    }
    started = 1;
    owner_pid = getpid();
    atexit(remove_finish);
}

void qmgr_remove(const char *qid)
{
    struct removal *r = xcalloc(1, sizeof(*r));
    strbuf path;
    strbuf_init(&path);
    r->qid = xstrdup(qid);
    queue_path(&path, "active", qid);
    r->path = xstrdup(strbuf_str(&path));
    queue_path(&path, "defer", qid);
    r->defer_path = xstrdup(strbuf_str(&path));
    strbuf_release(&path);
    if (!started) {
        do_unlink(r);
        log_result(r);
        removal_free(r);
        return;
    }
    qid_set_add(&pending, qid);
    pthread_mutex_lock(&lock);
    if (todo_tail)
        todo_tail->next = r;
    else
        todo_head = r;
    todo_tail = r;
    pthread_cond_signal(&work_cond);
    pthread_mutex_unlock(&lock);
}

int qmgr_remove_pollfd(void)
{
    return started ? wake_pipe[0] : -1;
}

void qmgr_remove_collect(void)
{
    char buf[256];
    while (wake_pipe[0] >= 0 && read(wake_pipe[0], buf, sizeof(buf)) > 0)
        ;
    pthread_mutex_lock(&lock);
    struct removal *list = done_head;
    done_head = done_tail = NULL;
    pthread_mutex_unlock(&lock);
    while (list) {
        struct removal *next = list->next;
        log_result(list);
        qid_set_remove(&pending, list->qid);
        removal_free(list);
        list = next;
    }
}

int qmgr_remove_pending(const char *qid)
{
    return qid_set_has(&pending, qid);
}
