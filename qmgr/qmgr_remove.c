/*
 * qmgr_remove.c - remove (or recycle) finished queue files outside qmgr's
 * loop.
 *
 * Why: unlinking a queue file that was fsynced frees its blocks, and on a
 * file system that discards freed blocks at once (ext4 mounted with
 * "discard", without a journal, as on the machine of doc/performance.md)
 * that unlink waits for the device: about 1 ms per message.  In qmgr's
 * single poll() loop every delivery result and every new delivery waited
 * for it.  One worker thread now does the unlinks; the loop goes on.
 *
 * Recycling (issue 9): freeing an inode per message and allocating one
 * per message makes every create in the spool slow on ext4 without a
 * journal (it scans the inodes freed in the last minutes, under the
 * directory's lock, doc/performance.md).  So a finished queue file is
 * renamed to recycle/QID instead, and cleanup's writer reuses it for a
 * new message (common/queue_file_write.c), as long as recycle/ holds
 * fewer than queue_file_reuse_limit files; above it, or with the limit
 * 0, the file is unlinked as before.  A file of a message over 128 KiB is
 * truncated to 0 before the move, so recycle/ holds at most the limit x
 * 128 KiB of disk space.  The worker keeps a count of what
 * it put there (cleanup takes files out, so the count only overstates)
 * and counts recycle/ again (one readdir) when the count reaches the
 * limit, if an eighth of the limit went in since the last count or a
 * second passed (so a full recycle/ costs no readdir per message).
 *
 * Interface (qmgr.h):
 *   qmgr_remove_start(limit)   start the worker (at qmgr start-up) with
 *                              queue_file_reuse_limit; when
 *                              it cannot be started, removals are done
 *                              in the caller, as before.
 *   qmgr_remove(qid, size)     queue active/QID and defer/QID for removal
 *                              (size: the message's, from its X record):
 *                              only for a message whose every recipient
 *                              is done and no delivery or notice of it
 *                              is running (the end of its round).
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
 * number, which stays allocated until the unlink (or, recycled, for
 * ever; a reused inode gets a new arrival time and so a new id, see
 * queue_file_write.c).  The move to recycle/ is not fsynced either: a
 * crash can bring active/QID back with every recipient done, and qmgr
 * then finishes it again.  Only qmgr's normal end of round recycles; an
 * admin delete and every other removal unlink (a reader may hold those
 * files open).  No reader can be holding a recycled file for delivery:
 * qmgr recycles only after every delivery agent and notice child of the
 * message has reported.  showq and postern queue, which may have it
 * open, check after reading that it was not rewritten
 * (queue_message_unchanged).  The worker touches nothing but the paths
 * handed to it and recycle/, and calls no logging; the log line is
 * written when the loop collects the result, so "removed" in the log
 * still means the file is gone from the queue.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "qmgr.h"
#include "log.h"
#include "mem.h"

struct removal {
    struct removal *next;
    char *qid;
    char *path;                 /* active/QID */
    char *defer_path;           /* its defer log, if any */
    char *recycle_path;         /* recycle/QID */
    int empty_first;            /* too big to keep its blocks in recycle/ */
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

/* Files of messages bigger than this go to recycle/ emptied (their
 * blocks freed, their inode kept): the disk space recycle/ holds stays
 * below queue_file_reuse_limit x this (32 MiB with the defaults). */
#define RECYCLE_KEEP_BYTES (128 * 1024)

/* Worker only (or the loop's thread when there is no worker). */
static long long recycle_limit;                 /* queue_file_reuse_limit */
static long long recycle_files;                 /* in recycle/, at most */
static long long recycled_since_count;          /* moves since that count */
static time_t recycle_counted = -1;             /* last count by readdir */

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
    xfree(r->recycle_path);
    xfree(r);
}

/* Files in recycle/ now (not dot-files), or -1. */
static long long recycle_count_dir(void)
{
    DIR *d = opendir(QUEUE_RECYCLE_DIR);
    if (!d)
        return -1;
    long long n = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL)
        if (de->d_name[0] != '.')
            n++;
    closedir(d);
    return n;
}

/* May one more file go to recycle/? */
static int recycle_room(void)
{
    if (recycle_limit <= 0)
        return 0;
    if (recycle_files < recycle_limit)
        return 1;
    /* Our count says full; cleanup has probably taken some (under load
     * it takes them as fast as they come).  Look again, but only after
     * an eighth of the limit went in since the last look, or a second:
     * when recycle/ really stays full, not a readdir per message. */
    time_t now = time(NULL);
    long long step = recycle_limit / 8 > 0 ? recycle_limit / 8 : 1;
    if (recycle_counted >= 0 && recycled_since_count < step
        && now - recycle_counted < 1)
        return 0;
    recycle_counted = now;
    recycled_since_count = 0;
    long long n = recycle_count_dir();
    recycle_files = n < 0 ? recycle_limit : n;
    return recycle_files < recycle_limit;
}

static void do_unlink(struct removal *r)
{
    if (recycle_room()) {
        /* A big file is emptied first, so recycle/ never holds more than
         * about limit x RECYCLE_KEEP_BYTES; its inode is still reused. */
        if (r->empty_first && truncate(r->path, 0) < 0) {
            /* gone or not ours: the rename or unlink below tells */
        }
        if (rename(r->path, r->recycle_path) == 0) {
            recycle_files++;
            recycled_since_count++;
            r->err = 0;
            (void) unlink(r->defer_path);
            return;
        }
        /* A spool without recycle/ (master creates it at start): unlink
         * from now on, as before.  Anything else: unlink this one. */
        if (errno == ENOENT && access(QUEUE_RECYCLE_DIR, F_OK) < 0)
            recycle_limit = 0;
    }
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

void qmgr_remove_start(long long reuse_limit)
{
    if (started)
        return;
    recycle_limit = reuse_limit;
    if (recycle_limit > 0) {
        /* What an earlier qmgr left there counts against the limit. */
        long long n = recycle_count_dir();
        recycle_files = n < 0 ? 0 : n;
    }
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

void qmgr_remove(const char *qid, long long size)
{
    struct removal *r = xcalloc(1, sizeof(*r));
    r->empty_first = size > RECYCLE_KEEP_BYTES;
    strbuf path;
    strbuf_init(&path);
    r->qid = xstrdup(qid);
    queue_path(&path, "active", qid);
    r->path = xstrdup(strbuf_str(&path));
    queue_path(&path, "defer", qid);
    r->defer_path = xstrdup(strbuf_str(&path));
    queue_path(&path, QUEUE_RECYCLE_DIR, qid);
    r->recycle_path = xstrdup(strbuf_str(&path));
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
