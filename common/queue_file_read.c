/*
 * queue_file_read.c - the queue file reader, the content reader, the
 * generic record reader and in-place marking of recipients.
 *
 * Interface (queue.h): queue_message_load, queue_message_free,
 * queue_message_attr, queue_content_open/next/close, queue_record_read,
 * queue_file_mark_done, queue_file_mark_done_nosync,
 * queue_message_unchanged.
 *
 * Contract:
 *   - Reads use pread() at offsets we track ourselves, never the fd's file
 *     offset, so several readers (and qmgr's marking) can share one fd.
 *   - Memory grows only with bytes actually present in the file: a bogus
 *     length cannot make us allocate more than the file holds.
 *   - queue_message_load() accepts only a complete, well-formed file:
 *         V "1", then T S A* in any order (T and S exactly once), then
 *         recipients ([N] [O] R)*, then M with the X offset; at that offset
 *         X "SIZE", then ([N] [O] R)*, then E "" and end of file.
 *     Anything else (unknown type letter, bad length, missing ':' or LF,
 *     truncation, duplicates, wrong order, a bad status byte, an X offset
 *     that does not land on an X record, bytes after E) is rejected with a
 *     reason naming the byte offset.  The content between M and X is not
 *     read by load (it may be large); queue_content_next() checks it.
 *   - queue_message_unchanged() reads the head again after a reader has
 *     used a file it opened by path: a file qmgr recycled (recycle/) may
 *     be taken over and rewritten by cleanup meanwhile (queue.h).
 *   - queue_file_mark_done() first checks that the byte it is about to
 *     overwrite is a status byte, so a wrong offset cannot corrupt a file.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mem.h"
#include "queue.h"

#define QF_CHUNK            65536
#define QF_ENVELOPE_MAX     (4 * 1024 * 1024)   /* any record but L */
#define QF_LENGTH_DIGITS    9
#define QF_MARK_DIGITS      20
#define QUEUE_RECORD_MAX_LEN 999999999UL        /* 9 digits */
#define QF_EOF              (-1)
#define QF_ERR              (-2)

/* A byte source: an fd read with pread at our own offset, or a FILE. */
struct qf_src {
    int fd;
    FILE *fp;
    off_t base;                 /* file offset of chunk[0] */
    size_t len, pos;            /* valid bytes in chunk, next one to use */
    off_t eof_at;               /* where a short pread ended the file, or -1 */
    char *chunk;                /* QF_CHUNK bytes; fd sources only */
    int io_errno;
};

static void qf_src_fd(struct qf_src *in, int fd, off_t offset)
{
    in->fd = fd;
    in->fp = NULL;
    in->base = offset;
    in->len = in->pos = 0;
    in->eof_at = -1;
    in->io_errno = 0;
    in->chunk = xmalloc(QF_CHUNK);
}

static void qf_src_release(struct qf_src *in)
{
    xfree(in->chunk);
    in->chunk = NULL;
}

static off_t qf_tell(const struct qf_src *in)
{
    return in->base + (off_t)in->pos;
}

/* A target inside the bytes already read needs no new pread (the X
 * record of a small file is in the first chunk). */
static void qf_seek(struct qf_src *in, off_t offset)
{
    if (offset >= in->base && offset <= in->base + (off_t)in->len) {
        in->pos = (size_t)(offset - in->base);
        return;
    }
    in->base = offset;
    in->len = in->pos = 0;
}

/* Refill the chunk from the fd.  1 got bytes, 0 EOF, -1 error.  Queue
 * files are regular files, where a short pread means end of file: the
 * next refill from there answers EOF without asking the kernel again
 * (a committed queue file changes only in place, its status bytes; one
 * recycled and rewritten meanwhile is what queue_message_unchanged()
 * catches, with or without this). */
static int qf_refill(struct qf_src *in)
{
    in->base += (off_t)in->len;
    in->len = in->pos = 0;
    if (in->eof_at >= 0 && in->base >= in->eof_at)
        return 0;
    ssize_t n;
    do
        n = pread(in->fd, in->chunk, QF_CHUNK, in->base);
    while (n < 0 && errno == EINTR);
    if (n < 0) {
        in->io_errno = errno;
        return -1;
    }
    in->len = (size_t)n;
    if (n < QF_CHUNK)
        in->eof_at = in->base + n;
    return n > 0;
}

