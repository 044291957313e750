/*
 * pickup.c - the pickup daemon: feeds messages that sendmail/postdrop left
 * in maildrop/ to cleanup.
 *
 * master.cf: `pickup unix n - y 60 1 pickup` (public/pickup, unprivileged,
 * chrooted, woken every 60 s, one process).  postdrop wakes it after each
 * file ({request=wakeup} on public/pickup); any other client is treated as
 * a wakeup too (pickup has no other conversation).
 *
 * Each wakeup scans maildrop/ (queue_scan: only names that are queue ids,
 * never postdrop's dot-files) and for each file:
 *   1. opens it without following links or blocking, and accepts only a
 *      regular file with one link; the owner uid is the submitting user;
 *   2. reads the envelope (doc/submission.md, the maildrop format) as
 *      untrusted input: V "1" first; T (ignored); S exactly once, a valid
 *      envelope address or empty; A fullname= (no control characters),
 *      flags= (only "extract"), envid= (printable ASCII, <= 100), ret=
 *      (FULL|HDRS); [N notify] [O orcpt] R address; then L content lines
 *      and E last with nothing after;
 *   3. holds the enqueue conversation with cleanup (doc/internals.md) with
 *      origin=pickup, flags=local[,extract], and as first content a
 *      Received: header naming the uid; logs "QID: uid=N from=<sender>";
 *   4. removes the maildrop file only after cleanup answered status=0
 *      (the queue file is on disk): a crash in between means at worst a
 *      duplicate, never a loss.
 * A message cleanup rejects for good (status=5: header_checks REJECT,
 * message_size_limit, ...) goes back to its sender as a failure notice
 * (origin=bounce, null sender; "QID: sender non-delivery notification:
 * QID2"), as Postfix does for local submissions, unless the sender is
 * null or every recipient said NOTIFY=NEVER.  A malformed file, one that
 * is not a regular file, or a rejected one that cannot be returned is
 * moved to corrupt/ with a warning naming the reason; it is never
 * retried.  A temporary failure (cleanup down,
 * status=4) leaves the file in place and ends the scan; the next wakeup
 * retries.  At start, postdrop temp files older than a day are removed.
 *
 * Every wakeup first passes the files in requeue/ (messages an
 * administrator requeued) through cleanup again: pickup_requeue.c.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "dsn.h"
#include "ipc.h"
#include "log.h"
#include "maildrop.h"
#include "mail_date.h"
#include "mem.h"
#include "pickup.h"
#include "queue.h"
#include "server.h"
#include "strbuf.h"

#define CLEANUP_SOCKET "private/cleanup"
#define DATA_CHUNK 65536

static int pickup_ipc_timeout;

enum { PICKUP_DONE, PICKUP_CORRUPT, PICKUP_RETRY };

/* Send buffered content to cleanup once it reaches a chunk, or when flush. */
static int pickup_send_data(ipc_stream *s, strbuf *buf, int flush)
{
    if (buf->len == 0 || (!flush && buf->len < DATA_CHUNK))
        return 0;
    ipc_record *r = ipc_record_new();
    ipc_record_add(r, "data", buf->data, buf->len);
    int rc = ipc_send(s, r);
    ipc_record_free(r);
    strbuf_reset(buf);
    return rc;
}

static void pickup_move_aside(const char *qid, const char *why)
{
    if (queue_move(qid, "maildrop", "corrupt") == 0)
        log_warning("maildrop/%s: %s; moved to corrupt/%s", qid, why, qid);
    else
        log_warning("maildrop/%s: %s; cannot move it to corrupt/: %s", qid, why,
                    strerror(errno));
}

/* ---- bounces of rejected submissions ---------------------------------- */

/* Content lines of a maildrop file for dsn_compose: the first L record
 * was read by pickup_envelope, the rest come from the file. */
struct bounce_content {
    FILE *fp;
    int first_type;
    strbuf first;
    int state;                  /* 0 first line pending, 1 reading, 2 done */
};

static int bounce_next_line(void *ctx, strbuf *line, strbuf *err)
{
    struct bounce_content *c = ctx;
    if (c->state == 0) {
        c->state = c->first_type == QREC_LINE ? 1 : 2;
        if (c->state == 2)
            return 0;
        strbuf_set(line, c->first.data, c->first.len);
        return 1;
    }
    if (c->state == 2)
        return 0;
    int rc = maildrop_read_content(c->fp, line, err);
    if (rc <= 0)
        c->state = 2;
    return rc;
}

