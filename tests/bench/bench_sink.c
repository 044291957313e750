/*
 * bench_sink.c - the benchmark's SMTP sink (in the spirit of Postfix's
 * smtp-sink, written for postern): accepts every message and counts it.
 *
 * Usage:
 *   bench_sink [-c COUNT_FILE] [-D DIR] [-P] [-n HOSTNAME] HOST:PORT
 *
 * One thread per connection.  It answers EHLO (offering PIPELINING,
 * 8BITMIME, SIZE and ENHANCEDSTATUSCODES unless -P, which offers nothing
 * but a plain 250), HELO, MAIL, RCPT, DATA, RSET, NOOP and QUIT with
 * success; any other command gets 502 5.5.2.  Replies are buffered and
 * written when no more input is waiting, so pipelined clients get their
 * replies in one segment, as a real server's.
 *
 * The content is discarded unless -D DIR is given: then every message is
 * written to DIR/N and fsynced before the 250 (so the sink can stand for
 * a durable MTA).  Without -D nothing touches the disk.
 *
 * COUNT_FILE (rewritten in place after each message) holds
 * "MESSAGES RECIPIENTS\n": accepted messages and the recipients they had.
 * The same totals are printed on stdout when the sink gets SIGTERM or
 * SIGINT, which end it.
 *
 * Contract: never refuses anything; a connection idle for 300 s is closed.
 */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"
#include "mem.h"
#include "strbuf.h"

#define SINK_IDLE_MS    300000
#define SINK_LINE_MAX   4096

static const char *count_file;
static int count_fd = -1;
static const char *store_dir;
static int offer_extensions = 1;
static const char *hostname = "sink.invalid";

static pthread_mutex_t count_lock = PTHREAD_MUTEX_INITIALIZER;
static long message_count;
static long recipient_count;
static atomic_long store_seq;

struct session {
    int fd;
    char inbuf[16384];
    size_t inlen;
    size_t inpos;
    strbuf out;
};

/* 1 when unread input is waiting (in the buffer or the socket). */
static int input_pending(struct session *s)
{
    if (s->inpos < s->inlen)
        return 1;
    struct pollfd p = { .fd = s->fd, .events = POLLIN };
    return poll(&p, 1, 0) > 0;
}