static int qf_getbyte(struct qf_src *in)
{
    if (in->fp) {
        int c = getc(in->fp);
        if (c == EOF)
            return ferror(in->fp) ? QF_ERR : QF_EOF;
        return c;
    }
    if (in->pos == in->len) {
        int rc = qf_refill(in);
        if (rc <= 0)
            return rc < 0 ? QF_ERR : QF_EOF;
    }
    return (unsigned char)in->chunk[in->pos++];
}

/* Append up to n bytes to out.  Returns bytes appended (fewer at EOF), or
 * -1 on an I/O error.  out grows only as bytes arrive. */
static long qf_read(struct qf_src *in, strbuf *out, size_t n)
{
    size_t got = 0;
    if (in->fp) {
        char buf[8192];
        while (got < n) {
            size_t want = n - got < sizeof(buf) ? n - got : sizeof(buf);
            size_t r = fread(buf, 1, want, in->fp);
            strbuf_append(out, buf, r);
            got += r;
            if (r < want)
                return ferror(in->fp) ? -1 : (long)got;
        }
        return (long)got;
    }
    while (got < n) {
        if (in->pos == in->len) {
            int rc = qf_refill(in);
            if (rc < 0)
                return -1;
            if (rc == 0)
                break;
        }
        size_t take = in->len - in->pos;
        if (take > n - got)
            take = n - got;
        strbuf_append(out, in->chunk + in->pos, take);
        in->pos += take;
        got += take;
    }
    return (long)got;
}

static int qf_known_type(int c)
{
    return c != 0 && strchr("VTSANORMLXE", c) != NULL;
}

/*
 * Read one record.  1 ok (type, data, *data_offset = offset of DATA),
 * 0 EOF exactly at a record boundary, -1 malformed or I/O error (err set).
 */
static int qf_record(struct qf_src *in, int *type, strbuf *data, off_t *data_offset,
                     size_t max_len, strbuf *err)
{
    off_t start = qf_tell(in);
    strbuf_reset(data);
    strbuf_reserve(data, 0);    /* data->data is never NULL below */
    int c = qf_getbyte(in);
    if (c == QF_EOF)
        return 0;
    if (c == QF_ERR)
        goto io_error;
    if (!qf_known_type(c)) {
        strbuf_printf(err, "bad record type 0x%02x at offset %lld", c, (long long)start);
        return -1;
    }
    *type = c;
    size_t len = 0;
    int digits = 0;
    for (;;) {
        c = qf_getbyte(in);
        if (c == QF_ERR)
            goto io_error;
        if (c == QF_EOF) {
            strbuf_printf(err, "truncated %c record at offset %lld", *type, (long long)start);
            return -1;
        }
        if (c == ':')
            break;
        if (c < '0' || c > '9' || digits == QF_LENGTH_DIGITS || (digits == 1 && len == 0)) {
            strbuf_printf(err, "bad length in %c record at offset %lld", *type, (long long)start);
            return -1;
        }
        len = len * 10 + (size_t)(c - '0');
        digits++;
    }
    if (digits == 0) {
        strbuf_printf(err, "missing length in %c record at offset %lld", *type, (long long)start);
        return -1;
    }
    if (len > max_len) {
        strbuf_printf(err, "%c record too long (%zu bytes) at offset %lld",
                      *type, len, (long long)start);
        return -1;
    }
    if (data_offset)
        *data_offset = qf_tell(in);
    long got = qf_read(in, data, len);
    if (got < 0)
        goto io_error;
    if ((size_t)got < len) {
        strbuf_printf(err, "truncated %c record at offset %lld", *type, (long long)start);
        return -1;
    }
    c = qf_getbyte(in);
    if (c == QF_ERR)
        goto io_error;
    if (c != '\n') {
        strbuf_printf(err, "%s after %c record at offset %lld",
                      c == QF_EOF ? "truncated: missing newline" : "missing newline",
                      *type, (long long)start);
        return -1;
    }
    return 1;

io_error:
    strbuf_printf(err, "read error at offset %lld: %s", (long long)start,
                  strerror(in->fp ? errno : in->io_errno));
    return -1;
}

