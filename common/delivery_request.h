/*
 * delivery_request.h - the agent side of qmgr's delivery conversation
 * (doc/internals.md, "delivery"), written once for every delivery agent.
 *
 * A delivery agent's serve() does:
 *
 *     struct delivery_request dr;
 *     int more = delivery_request_receive(&dr, client_fd, flags);
 *     while (more > 0) {
 *         fd = delivery_queue_file_open(dr.qid, dr.queue_file, &msg, &why);
 *         ... deliver dr.rcpts[0..nrcpt) ...
 *         delivery_request_reply(&dr, ...) once per recipient, in order;
 *         delivery_request_done(&dr);
 *         more = delivery_request_next(&dr, flags);
 *     }
 *     delivery_request_free(&dr);
 *
 * One connection may carry several requests (qmgr pipelines them to
 * agents whose TRANSPORT_destination_pipeline_limit is above 1): they are
 * answered strictly in order, each completely ({done=1}) before the next
 * is read; EOF ends the conversation.  An agent that serves only the
 * first request (smtp) simply stops after it; qmgr never pipelines to it.
 *
 * delivery_request_decode() is the pure part (no I/O, no logging), for
 * unit tests and the fuzzer.  It accepts only
 *   request=deliver (or request=wakeup, which asks for nothing);
 *   queue_id (a valid queue id), queue_file (non-empty, at most
 *   DELIVERY_QUEUE_FILE_MAX bytes) and sender ("" is the null sender),
 *   each exactly once; nexthop exactly once and non-empty when the caller
 *   passes DELIVERY_NEED_NEXTHOP, at most once otherwise; envid and ret
 *   at most once;
 *   at least one rcpt, each non-empty, with at most one orcpt= and one
 *   notify= before it (they belong to the rcpt= that follows; one left
 *   dangling after the last rcpt is an error);
 *   no NUL byte in any of those values (the agents use C strings).
 * Anything else (offset=, the times, unknown names) is ignored; the times
 * go through delivery_times_get(), which tolerates bad values.  The queue
 * file name is not checked here: delivery_queue_file_open() refuses one
 * outside the spool, and the agent then defers every recipient, as before.
 *
 * Ownership: every const char * in the request (qid, sender, rcpts[i].*)
 * points into the received record and lives until delivery_request_free();
 * the rcpts array is owned by the request.  delivery_request_free() is
 * safe after any outcome of receive/decode, and after delivery_request_init().
 */
#ifndef POSTERN_DELIVERY_REQUEST_H
#define POSTERN_DELIVERY_REQUEST_H

#include "delivery_log.h"
#include "ipc.h"
#include "queue.h"
#include "strbuf.h"

#define DELIVERY_NEED_NEXTHOP   1       /* flags: nexthop is required */
#define DELIVERY_QUEUE_FILE_MAX 4096

struct delivery_rcpt {
    const char *address;
    const char *orcpt;          /* ORCPT as stored ("rfc822;..."), or NULL */
    const char *notify;         /* NEVER / SUCCESS,FAILURE,DELAY, or NULL */
};

struct delivery_request {
    const char *qid;
    const char *queue_file;     /* relative to the queue directory */
    const char *sender;         /* "" = <> */
    const char *nexthop;        /* NULL when absent */
    const char *envid;          /* NULL when absent */
    const char *ret;            /* NULL when absent */
    struct delivery_times times;        /* session = when it was decoded */
    struct delivery_rcpt *rcpts;
    int nrcpt;
    /* private */
    ipc_stream *stream;
    ipc_record *in;
    ipc_record *out;
};

void delivery_request_init(struct delivery_request *dr);

/* Decode a received record, received at `now`: 1 a delivery request,
 * 0 a wakeup, -1 malformed with a short reason in why.  The request
 * points into in, which must outlive it. */
int delivery_request_decode(struct delivery_request *dr, const ipc_record *in,
                            double now, unsigned flags, strbuf *why);

/* Read one request from qmgr on the served connection (dup'ed: the
 * skeleton keeps client_fd), with ipc_timeout on every read.  1 a delivery
 * request to serve; 0 nothing to do: EOF, wakeup, or an unreadable or
 * malformed request (logged as a warning; no reply is sent). */
int delivery_request_receive(struct delivery_request *dr, int client_fd, unsigned flags);

/* Read the next request on the same connection, after the previous one
 * was answered with delivery_request_done(): same results as receive (0
 * on EOF, which ends the conversation).  The previous request's fields
 * are invalid afterwards.  ipc_timeout bounds the wait for it. */
int delivery_request_next(struct delivery_request *dr, unsigned flags);

/* Open and load the queue file read-only: the descriptor, or -1 with why
 * ("bad queue file name: ...", "open ...: ...", or the loader's reason).
 * On success the caller owns fd and msg (queue_message_free, close). */
int delivery_queue_file_open(const char *qid, const char *queue_file,
                             struct queue_message *msg, strbuf *why);

/* One recipient's result: log its outcome line (delivery_log(), relay as
 * given, end <= 0 meaning now), then answer qmgr
 * {rcpt, status, dsn, relay (empty: "none"), reason}. */
void delivery_request_reply(struct delivery_request *dr, const char *rcpt,
                            const char *orcpt, const char *relay,
                            const struct delivery_times *times, double end,
                            const char *dsn, const char *status, const char *reason);

/* The same for a request answered later than it was read (an agent that
 * holds its answers, local's group commit): qid names that request. */
void delivery_request_reply_for(struct delivery_request *dr, const char *qid,
                                const char *rcpt, const char *orcpt, const char *relay,
                                const struct delivery_times *times, double end,
                                const char *dsn, const char *status, const char *reason);
/* The final {done=1}. */
void delivery_request_done(struct delivery_request *dr);
/* 1 when qmgr's next request (or its EOF) can be read without waiting. */
int delivery_request_waiting(const struct delivery_request *dr);

void delivery_request_free(struct delivery_request *dr);

#endif
