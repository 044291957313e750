/*
 * smtp_proto.c - the ESMTP conversation with one server.
 *
 * Interface: smtp_session_open(), smtp_transaction(), smtp_session_reset(),
 * smtp_session_quit(), smtp_session_free() (smtp.h).
 *
 * A session: TCP connect (smtp_connect_timeout), the 220 greeting and
 * EHLO (HELO when EHLO is refused, or with smtp_never_send_ehlo) within
 * smtp_helo_timeout; the EHLO keywords PIPELINING, SIZE, 8BITMIME, DSN,
 * SMTPUTF8, STARTTLS, AUTH are remembered.  A transaction: MAIL FROM with
 * SIZE=, BODY=8BITMIME, SMTPUTF8, RET=, ENVID= as the server offers them,
 * one RCPT TO per pending recipient (NOTIFY=, ORCPT= with DSN), DATA, the
 * dot-stuffed content with CRLF line ends, ".".  With PIPELINING, MAIL,
 * RCPT and DATA go in one write and the replies are read in order; on a
 * reused session (rset_due) an RSET leads that write, and a failed RSET
 * returns SMTP_TRANS_STALE with nothing attempted.
 *
 * Outcomes (Postfix's): a 5xx to MAIL bounces every pending recipient, a
 * 5xx to RCPT that recipient, a 5xx to DATA or the end of data the accepted
 * ones; 4xx to MAIL or RCPT leaves recipients pending for the next server
 * (deferred at the end with that reason), 4xx to DATA or end of data
 * defers them.  Lost connections and timeouts before the end of data leave
 * recipients pending; after "." was sent they defer (the server may have
 * the message: at worst it is delivered twice, never lost).  A message
 * needing SMTPUTF8 to a server without it bounces (5.6.7); one over the
 * server's SIZE bounces (5.3.4) without being sent.  Reasons quote the
 * server: "host H[A] said: 550 5.1.1 ... (in reply to RCPT TO command)".
 * A greeting other than 220 means the next server, except a 5xx greeting
 * with smtp_skip_5xx_greeting = no: then every pending recipient bounces
 * with it ("host H[A] refused to talk to me: 554 ...").
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "mem.h"
#include "smtp.h"
#include "smtp_reply.h"
#include "smtp_tls.h"

/* Longest reply line kept, and most lines of one reply. */
#define REPLY_LINE_MAX 2048
#define REPLY_LINES_MAX 1000

struct reply {
    int code;
    strbuf text;                /* "550 5.1.1 text" lines joined by blanks */
    strbuf dsn;                 /* enhanced code, or class.0.0 */
    strbuf lines;               /* EHLO: line texts, LF separated */
};

static void reply_init(struct reply *r)
{
    memset(r, 0, sizeof(*r));
    strbuf_init(&r->text);
    strbuf_init(&r->dsn);
    strbuf_init(&r->lines);
}

static void reply_free(struct reply *r)
{
    strbuf_release(&r->text);
    strbuf_release(&r->dsn);
    strbuf_release(&r->lines);
}

/* Why an I/O step failed, Postfix-style. */
static void io_failure(struct smtp_session *s, const char *while_doing, strbuf *out)
{
    if (s->io.failed == SMTP_IO_TIMEOUT)
        strbuf_printf(out, "conversation with %s[%s] timed out while %s",
                      s->host, s->addr, while_doing);
    else
        strbuf_printf(out, "lost connection with %s[%s] while %s",
                      s->host, s->addr, while_doing);
}

/* Read one whole (possibly multi-line) reply.  0 ok, -1 I/O failure or
 * garbage (io->failed set to LOST for garbage). */