int queue_record_read(FILE *fp, int *type, strbuf *data, strbuf *err)
{
    struct qf_src in = { .fd = -1, .fp = fp };
    return qf_record(&in, type, data, NULL, QUEUE_RECORD_MAX_LEN, err);
}

/* ---- envelope ---------------------------------------------------------- */

/* Parse a decimal number made only of digits, no leading zeros but "0". */
static int qf_parse_decimal(const char *s, size_t len, size_t max_digits, long long *out)
{
    if (len == 0 || len > max_digits || (len > 1 && s[0] == '0'))
        return -1;
    long long v = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return 0;
}

struct qf_load {
    struct queue_message *msg;
    strbuf *err;
    char *notify;               /* pending N for the next R */
    char *orcpt;                /* pending O for the next R */
    size_t rcpt_cap;
    size_t attr_cap;
};

/* Handle N, O or R (before or after the content).  0 ok, -1 malformed. */
static int qf_recipient_record(struct qf_load *ld, int type, const strbuf *data,
                               off_t data_offset, off_t start)
{
    struct queue_message *msg = ld->msg;
    if (type == QREC_NOTIFY || type == QREC_ORCPT) {
        char **slot = type == QREC_NOTIFY ? &ld->notify : &ld->orcpt;
        if (*slot) {
            strbuf_printf(ld->err, "duplicate %c record at offset %lld", type, (long long)start);
            return -1;
        }
        *slot = xstrndup(data->data, data->len);
        return 0;
    }
    /* R: status byte then a non-empty address. */
    if (data->len < 2 || (data->data[0] != RCPT_PENDING && data->data[0] != RCPT_DONE)) {
        strbuf_printf(ld->err, "bad recipient record at offset %lld", (long long)start);
        return -1;
    }
    if ((size_t)msg->nrcpt == ld->rcpt_cap) {
        ld->rcpt_cap = ld->rcpt_cap ? ld->rcpt_cap * 2 : 8;
        msg->rcpts = xrealloc(msg->rcpts, ld->rcpt_cap * sizeof(*msg->rcpts));
    }
    struct queue_rcpt *r = &msg->rcpts[msg->nrcpt++];
    r->address = xstrndup(data->data + 1, data->len - 1);
    r->orcpt = ld->orcpt;
    r->notify = ld->notify;
    r->status = data->data[0];
    r->status_offset = data_offset;
    ld->orcpt = ld->notify = NULL;
    return 0;
}

static int qf_add_attr(struct qf_load *ld, const strbuf *data, off_t start)
{
    struct queue_message *msg = ld->msg;
    const char *eq = memchr(data->data, '=', data->len);
    if (!eq || eq == data->data) {
        strbuf_printf(ld->err, "bad attribute record at offset %lld", (long long)start);
        return -1;
    }
    if ((size_t)msg->nattrs == ld->attr_cap) {
        ld->attr_cap = ld->attr_cap ? ld->attr_cap * 2 : 8;
        msg->attr_names = xrealloc(msg->attr_names, ld->attr_cap * sizeof(char *));
        msg->attr_values = xrealloc(msg->attr_values, ld->attr_cap * sizeof(char *));
    }
    size_t nlen = (size_t)(eq - data->data);
    msg->attr_names[msg->nattrs] = xstrndup(data->data, nlen);
    msg->attr_values[msg->nattrs] = xstrndup(eq + 1, data->len - nlen - 1);
    msg->nattrs++;
    return 0;
}

