/*
 * ipc.c - the IPC record codec and record streams over UNIX sockets.
 *
 * What it does: implements common/ipc.h.  A record is an ordered list of
 * named, binary-safe attributes; on the wire each attribute is
 *     NAME SP LENGTH LF VALUE LF
 * and a lone LF ends the record.
 *
 * Interface: see ipc.h.  Three layers here:
 *   - records: ipc_record_* (a growable array of name/strbuf pairs);
 *   - codec:   ipc_encode() and ipc_decode(), pure functions on memory;
 *   - streams: ipc_stream_* over a connected socket, with buffered reads,
 *              buffered record writes (ipc_queue/ipc_flush) and a timeout
 *              on every wait.
 *
 * Contract:
 *   - ipc_decode() never reads past len, returns 0 when the record is not
 *     complete yet (for any prefix of a valid record), -1 as soon as the
 *     bytes seen so far cannot start a valid record or a limit is exceeded.
 *   - A stream's timeout bounds each ipc_send()/ipc_flush()/ipc_recv() call
 *     as a whole (a deadline set when the call starts), so a peer that
 *     trickles one byte at a time cannot hold us longer than the timeout.
 *   - The read buffer never grows past max_record plus one read chunk; the
 *     write queue is written out once it reaches IPC_SEND_BUFFER, so it
 *     never holds more than that plus one record.
 *   - Writes use send(MSG_NOSIGNAL | MSG_DONTWAIT).  ipc_send() polls for
 *     POLLOUT before each one (unchanged for the daemons that use it: an
 *     earlier try-first experiment there changed qmgr/local timing, see
 *     doc/performance.md); ipc_flush() writes first and polls only when the
 *     socket is full (EAGAIN) -- a poll before every write is a system
 *     call that almost never waits.  On a non-socket fd (a pipe in
 *     standalone -S mode) both fall back to poll() and write() of at most
 *     PIPE_BUF bytes at a time, with SIGPIPE ignored.
 *   - The fd may be blocking or non-blocking: reads wait in poll() first
 *     and treat EAGAIN as "wait again".  ipc_connect_unix() returns a
 *     non-blocking fd.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "ipc.h"
#include "log.h"
#include "mem.h"

#define IPC_NAME_MAX        64
#define IPC_LENGTH_DIGITS   9
#define IPC_MAX_ATTRS       100000
#define IPC_DEFAULT_ATTR    (1024 * 1024)
#define IPC_DEFAULT_RECORD  (16 * 1024 * 1024)
#define IPC_READ_CHUNK      65536
#define IPC_SEND_BUFFER     65536       /* ipc_queue writes out at this size */

/* ---- records ----------------------------------------------------------- */

static int ipc_name_char(int c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
}

static int ipc_name_valid(const char *name)
{
    size_t n = 0;
    for (; name[n]; n++)
        if (!ipc_name_char((unsigned char)name[n]))
            return 0;
    return n >= 1 && n <= IPC_NAME_MAX;
}

ipc_record *ipc_record_new(void)
{
    return xcalloc(1, sizeof(ipc_record));
}

void ipc_record_reset(ipc_record *r)
{
    for (size_t i = 0; i < r->n; i++) {
        xfree(r->attrs[i].name);
        strbuf_release(&r->attrs[i].value);
    }
    r->n = 0;
}

void ipc_record_free(ipc_record *r)
{
    if (!r)
        return;
    ipc_record_reset(r);
    xfree(r->attrs);
    xfree(r);
}

/* Append an attribute whose name is known to be valid; name taken as is. */
static void ipc_record_push(ipc_record *r, char *name, const void *val, size_t len)
{
    if (r->n == r->cap) {
        r->cap = r->cap ? r->cap * 2 : 8;
        r->attrs = xrealloc(r->attrs, r->cap * sizeof(*r->attrs));
    }
    struct ipc_attr *a = &r->attrs[r->n++];
    a->name = name;
    strbuf_init(&a->value);
    strbuf_set(&a->value, val, len);
}

