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
 *
 * Pipelining: when a connection is opened for a destination's first
 * waiting job, up to TRANSPORT_destination_pipeline_limit - 1 more of its
 * waiting jobs are written on the same connection, up front, so the agent
 * goes from one to the next without waiting for qmgr (on a busy machine
 * every hand-off waits for a CPU).  The agent answers them strictly in
 * order; each job is finished when its {done=1} is read.  The connection
 * counts once against the destination's window and the transport's
 * maxproc (its deliveries are sequential), and gives concurrency feedback
 * once, when it ends.  If it breaks (agent died, timeout, protocol error)
 * the job being answered and every job behind it are deferred by qmgr
 * with the same reason, as a single failed request always was.
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
static struct qmgr_conn *running;      /* open agent connections */
static int nrunning;                    /* ... how many */
static int njobs_running;               /* requests written, not finished */
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
    /* Only agents that serve requests until EOF may be pipelined to, so
     * there is no default_ parameter: a transport without its own
     * declared NAME_destination_pipeline_limit (smtp) gets one request
     * per connection. */
    t->pipeline_limit = (int) transport_param(name, "destination_pipeline_limit", 1);
    if (t->pipeline_limit < 1)
        t->pipeline_limit = 1;
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
    msg->jobs_outstanding++;
    return j;
}

static void job_free(struct qmgr_job *j)
{
    xfree(j->rcpt_idx);
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

static void running_remove(struct qmgr_conn *c)
{
    for (struct qmgr_conn **pp = &running; *pp; pp = &(*pp)->next)
        if (*pp == c) {
            *pp = c->next;
            nrunning--;
            return;
        }
}

/* Take the first job off a connection (it was answered or failed). */
static struct qmgr_job *conn_pop(struct qmgr_conn *c)
{
    struct qmgr_job *j = c->jobs;
    c->jobs = j->next;
    if (c->jobs == NULL)
        c->jobs_tail = NULL;
    j->next = NULL;
    njobs_running--;
    return j;
}

/* A connection is over.  conn_failed: it ended in a connection-level
 * failure (or one of its requests did, c->failed); dsn/reason: why the
 * jobs still on it get no (more) results: each is deferred by qmgr, as
 * a single failed request is.  Concurrency feedback once, for the
 * connection. */
static void conn_end(struct qmgr_conn *c, int conn_failed, const char *dsn,
                     const char *reason)
{
    struct qmgr_dest *d = c->dest;
    running_remove(c);
    if (c->fd >= 0)
        close(c->fd);
    d->active--;
    d->transport->active--;
    d->transport->blocked_until = 0;    /* an agent may be free now */
    if (conn_failed)
        dest_feedback(d, 1, dsn, reason);
    else if (c->failed)
        dest_feedback(d, 1, strbuf_str(&c->fail_dsn), strbuf_str(&c->fail_reason));
    else
        dest_feedback(d, 0, dsn, reason);
    while (c->jobs)
        job_finish(conn_pop(c), dsn, reason);
    strbuf_release(&c->out);
    strbuf_release(&c->in);
    strbuf_release(&c->fail_dsn);
    strbuf_release(&c->fail_reason);
    xfree(c);
}

/* Append j's request record to out. */
static void build_request(struct qmgr_job *j, strbuf *out)
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
    ipc_encode(r, out);
    ipc_record_free(r);
    strbuf_release(&tmp);
}

/* Begin a connection for job j (already off its destination's queue),
 * with up to pipeline_limit - 1 more of the destination's waiting jobs
 * behind it.  0 started, -1 failed (job already finished), 1 the
 * transport's socket backlog is full (job back at the head of its queue,
 * transport paused for a second or until one of its connections ends). */
static int job_start(struct qmgr_job *j)
{
    struct qmgr_dest *d = j->dest;
    if (j->msg->admin_action) {
        job_cancel(j);
        return -1;
    }
    struct qmgr_conn *c = xcalloc(1, sizeof(*c));
    c->dest = d;
    c->fd = -1;
    strbuf_init(&c->out);
    strbuf_init(&c->in);
    strbuf_init(&c->fail_dsn);
    strbuf_init(&c->fail_reason);
    j->next = NULL;
    c->jobs = c->jobs_tail = j;
    njobs_running++;
    j->start_time = qmgr_now();
    c->deadline = time(NULL) + (time_t) qmgr_var.ipc_timeout;
    c->next = running;
    running = c;
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
        conn_pop(c);
        running_remove(c);
        d->active--;
        d->transport->active--;
        strbuf_release(&c->out);
        strbuf_release(&c->in);
        strbuf_release(&c->fail_dsn);
        strbuf_release(&c->fail_reason);
        xfree(c);
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
        conn_end(c, 1, "4.3.0", strbuf_str(&why));
        strbuf_release(&why);
        return -1;
    }
    c->fd = fd;
    j->connect_time = qmgr_now();
    build_request(j, &c->out);
    /* The pipeline: more waiting jobs of this destination, in queue
     * order, written behind the first.  A job of a message with an
     * admin action pending is cancelled here, as it would be at its own
     * start. */
    int njobs = 1;
    while (njobs < d->transport->pipeline_limit && d->queue_head) {
        struct qmgr_job *k = d->queue_head;
        d->queue_head = k->next;
        if (d->queue_head == NULL)
            d->queue_tail = NULL;
        if (k->msg->admin_action) {
            job_cancel(k);
            continue;
        }
        k->next = NULL;
        c->jobs_tail->next = k;
        c->jobs_tail = k;
        njobs_running++;
        njobs++;
        k->start_time = j->start_time;
        k->connect_time = j->connect_time;
        build_request(k, &c->out);
    }
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
    return njobs_running;
}

