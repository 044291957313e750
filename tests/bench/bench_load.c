/*
 * bench_load.c - the benchmark's SMTP load generator (in the spirit of
 * Postfix's smtp-source, written for postern).
 *
 * Usage:
 *   bench_load [-s SESSIONS] [-m MESSAGES] [-l SIZE] [-r RCPTS] [-d]
 *              [-f SENDER] [-t RECIPIENT] [-H HELO] [-T TIMEOUT]
 *              [-L LATENCY_FILE] HOST:PORT
 *
 * SESSIONS threads (default 20) send MESSAGES messages in total (default
 * 100) of about SIZE bytes each (default 4096, headers included) to the
 * server.  By default every message gets its own connection, as
 * smtp-source does without -d; with -d a session keeps its connection for
 * all the messages it sends.  When the server offers PIPELINING, MAIL,
 * RCPT... and DATA go out in one write and their replies are read
 * afterwards.  RCPTS recipients per message (default 1): the first is
 * RECIPIENT, the others RECIPIENT with "+N" added to the local part.
 *
 * Latency: from the write of the final "." to the arrival of its reply,
 * per message, with CLOCK_MONOTONIC.  LATENCY_FILE, when given, receives
 * one latency in seconds per line (accepted messages only).
 *
 * Output: one line of `key=value` pairs on stdout:
 *   sent=N failed=N elapsed=SEC rate=MSG_PER_SEC p50=SEC p90=SEC p99=SEC
 *   max=SEC
 * where elapsed runs from the first connect to the last reply.  A failed
 * message (connect error, timeout, a reply other than 2xx/354) is
 * reported once on stderr with the server's reply and counted; the
 * session then starts over with a new connection.
 *
 * Exit status: 0 when every message was accepted, 1 when some failed,
 * 2 on a usage error.
 */
#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "mem.h"
#include "strbuf.h"

struct load_config {
    int sessions;
    long messages;
    long size;
    int rcpts;
    int reuse_connection;
    const char *sender;
    const char *recipient;
    const char *helo;
    int timeout_ms;
    const char *latency_file;
    struct addrinfo *addr;
};

static struct load_config cfg = {
    .sessions = 20, .messages = 100, .size = 4096, .rcpts = 1,
    .sender = "bench@example.com", .recipient = "alice@localhost",
    .helo = "bench.example.com", .timeout_ms = 60000,
};

static atomic_long next_message;        /* messages handed out so far */
static atomic_long sent_count;
static atomic_long failed_count;

/* Latencies of accepted messages, in seconds; indexed by message number. */
static double *latencies;
static unsigned char *latency_valid;

/* One buffered SMTP connection. */
struct conn {
    int fd;
    char inbuf[8192];
    size_t inlen;
    size_t inpos;
    int pipelining;
};

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int conn_open(struct conn *c)
{
    c->inlen = c->inpos = 0;
    c->pipelining = 0;
    c->fd = socket(cfg.addr->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (c->fd < 0)
        return -1;
    if (connect(c->fd, cfg.addr->ai_addr, cfg.addr->ai_addrlen) < 0) {
        int saved = errno;
        close(c->fd);
        c->fd = -1;
        errno = saved;
        return -1;
    }
    return 0;
}

static void conn_close(struct conn *c)
{
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
}

static int conn_write(struct conn *c, const char *data, size_t len)
{
    while (len > 0) {
        ssize_t n = send(c->fd, data, len, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN) {
                struct pollfd p = { .fd = c->fd, .events = POLLOUT };
                if (poll(&p, 1, cfg.timeout_ms) <= 0)
                    return -1;
                continue;
            }
            return -1;
        }
        data += n;
        len -= (size_t)n;
    }
    return 0;
}

/* One reply line into line (CR LF stripped); -1 on EOF, error or timeout. */
static int conn_read_line(struct conn *c, strbuf *line)
{
    strbuf_reset(line);
    for (;;) {
        while (c->inpos < c->inlen) {
            char ch = c->inbuf[c->inpos++];
            if (ch == '\n') {
                if (line->len > 0 && line->data[line->len - 1] == '\r')
                    strbuf_truncate(line, line->len - 1);
                return 0;
            }
            if (line->len < 4096)
                strbuf_append_char(line, ch);
        }
        struct pollfd p = { .fd = c->fd, .events = POLLIN };
        int rc = poll(&p, 1, cfg.timeout_ms);
        if (rc < 0 && errno == EINTR)
            continue;
        if (rc <= 0) {
            strbuf_set_str(line, "(timeout)");
            return -1;
        }
        ssize_t n = read(c->fd, c->inbuf, sizeof(c->inbuf));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            strbuf_set_str(line, n == 0 ? "(connection closed)" : "(read error)");
            return -1;
        }
        c->inlen = (size_t)n;
        c->inpos = 0;
    }
}

