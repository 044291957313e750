/*
 * qmgr_message.c - one message in the active queue, from load to the end
 * of its delivery round.
 *
 * Load: open active/QID read-write, parse the envelope (a malformed file
 * goes to corrupt/), log "from=..., size=..., nrcpt=... (queue active)",
 * and resolve every pending recipient (common/resolve.c): error: bounces,
 * discard: is done at once, defer_transports and transports missing from
 * master.cf defer, dead destinations defer with their last reason, and the
 * rest is grouped into delivery jobs per destination (qmgr_sched.c).
 *
 * Results: sent -> queue_file_mark_done() first (not fsynced for the last
 * pending recipient: the removal follows), then the log line -- written
 * by the delivery agent for the results it reports, by qmgr only for
 * outcomes it decides itself (common/delivery_log.h);
 * deferred -> a line in defer/QID; bounced -> kept pending until its DSN
 * is queued.  End of round (no job left): recipients deferred past
 * maximal_queue_lifetime bounce; failure, success and delay notices go out
 * (qmgr_bounce.c); recipients whose failure notice was queued (or needs
 * none) are marked done.  Then the message is removed when nothing is
 * pending, else moved to deferred/ with mtime = next attempt (backoff.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include "qmgr.h"
#include "backoff.h"
#include "queue_admin.h"
#include "config.h"
#include "defer_log.h"
#include "delivery_log.h"
#include "dsn.h"
#include "log.h"
#include "maps.h"
#include "mem.h"
#include "resolve.h"

static struct qmgr_message *messages;   /* the active queue in memory */
static struct qid_set active_ids;       /* their queue ids, for scans */
static struct resolve_config resolver;
static maps *transport_maps;
static int transport_maps_broken;
static char **defer_transport_list;
static int ndefer_transports;

static int transport_lookup(void *ctx, const char *key, int is_address, strbuf *out)
{
    if (transport_maps_broken)
        return -1;
    if (is_address)
        /* Transport tables are not searched by bare user name (Postfix). */
        return maps_lookup_addr_ex(transport_maps, key, config_str("recipient_delimiter"),
                                   MAPS_ADDR_NO_USER, out);
    return maps_lookup(transport_maps, key, out);
}

static void resolver_init(void)
{
    static int done;
    if (done)
        return;
    done = 1;
    resolver.myhostname = qmgr_var.myhostname;
    resolver.mydestination = config_str("mydestination");
    resolver.relayhost = config_str("relayhost");
    const char *tm = config_str("transport_maps");
    if (tm && *tm) {
        transport_maps = maps_open_param("transport_maps", log_error);
        if (transport_maps == NULL)
            transport_maps_broken = 1;  /* defer everything rather than
                                         * deliver to the wrong place */
        resolver.transport_lookup = transport_lookup;
    }
    defer_transport_list = config_list(config_str("defer_transports"), &ndefer_transports);
}

int qmgr_message_known(const char *qid)
{
    return qid_set_has(&active_ids, qid);
}

int qmgr_message_admin(const char *qid, int action)
{
    for (struct qmgr_message *m = messages; m; m = m->next)
        if (strcmp(m->qid, qid) == 0) {
            /* delete outranks hold outranks requeue */
            if (m->admin_action == QA_NONE || action == QA_DELETE
                || (action == QA_HOLD && m->admin_action == QA_REQUEUE))
                m->admin_action = action;
            return 1;
        }
    return 0;
}

static int transport_deferred(const char *name)
{
    for (int i = 0; i < ndefer_transports; i++)
        if (strcmp(defer_transport_list[i], name) == 0)
            return 1;
    return 0;
}

static void message_free(struct qmgr_message *m)
{
    if (m->prev)
        m->prev->next = m->next;
    else
        messages = m->next;
    if (m->next)
        m->next->prev = m->prev;
    qid_set_remove(&active_ids, m->qid);
    qmgr_active_messages--;
    qmgr_active_rcpts -= m->npending;
    for (int i = 0; i < m->msg.nrcpt; i++) {
        strbuf_release(&m->rcpts[i].dsn);
        strbuf_release(&m->rcpts[i].relay);
        strbuf_release(&m->rcpts[i].reason);
    }
    xfree(m->rcpts);
    queue_message_free(&m->msg);
    xfree(m->qid);
    xfree(m);
}