/* Send a finished notice to cleanup as origin=bounce.  0 ok, -1 with why. */
static int bounce_submit(const char *to, const strbuf *text, strbuf *new_qid, strbuf *why)
{
    int fd = ipc_connect_unix(CLEANUP_SOCKET, pickup_ipc_timeout);
    if (fd < 0) {
        strbuf_printf(why, "connect to %s: %s", CLEANUP_SOCKET, strerror(errno));
        return -1;
    }
    ipc_stream *s = ipc_stream_open(fd, pickup_ipc_timeout);
    ipc_record *r = ipc_record_new();
    int rc = -1;
    long long status = -1;
    if (ipc_recv(s, r) != 0 || !ipc_record_get_str(r, "queue_id")) {
        strbuf_printf(why, "cleanup: %s", ipc_record_get_str(r, "reason")
                      ? ipc_record_get_str(r, "reason") : ipc_error(s));
        goto out;
    }
    ipc_build(r, "request", "enqueue", "origin", "bounce", "sender", "", "rcpt", to,
              (char *) NULL);
    int bad = ipc_send(s, r) != 0;
    for (size_t pos = 0; !bad && pos < text->len; ) {
        size_t len = text->len - pos < DATA_CHUNK ? text->len - pos : DATA_CHUNK;
        ipc_record_reset(r);
        ipc_record_add(r, "data", text->data + pos, len);
        bad = ipc_send(s, r) != 0;
        pos += len;
    }
    ipc_build(r, "end", "1", (char *) NULL);
    if (bad || ipc_send(s, r) != 0 || ipc_recv(s, r) != 0) {
        strbuf_printf(why, "cleanup: %s", ipc_error(s));
    } else if (ipc_record_get_int(r, "status", &status) != 0 || status != 0) {
        const char *reason = ipc_record_get_str(r, "reason");
        strbuf_printf(why, "cleanup status %lld: %s", status, reason ? reason : "no reason");
    } else {
        const char *q = ipc_record_get_str(r, "queue_id");
        strbuf_set_str(new_qid, q ? q : "?");
        rc = 0;
    }
out:
    ipc_record_free(r);
    ipc_stream_close(s);
    return rc;
}

/*
 * cleanup refused the message for good: return it to its sender as a
 * failure notice (every recipient failed with cleanup's status and
 * reason), unless the sender is null or no recipient wants failures.
 * 1 = bounced or nothing to send (the maildrop file can go), 0 = keep the
 * file aside, -1 = temporary failure (retry later).
 */
static int pickup_bounce(const char *path, const struct maildrop_msg *m, const char *qid,
                         const char *dsn, const char *reason, time_t arrival)
{
    if (m->sender.len == 0)
        return 0;
    int n = 0, wanted = 0;
    struct dsn_rcpt_report *rr = xcalloc((size_t) m->nrcpt + 1, sizeof(*rr));
    const char *notify = NULL, *orcpt = NULL;
    const char *envid = NULL, *ret = NULL;
    for (size_t i = 0; i < m->env->n; i++) {
        const char *name = m->env->attrs[i].name;
        const char *value = strbuf_str(&m->env->attrs[i].value);
        if (strcmp(name, "notify") == 0) {
            notify = value;
        } else if (strcmp(name, "orcpt") == 0) {
            orcpt = value;
        } else if (strcmp(name, "envid") == 0) {
            envid = value;
        } else if (strcmp(name, "ret") == 0) {
            ret = value;
        } else if (strcmp(name, "rcpt") == 0 && n < m->nrcpt) {
            if (dsn_notify_parse(notify) & DSN_NOTIFY_FAILURE)
                wanted++;
            rr[n].address = value;
            rr[n].orcpt = orcpt;
            rr[n].status = dsn && dsn[0] == '5' ? dsn : "5.0.0";
            rr[n].reason = reason ? reason : "message rejected";
            n++;
            notify = orcpt = NULL;
        }
    }
    if (n == 0) {                       /* -t: the recipients were in the header */
        rr[0].address = "(recipients from the message header)";
        rr[0].status = dsn && dsn[0] == '5' ? dsn : "5.0.0";
        rr[0].reason = reason ? reason : "message rejected";
        n = wanted = 1;
    }
    int rc = 1;
    if (wanted) {
        strbuf text, why, new_qid;
        strbuf_init(&text);
        strbuf_init(&why);
        strbuf_init(&new_qid);
        struct dsn_report rep = {
            .kind = DSN_KIND_FAILURE,
            .myhostname = config_str("myhostname"),
            .queue_id = qid,
            .sender = strbuf_str(&m->sender),
            .notify_to = strbuf_str(&m->sender),
            .envid = envid,
            .arrival = arrival,
            .now = time(NULL),
            .headers_only = (ret && strcmp(ret, "HDRS") == 0),
            .rcpts = rr,
            .nrcpt = n,
        };
        struct bounce_content c = { NULL, 0, { 0 }, 0 };
        strbuf_init(&c.first);
        struct maildrop_msg scratch;
        maildrop_msg_init(&scratch);
        c.fp = fopen(path, "re");
        if (!c.fp || maildrop_read_envelope(c.fp, &scratch, &c.first_type, &c.first, &why) < 0
            || dsn_compose(&rep, bounce_next_line, &c, &text, &why) < 0) {
            log_warning("%s: cannot compose the non-delivery notice: %s", qid,
                        c.fp ? strbuf_str(&why) : strerror(errno));
            rc = 0;
        } else if (bounce_submit(strbuf_str(&m->sender), &text, &new_qid, &why) < 0) {
            log_warning("%s: cannot queue the non-delivery notice: %s", qid, strbuf_str(&why));
            rc = -1;
        } else {
            log_info("%s: sender non-delivery notification: %s", qid, strbuf_str(&new_qid));
        }
        if (c.fp)
            fclose(c.fp);
        maildrop_msg_free(&scratch);
        strbuf_release(&c.first);
        strbuf_release(&text);
        strbuf_release(&why);
        strbuf_release(&new_qid);
    }
    xfree(rr);
    return rc;
}

