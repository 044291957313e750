/*
 * qmgr_sched.c - transports, destinations and delivery requests.
 *
 * A transport is a master.cf service (private/NAME); its maxproc bounds
 * the deliveries running through it.  A destination is (transport, queue
 * name): the nexthop, or the recipient itself when the transport takes one
 * recipient per request (local), as Postfix does, so one slow mailbox does
 * not hold up the others.  Each destination has a concurrency window that
 * starts at initial_destination_concurrency, grows by one per successful
 * delivery up to the transport's TRANSPORT_destination_concurrency_limit
 * (default_destination_concurrency_limit), and shrinks by one per
 * connection-level failure.  A destination whose failures in a row reach
 * the window it had when they began is dead for minimal_backoff_time: its
 * waiting jobs and new mail are deferred with the last reason.
 *
 * Connection-level failure: the agent cannot be reached, breaks the
 * protocol, or defers every recipient of a request without naming a relay
 * (relay empty or "none": it never talked to a server).
 *
 * Delivery requests run non-blocking: connect private/TRANSPORT, write the
 * request record, read one result record per recipient then {done=1}.
 * The agent logs the outcome lines of the results it reports; qmgr logs
 * those of recipients the agent never answered for (job_finish).
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "qmgr.h"
#include "config.h"
#include "delivery_log.h"
#include "ipc.h"
#include "log.h"
#include "master_cf.h"
#include "mem.h"
#include "server.h"

#define DEST_HASH_SIZE 4096
#define IPC_MAX_ATTR (1024 * 1024)
#define IPC_MAX_RECORD (16 * 1024 * 1024)

static struct qmgr_transport *transports;
static struct master_service *master_services;
static int master_cf_ok;
static struct qmgr_dest *dest_hash[DEST_HASH_SIZE];
static struct qmgr_job *running;
static int nrunning;
static struct qmgr_dest **filling;      /* dests with a job being filled */
static int nfilling, filling_cap;

static unsigned hash_key(const char *s)
{
    unsigned h = 5381;
    while (*s)
        h = h * 33 + (unsigned char) *s++;
    return h % DEST_HASH_SIZE;
}

/* Per-transport parameter NAME_suffix when params.def knows it. */
static long long transport_param(const char *name, const char *suffix, long long def)
{
    strbuf p;
    strbuf_init(&p);
    strbuf_printf(&p, "%s_%s", name, suffix);
    long long v = def;
    if (config_lookup_def(strbuf_str(&p)) != NULL)
        v = config_int(strbuf_str(&p));
    strbuf_release(&p);
    return v;
}

/* Descriptors kept free for everything but delivery connections: the
 * listener and its clients, notice pipes, queue files being marked,
 * scans, the log. */
#define FD_RESERVE 48
static int job_fd_budget = 1000000;

void qmgr_sched_init(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        if (rl.rlim_cur < rl.rlim_max) {
            rl.rlim_cur = rl.rlim_max;
            if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
                getrlimit(RLIMIT_NOFILE, &rl);
        }
        if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < (rlim_t) job_fd_budget)
            job_fd_budget = (int) rl.rlim_cur - FD_RESERVE;
        if (job_fd_budget < 1)
            job_fd_budget = 1;
    }
    strbuf path, err;
    strbuf_init(&path);
    strbuf_init(&err);
    strbuf_printf(&path, "%s/master.cf", config_dir());
    if (master_cf_load(strbuf_str(&path), &master_services, &err) == 0) {
        master_cf_ok = 1;
    } else {
        log_warning("%s; assuming every transport exists", strbuf_str(&err));
        master_services = NULL;
    }
    strbuf_release(&path);
    strbuf_release(&err);
}

struct qmgr_transport *qmgr_transport_find(const char *name)
{
    for (struct qmgr_transport *t = transports; t; t = t->next)
        if (strcmp(t->name, name) == 0)
            return t;
    /* Only safe names can become socket paths. */
    if (name[0] == '\0' || name[0] == '.' || strchr(name, '/') != NULL)
        return NULL;
    int maxproc = (int) config_int("default_process_limit");
    if (master_cf_ok) {
        struct master_service *s;
        for (s = master_services; s; s = s->next)
            if (s->type == SERVICE_UNIX && strcmp(s->name, name) == 0)
                break;
        if (s == NULL)
            return NULL;
        if (s->maxproc >= 0)
            maxproc = s->maxproc;
    }
    struct qmgr_transport *t = xcalloc(1, sizeof(*t));
    t->name = xstrdup(name);
    t->maxproc = maxproc;
    t->rcpt_limit = (int) transport_param(name, "destination_recipient_limit",
                                          config_int("default_destination_recipient_limit"));
    if (t->rcpt_limit < 1)
        t->rcpt_limit = 1;
    t->concurrency_limit = (int) transport_param(name, "destination_concurrency_limit",
                                                 config_int("default_destination_concurrency_limit"));
    if (t->concurrency_limit < 1)
        t->concurrency_limit = 1;
    t->next = transports;
    transports = t;
    return t;
}

