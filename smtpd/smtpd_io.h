/*
 * smtpd_io.h - the SMTP session's byte stream: a buffered reader with a
 * line-length limit and a buffered writer, both with a per-operation
 * timeout.
 *
 * The transport below is replaceable (smtpd_io_set_transport): plain file
 * descriptors by default; STARTTLS later installs read/write functions that
 * go through OpenSSL.  Everything above this layer (the protocol engine)
 * only sees lines, raw byte runs and replies.
 *
 * Interface:
 *   smtpd_io_init(io, in_fd, out_fd, timeout)   in_fd == out_fd for sockets
 *   smtpd_io_get_line(io, line, limit, &too_long, &bare_lf)
 *       one line without its CR LF (or bare LF: bare_lf = 1).  A line longer than limit
 *       is read to its end and discarded (no buffer growth): too_long = 1
 *       and line holds the first limit bytes.  Returns 1 line, 0 end of
 *       input, -1 timeout or error (see io->status).
 *   smtpd_io_peek(io, &avail)  / smtpd_io_consume(io, n)
 *       raw access for DATA/BDAT: peek returns the buffered bytes, reading
 *       more when none are buffered (avail == 0 and NULL at EOF/error).
 *   smtpd_io_pending(io)       bytes already read but not consumed (a
 *                              pipelining client sent ahead).
 *   smtpd_io_discard_input(io) drop buffered input (STARTTLS must do this:
 *                              plaintext sent ahead is never carried over).
 *   smtpd_io_printf(io, fmt...) queue reply text (smtpd_io_put: the same
 *                              for text already made); smtpd_io_flush(io)
 *                              writes it all.  Returns 0 or -1.
 *   smtpd_io_deadline(io, on, min_rate)  Postfix's smtpd_per_request_deadline:
 *                              when on, the timeout bounds reading the whole
 *                              request from now (a client sending a byte a second
 *                              cannot hold the session), and each byte read
 *                              extends it by 1/min_rate seconds
 *                              (smtpd_min_data_rate; 0 = no extension).
 *                              Call at the start of every request.
 *   smtpd_io_linger(io, secs)  the server ends the session while the client
 *                              may still be sending (421 after too many
 *                              errors): half-close and discard input until
 *                              EOF, for at most secs seconds and 1 MB, so
 *                              the close is a FIN after the last reply and
 *                              not a reset that destroys unsent replies.
 *
 * Contract: every blocking read or write waits at most `timeout` seconds;
 * after any failure io->status is SMTPD_IO_EOF, _TIMEOUT or _ERROR and stays
 * so (the session is over).  Memory is bounded: the read buffer is fixed,
 * lines are capped by the caller's limit, and the writer flushes when its
 * queue passes a few KiB.
 */
#ifndef POSTERN_SMTPD_IO_H
#define POSTERN_SMTPD_IO_H

#include <stddef.h>
#include <sys/types.h>
#include "strbuf.h"

enum { SMTPD_IO_OK = 0, SMTPD_IO_EOF, SMTPD_IO_TIMEOUT, SMTPD_IO_ERROR };

/* A transport: read/write at most n bytes, waiting up to timeout seconds.
 * Return >0 bytes moved, 0 EOF (read), -1 error, -2 timeout. */
struct smtpd_io_transport {
    ssize_t (*read)(void *ctx, void *buf, size_t n, int timeout);
    ssize_t (*write)(void *ctx, const void *buf, size_t n, int timeout);
};

#define SMTPD_IO_BUFSIZE 16384

typedef struct smtpd_io {
    int in_fd, out_fd;
    int timeout;
    int status;
    int out_not_socket;         /* out_fd is a pipe/file: poll, then write() */
    long long deadline_ms;      /* per-request deadline (monotonic ms), 0 none */
    long long min_rate;         /* bytes per second that earn more time */
    const struct smtpd_io_transport *transport;
    void *transport_ctx;
    char rbuf[SMTPD_IO_BUFSIZE];
    size_t rpos, rlen;
    strbuf wbuf;
} smtpd_io;

void smtpd_io_init(smtpd_io *io, int in_fd, int out_fd, int timeout);
void smtpd_io_release(smtpd_io *io);
void smtpd_io_set_transport(smtpd_io *io, const struct smtpd_io_transport *t, void *ctx);

int smtpd_io_get_line(smtpd_io *io, strbuf *line, size_t limit, int *too_long, int *bare_lf);
const char *smtpd_io_peek(smtpd_io *io, size_t *avail);
void smtpd_io_consume(smtpd_io *io, size_t n);
size_t smtpd_io_pending(const smtpd_io *io);
void smtpd_io_discard_input(smtpd_io *io);

void smtpd_io_put(smtpd_io *io, const char *text, size_t len);
void smtpd_io_printf(smtpd_io *io, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
int smtpd_io_flush(smtpd_io *io);
void smtpd_io_deadline(smtpd_io *io, int on, long long min_rate);
void smtpd_io_linger(smtpd_io *io, int seconds);

#endif
