/*
 * qmgr.c - the queue manager: main(), settings, and the poll() loop.
 *
 * One long-running SERVER_EVENT process.  Its loop watches incoming/
 * (an inotify watch, with qmgr_watch_incoming = yes: a queue file
 * committed there is new mail), the public/qmgr listener (clients send
 * {request=wakeup} after queueing new mail -- cleanup only with
 * qmgr_watch_incoming = no -- or {request=flush} to retry deferred mail
 * now; each gets {status=0}, sent without waiting or SIGPIPE since most
 * wakeup clients close without reading it; root and mail_owner may send
 * {request=admin} for queue surgery on active mail, doc/internals.md),
 * the running delivery requests (qmgr_sched.c), and the notice children
 * (qmgr_bounce.c).
 *
 * Everything qmgr knows it rebuilds from the queue at start: files left in
 * active/ by a crash are loaded again (their deliveries are retried), then
 * incoming/ is moved to active/, and deferred/ is scanned.  After that:
 * incoming/ is scanned after every loop turn that got wakeups or watch
 * events for a queue file (one scan however many arrived; it is small;
 * dot-files are writers' temporary files and no reason to scan).  The
 * watch is set before the start-up scan of incoming/: what was committed
 * before it is found by that scan, what comes after makes an event.  A
 * watch that cannot be set (inotify limits) or is lost is logged once and
 * replaced by a scan of incoming/ every second, with a retry of the watch
 * each time (then a scan again covers the gap); deferred/ every
 * queue_run_delay and on flush, taking the messages whose mtime (their
 * next attempt time) has come - all of them on flush.  hold/ is never
 * scheduled.
 *
 * The active queue is bounded by qmgr_message_active_limit messages and
 * qmgr_message_recipient_limit pending recipients; what does not fit
 * waits in an in-memory backlog of queue ids (from the last scan), fed in
 * as room frees, alternating between new and deferred mail, so no
 * directory is rescanned per message.
 *
 * One queue manager per queue: qmgr holds an exclusive flock() on the
 * active/ directory for its whole life.  A new qmgr (after a reload, or
 * a stop and start while the old one still drains) waits for it before it
 * loads anything, so no message is ever delivered by two of them at once.
 *
 * SIGTERM (master's reload and stop) drains instead of killing: no new
 * delivery or message is started and the listener is ignored, but running
 * delivery requests and notice children are waited for, so their results
 * are recorded (a recipient the agent delivered is marked done and not
 * delivered again by the next qmgr).  qmgr exits when nothing runs, or
 * after qmgr_drain_time_limit (the unfinished deliveries are retried
 * by the next qmgr: at worst delivered twice, never lost).  Messages whose
 * round is not finished stay in active/ and are reloaded by the next qmgr.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/inotify.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include "qmgr.h"
#include "config.h"
#include "ipc.h"
#include "log.h"
#include "mem.h"
#include "queue_admin.h"
#include "server.h"

#define CLIENT_TIMEOUT 10

struct qmgr_settings qmgr_var;
int qmgr_active_messages;
long long qmgr_active_rcpts;

double qmgr_now(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (double) tv.tv_sec + tv.tv_usec / 1e6;
}

/* ---- backlog of queue ids waiting for room in the active queue ---- */

enum backlog_source { FROM_ACTIVE, FROM_INCOMING, FROM_DEFERRED, NSOURCES };

struct backlog_entry {
    char *qid;
    int flushed;
    struct backlog_entry *next;
};

static struct backlog_entry *backlog_head[NSOURCES], *backlog_tail[NSOURCES];

static unsigned qid_hash(const char *s)
{
    unsigned h = 2166136261u;
    while (*s)
        h = (h ^ (unsigned char) *s++) * 16777619u;
    return h % QID_SET_SIZE;
}

int qid_set_has(const struct qid_set *set, const char *qid)
{
    for (struct qid_node *n = set->bucket[qid_hash(qid)]; n; n = n->next)
        if (strcmp(n->qid, qid) == 0)
            return 1;
    return 0;
}

