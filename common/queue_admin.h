/*
 * queue_admin.h - queue surgery on one file: delete, hold, release,
 * requeue (postern queue; qmgr for messages in its active queue).
 *
 * Interface:
 *   queue_admin_action_parse(word)   "delete" -> QA_DELETE ...; QA_NONE if
 *                                    the word is no action.
 *   queue_admin_apply(action, queue, qid)   with the spool as current
 *                                    directory.  Returns 1 done, 0 nothing
 *                                    to do (release of a message not on
 *                                    hold, hold of a held one, requeue of
 *                                    one in incoming/ or requeue/), -1 with errno
 *                                    (ENOENT: not in that queue any more:
 *                                    someone moved or removed it; the
 *                                    caller looks for it again).
 *   queue_admin_apply_nosync(...)    the same without the directory
 *                                    fsyncs (bulk changes): call
 *                                    queue_admin_sync() before reporting
 *                                    success.
 *   queue_admin_sync()               fsync every queue directory, then wake
 *                                    pickup if a nosync requeue happened;
 *                                    0 or -1.
 *   queue_admin_done_text(action)    "removed", "placed on hold",
 *                                    "released from hold", "requeued":
 *                                    the log line after "QID: ".
 *
 * What each does:
 *   delete   unlink QUEUE/QID, then its defer/ bounce/ trace/ logs.
 *   hold     rename to hold/ (never scheduled until released).
 *   release  from hold/ to deferred/ with mtime = now (due at once).
 *   requeue  to requeue/, then pickup is woken (public/pickup, a
 *            non-blocking connect: a busy or absent pickup is woken by
 *            master's timer or at the next start): pickup hands the file to
 *            cleanup again, as Postfix's postsuper -r does, so address
 *            rewriting and header checks apply afresh, and the message gets
 *            a new queue id (pickup/pickup.c).
 * Moves use queue_move() (rename, both directories fsynced), so a crash
 * leaves the file in exactly one queue; the nosync form only renames (a
 * crash before queue_admin_sync() may undo the move, never lose the file).
 *
 * Contract: a file in active/ belongs to qmgr while qmgr runs; callers
 * must not apply actions to active/ then (they ask qmgr over public/qmgr,
 * doc/internals.md), except qmgr itself.
 */
#ifndef POSTERN_QUEUE_ADMIN_H
#define POSTERN_QUEUE_ADMIN_H

enum queue_admin_action { QA_NONE, QA_DELETE, QA_HOLD, QA_RELEASE, QA_REQUEUE };

int queue_admin_action_parse(const char *word);
const char *queue_admin_action_name(int action);
const char *queue_admin_done_text(int action);
int queue_admin_apply(int action, const char *queue, const char *qid);
int queue_admin_apply_nosync(int action, const char *queue, const char *qid);
int queue_admin_sync(void);

#endif
