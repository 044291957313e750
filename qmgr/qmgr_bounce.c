/*
 * qmgr_bounce.c - failure, delay and success notices (DSNs) for qmgr.
 *
 * Each notice is composed (common/dsn.c) and submitted to cleanup with the
 * enqueue conversation (origin=bounce) by a short-lived child process; the
 * child reports "OK NEWQID" or "ERR reason" on a pipe that the main poll()
 * loop watches.  Why a child: cleanup wakes qmgr after it commits the
 * notice and waits for qmgr's reply, so qmgr must keep serving its loop
 * while the notice is being queued; the child also keeps a slow cleanup
 * from stalling deliveries.
 *
 * Interface: qmgr_bounce_start() (see qmgr.h), and the poll helpers.
 * Contract: the parent learns the outcome only through the pipe; it marks
 * bounced recipients done only after "OK" (qmgr_message_bounce_done), so a
 * notice that could not be queued is retried with the message.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <strings.h>
#include <sys/wait.h>
#include <unistd.h>

#include "qmgr.h"
#include "cleanup_submit.h"
#include "config.h"
#include "dsn.h"
#include "ipc.h"
#include "log.h"
#include "mem.h"


struct bounce_child {
    pid_t pid;
    int fd;
    struct qmgr_message *msg;
    int kind;
    int *idx;
    int n;
    char *to;
    char *from;
    strbuf output;
    struct bounce_child *next;
};

/* At most this many notice children at once; the rest wait in order. */
#define BOUNCE_CHILDREN_MAX 8

static struct bounce_child *children;
static int nchildren;
static struct bounce_child *waiting_head, *waiting_tail;

struct content_ctx {
    queue_content_reader *reader;
};

static int next_content_line(void *ctx, strbuf *line, strbuf *err)
{
    struct content_ctx *c = ctx;
    return queue_content_next(c->reader, line, err);
}

/* Compose the notice text.  0 ok, -1 with why. */
static int compose(struct qmgr_message *m, int kind, const int *idx, int n,
                   const char *to, strbuf *text, strbuf *why)
{
    struct dsn_rcpt_report *rr = xcalloc((size_t) n, sizeof(*rr));
    strbuf *mta = xcalloc((size_t) n, sizeof(*mta));
    for (int i = 0; i < n; i++) {
        const struct queue_rcpt *qr = &m->msg.rcpts[idx[i]];
        const struct qmgr_rcpt *rc = &m->rcpts[idx[i]];
        strbuf_init(&mta[i]);
        rr[i].address = qr->address;
        rr[i].orcpt = qr->orcpt;
        rr[i].status = strbuf_str(&rc->dsn);
        rr[i].reason = strbuf_str(&rc->reason);
        if (rc->diag_smtp && dsn_remote_mta(strbuf_str(&rc->relay), &mta[i]))
            rr[i].remote_mta = strbuf_str(&mta[i]);
        rr[i].diag_type = rc->diag_smtp ? "smtp" : NULL;
    }
    const char *ret = queue_message_attr(&m->msg, "ret");
    struct dsn_report rep = {
        .kind = kind == NOTICE_FAILURE ? DSN_KIND_FAILURE
            : kind == NOTICE_DELAY ? DSN_KIND_DELAY : DSN_KIND_SUCCESS,
        .myhostname = qmgr_var.myhostname,
        .queue_id = m->qid,
        .sender = m->msg.sender,
        .notify_to = to,
        .envid = queue_message_attr(&m->msg, "envid"),
        .arrival = m->msg.arrival_sec,
        .now = time(NULL),
        .retry_until = m->msg.arrival_sec + qmgr_var.max_lifetime,
        .headers_only = (ret && strcasecmp(ret, "HDRS") == 0)
            || m->msg.size > qmgr_var.bounce_size_limit,
        .rcpts = rr,
        .nrcpt = n,
    };
    int rc = -1;
    strbuf path;
    strbuf_init(&path);
    queue_path(&path, "active", m->qid);
    int fd = open(strbuf_str(&path), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        strbuf_printf(why, "open %s: %s", strbuf_str(&path), strerror(errno));
    } else {
        struct content_ctx c = { queue_content_open(fd, &m->msg) };
        rc = dsn_compose(&rep, next_content_line, &c, text, why);
        queue_content_close(c.reader);
        close(fd);
    }
    strbuf_release(&path);
    for (int i = 0; i < n; i++)
        strbuf_release(&mta[i]);
    xfree(mta);
    xfree(rr);
    return rc;
}

/* Enqueue the notice through cleanup.  0 ok (new_qid set), -1 with why. */
static int submit(const char *from, const char *to, const strbuf *text,
                  strbuf *new_qid, strbuf *why)
{
    return cleanup_submit_text("bounce", from, to, text, (int) qmgr_var.ipc_timeout,
                               new_qid, why);
}