/* The log line for an outcome qmgr decided itself (delivery_log.h). */
static void log_outcome(struct qmgr_message *m, int idx, const char *relay,
                        const char *dsn, const char *status, const char *reason,
                        double start, double conn, double end)
{
    const struct queue_rcpt *qr = &m->msg.rcpts[idx];
    struct delivery_times t = {
        .arrival = (double) m->msg.arrival_sec + m->msg.arrival_usec / 1e6,
        .active = m->active_time,
        .request = start,
        .session = conn,
    };
    delivery_log(m->qid, qr->address, qr->orcpt, relay, &t, end, dsn, status, reason);
}

static void defer_log_path(strbuf *out, const char *qid)
{
    queue_path(out, "defer", qid);
}

/* 1 when no recipient but idx is still pending: the message is removed
 * as soon as its round ends. */
static int last_pending(const struct qmgr_message *m, int idx)
{
    for (int i = 0; i < m->msg.nrcpt; i++)
        if (i != idx && m->msg.rcpts[i].status == RCPT_PENDING)
            return 0;
    return 1;
}

/* The file is opened per update rather than kept open: the active queue
 * may hold far more messages than the process may have open files.
 * The mark of a message's last pending recipient is not fsynced: the
 * unlink that follows is the record, and until it is durable a crash
 * can only repeat that delivery (DESIGN.md's "at worst delivered twice"),
 * never lose mail.  Every other mark is fsynced, so the recipients still
 * to do are never confused with those done.  This is one fsync less per
 * message in qmgr's single loop, which every delivery waits for. */
static void mark_done(struct qmgr_message *m, int idx)
{
    strbuf path;
    strbuf_init(&path);
    queue_path(&path, "active", m->qid);
    int fd = open(strbuf_str(&path), O_RDWR | O_CLOEXEC);
    off_t off = m->msg.rcpts[idx].status_offset;
    if (fd < 0 || (last_pending(m, idx) ? queue_file_mark_done_nosync(fd, off)
                   : queue_file_mark_done(fd, off)) < 0)
        log_warning("%s: cannot mark <%s> done: %s (it may be delivered again)",
                    m->qid, m->msg.rcpts[idx].address, strerror(errno));
    if (fd >= 0)
        close(fd);
    strbuf_release(&path);
    m->msg.rcpts[idx].status = RCPT_DONE;
}

/* A status code must look like D.D.D; else use the fallback. */
static const char *dsn_or(const char *dsn, const char *fallback)
{
    if (dsn && dsn[0] >= '2' && dsn[0] <= '5' && dsn[1] == '.' && strlen(dsn) <= 16)
        return dsn;
    return fallback;
}

/* Record one outcome; log_line 0 when the agent that decided it has
 * logged it (an unknown status from an agent is qmgr's deferral and is
 * logged here anyway). */