static int read_reply(struct smtp_session *s, int timeout, struct reply *r)
{
    strbuf line;
    strbuf_init(&line);
    strbuf_reset(&r->text);
    strbuf_reset(&r->lines);
    strbuf_reset(&r->dsn);
    smtp_io_set_timeout(&s->io, timeout);
    int nlines = 0, rc = -1;
    for (;;) {
        if (smtp_io_getline(&s->io, &line, REPLY_LINE_MAX) < 0)
            break;
        int code, more;
        const char *text;
        if (smtp_reply_line(line.data ? line.data : "", line.len, &code, &more, &text) < 0
            || memchr(line.data, '\0', line.len) != NULL) {
            log_warning("%s[%s]: malformed reply: %.100s", s->host, s->addr,
                        strbuf_str(&line));
            s->io.failed = SMTP_IO_LOST;
            break;
        }
        if (nlines == 0) {
            r->code = code;
            strbuf_printf(&r->text, "%d", code);
        }
        if (nlines < REPLY_LINES_MAX) {
            const char *t = text;
            if (nlines > 0) {
                /* continuation lines repeat the enhanced code: drop it */
                strbuf tmp;
                strbuf_init(&tmp);
                t += smtp_reply_enhanced(t, code / 100, &tmp);
                strbuf_release(&tmp);
            }
            if (*t) {
                strbuf_append_char(&r->text, ' ');
                strbuf_append_str(&r->text, t);
            }
            strbuf_append_str(&r->lines, text);
            strbuf_append_char(&r->lines, '\n');
        }
        nlines++;
        if (!more) {
            rc = 0;
            break;
        }
    }
    if (rc == 0) {
        const char *t = strbuf_str(&r->text) + 3;
        while (*t == ' ')
            t++;
        if (!smtp_reply_enhanced(t, r->code / 100, &r->dsn))
            strbuf_printf(&r->dsn, "%d.0.0", r->code / 100);
    }
    strbuf_release(&line);
    return rc;
}

/* The reason text for a server reply. */
static void said(struct smtp_session *s, const struct reply *r, const char *cmd, strbuf *out)
{
    strbuf_printf(out, "host %s[%s] said: %s (in reply to %s command)",
                  s->host, s->addr, strbuf_str(&r->text), cmd);
}

static void soft_failure(struct smtp_request *req, struct smtp_session *s,
                         const char *dsn, const strbuf *reason)
{
    strbuf_set_str(&req->last_dsn, dsn);
    strbuf_set(&req->last_reason, reason->data, reason->len);
    if (s)
        strbuf_set_str(&req->last_relay, s->relay);
}

static void parse_ehlo(struct smtp_session *s, const struct reply *r)
{
    strbuf kw, arg;
    strbuf_init(&kw);
    strbuf_init(&arg);
    s->features = SMTP_FEAT_ESMTP;
    const char *p = strbuf_str(&r->lines);
    int first = 1;
    while (*p) {
        const char *nl = strchr(p, '\n');
        size_t n = nl ? (size_t)(nl - p) : strlen(p);
        char *one = xstrndup(p, n);
        p += n + (nl ? 1 : 0);
        if (first) {                    /* the greeting line: host name */
            first = 0;
            xfree(one);
            continue;
        }
        smtp_ehlo_keyword(one, &kw, &arg);
        const char *k = strbuf_str(&kw);
        if (strcmp(k, "PIPELINING") == 0)
            s->features |= SMTP_FEAT_PIPELINING;
        else if (strcmp(k, "SIZE") == 0) {
            s->features |= SMTP_FEAT_SIZE;
            s->size_limit = strtoll(strbuf_str(&arg), NULL, 10);
            if (s->size_limit < 0)
                s->size_limit = 0;
        } else if (strcmp(k, "8BITMIME") == 0)
            s->features |= SMTP_FEAT_8BITMIME;
        else if (strcmp(k, "DSN") == 0)
            s->features |= SMTP_FEAT_DSN;
        else if (strcmp(k, "SMTPUTF8") == 0)
            s->features |= SMTP_FEAT_SMTPUTF8;
        else if (strcmp(k, "STARTTLS") == 0)
            s->features |= SMTP_FEAT_STARTTLS;
        else if (strcmp(k, "AUTH") == 0) {
            s->features |= SMTP_FEAT_AUTH;
            if (s->auth_mechs.len)
                strbuf_append_char(&s->auth_mechs, ' ');
            strbuf_append(&s->auth_mechs, arg.data, arg.len);
        }
        xfree(one);
    }
    strbuf_release(&kw);
    strbuf_release(&arg);
}

