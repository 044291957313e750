/*
 * cmd_queue.c - `postern queue`: list the queue, change it, show one
 * message; `postern flush`.  Operator notes: doc/queue-admin.md.
 *
 *   postern queue [list] [-j] [SELECTION]     mailq's layout, or JSON lines
 *   postern queue delete|hold|release|requeue SELECTION
 *   postern queue cat [-e] [-h] [-b] ID       envelope, headers, body
 *   postern flush                             retry deferred mail now
 *
 * SELECTION: queue ids, ALL, --from PATTERN, --to PATTERN
 * (common/queue_select.h).
 *
 * Listing goes through the showq service (public/showq), so anyone who
 * may reach public/ may list, without reading the spool.  When showq
 * cannot be reached and the caller may read the spool (root, mail_owner),
 * the queue is walked directly with a warning, as Postfix's postqueue does.
 * Records are printed as they arrive: memory stays bounded whatever the
 * queue's size.
 *
 * Surgery and cat are for root and mail_owner only (checked first, one
 * line and exit 1 otherwise).  They work on the files, except for
 * messages in active/ while the mail system runs: those are in qmgr's
 * memory, so while qmgr runs they are sent to qmgr
 * ({request=admin}, doc/internals.md),
 * which cancels their waiting deliveries and applies the action once the
 * running ones end.  "qmgr runs" = it holds its flock on active/; when
 * postern gets that lock instead, it keeps it until done (no qmgr can
 * start meanwhile) and changes active/ files itself.  A file that moved
 * meanwhile (qmgr took it from deferred/, finished its round) is looked
 * for again, a few times.
 *
 * Contract: exit 0 when everything selected was handled; 1 with one line
 * on stderr for bad arguments, missing permission, a named queue id that
 * is not queued, or an I/O error.
 */
#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "ipc.h"
#include "json.h"
#include "log.h"
#include "mem.h"
#include "postern.h"
#include "queue.h"
#include "queue_admin.h"
#include "queue_list.h"
#include "queue_select.h"
#include "strbuf.h"

#define SHOWQ_TIMEOUT 60
#define QMGR_TIMEOUT 30
#define ADMIN_BATCH 500         /* queue ids per request to qmgr */
#define MOVE_RETRIES 5

/* Every queue a message can be found in, for lookups by id (requeue/:
 * waiting for pickup to pass it through cleanup again; requeue of it is
 * nothing to do, delete and hold take it back from pickup). */
static const char *const all_queues[] = { "incoming", "active", "deferred", "hold",
                                          "requeue", "corrupt", NULL };

int postern_is_queue_admin(void)
{
    uid_t uid = getuid();
    if (uid == 0)
        return 1;
    struct passwd *pw = getpwnam(config_str("mail_owner"));
    return pw != NULL && pw->pw_uid == uid;
}

static void require_queue_admin(const char *what)
{
    if (!postern_is_queue_admin())
        postern_fatal("%s: permission denied: only root or mail_owner (%s) may do this",
                      what, config_str("mail_owner"));
}

static void enter_spool(void)
{
    const char *dir = config_str("queue_directory");
    if (chdir(dir) < 0)
        postern_fatal("queue_directory %s: %m", dir);
}

/* ---- listing ---------------------------------------------------------- */

struct list_ctx {
    const struct queue_select *sel;
    int json;
    long long count;
    long long bytes;
    strbuf line;
};

/* "Sat Nov 28 02:16:05", local time. */
static void format_arrival(strbuf *out, long long sec)
{
    time_t t = (time_t) sec;
    struct tm tm;
    char buf[64];
    if (localtime_r(&t, &tm) == NULL || strftime(buf, sizeof(buf), "%a %b %e %H:%M:%S", &tm) == 0)
        snprintf(buf, sizeof(buf), "%lld", sec);
    strbuf_append_str(out, buf);
}

static void pad_to(strbuf *out, size_t start, size_t width)
{
    while (out->len - start < width)
        strbuf_append_char(out, ' ');
}