static void record_result(struct qmgr_message *m, int idx, const char *status,
                          const char *dsn, const char *relay, const char *reason,
                          int diag_smtp, int log_line, double start, double conn,
                          double end)
{
    struct qmgr_rcpt *rc = &m->rcpts[idx];
    if (reason == NULL)
        reason = "";
    if (relay == NULL || *relay == '\0')
        relay = "none";
    strbuf_set_str(&rc->relay, relay);
    strbuf_set_str(&rc->reason, reason);
    rc->diag_smtp = diag_smtp;
    if (status && strcmp(status, "sent") == 0) {
        /* Recorded first; durable unless the removal follows (mark_done). */
        mark_done(m, idx);
        rc->state = QR_SENT;
        strbuf_set_str(&rc->dsn, dsn_or(dsn, "2.0.0"));
        if (log_line)
            log_outcome(m, idx, relay, strbuf_str(&rc->dsn), "sent", reason, start, conn, end);
    } else if (status && strcmp(status, "bounced") == 0) {
        rc->state = QR_BOUNCED;
        strbuf_set_str(&rc->dsn, dsn_or(dsn, "5.0.0"));
        if (log_line)
            log_outcome(m, idx, relay, strbuf_str(&rc->dsn), "bounced", reason, start, conn,
                        end);
    } else {
        if (status == NULL || strcmp(status, "deferred") != 0) {
            strbuf_printf(&rc->reason, "unknown delivery status \"%s\" from agent: %s",
                          status ? status : "", reason);
            reason = strbuf_str(&rc->reason);
            log_line = 1;
        }
        rc->state = QR_DEFERRED;
        strbuf_set_str(&rc->dsn, dsn_or(dsn, "4.0.0"));
        strbuf path;
        strbuf_init(&path);
        defer_log_path(&path, m->qid);
        if (defer_log_append(strbuf_str(&path), m->msg.rcpts[idx].address,
                             strbuf_str(&rc->dsn), relay, reason) < 0)
            log_warning("%s: cannot append to %s: %s", m->qid, strbuf_str(&path),
                        strerror(errno));
        strbuf_release(&path);
        if (log_line)
            log_outcome(m, idx, relay, strbuf_str(&rc->dsn), "deferred", reason, start, conn,
                        end);
    }
}

void qmgr_message_result(struct qmgr_message *m, int idx, const char *status,
                         const char *dsn, const char *relay, const char *reason,
                         int diag_smtp, double start, double conn, double end)
{
    record_result(m, idx, status, dsn, relay, reason, diag_smtp, 1, start, conn, end);
}

void qmgr_message_agent_result(struct qmgr_message *m, int idx, const char *status,
                               const char *dsn, const char *relay, const char *reason,
                               int diag_smtp)
{
    double now = qmgr_now();
    record_result(m, idx, status, dsn, relay, reason, diag_smtp, 0, now, now, now);
}

/* An outcome decided inside qmgr, without a delivery agent. */
static void local_result(struct qmgr_message *m, int idx, const char *status,
                         const char *dsn, const char *reason)
{
    double now = qmgr_now();
    qmgr_message_result(m, idx, status, dsn, "none", reason, 0, now, now, now);
}

/* Split "5.1.1 text" into code and text; code defaults to def. */
static void split_error_text(const char *nexthop, const char *def, strbuf *dsn, strbuf *text)
{
    const char *p = nexthop;
    int dots = 0;
    size_t n = 0;
    while (p[n] && p[n] != ' ') {
        if (p[n] == '.')
            dots++;
        else if (p[n] < '0' || p[n] > '9')
            break;
        n++;
    }
    if (dots == 2 && n >= 5 && (p[n] == ' ' || p[n] == '\0') && (p[0] == '4' || p[0] == '5')) {
        strbuf_set(dsn, p, n);
        p += n;
        while (*p == ' ')
            p++;
    } else {
        strbuf_set_str(dsn, def);
    }
    strbuf_set_str(text, *p ? p : "mail for this address is refused");
}