/*
 * Read one (possibly multi-line) reply; returns its code, -1 on failure.
 * text receives the last line; *saw_pipelining is set when an EHLO reply
 * line names PIPELINING.
 */
static int conn_reply(struct conn *c, strbuf *text, int *saw_pipelining)
{
    for (;;) {
        if (conn_read_line(c, text) < 0)
            return -1;
        if (text->len < 3)
            return -1;
        if (saw_pipelining && text->len >= 4 + 10
            && strncasecmp(text->data + 4, "PIPELINING", 10) == 0)
            *saw_pipelining = 1;
        if (text->len == 3 || text->data[3] == ' ')
            return atoi(text->data);
        if (text->data[3] != '-')
            return -1;
    }
}

/* The message text (dot-stuffing not needed: no line starts with '.'). */
static void build_message(strbuf *msg, long seq)
{
    strbuf_reset(msg);
    strbuf_appendf(msg, "From: <%s>\r\nTo: <%s>\r\nSubject: bench message %ld\r\n"
                   "Message-ID: <bench.%ld.%ld@%s>\r\nX-Bench-Seq: %ld\r\n\r\n",
                   cfg.sender, cfg.recipient, seq, (long)getpid(), seq, cfg.helo, seq);
    static const char line[] =
        "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
        "abcdefghijklmnop\r\n";   /* 80 octets with CR LF */
    while ((long)msg->len + (long)sizeof(line) - 1 <= cfg.size)
        strbuf_append(msg, line, sizeof(line) - 1);
    long rest = cfg.size - (long)msg->len;
    if (rest > 2) {
        strbuf_append(msg, line, (size_t)(rest - 2));
        strbuf_append_str(msg, "\r\n");
    }
    strbuf_append_str(msg, ".\r\n");
}

static void recipient_address(strbuf *out, int n)
{
    strbuf_reset(out);
    if (n == 0) {
        strbuf_append_str(out, cfg.recipient);
        return;
    }
    const char *at = strrchr(cfg.recipient, '@');
    size_t local = at ? (size_t)(at - cfg.recipient) : strlen(cfg.recipient);
    strbuf_append(out, cfg.recipient, local);
    strbuf_appendf(out, "+%d%s", n, at ? at : "");
}

static void report_failure(long seq, const char *stage, const strbuf *reply)
{
    fprintf(stderr, "bench_load: message %ld: %s: %s\n", seq, stage,
            reply->len ? reply->data : strerror(errno));
}

/* Greeting and EHLO (HELO when EHLO is refused); 0 or -1. */
static int session_start(struct conn *c, strbuf *reply, strbuf *cmd, long seq)
{
    if (conn_open(c) < 0) {
        strbuf_reset(reply);
        report_failure(seq, "connect", reply);
        return -1;
    }
    if (conn_reply(c, reply, NULL) != 220) {
        report_failure(seq, "greeting", reply);
        return -1;
    }
    strbuf_printf(cmd, "EHLO %s\r\n", cfg.helo);
    int code;
    if (conn_write(c, cmd->data, cmd->len) < 0
        || (code = conn_reply(c, reply, &c->pipelining)) < 0) {
        report_failure(seq, "EHLO", reply);
        return -1;
    }
    if (code != 250) {
        strbuf_printf(cmd, "HELO %s\r\n", cfg.helo);
        if (conn_write(c, cmd->data, cmd->len) < 0 || conn_reply(c, reply, NULL) != 250) {
            report_failure(seq, "HELO", reply);
            return -1;
        }
    }
    return 0;
}

/*
 * One transaction on an open session; 0 when accepted, 1 when refused
 * (session still usable), -1 when the session broke.
 */
