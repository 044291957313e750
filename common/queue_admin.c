/*
 * queue_admin.c - delete, hold, release and requeue one queue file
 * (interface and contract in queue_admin.h).
 */
#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include "queue.h"
#include "queue_admin.h"

static const char *const action_names[] = { "", "delete", "hold", "release", "requeue" };
static const char *const done_texts[] = { "", "removed", "placed on hold",
                                          "released from hold", "requeued" };

int queue_admin_action_parse(const char *word)
{
    for (int a = QA_DELETE; a <= QA_REQUEUE; a++)
        if (strcmp(word, action_names[a]) == 0)
            return a;
    return QA_NONE;
}

const char *queue_admin_action_name(int action)
{
    return action > QA_NONE && action <= QA_REQUEUE ? action_names[action] : "";
}

const char *queue_admin_done_text(int action)
{
    return action > QA_NONE && action <= QA_REQUEUE ? done_texts[action] : "";
}

/* A nosync requeue happened since the last queue_admin_sync(). */
static int requeued_unsynced;

/* {request=wakeup} to public/pickup (relative to the spool, the current
 * directory), never waiting: a connect that would block, or no pickup at
 * all, is skipped -- master wakes pickup every 60 s and at start. */
static void wake_pickup(void)
{
    static const char record[] = "request 6\nwakeup\n\n";
    struct sockaddr_un sa;
    memset(&sa, 0, sizeof(sa));
    sa.sun_family = AF_UNIX;
    strcpy(sa.sun_path, "public/pickup");
    int saved = errno;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd >= 0) {
        if (connect(fd, (struct sockaddr *) &sa, sizeof(sa)) == 0)
            (void) send(fd, record, sizeof(record) - 1, MSG_NOSIGNAL);
        close(fd);
    }
    errno = saved;
}

/* mtime = now, so a deferred/ file is due at once (qmgr's retry time). */
static int touch(const char *queue, const char *qid)
{
    strbuf path;
    strbuf_init(&path);
    queue_path(&path, queue, qid);
    int rc = utimes(strbuf_str(&path), NULL);
    int saved = errno;
    strbuf_release(&path);
    errno = saved;
    return rc;
}

static int remove_message(const char *queue, const char *qid)
{
    static const char *const logs[] = { "defer", "bounce", "trace" };
    strbuf path;
    strbuf_init(&path);
    queue_path(&path, queue, qid);
    if (unlink(strbuf_str(&path)) < 0) {
        int saved = errno;
        strbuf_release(&path);
        errno = saved;
        return -1;
    }
    /* The queue file first: once it is gone nothing reads the logs. */
    for (size_t i = 0; i < sizeof(logs) / sizeof(logs[0]); i++) {
        queue_path(&path, logs[i], qid);
        (void) unlink(strbuf_str(&path));
    }
    strbuf_release(&path);
    return 1;
}

static int apply(int action, const char *queue, const char *qid, int sync)
{
    const char *to = NULL;
    switch (action) {
    case QA_DELETE:
        return remove_message(queue, qid);
    case QA_HOLD:
        to = "hold";
        break;
    case QA_RELEASE:
        if (strcmp(queue, "hold") != 0)
            return 0;
        to = "deferred";
        break;
    case QA_REQUEUE:
        if (strcmp(queue, "incoming") == 0)
            return 0;                   /* not yet seen by qmgr: fresh anyway */
        to = "requeue";
        break;
    default:
        errno = EINVAL;
        return -1;
    }
    if (strcmp(queue, to) == 0)
        return 0;
    if (action != QA_HOLD && touch(queue, qid) < 0)
        return -1;
    if (!sync) {
        if (queue_rename(qid, queue, to) < 0)
            return -1;
        if (action == QA_REQUEUE)
            requeued_unsynced = 1;
        return 1;
    }
    if (queue_move(qid, queue, to) < 0)
        return -1;
    if (action == QA_REQUEUE)
        wake_pickup();
    return 1;
}

int queue_admin_apply(int action, const char *queue, const char *qid)
{
    return apply(action, queue, qid, 1);
}

int queue_admin_apply_nosync(int action, const char *queue, const char *qid)
{
    return apply(action, queue, qid, 0);
}

int queue_admin_sync(void)
{
    static const char *const flat[] = { "incoming", "active", "hold", "requeue", "corrupt" };
    static const char *const hashed[] = { "deferred", "defer", "bounce", "trace" };
    static const char digits[] = "0123456789ABCDEF";
    int rc = 0;
    strbuf path;
    strbuf_init(&path);
    for (size_t i = 0; i < sizeof(flat) / sizeof(flat[0]); i++)
        if (fsync_dir(flat[i]) < 0 && errno != ENOENT)
            rc = -1;
    for (size_t i = 0; i < sizeof(hashed) / sizeof(hashed[0]); i++)
        for (int h = 0; h < 16; h++) {
            strbuf_printf(&path, "%s/%c", hashed[i], digits[h]);
            if (fsync_dir(strbuf_str(&path)) < 0 && errno != ENOENT)
                rc = -1;
        }
    strbuf_release(&path);
    if (rc == 0 && requeued_unsynced) {
        requeued_unsynced = 0;
        wake_pickup();                  /* only once the moves are durable */
    }
    return rc;
}
