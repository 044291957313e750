/*
 * smtpd_io.c - buffered, timed line reader and reply writer for smtpd.
 *
 * Interface and contract: see smtpd_io.h.  The plain transport reads by
 * polling the descriptor for the timeout and then doing one read(2); it
 * writes first, with send(MSG_DONTWAIT | MSG_NOSIGNAL), and polls for the
 * timeout only when the socket is full (a poll before every reply was a
 * system call that almost never waited).  A descriptor that is not a
 * socket (stdout in standalone -S mode) is polled, then written.  SIGPIPE
 * is ignored by the server skeleton (common/server.c) for the whole
 * process.  A TLS transport replaces both functions.
 */
#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "smtpd_io.h"

static int wait_fd(int fd, short events, int timeout)
{
    struct pollfd p = { .fd = fd, .events = events };
    int ms = timeout > 0 ? timeout * 1000 : -1;

    for (;;) {
        int n = poll(&p, 1, ms);
        if (n > 0)
            return 0;
        if (n == 0)
            return -2;
        if (errno != EINTR)
            return -1;
    }
}

static ssize_t plain_read(void *ctx, void *buf, size_t n, int timeout)
{
    int fd = ((smtpd_io *)ctx)->in_fd;
    int w = wait_fd(fd, POLLIN, timeout);
    if (w < 0)
        return w;
    for (;;) {
        ssize_t r = read(fd, buf, n);
        if (r >= 0)
            return r;
        if (errno == EINTR)
            continue;
        /* ECONNRESET from a peer that vanished is just a lost connection */
        return errno == ECONNRESET ? 0 : -1;
    }
}

static ssize_t plain_write(void *ctx, const void *buf, size_t n, int timeout)
{
    smtpd_io *io = ctx;
    int fd = io->out_fd;

    for (;;) {
        ssize_t r;
        if (!io->out_not_socket) {
            /* DONTWAIT: a blocking send() of more than fits would wait
             * without the timeout. */
            r = send(fd, buf, n, MSG_DONTWAIT | MSG_NOSIGNAL);
            if (r < 0 && errno == ENOTSOCK) {
                io->out_not_socket = 1;
                continue;
            }
        } else {
            int w = wait_fd(fd, POLLOUT, timeout);
            if (w < 0)
                return w;
            r = write(fd, buf, n);
        }
        if (r >= 0)
            return r;
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK)
            return -1;
        int w = wait_fd(fd, POLLOUT, timeout);
        if (w < 0)
            return w;
    }
}

static const struct smtpd_io_transport plain_transport = {
    .read = plain_read,
    .write = plain_write,
};

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void smtpd_io_deadline(smtpd_io *io, int on, long long min_rate)
{
    io->deadline_ms = on && io->timeout > 0 ? now_ms() + (long long)io->timeout * 1000 : 0;
    io->min_rate = min_rate;
}

/* The wait for the next read: the per-operation timeout, cut to what is
 * left of the request deadline.  0 means the deadline has passed.  Replies
 * are not under the deadline: each write has the plain timeout, as in
 * Postfix, where every reply is a request of its own. */
static int wait_budget(const smtpd_io *io)
{
    if (io->deadline_ms == 0)
        return io->timeout;
    long long left = io->deadline_ms - now_ms();
    if (left <= 0)
        return 0;
    long long secs = (left + 999) / 1000;
    return secs < io->timeout ? (int)secs : io->timeout;
}

void smtpd_io_init(smtpd_io *io, int in_fd, int out_fd, int timeout)
{
    io->deadline_ms = 0;
    io->min_rate = 0;
    io->in_fd = in_fd;
    io->out_fd = out_fd;
    io->timeout = timeout;
    io->status = SMTPD_IO_OK;
    io->transport = &plain_transport;
    io->transport_ctx = io;
    io->rpos = io->rlen = 0;
    io->out_not_socket = 0;
    strbuf_init(&io->wbuf);
}

void smtpd_io_release(smtpd_io *io)
{
    strbuf_release(&io->wbuf);
}

void smtpd_io_set_transport(smtpd_io *io, const struct smtpd_io_transport *t, void *ctx)
{
    io->transport = t ? t : &plain_transport;
    io->transport_ctx = t ? ctx : io;
}

/* Refill the read buffer when it is empty.  Returns 1 data, 0 not. */
static int fill(smtpd_io *io)
{
    if (io->rpos < io->rlen)
        return 1;
    if (io->status != SMTPD_IO_OK)
        return 0;
    io->rpos = io->rlen = 0;
    int budget = wait_budget(io);
    ssize_t r = budget == 0 ? -2 : io->transport->read(io->transport_ctx, io->rbuf,
                                                       sizeof(io->rbuf), budget);
    if (r > 0) {
        io->rlen = (size_t)r;
        if (io->deadline_ms && io->min_rate > 0)
            io->deadline_ms += (long long)r * 1000 / io->min_rate;
        return 1;
    }
    io->status = r == 0 ? SMTPD_IO_EOF : r == -2 ? SMTPD_IO_TIMEOUT : SMTPD_IO_ERROR;
    return 0;
}