struct qmgr_dest *qmgr_dest_get(struct qmgr_transport *tp, const char *key,
                                const char *nexthop)
{
    strbuf k;
    strbuf_init(&k);
    strbuf_printf(&k, "%s:%s", tp->name, key);
    unsigned h = hash_key(strbuf_str(&k));
    struct qmgr_dest *d;
    for (d = dest_hash[h]; d; d = d->hash_next)
        if (strcmp(d->key, strbuf_str(&k)) == 0)
            break;
    if (d == NULL) {
        d = xcalloc(1, sizeof(*d));
        d->key = strbuf_detach(&k, NULL);
        d->nexthop = xstrdup(nexthop);
        d->transport = tp;
        d->window = qmgr_var.initial_concurrency;
        if (d->window > tp->concurrency_limit)
            d->window = tp->concurrency_limit;
        if (d->window < 1)
            d->window = 1;
        strbuf_init(&d->last_reason);
        strbuf_init(&d->last_dsn);
        d->hash_next = dest_hash[h];
        dest_hash[h] = d;
    }
    strbuf_release(&k);
    return d;
}

int qmgr_dest_is_dead(struct qmgr_dest *d, time_t now)
{
    if (d->dead_until == 0)
        return 0;
    if (now >= d->dead_until) {
        /* Probation: one more try, with a fresh streak. */
        d->dead_until = 0;
        d->fail_streak = 0;
        d->window = 1;
        return 0;
    }
    return 1;
}

void qmgr_sched_revive_all(void)
{
    for (int i = 0; i < DEST_HASH_SIZE; i++)
        for (struct qmgr_dest *d = dest_hash[i]; d; d = d->hash_next)
            if (d->dead_until) {
                d->dead_until = 0;
                d->fail_streak = 0;
            }
}

void qmgr_sched_sweep(time_t now)
{
    int freed = 0;
    for (int i = 0; i < DEST_HASH_SIZE; i++) {
        struct qmgr_dest **pp = &dest_hash[i];
        while (*pp) {
            struct qmgr_dest *d = *pp;
            if (d->active == 0 && d->queue_head == NULL && d->filling == NULL
                && !d->on_ready && (d->dead_until == 0 || d->dead_until <= now)) {
                *pp = d->hash_next;
                xfree(d->key);
                xfree(d->nexthop);
                strbuf_release(&d->last_reason);
                strbuf_release(&d->last_dsn);
                xfree(d);
                freed++;
            } else {
                pp = &d->hash_next;
            }
        }
    }
    if (freed)
        log_debug("freed %d idle destinations", freed);
}

static struct qmgr_job *job_new(struct qmgr_dest *d, struct qmgr_message *msg)
{
    struct qmgr_job *j = xcalloc(1, sizeof(*j));
    j->msg = msg;
    j->dest = d;
    j->rcpt_idx = xcalloc((size_t) d->transport->rcpt_limit, sizeof(int));
    j->fd = -1;
    strbuf_init(&j->out);
    strbuf_init(&j->in);
    msg->jobs_outstanding++;
    return j;
}

static void job_free(struct qmgr_job *j)
{
    if (j->fd >= 0)
        close(j->fd);
    xfree(j->rcpt_idx);
    strbuf_release(&j->out);
    strbuf_release(&j->in);
    xfree(j);
}

static void dest_make_ready(struct qmgr_dest *d)
{
    struct qmgr_transport *t = d->transport;
    if (d->on_ready)
        return;
    d->on_ready = 1;
    d->ready_next = NULL;
    if (t->ready_tail)
        t->ready_tail->ready_next = d;
    else
        t->ready_head = d;
    t->ready_tail = d;
}

static void dest_enqueue(struct qmgr_dest *d, struct qmgr_job *j)
{
    j->next = NULL;
    if (d->queue_tail)
        d->queue_tail->next = j;
    else
        d->queue_head = j;
    d->queue_tail = j;
    dest_make_ready(d);
}