/* Addresses may hold any byte: no control character reaches a terminal
 * (the log's rule: '?' instead). */
static void append_printable(strbuf *out, const char *s)
{
    for (; *s; s++)
        strbuf_append_char(out, ((unsigned char) *s < 0x20 || *s == 0x7f) ? '?' : *s);
}

#define ID_WIDTH 22             /* id + status mark, room for long inodes */
#define SENDER_COL (ID_WIDTH + 8 + 1 + 20 + 1)

static void print_text(struct list_ctx *lc, const ipc_record *r)
{
    const char *queue = ipc_record_get_str(r, "queue_name");
    const char *sender = ipc_record_get_str(r, "sender");
    long long arrival = 0, size = 0;
    (void) ipc_record_get_int(r, "arrival_time", &arrival);
    (void) ipc_record_get_int(r, "message_size", &size);
    strbuf *l = &lc->line;
    strbuf_reset(l);
    if (lc->count == 0)
        printf("%-*s%8s %-20s %s\n", ID_WIDTH, "-Queue ID-", "--Size--",
               "----Arrival Time----", "-Sender/Recipient-------");
    strbuf_append_str(l, ipc_record_get_str(r, "queue_id"));
    strbuf_append_char(l, strcmp(queue, "active") == 0 ? '*'
                          : strcmp(queue, "hold") == 0 ? '!' : ' ');
    pad_to(l, 0, ID_WIDTH);
    strbuf_appendf(l, "%8lld ", size);
    size_t t0 = l->len;
    format_arrival(l, arrival);
    pad_to(l, t0, 20);
    strbuf_append_char(l, ' ');
    append_printable(l, *sender ? sender : "MAILER-DAEMON");
    strbuf_append_char(l, '\n');
    /* Recipients, each group sharing a reason preceded by it. */
    const char *last_reason = "";
    for (size_t i = 0; i < r->n; i++) {
        if (strcmp(r->attrs[i].name, "rcpt") != 0)
            continue;
        const char *reason = "";
        if (i + 1 < r->n && strcmp(r->attrs[i + 1].name, "delay_reason") == 0)
            reason = strbuf_str(&r->attrs[i + 1].value);
        if (*reason && strcmp(reason, last_reason) != 0) {
            strbuf_appendf(l, "%*s(", ID_WIDTH - 14, "");
            append_printable(l, reason);
            strbuf_append_str(l, ")\n");
        }
        last_reason = reason;
        strbuf_appendf(l, "%*s", SENDER_COL, "");
        append_printable(l, strbuf_str(&r->attrs[i].value));
        strbuf_append_char(l, '\n');
    }
    strbuf_append_char(l, '\n');
    fwrite(l->data, 1, l->len, stdout);
}

static void print_json(struct list_ctx *lc, const ipc_record *r)
{
    strbuf *l = &lc->line;
    long long arrival = 0, size = 0;
    (void) ipc_record_get_int(r, "arrival_time", &arrival);
    (void) ipc_record_get_int(r, "message_size", &size);
    strbuf_set_str(l, "{\"queue_name\": ");
    const char *q = ipc_record_get_str(r, "queue_name");
    json_append_string(l, q, strlen(q));
    strbuf_append_str(l, ", \"queue_id\": ");
    const char *id = ipc_record_get_str(r, "queue_id");
    json_append_string(l, id, strlen(id));
    strbuf_appendf(l, ", \"arrival_time\": %lld, \"message_size\": %lld, "
                   "\"forced_expire\": false, \"sender\": ", arrival, size);
    const strbuf *sender = ipc_record_get(r, "sender");
    json_append_string(l, sender->data ? sender->data : "", sender->len);
    strbuf_append_str(l, ", \"recipients\": [");
    int first = 1;
    for (size_t i = 0; i < r->n; i++) {
        if (strcmp(r->attrs[i].name, "rcpt") != 0)
            continue;
        const strbuf *a = &r->attrs[i].value;
        strbuf_append_str(l, first ? "{\"address\": " : ", {\"address\": ");
        first = 0;
        json_append_string(l, a->data ? a->data : "", a->len);
        if (i + 1 < r->n && strcmp(r->attrs[i + 1].name, "delay_reason") == 0
            && r->attrs[i + 1].value.len > 0) {
            const strbuf *why = &r->attrs[i + 1].value;
            strbuf_append_str(l, ", \"delay_reason\": ");
            json_append_string(l, why->data, why->len);
        }
        strbuf_append_char(l, '}');
    }
    strbuf_append_str(l, "]}\n");
    fwrite(l->data, 1, l->len, stdout);
}