void ipc_record_add(ipc_record *r, const char *name, const void *val, size_t len)
{
    /* An invalid name is a programming error: sending it would make the
     * peer reject the whole record, so stop here where the bug is. */
    if (!ipc_name_valid(name))
        log_panic("ipc_record_add: invalid attribute name \"%s\"", name);
    ipc_record_push(r, xstrdup(name), val, len);
}

void ipc_record_add_str(ipc_record *r, const char *name, const char *val)
{
    ipc_record_add(r, name, val, strlen(val));
}

void ipc_record_add_int(ipc_record *r, const char *name, long long val)
{
    strbuf sb;
    strbuf_init(&sb);
    strbuf_append_int(&sb, val);
    ipc_record_add(r, name, sb.data, sb.len);
    strbuf_release(&sb);
}

const strbuf *ipc_record_get(const ipc_record *r, const char *name)
{
    for (size_t i = 0; i < r->n; i++)
        if (strcmp(r->attrs[i].name, name) == 0)
            return &r->attrs[i].value;
    return NULL;
}

const char *ipc_record_get_str(const ipc_record *r, const char *name)
{
    const strbuf *v = ipc_record_get(r, name);
    return v ? strbuf_str(v) : NULL;
}

int ipc_record_get_int(const ipc_record *r, const char *name, long long *out)
{
    const strbuf *v = ipc_record_get(r, name);
    if (!v || v->len == 0)
        return -1;
    const char *s = v->data;
    /* Strict: optional '-', digits only, no spaces, no overflow. */
    size_t i = (s[0] == '-') ? 1 : 0;
    if (i == v->len)
        return -1;
    for (size_t j = i; j < v->len; j++)
        if (s[j] < '0' || s[j] > '9')
            return -1;
    errno = 0;
    char *end;
    long long val = strtoll(s, &end, 10);
    if (errno == ERANGE || (size_t)(end - s) != v->len)
        return -1;
    *out = val;
    return 0;
}

size_t ipc_record_count(const ipc_record *r, const char *name)
{
    size_t n = 0;
    for (size_t i = 0; i < r->n; i++)
        if (strcmp(r->attrs[i].name, name) == 0)
            n++;
    return n;
}

void ipc_build(ipc_record *r, ...)
{
    va_list ap;
    ipc_record_reset(r);
    va_start(ap, r);
    for (;;) {
        const char *name = va_arg(ap, const char *);
        if (!name)
            break;
        const char *val = va_arg(ap, const char *);
        /* A NULL value skips the pair: handy for optional attributes. */
        if (val)
            ipc_record_add_str(r, name, val);
    }
    va_end(ap);
}

/* ---- codec ------------------------------------------------------------- */

/* One attribute "NAME SP LENGTH LF VALUE LF"; plain appends: this runs for
 * every attribute of every record. */
static void ipc_encode_attr(strbuf *out, const char *name, const void *val, size_t len)
{
    strbuf_append_str(out, name);
    strbuf_append_char(out, ' ');
    strbuf_append_int(out, (long long)len);
    strbuf_append_char(out, '\n');
    strbuf_append(out, val, len);
    strbuf_append_char(out, '\n');
}

void ipc_encode(const ipc_record *r, strbuf *out)
{
    for (size_t i = 0; i < r->n; i++)
        ipc_encode_attr(out, r->attrs[i].name, r->attrs[i].value.data, r->attrs[i].value.len);
    strbuf_append_char(out, '\n');
}

/*
 * Parse the header "NAME SP LENGTH LF" of one attribute starting at buf[p].
 * Returns 1 with *name_len, *val_len, *hdr_len set; 0 when more input is
 * needed; -1 when malformed.  Never reads past len.
 */