static void child_free(struct bounce_child *c)
{
    strbuf_release(&c->output);
    xfree(c->idx);
    xfree(c->to);
    xfree(c->from);
    xfree(c);
}

/* Fork the child for c.  0 running, -1 failed (c untouched). */
static int child_spawn(struct bounce_child *c)
{
    struct qmgr_message *m = c->msg;
    int pfd[2];
    if (pipe2(pfd, O_CLOEXEC) < 0) {
        log_warning("%s: pipe: %s", m->qid, strerror(errno));
        return -1;
    }
    pid_t pid = fork();
    if (pid < 0) {
        log_warning("%s: fork: %s", m->qid, strerror(errno));
        close(pfd[0]);
        close(pfd[1]);
        return -1;
    }
    if (pid == 0) {
        close(pfd[0]);
        qmgr_forked_child();
        signal(SIGPIPE, SIG_IGN);
        strbuf text, why, qid, report;
        strbuf_init(&text);
        strbuf_init(&why);
        strbuf_init(&qid);
        strbuf_init(&report);
        if (compose(m, c->kind, c->idx, c->n, c->to, &text, &why) == 0
            && submit(c->from, c->to, &text, &qid, &why) == 0)
            strbuf_printf(&report, "OK %s\n", strbuf_str(&qid));
        else
            strbuf_printf(&report, "ERR %s\n", strbuf_str(&why));
        ssize_t w = write(pfd[1], report.data, report.len);
        _exit(w == (ssize_t) report.len ? 0 : 1);
    }
    close(pfd[1]);
    fcntl(pfd[0], F_SETFL, O_NONBLOCK);
    c->pid = pid;
    c->fd = pfd[0];
    c->next = children;
    children = c;
    nchildren++;
    return 0;
}

/* Start waiting notices while there is room; one that cannot be started
 * is reported as failed (its message retries it later). */
static void start_waiting(void)
{
    while (waiting_head && nchildren < BOUNCE_CHILDREN_MAX) {
        struct bounce_child *c = waiting_head;
        waiting_head = c->next;
        if (waiting_head == NULL)
            waiting_tail = NULL;
        if (child_spawn(c) < 0) {
            qmgr_message_bounce_done(c->msg, c->kind, c->idx, c->n, 0, "",
                                     "cannot start the notice process");
            child_free(c);
        }
    }
}

int qmgr_bounce_start(struct qmgr_message *m, int kind, const int *idx, int n,
                      const char *to, const char *from)
{
    struct bounce_child *c = xcalloc(1, sizeof(*c));
    c->fd = -1;
    c->msg = m;
    c->kind = kind;
    c->idx = xmemdup(idx, (size_t) n * sizeof(int));
    c->n = n;
    c->to = xstrdup(to);
    c->from = xstrdup(from);
    strbuf_init(&c->output);
    if (nchildren < BOUNCE_CHILDREN_MAX && waiting_head == NULL) {
        if (child_spawn(c) < 0) {
            child_free(c);
            return -1;
        }
    } else {
        c->next = NULL;
        if (waiting_tail)
            waiting_tail->next = c;
        else
            waiting_head = c;
        waiting_tail = c;
    }
    m->bounces_outstanding++;
    return 0;
}

int qmgr_bounce_running(void)
{
    return nchildren;
}

int qmgr_bounce_pollfds(struct pollfd *pfd, int max, void **owners)
{
    int n = 0;
    for (struct bounce_child *c = children; c && n < max; c = c->next) {
        pfd[n].fd = c->fd;
        pfd[n].events = POLLIN;
        pfd[n].revents = 0;
        owners[n] = c;
        n++;
    }
    return n;
}

void qmgr_bounce_event(void *owner, short revents)
{
    struct bounce_child *c = owner;
    char buf[4096];
    ssize_t got = read(c->fd, buf, sizeof(buf));
    if (got < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (got > 0) {
        if (c->output.len < 65536)
            strbuf_append(&c->output, buf, (size_t) got);
        return;
    }
    /* EOF (or error): the child is done. */
    int status = 0;
    while (waitpid(c->pid, &status, 0) < 0 && errno == EINTR)
        ;
    for (struct bounce_child **pp = &children; *pp; pp = &(*pp)->next)
        if (*pp == c) {
            *pp = c->next;
            break;
        }
    nchildren--;
    close(c->fd);
    strbuf_rtrim(&c->output);
    const char *out = strbuf_str(&c->output);
    int ok = strncmp(out, "OK ", 3) == 0;
    const char *detail = ok ? out + 3
        : strncmp(out, "ERR ", 4) == 0 ? out + 4 : "notice process failed";
    qmgr_message_bounce_done(c->msg, c->kind, c->idx, c->n, ok, detail, detail);
    child_free(c);
    start_waiting();
}
