/*
 * smtp.c - the smtp delivery agent: main(), the qmgr conversation and the
 * connection cache.
 *
 * qmgr connects to private/smtp and sends one record (doc/internals.md,
 * "delivery"):
 *   {request=deliver, queue_id, queue_file, nexthop, sender, arrival,
 *    envid?, ret?, [orcpt=, notify=, offset=] rcpt=ADDR ...}
 * The agent opens the queue file read-only, finds the servers for the
 * nexthop (smtp_route.c), talks to them (smtp_proto.c), logs one outcome
 * line per recipient ("QID: to=<...>, relay=..., delay=..., delays=a/b/c/d,
 * dsn=..., status=...", common/delivery_log.h; c is the time to a usable
 * session, d the transaction) and answers one record per recipient in
 * request order
 *   {rcpt, status=sent|deferred|bounced, dsn, relay, reason}
 * then {done=1}.  relay is "host[addr]:port" of the server whose answer
 * decided, or "none" when no server was reached (qmgr counts such requests
 * as connection failures).  It never writes the queue file.
 *
 * Connection reuse: after a transaction that left the session clean the
 * agent keeps it, keyed by the request's nexthop, while it waits for its
 * next request.  A request for the same nexthop within
 * smtp_connection_cache_time_limit (and before the session is
 * smtp_connection_reuse_time_limit old) reuses it, starting with RSET
 * (pipelined with MAIL/RCPT/DATA when the server offers PIPELINING; a
 * failed RSET means a fresh connection, as if there had been no cached
 * one); any other request QUITs it first.  An idle cached plaintext session is closed by a
 * SIGALRM after the time limit (QUIT written from the handler: write(2) is
 * async-signal-safe) and shut down; a TLS one is shut down without QUIT.  master hands
 * requests to idle agents in no fixed order, so reuse is best effort;
 * with smtp_destination_concurrency_limit = 1 it is systematic.
 */
#include <ctype.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "dns.h"
#include "delivery_request.h"
#include "ipc.h"
#include "log.h"
#include "mem.h"
#include "queue.h"
#include "server.h"
#include "smtp.h"
#include "smtp_nexthop.h"
#include "smtp_tls.h"

struct smtp_params smtp_params;

/* ---- connection cache ------------------------------------------------- */

static struct smtp_session *cached;
static volatile sig_atomic_t cached_fd = -1;
static volatile sig_atomic_t cached_plain;
static volatile sig_atomic_t cached_closed;

static void cache_alarm(int sig)
{
    (void)sig;
    int fd = cached_fd;
    if (fd < 0)
        return;
    if (cached_plain) {
        static const char quit[] = "QUIT\r\n";
        ssize_t w = write(fd, quit, sizeof(quit) - 1);
        (void)w;
    }
    /* shutdown, not close: the descriptor stays ours until cache_take()
     * frees the session (a TLS session may still try its close_notify,
     * which then fails at once) */
    shutdown(fd, SHUT_RDWR);
    cached_fd = -1;
    cached_closed = 1;
}

/* Take the cached session out (alarm off); NULL when there is none. */
static struct smtp_session *cache_take(void)
{
    alarm(0);
    struct smtp_session *s = cached;
    cached = NULL;
    cached_fd = -1;
    if (s && cached_closed) {
        /* the handler already shut the connection down */
        s->io.failed = SMTP_IO_LOST;
        smtp_session_free(s);
        s = NULL;
    }
    cached_closed = 0;
    return s;
}

static void cache_put(struct smtp_session *s)
{
    clock_gettime(CLOCK_MONOTONIC, &s->idle_since);
    cached = s;
    cached_closed = 0;
    cached_plain = !s->tls;
    cached_fd = s->io.fd;
    alarm((unsigned)(smtp_params.cache_time_limit > 0 ? smtp_params.cache_time_limit : 1));
}

static void cache_exit(void)
{
    struct smtp_session *s = cache_take();
    if (s)
        smtp_session_quit(s);
}

/* ---- results ---------------------------------------------------------- */

void smtp_rcpt_result(struct smtp_request *req, struct smtp_rcpt *r,
                      enum smtp_status st, const char *dsn, const char *relay,
                      const char *fmt, ...)
{
    (void)req;
    r->status = st;
    r->end = delivery_now();
    r->accepted = 0;
    strbuf_set_str(&r->dsn, dsn);
    strbuf_set_str(&r->relay, relay && *relay ? relay : "none");
    va_list ap;
    va_start(ap, fmt);
    strbuf_reset(&r->reason);
    strbuf_vappendf(&r->reason, fmt, ap);
    va_end(ap);
}