static int ipc_parse_header(const char *buf, size_t len, size_t p,
                            size_t *name_len, size_t *val_len, size_t *hdr_len,
                            size_t max_attr, const char **why)
{
    size_t i = p, n = 0;
    while (i < len && buf[i] != ' ') {
        if (!ipc_name_char((unsigned char)buf[i])) {
            *why = "malformed attribute name";
            return -1;
        }
        if (++n > IPC_NAME_MAX) {
            *why = "attribute name too long";
            return -1;
        }
        i++;
    }
    if (i == len)
        return 0;
    if (n == 0) {
        *why = "malformed attribute name";
        return -1;
    }
    i++;                                /* the space */
    size_t digits = 0, val = 0;
    while (i < len && buf[i] != '\n') {
        char c = buf[i];
        if (c < '0' || c > '9') {
            *why = "malformed attribute length";
            return -1;
        }
        if (digits == 1 && val == 0) {
            *why = "malformed attribute length";   /* leading zero */
            return -1;
        }
        if (++digits > IPC_LENGTH_DIGITS) {
            *why = "malformed attribute length";
            return -1;
        }
        val = val * 10 + (size_t)(c - '0');
        i++;
    }
    if (i == len)
        return 0;
    if (digits == 0) {
        *why = "malformed attribute length";
        return -1;
    }
    if (val > max_attr) {
        *why = "attribute value too long";
        return -1;
    }
    *name_len = n;
    *val_len = val;
    *hdr_len = i + 1 - p;
    return 1;
}

/*
 * Scan (validate without copying) from offset *pos, an attribute boundary
 * inside one record, with *nattrs attributes already seen.  On 0 (need more)
 * *pos and *nattrs are advanced to the last complete attribute so a later call
 * resumes there instead of rescanning; on success returns the record's total
 * length.
 */
static long ipc_scan(const char *buf, size_t len, size_t *pos, size_t *nattrs,
                     size_t max_attr, size_t max_record, const char **why)
{
    size_t p = *pos;
    for (;;) {
        if (p >= len)
            return 0;
        if (buf[p] == '\n') {
            if (p + 1 > max_record) {
                *why = "record too large";
                return -1;
            }
            return (long)(p + 1);
        }
        if (*nattrs >= IPC_MAX_ATTRS) {
            *why = "too many attributes";
            return -1;
        }
        size_t name_len, val_len, hdr_len;
        int rc = ipc_parse_header(buf, len, p, &name_len, &val_len, &hdr_len,
                                  max_attr, why);
        if (rc < 0)
            return -1;
        /* Reject as soon as the size is known: a header alone may already
         * promise more than the record may hold. */
        if (rc == 0) {
            /* Incomplete: the record needs at least one byte past len. */
            if (len >= max_record) {
                *why = "record too large";
                return -1;
            }
            return 0;
        }
        size_t end = p + hdr_len + val_len + 1;
        if (end + 1 > max_record) {     /* + the record's final LF */
            *why = "record too large";
            return -1;
        }
        if (end > len)
            return 0;
        if (buf[end - 1] != '\n') {
            *why = "missing newline after attribute value";
            return -1;
        }
        p = end;
        *pos = p;
        (*nattrs)++;
    }
}

/* Fill r from a record already validated by ipc_scan(). */
static void ipc_fill(const char *buf, size_t rec_len, ipc_record *r)
{
    size_t p = 0;
    const char *why;
    while (p < rec_len && buf[p] != '\n') {
        size_t name_len, val_len, hdr_len;
        (void)ipc_parse_header(buf, rec_len, p, &name_len, &val_len, &hdr_len,
                               SIZE_MAX, &why);
        ipc_record_push(r, xstrndup(buf + p, name_len),
                        buf + p + hdr_len, val_len);
        p += hdr_len + val_len + 1;
    }
}

long ipc_decode(const char *buf, size_t len, ipc_record *r,
                size_t max_attr, size_t max_record, const char **why)
{
    const char *dummy;
    if (!why)
        why = &dummy;
    ipc_record_reset(r);
    size_t pos = 0, nattrs = 0;
    long n = ipc_scan(buf, len, &pos, &nattrs, max_attr, max_record, why);
    if (n > 0)
        ipc_fill(buf, (size_t)n, r);
    return n;
}

/* ---- streams ----------------------------------------------------------- */