static int qf_parse_time(struct queue_message *msg, const strbuf *data)
{
    const char *sp = memchr(data->data, ' ', data->len);
    if (!sp)
        return -1;
    long long sec, usec;
    size_t slen = (size_t)(sp - data->data);
    if (qf_parse_decimal(data->data, slen, 18, &sec) < 0 ||
        qf_parse_decimal(sp + 1, data->len - slen - 1, 6, &usec) < 0 || usec > 999999)
        return -1;
    msg->arrival_sec = sec;
    msg->arrival_usec = (long)usec;
    return 0;
}

/* The envelope part from V up to and including M.  0 ok, -1 malformed. */
static int qf_load_head(struct qf_src *in, struct qf_load *ld, strbuf *data, off_t *x_offset)
{
    struct queue_message *msg = ld->msg;
    int seen_version = 0, seen_time = 0, seen_rcpt = 0;
    for (;;) {
        off_t start = qf_tell(in), data_offset;
        int type;
        int rc = qf_record(in, &type, data, &data_offset, QF_ENVELOPE_MAX, ld->err);
        if (rc < 0)
            return -1;
        if (rc == 0) {
            strbuf_printf(ld->err, "truncated: end of file at offset %lld before the content",
                          (long long)start);
            return -1;
        }
        if (!seen_version) {
            if (type != QREC_VERSION) {
                strbuf_set_str(ld->err, "first record is not V");
                return -1;
            }
            if (data->len != 1 || data->data[0] != '1') {
                strbuf_set_str(ld->err, "unsupported queue file version");
                return -1;
            }
            seen_version = 1;
            continue;
        }
        /* Everything in the envelope becomes a C string: no NULs. */
        if (type != QREC_CONTENT && memchr(data->data, '\0', data->len)) {
            strbuf_printf(ld->err, "NUL byte in %c record at offset %lld", type, (long long)start);
            return -1;
        }
        switch (type) {
        case QREC_TIME:
            if (seen_time || seen_rcpt) {
                strbuf_printf(ld->err, "%s T record at offset %lld",
                              seen_time ? "duplicate" : "misplaced", (long long)start);
                return -1;
            }
            if (qf_parse_time(msg, data) < 0) {
                strbuf_printf(ld->err, "bad time record at offset %lld", (long long)start);
                return -1;
            }
            seen_time = 1;
            break;
        case QREC_SENDER:
            if (msg->sender || seen_rcpt) {
                strbuf_printf(ld->err, "%s S record at offset %lld",
                              msg->sender ? "duplicate" : "misplaced", (long long)start);
                return -1;
            }
            msg->sender = xstrndup(data->data, data->len);
            break;
        case QREC_ATTR:
            if (seen_rcpt) {
                strbuf_printf(ld->err, "misplaced A record at offset %lld", (long long)start);
                return -1;
            }
            if (qf_add_attr(ld, data, start) < 0)
                return -1;
            break;
        case QREC_NOTIFY:
        case QREC_ORCPT:
        case QREC_RCPT:
            seen_rcpt = 1;
            if (qf_recipient_record(ld, type, data, data_offset, start) < 0)
                return -1;
            break;
        case QREC_CONTENT: {
            long long x;
            if (!seen_time || !msg->sender) {
                strbuf_printf(ld->err, "missing %s record before the content",
                              seen_time ? "S" : "T");
                return -1;
            }
            if (ld->notify || ld->orcpt) {
                strbuf_set_str(ld->err, "N or O record not followed by R");
                return -1;
            }
            if (data->len != QF_MARK_DIGITS) {
                strbuf_printf(ld->err, "bad M record at offset %lld", (long long)start);
                return -1;
            }
            /* Zero-padded, so not qf_parse_decimal. */
            x = 0;
            for (size_t i = 0; i < data->len; i++) {
                if (data->data[i] < '0' || data->data[i] > '9' || x > 99999999999999999LL) {
                    strbuf_printf(ld->err, "bad M record at offset %lld", (long long)start);
                    return -1;
                }
                x = x * 10 + (data->data[i] - '0');
            }
            msg->content_offset = qf_tell(in);
            if (x < msg->content_offset) {
                strbuf_printf(ld->err, "X offset %lld inside the envelope", x);
                return -1;
            }
            *x_offset = (off_t)x;
            return 0;
        }
        default:
            strbuf_printf(ld->err, "%s %c record at offset %lld",
                          type == QREC_VERSION ? "duplicate" : "misplaced",
                          type, (long long)start);
            return -1;
        }
    }
}