static int send_message(struct conn *c, long seq, strbuf *msg, strbuf *cmd,
                        strbuf *reply, strbuf *rcpt)
{
    build_message(msg, seq);
    strbuf_reset(cmd);
    strbuf_appendf(cmd, "MAIL FROM:<%s>\r\n", cfg.sender);
    int expected = 1 + cfg.rcpts + 1;     /* MAIL, RCPTs, DATA */
    int code;
    if (c->pipelining) {
        for (int i = 0; i < cfg.rcpts; i++) {
            recipient_address(rcpt, i);
            strbuf_appendf(cmd, "RCPT TO:<%s>\r\n", rcpt->data);
        }
        strbuf_append_str(cmd, "DATA\r\n");
        if (conn_write(c, cmd->data, cmd->len) < 0)
            return report_failure(seq, "write", reply), -1;
        int ok = 1;
        for (int i = 0; i < expected; i++) {
            code = conn_reply(c, reply, NULL);
            if (code < 0)
                return report_failure(seq, "pipelined reply", reply), -1;
            int want = i == expected - 1 ? 354 : 250;
            if (code / 100 != want / 100 && ok) {
                report_failure(seq, i == 0 ? "MAIL" : i == expected - 1 ? "DATA" : "RCPT",
                               reply);
                ok = 0;
            }
        }
        if (!ok) {
            /* Some RCPT was refused: a DATA that still got 354 is ended
             * with a bare dot (the message counts as failed), then RSET. */
            if (code == 354) {
                if (conn_write(c, ".\r\n", 3) < 0 || conn_reply(c, reply, NULL) < 0)
                    return -1;
            }
            if (conn_write(c, "RSET\r\n", 6) < 0 || conn_reply(c, reply, NULL) < 0)
                return -1;
            return 1;
        }
    } else {
        if (conn_write(c, cmd->data, cmd->len) < 0 || (code = conn_reply(c, reply, NULL)) < 0)
            return report_failure(seq, "MAIL", reply), -1;
        if (code != 250)
            return report_failure(seq, "MAIL", reply), 1;
        for (int i = 0; i < cfg.rcpts; i++) {
            recipient_address(rcpt, i);
            strbuf_printf(cmd, "RCPT TO:<%s>\r\n", rcpt->data);
            if (conn_write(c, cmd->data, cmd->len) < 0
                || (code = conn_reply(c, reply, NULL)) < 0)
                return report_failure(seq, "RCPT", reply), -1;
            if (code != 250)
                return report_failure(seq, "RCPT", reply), 1;
        }
        if (conn_write(c, "DATA\r\n", 6) < 0 || (code = conn_reply(c, reply, NULL)) < 0)
            return report_failure(seq, "DATA", reply), -1;
        if (code != 354)
            return report_failure(seq, "DATA", reply), 1;
    }
    /* The body; the clock starts when the last octet has been written. */
    if (conn_write(c, msg->data, msg->len) < 0)
        return report_failure(seq, "message write", reply), -1;
    double start = now_seconds();
    code = conn_reply(c, reply, NULL);
    double end = now_seconds();
    if (code < 0)
        return report_failure(seq, "end of data", reply), -1;
    if (code / 100 != 2)
        return report_failure(seq, "end of data", reply), 1;
    latencies[seq] = end - start;
    latency_valid[seq] = 1;
    return 0;
}

static void *session_thread(void *unused)
{
    struct conn c = { .fd = -1 };
    strbuf msg, cmd, reply, rcpt;
    strbuf_init(&msg);
    strbuf_init(&cmd);
    strbuf_init(&reply);
    strbuf_init(&rcpt);
    for (;;) {
        long seq = atomic_fetch_add(&next_message, 1);
        if (seq >= cfg.messages)
            break;
        if (c.fd < 0 && session_start(&c, &reply, &cmd, seq) < 0) {
            conn_close(&c);
            atomic_fetch_add(&failed_count, 1);
            continue;
        }
        int rc = send_message(&c, seq, &msg, &cmd, &reply, &rcpt);
        atomic_fetch_add(rc == 0 ? &sent_count : &failed_count, 1);
        if (rc < 0) {
            conn_close(&c);
            continue;
        }
        if (!cfg.reuse_connection) {
            if (conn_write(&c, "QUIT\r\n", 6) == 0)
                (void) conn_reply(&c, &reply, NULL);
            conn_close(&c);
        }
    }
    if (c.fd >= 0) {
        if (conn_write(&c, "QUIT\r\n", 6) == 0)
            (void) conn_reply(&c, &reply, NULL);
        conn_close(&c);
    }
    strbuf_release(&msg);
    strbuf_release(&cmd);
    strbuf_release(&reply);
    strbuf_release(&rcpt);
    return NULL;
}

static int compare_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Nearest-rank percentile of sorted values. */
static double percentile(const double *sorted, long n, double p)
{
    if (n == 0)
        return 0.0;
    long rank = (long)(p / 100.0 * (double)n + 0.999999);
    if (rank < 1)
        rank = 1;
    if (rank > n)
        rank = n;
    return sorted[rank - 1];
}