static void resolve_one(struct qmgr_message *m, int idx, struct resolve_result *res,
                        time_t now)
{
    const char *addr = m->msg.rcpts[idx].address;
    if (resolve_recipient(&resolver, addr, res) != RESOLVE_OK) {
        local_result(m, idx, "deferred", "4.3.0", strbuf_str(&res->nexthop));
        return;
    }
    const char *transport = strbuf_str(&res->transport);
    const char *nexthop = strbuf_str(&res->nexthop);
    if (strcmp(transport, "error") == 0) {
        strbuf dsn, text;
        strbuf_init(&dsn);
        strbuf_init(&text);
        split_error_text(nexthop, "5.0.0", &dsn, &text);
        local_result(m, idx, strbuf_str(&dsn)[0] == '4' ? "deferred" : "bounced",
                     strbuf_str(&dsn), strbuf_str(&text));
        strbuf_release(&dsn);
        strbuf_release(&text);
        return;
    }
    if (strcmp(transport, "discard") == 0) {
        strbuf why;
        strbuf_init(&why);
        if (*nexthop)
            strbuf_printf(&why, "discarded: %s", nexthop);
        else
            strbuf_set_str(&why, "discarded");
        local_result(m, idx, "sent", "2.0.0", strbuf_str(&why));
        strbuf_release(&why);
        return;
    }
    if (!m->flushed && transport_deferred(transport)) {
        local_result(m, idx, "deferred", "4.3.2", "deferred transport");
        return;
    }
    struct qmgr_transport *tp = qmgr_transport_find(transport);
    if (tp == NULL) {
        local_result(m, idx, "deferred", "4.3.0", "mail transport unavailable");
        return;
    }
    /* One recipient per request: queue per recipient, as Postfix does. */
    const char *key = nexthop;
    strbuf lower;
    strbuf_init(&lower);
    if (tp->rcpt_limit == 1) {
        strbuf_set_str(&lower, addr);
        for (size_t i = 0; i < lower.len; i++)
            if (lower.data[i] >= 'A' && lower.data[i] <= 'Z')
                lower.data[i] = (char) (lower.data[i] + 32);
        key = strbuf_str(&lower);
    }
    struct qmgr_dest *d = qmgr_dest_get(tp, key, nexthop);
    strbuf_release(&lower);
    if (qmgr_dest_is_dead(d, now)) {
        strbuf why;
        strbuf_init(&why);
        strbuf_printf(&why, "delivery temporarily suspended: %s", strbuf_str(&d->last_reason));
        local_result(m, idx, "deferred", dsn_or(strbuf_str(&d->last_dsn), "4.4.1"),
                     strbuf_str(&why));
        strbuf_release(&why);
        return;
    }
    qmgr_dest_add_rcpt(d, m, idx);
}

int qmgr_message_load(const char *qid, int flushed)
{
    resolver_init();
    strbuf path, err;
    strbuf_init(&path);
    strbuf_init(&err);
    queue_path(&path, "active", qid);
    int fd = open(strbuf_str(&path), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno != ENOENT) {
            /* Out of files or the like: try again with the next deferred
             * scan rather than leave it in active/ until a restart. */
            log_warning("%s: open %s: %s", qid, strbuf_str(&path), strerror(errno));
            if (queue_move(qid, "active", "deferred") < 0)
                log_warning("%s: cannot move to deferred/: %s", qid, strerror(errno));
        }
        strbuf_release(&path);
        strbuf_release(&err);
        return -1;
    }
    struct qmgr_message *m = xcalloc(1, sizeof(*m));
    int loaded = queue_message_load(fd, qid, &m->msg, &err);
    close(fd);
    if (loaded < 0) {
        log_warning("%s: corrupt queue file, moved to corrupt/: %s", qid, strbuf_str(&err));
        xfree(m);
        if (queue_move(qid, "active", "corrupt") < 0)
            log_warning("%s: cannot move to corrupt/: %s", qid, strerror(errno));
        strbuf_release(&path);
        strbuf_release(&err);
        return -1;
    }
    strbuf_release(&path);
    strbuf_release(&err);
    m->qid = xstrdup(qid);
    m->flushed = flushed;
    m->active_time = qmgr_now();
    m->rcpts = xcalloc((size_t) (m->msg.nrcpt ? m->msg.nrcpt : 1), sizeof(*m->rcpts));
    for (int i = 0; i < m->msg.nrcpt; i++) {
        struct qmgr_rcpt *rc = &m->rcpts[i];
        strbuf_init(&rc->dsn);
        strbuf_init(&rc->relay);
        strbuf_init(&rc->reason);
        rc->notify = dsn_notify_parse(m->msg.rcpts[i].notify);
        if (m->msg.rcpts[i].status == RCPT_PENDING) {
            rc->state = QR_TODO;
            m->npending++;
        } else {
            rc->state = QR_DONE;
        }
    }
    m->next = messages;
    if (messages)
        messages->prev = m;
    messages = m;
    qid_set_add(&active_ids, m->qid);
    qmgr_active_messages++;
    qmgr_active_rcpts += m->npending;
    log_info("%s: from=<%s>, size=%lld, nrcpt=%d (queue active)", m->qid,
             m->msg.sender, m->msg.size, m->npending);

    struct resolve_result res;
    resolve_result_init(&res);
    time_t now = time(NULL);
    for (int i = 0; i < m->msg.nrcpt; i++)
        if (m->rcpts[i].state == QR_TODO)
            resolve_one(m, i, &res, now);
    resolve_result_release(&res);
    qmgr_sched_release();
    qmgr_message_check(m);
    return 0;
}