/* Handle one maildrop file. */
static int pickup_file(const char *qid)
{
    strbuf path, why, line, buf;
    strbuf_init(&path);
    strbuf_init(&why);
    strbuf_init(&line);
    strbuf_init(&buf);
    struct maildrop_msg m;
    maildrop_msg_init(&m);
    ipc_record *r = ipc_record_new();
    ipc_stream *cs = NULL;
    FILE *fp = NULL;
    char *cleanup_qid = NULL;
    int outcome = PICKUP_RETRY;

    queue_path(&path, "maildrop", qid);
    int fd = open(path.data, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT) {
            outcome = PICKUP_DONE;          /* another pickup took it */
        } else if (errno == ELOOP) {
            strbuf_set_str(&why, "symbolic link");
            outcome = PICKUP_CORRUPT;
        } else {
            log_warning("open %s: %s", path.data, strerror(errno));
        }
        goto out;
    }
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_nlink != 1) {
        close(fd);
        strbuf_set_str(&why, "not a regular file with one link");
        outcome = PICKUP_CORRUPT;
        goto out;
    }
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
    fp = fdopen(fd, "r");
    if (!fp) {
        close(fd);
        log_warning("fdopen %s: %s", path.data, strerror(errno));
        goto out;
    }
    int first;
    if (maildrop_read_envelope(fp, &m, &first, &line, &why) < 0) {
        outcome = PICKUP_CORRUPT;
        goto out;
    }
    if (m.nrcpt == 0 && !m.extract) {
        strbuf_set_str(&why, "no recipients");
        outcome = PICKUP_CORRUPT;
        goto out;
    }

    /* The conversation with cleanup. */
    int cfd = ipc_connect_unix(CLEANUP_SOCKET, pickup_ipc_timeout);
    if (cfd < 0) {
        log_warning("connect to %s: %s", CLEANUP_SOCKET, strerror(errno));
        goto out;
    }
    cs = ipc_stream_open(cfd, pickup_ipc_timeout);
    if (ipc_recv(cs, r) != 0 || !ipc_record_get_str(r, "queue_id")) {
        log_warning("%s: no queue id: %s", CLEANUP_SOCKET,
                    ipc_record_get_str(r, "reason") ? ipc_record_get_str(r, "reason")
                                                    : ipc_error(cs));
        goto out;
    }
    cleanup_qid = xstrdup(ipc_record_get_str(r, "queue_id"));
    log_info("%s: uid=%ld from=<%s>", cleanup_qid, (long) st.st_uid, strbuf_str(&m.sender));

    ipc_record_reset(r);
    ipc_record_add_str(r, "request", "enqueue");
    ipc_record_add_str(r, "origin", "pickup");
    ipc_record_add_str(r, "sender", strbuf_str(&m.sender));
    ipc_record_add_str(r, "flags", m.extract ? "local,extract" : "local");
    for (size_t i = 0; i < m.env->n; i++)
        ipc_record_add(r, m.env->attrs[i].name, m.env->attrs[i].value.data,
                       m.env->attrs[i].value.len);
    if (ipc_send(cs, r) != 0) {
        log_warning("%s: send envelope to cleanup: %s", cleanup_qid, ipc_error(cs));
        goto out;
    }
    strbuf_printf(&buf, "Received: by %s (%s, from userid %ld)\n\tid %s; ",
                  config_str("myhostname"), config_str("mail_name"), (long) st.st_uid,
                  cleanup_qid);
    mail_date_format(&buf, time(NULL));
    strbuf_append_char(&buf, '\n');

    int more = first == QREC_LINE;
    while (more) {
        strbuf_append(&buf, line.data, line.len);
        strbuf_append_char(&buf, '\n');
        if (pickup_send_data(cs, &buf, 0) != 0) {
            log_warning("%s: send content to cleanup: %s", cleanup_qid, ipc_error(cs));
            goto out;
        }
        int rc = maildrop_read_content(fp, &line, &why);
        if (rc < 0) {
            outcome = PICKUP_CORRUPT;
            goto out;
        }
        more = rc == 1;
    }
    ipc_record_reset(r);
    ipc_record_add_str(r, "end", "1");
    if (pickup_send_data(cs, &buf, 1) != 0 || ipc_send(cs, r) != 0 || ipc_recv(cs, r) != 0) {
        log_warning("%s: cleanup did not confirm: %s", cleanup_qid, ipc_error(cs));
        goto out;
    }
    long long status;
    if (ipc_record_get_int(r, "status", &status) != 0) {
        log_warning("%s: malformed reply from cleanup", cleanup_qid);
    } else if (status == 0) {
        outcome = PICKUP_DONE;
    } else {
        const char *dsn = ipc_record_get_str(r, "dsn");
        const char *reason = ipc_record_get_str(r, "reason");
        log_info("%s: reject: %s %s; uid=%ld from=<%s>", cleanup_qid, dsn ? dsn : "",
                 reason ? reason : "rejected", (long) st.st_uid, strbuf_str(&m.sender));
        if (status == 5) {
            int b = pickup_bounce(path.data, &m, cleanup_qid, dsn, reason, st.st_mtime);
            if (b > 0) {
                outcome = PICKUP_DONE;
            } else if (b == 0) {
                strbuf_printf(&why, "rejected by cleanup as %s and not returned to the sender",
                              cleanup_qid);
                outcome = PICKUP_CORRUPT;
            }
        }
    }