/* Pending recipients of a listing record, for --to. */
static int record_rcpts(const ipc_record *r, const char ***out)
{
    size_t n = ipc_record_count(r, "rcpt");
    const char **v = xcalloc(n + 1, sizeof(*v));
    int k = 0;
    for (size_t i = 0; i < r->n; i++)
        if (strcmp(r->attrs[i].name, "rcpt") == 0)
            v[k++] = strbuf_str(&r->attrs[i].value);
    *out = v;
    return k;
}

static int list_one(const ipc_record *r, void *ctx)
{
    struct list_ctx *lc = ctx;
    const char *queue = ipc_record_get_str(r, "queue_name");
    const char *qid = ipc_record_get_str(r, "queue_id");
    const char *sender = ipc_record_get_str(r, "sender");
    if (queue == NULL || qid == NULL || sender == NULL)
        postern_fatal("malformed listing record from showq");
    if (!queue_select_id(lc->sel, qid))
        return 0;
    if (lc->sel->from || lc->sel->to) {
        const char **rcpts;
        int n = record_rcpts(r, &rcpts);
        int ok = queue_select_envelope(lc->sel, sender, rcpts, n);
        xfree(rcpts);
        if (!ok)
            return 0;
    }
    if (lc->json)
        print_json(lc, r);
    else
        print_text(lc, r);
    long long size = 0;
    (void) ipc_record_get_int(r, "message_size", &size);
    lc->count++;
    lc->bytes += size;
    return ferror(stdout) ? 1 : 0;
}

/* 0 listed via showq; -1 showq unreachable (errno). */
static int list_via_showq(struct list_ctx *lc)
{
    int fd = postern_connect_public("showq", SHOWQ_TIMEOUT);
    if (fd < 0)
        return -1;
    ipc_stream *s = ipc_stream_open(fd, SHOWQ_TIMEOUT);
    ipc_record *r = ipc_record_new();
    ipc_build(r, "request", "list", (char *) NULL);
    if (ipc_send(s, r) < 0)
        postern_fatal("showq: %s", ipc_error(s));
    for (;;) {
        int rc = ipc_recv(s, r);
        if (rc != 0)
            postern_fatal("showq: %s", rc > 0 ? "listing ended early" : ipc_error(s));
        if (ipc_record_get(r, "done"))
            break;
        if (ipc_record_get(r, "status")) {
            const char *why = ipc_record_get_str(r, "reason");
            postern_fatal("showq: %s", why ? why : "failed");
        }
        if (list_one(r, lc) != 0)
            postern_fatal("write error on standard output");
    }
    ipc_record_free(r);
    ipc_stream_close(s);
    return 0;
}

