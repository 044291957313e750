/*
 * local_sync.c - group commit of Maildir deliveries over pipelined requests.
 *
 * Why: a Maildir delivery is durable only once new/ is fsynced (the file
 * itself is fsynced before its link).  When qmgr pipelines several
 * requests on one connection (local_destination_pipeline_limit), most of
 * them go to the same mailbox, and one fsync of new/ after all their
 * links makes them all durable: one directory fsync per batch instead of
 * one per message.
 *
 * Interface (local.h):
 *   local_sync_enable(on)       local_serve() turns it on for a connection;
 *                               off, answers are not held.
 *   local_sync_file_later(fd, tmp, path, dir)  maildir_write, for a copy
 *                               written to tmp (fd still open, its data
 *                               write started; only while enabled): at
 *                               the release the file is fsynced, renamed
 *                               to path (with the effective uid and gid
 *                               it was written with), and dir (new/) is
 *                               fsynced before the delivery counts.  Why:
 *                               the fsyncs of a batch then follow writes
 *                               that are already on their way to the
 *                               disk, and the inode table and tmp/ blocks
 *                               they share are written once, instead of
 *                               each delivery waiting for its own data,
 *                               inode, tmp/ entry and flush in turn.
 *   local_hold_answer(...)      one recipient's result, held;
 *   local_hold_done()           the request's {done=1}, held;
 *   local_held_requests()       requests whose answers are held;
 *   local_release_answers(dr)   commit every copy registered since the
 *                               last release (each directory fsynced
 *                               once), then log
 *                               and send the held answers in order on
 *                               dr's connection.
 *
 * Contract: nothing that depends on a directory is logged or answered
 * "sent" before that directory's fsync returned, nor before its file was
 * fsynced and renamed into new/ (a file that was not is removed from
 * tmp/, its answer deferred like a failed directory fsync).  A recipient's answer
 * depends on the directories registered between the previous held answer
 * and its own (its deliveries).  When one of them fails, every file it
 * linked there is unlinked and the answer becomes deferred ("cannot
 * update MAILDIR: ERROR", 4.2.0, or 4.2.2 for a full disk), as an
 * unbatched fsync failure is; answers that did not depend on it stand.  The log line's delay ends at the release.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "local.h"
#include "log.h"
#include "mem.h"
#include "queue.h"

struct sync_item {
    char *dir;                  /* new/ */
    char *path;                 /* new/NAME */
    char *tmp;                  /* tmp/NAME, the copy as written */
    int fd;                     /* the copy, open until it is fsynced */
    uid_t uid;                  /* the identity the copy was written as */
    gid_t gid;
    int dir_synced;             /* reached new/: err is its fsync's outcome */
    int err;                    /* set by the release: 0 or the failure's errno */
};

struct held_answer {
    char *qid;                  /* NULL: the request's {done=1} */
    struct delivery_times times;
    char *rcpt, *orcpt, *dsn, *status, *reason;
    int first, last;            /* its sync items: [first, last) */
};

static int sync_on;
static struct sync_item *items;
static int nitems, items_cap;
static struct held_answer *held;
static int nheld, held_cap, held_requests;
static int answered_upto;       /* items before this belong to earlier answers */

void local_sync_enable(int on)
{
    sync_on = on;
}

int local_sync_enabled(void)
{
    return sync_on;
}

void local_sync_file_later(int fd, const char *tmp, const char *path, const char *dir)
{
    if (!sync_on)
        log_panic("local_sync_file_later: the group commit is off");
    if (nitems == items_cap) {
        items_cap = items_cap ? 2 * items_cap : 16;
        items = xrealloc(items, (size_t)items_cap * sizeof(*items));
    }
    struct sync_item *it = &items[nitems++];
    memset(it, 0, sizeof(*it));
    it->dir = xstrdup(dir);
    it->path = xstrdup(path);
    it->tmp = xstrdup(tmp);
    it->fd = fd;
    it->uid = geteuid();
    it->gid = getegid();
}

/* Each pending copy: fsync, then its name in new/ -- renamed with the
 * identity it was written as (a user's Maildir is the user's to change;
 * root does not follow paths the user controls). */