/* EHLO (or HELO).  0 ok; -1 with the reason in req (session unusable). */
int smtp_session_helo(struct smtp_session *s, struct smtp_request *req)
{
    struct reply r;
    reply_init(&r);
    strbuf why;
    strbuf_init(&why);
    int rc = -1;
    s->features = 0;
    s->size_limit = 0;
    strbuf_reset(&s->auth_mechs);
    smtp_io_set_timeout(&s->io, smtp_params.helo_timeout);
    if (!smtp_params.never_send_ehlo) {
        smtp_io_puts(&s->io, "EHLO ");
        smtp_io_puts(&s->io, smtp_params.helo_name);
        smtp_io_puts(&s->io, "\r\n");
        if (read_reply(s, smtp_params.helo_timeout, &r) < 0) {
            io_failure(s, "performing the EHLO handshake", &why);
            soft_failure(req, s, "4.4.2", &why);
            goto out;
        }
        if (r.code / 100 == 2) {
            parse_ehlo(s, &r);
            rc = 0;
            goto out;
        }
    }
    smtp_io_puts(&s->io, "HELO ");
    smtp_io_puts(&s->io, smtp_params.helo_name);
    smtp_io_puts(&s->io, "\r\n");
    if (read_reply(s, smtp_params.helo_timeout, &r) < 0) {
        io_failure(s, "performing the HELO handshake", &why);
        soft_failure(req, s, "4.4.2", &why);
        goto out;
    }
    if (r.code / 100 != 2) {
        strbuf_printf(&why, "host %s[%s] refused to talk to me: %s", s->host, s->addr,
                      strbuf_str(&r.text));
        soft_failure(req, s, strbuf_str(&r.dsn), &why);
        goto out;
    }
    rc = 0;
out:
    reply_free(&r);
    strbuf_release(&why);
    return rc;
}

void smtp_session_free(struct smtp_session *s)
{
    if (!s)
        return;
    smtp_io_free(&s->io);
    xfree(s->host);
    xfree(s->relay);
    xfree(s->dest);
    strbuf_release(&s->auth_mechs);
    xfree(s);
}

void smtp_session_quit(struct smtp_session *s)
{
    if (!s)
        return;
    if (!s->io.failed) {
        struct reply r;
        reply_init(&r);
        smtp_io_puts(&s->io, "QUIT\r\n");
        (void)read_reply(s, smtp_params.quit_timeout, &r);
        reply_free(&r);
    }
    smtp_session_free(s);
}

int smtp_session_reset(struct smtp_session *s)
{
    struct reply r;
    reply_init(&r);
    smtp_io_puts(&s->io, "RSET\r\n");
    int rc = read_reply(s, smtp_params.rset_timeout, &r) == 0 && r.code / 100 == 2 ? 0 : -1;
    reply_free(&r);
    return rc;
}

/* Non-blocking connect within smtp_connect_timeout.  fd or -1 (errno). */
static int connect_to(const struct smtp_target *t)
{
    struct sockaddr_storage ss;
    socklen_t slen;
    memset(&ss, 0, sizeof(ss));
    if (t->addr.family == AF_INET) {
        struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
        sin->sin_family = AF_INET;
        sin->sin_port = htons((uint16_t)t->port);
        memcpy(&sin->sin_addr, t->addr.addr, 4);
        slen = sizeof(*sin);
    } else {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons((uint16_t)t->port);
        memcpy(&sin6->sin6_addr, t->addr.addr, 16);
        slen = sizeof(*sin6);
    }
    int fd = socket(t->addr.family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return -1;
    if (connect(fd, (struct sockaddr *)&ss, slen) == 0)
        return fd;
    if (errno != EINPROGRESS) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    if (!smtp_io_wait(fd, 1, (long long)smtp_params.connect_timeout * 1000)) {
        close(fd);
        errno = ETIMEDOUT;
        return -1;
    }
    int err = 0;
    socklen_t elen = sizeof(err);
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen) < 0)
        err = errno;
    if (err) {
        close(fd);
        errno = err;
        return -1;
    }
    return fd;
}

