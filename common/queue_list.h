/*
 * queue_list.h - the queue as a stream of listing records (what the showq
 * service sends and `postern queue` prints).
 *
 * One ipc record per message, attributes in this order:
 *     queue_name     maildrop | requeue | incoming | active | deferred | hold
 *                    (requeue: requeued, waiting for pickup to pass it
 *                    through cleanup again; it then gets a new queue id)
 *     queue_id       QID
 *     arrival_time   seconds since the epoch
 *     message_size   bytes (the X record: content with CRLF line ends;
 *                    for maildrop/, not yet picked up: the file's size)
 *     sender         "" for the null sender
 *     then for each pending recipient, in queue file order:
 *     rcpt           the address
 *     delay_reason   its current deferral reason from defer/H/QID
 *                    ("" when it was never deferred)
 *
 * Interface:
 *   queue_list_walk(emit, ctx)   from the current directory (the spool):
 *                  maildrop/, requeue/, incoming/, active/, deferred/,
 *                  hold/;
 *                  emit(record, ctx) per message; a nonzero return from
 *                  emit stops the walk and is returned.  Returns 0, or -1
 *                  (errno) when a queue directory cannot be read (a
 *                  missing one is empty).
 *   queue_list_message(queue, qid, record)  one message; 0, or -1 when it
 *                  is gone or unreadable (skipped by the walk: it moved or
 *                  is being removed; corrupt files are qmgr's business,
 *                  malformed maildrop files pickup's).  maildrop/ files are
 *                  read as untrusted input up to their first content
 *                  record; their recipients are the envelope's (none for
 *                  sendmail -t: cleanup extracts them later).
 *
 * Contract: streams: one message is in memory at a time, so memory stays
 * bounded by the largest message envelope and the cost is linear in the
 * queue.  Reads only; never changes the queue.
 */
#ifndef POSTERN_QUEUE_LIST_H
#define POSTERN_QUEUE_LIST_H

#include "ipc.h"

extern const char *const queue_list_queues[];   /* NULL-terminated */

int queue_list_walk(int (*emit)(const ipc_record *r, void *ctx), void *ctx);
int queue_list_message(const char *queue, const char *qid, ipc_record *r);

#endif