/* From the X record to E and end of file.  0 ok, -1 malformed. */
static int qf_load_tail(struct qf_src *in, struct qf_load *ld, strbuf *data, off_t x_offset)
{
    struct queue_message *msg = ld->msg;
    qf_seek(in, x_offset);
    int type;
    off_t data_offset;
    int rc = qf_record(in, &type, data, &data_offset, QF_ENVELOPE_MAX, ld->err);
    if (rc == 0) {
        strbuf_printf(ld->err, "truncated: X offset %lld at or beyond end of file",
                      (long long)x_offset);
        return -1;
    }
    if (rc < 0 || type != QREC_XEND) {
        strbuf_printf(ld->err, "X offset %lld does not point at an X record",
                      (long long)x_offset);
        return -1;
    }
    long long size;
    if (qf_parse_decimal(data->data, data->len, 18, &size) < 0) {
        strbuf_printf(ld->err, "bad X record at offset %lld", (long long)x_offset);
        return -1;
    }
    msg->content_end = x_offset;
    msg->size = size;
    for (;;) {
        off_t start = qf_tell(in);
        rc = qf_record(in, &type, data, &data_offset, QF_ENVELOPE_MAX, ld->err);
        if (rc < 0)
            return -1;
        if (rc == 0) {
            strbuf_set_str(ld->err, "truncated: missing E record");
            return -1;
        }
        if (type != QREC_END && memchr(data->data, '\0', data->len)) {
            strbuf_printf(ld->err, "NUL byte in %c record at offset %lld", type, (long long)start);
            return -1;
        }
        switch (type) {
        case QREC_NOTIFY:
        case QREC_ORCPT:
        case QREC_RCPT:
            if (qf_recipient_record(ld, type, data, data_offset, start) < 0)
                return -1;
            break;
        case QREC_END:
            if (data->len != 0) {
                strbuf_printf(ld->err, "bad E record at offset %lld", (long long)start);
                return -1;
            }
            if (ld->notify || ld->orcpt) {
                strbuf_set_str(ld->err, "N or O record not followed by R");
                return -1;
            }
            if (qf_getbyte(in) != QF_EOF) {
                strbuf_printf(ld->err, "data after E record at offset %lld", (long long)start);
                return -1;
            }
            return 0;
        default:
            strbuf_printf(ld->err, "misplaced %c record at offset %lld", type, (long long)start);
            return -1;
        }
    }
}

int queue_message_load(int fd, const char *qid, struct queue_message *msg, strbuf *err)
{
    memset(msg, 0, sizeof(*msg));
    msg->qid = xstrdup(qid ? qid : "");
    struct qf_src src;
    struct qf_src *in = &src;
    qf_src_fd(in, fd, 0);
    struct qf_load ld = { .msg = msg, .err = err };
    strbuf data;
    strbuf_init(&data);
    off_t x_offset = 0;
    int rc = qf_load_head(in, &ld, &data, &x_offset);
    if (rc == 0)
        rc = qf_load_tail(in, &ld, &data, x_offset);
    xfree(ld.notify);
    xfree(ld.orcpt);
    strbuf_release(&data);
    qf_src_release(in);
    if (rc < 0)
        queue_message_free(msg);
    return rc;
}

int queue_message_unchanged(int fd, const struct queue_message *msg)
{
    /* The head is read again from the file, not from a cache: a writer
     * that took the file over (recycle/) writes offset 0 first, and its
     * T record (a later arrival) differs from the one msg was loaded
     * from. */
    struct qf_src src;
    qf_src_fd(&src, fd, 0);
    strbuf data, err;
    strbuf_init(&data);
    strbuf_init(&err);
    int same = 0;
    int type;
    off_t at;
    for (int n = 0; n < 64; n++) {
        if (qf_record(&src, &type, &data, &at, QF_ENVELOPE_MAX, &err) != 1)
            break;
        if (type == QREC_CONTENT || type == QREC_RCPT)
            break;              /* no T before them: not the file msg came from */
        if (type != QREC_TIME)
            continue;
        struct queue_message t;
        memset(&t, 0, sizeof(t));
        same = qf_parse_time(&t, &data) == 0 && t.arrival_sec == msg->arrival_sec
            && t.arrival_usec == msg->arrival_usec;
        break;
    }
    strbuf_release(&data);
    strbuf_release(&err);
    qf_src_release(&src);
    return same;
}