/* Connect, greet, EHLO, STARTTLS, AUTH.  *retry_plain set when an
 * opportunistic TLS handshake failed (the caller may try once more
 * without TLS, as Postfix does). */
static void bounce_pending(struct smtp_request *req, struct smtp_session *s,
                           const char *dsn, const strbuf *reason);

static struct smtp_session *session_open(const struct smtp_target *t, const char *dest,
                                         struct smtp_request *req, int no_tls,
                                         int *retry_plain)
{
    char addr[INET6_ADDRSTRLEN];
    dns_addr_str(&t->addr, addr, sizeof(addr));
    strbuf why;
    strbuf_init(&why);
    int fd = connect_to(t);
    if (fd < 0) {
        strbuf_printf(&why, "connect to %s[%s]:%d: %s", t->host, addr, t->port,
                      errno == ETIMEDOUT ? "Connection timed out" : strerror(errno));
        soft_failure(req, NULL, "4.4.1", &why);
        strbuf_release(&why);
        return NULL;
    }
    struct smtp_session *s = xcalloc(1, sizeof(*s));
    smtp_io_init(&s->io, fd);
    s->host = xstrdup(t->host);
    memcpy(s->addr, addr, sizeof(addr));
    s->port = t->port;
    s->from_mx = t->from_mx;
    s->no_tls = no_tls;
    strbuf tmp;
    strbuf_init(&tmp);
    strbuf_printf(&tmp, "%s[%s]:%d", t->host, addr, t->port);
    s->relay = strbuf_detach(&tmp, NULL);
    s->dest = xstrdup(dest);
    strbuf_init(&s->auth_mechs);
    s->opened = time(NULL);

    struct reply r;
    reply_init(&r);
    if (read_reply(s, smtp_params.helo_timeout, &r) < 0) {
        io_failure(s, "receiving the initial server greeting", &why);
        soft_failure(req, s, "4.4.2", &why);
        goto fail;
    }
    if (r.code != 220) {
        strbuf_printf(&why, "host %s[%s] refused to talk to me: %s", s->host, s->addr,
                      strbuf_str(&r.text));
        if (r.code / 100 == 5 && !smtp_params.skip_5xx_greeting)
            bounce_pending(req, s, strbuf_str(&r.dsn)[0] == '5' ? strbuf_str(&r.dsn) : "5.0.0",
                           &why);
        else
            soft_failure(req, s, r.code / 100 == 5 ? "4.4.2" : strbuf_str(&r.dsn), &why);
        goto fail;
    }
    if (smtp_session_helo(s, req) < 0)
        goto fail;
    int tls_rc = smtp_tls_session_start(s, req);
    if (tls_rc != 0) {
        *retry_plain = tls_rc > 0;
        goto fail;
    }
    if (smtp_sasl_session_auth(s, req) < 0)
        goto fail;
    reply_free(&r);
    strbuf_release(&why);
    return s;
fail:
    reply_free(&r);
    strbuf_release(&why);
    if (!s->io.failed) {
        reply_init(&r);
        smtp_io_puts(&s->io, "QUIT\r\n");
        (void)read_reply(s, smtp_params.quit_timeout, &r);
        reply_free(&r);
    }
    smtp_session_free(s);
    return NULL;
}