/* ---- end of round ---------------------------------------------------- */

static int is_double_bounce_sender(const char *sender)
{
    return strcasecmp(sender, qmgr_var.double_bounce_sender) == 0;
}

/* Collect recipient indexes in state `state` whose notify has `bit`. */
static int collect(struct qmgr_message *m, int state, int bit, int *out)
{
    int n = 0;
    for (int i = 0; i < m->msg.nrcpt; i++)
        if (m->rcpts[i].state == state && (m->rcpts[i].notify & bit))
            out[n++] = i;
    return n;
}

struct warning_scan { int warned; };

static void saw_entry(const struct defer_entry *e, void *ctx)
{
    struct warning_scan *w = ctx;
    if (e->type == DEFER_ENTRY_WARNING)
        w->warned = 1;
}

/* Phase 1: expire, then start the notices this round needs. */
static void round_notices(struct qmgr_message *m)
{
    time_t now = time(NULL);
    long long age = (long long) now - m->msg.arrival_sec;
    int *idx = xcalloc((size_t) m->msg.nrcpt + 1, sizeof(int));
    const char *sender = m->msg.sender;

    if (age > qmgr_var.max_lifetime) {
        for (int i = 0; i < m->msg.nrcpt; i++) {
            struct qmgr_rcpt *rc = &m->rcpts[i];
            if (rc->state != QR_DEFERRED)
                continue;
            rc->state = QR_BOUNCED;
            log_info("%s: to=<%s>, relay=%s, dsn=%s, status=expired, returned to sender (%s)",
                     m->qid, m->msg.rcpts[i].address, strbuf_str(&rc->relay),
                     strbuf_str(&rc->dsn), strbuf_str(&rc->reason));
        }
    }

    /* Failures.  Recipients that asked for no failure notice are simply
     * done; so are failures of double bounces (never bounce those). */
    int nb = 0;
    for (int i = 0; i < m->msg.nrcpt; i++) {
        struct qmgr_rcpt *rc = &m->rcpts[i];
        if (rc->state != QR_BOUNCED)
            continue;
        if (!(rc->notify & DSN_NOTIFY_FAILURE) || is_double_bounce_sender(sender)) {
            if (is_double_bounce_sender(sender))
                log_info("%s: undeliverable postmaster notification discarded", m->qid);
            mark_done(m, i);
            rc->state = QR_DONE;
        } else {
            idx[nb++] = i;
        }
    }
    if (nb > 0) {
        int started;
        if (*sender == '\0')
            started = qmgr_bounce_start(m, NOTICE_FAILURE, idx, nb,
                                        qmgr_var.bounce_notice_recipient,
                                        qmgr_var.double_bounce_sender);
        else
            started = qmgr_bounce_start(m, NOTICE_FAILURE, idx, nb, sender, "");
        if (started < 0)
            for (int i = 0; i < nb; i++)
                m->rcpts[idx[i]].state = QR_DEFERRED;
    }

    /* Success notices only go to real senders. */
    if (*sender && !is_double_bounce_sender(sender)) {
        int ns = collect(m, QR_SENT, DSN_NOTIFY_SUCCESS, idx);
        if (ns > 0)
            qmgr_bounce_start(m, NOTICE_SUCCESS, idx, ns, sender, "");
    }

    /* One delay warning per message, remembered in defer/QID. */
    if (qmgr_var.delay_warning > 0 && age >= qmgr_var.delay_warning && *sender
        && !is_double_bounce_sender(sender)) {
        int nd = collect(m, QR_DEFERRED, DSN_NOTIFY_DELAY, idx);
        if (nd > 0) {
            strbuf path;
            strbuf_init(&path);
            defer_log_path(&path, m->qid);
            struct warning_scan w = { 0 };
            defer_log_read(strbuf_str(&path), saw_entry, &w);
            strbuf_release(&path);
            if (!w.warned)
                qmgr_bounce_start(m, NOTICE_DELAY, idx, nd, sender, "");
        }
    }
    xfree(idx);
}