void qmgr_dest_add_rcpt(struct qmgr_dest *d, struct qmgr_message *msg, int idx)
{
    if (d->filling && d->filling->msg != msg) {
        dest_enqueue(d, d->filling);
        d->filling = NULL;
    }
    if (d->filling == NULL) {
        d->filling = job_new(d, msg);
        if (nfilling == filling_cap) {
            filling_cap = filling_cap ? filling_cap * 2 : 16;
            filling = xrealloc(filling, (size_t) filling_cap * sizeof(*filling));
        }
        filling[nfilling++] = d;
    }
    struct qmgr_job *j = d->filling;
    j->rcpt_idx[j->nrcpt++] = idx;
    msg->rcpts[idx].state = QR_QUEUED;
    if (j->nrcpt == d->transport->rcpt_limit) {
        dest_enqueue(d, j);
        d->filling = NULL;
    }
}

void qmgr_sched_release(void)
{
    for (int i = 0; i < nfilling; i++) {
        struct qmgr_dest *d = filling[i];
        if (d->filling) {
            dest_enqueue(d, d->filling);
            d->filling = NULL;
        }
    }
    nfilling = 0;
}

/* Defer the recipients of j that have no result yet; finish the job. */
static void job_finish(struct qmgr_job *j, const char *dsn, const char *reason)
{
    struct qmgr_message *msg = j->msg;
    double now = qmgr_now();
    for (int i = j->nresults; i < j->nrcpt; i++)
        qmgr_message_result(msg, j->rcpt_idx[i], "deferred", dsn, "none", reason, 0,
                            j->start_time ? j->start_time : now,
                            j->connect_time ? j->connect_time : now, now);
    msg->jobs_outstanding--;
    job_free(j);
    qmgr_message_check(msg);
}

/* Defer every waiting job of a destination that died. */
static void dest_flush_dead(struct qmgr_dest *d)
{
    strbuf why;
    strbuf_init(&why);
    strbuf_printf(&why, "delivery temporarily suspended: %s", strbuf_str(&d->last_reason));
    struct qmgr_job *j;
    while ((j = d->queue_head) != NULL) {
        d->queue_head = j->next;
        if (d->queue_head == NULL)
            d->queue_tail = NULL;
        job_finish(j, strbuf_str(&d->last_dsn), strbuf_str(&why));
    }
    strbuf_release(&why);
}

/* A waiting job of a message the administrator deleted, held or
 * requeued: its recipients stay pending, without a deferral record (the
 * admin action, not a delivery, ended their round). */
static void job_cancel(struct qmgr_job *j)
{
    struct qmgr_message *msg = j->msg;
    for (int i = 0; i < j->nrcpt; i++)
        if (msg->rcpts[j->rcpt_idx[i]].state == QR_QUEUED)
            msg->rcpts[j->rcpt_idx[i]].state = QR_DEFERRED;
    msg->jobs_outstanding--;
    job_free(j);
    qmgr_message_check(msg);
}

void qmgr_sched_cancel_doomed(void)
{
    for (int h = 0; h < DEST_HASH_SIZE; h++)
        for (struct qmgr_dest *d = dest_hash[h]; d; d = d->hash_next) {
            struct qmgr_job *keep_head = NULL, *keep_tail = NULL, *j = d->queue_head;
            d->queue_head = d->queue_tail = NULL;
            while (j) {
                struct qmgr_job *next = j->next;
                if (j->msg->admin_action) {
                    job_cancel(j);
                } else {
                    j->next = NULL;
                    if (keep_tail)
                        keep_tail->next = j;
                    else
                        keep_head = j;
                    keep_tail = j;
                }
                j = next;
            }
            d->queue_head = keep_head;
            d->queue_tail = keep_tail;
        }
}

/* Concurrency feedback after a request ended. */
static void dest_feedback(struct qmgr_dest *d, int failed, const char *dsn,
                          const char *reason)
{
    if (!failed) {
        d->fail_streak = 0;
        if (d->window < d->transport->concurrency_limit)
            d->window++;
        return;
    }
    strbuf_set_str(&d->last_reason, reason);
    strbuf_set_str(&d->last_dsn, dsn);
    if (d->fail_streak++ == 0)
        d->streak_window = d->window;
    if (d->window > 1)
        d->window--;
    if (d->fail_streak >= d->streak_window && d->dead_until == 0) {
        d->dead_until = time(NULL) + qmgr_var.min_backoff;
        log_info("%s: destination %s is dead for %llds: %s", d->transport->name,
                 d->nexthop, qmgr_var.min_backoff, reason);
        /* Its waiting mail is deferred now rather than tried again. */
        dest_flush_dead(d);
    }
}