struct smtp_session *smtp_session_open(const struct smtp_target *t, const char *dest,
                                       strbuf *unused, struct smtp_request *req)
{
    (void)unused;
    int retry_plain = 0;
    struct smtp_session *s = session_open(t, dest, req, 0, &retry_plain);
    if (!s && retry_plain)
        s = session_open(t, dest, req, 1, &retry_plain);
    return s;
}

/* RFC 3461 xtext */
static void xtext_append(strbuf *out, const char *s)
{
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p < 33 || *p > 126 || *p == '+' || *p == '=')
            strbuf_appendf(out, "+%02X", *p);
        else
            strbuf_append_char(out, (char)*p);
    }
}

static void finish_rcpt(struct smtp_request *req, struct smtp_session *s,
                        struct smtp_rcpt *rc, enum smtp_status st, const char *dsn,
                        const strbuf *reason)
{
    smtp_rcpt_result(req, rc, st, dsn, s->relay, "%s", strbuf_str(reason));
}

/* Every recipient still pending bounces with dsn and reason: the message
 * cannot go to this server at all (MAIL refused, SMTPUTF8, SIZE). */
static void bounce_pending(struct smtp_request *req, struct smtp_session *s,
                           const char *dsn, const strbuf *reason)
{
    for (int i = 0; i < req->nrcpt; i++)
        if (req->rcpts[i].status == SMTP_PENDING)
            finish_rcpt(req, s, &req->rcpts[i], SMTP_BOUNCED, dsn, reason);
}

/* The reply to one RCPT TO decides that recipient, the same with or
 * without PIPELINING: 2xx accepts it for DATA, 5xx bounces it, anything
 * else leaves it pending for the next server, the reply becoming the
 * request's last soft failure (its deferral reason if no server takes it).
 * why is scratch space for the reason. */
static void rcpt_replied(struct smtp_request *req, struct smtp_session *s,
                         struct smtp_rcpt *rc, const struct reply *r, strbuf *why)
{
    if (r->code / 100 == 2) {
        rc->accepted = 1;
        return;
    }
    said(s, r, "RCPT TO", why);
    if (r->code / 100 == 5)
        finish_rcpt(req, s, rc, SMTP_BOUNCED, strbuf_str(&r->dsn), why);
    else
        soft_failure(req, s, strbuf_str(&r->dsn), why);
}

/* A refusal of DATA or of the end of data (cmd) decides every accepted
 * recipient: 5xx bounces, anything else defers, with the server's reply. */
static void accepted_refused(struct smtp_request *req, struct smtp_session *s,
                             const struct reply *r, const char *cmd, strbuf *why)
{
    said(s, r, cmd, why);
    for (int i = 0; i < req->nrcpt; i++)
        if (req->rcpts[i].accepted)
            finish_rcpt(req, s, &req->rcpts[i],
                        r->code / 100 == 5 ? SMTP_BOUNCED : SMTP_DEFERRED,
                        strbuf_str(&r->dsn), why);
}

/* Copy what decides outcomes (code, text, enhanced code) of a reply kept
 * while the pipelined replies after it are read into the same buffer. */
static void reply_copy(struct reply *to, const struct reply *from)
{
    to->code = from->code;
    strbuf_set(&to->text, from->text.data, from->text.len);
    strbuf_set(&to->dsn, from->dsn.data, from->dsn.len);
}

/* Send the content, dot-stuffed.  0 ok, -1 I/O or queue file error
 * (*local_error set when the queue file was the problem). */