static int queue_list(int argc, char **argv)
{
    struct queue_select sel;
    queue_select_init(&sel);
    struct list_ctx lc = { &sel, 0, 0, 0, { 0 } };
    strbuf_init(&lc.line);
    strbuf err;
    strbuf_init(&err);
    /* -j anywhere; the rest is the selection. */
    char **rest = xcalloc((size_t) argc + 1, sizeof(char *));
    int nrest = 0;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "-j") == 0)
            lc.json = 1;
        else
            rest[nrest++] = argv[i];
    }
    if (queue_select_parse(&sel, nrest, rest, &err) < 0)
        postern_fatal("queue: %s", strbuf_str(&err));
    xfree(rest);
    postern_load_config();
    if (list_via_showq(&lc) < 0) {
        int why = errno;
        if (!postern_is_queue_admin()) {
            errno = why;
            postern_fatal("queue listing unavailable: cannot connect to the showq service "
                          "(%s/public/showq: %m): is the mail system running?",
                          config_str("queue_directory"));
        }
        postern_warning("showq service unavailable (%s) -- reading the queue directly",
                        strerror(why));
        enter_spool();
        if (queue_list_walk(list_one, &lc) < 0)
            postern_fatal("cannot read the queue in %s: %m", config_str("queue_directory"));
    }
    if (!lc.json) {
        if (lc.count == 0)
            printf("Mail queue is empty\n");
        else
            printf("-- %lld Kbytes in %lld Request%s.\n", (lc.bytes + 1023) / 1024,
                   lc.count, lc.count == 1 ? "" : "s");
    }
    if (fflush(stdout) != 0 || ferror(stdout))
        postern_fatal("write error on standard output");
    strbuf_release(&lc.line);
    strbuf_release(&err);
    queue_select_free(&sel);
    return 0;
}

/* ---- surgery ------------------------------------------------------------ */

struct admin_ctx {
    int action;
    const struct queue_select *sel;
    int qmgr_up;                /* send active messages to qmgr */
    long long done;
    int failed;
    char **batch;               /* active queue ids waiting for qmgr */
    int nbatch;
};

/* The queue QID is in now, or NULL. */
static const char *locate(const char *qid)
{
    strbuf path;
    strbuf_init(&path);
    const char *found = NULL;
    for (int q = 0; all_queues[q] && !found; q++) {
        struct stat st;
        queue_path(&path, all_queues[q], qid);
        if (lstat(strbuf_str(&path), &st) == 0 && S_ISREG(st.st_mode))
            found = all_queues[q];
    }
    strbuf_release(&path);
    return found;
}

/* Does the message match --from/--to?  1 yes, 0 no, -1 gone/unreadable. */
static int envelope_matches(const struct queue_select *sel, const char *queue, const char *qid)
{
    if (!sel->from && !sel->to)
        return 1;
    strbuf path, err;
    strbuf_init(&path);
    strbuf_init(&err);
    queue_path(&path, queue, qid);
    int fd = open(strbuf_str(&path), O_RDONLY | O_CLOEXEC);
    int rc = -1;
    if (fd >= 0) {
        struct queue_message msg;
        int loaded = queue_message_load(fd, qid, &msg, &err) == 0;
        if (loaded && !queue_message_unchanged(fd, &msg)) {
            queue_message_free(&msg);   /* recycled meanwhile: gone */
            loaded = 0;
        }
        if (loaded) {
            const char **rcpts = xcalloc((size_t) msg.nrcpt + 1, sizeof(*rcpts));
            int n = 0;
            for (int i = 0; i < msg.nrcpt; i++)
                if (msg.rcpts[i].status == RCPT_PENDING)
                    rcpts[n++] = msg.rcpts[i].address;
            rc = queue_select_envelope(sel, msg.sender, rcpts, n);
            xfree(rcpts);
            queue_message_free(&msg);
        }
        close(fd);
    }
    strbuf_release(&path);
    strbuf_release(&err);
    return rc;
}

static void admin_done(struct admin_ctx *ac, const char *qid)
{
    log_info("%s: %s", qid, queue_admin_done_text(ac->action));
    ac->done++;
}

static void admin_flush_batch(struct admin_ctx *ac);

/* Apply the action to QID, believed to be in QUEUE; follow it when it
 * moves.  explicit: named on the command line (a miss is an error). */