static void running_remove(struct qmgr_job *j)
{
    for (struct qmgr_job **pp = &running; *pp; pp = &(*pp)->next)
        if (*pp == j) {
            *pp = j->next;
            nrunning--;
            return;
        }
}

/* A running request is over: connection-level failure or not. */
static void job_end(struct qmgr_job *j, int conn_failed, const char *dsn,
                    const char *reason)
{
    struct qmgr_dest *d = j->dest;
    running_remove(j);
    d->active--;
    d->transport->active--;
    d->transport->blocked_until = 0;    /* an agent may be free now */
    dest_feedback(d, conn_failed, dsn, reason);
    job_finish(j, dsn, reason);
}

static void build_request(struct qmgr_job *j)
{
    struct qmgr_message *m = j->msg;
    ipc_record *r = ipc_record_new();
    strbuf tmp;
    strbuf_init(&tmp);
    queue_path(&tmp, "active", m->qid);
    ipc_record_add_str(r, "request", "deliver");
    ipc_record_add_str(r, "queue_id", m->qid);
    ipc_record_add_str(r, "queue_file", strbuf_str(&tmp));
    ipc_record_add_str(r, "nexthop", j->dest->nexthop);
    ipc_record_add_str(r, "sender", m->msg.sender);
    ipc_record_add_int(r, "arrival", m->msg.arrival_sec);
    /* for the agent's log line (delivery_log.h) */
    struct delivery_times times = {
        .arrival = (double) m->msg.arrival_sec + m->msg.arrival_usec / 1e6,
        .active = m->active_time,
        .request = j->start_time,
    };
    delivery_times_add(r, &times);
    const char *envid = queue_message_attr(&m->msg, "envid");
    const char *ret = queue_message_attr(&m->msg, "ret");
    if (envid)
        ipc_record_add_str(r, "envid", envid);
    if (ret)
        ipc_record_add_str(r, "ret", ret);
    for (int i = 0; i < j->nrcpt; i++) {
        const struct queue_rcpt *qr = &m->msg.rcpts[j->rcpt_idx[i]];
        if (qr->orcpt)
            ipc_record_add_str(r, "orcpt", qr->orcpt);
        if (qr->notify)
            ipc_record_add_str(r, "notify", qr->notify);
        ipc_record_add_int(r, "offset", (long long) qr->status_offset);
        ipc_record_add_str(r, "rcpt", qr->address);
    }
    strbuf_reset(&j->out);
    ipc_encode(r, &j->out);
    j->out_pos = 0;
    ipc_record_free(r);
    strbuf_release(&tmp);
}

/* Begin a request: 0 started, -1 failed (job already finished), 1 the
 * transport's socket backlog is full (job back at the head of its queue,
 * transport paused for a second or until one of its requests ends). */
static int job_start(struct qmgr_job *j)
{
    struct qmgr_dest *d = j->dest;
    if (j->msg->admin_action) {
        job_cancel(j);
        return -1;
    }
    j->start_time = qmgr_now();
    j->deadline = time(NULL) + (time_t) qmgr_var.ipc_timeout;
    j->next = running;
    running = j;
    nrunning++;
    d->active++;
    d->transport->active++;

    strbuf path;
    strbuf_init(&path);
    strbuf_printf(&path, "private/%s", d->transport->name);
    struct sockaddr_un sun;
    memset(&sun, 0, sizeof(sun));
    sun.sun_family = AF_UNIX;
    int fd = -1;
    int err = ENAMETOOLONG;
    if (path.len < sizeof(sun.sun_path)) {
        memcpy(sun.sun_path, path.data, path.len);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0) {
            err = errno;
        } else if (connect(fd, (struct sockaddr *) &sun, sizeof(sun)) < 0
                   && errno != EINPROGRESS) {
            err = errno;
            close(fd);
            fd = -1;
        }
    }
    strbuf_release(&path);
    /* A full backlog or no descriptors left is our limit, not the
     * transport's fault: wait for a running request to end.  So is a
     * master that just died (its agents' sockets went with it): the job
     * stays in active/ for the next qmgr instead of being deferred. */
    if (fd < 0 && (err == EAGAIN || err == EMFILE || err == ENFILE || err == ENOBUFS
                   || server_master_gone())) {
        running_remove(j);
        d->active--;
        d->transport->active--;
        j->start_time = 0;
        j->next = d->queue_head;
        d->queue_head = j;
        if (d->queue_tail == NULL)
            d->queue_tail = j;
        d->transport->blocked_until = time(NULL) + 1;
        log_debug("private/%s: %s, waiting", d->transport->name, strerror(err));
        return 1;
    }
    if (fd < 0) {
        strbuf why;
        strbuf_init(&why);
        strbuf_printf(&why, "mail transport unavailable: connect to private/%s: %s",
                      d->transport->name, strerror(err));
        job_end(j, 1, "4.3.0", strbuf_str(&why));
        strbuf_release(&why);
        return -1;
    }
    j->fd = fd;
    j->connect_time = qmgr_now();
    j->state = JOB_WRITING;
    build_request(j);
    return 0;
}

