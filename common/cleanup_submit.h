/*
 * cleanup_submit.h - hand a finished message text to cleanup: the
 * "enqueue" conversation of doc/internals.md for daemons that compose a
 * whole notice themselves (qmgr's DSNs, local's reports to list owners).
 *
 * Interface:
 *   cleanup_submit_text(origin, from, to, text, timeout, new_qid, why)
 *       connect to private/cleanup (relative to the current directory, the
 *       queue directory in every daemon), read {queue_id}, send
 *       {request=enqueue, origin, sender=from, rcpt=to}, the text as
 *       {data=...} records cut at line ends, {end=1}, and read cleanup's
 *       verdict.  Returns 0 with the new queue id in new_qid, or -1 with
 *       the reason in why.
 *
 * Contract: text holds LF-terminated lines; every read and write has the
 * timeout (seconds); nothing is retried here (the caller decides).
 */
#ifndef POSTERN_CLEANUP_SUBMIT_H
#define POSTERN_CLEANUP_SUBMIT_H

#include "strbuf.h"

int cleanup_submit_text(const char *origin, const char *from, const char *to,
                        const strbuf *text, int timeout, strbuf *new_qid, strbuf *why);

#endif