static int send_content(struct smtp_session *s, struct smtp_request *req,
                        strbuf *why, int *local_error)
{
    queue_content_reader *cr = queue_content_open(req->queue_fd, &req->msg);
    strbuf line, err;
    strbuf_init(&line);
    strbuf_init(&err);
    int rc = 0;
    *local_error = 0;
    smtp_io_set_timeout(&s->io, smtp_params.data_xfer_timeout);
    for (;;) {
        int got = queue_content_next(cr, &line, &err);
        if (got < 0) {
            strbuf_printf(why, "error reading queue file: %s", strbuf_str(&err));
            *local_error = 1;
            rc = -1;
            break;
        }
        if (got == 0)
            break;
        if (line.len && line.data[0] == '.')
            smtp_io_write(&s->io, ".", 1);
        /* Postfix's smtp_line_length_limit: longer lines are broken with
         * CRLF SPACE (a header stays one folded header) */
        size_t limit = smtp_params.line_length_limit > 1
                       ? (size_t)smtp_params.line_length_limit : 0;
        size_t off = 0, first = limit && line.len > limit ? limit : line.len;
        smtp_io_write(&s->io, line.data, first);
        off = first;
        while (off < line.len) {
            size_t n = line.len - off > limit - 1 ? limit - 1 : line.len - off;
            smtp_io_write(&s->io, "\r\n ", 3);
            smtp_io_write(&s->io, line.data + off, n);
            off += n;
        }
        smtp_io_write(&s->io, "\r\n", 2);
        if (s->io.out.len >= 65536 && smtp_io_flush(&s->io) < 0) {
            io_failure(s, "sending message body", why);
            rc = -1;
            break;
        }
    }
    queue_content_close(cr);
    strbuf_release(&line);
    strbuf_release(&err);
    return rc;
}