void qid_set_add(struct qid_set *set, const char *qid)
{
    struct qid_node *n = xmalloc(sizeof(*n));
    n->qid = xstrdup(qid);
    unsigned h = qid_hash(qid);
    n->next = set->bucket[h];
    set->bucket[h] = n;
}

void qid_set_remove(struct qid_set *set, const char *qid)
{
    for (struct qid_node **pp = &set->bucket[qid_hash(qid)]; *pp; pp = &(*pp)->next)
        if (strcmp((*pp)->qid, qid) == 0) {
            struct qid_node *n = *pp;
            *pp = n->next;
            xfree(n->qid);
            xfree(n);
            return;
        }
}

/* Queue ids in the backlog, so a rescan does not add them twice. */
static struct qid_set backlog_ids;

static int backlog_has(const char *qid)
{
    return qid_set_has(&backlog_ids, qid);
}

static void backlog_add(int src, const char *qid, int flushed)
{
    qid_set_add(&backlog_ids, qid);
    struct backlog_entry *e = xcalloc(1, sizeof(*e));
    e->qid = xstrdup(qid);
    e->flushed = flushed;
    if (backlog_tail[src])
        backlog_tail[src]->next = e;
    else
        backlog_head[src] = e;
    backlog_tail[src] = e;
}

/* Take the first entry of a source; caller frees. */
static struct backlog_entry *backlog_take(int src)
{
    struct backlog_entry *e = backlog_head[src];
    if (e == NULL)
        return NULL;
    backlog_head[src] = e->next;
    if (backlog_head[src] == NULL)
        backlog_tail[src] = NULL;
    qid_set_remove(&backlog_ids, e->qid);
    return e;
}

static void backlog_entry_free(struct backlog_entry *e)
{
    xfree(e->qid);
    xfree(e);
}

/* ---- scans ---- */

struct scan_ctx { int src; int flush; time_t now; int added; };

static int scan_one(const char *qid, void *ctx)
{
    struct scan_ctx *s = ctx;
    if (!queue_id_valid(qid) || backlog_has(qid) || qmgr_message_known(qid))
        return 0;
    if (s->src == FROM_DEFERRED && !s->flush) {
        /* Not before its next attempt time (the file's mtime). */
        strbuf path;
        strbuf_init(&path);
        queue_path(&path, "deferred", qid);
        struct stat st;
        int due = stat(strbuf_str(&path), &st) == 0 && st.st_mtime <= s->now;
        strbuf_release(&path);
        if (!due)
            return 0;
    }
    backlog_add(s->src, qid, s->flush);
    s->added++;
    return 0;
}

static void scan_queue(int src, int flush)
{
    static const char *const names[] = { "active", "incoming", "deferred" };
    struct scan_ctx s = { src, flush, time(NULL), 0 };
    if (queue_scan(names[src], scan_one, &s) < 0)
        log_warning("scan %s/: %s", names[src], strerror(errno));
    if (flush && src == FROM_DEFERRED)
        for (struct backlog_entry *e = backlog_head[src]; e; e = e->next)
            e->flushed = 1;
    if (s.added)
        log_debug("scan %s/: %d new", names[src], s.added);
}

static int have_room(void)
{
    if (qmgr_active_messages == 0)
        return 1;
    return qmgr_active_messages < qmgr_var.active_limit
        && qmgr_active_rcpts < qmgr_var.rcpt_limit;
}

/* Directories that received or lost a file by a rename this loop turn. */
static struct { char **dirs; int n; } pending_syncs;

static void sync_add(const char *queue_name, const char *qid)
{
    strbuf path;
    strbuf_init(&path);
    queue_path(&path, queue_name, qid);
    char *slash = strrchr(path.data, '/');
    if (slash)
        strbuf_truncate(&path, (size_t) (slash - path.data));
    for (int i = 0; i < pending_syncs.n; i++)
        if (strcmp(pending_syncs.dirs[i], path.data) == 0) {
            strbuf_release(&path);
            return;
        }
    pending_syncs.dirs = xrealloc(pending_syncs.dirs,
                                  (size_t) (pending_syncs.n + 1) * sizeof(char *));
    pending_syncs.dirs[pending_syncs.n++] = strbuf_detach(&path, NULL);
}

