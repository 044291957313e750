/*
 * ipc.h - the one codec for requests and replies between daemons.
 *
 * A record is an ordered list of named attributes; names may repeat (e.g.
 * one "rcpt" per recipient) and values are binary-safe.  Wire format, one
 * attribute:
 *
 *     NAME SP LENGTH LF VALUE LF         e.g. "sender 17\nalice@example.org\n"
 *
 * NAME is 1..64 of [a-z0-9_], LENGTH is decimal without leading zeros
 * (max 9 digits).  A record ends with a lone LF.  Trivial to parse,
 * trivial to read in strace.
 *
 * Interface:
 *   ipc_record_new/free/reset; ipc_record_add (bytes), _add_str, _add_int;
 *   ipc_record_get (first value of NAME, or NULL), _get_str, _get_int;
 *   ipc_record_count(NAME); iteration over r->attrs[0..n).
 *   ipc_build(r, "name", "value", ..., NULL): typed builder helper that
 *   resets r and adds string pairs.
 *   ipc_stream_open(fd, timeout) wraps a connected socket; ipc_send() writes
 *   a whole record (buffered, flushed); ipc_recv() reads one.
 *   Coalescing: ipc_queue() (a record) and ipc_queue_attr() (a record of one
 *   attribute, without building it) add to the stream's write queue, which
 *   goes out in one write at ipc_flush() -- or by itself once it holds
 *   IPC_SEND_BUFFER (64 KiB), so memory stays bounded however much is
 *   queued.  ipc_recv() flushes the queue before it waits for input.
 *   ipc_connect_unix(path, timeout) connects to a daemon's socket.
 *
 * Contract: every read and write has the stream's timeout (seconds; 0 means
 * none); ipc_recv() rejects malformed input (bad name, bad length, missing
 * LF, attribute longer than the stream's max_attr (default 1 MiB), record
 * larger than max_record (default 16 MiB), more than max_attrs (100000)
 * attributes) and never grows memory past those limits.  On any error the
 * stream is unusable; the caller closes it.  Return codes: 0 ok, 1 clean EOF
 * before the first byte of a record, -1 error with ipc_error(stream) a short
 * reason ("timeout", "malformed attribute name", "peer closed", ...).
 * The decoder is a pure function (ipc_decode) so it can be fuzzed without
 * sockets.
 */
#ifndef POSTERN_IPC_H
#define POSTERN_IPC_H

#include <stddef.h>
#include "strbuf.h"

struct ipc_attr {
    char *name;
    strbuf value;
};

typedef struct ipc_record {
    struct ipc_attr *attrs;
    size_t n;
    size_t cap;
} ipc_record;

ipc_record *ipc_record_new(void);
void ipc_record_free(ipc_record *r);
void ipc_record_reset(ipc_record *r);
void ipc_record_add(ipc_record *r, const char *name, const void *val, size_t len);
void ipc_record_add_str(ipc_record *r, const char *name, const char *val);
void ipc_record_add_int(ipc_record *r, const char *name, long long val);
const strbuf *ipc_record_get(const ipc_record *r, const char *name);
const char *ipc_record_get_str(const ipc_record *r, const char *name); /* NULL if absent */
int ipc_record_get_int(const ipc_record *r, const char *name, long long *out); /* 0 ok */
size_t ipc_record_count(const ipc_record *r, const char *name);
/* Reset r, then add name/value string pairs until a NULL name. */
void ipc_build(ipc_record *r, ...);

/* Encode r onto out (appends). */
void ipc_encode(const ipc_record *r, strbuf *out);
/* Decode one record from buf[0..len).  Returns bytes consumed (>0), 0 when
 * more input is needed, -1 when malformed (reason in *why, static string).
 * Limits as for streams. */
long ipc_decode(const char *buf, size_t len, ipc_record *r,
                size_t max_attr, size_t max_record, const char **why);

typedef struct ipc_stream ipc_stream;

ipc_stream *ipc_stream_open(int fd, int timeout);
void ipc_stream_set_limits(ipc_stream *s, size_t max_attr, size_t max_record);
void ipc_stream_set_timeout(ipc_stream *s, int timeout);
int ipc_stream_fd(const ipc_stream *s);
/* 1 when ipc_recv() would not wait: unread bytes are buffered, or the
 * descriptor is readable (data, EOF or an error) right now; else 0. */
int ipc_input_ready(const ipc_stream *s);
/* Close the fd and free (queued records that were not flushed are dropped). */
void ipc_stream_close(ipc_stream *s);
/* Free, leaving the fd open (its owner closes it). */
void ipc_stream_free(ipc_stream *s);
/* Queue r and write out the queue, waiting for POLLOUT before each write. */
int ipc_send(ipc_stream *s, const ipc_record *r);
/* Queue a record / a one-attribute record {name=val}; written when the queue
 * reaches 64 KiB (then an error is returned as by ipc_flush).  0 or -1. */
int ipc_queue(ipc_stream *s, const ipc_record *r);
int ipc_queue_attr(ipc_stream *s, const char *name, const void *val, size_t len);
/* Write everything queued, within the stream's timeout: write first, poll
 * only when the socket is full.  0 or -1. */
int ipc_flush(ipc_stream *s);
/* Bytes queued and not yet written. */
size_t ipc_queued(const ipc_stream *s);
int ipc_recv(ipc_stream *s, ipc_record *r);
const char *ipc_error(const ipc_stream *s);

/* Connect to a UNIX stream socket; returns a non-blocking fd (for use in an
 * ipc_stream) or -1 (errno set; ETIMEDOUT when the listener's backlog stayed
 * full for timeout seconds). */
int ipc_connect_unix(const char *path, int timeout);
/* Connect, send one record, read one reply, close.  0 ok, -1 error. */
int ipc_call(const char *path, int timeout, const ipc_record *req, ipc_record *reply);

#endif