struct ipc_stream {
    int fd;
    int timeout;                /* seconds, 0 = none */
    size_t max_attr;
    size_t max_record;
    strbuf rbuf;                /* bytes read, not yet consumed */
    size_t rpos;                /* start of the unconsumed bytes */
    size_t scan_pos;            /* resume point of ipc_scan, relative to rpos */
    size_t scan_nattrs;
    strbuf wbuf;                /* queued records, not yet written */
    int use_write;              /* fd is not a socket: write() instead of send() */
    int failed;
    const char *error;
};

ipc_stream *ipc_stream_open(int fd, int timeout)
{
    ipc_stream *s = xcalloc(1, sizeof(*s));
    s->fd = fd;
    s->timeout = timeout;
    s->max_attr = IPC_DEFAULT_ATTR;
    s->max_record = IPC_DEFAULT_RECORD;
    strbuf_init(&s->rbuf);
    strbuf_init(&s->wbuf);
    return s;
}

void ipc_stream_set_limits(ipc_stream *s, size_t max_attr, size_t max_record)
{
    s->max_attr = max_attr;
    s->max_record = max_record;
}

void ipc_stream_set_timeout(ipc_stream *s, int timeout)
{
    s->timeout = timeout;
}

int ipc_stream_fd(const ipc_stream *s)
{
    return s->fd;
}

int ipc_input_ready(const ipc_stream *s)
{
    if (s->failed || s->rbuf.len > s->rpos)
        return 1;
    struct pollfd p = { .fd = s->fd, .events = POLLIN };
    return poll(&p, 1, 0) > 0;
}

void ipc_stream_free(ipc_stream *s)
{
    if (!s)
        return;
    strbuf_release(&s->rbuf);
    strbuf_release(&s->wbuf);
    xfree(s);
}

void ipc_stream_close(ipc_stream *s)
{
    if (!s)
        return;
    if (s->fd >= 0)
        close(s->fd);
    ipc_stream_free(s);
}

const char *ipc_error(const ipc_stream *s)
{
    return s->error ? s->error : "no error";
}

static int ipc_fail(ipc_stream *s, const char *why)
{
    s->failed = 1;
    s->error = why;
    return -1;
}

static long long ipc_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Wait until fd is ready for events or the deadline (ms, 0 = none) passes.
 * 1 ready, 0 timeout, -1 error. */
static int ipc_wait(int fd, short events, long long deadline)
{
    for (;;) {
        int ms = -1;
        if (deadline) {
            long long left = deadline - ipc_now_ms();
            if (left <= 0)
                return 0;
            ms = left > INT_MAX ? INT_MAX : (int)left;
        }
        struct pollfd pfd = { .fd = fd, .events = events };
        int rc = poll(&pfd, 1, ms);
        if (rc > 0)
            return 1;           /* POLLHUP/POLLERR: let read/write tell */
        if (rc == 0)
            return 0;
        if (errno != EINTR)
            return -1;
    }
}

static long long ipc_deadline(const ipc_stream *s)
{
    return s->timeout > 0 ? ipc_now_ms() + (long long)s->timeout * 1000 : 0;
}

static void ipc_ignore_sigpipe(void)
{
    struct sigaction sa;
    if (sigaction(SIGPIPE, NULL, &sa) == 0 && sa.sa_handler == SIG_DFL) {
        sa.sa_handler = SIG_IGN;
        sigemptyset(&sa.sa_mask);
        sa.sa_flags = 0;
        sigaction(SIGPIPE, &sa, NULL);
    }
}

/* Write out wbuf within the stream's timeout.  poll_first: wait for POLLOUT
 * before every write (ipc_send's way); else write first and poll only when
 * the socket is full. */