static int flush_out(struct session *s)
{
    size_t off = 0;
    while (off < s->out.len) {
        ssize_t n = send(s->fd, s->out.data + off, s->out.len - off, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        off += (size_t)n;
    }
    strbuf_reset(&s->out);
    return 0;
}

/* Queue a reply; written now unless more pipelined input is waiting. */
static int reply(struct session *s, const char *text)
{
    strbuf_append_str(&s->out, text);
    if (input_pending(s))
        return 0;
    return flush_out(s);
}

/* The next input byte, or -1 at EOF, error or idle timeout. */
static int next_byte(struct session *s)
{
    while (s->inpos >= s->inlen) {
        if (s->out.len && flush_out(s) < 0)
            return -1;
        struct pollfd p = { .fd = s->fd, .events = POLLIN };
        int rc = poll(&p, 1, SINK_IDLE_MS);
        if (rc < 0 && errno == EINTR)
            continue;
        if (rc <= 0)
            return -1;
        ssize_t n = read(s->fd, s->inbuf, sizeof(s->inbuf));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        s->inlen = (size_t)n;
        s->inpos = 0;
    }
    return (unsigned char)s->inbuf[s->inpos++];
}

/* One command line without CR LF; -1 at EOF.  Overlong lines are cut. */
static int read_line(struct session *s, strbuf *line)
{
    strbuf_reset(line);
    for (;;) {
        int c = next_byte(s);
        if (c < 0)
            return -1;
        if (c == '\n') {
            if (line->len && line->data[line->len - 1] == '\r')
                strbuf_truncate(line, line->len - 1);
            return 0;
        }
        if (line->len < SINK_LINE_MAX)
            strbuf_append_char(line, c);
    }
}

/*
 * The content up to the line holding only ".", dot-unstuffed into msg when
 * msg is not NULL; -1 at EOF.  Lines may end in CR LF or bare LF.
 */
static int read_content(struct session *s, strbuf *msg)
{
    int at_line_start = 1;
    int dot_line = 0;           /* this line so far is "." (+ CR) */
    int pending_cr = 0;
    for (;;) {
        int c = next_byte(s);
        if (c < 0)
            return -1;
        if (at_line_start) {
            at_line_start = 0;
            if (c == '.') {
                dot_line = 1;
                continue;       /* stuffed dot or end marker: decided below */
            }
        }
        if (dot_line) {
            if (c == '\r' && !pending_cr) {
                pending_cr = 1;
                continue;
            }
            if (c == '\n')
                return 0;
            dot_line = 0;       /* ".X": the dot was stuffing */
            if (pending_cr && msg)
                strbuf_append_char(msg, '\r');
            pending_cr = 0;
        }
        if (msg)
            strbuf_append_char(msg, c);
        if (c == '\n')
            at_line_start = 1;
    }
}

static int store_message(const strbuf *msg)
{
    strbuf path;
    strbuf_init(&path);
    strbuf_printf(&path, "%s/%ld", store_dir, atomic_fetch_add(&store_seq, 1));
    int fd = open(path.data, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    int rc = -1;
    if (fd >= 0) {
        size_t off = 0;
        while (off < msg->len) {
            ssize_t n = write(fd, msg->data + off, msg->len - off);
            if (n <= 0)
                break;
            off += (size_t)n;
        }
        if (off == msg->len && fsync(fd) == 0)
            rc = 0;
        if (close(fd) < 0)
            rc = -1;
    }
    if (rc < 0)
        fprintf(stderr, "bench_sink: %s: %s\n", path.data, strerror(errno));
    strbuf_release(&path);
    return rc;
}

static void count_message(int rcpts)
{
    pthread_mutex_lock(&count_lock);
    message_count++;
    recipient_count += rcpts;
    if (count_fd >= 0) {
        char text[64];
        int n = snprintf(text, sizeof(text), "%ld %ld\n", message_count, recipient_count);
        /* Fixed-width would avoid a stale tail, but counts only grow. */
        if (pwrite(count_fd, text, (size_t)n, 0) != n)
            fprintf(stderr, "bench_sink: %s: %s\n", count_file, strerror(errno));
    }
    pthread_mutex_unlock(&count_lock);
}

static int verb_is(const strbuf *line, const char *verb)
{
    size_t n = strlen(verb);
    return line->len >= n && strncasecmp(line->data, verb, n) == 0
        && (line->len == n || line->data[n] == ' ' || line->data[n] == ':');
}

static void *session_thread(void *arg)
{
    struct session *s = arg;
    strbuf line, msg;
    strbuf_init(&line);
    strbuf_init(&msg);
    strbuf_init(&s->out);
    int rcpts = 0;
    strbuf_printf(&s->out, "220 %s ESMTP bench_sink\r\n", hostname);
    if (flush_out(s) < 0)
        goto done;
    while (read_line(s, &line) == 0) {
        int rc;
        if (verb_is(&line, "EHLO")) {
            strbuf greeting;
            strbuf_init(&greeting);
            if (offer_extensions)
                strbuf_printf(&greeting, "250-%s\r\n250-PIPELINING\r\n250-8BITMIME\r\n"
                              "250-SIZE 0\r\n250 ENHANCEDSTATUSCODES\r\n", hostname);
            else
                strbuf_printf(&greeting, "250 %s\r\n", hostname);
            rc = reply(s, greeting.data);
            strbuf_release(&greeting);
        } else if (verb_is(&line, "HELO")) {
            rc = reply(s, "250 sink\r\n");
        } else if (verb_is(&line, "MAIL")) {
            rcpts = 0;
            rc = reply(s, "250 2.1.0 Ok\r\n");
        } else if (verb_is(&line, "RCPT")) {
            rcpts++;
            rc = reply(s, "250 2.1.5 Ok\r\n");
        } else if (verb_is(&line, "DATA")) {
            if ((rc = reply(s, "354 End data with <CR><LF>.<CR><LF>\r\n")) < 0)
                break;
            strbuf_reset(&msg);
            if ((rc = read_content(s, store_dir ? &msg : NULL)) < 0)
                break;
            if (store_dir && store_message(&msg) < 0) {
                rc = reply(s, "451 4.3.0 Error: cannot store message\r\n");
            } else {
                count_message(rcpts);
                rc = reply(s, "250 2.0.0 Ok: queued\r\n");
            }
            rcpts = 0;
        } else if (verb_is(&line, "RSET")) {
            rcpts = 0;
            rc = reply(s, "250 2.0.0 Ok\r\n");
        } else if (verb_is(&line, "NOOP")) {
            rc = reply(s, "250 2.0.0 Ok\r\n");
        } else if (verb_is(&line, "QUIT")) {
            reply(s, "221 2.0.0 Bye\r\n");
            flush_out(s);
            break;
        } else {
            rc = reply(s, "502 5.5.2 Error: command not recognized\r\n");
        }
        if (rc < 0)
            break;
    }
done:
    close(s->fd);
    strbuf_release(&line);
    strbuf_release(&msg);
    strbuf_release(&s->out);
    xfree(s);
    return NULL;
}

static volatile sig_atomic_t stop_requested;

static void on_signal(int sig)
{
    stop_requested = sig;
}

static void usage(void)
{
    fprintf(stderr, "usage: bench_sink [-c count_file] [-D dir] [-P] [-n hostname] host:port\n");
    exit(2);
}

int main(int argc, char **argv)
{
    log_open("bench_sink");
    log_use_stderr();
    int opt;
    while ((opt = getopt(argc, argv, "c:D:Pn:")) != -1) {
        switch (opt) {
        case 'c': count_file = optarg; break;
        case 'D': store_dir = optarg; break;
        case 'P': offer_extensions = 0; break;
        case 'n': hostname = optarg; break;
        default: usage();
        }
    }
    if (optind != argc - 1)
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
    struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE };
    struct addrinfo *ai;
    int gai = getaddrinfo(host, colon + 1, &hints, &ai);
    if (gai != 0) {
        fprintf(stderr, "bench_sink: %s: %s\n", argv[optind], gai_strerror(gai));
        return 2;
    }
    int lfd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    if (lfd < 0 || setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0
        || bind(lfd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(lfd, 1024) < 0) {
        fprintf(stderr, "bench_sink: %s: %s\n", argv[optind], strerror(errno));
        return 1;
    }
    freeaddrinfo(ai);
    if (count_file) {
        count_fd = open(count_file, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (count_fd < 0 || pwrite(count_fd, "0 0\n", 4, 0) != 4) {
            fprintf(stderr, "bench_sink: %s: %s\n", count_file, strerror(errno));
            return 1;
        }
    }
    struct sigaction sa = { .sa_handler = on_signal };
    sigaction(SIGTERM, &sa, NULL);       /* no SA_RESTART: accept() returns */
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&attr, 256 * 1024);
    while (!stop_requested) {
        int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno != EINTR && errno != ECONNABORTED)
                fprintf(stderr, "bench_sink: accept: %s\n", strerror(errno));
            if (errno == EMFILE || errno == ENFILE)
                poll(NULL, 0, 100);
            continue;
        }
        struct session *s = xcalloc(1, sizeof(*s));
        s->fd = fd;
        pthread_t tid;
        int rc = pthread_create(&tid, &attr, session_thread, s);
        if (rc != 0) {
            fprintf(stderr, "bench_sink: pthread_create: %s\n", strerror(rc));
            close(fd);
            xfree(s);
        }
    }
    pthread_mutex_lock(&count_lock);
    printf("messages=%ld recipients=%ld\n", message_count, recipient_count);
    fflush(stdout);
    pthread_mutex_unlock(&count_lock);
    xfree(target);
    _exit(0);                   /* sessions still running are simply cut */
}