out:
    if (cs)
        ipc_stream_close(cs);
    if (fp)
        fclose(fp);
    if (outcome == PICKUP_DONE && fd >= 0) {
        if (unlink(strbuf_str(&path)) < 0 && errno != ENOENT)
            log_warning("remove %s: %s", path.data, strerror(errno));
    } else if (outcome == PICKUP_CORRUPT) {
        pickup_move_aside(qid, why.len ? strbuf_str(&why) : "malformed");
    }
    xfree(cleanup_qid);
    ipc_record_free(r);
    maildrop_msg_free(&m);
    strbuf_release(&path);
    strbuf_release(&why);
    strbuf_release(&line);
    strbuf_release(&buf);
    return outcome == PICKUP_RETRY ? 1 : 0;     /* nonzero stops the scan */
}

static int pickup_one(const char *qid, void *ctx)
{
    (void) ctx;
    return pickup_file(qid);
}

static void pickup_scan(void)
{
    pickup_requeue_scan(pickup_ipc_timeout);
    if (queue_scan("maildrop", pickup_one, NULL) < 0)
        log_warning("scan maildrop: %s", strerror(errno));
}

static void pickup_serve(int fd)
{
    (void) fd;
    pickup_scan();
}

static void pickup_pre_jail(int argc, char **argv)
{
    (void) argc;
    (void) argv;
    tzset();
}

static void pickup_init(int argc, char **argv)
{
    (void) argc;
    (void) argv;
    pickup_ipc_timeout = (int) config_time("ipc_timeout");
    if (queue_purge_temp("maildrop", 86400) < 0)
        log_warning("purge maildrop: %s", strerror(errno));
}

int main(int argc, char **argv)
{
    static const struct server_spec spec = {
        .program = "pickup",
        .mode = SERVER_SINGLE,
        .pre_jail = pickup_pre_jail,
        .post_jail = pickup_init,
        .serve = pickup_serve,
        .wakeup = pickup_scan,
    };
    return server_main(argc, argv, &spec);
}