static int ipc_write_out(ipc_stream *s, int poll_first)
{
    if (s->failed)
        return -1;
    long long deadline = ipc_deadline(s);
    size_t off = 0;
    while (off < s->wbuf.len) {
        ssize_t n;
        if (poll_first || s->use_write) {
            int w = ipc_wait(s->fd, POLLOUT, deadline);
            if (w == 0)
                return ipc_fail(s, "timeout");
            if (w < 0)
                return ipc_fail(s, "poll error");
        }
        if (!s->use_write) {
            /* DONTWAIT: a blocking send() would wait for the whole buffer
             * and defeat the timeout. */
            n = send(s->fd, s->wbuf.data + off, s->wbuf.len - off,
                     MSG_NOSIGNAL | MSG_DONTWAIT);
            if (n < 0 && errno == ENOTSOCK) {
                s->use_write = 1;
                ipc_ignore_sigpipe();
                continue;
            }
        } else {
            /* A pipe that polls writable has room for PIPE_BUF bytes, so
             * a write of at most that much cannot block. */
            size_t len = s->wbuf.len - off;
            n = write(s->fd, s->wbuf.data + off, len > PIPE_BUF ? PIPE_BUF : len);
        }
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                if (!poll_first && !s->use_write) {
                    int w = ipc_wait(s->fd, POLLOUT, deadline);
                    if (w == 0)
                        return ipc_fail(s, "timeout");
                    if (w < 0)
                        return ipc_fail(s, "poll error");
                }
                continue;
            }
            if (errno == EPIPE || errno == ECONNRESET)
                return ipc_fail(s, "peer closed");
            return ipc_fail(s, "write error");
        }
        off += (size_t)n;
    }
    strbuf_reset(&s->wbuf);
    /* Keep the write buffer small between records. */
    if (s->wbuf.cap > 4 * IPC_SEND_BUFFER) {
        strbuf_release(&s->wbuf);
        strbuf_init(&s->wbuf);
    }
    return 0;
}

int ipc_flush(ipc_stream *s)
{
    return ipc_write_out(s, 0);
}

/* Write the queue out once it has reached the send buffer size. */
static int ipc_flush_if_full(ipc_stream *s)
{
    return s->wbuf.len >= IPC_SEND_BUFFER ? ipc_flush(s) : 0;
}

int ipc_queue(ipc_stream *s, const ipc_record *r)
{
    if (s->failed)
        return -1;
    ipc_encode(r, &s->wbuf);
    return ipc_flush_if_full(s);
}

int ipc_queue_attr(ipc_stream *s, const char *name, const void *val, size_t len)
{
    if (s->failed)
        return -1;
    /* The bytes ipc_encode() makes of a record with this one attribute,
     * without copying the value into a record first. */
    ipc_encode_attr(&s->wbuf, name, val, len);
    strbuf_append_char(&s->wbuf, '\n');
    return ipc_flush_if_full(s);
}

size_t ipc_queued(const ipc_stream *s)
{
    return s->wbuf.len;
}

int ipc_send(ipc_stream *s, const ipc_record *r)
{
    if (s->failed)
        return -1;
    ipc_encode(r, &s->wbuf);
    return ipc_write_out(s, 1);
}

/* Read at most one chunk into rbuf.  1 got bytes, 0 EOF, -1 error (set). */
static int ipc_fill_buffer(ipc_stream *s, long long deadline)
{
    /* Drop consumed bytes so the buffer stays bounded by one record. */
    if (s->rpos > 0) {
        size_t left = s->rbuf.len - s->rpos;
        memmove(s->rbuf.data, s->rbuf.data + s->rpos, left);
        strbuf_truncate(&s->rbuf, left);
        s->rpos = 0;
    }
    strbuf_reserve(&s->rbuf, IPC_READ_CHUNK);
    for (;;) {
        int w = ipc_wait(s->fd, POLLIN, deadline);
        if (w == 0)
            return ipc_fail(s, "timeout");
        if (w < 0)
            return ipc_fail(s, "poll error");
        ssize_t n = read(s->fd, s->rbuf.data + s->rbuf.len, IPC_READ_CHUNK);
        if (n < 0) {
            if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)
                continue;
            if (errno == ECONNRESET)
                return ipc_fail(s, "peer closed");
            return ipc_fail(s, "read error");
        }
        if (n == 0)
            return 0;
        s->rbuf.len += (size_t)n;
        s->rbuf.data[s->rbuf.len] = '\0';
        return 1;
    }
}

