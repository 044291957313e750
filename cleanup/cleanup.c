/*
 * cleanup.c - the cleanup daemon: main(), settings, the enqueue conversation.
 *
 * Conversation (doc/internals.md, "enqueue"), one per connection:
 *   1. open an unnamed file in incoming/ (O_TMPFILE; incoming/.tmp-* where
 *      that is not available), or take a finished file from recycle/ as
 *      incoming/.tmp-* when queue_file_reuse_limit > 0, and send
 *      {queue_id=QID}, or {status=4
 *      dsn=4.3.0|4.3.1 reason=...} when no queue file can be created;
 *   2. read the envelope {request=enqueue, sender=, rcpt=..., ...}, write
 *      V T S A... and the envelope recipients (rewritten, expanded,
 *      de-duplicated: cleanup_envelope.c);
 *   3. read {data=...} records (cleanup_message.c) until {end=1};
 *   4. commit (fsync file, link -- then fsync it again -- or rename it to
 *      incoming/QID, fsync incoming/) and
 *      reply {status=0, queue_id=QID} [held=1 | discarded=1]; or throw the
 *      file away and reply {status=4|5, dsn=, reason=}.  ENOSPC/EDQUOT
 *      gives 4.3.1 "Insufficient system storage".
 *   5. nothing more with qmgr_watch_incoming = yes (the default): qmgr
 *      watches incoming/ and sees the commit itself.  With no, after the
 *      reply, wake qmgr ({request=wakeup} to public/qmgr, not waiting for
 *      its reply; a qmgr that is down is not an error: it scans incoming/
 *      when it starts).
 * A client that goes away before {end=1}, or breaks the protocol, leaves
 * nothing in the queue.
 *
 * System calls per message are kept few: the client socket is used as the
 * skeleton hands it over (no dup; the stream is freed, the skeleton closes
 * it), replies are written without a poll first, and smtpd sends a small
 * message's records in one write, so step 2 and 3 usually take one poll and
 * one read in all.
 *
 * HOLD (header/body_checks): the commit links or renames the file from
 * incoming/ straight into hold/ (queue_writer_commit_to; fsync of the file
 * and of hold/), and qmgr is not woken.  The file is never visible in
 * incoming/, so no qmgr scan can take a message that must be held (an
 * earlier commit-then-move let a scan in between deliver it).
 *
 * At start, temporary files older than twice ipc_timeout (left by a
 * cleanup that crashed with a .tmp file; an unnamed one leaves nothing)
 * are removed from incoming/.
 *
 * A table that cannot be opened (header_checks, canonical maps, ...) makes
 * every message fail with 4.3.5 and an error in the log, rather than a
 * crash loop: mail waits in the client's queue until the table is fixed.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "cleanup.h"
#include "config.h"
#include "ipc.h"
#include "log.h"
#include "mem.h"
#include "server.h"

struct cleanup_config cleanup_cfg;

/* Timeout for the qmgr wakeup; the message is safe either way. */
#define QMGR_WAKEUP_TIMEOUT 2

/* --- outcome ---------------------------------------------------------------- */

void cleanup_fail(struct cleanup_state *st, int status, const char *dsn,
                  const char *fmt, ...)
{
    if (st->status != 0)
        return;
    st->status = status;
    snprintf(st->dsn, sizeof(st->dsn), "%s", dsn);
    va_list ap;
    va_start(ap, fmt);
    strbuf_reset(&st->reason);
    strbuf_vappendf(&st->reason, fmt, ap);
    va_end(ap);
}

int cleanup_writing(const struct cleanup_state *st)
{
    return st->status == 0 && !st->discard;
}

/* --- settings ----------------------------------------------------------------- */

