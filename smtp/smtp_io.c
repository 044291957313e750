/*
 * smtp_io.c - buffered line I/O with the smtp agent's timeouts.
 *
 * Interface: see smtp.h (smtp_io_*).  The transport is a table of
 * read/write/close functions: plain sockets here, TLS in smtp_tls.c swaps
 * them after STARTTLS.
 *
 * Contract: every smtp_io_flush() and smtp_io_getline() call finishes
 * within io->timeout seconds (a deadline for the call as a whole) or fails;
 * a failure is sticky (io->failed: SMTP_IO_TIMEOUT or SMTP_IO_LOST) so a
 * conversation can check once.  Lines longer than the caller's limit are
 * cut, the excess read and dropped, so a hostile server cannot make us
 * grow memory.  The socket is non-blocking; waits use poll().  A
 * transport that waits by itself (TLS) gets the time left in
 * io->op_timeout and may set io->failed before returning -1.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "smtp.h"

static ssize_t plain_read(struct smtp_io *io, void *buf, size_t len)
{
    return read(io->fd, buf, len);
}

static ssize_t plain_write(struct smtp_io *io, const void *buf, size_t len)
{
    return send(io->fd, buf, len, MSG_NOSIGNAL);
}

static void plain_close(struct smtp_io *io)
{
    (void)io;
}

static const struct smtp_io_ops plain_ops = { plain_read, plain_write, plain_close };

void smtp_io_init(struct smtp_io *io, int fd)
{
    memset(io, 0, sizeof(*io));
    io->fd = fd;
    io->timeout = 300;
    strbuf_init(&io->in);
    strbuf_init(&io->out);
    io->ops = &plain_ops;
    int fl = fcntl(fd, F_GETFL);
    if (fl >= 0)
        (void)fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

void smtp_io_free(struct smtp_io *io)
{
    if (io->ops && io->ops->close)
        io->ops->close(io);
    if (io->fd >= 0)
        close(io->fd);
    io->fd = -1;
    strbuf_release(&io->in);
    strbuf_release(&io->out);
}

void smtp_io_set_timeout(struct smtp_io *io, int seconds)
{
    io->timeout = seconds;
}

void smtp_io_write(struct smtp_io *io, const void *data, size_t len)
{
    strbuf_append(&io->out, data, len);
}

void smtp_io_puts(struct smtp_io *io, const char *s)
{
    strbuf_append_str(&io->out, s);
}

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000LL + ts.tv_nsec / 1000000;
}

int smtp_io_wait(int fd, int for_write, long long ms)
{
    if (ms < 0)
        ms = 0;
    struct pollfd p = { .fd = fd, .events = for_write ? POLLOUT : POLLIN };
    for (;;) {
        int rc = poll(&p, 1, ms > 1000000000LL ? 1000000000 : (int)ms);
        if (rc < 0 && errno == EINTR)
            continue;
        return rc > 0;
    }
}

/* Wait for the transport after EAGAIN-like results.  TLS may need to read
 * while writing and vice versa; the TLS ops map that to errno EAGAIN with
 * io->ctx telling which (see smtp_tls.c); here both directions are
 * polled so either case makes progress. */
static int io_wait_any(struct smtp_io *io, int for_write, long long deadline)
{
    long long left = deadline - now_ms();
    if (left <= 0)
        return 0;
    struct pollfd p = { .fd = io->fd, .events = (short)(for_write ? POLLOUT : POLLIN) };
    if (io->ctx)
        p.events = POLLIN | POLLOUT;
    for (;;) {
        int rc = poll(&p, 1, left > 1000000000LL ? 1000000000 : (int)left);
        if (rc < 0 && errno == EINTR)
            continue;
        return rc > 0;
    }
}

/* Seconds left until deadline, at least 1: for transports that wait
 * inside their own read/write (TLS). */
static void set_op_timeout(struct smtp_io *io, long long deadline)
{
    long long left = (deadline - now_ms() + 999) / 1000;
    io->op_timeout = left < 1 ? 1 : (int)left;
}

int smtp_io_flush(struct smtp_io *io)
{
    if (io->failed)
        return -1;
    long long deadline = now_ms() + (long long)io->timeout * 1000;
    size_t off = 0;
    while (off < io->out.len) {
        set_op_timeout(io, deadline);
        ssize_t n = io->ops->write(io, io->out.data + off, io->out.len - off);
        if (n > 0) {
            off += (size_t)n;
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
            if (!io_wait_any(io, 1, deadline)) {
                io->failed = SMTP_IO_TIMEOUT;
                return -1;
            }
            continue;
        }
        if (!io->failed)
            io->failed = SMTP_IO_LOST;
        return -1;
    }
    strbuf_reset(&io->out);
    return 0;
}

int smtp_io_getline(struct smtp_io *io, strbuf *line, size_t max)
{
    if (io->failed)
        return -1;
    if (io->out.len && smtp_io_flush(io) < 0)
        return -1;
    strbuf_reset(line);
    long long deadline = now_ms() + (long long)io->timeout * 1000;
    for (;;) {
        /* consume what is buffered */
        while (io->in_pos < io->in.len) {
            char c = io->in.data[io->in_pos++];
            if (c == '\n') {
                if (line->len && line->data[line->len - 1] == '\r')
                    strbuf_truncate(line, line->len - 1);
                if (io->in_pos == io->in.len) {
                    strbuf_reset(&io->in);
                    io->in_pos = 0;
                }
                return 0;
            }
            if (line->len < max)
                strbuf_append_char(line, c);
        }
        strbuf_reset(&io->in);
        io->in_pos = 0;
        char buf[4096];
        set_op_timeout(io, deadline);
        ssize_t n = io->ops->read(io, buf, sizeof(buf));
        if (n > 0) {
            strbuf_append(&io->in, buf, (size_t)n);
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
            if (!io_wait_any(io, 0, deadline)) {
                io->failed = SMTP_IO_TIMEOUT;
                return -1;
            }
            continue;
        }
        if (!io->failed)
            io->failed = SMTP_IO_LOST;
        return -1;
    }
}

void smtp_io_discard_input(struct smtp_io *io)
{
    strbuf_reset(&io->in);
    io->in_pos = 0;
}