static long parse_long(const char *arg, char opt, long min)
{
    char *end;
    errno = 0;
    long v = strtol(arg, &end, 10);
    if (errno || *arg == '\0' || *end != '\0' || v < min) {
        fprintf(stderr, "bench_load: bad -%c value: %s\n", opt, arg);
        exit(2);
    }
    return v;
}

static void usage(void)
{
    fprintf(stderr, "usage: bench_load [-s sessions] [-m messages] [-l size] [-r rcpts] [-d]\n"
            "       [-f sender] [-t recipient] [-H helo] [-T timeout_s] [-L latency_file]"
            " host:port\n");
    exit(2);
}

int main(int argc, char **argv)
{
    log_open("bench_load");
    log_use_stderr();
    int opt;
    while ((opt = getopt(argc, argv, "s:m:l:r:df:t:H:T:L:")) != -1) {
        switch (opt) {
        case 's': cfg.sessions = (int)parse_long(optarg, 's', 1); break;
        case 'm': cfg.messages = parse_long(optarg, 'm', 0); break;
        case 'l': cfg.size = parse_long(optarg, 'l', 0); break;
        case 'r': cfg.rcpts = (int)parse_long(optarg, 'r', 1); break;
        case 'd': cfg.reuse_connection = 1; break;
        case 'f': cfg.sender = optarg; break;
        case 't': cfg.recipient = optarg; break;
        case 'H': cfg.helo = optarg; break;
        case 'T': cfg.timeout_ms = (int)parse_long(optarg, 'T', 1) * 1000; break;
        case 'L': cfg.latency_file = optarg; break;
        default: usage();
        }
    }
    if (optind != argc - 1 || cfg.sessions > 10000 || cfg.rcpts > 1000)
        usage();
    char *target = xstrdup(argv[optind]);
    char *colon = strrchr(target, ':');
    if (!colon || colon == target || colon[1] == '\0')
        usage();
    *colon = '\0';
    char *host = target;
    if (host[0] == '[' && colon[-1] == ']') {
        host++;
        colon[-1] = '\0';
    }
    struct addrinfo hints = { .ai_socktype = SOCK_STREAM };
    int gai = getaddrinfo(host, colon + 1, &hints, &cfg.addr);
    if (gai != 0) {
        fprintf(stderr, "bench_load: %s: %s\n", argv[optind], gai_strerror(gai));
        return 2;
    }

    latencies = xcalloc((size_t)cfg.messages + 1, sizeof(double));
    latency_valid = xcalloc((size_t)cfg.messages + 1, 1);
    pthread_t *threads = xcalloc((size_t)cfg.sessions, sizeof(pthread_t));
    int started = 0;
    double t0 = now_seconds();
    for (int i = 0; i < cfg.sessions; i++) {
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setstacksize(&attr, 256 * 1024);
        int rc = pthread_create(&threads[i], &attr, session_thread, NULL);
        pthread_attr_destroy(&attr);
        if (rc != 0) {
            fprintf(stderr, "bench_load: pthread_create: %s\n", strerror(rc));
            break;
        }
        started++;
    }
    for (int i = 0; i < started; i++)
        pthread_join(threads[i], NULL);
    double elapsed = now_seconds() - t0;

    long n = 0;
    for (long i = 0; i < cfg.messages; i++)
        if (latency_valid[i])
            latencies[n++] = latencies[i];
    FILE *lf = NULL;
    if (cfg.latency_file && !(lf = fopen(cfg.latency_file, "w")))
        fprintf(stderr, "bench_load: %s: %s\n", cfg.latency_file, strerror(errno));
    for (long i = 0; lf && i < n; i++)
        fprintf(lf, "%.6f\n", latencies[i]);
    if (lf && fclose(lf) != 0)
        fprintf(stderr, "bench_load: %s: %s\n", cfg.latency_file, strerror(errno));
    qsort(latencies, (size_t)n, sizeof(double), compare_double);
    long sent = atomic_load(&sent_count), failed = atomic_load(&failed_count);
    if (started == 0)
        failed = cfg.messages;
    printf("sent=%ld failed=%ld elapsed=%.3f rate=%.1f p50=%.6f p90=%.6f p99=%.6f max=%.6f\n",
           sent, failed, elapsed, elapsed > 0 ? (double)sent / elapsed : 0.0,
           percentile(latencies, n, 50), percentile(latencies, n, 90),
           percentile(latencies, n, 99), n ? latencies[n - 1] : 0.0);
    freeaddrinfo(cfg.addr);
    xfree(threads);
    xfree(latencies);
    xfree(latency_valid);
    xfree(target);
    return sent == cfg.messages ? 0 : 1;
}