int smtp_transaction(struct smtp_session *s, struct smtp_request *req)
{
    struct reply r;
    reply_init(&r);
    strbuf why, cmd;
    strbuf_init(&why);
    strbuf_init(&cmd);
    int usable = 0, npending = 0;
    for (int i = 0; i < req->nrcpt; i++) {
        req->rcpts[i].accepted = 0;
        if (req->rcpts[i].status == SMTP_PENDING)
            npending++;
    }
    if (npending == 0)
        goto out;
    strbuf_set_str(&req->last_relay, s->relay);

    if (req->need_smtputf8 && !(s->features & SMTP_FEAT_SMTPUTF8)) {
        strbuf_printf(&why, "SMTPUTF8 is required, but was not offered by host %s[%s]",
                      s->host, s->addr);
        bounce_pending(req, s, "5.6.7", &why);
        goto out;
    }
    if ((s->features & SMTP_FEAT_SIZE) && s->size_limit > 0 && req->msg.size > s->size_limit) {
        strbuf_printf(&why, "message size %lld exceeds size limit %lld of server %s[%s]",
                      req->msg.size, s->size_limit, s->host, s->addr);
        bounce_pending(req, s, "5.3.4", &why);
        goto out;
    }

    int pipelining = (s->features & SMTP_FEAT_PIPELINING) != 0;
    int dsn = (s->features & SMTP_FEAT_DSN) != 0;
    /* A reused session is checked with RSET first.  With PIPELINING the
     * RSET leads the MAIL/RCPT/DATA group (RFC 2920 allows it anywhere in
     * a group): one round trip less per message; its reply is read first
     * and anything but 2xx means nothing after it counts (stale). */
    int rset_in_group = 0;
    if (s->rset_due) {
        s->rset_due = 0;
        if (pipelining) {
            smtp_io_puts(&s->io, "RSET\r\n");
            rset_in_group = 1;
        } else if (smtp_session_reset(s) < 0) {
            usable = SMTP_TRANS_STALE;
            goto out;
        }
    }
    strbuf_printf(&cmd, "MAIL FROM:<%s>", req->sender);
    if (s->features & SMTP_FEAT_SIZE)
        strbuf_appendf(&cmd, " SIZE=%lld", req->msg.size);
    if (req->body_8bit && (s->features & SMTP_FEAT_8BITMIME))
        strbuf_append_str(&cmd, " BODY=8BITMIME");
    if (req->need_smtputf8)
        strbuf_append_str(&cmd, " SMTPUTF8");
    if (dsn && req->ret && *req->ret)
        strbuf_appendf(&cmd, " RET=%s", req->ret);
    if (dsn && req->envid && *req->envid) {
        strbuf_append_str(&cmd, " ENVID=");
        xtext_append(&cmd, req->envid);
    }
    strbuf_append_str(&cmd, "\r\n");
    smtp_io_write(&s->io, cmd.data, cmd.len);

    /* Without pipelining each command waits for its reply. */
    int mail_ok = 1;
    if (!pipelining) {
        if (read_reply(s, smtp_params.mail_timeout, &r) < 0) {
            io_failure(s, "sending MAIL FROM", &why);
            soft_failure(req, s, "4.4.2", &why);
            goto out;
        }
        mail_ok = r.code / 100 == 2;
        if (!mail_ok)
            goto mail_rejected;
    }
    for (int i = 0; i < req->nrcpt; i++) {
        struct smtp_rcpt *rc = &req->rcpts[i];
        if (rc->status != SMTP_PENDING)
            continue;
        strbuf_printf(&cmd, "RCPT TO:<%s>", rc->address);
        if (dsn && rc->notify && *rc->notify)
            strbuf_appendf(&cmd, " NOTIFY=%s", rc->notify);
        if (dsn && rc->orcpt && *rc->orcpt)
            strbuf_appendf(&cmd, " ORCPT=%s", rc->orcpt);
        strbuf_append_str(&cmd, "\r\n");
        smtp_io_write(&s->io, cmd.data, cmd.len);
        if (!pipelining) {
            if (read_reply(s, smtp_params.rcpt_timeout, &r) < 0) {
                io_failure(s, "sending RCPT TO", &why);
                soft_failure(req, s, "4.4.2", &why);
                goto out;
            }
            rcpt_replied(req, s, rc, &r, &why);
        }
    }
    if (pipelining) {
        smtp_io_puts(&s->io, "DATA\r\n");
        if (rset_in_group
            && (read_reply(s, smtp_params.rset_timeout, &r) < 0 || r.code / 100 != 2)) {
            /* The cached connection is dead or the server is not in the
             * state we left it in.  MAIL, RCPT and DATA are on their way
             * and their replies cannot be trusted: close without QUIT (a
             * server in DATA state would take QUIT as content; closing
             * mid-DATA makes it drop the message) and try afresh. */
            log_debug("%s: cached connection to %s failed RSET: %s", req->qid, s->relay,
                      s->io.failed ? "I/O error" : strbuf_str(&r.text));
            if (!s->io.failed)
                s->io.failed = SMTP_IO_LOST;
            usable = SMTP_TRANS_STALE;
            goto out;
        }
        smtp_io_set_timeout(&s->io, smtp_params.mail_timeout);
        if (read_reply(s, smtp_params.mail_timeout, &r) < 0) {
            io_failure(s, "sending MAIL FROM", &why);
            soft_failure(req, s, "4.4.2", &why);
            goto out;
        }
        mail_ok = r.code / 100 == 2;
        struct reply mail_reply;
        reply_init(&mail_reply);
        reply_copy(&mail_reply, &r);
        for (int i = 0; i < req->nrcpt; i++) {
            struct smtp_rcpt *rc = &req->rcpts[i];
            if (rc->status != SMTP_PENDING)
                continue;
            if (read_reply(s, smtp_params.rcpt_timeout, &r) < 0) {
                io_failure(s, "sending RCPT TO", &why);
                soft_failure(req, s, "4.4.2", &why);
                reply_free(&mail_reply);
                for (int k = 0; k < req->nrcpt; k++)
                    req->rcpts[k].accepted = 0;
                goto out;
            }
            if (mail_ok)
                rcpt_replied(req, s, rc, &r, &why);
        }
        /* the DATA reply */
        struct reply data_reply;
        reply_init(&data_reply);
        if (read_reply(s, smtp_params.data_init_timeout, &data_reply) < 0) {
            io_failure(s, "sending DATA command", &why);
            soft_failure(req, s, "4.4.2", &why);
            reply_free(&mail_reply);
            reply_free(&data_reply);
            for (int k = 0; k < req->nrcpt; k++)
                req->rcpts[k].accepted = 0;
            goto out;
        }
        if (!mail_ok) {
            reply_copy(&r, &mail_reply);
            if (data_reply.code == 354) {
                /* a server that takes DATA anyway gets an empty message */
                smtp_io_puts(&s->io, ".\r\n");
                (void)read_reply(s, smtp_params.data_done_timeout, &data_reply);
            }
            reply_free(&mail_reply);
            reply_free(&data_reply);
            goto mail_rejected;
        }
        reply_free(&mail_reply);
        reply_copy(&r, &data_reply);
        reply_free(&data_reply);
    }

    int naccepted = 0;
    for (int i = 0; i < req->nrcpt; i++)
        naccepted += req->rcpts[i].accepted;
    if (naccepted == 0) {
        if (pipelining && r.code == 354) {
            smtp_io_puts(&s->io, ".\r\n");
            (void)read_reply(s, smtp_params.data_done_timeout, &r);
        }
        usable = !s->io.failed && smtp_session_reset(s) == 0;
        goto out;
    }
    if (!pipelining) {
        smtp_io_puts(&s->io, "DATA\r\n");
        if (read_reply(s, smtp_params.data_init_timeout, &r) < 0) {
            io_failure(s, "sending DATA command", &why);
            soft_failure(req, s, "4.4.2", &why);
            goto out;
        }
    }
    if (r.code != 354) {
        accepted_refused(req, s, &r, "DATA", &why);
        usable = smtp_session_reset(s) == 0;
        goto out;
    }
    int local_error = 0;
    if (send_content(s, req, &why, &local_error) < 0) {
        if (local_error) {
            /* the server must not get half a message: drop the session */
            for (int i = 0; i < req->nrcpt; i++)
                if (req->rcpts[i].accepted)
                    smtp_rcpt_result(req, &req->rcpts[i], SMTP_DEFERRED, "4.3.0", "none",
                                     "%s", strbuf_str(&why));
        } else {
            soft_failure(req, s, "4.4.2", &why);
        }
        goto out;
    }
    smtp_io_puts(&s->io, ".\r\n");
    if (smtp_io_flush(&s->io) < 0) {
        io_failure(s, "sending end of data -- message may be sent more than once", &why);
        soft_failure(req, s, "4.4.2", &why);
        goto out;
    }
    if (read_reply(s, smtp_params.data_done_timeout, &r) < 0) {
        io_failure(s, "sending end of data -- message may be sent more than once", &why);
        for (int i = 0; i < req->nrcpt; i++)
            if (req->rcpts[i].accepted)
                finish_rcpt(req, s, &req->rcpts[i], SMTP_DEFERRED, "4.4.2", &why);
        goto out;
    }
    if (r.code / 100 == 2) {
        for (int i = 0; i < req->nrcpt; i++)
            if (req->rcpts[i].accepted)
                smtp_rcpt_result(req, &req->rcpts[i], SMTP_SENT, strbuf_str(&r.dsn)[0] == '2'
                                 ? strbuf_str(&r.dsn) : "2.0.0", s->relay, "%s",
                                 strbuf_str(&r.text));
    } else {
        accepted_refused(req, s, &r, "end of DATA", &why);
    }
    usable = 1;
    goto out;

mail_rejected:
    said(s, &r, "MAIL FROM", &why);
    if (r.code / 100 == 5)
        bounce_pending(req, s, strbuf_str(&r.dsn), &why);
    else
        soft_failure(req, s, strbuf_str(&r.dsn), &why);
    usable = !s->io.failed && smtp_session_reset(s) == 0;

out:
    reply_free(&r);
    strbuf_release(&why);
    strbuf_release(&cmd);
    if (usable == SMTP_TRANS_STALE)
        return SMTP_TRANS_STALE;
    return usable && !s->io.failed ? 0 : -1;
}