int smtpd_io_get_line(smtpd_io *io, strbuf *line, size_t limit, int *too_long, int *bare_lf)
{
    int last_cr = 0;            /* the byte before the LF was a CR */

    strbuf_reset(line);
    *too_long = 0;
    *bare_lf = 0;
    for (;;) {
        /* Reply to everything the client pipelined before we block. */
        if (io->rpos == io->rlen && smtpd_io_flush(io) < 0)
            return -1;
        if (!fill(io))
            return io->status == SMTPD_IO_EOF ? 0 : -1;
        char *start = io->rbuf + io->rpos;
        size_t avail = io->rlen - io->rpos;
        char *lf = memchr(start, '\n', avail);
        size_t take = lf ? (size_t)(lf - start) : avail;
        /* Keep at most limit bytes (+1 for a CR that may precede the LF);
         * the rest of an over-long line is read and dropped. */
        if (!*too_long) {
            size_t room = limit + 1 > line->len ? limit + 1 - line->len : 0;
            size_t keep = take < room ? take : room;
            strbuf_append(line, start, keep);
            if (keep < take)
                *too_long = 1;
        }
        if (take > 0)
            last_cr = start[take - 1] == '\r';
        io->rpos += take + (lf ? 1 : 0);
        if (lf) {
            *bare_lf = !last_cr;
            if (line->len > 0 && line->data[line->len - 1] == '\r')
                strbuf_truncate(line, line->len - 1);
            if (line->len > limit) {
                *too_long = 1;
                strbuf_truncate(line, limit);
            }
            return 1;
        }
    }
}

const char *smtpd_io_peek(smtpd_io *io, size_t *avail)
{
    if (io->rpos == io->rlen && smtpd_io_flush(io) < 0) {
        *avail = 0;
        return NULL;
    }
    if (!fill(io)) {
        *avail = 0;
        return NULL;
    }
    *avail = io->rlen - io->rpos;
    return io->rbuf + io->rpos;
}

void smtpd_io_consume(smtpd_io *io, size_t n)
{
    io->rpos += n;
    if (io->rpos > io->rlen)
        io->rpos = io->rlen;
}

size_t smtpd_io_pending(const smtpd_io *io)
{
    return io->rlen - io->rpos;
}

void smtpd_io_discard_input(smtpd_io *io)
{
    io->rpos = io->rlen = 0;
}

void smtpd_io_linger(smtpd_io *io, int seconds)
{
    char junk[4096];
    size_t total = 0;
    long long end = now_ms() + (long long)seconds * 1000;

    if (shutdown(io->out_fd, SHUT_WR) < 0)
        return;
    while (total < 1024 * 1024) {
        long long left = end - now_ms();
        if (left <= 0 || wait_fd(io->in_fd, POLLIN, (int)((left + 999) / 1000)) < 0)
            return;
        ssize_t r = read(io->in_fd, junk, sizeof(junk));
        if (r <= 0)
            return;
        total += (size_t)r;
    }
}

/* A pipelining client that never reads would otherwise make us queue
 * replies without bound; writing now lets the timeout catch it. */
static void flush_if_full(smtpd_io *io)
{
    if (io->wbuf.len > 4096)
        smtpd_io_flush(io);
}

void smtpd_io_put(smtpd_io *io, const char *text, size_t len)
{
    strbuf_append(&io->wbuf, text, len);
    flush_if_full(io);
}

void smtpd_io_printf(smtpd_io *io, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    strbuf_vappendf(&io->wbuf, fmt, ap);
    va_end(ap);
    flush_if_full(io);
}

int smtpd_io_flush(smtpd_io *io)
{
    size_t done = 0;

    if (io->status != SMTPD_IO_OK && io->status != SMTPD_IO_EOF) {
        strbuf_reset(&io->wbuf);
        return -1;
    }
    while (done < io->wbuf.len) {
        ssize_t w = io->transport->write(io->transport_ctx, io->wbuf.data + done,
                                         io->wbuf.len - done, io->timeout);
        if (w <= 0) {
            io->status = w == -2 ? SMTPD_IO_TIMEOUT : SMTPD_IO_ERROR;
            strbuf_reset(&io->wbuf);
            return -1;
        }
        done += (size_t)w;
    }
    strbuf_reset(&io->wbuf);
    return 0;
}
