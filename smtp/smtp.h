/*
 * smtp.h - the smtp delivery agent's shared types.
 *
 * Pieces: smtp.c (main, the qmgr conversation, the connection cache),
 * smtp_route.c (nexthop -> ordered list of server addresses: MX, A/AAAA,
 * relayhost, fallback relays, loops back to myself), smtp_io.c (line I/O
 * with timeouts over a socket, swappable for TLS), smtp_proto.c (the
 * ESMTP conversation and per-recipient results).
 *
 * Results: every recipient ends SENT, BOUNCED or DEFERRED with a dsn code,
 * a relay ("host[addr]:port", or "none" when no server was reached) and a
 * reason in Postfix's words.  Nothing is SENT before the server's 2xx to
 * the end of the data.
 */
#ifndef POSTERN_SMTP_AGENT_H
#define POSTERN_SMTP_AGENT_H

#include <netinet/in.h>
#include <sys/types.h>
#include <time.h>

#include "delivery_log.h"
#include "dns.h"
#include "queue.h"
#include "strbuf.h"

enum smtp_status { SMTP_PENDING = 0, SMTP_SENT, SMTP_BOUNCED, SMTP_DEFERRED };

struct smtp_rcpt {
    const char *address;
    const char *orcpt;          /* xtext "rfc822;..." as received, or NULL */
    const char *notify;         /* NEVER / SUCCESS,FAILURE,DELAY or NULL */
    enum smtp_status status;    /* final result, or PENDING */
    int accepted;               /* RCPT got 2xx in the current transaction */
    strbuf dsn;
    strbuf reason;
    strbuf relay;
    double end;                 /* when the result was decided (log line) */
};

struct smtp_request {
    const char *qid;
    const char *nexthop;
    const char *sender;
    const char *envid;          /* decoded; xtext-encoded on the wire */
    const char *ret;
    struct smtp_rcpt *rcpts;
    int nrcpt;
    int queue_fd;
    struct queue_message msg;
    int loaded;
    int body_8bit;              /* content has bytes > 127 */
    int need_smtputf8;          /* SMTPUTF8 requested and needed */
    /* The last soft failure, used for recipients still pending at the end */
    strbuf last_dsn;
    strbuf last_reason;
    strbuf last_relay;          /* "" when no server was ever reached */
    struct delivery_times times; /* for the log lines; session = when the
                                  * last session became usable */
};

/* ---- I/O ------------------------------------------------------------- */
struct smtp_io;
struct smtp_io_ops {
    ssize_t (*read)(struct smtp_io *io, void *buf, size_t len);   /* -1 errno */
    ssize_t (*write)(struct smtp_io *io, const void *buf, size_t len);
    void (*close)(struct smtp_io *io);
};

struct smtp_io {
    int fd;
    int timeout;                /* seconds for the current step */
    strbuf in;                  /* received, not yet consumed */
    size_t in_pos;
    strbuf out;                 /* buffered output */
    const struct smtp_io_ops *ops;
    void *ctx;                  /* TLS state, for the TLS ops */
    int failed;                 /* sticky: SMTP_IO_TIMEOUT / SMTP_IO_LOST */
    int op_timeout;             /* seconds left for the current op */
};

#define SMTP_IO_TIMEOUT 1
#define SMTP_IO_LOST 2

void smtp_io_init(struct smtp_io *io, int fd);
void smtp_io_free(struct smtp_io *io);           /* closes */
void smtp_io_set_timeout(struct smtp_io *io, int seconds);
void smtp_io_puts(struct smtp_io *io, const char *s);
void smtp_io_write(struct smtp_io *io, const void *data, size_t len);
int smtp_io_flush(struct smtp_io *io);          /* 0 or -1 (io->failed) */
/* One line without CRLF into line (cut at max bytes, rest dropped).
 * 0 ok, -1 failed. */
int smtp_io_getline(struct smtp_io *io, strbuf *line, size_t max);
/* Drop buffered input (after STARTTLS: nothing sent before the handshake
 * may be read as if it came inside TLS). */