void qmgr_sync_later(const char *from_queue, const char *to_queue, const char *qid)
{
    sync_add(from_queue, qid);
    sync_add(to_queue, qid);
}

/* One fsync per directory for all the renames of a turn: as durable as
 * queue_move() each time, at a fraction of the cost under load. */
void qmgr_sync_dirs(void)
{
    for (int i = 0; i < pending_syncs.n; i++) {
        if (fsync_dir(pending_syncs.dirs[i]) < 0)
            log_warning("fsync %s/: %s", pending_syncs.dirs[i], strerror(errno));
        xfree(pending_syncs.dirs[i]);
    }
    xfree(pending_syncs.dirs);
    pending_syncs.dirs = NULL;
    pending_syncs.n = 0;
}

/* Move backlog into the active queue while there is room, at most
 * LOADS_PER_TURN messages so the loop keeps serving its other events
 * (delivery results, new mail).  Returns 1 when more could be loaded now. */
#define LOADS_PER_TURN 200
static int feed_active_queue(void)
{
    static int turn;
    int more = 0;
    for (int loads = 0; have_room(); loads++) {
        if (loads == LOADS_PER_TURN) {
            more = backlog_head[FROM_ACTIVE] || backlog_head[FROM_INCOMING]
                || backlog_head[FROM_DEFERRED];
            break;
        }
        struct backlog_entry *e = backlog_take(FROM_ACTIVE);
        if (e) {
            qmgr_message_load(e->qid, e->flushed);
            backlog_entry_free(e);
            continue;
        }
        /* Alternate new and deferred mail so neither starves. */
        int first = turn ? FROM_DEFERRED : FROM_INCOMING;
        int second = turn ? FROM_INCOMING : FROM_DEFERRED;
        turn = !turn;
        int src = first;
        e = backlog_take(first);
        if (e == NULL) {
            src = second;
            e = backlog_take(second);
        }
        if (e == NULL)
            break;
        const char *from = src == FROM_INCOMING ? "incoming" : "deferred";
        if (queue_rename(e->qid, from, "active") == 0) {
            qmgr_sync_later(from, "active", e->qid);
            qmgr_message_load(e->qid, e->flushed);
        } else if (errno != ENOENT) {
            log_warning("%s: cannot move from %s/ to active/: %s", e->qid, from,
                        strerror(errno));
        }
        backlog_entry_free(e);
    }
    qmgr_sync_dirs();           /* before qmgr_schedule() delivers any of them */
    return more;
}

/* ---- public/qmgr clients ---- */

struct client {
    int fd;
    time_t deadline;
    strbuf in;
    struct client *next;
};

static struct client *clients;
static time_t next_deferred_scan;
static int incoming_scan_wanted;
static int cancel_pending;

void qmgr_rescan_incoming(void)
{
    incoming_scan_wanted = 1;
}

static void client_close(struct client *c)
{
    for (struct client **pp = &clients; *pp; pp = &(*pp)->next)
        if (*pp == c) {
            *pp = c->next;
            break;
        }
    close(c->fd);
    strbuf_release(&c->in);
    xfree(c);
}

/* Replies are small (at most a request's size) and go to a fresh socket
 * whose buffer takes them: never wait.  Most wakeup clients (master's
 * timer, cleanup) close right after sending, so EPIPE is normal: no
 * SIGPIPE for it, and no log. */
static void client_send(struct client *c, const strbuf *out)
{
    ssize_t n = send(c->fd, out->data, out->len, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0 && errno != EPIPE && errno != ECONNRESET)
        log_debug("reply to client: %s", strerror(errno));
    else if (n >= 0 && (size_t) n != out->len)
        log_warning("reply to client: short write");
}

static void client_reply(struct client *c, int status, const char *reason)
{
    ipc_record *r = ipc_record_new();
    strbuf out;
    strbuf_init(&out);
    ipc_record_add_int(r, "status", status);
    if (reason)
        ipc_record_add_str(r, "reason", reason);
    ipc_encode(r, &out);
    client_send(c, &out);
    strbuf_release(&out);
    ipc_record_free(r);
}