int qmgr_sched_pollfds(struct pollfd *pfd, int max, struct qmgr_conn **owners)
{
    int n = 0;
    for (struct qmgr_conn *c = running; c && n < max; c = c->next) {
        pfd[n].fd = c->fd;
        /* Replies are read while requests are still being written: a
         * long pipeline must not wait on a full socket in both directions. */
        pfd[n].events = POLLIN | (c->out_pos < c->out.len ? POLLOUT : 0);
        pfd[n].revents = 0;
        owners[n] = c;
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

/* Write more of the requests.  0 fine (maybe not all written yet), -1
 * the connection ended (c is freed). */
static int conn_write(struct qmgr_conn *c)
{
    ssize_t n = write(c->fd, c->out.data + c->out_pos, c->out.len - c->out_pos);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return 0;
    if (n <= 0) {
        strbuf why;
        strbuf_init(&why);
        strbuf_printf(&why, "mail transport unavailable: write to private/%s: %s",
                      c->dest->transport->name, strerror(n < 0 ? errno : EPIPE));
        conn_end(c, 1, "4.3.0", strbuf_str(&why));
        strbuf_release(&why);
        return -1;
    }
    c->out_pos += (size_t) n;
    if (c->out_pos == c->out.len) {
        strbuf_release(&c->out);
        strbuf_init(&c->out);
        c->out_pos = 0;
        /* No more requests come on this connection: the agent reads EOF
         * right after its last answer instead of waiting for our close
         * (it stays busy, and the master forks another, meanwhile). */
        shutdown(c->fd, SHUT_WR);
    }
    return 0;
}

/* The first job of c got its {done=1}: finish it.  1 the connection is
 * over (c is freed), 0 the next job is being answered, -2 done came
 * before every result (why is set; c still open). */
static int conn_job_done(struct qmgr_conn *c, strbuf *why)
{
    struct qmgr_job *j = c->jobs;
    if (j->nresults < j->nrcpt) {
        /* The agent and qmgr no longer agree on which request is
         * answered: nothing more on this connection can be matched. */
        strbuf_set_str(why, "delivery agent protocol error: missing results");
        return -2;
    }
    if (all_deferred_without_relay(j) && !c->failed) {
        struct qmgr_rcpt *rc = &j->msg->rcpts[j->rcpt_idx[0]];
        c->failed = 1;
        strbuf_set_str(&c->fail_dsn, strbuf_str(&rc->dsn));
        strbuf_set_str(&c->fail_reason, strbuf_str(&rc->reason));
    }
    if (c->jobs->next == NULL) {
        conn_end(c, 0, "4.3.0", "");
        return 1;
    }
    job_finish(conn_pop(c), "4.3.0", "");
    /* The agent now works on the next request: its own time limit. */
    c->deadline = time(NULL) + (time_t) qmgr_var.ipc_timeout;
    return 0;
}

void qmgr_sched_event(struct qmgr_conn *c, short revents)
{
    if (c->out_pos < c->out.len && (revents & (POLLOUT | POLLERR | POLLHUP))) {
        if (conn_write(c) < 0)
            return;
    }
    if (!(revents & (POLLIN | POLLERR | POLLHUP)))
        return;
    char buf[65536];
    ssize_t n = read(c->fd, buf, sizeof(buf));
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    strbuf why;
    strbuf_init(&why);
    if (n <= 0) {
        strbuf_printf(&why, "delivery agent %s: %s", c->dest->transport->name,
                      n < 0 ? strerror(errno) : "connection closed before the end of the results");
        conn_end(c, c->jobs->nresults == 0, "4.3.0", strbuf_str(&why));
        strbuf_release(&why);
        return;
    }
    strbuf_append(&c->in, buf, (size_t) n);
    ipc_record *r = ipc_record_new();
    size_t used = 0;
    int outcome = 0;            /* 0 more to read, 1 connection over, <0 error */
    while (outcome == 0) {
        const char *err = NULL;
        long k = ipc_decode(c->in.data + used, c->in.len - used, r,
                            IPC_MAX_ATTR, IPC_MAX_RECORD, &err);
        if (k == 0)
            break;
        if (k < 0) {
            strbuf_printf(&why, "delivery agent protocol error: %s", err ? err : "malformed record");
            outcome = -1;
            break;
        }
        used += (size_t) k;
        outcome = job_record(c->jobs, r, &why);
        if (outcome > 0)
            outcome = conn_job_done(c, &why);
    }
    ipc_record_free(r);
    if (outcome == 0) {
        if (used) {
            memmove(c->in.data, c->in.data + used, c->in.len - used);
            strbuf_truncate(&c->in, c->in.len - used);
        }
    } else if (outcome == -2) {
        /* {done=1} too early: a connection-level failure only when what
         * did come says so, as for a single request. */
        struct qmgr_job *j = c->jobs;
        int conn_failed = all_deferred_without_relay(j);
        const char *dsn = conn_failed ? strbuf_str(&j->msg->rcpts[j->rcpt_idx[0]].dsn) : "4.3.0";
        conn_end(c, conn_failed, dsn, strbuf_str(&why));
    } else if (outcome < 0) {
        conn_end(c, c->jobs->nresults == 0, "4.3.0", strbuf_str(&why));
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
    struct qmgr_conn *c = running;
    while (c) {
        struct qmgr_conn *next = c->next;
        if (c->deadline <= now) {
            conn_end(c, 1, "4.4.2", "delivery agent did not answer in time");
        } else if (earliest == 0 || c->deadline < earliest) {
            earliest = c->deadline;
        }
        c = next;
    }
    return earliest;
}