static void admin_one(struct admin_ctx *ac, const char *queue, const char *qid, int explicit)
{
    for (int tries = 0; tries < MOVE_RETRIES; tries++) {
        if (queue == NULL)
            break;
        if (strcmp(queue, "active") == 0 && ac->qmgr_up) {
            if (ac->action == QA_RELEASE)
                return;                 /* active mail is not on hold */
            ac->batch[ac->nbatch++] = xstrdup(qid);
            if (ac->nbatch == ADMIN_BATCH)
                admin_flush_batch(ac);
            return;
        }
        int rc = queue_admin_apply_nosync(ac->action, queue, qid);
        if (rc > 0) {
            admin_done(ac, qid);
            return;
        }
        if (rc == 0)
            return;
        if (errno != ENOENT) {
            postern_warning("%s: cannot %s: %m", qid, queue_admin_action_name(ac->action));
            ac->failed = 1;
            return;
        }
        queue = locate(qid);            /* it moved: follow it */
    }
    if (explicit) {
        postern_warning("%s: no such message in the queue", qid);
        ac->failed = 1;
    }
}

/* Send the batched active-queue ids to qmgr; follow the ones it does not
 * hold (they finished their round meanwhile). */
static void admin_flush_batch(struct admin_ctx *ac)
{
    if (ac->nbatch == 0)
        return;
    ipc_record *req = ipc_record_new();
    ipc_record_add_str(req, "request", "admin");
    ipc_record_add_str(req, "action", queue_admin_action_name(ac->action));
    for (int i = 0; i < ac->nbatch; i++)
        ipc_record_add_str(req, "queue_id", ac->batch[i]);
    int n = ac->nbatch;
    char **ids = ac->batch;
    ac->batch = xcalloc(ADMIN_BATCH, sizeof(char *));
    ac->nbatch = 0;

    int fd = postern_connect_public("qmgr", QMGR_TIMEOUT);
    if (fd < 0)
        postern_fatal("cannot reach qmgr (public/qmgr: %m) for messages in the active queue");
    ipc_stream *s = ipc_stream_open(fd, QMGR_TIMEOUT);
    ipc_record *reply = ipc_record_new();
    if (ipc_send(s, req) < 0 || ipc_recv(s, reply) != 0)
        postern_fatal("qmgr did not answer (stopping?): %s; messages in the active queue "
                      "were not changed", ipc_error(s));
    long long status = 1;
    if (ipc_record_get_int(reply, "status", &status) < 0 || status != 0) {
        const char *why = ipc_record_get_str(reply, "reason");
        postern_fatal("qmgr refused: %s", why ? why : "no reason given");
    }
    ipc_stream_close(s);
    for (int i = 0; i < n; i++) {
        int missing = 0;
        for (size_t k = 0; k < reply->n && !missing; k++)
            missing = strcmp(reply->attrs[k].name, "missing") == 0
                && strcmp(strbuf_str(&reply->attrs[k].value), ids[i]) == 0;
        if (!missing) {
            ac->done++;                 /* qmgr logs it when applied */
        } else {
            const char *now = locate(ids[i]);
            if (now && strcmp(now, "active") != 0)
                admin_one(ac, now, ids[i], 1);
            else if (now == NULL && queue_select_id(ac->sel, ids[i]) && ac->sel->nids)
                postern_warning("%s: no such message in the queue", ids[i]);
        }
        xfree(ids[i]);
    }
    xfree(ids);
    ipc_record_free(req);
    ipc_record_free(reply);
}

struct scan_ctx {
    struct admin_ctx *ac;
    const char *queue;
};

static int admin_scan_one(const char *qid, void *ctx)
{
    struct scan_ctx *sc = ctx;
    if (!queue_select_id(sc->ac->sel, qid))
        return 0;
    if (envelope_matches(sc->ac->sel, sc->queue, qid) == 1)
        admin_one(sc->ac, sc->queue, qid, 0);
    return 0;
}

static void wake_qmgr(const char *queue)
{
    int fd = postern_connect_public("qmgr", QMGR_TIMEOUT);
    if (fd < 0)
        return;                         /* it looks at the queue when it starts */
    ipc_stream *s = ipc_stream_open(fd, QMGR_TIMEOUT);
    ipc_record *r = ipc_record_new();
    ipc_build(r, "request", "wakeup", "queue", queue, (char *) NULL);
    if (ipc_send(s, r) == 0)
        (void) ipc_recv(s, r);
    ipc_record_free(r);
    ipc_stream_close(s);
}