int ipc_recv(ipc_stream *s, ipc_record *r)
{
    ipc_record_reset(r);
    if (s->failed)
        return -1;
    /* Never wait for an answer to a request still sitting in the queue. */
    if (s->wbuf.len > 0 && ipc_flush(s) < 0)
        return -1;
    long long deadline = ipc_deadline(s);
    for (;;) {
        const char *avail = s->rbuf.data + s->rpos;
        size_t have = s->rbuf.len - s->rpos;
        const char *why = NULL;
        long n = have ? ipc_scan(avail, have, &s->scan_pos, &s->scan_nattrs,
                                 s->max_attr, s->max_record, &why) : 0;
        if (n < 0)
            return ipc_fail(s, why);
        if (n > 0) {
            ipc_fill(avail, (size_t)n, r);
            s->rpos += (size_t)n;
            s->scan_pos = 0;
            s->scan_nattrs = 0;
            return 0;
        }
        int rc = ipc_fill_buffer(s, deadline);
        if (rc < 0)
            return -1;
        if (rc == 0) {
            if (s->rbuf.len == s->rpos) {
                /* Clean EOF between records; further calls say EOF too. */
                return 1;
            }
            return ipc_fail(s, "peer closed");
        }
    }
}

/* ---- clients ----------------------------------------------------------- */

/* The backlog was full: connect again, blocking for at most timeout seconds
 * (0: without a bound, as a blocking connect), then make fd non-blocking
 * again.  0 connected, -1 error (errno). */
static int ipc_connect_wait(int fd, const struct sockaddr_un *sun, int timeout)
{
    struct timeval tv = { .tv_sec = timeout > 0 ? timeout : 0, .tv_usec = 0 };
    if (fcntl(fd, F_SETFL, O_RDWR) < 0
        || (timeout > 0 && setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) < 0))
        return -1;
    int rc;
    do
        rc = connect(fd, (const struct sockaddr *)sun, sizeof(*sun));
    while (rc < 0 && errno == EINTR);
    if (rc < 0)
        return -1;
    tv.tv_sec = 0;
    if ((timeout > 0 && setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) < 0)
        || fcntl(fd, F_SETFL, O_RDWR | O_NONBLOCK) < 0)
        return -1;
    return 0;
}

int ipc_connect_unix(const char *path, int timeout)
{
    struct sockaddr_un sun;
    memset(&sun, 0, sizeof(sun));
    sun.sun_family = AF_UNIX;
    if (strlen(path) >= sizeof(sun.sun_path)) {
        errno = ENAMETOOLONG;
        return -1;
    }
    strcpy(sun.sun_path, path);
    /* Non-blocking: a connect to a UNIX socket completes at once, or fails
     * with EAGAIN when the listener's backlog is full.  Only then do we pay
     * for a bounded wait: a blocking connect under SO_SNDTIMEO, which Linux
     * ends when the listener makes room or the timeout passes. */
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return -1;
    int rc;
    do
        rc = connect(fd, (struct sockaddr *)&sun, sizeof(sun));
    while (rc < 0 && errno == EINTR);
    if (rc < 0 && (errno == EAGAIN || errno == EINPROGRESS))
        rc = ipc_connect_wait(fd, &sun, timeout);
    if (rc < 0) {
        int saved = errno;
        if (saved == EAGAIN || saved == EINPROGRESS)
            saved = ETIMEDOUT;
        close(fd);
        errno = saved;
        return -1;
    }
    return fd;
}

int ipc_call(const char *path, int timeout, const ipc_record *req, ipc_record *reply)
{
    int fd = ipc_connect_unix(path, timeout);
    if (fd < 0) {
        log_debug("ipc_call: connect %s: %s", path, strerror(errno));
        return -1;
    }
    ipc_stream *s = ipc_stream_open(fd, timeout);
    int rc = ipc_send(s, req);
    if (rc == 0) {
        rc = ipc_recv(s, reply);
        if (rc == 1) {
            s->error = "peer closed without reply";
            rc = -1;
        }
    }
    if (rc < 0)
        log_warning("ipc_call %s: %s", path, ipc_error(s));
    ipc_stream_close(s);
    return rc;
}