/* Only root and mail_owner (our own uid) may change the queue. */
static int client_may_change_queue(const struct client *c)
{
    struct ucred cred;
    socklen_t len = sizeof(cred);
    if (getsockopt(c->fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0)
        return 0;
    return cred.uid == 0 || cred.uid == geteuid();
}

/* {request=admin, action=delete|hold|requeue, queue_id=QID...}: the
 * messages qmgr holds in memory are marked (no new deliveries; the
 * action is applied when their running deliveries end); files in
 * active/ that are not loaded yet (backlog) are handled at once.  Reply
 * {status=0, missing=QID...} naming those not in the active queue: the
 * client looks for them elsewhere. */
static void handle_admin(struct client *c, const ipc_record *r)
{
    const char *act = ipc_record_get_str(r, "action");
    int action = act ? queue_admin_action_parse(act) : QA_NONE;
    if (!client_may_change_queue(c)) {
        client_reply(c, 1, "permission denied");
        return;
    }
    if (action != QA_DELETE && action != QA_HOLD && action != QA_REQUEUE) {
        client_reply(c, 1, "unknown action");
        return;
    }
    ipc_record *reply = ipc_record_new();
    ipc_record_add_int(reply, "status", 0);
    for (size_t i = 0; i < r->n; i++) {
        if (strcmp(r->attrs[i].name, "queue_id") != 0)
            continue;
        const char *qid = strbuf_str(&r->attrs[i].value);
        if (!queue_id_valid(qid)) {
            ipc_record_add_str(reply, "missing", qid);
            continue;
        }
        if (qmgr_message_admin(qid, action)) {
            cancel_pending = 1;
            continue;
        }
        if (qmgr_remove_pending(qid)) {
            /* delivered; its file is being removed (qmgr_remove.c) */
            ipc_record_add_str(reply, "missing", qid);
            continue;
        }
        int rc = queue_admin_apply(action, "active", qid);
        if (rc > 0) {
            log_info("%s: %s", qid, queue_admin_done_text(action));
            if (action == QA_REQUEUE)
                incoming_scan_wanted = 1;
        } else if (rc < 0) {
            if (errno != ENOENT)
                log_warning("%s: cannot %s: %s", qid, act, strerror(errno));
            ipc_record_add_str(reply, "missing", qid);
        }
    }
    strbuf out;
    strbuf_init(&out);
    ipc_encode(reply, &out);
    client_send(c, &out);
    strbuf_release(&out);
    ipc_record_free(reply);
}

static void handle_request(struct client *c, const ipc_record *r)
{
    const char *req = ipc_record_get_str(r, "request");
    if (req && strcmp(req, "wakeup") == 0) {
        const char *queue = ipc_record_get_str(r, "queue");
        client_reply(c, 0, NULL);
        if (queue && strcmp(queue, "deferred") == 0)
            scan_queue(FROM_DEFERRED, 0);       /* released from hold */
        else
            incoming_scan_wanted = 1;   /* one scan for all of this turn's wakeups */
    } else if (req && strcmp(req, "flush") == 0) {
        client_reply(c, 0, NULL);
        log_info("flush: retrying deferred mail");
        qmgr_sched_revive_all();
        scan_queue(FROM_INCOMING, 0);
        scan_queue(FROM_DEFERRED, 1);
    } else if (req && strcmp(req, "admin") == 0) {
        handle_admin(c, r);
    } else {
        client_reply(c, 1, "unknown request");
    }
}

static void client_event(struct client *c)
{
    char buf[4096];
    ssize_t n = read(c->fd, buf, sizeof(buf));
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n <= 0 || c->in.len > 65536) {
        client_close(c);
        return;
    }
    strbuf_append(&c->in, buf, (size_t) n);
    ipc_record *r = ipc_record_new();
    const char *why = NULL;
    long used = ipc_decode(c->in.data, c->in.len, r, 4096, 65536, &why);
    if (used > 0)
        handle_request(c, r);
    else if (used < 0)
        log_warning("public/qmgr: malformed request: %s", why ? why : "?");
    ipc_record_free(r);
    if (used != 0)
        client_close(c);
}