static int queue_admin(int action, int argc, char **argv)
{
    const char *name = queue_admin_action_name(action);
    struct queue_select sel;
    queue_select_init(&sel);
    strbuf err;
    strbuf_init(&err);
    if (queue_select_parse(&sel, argc, argv, &err) < 0)
        postern_fatal("queue %s: %s", name, strbuf_str(&err));
    if (!queue_select_any(&sel))
        postern_fatal("queue %s: no messages selected (give queue ids, ALL, --from or --to)",
                      name);
    postern_load_config();
    require_queue_admin(name);
    /* Surgery is logged in the mail log, like Postfix's postsuper. */
    log_set_syslog_name(config_str("syslog_name"));
    log_open("queue");
    const char *logfile = config_str("maillog_file");
    if (*logfile == '\0')
        log_use_syslog();
    else if (log_use_file(logfile) < 0)
        postern_warning("cannot open maillog_file %s: %m", logfile);
    enter_spool();

    /* A running qmgr holds a flock on active/ for its whole life.  When
     * we get the lock, no qmgr runs and none can start until we are done:
     * active/ files are ours to change.  Otherwise they go to qmgr. */
    int lock_fd = open("active", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (lock_fd < 0)
        postern_fatal("open %s/active: %m", config_str("queue_directory"));
    int qmgr_up = 0;
    if (flock(lock_fd, LOCK_EX | LOCK_NB) < 0) {
        if (errno != EWOULDBLOCK)
            postern_fatal("lock %s/active: %m", config_str("queue_directory"));
        /* Held: by qmgr, or by another postern queue when qmgr is down
         * (then nobody answers public/qmgr: wait for that one to finish). */
        int probe = postern_connect_public("qmgr", QMGR_TIMEOUT);
        if (probe >= 0) {
            close(probe);
            qmgr_up = 1;
        } else if (flock(lock_fd, LOCK_EX) < 0) {
            postern_fatal("lock %s/active: %m", config_str("queue_directory"));
        }
    }
    struct admin_ctx ac = { action, &sel, qmgr_up, 0, 0,
                            xcalloc(ADMIN_BATCH, sizeof(char *)), 0 };
    if (sel.nids > 0 && !sel.all) {
        for (int i = 0; i < sel.nids; i++) {
            const char *queue = locate(sel.ids[i]);
            if (queue == NULL) {
                postern_warning("%s: no such message in the queue", sel.ids[i]);
                ac.failed = 1;
                continue;
            }
            int m = envelope_matches(&sel, queue, sel.ids[i]);
            if (m == 1 || (m < 0 && !sel.from && !sel.to))
                admin_one(&ac, queue, sel.ids[i], 1);
        }
    } else {
        /* The destination queue is not scanned: a moved message is not
         * met twice, and acting on it there would do nothing anyway. */
        for (int q = 0; all_queues[q]; q++) {
            const char *queue = all_queues[q];
            if ((action == QA_HOLD && strcmp(queue, "hold") == 0)
                || (action == QA_RELEASE && strcmp(queue, "hold") != 0)
                || (action == QA_REQUEUE && strcmp(queue, "incoming") == 0)
                || (action != QA_DELETE && strcmp(queue, "corrupt") == 0))
                continue;
            struct scan_ctx sc = { &ac, queue };
            if (queue_scan(queue, admin_scan_one, &sc) < 0 && errno != ENOENT) {
                postern_warning("cannot read %s/: %m", queue);
                ac.failed = 1;
            }
        }
    }
    admin_flush_batch(&ac);
    /* One fsync per directory for the whole run, before success is told. */
    if (queue_admin_sync() < 0) {
        postern_warning("cannot fsync the queue directories: %m");
        ac.failed = 1;
    }
    close(lock_fd);
    if (ac.done > 0 && ac.qmgr_up && action == QA_RELEASE)
        wake_qmgr("deferred");
    static const char *const summary[] = { "", "Deleted", "Placed on hold",
                                           "Released from hold", "Requeued" };
    if (ac.done > 0)
        postern_info("%s: %lld message%s", summary[action], ac.done, ac.done == 1 ? "" : "s");
    xfree(ac.batch);
    strbuf_release(&err);
    queue_select_free(&sel);
    return ac.failed ? 1 : 0;
}

/* ---- cat ------------------------------------------------------------------ */

#define CAT_ENVELOPE 1
#define CAT_HEADERS 2
#define CAT_BODY 4

/* cat writes into memory first and prints only once it knows the file
 * still held the message it names when the reading was done (below). */
static FILE *cat_out;

static void put_line(const char *label, const char *value)
{
    fprintf(cat_out, "%s: %s\n", label, value);
}

static void cat_envelope(const struct queue_message *msg)
{
    strbuf t;
    strbuf_init(&t);
    format_arrival(&t, msg->arrival_sec);
    fprintf(cat_out, "message_size: %lld\n", msg->size);
    put_line("message_arrival_time", strbuf_str(&t));
    put_line("sender", msg->sender);
    for (int i = 0; i < msg->nattrs; i++)
        fprintf(cat_out, "named_attribute: %s=%s\n", msg->attr_names[i], msg->attr_values[i]);
    for (int i = 0; i < msg->nrcpt; i++) {
        const struct queue_rcpt *r = &msg->rcpts[i];
        if (r->notify)
            put_line("notify_flags", r->notify);
        if (r->orcpt)
            put_line("original_recipient", r->orcpt);
        put_line(r->status == RCPT_DONE ? "done_recipient" : "recipient", r->address);
    }
    strbuf_release(&t);
}

static int queue_cat(int argc, char **argv)
{
    int what = 0, i = 0;
    for (; i < argc && argv[i][0] == '-' && argv[i][1]; i++) {
        for (const char *f = argv[i] + 1; *f; f++) {
            if (*f == 'e')
                what |= CAT_ENVELOPE;
            else if (*f == 'h')
                what |= CAT_HEADERS;
            else if (*f == 'b')
                what |= CAT_BODY;
            else
                postern_fatal("queue cat: unknown option -%c (usage: postern queue cat "
                              "[-e] [-h] [-b] QUEUE_ID)", *f);
        }
    }
    if (argc - i != 1)
        postern_fatal("usage: postern queue cat [-e] [-h] [-b] QUEUE_ID");
    const char *qid = argv[i];
    if (!queue_id_valid(qid))
        postern_fatal("queue cat: bad queue id: \"%s\"", qid);
    int whole = what == 0;
    if (whole)
        what = CAT_ENVELOPE | CAT_HEADERS | CAT_BODY;
    postern_load_config();
    require_queue_admin("queue cat");
    enter_spool();

    /* Open where it is now; once open, a move does not matter. */
    strbuf path, err, line;
    strbuf_init(&path);
    strbuf_init(&err);
    strbuf_init(&line);
    int fd = -1;
    const char *queue = NULL;
    for (int tries = 0; fd < 0 && tries < MOVE_RETRIES; tries++) {
        if ((queue = locate(qid)) == NULL)
            break;
        queue_path(&path, queue, qid);
        fd = open(strbuf_str(&path), O_RDONLY | O_CLOEXEC);
        if (fd < 0 && errno != ENOENT)
            postern_fatal("open %s: %m", strbuf_str(&path));
    }
    if (fd < 0)
        postern_fatal("%s: no such message in the queue", qid);
    char *shown = NULL;
    size_t shown_len = 0;
    cat_out = open_memstream(&shown, &shown_len);
    if (!cat_out)
        postern_fatal("open_memstream: %m");
    struct queue_message msg;
    if (queue_message_load(fd, qid, &msg, &err) < 0)
        postern_fatal("%s: malformed queue file: %s", strbuf_str(&path), strbuf_str(&err));
    const char *p = strbuf_str(&path);
    if (what & CAT_ENVELOPE) {
        fprintf(cat_out, "*** ENVELOPE RECORDS %s ***\n", p);
        cat_envelope(&msg);
    }
    if (what & (CAT_HEADERS | CAT_BODY)) {
        queue_content_reader *cr = queue_content_open(fd, &msg);
        int in_headers = 1, rc;
        if (whole)
            fprintf(cat_out, "*** MESSAGE CONTENTS %s ***\n", p);
        else if (what & CAT_HEADERS)
            fprintf(cat_out, "*** HEADER SEGMENT %s ***\n", p);
        while ((rc = queue_content_next(cr, &line, &err)) == 1) {
            int show = whole || (in_headers ? (what & CAT_HEADERS) : (what & CAT_BODY));
            if (in_headers && line.len == 0) {
                in_headers = 0;
                if (!whole && (what & CAT_BODY))
                    fprintf(cat_out, "*** BODY SEGMENT %s ***\n", p);
                if (!whole)
                    continue;           /* the separator belongs to neither */
            }
            if (show) {
                fwrite(line.data ? line.data : "", 1, line.len, cat_out);
                fputc('\n', cat_out);
            }
        }
        queue_content_close(cr);
        if (rc < 0)
            postern_fatal("%s: malformed queue file: %s", p, strbuf_str(&err));
        if (in_headers && !whole && (what & CAT_BODY))
            fprintf(cat_out, "*** BODY SEGMENT %s ***\n", p);
    }
    if (whole)
        fprintf(cat_out, "*** MESSAGE FILE END %s ***\n", p);
    /* A finished message may have been recycled (recycle/) and its file
     * rewritten for another message while we read it: then what we read
     * is not this message, which is gone. */
    if (!queue_message_unchanged(fd, &msg))
        postern_fatal("%s: no such message in the queue", qid);
    if (fclose(cat_out) != 0)
        postern_fatal("queue cat: out of memory");
    cat_out = NULL;
    fwrite(shown, 1, shown_len, stdout);
    free(shown);
    queue_message_free(&msg);
    close(fd);
    strbuf_release(&path);
    strbuf_release(&err);
    strbuf_release(&line);
    if (fflush(stdout) != 0)
        postern_fatal("write error on standard output");
    return 0;
}

/* ---- entry points ------------------------------------------------------ */

int postern_cmd_queue(int argc, char **argv)
{
    if (argc < 2)
        return queue_list(0, argv + 1);
    const char *sub = argv[1];
    if (strcmp(sub, "list") == 0)
        return queue_list(argc - 2, argv + 2);
    if (strcmp(sub, "cat") == 0)
        return queue_cat(argc - 2, argv + 2);
    int action = queue_admin_action_parse(sub);
    if (action != QA_NONE)
        return queue_admin(action, argc - 2, argv + 2);
    /* Options, ids, ALL: a listing. */
    if (sub[0] == '-' || strcmp(sub, "ALL") == 0 || queue_id_valid(sub))
        return queue_list(argc - 1, argv + 1);
    postern_fatal("queue: unknown subcommand \"%s\" (list, delete, hold, release, requeue, cat)",
                  sub);
}

int postern_cmd_flush(int argc, char **argv)
{
    if (argc != 1)
        postern_fatal("usage: postern flush");
    postern_load_config();
    int fd = postern_connect_public("qmgr", QMGR_TIMEOUT);
    if (fd < 0)
        postern_fatal("cannot flush: mail system is down (%s/public/qmgr: %m)",
                      config_str("queue_directory"));
    ipc_stream *s = ipc_stream_open(fd, QMGR_TIMEOUT);
    ipc_record *r = ipc_record_new();
    ipc_build(r, "request", "flush", (char *) NULL);
    if (ipc_send(s, r) < 0 || ipc_recv(s, r) != 0)
        postern_fatal("flush: qmgr: %s", ipc_error(s));
    long long status = 1;
    if (ipc_record_get_int(r, "status", &status) < 0 || status != 0)
        postern_fatal("flush: qmgr refused the request");
    ipc_record_free(r);
    ipc_stream_close(s);
    return 0;
}
