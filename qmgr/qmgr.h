/*
 * qmgr.h - the queue manager's shared state, private to qmgr/.
 *
 * Pieces:
 *   qmgr.c          main(), configuration, the poll() loop, the public/qmgr
 *                   listener (wakeup, flush, admin), the inotify watch on
 *                   incoming/, queue scans and the backlog that feeds the
 *                   bounded active queue.
 *   qmgr_message.c  one message in the active queue: load, resolve its
 *                   recipients into delivery jobs, record results, and end
 *                   the delivery round (bounce, defer with backoff, remove).
 *   qmgr_sched.c    transports and destinations, concurrency windows, dead
 *                   destinations, and the non-blocking delivery requests.
 *   qmgr_bounce.c   DSNs: composed (common/dsn.c) and submitted to cleanup
 *                   in a short-lived child process so the loop never
 *                   blocks on cleanup (which itself wakes qmgr up).
 *   qmgr_remove.c   a worker thread that moves finished queue files to
 *                   recycle/ (for cleanup to reuse) or unlinks them, so
 *                   the loop does not wait for the disk.
 *
 * Contract between them: a message stays in memory while it has jobs
 * (queued or running) or bounce children outstanding; qmgr_message_check()
 * is called whenever one of those counts drops and finishes the round when
 * both are zero.  All times are wall-clock seconds (double for log delays).
 */
#ifndef POSTERN_QMGR_H
#define POSTERN_QMGR_H

#include <poll.h>
#include <sys/types.h>
#include <time.h>

#include "queue.h"
#include "strbuf.h"

/* Per-recipient state within one delivery round. */
enum qmgr_rcpt_state {
    QR_DONE = 0,        /* done before this round, or marked done now */
    QR_TODO,            /* pending, not yet handed to a job */
    QR_QUEUED,          /* in a job (waiting or running) */
    QR_SENT,            /* delivered (marked done) */
    QR_DEFERRED,        /* try again later */
    QR_BOUNCED,         /* failed for good; DSN not yet queued */
};

struct qmgr_rcpt {
    int state;
    int notify;                 /* DSN_NOTIFY_* mask */
    int diag_smtp;              /* reason is a remote server's reply */
    strbuf dsn;
    strbuf relay;
    strbuf reason;
};

struct qmgr_message {
    char *qid;
    struct queue_message msg;   /* envelope, read at load (file not kept open) */
    struct qmgr_rcpt *rcpts;    /* parallel to msg.rcpts */
    int npending;               /* recipients pending at load */
    int jobs_outstanding;
    int bounces_outstanding;
    int round_phase;            /* 0 delivering, 1 notices started */
    int flushed;                /* defer_transports lifted */
    int admin_action;           /* QA_* from postern queue: no new deliveries,
                                 * applied at the end of the round */
    double active_time;         /* when it entered the active queue */
    struct qmgr_message *prev, *next;
};

struct qmgr_dest;

struct qmgr_transport {
    char *name;
    int maxproc;                /* 0 = unlimited */
    int active;
    int rcpt_limit;
    int concurrency_limit;
    int pipeline_limit;         /* requests written on one connection */
    time_t blocked_until;       /* its socket's backlog was full */
    struct qmgr_dest *ready_head, *ready_tail;  /* dests with waiting jobs */
    struct qmgr_transport *next;
};

struct qmgr_job;

struct qmgr_dest {
    char *key;                  /* "transport:queue name" (hash key) */
    char *nexthop;
    struct qmgr_transport *transport;
    int active;
    int window;                 /* concurrency window */
    int fail_streak;            /* consecutive connection-level failures */
    int streak_window;          /* window when the streak began */
    time_t dead_until;
    strbuf last_reason;
    strbuf last_dsn;
    struct qmgr_job *queue_head, *queue_tail;   /* waiting jobs */
    struct qmgr_job *filling;   /* job being filled by message load */
    struct qmgr_dest *hash_next;
    struct qmgr_dest *ready_next;   /* transport's list of dests with waiting jobs */
    int on_ready;
};

/* One delivery request: some recipients of one message for one
 * destination.  Waiting on its destination's queue, then written on a
 * connection (struct qmgr_conn) and answered there. */
struct qmgr_job {
    struct qmgr_message *msg;
    struct qmgr_dest *dest;
    int *rcpt_idx;
    int nrcpt;
    int nresults;
    double start_time;          /* when its request was written (0: waiting) */
    double connect_time;
    struct qmgr_job *next;      /* dest queue, or the connection's jobs */
};

/* A connection to a delivery agent carrying one or more requests (up to
 * the transport's pipeline_limit), all to one destination, answered in
 * order.  It counts once against the destination's window and the
 * transport's maxproc: the agent serves its requests one after another. */
struct qmgr_conn {
    struct qmgr_dest *dest;
    int fd;
    strbuf out;                 /* the requests, written up front */
    size_t out_pos;
    strbuf in;                  /* replies read but not yet decoded */
    time_t deadline;            /* for the reply to the current request */
    struct qmgr_job *jobs, *jobs_tail;  /* written; the first is being answered */
    int failed;                 /* a request ended as a connection-level failure */
    strbuf fail_dsn, fail_reason;
    struct qmgr_conn *next;     /* running list */
};

/* ---- qmgr.c: a set of queue ids (hash table with chaining) ---- */
#define QID_SET_SIZE 8192
struct qid_node { char *qid; struct qid_node *next; };
struct qid_set { struct qid_node *bucket[QID_SET_SIZE]; };
int qid_set_has(const struct qid_set *set, const char *qid);
void qid_set_add(struct qid_set *set, const char *qid);
void qid_set_remove(struct qid_set *set, const char *qid);