static void config_problem(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void config_problem(const char *fmt, ...)
{
    strbuf msg;
    strbuf_init(&msg);
    va_list ap;
    va_start(ap, fmt);
    strbuf_vappendf(&msg, fmt, ap);
    va_end(ap);
    log_error("%s", strbuf_str(&msg));
    if (!cleanup_cfg.config_error)
        cleanup_cfg.config_error = strbuf_detach(&msg, NULL);
    strbuf_release(&msg);
}

/* Tables are opened before the chroot: their files live outside it. */
static void cleanup_pre_jail(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    /* Load the time zone while /etc/localtime is still reachable: Date:
     * headers are in local time, also when chrooted. */
    tzset();
    cleanup_cfg.header_checks = maps_open_param("header_checks", config_problem);
    cleanup_cfg.body_checks = maps_open_param("body_checks", config_problem);
    cleanup_cfg.canonical = maps_open_param("canonical_maps", config_problem);
    cleanup_cfg.sender_canonical = maps_open_param("sender_canonical_maps", config_problem);
    cleanup_cfg.recipient_canonical = maps_open_param("recipient_canonical_maps", config_problem);
    cleanup_cfg.virtual_alias = maps_open_param("virtual_alias_maps", config_problem);
    cleanup_cfg.sender_bcc = maps_open_param("sender_bcc_maps", config_problem);
    cleanup_cfg.recipient_bcc = maps_open_param("recipient_bcc_maps", config_problem);
    strbuf locals;
    strbuf_init(&locals);
    strbuf_printf(&locals, "%s, %s", config_str("myorigin"), config_str("mydestination"));
    strbuf lerr;
    strbuf_init(&lerr);
    cleanup_cfg.local_domains = domain_list_open(strbuf_str(&locals), &lerr);
    if (!cleanup_cfg.local_domains)
        config_problem("mydestination: %s", strbuf_str(&lerr));
    strbuf_release(&lerr);
    strbuf_release(&locals);
    const char *vdomains = config_str("virtual_alias_domains");
    if (*vdomains) {
        strbuf err;
        strbuf_init(&err);
        cleanup_cfg.virtual_domains = domain_list_open(vdomains, &err);
        if (!cleanup_cfg.virtual_domains)
            config_problem("virtual_alias_domains: %s", strbuf_str(&err));
        strbuf_release(&err);
    }
}

static int positive_int(const char *param)
{
    long long v = config_int(param);
    if (v < 0 || v > 1000000000LL) {
        config_problem("%s: bad value %lld", param, v);
        return 0;
    }
    return (int)v;
}

static void cleanup_post_jail(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    static char hostbuf[256];
    const char *host = config_str("myhostname");
    if (!*host) {
        if (gethostname(hostbuf, sizeof(hostbuf) - 1) != 0)
            snprintf(hostbuf, sizeof(hostbuf), "localhost");
        host = hostbuf;
    }
    cleanup_cfg.myhostname = host;
    const char *domain = config_str("mydomain");
    if (!*domain) {
        const char *dot = strchr(host, '.');
        domain = dot ? dot + 1 : "";
    }
    cleanup_cfg.mydomain = domain;
    const char *origin = config_str("myorigin");
    cleanup_cfg.myorigin = *origin ? origin : host;
    cleanup_cfg.delim = config_str("recipient_delimiter");
    cleanup_cfg.append_dot_mydomain = config_bool("append_dot_mydomain");
    int n = 0;
    char **classes = config_list(config_str("propagate_unmatched_extensions"), &n);
    for (int i = 0; i < n; i++) {
        if (strcasecmp(classes[i], "canonical") == 0)
            cleanup_cfg.propagate_canonical = 1;
        else if (strcasecmp(classes[i], "virtual") == 0)
            cleanup_cfg.propagate_virtual = 1;
    }
    config_list_free(classes);
    cleanup_cfg.message_size_limit = config_size("message_size_limit");
    cleanup_cfg.header_size_limit = (size_t)positive_int("header_size_limit");
    cleanup_cfg.hopcount_limit = positive_int("hopcount_limit");
    cleanup_cfg.body_checks_size_limit = (size_t)positive_int("body_checks_size_limit");
    cleanup_cfg.virtual_recursion_limit = positive_int("virtual_alias_recursion_limit");
    cleanup_cfg.virtual_expansion_limit = positive_int("virtual_alias_expansion_limit");
    cleanup_cfg.dup_limit = (size_t)positive_int("duplicate_filter_limit");
    cleanup_cfg.undisclosed_header = config_str("undisclosed_recipients_header");
    cleanup_cfg.always_bcc = config_str("always_bcc");
    cleanup_cfg.override_options = config_str("receive_override_options");
    cleanup_cfg.masq_domains = config_str("masquerade_domains");
    cleanup_cfg.masq_exceptions = config_str("masquerade_exceptions");
    classes = config_list(config_str("masquerade_classes"), &n);
    for (int i = 0; i < n; i++) {
        if (strcasecmp(classes[i], "envelope_sender") == 0)
            cleanup_cfg.masq_env_sender = 1;
        else if (strcasecmp(classes[i], "envelope_recipient") == 0)
            cleanup_cfg.masq_env_rcpt = 1;
        else if (strcasecmp(classes[i], "header_sender") == 0)
            cleanup_cfg.masq_hdr_sender = 1;
        else if (strcasecmp(classes[i], "header_recipient") == 0)
            cleanup_cfg.masq_hdr_rcpt = 1;
        else
            log_warning("masquerade_classes: unknown class \"%s\" ignored", classes[i]);
    }
    config_list_free(classes);
    long long t = config_time("ipc_timeout");
    cleanup_cfg.ipc_timeout = t > 0 && t < 86400 ? (int)t : 3600;
    /* qmgr fills recycle/ only when the limit is above 0; then a new
     * queue file is preferably a recycled one (no inode allocation). */
    cleanup_cfg.reuse_files = config_int("queue_file_reuse_limit") > 0;
    /* qmgr watches incoming/ itself (same main.cf): no connection to
     * public/qmgr per message. */
    cleanup_cfg.wake_qmgr = !config_bool("qmgr_watch_incoming");

    /* Temporary files of a cleanup that crashed mid-message: a live writer
     * is never silent for longer than one ipc_timeout, so twice that is
     * safely stale. */
    if (queue_purge_temp("incoming", 2L * cleanup_cfg.ipc_timeout) < 0)
        log_warning("cannot scan incoming/ for stale temporary files: %s", strerror(errno));
}

/* --- the conversation --------------------------------------------------------- */

/* One record to the client, written at once (write first: the client's
 * socket has room for a reply, so no poll before it). */
static int send_to_client(ipc_stream *client, const ipc_record *r)
{
    if (ipc_queue(client, r) < 0)
        return -1;
    return ipc_flush(client);
}

static void reply_error(ipc_stream *out, const char *qid, int status,
                        const char *dsn, const char *reason)
{
    ipc_record *r = ipc_record_new();
    ipc_record_add_int(r, "status", status);
    ipc_record_add_str(r, "dsn", dsn);
    ipc_record_add_str(r, "reason", reason);
    if (qid)
        ipc_record_add_str(r, "queue_id", qid);
    if (send_to_client(out, r) < 0)
        log_debug("reply to client failed: %s", ipc_error(out));
    ipc_record_free(r);
}

static char *attr_dup(const ipc_record *r, const char *name)
{
    const char *v = ipc_record_get_str(r, name);
    return v ? xstrdup(v) : NULL;
}

/* 1 when the comma list has word (case-insensitive). */
static int flag_set(const char *flags, const char *word)
{
    if (!flags)
        return 0;
    size_t wl = strlen(word);
    for (const char *p = flags; *p;) {
        size_t n = strcspn(p, ", \t");
        if (n == wl && strncasecmp(p, word, n) == 0)
            return 1;
        p += n;
        p += strspn(p, ", \t");
    }
    return 0;
}

static const char *const envelope_attrs[] = {
    "client_name", "client_addr", "helo_name", "protocol", "sasl_method",
    "sasl_username", "envid", "ret", "origin", NULL };

/* Check an attribute value for the queue file: no NUL or line breaks. */
static int attr_value_ok(const strbuf *v)
{
    return v->len == strlen(strbuf_str(v)) && !memchr(v->data ? v->data : "", '\n', v->len)
           && !memchr(v->data ? v->data : "", '\r', v->len);
}

/* Take the envelope record: write V T S A R.  0 ok, -1 protocol error. */
static int take_envelope(struct cleanup_state *st, const ipc_record *env)
{
    const char *request = ipc_record_get_str(env, "request");
    const char *sender = ipc_record_get_str(env, "sender");
    if (!request || strcmp(request, "enqueue") != 0 || !sender) {
        log_warning("%s: bad envelope record (request=%s, sender %s)", st->qid,
                    request ? request : "(none)", sender ? "present" : "missing");
        return -1;
    }
    for (size_t i = 0; i < env->n; i++) {
        if (!attr_value_ok(&env->attrs[i].value)) {
            log_warning("%s: envelope attribute %s holds NUL or line break", st->qid,
                        env->attrs[i].name);
            return -1;
        }
    }
    const char *flags = ipc_record_get_str(env, "flags");
    st->flag_local = flag_set(flags, "local");
    st->flag_extract = flag_set(flags, "extract");
    st->no_mappings = flag_set(flags, "no_address_mappings")
                      || flag_set(cleanup_cfg.override_options, "no_address_mappings");
    st->no_checks = flag_set(flags, "no_header_body_checks")
                    || flag_set(cleanup_cfg.override_options, "no_header_body_checks");
    st->origin = attr_dup(env, "origin");
    st->client_name = attr_dup(env, "client_name");
    st->client_addr = attr_dup(env, "client_addr");
    st->helo_name = attr_dup(env, "helo_name");
    st->protocol = attr_dup(env, "protocol");
    st->fullname = attr_dup(env, "fullname");

    cleanup_set_sender(st, sender);

    queue_writer *w = st->writer;
    queue_writer_record_str(w, QREC_VERSION, "1");
    /* Arrival time as encoded in the queue id: 9 hex digits of seconds,
     * 5 of microseconds. */
    char usec_hex[6];
    memcpy(usec_hex, st->qid + 9, 5);
    usec_hex[5] = '\0';
    char tbuf[64];
    snprintf(tbuf, sizeof(tbuf), "%lld %ld", queue_id_time(st->qid),
             strtol(usec_hex, NULL, 16));
    queue_writer_record_str(w, QREC_TIME, tbuf);
    queue_writer_record_str(w, QREC_SENDER, st->sender);

    strbuf a;
    strbuf_init(&a);
    for (const char *const *name = envelope_attrs; *name; name++) {
        const char *v = ipc_record_get_str(env, *name);
        if (!v)
            continue;
        strbuf_printf(&a, "%s=%s", *name, v);
        queue_writer_record(w, QREC_ATTR, a.data, a.len);
    }
    strbuf_release(&a);

    /* notify= and orcpt= apply to the rcpt that follows them. */
    const char *notify = NULL, *orcpt = NULL;
    for (size_t i = 0; i < env->n; i++) {
        const char *name = env->attrs[i].name;
        const char *value = strbuf_str(&env->attrs[i].value);
        if (strcmp(name, "notify") == 0) {
            notify = value;
        } else if (strcmp(name, "orcpt") == 0) {
            orcpt = value;
        } else if (strcmp(name, "rcpt") == 0) {
            cleanup_add_rcpt(st, value, orcpt, notify, 0);
            notify = orcpt = NULL;
        }
    }
    cleanup_add_sender_bcc(st);
    return 0;
}

/* Fire and forget: the record is sent and the socket closed without
 * waiting for qmgr's {status=0}.  Waiting made every cleanup as slow as
 * qmgr's busiest loop turn, and a busy cleanup makes the master fork
 * another one for the next message.  qmgr handles a record whose sender
 * has gone (its reply is simply lost). */
static void wake_qmgr(void)
{
    int fd = ipc_connect_unix("public/qmgr", QMGR_WAKEUP_TIMEOUT);
    if (fd < 0) {
        log_debug("qmgr wakeup failed: %s", strerror(errno));
        return;
    }
    ipc_record *req = ipc_record_new();
    ipc_build(req, "request", "wakeup", NULL);
    ipc_stream *s = ipc_stream_open(fd, QMGR_WAKEUP_TIMEOUT);
    if (ipc_send(s, req) < 0)
        log_debug("qmgr wakeup failed: %s", ipc_error(s));
    ipc_stream_close(s);
    ipc_record_free(req);
}

static void state_free(struct cleanup_state *st)
{
    if (st->writer)
        queue_writer_abort(st->writer);
    cleanup_envelope_free(st);
    cleanup_message_free(st);
    strbuf_release(&st->reason);
    strbuf_release(&st->scratch);
    xfree(st->sender);
    xfree(st->fullname);
    xfree(st->origin);
    xfree(st->client_name);
    xfree(st->client_addr);
    xfree(st->helo_name);
    xfree(st->protocol);
    xfree(st->first_rcpt);
}

/* Read records until {end=1}.  0 at end, -1 when the client went away or
 * broke the protocol (logged). */
static int take_content(struct cleanup_state *st, ipc_stream *client, ipc_record *r)
{
    for (;;) {
        int rc = ipc_recv(client, r);
        if (rc != 0) {
            log_info("%s: client went away before end of message (%s); nothing queued",
                     st->qid, rc > 0 ? "end of input" : ipc_error(client));
            return -1;
        }
        int known = 0;
        for (size_t i = 0; i < r->n; i++) {
            if (strcmp(r->attrs[i].name, "data") == 0) {
                known = 1;
                const strbuf *v = &r->attrs[i].value;
                if (v->len > 0)
                    cleanup_message_data(st, v->data, v->len);
            }
        }
        if (ipc_record_get(r, "end"))
            return 0;
        if (!known) {
            log_warning("%s: unexpected record from client (%s...); nothing queued",
                        st->qid, r->n ? r->attrs[0].name : "empty");
            return -1;
        }
    }
}

/* Throw the queue file away now, before any reply: once the client hears
 * the verdict nothing of the message is left.  The id stays usable for the
 * reply and the log through qid_copy. */
static void drop_queue_file(struct cleanup_state *st, char *qid_copy)
{
    snprintf(qid_copy, QUEUE_ID_MAX, "%s", st->qid);
    st->qid = qid_copy;
    queue_writer_abort(st->writer);
    st->writer = NULL;
}

static void log_failure(struct cleanup_state *st)
{
    if (st->failure_logged)
        return;
    log_info("%s: %s: %s %s; from=<%s>%s%s%s", st->qid,
             st->status == 5 ? "reject" : "defer", st->dsn, strbuf_str(&st->reason),
             st->sender ? st->sender : "",
             st->first_rcpt ? " to=<" : "", st->first_rcpt ? st->first_rcpt : "",
             st->first_rcpt ? ">" : "");
}

static void cleanup_serve(int client_fd)
{
    /* The skeleton closes client_fd after us: the stream is freed with
     * ipc_stream_free(), which leaves the fd alone (no dup per message).
     * In standalone mode (-S) the skeleton hands us a socket too. */
    ipc_stream *client = ipc_stream_open(client_fd, cleanup_cfg.ipc_timeout);
    ipc_record *r = ipc_record_new();
    char qid_copy[QUEUE_ID_MAX];
    strbuf err;
    strbuf_init(&err);

    struct cleanup_state st;
    memset(&st, 0, sizeof(st));
    strbuf_init(&st.reason);
    strbuf_init(&st.scratch);
    cleanup_envelope_init(&st);
    cleanup_message_init(&st);
    st.arrival = time(NULL);

    if (cleanup_cfg.config_error) {
        log_warning("refusing mail: %s", cleanup_cfg.config_error);
        reply_error(client, NULL, 4, "4.3.5", "Error: server configuration error");
        goto done;
    }

    /* 1. the queue file, and its id for the client */
    st.writer = queue_writer_create_opts("incoming",
                                         cleanup_cfg.reuse_files ? QUEUE_WRITER_REUSE : 0,
                                         &err);
    if (!st.writer) {
        int disk_full = errno == ENOSPC || errno == EDQUOT;
        log_warning("%s", strbuf_str(&err));
        if (disk_full)
            reply_error(client, NULL, 4, "4.3.1", "Insufficient system storage");
        else
            reply_error(client, NULL, 4, "4.3.0", "Error: queue file write error");
        goto done;
    }
    st.qid = queue_writer_id(st.writer);
    ipc_build(r, "queue_id", st.qid, NULL);
    if (send_to_client(client, r) < 0) {
        log_debug("%s: client went away: %s", st.qid, ipc_error(client));
        goto done;
    }

    /* 2. envelope, 3. content */
    if (ipc_recv(client, r) != 0) {
        log_debug("%s: client went away before the envelope", st.qid);
        goto done;
    }
    if (take_envelope(&st, r) < 0) {
        drop_queue_file(&st, qid_copy);
        reply_error(client, st.qid, 4, "4.3.0", "Error: protocol error");
        goto done;
    }
    if (take_content(&st, client, r) < 0)
        goto done;
    cleanup_message_end(&st);

    /* 4. the verdict */
    if (st.status == 0 && !st.discard && st.nrcpt == 0)
        cleanup_fail(&st, 5, "5.1.0", st.flag_extract
                     ? "No recipient addresses found in message header"
                     : "No recipients specified");
    if (st.status != 0) {
        drop_queue_file(&st, qid_copy);
        log_failure(&st);
        reply_error(client, st.qid, st.status, st.dsn, strbuf_str(&st.reason));
        goto done;
    }
    if (st.discard) {
        drop_queue_file(&st, qid_copy);
        ipc_build(r, "status", "0", "queue_id", st.qid, "discarded", "1", NULL);
        if (send_to_client(client, r) < 0)
            log_debug("%s: client went away before the reply", st.qid);
        goto done;
    }
    /* A message to hold goes straight into hold/: committed to incoming/
     * first, a qmgr scanning incoming/ could take it before the move. */
    if (queue_writer_commit_to(st.writer, st.hold ? "hold" : "incoming", &err) < 0) {
        int disk_full = errno == ENOSPC || errno == EDQUOT;
        log_warning("%s", strbuf_str(&err));
        if (disk_full)
            reply_error(client, st.qid, 4, "4.3.1", "Insufficient system storage");
        else
            reply_error(client, st.qid, 4, "4.3.0", "Error: queue file write error");
        goto done;
    }
    int held = st.hold;
    ipc_build(r, "status", "0", "queue_id", st.qid, NULL);
    if (held)
        ipc_record_add_str(r, "held", "1");
    if (send_to_client(client, r) < 0)
        log_warning("%s: queued, but the client went away before the reply: %s",
                    st.qid, ipc_error(client));

    /* 5. tell qmgr unless it watches incoming/ (a held message is none
     * of its business) */
    if (!held && cleanup_cfg.wake_qmgr)
        wake_qmgr();

done:
    state_free(&st);
    strbuf_release(&err);
    ipc_record_free(r);
    ipc_stream_free(client);
}

int main(int argc, char **argv)
{
    static const struct server_spec spec = {
        .program = "cleanup",
        .mode = SERVER_SINGLE,
        .pre_jail = cleanup_pre_jail,
        .post_jail = cleanup_post_jail,
        .serve = cleanup_serve,
    };
    return server_main(argc, argv, &spec);
}