static int pending_count(const struct smtp_request *req)
{
    int n = 0;
    for (int i = 0; i < req->nrcpt; i++)
        n += req->rcpts[i].status == SMTP_PENDING;
    return n;
}

/* ---- the request --------------------------------------------------------- */

static int has_8bit(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s > 127)
            return 1;
    return 0;
}

/* Open and scan the queue file: size, 8-bit content, SMTPUTF8 need. */
static int open_queue_file(struct smtp_request *req, const char *queue_file, strbuf *why)
{
    req->queue_fd = delivery_queue_file_open(req->qid, queue_file, &req->msg, why);
    if (req->queue_fd < 0)
        return -1;
    req->loaded = 1;
    queue_content_reader *cr = queue_content_open(req->queue_fd, &req->msg);
    strbuf line, err;
    strbuf_init(&line);
    strbuf_init(&err);
    int in_headers = 1, header_8bit = 0, rc = 0, got;
    while ((got = queue_content_next(cr, &line, &err)) > 0) {
        int eight = 0;
        for (size_t i = 0; i < line.len; i++)
            if ((unsigned char)line.data[i] > 127) {
                eight = 1;
                break;
            }
        if (eight) {
            req->body_8bit = 1;
            if (in_headers)
                header_8bit = 1;
        }
        if (line.len == 0)
            in_headers = 0;
        if (req->body_8bit && !in_headers)
            break;
    }
    if (got < 0) {
        strbuf_printf(why, "queue file: %s", strbuf_str(&err));
        rc = -1;
    }
    queue_content_close(cr);
    strbuf_release(&line);
    strbuf_release(&err);
    /* SMTPUTF8 is needed when the sender asked for it and something
     * actually is UTF-8: an address or a header (RFC 6531). */
    const char *protocol = queue_message_attr(&req->msg, "protocol");
    if (protocol && strncasecmp(protocol, "UTF8SMTP", 8) == 0) {
        int need = header_8bit || has_8bit(req->sender);
        for (int i = 0; i < req->nrcpt && !need; i++)
            need = has_8bit(req->rcpts[i].address);
        req->need_smtputf8 = need;
    }
    return rc;
}

/* Deliver every recipient of req; results in req->rcpts. */
static void smtp_deliver(struct smtp_request *req)
{
    int sessions = 0;

    /* A cached session to the same nexthop first. */
    struct smtp_session *s = cache_take();
    if (s) {
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        long long idle = now.tv_sec - s->idle_since.tv_sec;
        int fresh = strcmp(s->dest, req->nexthop) == 0
                    && idle <= smtp_params.cache_time_limit
                    && time(NULL) - s->opened < smtp_params.reuse_time_limit;
        if (fresh) {
            /* a reused session is usable at once (its RSET goes with MAIL) */
            req->times.session = delivery_now();
            s->reused++;
            s->rset_due = 1;
            log_debug("%s: reusing connection to %s", req->qid, s->relay);
            int rc = smtp_transaction(s, req);
            if (rc == SMTP_TRANS_STALE) {
                /* RSET failed: nothing was tried, this session does not
                 * count, and it must not be named as the relay */
                strbuf_reset(&req->last_relay);
                smtp_session_free(s);
            } else {
                sessions++;
                if (rc == 0 && pending_count(req) == 0 && smtp_params.cache_on_demand) {
                    cache_put(s);
                    return;
                }
                smtp_session_quit(s);   /* QUIT is skipped when it failed */
                if (pending_count(req) == 0)
                    return;
            }
        } else {
            smtp_session_quit(s);
        }
    }

    struct smtp_route route = { 0 };
    struct smtp_route_error rerr;
    rerr.status = SMTP_DEFERRED;
    strbuf_init(&rerr.dsn);
    strbuf_init(&rerr.reason);
    if (smtp_route_build(req->nexthop, &route, &rerr) < 0) {
        for (int i = 0; i < req->nrcpt; i++)
            if (req->rcpts[i].status == SMTP_PENDING)
                smtp_rcpt_result(req, &req->rcpts[i], rerr.status, strbuf_str(&rerr.dsn),
                                 "none", "%s", strbuf_str(&rerr.reason));
        goto out;
    }
    for (int t = 0; t < route.n && pending_count(req) > 0; t++) {
        if (smtp_params.mx_session_limit > 0 && sessions >= smtp_params.mx_session_limit)
            break;
        s = smtp_session_open(&route.v[t], req->nexthop, NULL, req);
        if (!s)
            continue;
        req->times.session = delivery_now();
        sessions++;
        int usable = smtp_transaction(s, req) == 0;
        if (pending_count(req) == 0) {
            if (usable && smtp_params.cache_on_demand)
                cache_put(s);
            else if (usable)
                smtp_session_quit(s);
            else
                smtp_session_free(s);
            break;
        }
        if (usable)
            smtp_session_quit(s);
        else
            smtp_session_free(s);
    }
    /* What no server took is deferred with the last reason. */
    for (int i = 0; i < req->nrcpt; i++)
        if (req->rcpts[i].status == SMTP_PENDING) {
            const char *dsn = strbuf_str(&req->last_dsn);
            char soft[8];
            if (!*dsn)
                dsn = "4.4.1";
            if (dsn[0] != '4') {        /* a soft failure is never final */
                snprintf(soft, sizeof(soft), "4%s", dsn + 1);
                dsn = soft;
            }
            smtp_rcpt_result(req, &req->rcpts[i], SMTP_DEFERRED, dsn,
                             strbuf_str(&req->last_relay), "%s",
                             req->last_reason.len ? strbuf_str(&req->last_reason)
                                                  : "no server available");
        }
out:
    smtp_route_free(&route);
    strbuf_release(&rerr.dsn);
    strbuf_release(&rerr.reason);
}