void queue_message_free(struct queue_message *msg)
{
    xfree(msg->qid);
    xfree(msg->sender);
    for (int i = 0; i < msg->nattrs; i++) {
        xfree(msg->attr_names[i]);
        xfree(msg->attr_values[i]);
    }
    xfree(msg->attr_names);
    xfree(msg->attr_values);
    for (int i = 0; i < msg->nrcpt; i++) {
        xfree(msg->rcpts[i].address);
        xfree(msg->rcpts[i].orcpt);
        xfree(msg->rcpts[i].notify);
    }
    xfree(msg->rcpts);
    memset(msg, 0, sizeof(*msg));
}

const char *queue_message_attr(const struct queue_message *msg, const char *name)
{
    for (int i = 0; i < msg->nattrs; i++)
        if (strcmp(msg->attr_names[i], name) == 0)
            return msg->attr_values[i];
    return NULL;
}

/* ---- content ----------------------------------------------------------- */

struct queue_content_reader {
    struct qf_src in;
    off_t end;                  /* offset of the X record */
};

queue_content_reader *queue_content_open(int fd, const struct queue_message *msg)
{
    queue_content_reader *r = xcalloc(1, sizeof(*r));
    qf_src_fd(&r->in, fd, msg->content_offset);
    r->end = msg->content_end;
    return r;
}

int queue_content_next(queue_content_reader *r, strbuf *line, strbuf *err)
{
    off_t start = qf_tell(&r->in);
    if (start == r->end)
        return 0;
    if (start > r->end) {
        strbuf_printf(err, "content overruns the X record at offset %lld", (long long)r->end);
        return -1;
    }
    int type;
    int rc = qf_record(&r->in, &type, line, NULL, QUEUE_RECORD_MAX_LEN, err);
    if (rc == 0) {
        strbuf_printf(err, "truncated content at offset %lld", (long long)start);
        return -1;
    }
    if (rc < 0)
        return -1;
    if (type != QREC_LINE) {
        strbuf_printf(err, "unexpected %c record in content at offset %lld", type,
                      (long long)start);
        return -1;
    }
    if (qf_tell(&r->in) > r->end) {
        strbuf_printf(err, "content overruns the X record at offset %lld", (long long)r->end);
        return -1;
    }
    return 1;
}

void queue_content_close(queue_content_reader *r)
{
    if (!r)
        return;
    qf_src_release(&r->in);
    xfree(r);
}

/* ---- marking ----------------------------------------------------------- */

static int mark_done(int fd, off_t status_offset, int sync)
{
    char c;
    ssize_t n;
    do
        n = pread(fd, &c, 1, status_offset);
    while (n < 0 && errno == EINTR);
    if (n != 1) {
        if (n == 0)
            errno = EINVAL;
        return -1;
    }
    if (c != RCPT_PENDING && c != RCPT_DONE) {
        errno = EINVAL;         /* not a status byte: refuse to corrupt */
        return -1;
    }
    if (c == RCPT_PENDING) {
        c = RCPT_DONE;
        do
            n = pwrite(fd, &c, 1, status_offset);
        while (n < 0 && errno == EINTR);
        if (n != 1) {
            if (n == 0)
                errno = EIO;
            return -1;
        }
    }
    /* fsync even when already done: the earlier write may not be durable. */
    return sync ? fsync(fd) : 0;
}

int queue_file_mark_done(int fd, off_t status_offset)
{
    return mark_done(fd, status_offset, 1);
}

int queue_file_mark_done_nosync(int fd, off_t status_offset)
{
    return mark_done(fd, status_offset, 0);
}