static void commit_files(void)
{
    for (int i = 0; i < nitems; i++) {
        struct sync_item *it = &items[i];
        if (fsync(it->fd) < 0)
            it->err = errno ? errno : EIO;
        if (close(it->fd) < 0 && it->err == 0)
            it->err = errno;
        it->fd = -1;
    }
    for (int i = 0; i < nitems; i++) {
        struct sync_item *it = &items[i];
        if (local_become(it->uid, it->gid) < 0) {
            if (it->err == 0)
                it->err = EPERM;
            continue;                   /* tmp/ is the user's: leave it */
        }
        int renamed = 0;
        if (it->err == 0) {
            if (renameat2(AT_FDCWD, it->tmp, AT_FDCWD, it->path, RENAME_NOREPLACE) == 0)
                renamed = 1;
            else if (errno != EINVAL && errno != ENOSYS)
                it->err = errno;
            else if (link(it->tmp, it->path) < 0)
                it->err = errno;        /* no RENAME_NOREPLACE here: link, unlink */
        }
        if (!renamed)
            unlink(it->tmp);
        local_unbecome();
    }
}

static struct held_answer *held_new(void)
{
    if (nheld == held_cap) {
        held_cap = held_cap ? 2 * held_cap : 16;
        held = xrealloc(held, (size_t)held_cap * sizeof(*held));
    }
    struct held_answer *h = &held[nheld++];
    memset(h, 0, sizeof(*h));
    h->first = answered_upto;
    h->last = nitems;
    answered_upto = nitems;
    return h;
}

void local_hold_answer(const char *qid, const struct delivery_times *times, const char *rcpt,
                       const char *orcpt, const char *dsn, const char *status,
                       const char *reason)
{
    struct held_answer *h = held_new();
    h->qid = xstrdup(qid);
    h->times = *times;
    h->rcpt = xstrdup(rcpt);
    h->orcpt = orcpt ? xstrdup(orcpt) : NULL;
    h->dsn = xstrdup(dsn);
    h->status = xstrdup(status);
    h->reason = xstrdup(reason);
}

void local_hold_done(void)
{
    (void)held_new();
    held_requests++;
}

int local_held_requests(void)
{
    return held_requests;
}

/* fsync each distinct directory once (for the copies that got there);
 * record the outcome in those items, and remove the copies of a
 * directory whose fsync failed. */
static void sync_directories(void)
{
    for (int i = 0; i < nitems; i++) {
        if (items[i].err != 0)
            continue;                   /* never got its name in new/ */
        int known = -1;
        for (int j = 0; j < i && known < 0; j++)
            if (items[j].dir_synced && strcmp(items[j].dir, items[i].dir) == 0)
                known = j;
        if (known >= 0)
            items[i].err = items[known].err;
        else if (fsync_dir(items[i].dir) < 0)
            items[i].err = errno ? errno : EIO;
        items[i].dir_synced = 1;
        if (items[i].err != 0)
            unlink(items[i].path);
    }
}

void local_release_answers(struct delivery_request *dr)
{
    commit_files();
    sync_directories();
    double end = delivery_now();
    strbuf why;
    strbuf_init(&why);
    for (int k = 0; k < nheld; k++) {
        struct held_answer *h = &held[k];
        if (h->qid == NULL) {
            delivery_request_done(dr);
            continue;
        }
        const char *dsn = h->dsn, *status = h->status, *reason = h->reason;
        for (int i = h->first; i < h->last; i++)
            if (items[i].err != 0 && strcmp(status, "sent") == 0) {
                /* as maildir_write says it: the Maildir, not its new/ */
                const char *d = items[i].dir;
                size_t n = strlen(d);
                if (n > 4 && strcmp(d + n - 4, "/new") == 0)
                    n -= 4;
                strbuf_printf(&why, "cannot update %.*s: %s", (int)n, d,
                              strerror(items[i].err));
                int full = items[i].err == ENOSPC || items[i].err == EDQUOT;
                dsn = full ? "4.2.2" : "4.2.0";
                status = "deferred";
                reason = strbuf_str(&why);
                break;
            }
        delivery_request_reply_for(dr, h->qid, h->rcpt, h->orcpt, "local", &h->times, end,
                                   dsn, status, reason);
        xfree(h->qid);
        xfree(h->rcpt);
        xfree(h->orcpt);
        xfree(h->dsn);
        xfree(h->status);
        xfree(h->reason);
    }
    strbuf_release(&why);
    for (int i = 0; i < nitems; i++) {
        xfree(items[i].dir);
        xfree(items[i].path);
        xfree(items[i].tmp);
    }
    nitems = 0;
    nheld = 0;
    held_requests = 0;
    answered_upto = 0;
}