static int transport_saturated(const struct qmgr_transport *t, time_t now)
{
    return (t->maxproc > 0 && t->active >= t->maxproc) || t->blocked_until > now
        || nrunning >= job_fd_budget;
}

/* Round-robin over a transport's destinations with waiting jobs: each
 * gets one start per pass, so one busy destination cannot starve the
 * rest.  A saturated transport is left alone at once, its list intact. */
static void schedule_transport(struct qmgr_transport *t, time_t now)
{
    int progress = 1;
    while (progress && t->ready_head && !transport_saturated(t, now)) {
        progress = 0;
        struct qmgr_dest *d = t->ready_head;
        struct qmgr_dest *old_tail = t->ready_tail;
        t->ready_head = t->ready_tail = NULL;
        while (d) {
            if (transport_saturated(t, now)) {
                /* Unvisited ones go first next time, ahead of the visited. */
                old_tail->ready_next = t->ready_head;
                if (t->ready_head == NULL)
                    t->ready_tail = old_tail;
                t->ready_head = d;
                break;
            }
            struct qmgr_dest *next = d->ready_next;
            d->on_ready = 0;
            if (d->queue_head && qmgr_dest_is_dead(d, now)) {
                dest_flush_dead(d);
            } else if (d->queue_head && d->active < d->window) {
                struct qmgr_job *j = d->queue_head;
                d->queue_head = j->next;
                if (d->queue_head == NULL)
                    d->queue_tail = NULL;
                if (job_start(j) <= 0)
                    progress = 1;
            }
            if (d->queue_head)
                dest_make_ready(d);
            d = next;
        }
    }
}

void qmgr_schedule(void)
{
    time_t now = time(NULL);
    for (struct qmgr_transport *t = transports; t; t = t->next)
        schedule_transport(t, now);
}

int qmgr_sched_running(void)
{
    return nrunning;
}

int qmgr_sched_pollfds(struct pollfd *pfd, int max, struct qmgr_job **owners)
{
    int n = 0;
    for (struct qmgr_job *j = running; j && n < max; j = j->next) {
        pfd[n].fd = j->fd;
        pfd[n].events = j->state == JOB_WRITING ? POLLOUT : POLLIN;
        pfd[n].revents = 0;
        owners[n] = j;
        n++;
    }
    return n;
}

/* Handle one decoded result record.  0 continue, 1 done, -1 protocol error. */
static int job_record(struct qmgr_job *j, const ipc_record *r, strbuf *why)
{
    if (ipc_record_get(r, "done"))
        return 1;
    const char *rcpt = ipc_record_get_str(r, "rcpt");
    const char *status = ipc_record_get_str(r, "status");
    if (rcpt == NULL || status == NULL) {
        strbuf_set_str(why, "delivery agent protocol error: result without rcpt or status");
        return -1;
    }
    if (j->nresults >= j->nrcpt) {
        strbuf_set_str(why, "delivery agent protocol error: too many results");
        return -1;
    }
    int idx = j->rcpt_idx[j->nresults];
    if (strcmp(rcpt, j->msg->msg.rcpts[idx].address) != 0) {
        strbuf_printf(why, "delivery agent protocol error: result for <%s>, expected <%s>",
                      rcpt, j->msg->msg.rcpts[idx].address);
        return -1;
    }
    j->nresults++;
    const char *dsn = ipc_record_get_str(r, "dsn");
    const char *relay = ipc_record_get_str(r, "relay");
    const char *reason = ipc_record_get_str(r, "reason");
    /* A reply quoted from a remote server makes the DSN say "smtp;". */
    int diag_smtp = relay && *relay && strcmp(relay, "none") != 0
        && strcmp(relay, "local") != 0 && strcmp(j->dest->transport->name, "local") != 0;
    qmgr_message_agent_result(j->msg, idx, status, dsn, relay, reason, diag_smtp);
    return 0;
}