/* Log the outcome line and answer qmgr (common/delivery_request.h). */
static void smtp_reply(struct delivery_request *dr, const struct smtp_request *req,
                       const struct smtp_rcpt *r)
{
    static const char *const names[] = { "deferred", "sent", "bounced", "deferred" };
    delivery_request_reply(dr, r->address, r->orcpt, strbuf_str(&r->relay), &req->times,
                           r->end, strbuf_str(&r->dsn), names[r->status],
                           strbuf_str(&r->reason));
}

static void smtp_serve(int client_fd)
{
    alarm(0);                   /* a cached session waits untouched until used */
    struct delivery_request dr;
    struct smtp_request req;
    memset(&req, 0, sizeof(req));
    req.queue_fd = -1;
    strbuf_init(&req.last_dsn);
    strbuf_init(&req.last_reason);
    strbuf_init(&req.last_relay);
    strbuf why;
    strbuf_init(&why);

    if (delivery_request_receive(&dr, client_fd, DELIVERY_NEED_NEXTHOP) <= 0)
        goto done;
    req.qid = dr.qid;
    req.sender = dr.sender;
    req.nexthop = dr.nexthop;
    req.envid = dr.envid;
    req.ret = dr.ret;
    req.times = dr.times;
    req.rcpts = xcalloc((size_t)dr.nrcpt, sizeof(*req.rcpts));
    for (int i = 0; i < dr.nrcpt; i++) {
        struct smtp_rcpt *r = &req.rcpts[req.nrcpt++];
        r->address = dr.rcpts[i].address;
        r->orcpt = dr.rcpts[i].orcpt;
        r->notify = dr.rcpts[i].notify;
        strbuf_init(&r->dsn);
        strbuf_init(&r->reason);
        strbuf_init(&r->relay);
    }

    if (open_queue_file(&req, dr.queue_file, &why) < 0) {
        log_warning("%s: %s", req.qid, strbuf_str(&why));
        for (int i = 0; i < req.nrcpt; i++)
            smtp_rcpt_result(&req, &req.rcpts[i], SMTP_DEFERRED, "4.3.0", "none",
                             "cannot read queue file: %s", strbuf_str(&why));
    } else {
        smtp_deliver(&req);
    }
    for (int i = 0; i < req.nrcpt; i++)
        smtp_reply(&dr, &req, &req.rcpts[i]);
    delivery_request_done(&dr);

done:
    for (int i = 0; i < req.nrcpt; i++) {
        strbuf_release(&req.rcpts[i].dsn);
        strbuf_release(&req.rcpts[i].reason);
        strbuf_release(&req.rcpts[i].relay);
    }
    xfree(req.rcpts);
    if (req.loaded)
        queue_message_free(&req.msg);
    if (req.queue_fd >= 0)
        close(req.queue_fd);
    strbuf_release(&req.last_dsn);
    strbuf_release(&req.last_reason);
    strbuf_release(&req.last_relay);
    strbuf_release(&why);
    delivery_request_free(&dr);
    if (cached && !cached_closed)       /* the idle clock runs again */
        alarm((unsigned)(smtp_params.cache_time_limit > 0 ? smtp_params.cache_time_limit : 1));
}

