/*
 * cleanup_submit.h - the client side of the "enqueue" conversation with
 * cleanup (doc/internals.md) for daemons that pass a message they already
 * hold: qmgr's DSNs and local's reports to list owners (a whole text at
 * once), and pickup's requeue (an envelope of its own, then the content of
 * an old queue file).  smtpd streams from its client and keeps its own side
 * (smtpd/smtpd_cleanup.c), since it turns every step into an SMTP reply.
 *
 * Interface:
 *   cleanup_submit_open(timeout, why)   connect to private/cleanup
 *       (relative to the current directory: the queue directory in every
 *       daemon) and read its {queue_id}.  NULL with why set on failure.
 *   cleanup_submit_envelope(cs)          the record to fill with the
 *       request: {request=enqueue, sender, rcpt...}; empty on return;
 *   cleanup_submit_send(cs, why)         send that record;
 *   cleanup_submit_data(cs, p, len, why) one {data=...} record (LF-ended
 *       lines, at most CLEANUP_SUBMIT_CHUNK bytes a record is the habit);
 *   cleanup_submit_end(cs, new_qid, why) {end=1} and cleanup's verdict:
 *       0 with the new queue id in new_qid; cleanup's status (4 or 5) with
 *       "cleanup status N: [DSN ]REASON" in why; -1 on a broken
 *       conversation ("cleanup: ERROR" in why);
 *   cleanup_submit_close(cs)             always, also after errors;
 *   cleanup_submit_text(origin, from, to, text, timeout, new_qid, why)
 *       the whole conversation for one composed text to one recipient:
 *       0, or -1 with the reason in why (whatever went wrong).
 * All but open/close return 0 or -1 (why set) unless stated.
 *
 * Contract: every read and write has the timeout (seconds); nothing is
 * retried here (the caller decides); closing without a successful end
 * leaves nothing in the queue (cleanup discards an unfinished message).
 */
#ifndef POSTERN_CLEANUP_SUBMIT_H
#define POSTERN_CLEANUP_SUBMIT_H

#include <stddef.h>

#include "ipc.h"
#include "strbuf.h"

#define CLEANUP_SUBMIT_CHUNK 65536

typedef struct cleanup_submit cleanup_submit;

cleanup_submit *cleanup_submit_open(int timeout, strbuf *why);
ipc_record *cleanup_submit_envelope(cleanup_submit *cs);
int cleanup_submit_send(cleanup_submit *cs, strbuf *why);
int cleanup_submit_data(cleanup_submit *cs, const char *p, size_t len, strbuf *why);
int cleanup_submit_end(cleanup_submit *cs, strbuf *new_qid, strbuf *why);
void cleanup_submit_close(cleanup_submit *cs);

int cleanup_submit_text(const char *origin, const char *from, const char *to,
                        const strbuf *text, int timeout, strbuf *new_qid, strbuf *why);

#endif