/* ---- qmgr_remove.c: finished queue files unlinked by a worker thread ---- */
void qmgr_remove_start(long long reuse_limit); /* queue_file_reuse_limit */
void qmgr_remove(const char *qid, long long size); /* active/QID and its defer log */
int qmgr_remove_pollfd(void);                   /* -1 without the worker */
void qmgr_remove_collect(void);                 /* log what was removed */
int qmgr_remove_pending(const char *qid);

/* ---- qmgr.c: process-wide settings and helpers ---- */
struct qmgr_settings {
    const char *myhostname;
    long long active_limit;
    long long rcpt_limit;
    long long queue_run_delay;
    long long min_backoff;
    long long drain_limit;      /* qmgr_drain_time_limit: SIGTERM waits this long */
    long long max_backoff;
    long long max_lifetime;
    long long delay_warning;
    long long ipc_timeout;
    long long bounce_size_limit;
    int initial_concurrency;
    long long reuse_limit;      /* queue_file_reuse_limit */
    int watch_incoming;         /* qmgr_watch_incoming: inotify, no wakeups from cleanup */
    const char *bounce_notice_recipient;    /* 2bounce_notice_recipient */
    char *double_bounce_sender;             /* double_bounce_sender@myhostname */
};
extern struct qmgr_settings qmgr_var;
extern int qmgr_active_messages;
extern long long qmgr_active_rcpts;

double qmgr_now(void);
/* Look at incoming/ again on the next turn (a requeued message). */
void qmgr_rescan_incoming(void);
/* After queue_rename(QID, FROM, TO): fsync both directories once, with
 * every other move of this loop turn, by qmgr_sync_dirs() (called before
 * any delivery is started and at the end of every turn). */
void qmgr_sync_later(const char *from_queue, const char *to_queue, const char *qid);
void qmgr_sync_dirs(void);

/* ---- qmgr_message.c ---- */
/* Load active/QID into memory and start its round.  flushed: loaded by a
 * flush (defer_transports lifted).  0 ok; -1 when it could not be loaded
 * (moved to corrupt/ or gone). */
int qmgr_message_load(const char *qid, int flushed);
/* qmgr decided the outcome for recipient idx of msg (no agent, or the
 * agent failed): recorded and logged with delays from start/conn/end. */
void qmgr_message_result(struct qmgr_message *msg, int idx, const char *status,
                         const char *dsn, const char *relay, const char *reason,
                         int diag_smtp, double start, double conn, double end);
/* A delivery agent reported the outcome (and logged it itself). */
void qmgr_message_agent_result(struct qmgr_message *msg, int idx, const char *status,
                               const char *dsn, const char *relay, const char *reason,
                               int diag_smtp);
/* Finish the round when nothing is outstanding. */
void qmgr_message_check(struct qmgr_message *msg);
/* A bounce child finished. ok: its notice was queued (new_qid). */
void qmgr_message_bounce_done(struct qmgr_message *msg, int kind, const int *idx,
                              int n, int ok, const char *new_qid, const char *why);
int qmgr_message_known(const char *qid);
/* postern queue delete|hold|requeue of a message in the active queue:
 * 1 when it is in memory (its waiting deliveries are cancelled, running
 * ones finish, and the action is applied when the round ends), 0 when
 * qmgr does not hold it. */
int qmgr_message_admin(const char *qid, int action);

/* ---- qmgr_sched.c ---- */
void qmgr_sched_init(void);
struct qmgr_transport *qmgr_transport_find(const char *name);  /* NULL: not in master.cf */
struct qmgr_dest *qmgr_dest_get(struct qmgr_transport *tp, const char *key,
                                const char *nexthop);
int qmgr_dest_is_dead(struct qmgr_dest *d, time_t now);
/* Add recipient idx of msg to dest's job for that message (new job when
 * full); the job is queued by qmgr_sched_release(). */
void qmgr_dest_add_rcpt(struct qmgr_dest *d, struct qmgr_message *msg, int idx);
/* End of a message load: hand the partly-filled jobs to their queues. */
void qmgr_sched_release(void);
/* Start whatever the limits allow. */
void qmgr_schedule(void);
/* Drop the waiting jobs of messages with an admin action. */
void qmgr_sched_cancel_doomed(void);
/* Forget dead marks (flush). */
void qmgr_sched_revive_all(void);
/* Free destinations with nothing running, waiting or remembered. */
void qmgr_sched_sweep(time_t now);
/* poll() support for running connections. */
int qmgr_sched_pollfds(struct pollfd *pfd, int max, struct qmgr_conn **owners);
void qmgr_sched_event(struct qmgr_conn *conn, short revents);
/* Time out overdue connections; earliest time the scheduler needs the loop to
 * wake up (a job deadline, or a blocked transport's retry), 0 = none. */
time_t qmgr_sched_timeouts(time_t now);
/* Delivery requests written to agents and not yet finished (0: no
 * connection open either). */
int qmgr_sched_running(void);

/* qmgr.c: in a child forked by qmgr, before anything else: drop the queue
 * lock and restore default SIGTERM handling. */
void qmgr_forked_child(void);

/* ---- qmgr_bounce.c ---- */
enum qmgr_notice { NOTICE_FAILURE, NOTICE_DELAY, NOTICE_SUCCESS };
/* Start a child that composes and queues a notice about recipients idx[]
 * of msg, to `to` (sender of the notice: `from`, "" = null).  Returns 0
 * when started (msg->bounces_outstanding was raised), -1 otherwise. */
int qmgr_bounce_start(struct qmgr_message *msg, int kind, const int *idx, int n,
                      const char *to, const char *from);
int qmgr_bounce_pollfds(struct pollfd *pfd, int max, void **owners);
void qmgr_bounce_event(void *child, short revents);
int qmgr_bounce_running(void);

#endif