void smtp_io_discard_input(struct smtp_io *io);
/* Wait for fd readable/writable within timeout ms: 1 ready, 0 timeout. */
int smtp_io_wait(int fd, int for_write, long long ms);

/* ---- sessions ---------------------------------------------------------- */
#define SMTP_FEAT_PIPELINING  0x01
#define SMTP_FEAT_SIZE        0x02
#define SMTP_FEAT_8BITMIME    0x04
#define SMTP_FEAT_DSN         0x08
#define SMTP_FEAT_SMTPUTF8    0x10
#define SMTP_FEAT_STARTTLS    0x20
#define SMTP_FEAT_AUTH        0x40
#define SMTP_FEAT_ESMTP       0x80

struct smtp_session {
    struct smtp_io io;
    char *host;                 /* name used in logs ("mx1.example.net") */
    char addr[INET6_ADDRSTRLEN];
    int port;
    int from_mx;                /* found through an MX lookup */
    char *relay;                /* "host[addr]:port" */
    char *dest;                 /* the nexthop it was opened for (cache key) */
    int features;
    long long size_limit;       /* SIZE n, 0 = none given */
    strbuf auth_mechs;
    time_t opened;
    struct timespec idle_since;
    int tls;                    /* TLS active */
    int no_tls;                 /* do not STARTTLS (retry after a failed
                                 * opportunistic handshake) */
    int reused;                 /* count of transactions after the first */
    int rset_due;               /* reused: the next transaction starts with
                                 * RSET (pipelined with MAIL when offered) */
};

/* One server address to try, in order. */
struct smtp_target {
    char *host;
    struct dns_addr addr;
    int port;
    int from_mx;                /* found through an MX lookup */
};

struct smtp_route {
    struct smtp_target *v;
    int n;
};

struct smtp_route_error {
    enum smtp_status status;    /* BOUNCED or DEFERRED when no target */
    strbuf dsn;
    strbuf reason;
};

/* smtp_route.c: targets for a nexthop (fallback relays appended). */
int smtp_route_build(const char *nexthop, struct smtp_route *route,
                     struct smtp_route_error *err);
void smtp_route_free(struct smtp_route *route);

/* smtp_proto.c */
/* Connect to one target; NULL with reason (and status set) on failure. */
struct smtp_session *smtp_session_open(const struct smtp_target *t, const char *dest,
                                       strbuf *reason, struct smtp_request *req);
/* Run one mail transaction on an open session for the still-pending
 * recipients.  Returns 0 when the session is still usable afterwards, -1
 * when it must be closed, SMTP_TRANS_STALE when the session had rset_due
 * and the RSET failed: then nothing was attempted (every recipient is
 * still pending, no failure recorded) and the session must be freed. */
#define SMTP_TRANS_STALE (-2)
int smtp_transaction(struct smtp_session *s, struct smtp_request *req);
/* RSET on a cached session: 0 usable. */
int smtp_session_reset(struct smtp_session *s);
void smtp_session_quit(struct smtp_session *s);   /* QUIT (best effort) and free */
void smtp_session_free(struct smtp_session *s);

/* smtp.c */
void smtp_rcpt_result(struct smtp_request *req, struct smtp_rcpt *r,
                      enum smtp_status st, const char *dsn, const char *relay,
                      const char *fmt, ...) __attribute__((format(printf, 6, 7)));

/* Parameters, read once in post_jail. */
struct smtp_params {
    int connect_timeout, helo_timeout, mail_timeout, rcpt_timeout;
    int data_init_timeout, data_xfer_timeout, data_done_timeout;
    int quit_timeout, rset_timeout, starttls_timeout;
    int tcp_port;
    const char *helo_name;
    int mx_address_limit, mx_session_limit;
    int cache_on_demand;
    int cache_time_limit, reuse_time_limit;
    int skip_5xx_greeting;
    int never_send_ehlo;
    int families;               /* DNS_WANT_V4 | DNS_WANT_V6 */
    int host_lookup_dns, host_lookup_native;
    const char *fallback_relay;
    const char *myhostname;
    long long line_length_limit;
};
extern struct smtp_params smtp_params;

#endif