static void accept_clients(int listen_fd)
{
    for (;;) {
        int fd = accept4(listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR
                && errno != ECONNABORTED)
                log_warning("accept: %s", strerror(errno));
            return;
        }
        struct client *c = xcalloc(1, sizeof(*c));
        c->fd = fd;
        c->deadline = time(NULL) + CLIENT_TIMEOUT;
        strbuf_init(&c->in);
        c->next = clients;
        clients = c;
    }
}

/* ---- the watch on incoming/ ---- */

static int watch_fd = -1;           /* inotify; -1 when off or missing */
static int watch_warned;            /* the missing watch was logged */
static time_t watch_retry_at;       /* next scan + retry while it is missing */

/* Set the watch on incoming/ (relative: the cwd is the queue directory,
 * also under a chroot).  A commit is a rename (IN_MOVED_TO) or a link of
 * an O_TMPFILE file (IN_CREATE).  0 ok, -1 with errno set. */
static int watch_open(void)
{
    int fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (fd < 0)
        return -1;
    if (inotify_add_watch(fd, "incoming", IN_MOVED_TO | IN_CREATE | IN_ONLYDIR) < 0) {
        int saved = errno;
        close(fd);
        errno = saved;
        return -1;
    }
    watch_fd = fd;
    return 0;
}

/* Without a watch incoming/ is scanned every second; one warning per
 * time the watch goes missing, not one per retry. */
static void watch_missing(const char *why)
{
    if (watch_fd >= 0) {
        close(watch_fd);
        watch_fd = -1;
    }
    if (!watch_warned)
        log_warning("cannot watch incoming/ (%s): scanning it every second until the watch "
                    "can be set", why);
    watch_warned = 1;
    watch_retry_at = time(NULL) + 1;
}

/* Set the watch; callers scan incoming/ after this (see the header). */
static void watch_start(void)
{
    if (watch_open() < 0) {
        watch_missing(strerror(errno));
        return;
    }
    if (watch_warned)
        log_info("watching incoming/ again");
    watch_warned = 0;
}

static int watch_is_missing(void)
{
    return qmgr_var.watch_incoming && watch_fd < 0;
}

/* Drain the watch in a few reads (events queued meanwhile keep the fd
 * readable for the next turn): any queue file committed, or an
 * overflowed event queue (events were lost), asks for one scan of
 * incoming/ this turn. */
static void watch_event(void)
{
    char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
    for (int reads = 0; reads < 16; reads++) {
        ssize_t n = read(watch_fd, buf, sizeof(buf));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            return;
        if (n <= 0) {
            watch_missing(n < 0 ? strerror(errno) : "end of file");
            incoming_scan_wanted = 1;
            return;
        }
        for (ssize_t off = 0; off + (ssize_t) sizeof(struct inotify_event) <= n;) {
            const struct inotify_event *ev = (const void *) (buf + off);
            off += (ssize_t) sizeof(*ev) + ev->len;
            if (ev->mask & IN_Q_OVERFLOW) {
                incoming_scan_wanted = 1;
            } else if (ev->mask & IN_IGNORED) {
                /* incoming/ went away or its file system was unmounted */
                watch_missing("the watch was removed");
                incoming_scan_wanted = 1;
                return;
            } else if (ev->len > 0 && ev->name[0] != '.') {
                incoming_scan_wanted = 1;
            }
        }
    }
}

/* ---- one qmgr per queue, and draining on SIGTERM ---- */

static int qmgr_lock_fd = -1;
static sigset_t qmgr_run_mask;          /* the mask during poll: SIGTERM open */
static volatile sig_atomic_t qmgr_terminating;

static void qmgr_sigterm(int sig)
{
    (void) sig;
    qmgr_terminating = 1;
}

/* Lock active/ for this qmgr's life; wait for a previous qmgr (it is
 * draining).  SIGTERM still has its default action here: a qmgr stopped
 * while it waits has nothing to finish. */