/* Did every recipient of a finished request fail without a relay? */
static int all_deferred_without_relay(struct qmgr_job *j)
{
    for (int i = 0; i < j->nresults; i++) {
        struct qmgr_rcpt *rc = &j->msg->rcpts[j->rcpt_idx[i]];
        if (rc->state != QR_DEFERRED)
            return 0;
        const char *relay = strbuf_str(&rc->relay);
        if (*relay && strcmp(relay, "none") != 0)
            return 0;
    }
    return j->nresults > 0;
}

void qmgr_sched_event(struct qmgr_job *j, short revents)
{
    if (j->state == JOB_WRITING) {
        if (revents & (POLLOUT | POLLERR | POLLHUP)) {
            ssize_t n = write(j->fd, j->out.data + j->out_pos, j->out.len - j->out_pos);
            if (n < 0 && (errno == EAGAIN || errno == EINTR))
                return;
            if (n <= 0) {
                strbuf why;
                strbuf_init(&why);
                strbuf_printf(&why, "mail transport unavailable: write to private/%s: %s",
                              j->dest->transport->name, strerror(n < 0 ? errno : EPIPE));
                job_end(j, 1, "4.3.0", strbuf_str(&why));
                strbuf_release(&why);
                return;
            }
            j->out_pos += (size_t) n;
            if (j->out_pos == j->out.len) {
                j->state = JOB_READING;
                strbuf_release(&j->out);
                strbuf_init(&j->out);
            }
        }
        return;
    }
    if (!(revents & (POLLIN | POLLERR | POLLHUP)))
        return;
    char buf[65536];
    ssize_t n = read(j->fd, buf, sizeof(buf));
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    strbuf why;
    strbuf_init(&why);
    if (n <= 0) {
        strbuf_printf(&why, "delivery agent %s: %s", j->dest->transport->name,
                      n < 0 ? strerror(errno) : "connection closed before the end of the results");
        job_end(j, j->nresults == 0, "4.3.0", strbuf_str(&why));
        strbuf_release(&why);
        return;
    }
    strbuf_append(&j->in, buf, (size_t) n);
    ipc_record *r = ipc_record_new();
    size_t used = 0;
    int outcome = 0;
    while (outcome == 0) {
        const char *err = NULL;
        long c = ipc_decode(j->in.data + used, j->in.len - used, r,
                            IPC_MAX_ATTR, IPC_MAX_RECORD, &err);
        if (c == 0)
            break;
        if (c < 0) {
            strbuf_printf(&why, "delivery agent protocol error: %s", err ? err : "malformed record");
            outcome = -1;
            break;
        }
        used += (size_t) c;
        outcome = job_record(j, r, &why);
    }
    ipc_record_free(r);
    if (outcome == 0) {
        if (used) {
            memmove(j->in.data, j->in.data + used, j->in.len - used);
            strbuf_truncate(&j->in, j->in.len - used);
        }
    } else if (outcome > 0) {
        int conn_failed = all_deferred_without_relay(j);
        const char *reason = "";
        const char *dsn = "4.3.0";
        if (conn_failed) {
            struct qmgr_rcpt *rc = &j->msg->rcpts[j->rcpt_idx[0]];
            reason = strbuf_str(&rc->reason);
            dsn = strbuf_str(&rc->dsn);
        }
        strbuf_set_str(&why, j->nresults < j->nrcpt
                       ? "delivery agent protocol error: missing results" : reason);
        job_end(j, conn_failed, dsn, strbuf_str(&why));
    } else {
        job_end(j, j->nresults == 0, "4.3.0", strbuf_str(&why));
    }
    strbuf_release(&why);
}

time_t qmgr_sched_timeouts(time_t now)
{
    time_t earliest = 0;
    for (struct qmgr_transport *t = transports; t; t = t->next)
        if (t->ready_head && t->blocked_until > now
            && (earliest == 0 || t->blocked_until < earliest))
            earliest = t->blocked_until;
    struct qmgr_job *j = running;
    while (j) {
        struct qmgr_job *next = j->next;
        if (j->deadline <= now) {
            job_end(j, 1, "4.4.2", "delivery agent did not answer in time");
        } else if (earliest == 0 || j->deadline < earliest) {
            earliest = j->deadline;
        }
        j = next;
    }
    return earliest;
}