static int time_param(const char *name)
{
    long long v = config_time(name);
    return v > 0x7fffffff ? 0x7fffffff : (int)v;
}

static void smtp_pre_jail(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    /* resolv.conf is read now, before any chroot (see doc/smtp.md) */
    strbuf err;
    strbuf_init(&err);
    if (dns_init(config_str("smtp_dns_resolver"), &err) < 0)
        log_fatal("smtp_dns_resolver: %s", strbuf_str(&err));
    strbuf_release(&err);
    smtp_tls_init();
}

static void smtp_post_jail(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    struct smtp_params *p = &smtp_params;
    p->connect_timeout = time_param("smtp_connect_timeout");
    p->helo_timeout = time_param("smtp_helo_timeout");
    p->mail_timeout = time_param("smtp_mail_timeout");
    p->rcpt_timeout = time_param("smtp_rcpt_timeout");
    p->data_init_timeout = time_param("smtp_data_init_timeout");
    p->data_xfer_timeout = time_param("smtp_data_xfer_timeout");
    p->data_done_timeout = time_param("smtp_data_done_timeout");
    p->quit_timeout = time_param("smtp_quit_timeout");
    p->rset_timeout = time_param("smtp_rset_timeout");
    p->starttls_timeout = time_param("smtp_starttls_timeout");
    const char *port = config_str("smtp_tcp_port");
    p->tcp_port = smtp_port_parse(port);
    if (p->tcp_port < 0)
        log_fatal("smtp_tcp_port: bad port: %s", port);
    p->helo_name = config_str("smtp_helo_name");
    p->myhostname = config_str("myhostname");
    p->mx_address_limit = (int)config_int("smtp_mx_address_limit");
    p->mx_session_limit = (int)config_int("smtp_mx_session_limit");
    p->cache_on_demand = config_bool("smtp_connection_cache_on_demand");
    p->cache_time_limit = time_param("smtp_connection_cache_time_limit");
    p->reuse_time_limit = time_param("smtp_connection_reuse_time_limit");
    p->skip_5xx_greeting = config_bool("smtp_skip_5xx_greeting");
    p->never_send_ehlo = config_bool("smtp_never_send_ehlo");
    p->fallback_relay = config_str("smtp_fallback_relay");
    p->line_length_limit = config_int("smtp_line_length_limit");
    const char *proto = config_str("inet_protocols");
    p->families = 0;
    int n = 0;
    char **list = config_list(proto, &n);
    for (int i = 0; i < n; i++) {
        if (strcasecmp(list[i], "all") == 0)
            p->families |= DNS_WANT_V4 | DNS_WANT_V6;
        else if (strcasecmp(list[i], "ipv4") == 0)
            p->families |= DNS_WANT_V4;
        else if (strcasecmp(list[i], "ipv6") == 0)
            p->families |= DNS_WANT_V6;
    }
    config_list_free(list);
    if (!p->families)
        p->families = DNS_WANT_V4 | DNS_WANT_V6;
    list = config_list(config_str("smtp_host_lookup"), &n);
    for (int i = 0; i < n; i++) {
        if (strcasecmp(list[i], "dns") == 0)
            p->host_lookup_dns = 1;
        else if (strcasecmp(list[i], "native") == 0)
            p->host_lookup_native = 1;
        else
            log_warning("smtp_host_lookup: unknown method \"%s\" ignored", list[i]);
    }
    config_list_free(list);
    if (!p->host_lookup_dns && !p->host_lookup_native)
        p->host_lookup_dns = 1;

    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = cache_alarm;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    sigaction(SIGALRM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    atexit(cache_exit);
}

int main(int argc, char **argv)
{
    static const struct server_spec spec = {
        .program = "smtp",
        .mode = SERVER_SINGLE,
        .pre_jail = smtp_pre_jail,
        .post_jail = smtp_post_jail,
        .serve = smtp_serve,
    };
    return server_main(argc, argv, &spec);
}