static void qmgr_lock_queue(void)
{
    qmgr_lock_fd = open("active", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (qmgr_lock_fd < 0)
        log_fatal("open %s/active: %s", server_queue_dir(), strerror(errno));
    if (flock(qmgr_lock_fd, LOCK_EX | LOCK_NB) == 0)
        return;
    if (errno != EWOULDBLOCK)
        log_fatal("lock %s/active: %s", server_queue_dir(), strerror(errno));
    log_info("waiting for the previous queue manager to finish");
    while (flock(qmgr_lock_fd, LOCK_EX) < 0)
        if (errno != EINTR)
            log_fatal("lock %s/active: %s", server_queue_dir(), strerror(errno));
}

/* SIGTERM is blocked except inside ppoll(), so the flag is never missed
 * between the check and the wait. */
static void qmgr_catch_sigterm(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = qmgr_sigterm;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigset_t term;
    sigemptyset(&term);
    sigaddset(&term, SIGTERM);
    sigprocmask(SIG_BLOCK, &term, &qmgr_run_mask);
    sigdelset(&qmgr_run_mask, SIGTERM);
}

static int qmgr_sigterm_pending(void)
{
    sigset_t pending;
    return sigpending(&pending) == 0 && sigismember(&pending, SIGTERM) == 1;
}

void qmgr_forked_child(void)
{
    if (qmgr_lock_fd >= 0)
        close(qmgr_lock_fd);            /* the lock is the parent's alone */
    if (watch_fd >= 0)
        close(watch_fd);
    signal(SIGTERM, SIG_DFL);
    sigprocmask(SIG_SETMASK, &qmgr_run_mask, NULL);
}

/* ---- the loop ---- */

enum owner_kind { OWN_LISTEN, OWN_CLIENT, OWN_JOB, OWN_BOUNCE, OWN_MASTER, OWN_REMOVE,
                  OWN_WATCH };

static void qmgr_run(int listen_fd)
{
    signal(SIGPIPE, SIG_IGN);
    int fl = fcntl(listen_fd, F_GETFL);
    if (fl >= 0)
        fcntl(listen_fd, F_SETFL, fl | O_NONBLOCK);
    qmgr_lock_queue();
    qmgr_catch_sigterm();
    qmgr_remove_start(qmgr_var.reuse_limit);
    time_t drain_deadline = 0;

    /* Watch before the scan of incoming/: nothing committed in between
     * is missed (it is either in the scan or an event). */
    if (qmgr_var.watch_incoming)
        watch_start();

    /* Crash leftovers first, then new mail, then what is due. */
    scan_queue(FROM_ACTIVE, 0);
    scan_queue(FROM_INCOMING, 0);
    scan_queue(FROM_DEFERRED, 0);
    next_deferred_scan = time(NULL) + qmgr_var.queue_run_delay;
    server_report_idle();

    struct pollfd *pfd = NULL;
    int *kinds = NULL;
    void **owners = NULL;
    int cap = 0;
    /* Checked before any delivery is started: with the master gone the
     * agents' sockets go too, and a request now would only defer the mail
     * (with backoff) instead of leaving it for the next qmgr.  Once here;
     * after that the status pipe is in every ppoll() set (OWN_MASTER,
     * ahead of the jobs), so a death is seen there, before the next turn
     * schedules anything. */
    if (server_master_gone()) {
        log_info("master is gone -- exiting");
        qmgr_terminating = 1;
    }
    /* SIGTERM is blocked outside ppoll(): one that came during the start-up
     * scans (a reload or stop right after the fork) is still pending here,
     * and must stop us before the first deliveries.  Later ones are
     * delivered inside ppoll() (it returns EINTR), so once is enough. */
    if (!qmgr_terminating && qmgr_sigterm_pending())
        qmgr_terminating = 1;
    for (;;) {
        int more = 0;
        server_watchdog_pat();          /* each loop turn's work gets daemon_timeout (less slack) */
        if (qmgr_terminating) {
            if (drain_deadline == 0) {
                drain_deadline = time(NULL) + qmgr_var.drain_limit;
                if (qmgr_sched_running() > 0 || qmgr_bounce_running() > 0)
                    log_info("terminating: waiting for %d delivery request(s) and %d notice(s)",
                             qmgr_sched_running(), qmgr_bounce_running());
                while (clients)
                    client_close(clients);
            }
            if (qmgr_sched_running() == 0 && qmgr_bounce_running() == 0)
                exit(0);
            if (time(NULL) >= drain_deadline) {
                log_warning("terminating with %d delivery request(s) still running: "
                            "they will be retried", qmgr_sched_running());
                exit(0);
            }
        } else {
            if (cancel_pending) {
                cancel_pending = 0;
                qmgr_sched_cancel_doomed();
            }
            more = feed_active_queue();
            qmgr_schedule();
        }
        /* Time out overdue requests before the poll arrays name them. */
        time_t now = time(NULL);
        time_t jd = qmgr_sched_timeouts(now);

        int nclients = 0;
        for (struct client *c = clients; c; c = c->next)
            nclients++;
        int need = 4 + nclients + qmgr_sched_running() + qmgr_bounce_running();
        if (need > cap) {
            cap = need * 2;
            pfd = xrealloc(pfd, (size_t) cap * sizeof(*pfd));
            kinds = xrealloc(kinds, (size_t) cap * sizeof(*kinds));
            owners = xrealloc(owners, (size_t) cap * sizeof(*owners));
        }
        int n = 0;
        pfd[n].fd = qmgr_terminating ? -1 : listen_fd;   /* -1: not polled */
        pfd[n].events = POLLIN;
        kinds[n] = OWN_LISTEN;
        owners[n++] = NULL;
        /* A master that died (POLLERR on the status pipe): drain and exit
         * as on SIGTERM, so no orphan qmgr runs beside the next master's
         * (which waits for our lock on active/). */
        pfd[n].fd = qmgr_terminating ? -1 : server_master_fd();
        pfd[n].events = 0;
        kinds[n] = OWN_MASTER;
        owners[n++] = NULL;
        pfd[n].fd = qmgr_remove_pollfd();              /* -1: not polled */
        pfd[n].events = POLLIN;
        kinds[n] = OWN_REMOVE;
        owners[n++] = NULL;
        pfd[n].fd = qmgr_terminating ? -1 : watch_fd;
        pfd[n].events = POLLIN;
        kinds[n] = OWN_WATCH;
        owners[n++] = NULL;
        for (struct client *c = clients; c; c = c->next) {
            pfd[n].fd = c->fd;
            pfd[n].events = POLLIN;
            kinds[n] = OWN_CLIENT;
            owners[n++] = c;
        }
        int nj = qmgr_sched_pollfds(pfd + n, cap - n, (struct qmgr_conn **) (owners + n));
        for (int i = 0; i < nj; i++)
            kinds[n + i] = OWN_JOB;
        n += nj;
        int nb = qmgr_bounce_pollfds(pfd + n, cap - n, owners + n);
        for (int i = 0; i < nb; i++)
            kinds[n + i] = OWN_BOUNCE;
        n += nb;

        time_t wake = next_deferred_scan;
        if (jd && jd < wake)
            wake = jd;
        for (struct client *c = clients; c; c = c->next)
            if (c->deadline < wake)
                wake = c->deadline;
        if (watch_is_missing() && watch_retry_at < wake)
            wake = watch_retry_at;
        int timeout_ms = wake > now && !more ? (int) ((wake - now) * 1000) : 0;
        if (timeout_ms > 60000)
            timeout_ms = 60000;
        if (drain_deadline && timeout_ms > 1000)
            timeout_ms = 1000;
        for (int i = 0; i < n; i++)
            pfd[i].revents = 0;
        struct timespec ts = { timeout_ms / 1000, (long) (timeout_ms % 1000) * 1000000L };
        /* Waiting for work is not being stuck: disarmed when the wait could
         * outlast the timer (no system call otherwise). */
        server_watchdog_pause_for(timeout_ms);
        int rc = ppoll(pfd, (nfds_t) n, &ts, &qmgr_run_mask);
        if (rc < 0 && errno != EINTR)
            log_fatal("poll: %s", strerror(errno));

        /* Owners may finish while we go, but never free one another:
         * a finished job or child is only its own. */
        for (int i = 0; rc > 0 && i < n; i++) {
            if (pfd[i].revents == 0)
                continue;
            switch (kinds[i]) {
            case OWN_LISTEN:
                accept_clients(listen_fd);
                break;
            case OWN_CLIENT:
                client_event(owners[i]);
                break;
            case OWN_JOB:
                qmgr_sched_event(owners[i], pfd[i].revents);
                break;
            case OWN_BOUNCE:
                qmgr_bounce_event(owners[i], pfd[i].revents);
                break;
            case OWN_REMOVE:
                qmgr_remove_collect();
                break;
            case OWN_WATCH:
                watch_event();
                break;
            case OWN_MASTER:
                if (!qmgr_terminating) {
                    log_info("master is gone -- exiting");
                    qmgr_terminating = 1;
                }
                break;
            }
        }

        /* No watch: scan every second, and try to set it again first. */
        if (watch_is_missing() && !qmgr_terminating && time(NULL) >= watch_retry_at) {
            watch_start();              /* a failure sets the next retry */
            incoming_scan_wanted = 1;
        }
        if (incoming_scan_wanted && !qmgr_terminating) {
            incoming_scan_wanted = 0;
            scan_queue(FROM_INCOMING, 0);
        }
        qmgr_sync_dirs();               /* this turn's moves to deferred/ */

        now = time(NULL);
        struct client *c = clients;
        while (c) {
            struct client *next = c->next;
            if (c->deadline <= now)
                client_close(c);
            c = next;
        }
        if (!qmgr_terminating && now >= next_deferred_scan) {
            qmgr_sched_sweep(now);
            scan_queue(FROM_DEFERRED, 0);
            next_deferred_scan = now + qmgr_var.queue_run_delay;
        }
    }
}

static void qmgr_post_jail(int argc, char **argv)
{
    (void) argc;
    (void) argv;
    static strbuf host, dbs;
    strbuf_init(&host);
    strbuf_init(&dbs);
    const char *h = config_str("myhostname");
    if (h == NULL || *h == '\0') {
        char buf[256];
        if (gethostname(buf, sizeof(buf)) < 0)
            strcpy(buf, "localhost");
        buf[sizeof(buf) - 1] = '\0';
        strbuf_set_str(&host, buf);
    } else {
        strbuf_set_str(&host, h);
    }
    qmgr_var.myhostname = strbuf_str(&host);
    qmgr_var.active_limit = config_int("qmgr_message_active_limit");
    qmgr_var.rcpt_limit = config_int("qmgr_message_recipient_limit");
    qmgr_var.queue_run_delay = config_time("queue_run_delay");
    if (qmgr_var.queue_run_delay < 1)
        qmgr_var.queue_run_delay = 1;
    qmgr_var.drain_limit = config_time("qmgr_drain_time_limit");
    qmgr_var.min_backoff = config_time("minimal_backoff_time");
    qmgr_var.max_backoff = config_time("maximal_backoff_time");
    qmgr_var.max_lifetime = config_time("maximal_queue_lifetime");
    qmgr_var.delay_warning = config_time("delay_warning_time");
    qmgr_var.ipc_timeout = config_time("ipc_timeout");
    if (qmgr_var.ipc_timeout < 1)
        qmgr_var.ipc_timeout = 3600;
    qmgr_var.bounce_size_limit = config_int("bounce_size_limit");
    qmgr_var.initial_concurrency = (int) config_int("initial_destination_concurrency");
    qmgr_var.reuse_limit = config_int("queue_file_reuse_limit");
    qmgr_var.watch_incoming = config_bool("qmgr_watch_incoming");
    qmgr_var.bounce_notice_recipient = config_str("2bounce_notice_recipient");
    const char *d = config_str("double_bounce_sender");
    if (strchr(d, '@'))
        strbuf_set_str(&dbs, d);
    else
        strbuf_printf(&dbs, "%s@%s", d, qmgr_var.myhostname);
    qmgr_var.double_bounce_sender = dbs.data;
    qmgr_sched_init();
}

int main(int argc, char **argv)
{
    static const struct server_spec spec = {
        .program = "qmgr",
        .mode = SERVER_EVENT,
        .post_jail = qmgr_post_jail,
        .run = qmgr_run,
    };
    return server_main(argc, argv, &spec);
}