void qmgr_message_bounce_done(struct qmgr_message *m, int kind, const int *idx,
                              int n, int ok, const char *new_qid, const char *why)
{
    static const char *const what[] = { "sender non-delivery notification",
                                        "sender delay notification",
                                        "sender delivery status notification" };
    if (ok)
        log_info("%s: %s: %s", m->qid, what[kind], new_qid);
    else
        log_warning("%s: could not queue %s: %s", m->qid, what[kind], why);
    if (kind == NOTICE_FAILURE) {
        for (int i = 0; i < n; i++) {
            struct qmgr_rcpt *rc = &m->rcpts[idx[i]];
            if (ok) {
                mark_done(m, idx[i]);
                rc->state = QR_DONE;
            } else {
                /* Try again with the next attempt. */
                rc->state = QR_DEFERRED;
            }
        }
    } else if (kind == NOTICE_DELAY && ok) {
        strbuf path;
        strbuf_init(&path);
        defer_log_path(&path, m->qid);
        if (defer_log_append_warning(strbuf_str(&path), (long long) time(NULL)) < 0)
            log_warning("%s: cannot record delay warning: %s", m->qid, strerror(errno));
        strbuf_release(&path);
    }
    m->bounces_outstanding--;
    qmgr_message_check(m);
}

/* Phase 2 for a message the administrator deleted, held or requeued
 * while it was active: done now that no delivery of it is running. */
static void round_end_admin(struct qmgr_message *m)
{
    if (queue_admin_apply(m->admin_action, "active", m->qid) < 0)
        log_warning("%s: cannot %s: %s", m->qid, queue_admin_action_name(m->admin_action),
                    strerror(errno));
    else
        log_info("%s: %s", m->qid, queue_admin_done_text(m->admin_action));
    if (m->admin_action == QA_REQUEUE)
        qmgr_rescan_incoming();
    message_free(m);
}

/* Phase 2: remove, or defer until the next attempt. */
static void round_end(struct qmgr_message *m)
{
    int pending = 0;
    for (int i = 0; i < m->msg.nrcpt; i++)
        if (m->msg.rcpts[i].status == RCPT_PENDING)
            pending++;
    if (pending > 0 && m->admin_action != QA_NONE) {
        round_end_admin(m);
        return;
    }
    strbuf path, dpath;
    strbuf_init(&path);
    strbuf_init(&dpath);
    queue_path(&path, "active", m->qid);
    defer_log_path(&dpath, m->qid);
    if (pending == 0) {
        qmgr_remove(m->qid, m->msg.size);   /* off the loop: qmgr_remove.c */
    } else {
        long long now = (long long) time(NULL);
        long long next = backoff_next_attempt(now, m->msg.arrival_sec,
                                              qmgr_var.min_backoff, qmgr_var.max_backoff);
        struct timeval tv[2] = { { (time_t) now, 0 }, { (time_t) next, 0 } };
        if (utimes(strbuf_str(&path), tv) < 0)
            log_warning("%s: utimes %s: %s", m->qid, strbuf_str(&path), strerror(errno));
        /* Made durable with the turn's other moves (qmgr_sync_dirs); until
         * then a crash only leaves it in active/, retried at the start. */
        if (queue_rename(m->qid, "active", "deferred") < 0)
            log_warning("%s: cannot move to deferred/: %s", m->qid, strerror(errno));
        else
            qmgr_sync_later("active", "deferred", m->qid);
    }
    strbuf_release(&path);
    strbuf_release(&dpath);
    message_free(m);
}

void qmgr_message_check(struct qmgr_message *m)
{
    if (m->jobs_outstanding > 0)
        return;
    if (m->round_phase == 0) {
        m->round_phase = 1;
        /* An admin action ends the round without notices: deleted mail
         * is not bounced, held or requeued mail gets its next round. */
        if (m->admin_action == QA_NONE)
            round_notices(m);
    }
    if (m->bounces_outstanding > 0)
        return;
    round_end(m);
}
