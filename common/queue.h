/*
 * queue.h - queue ids, queue files and queue directories.
 *
 * Queue id: 9 hex digits of arrival seconds, 5 hex digits of microseconds,
 * then the queue file's inode number in hex, all uppercase [0-9A-F]; e.g.
 * "06925A3F1B0C2E41A7F" (15..30 characters; see doc/queue-file.md).  Sorting ids as strings sorts by arrival time; the
 * inode makes it unique among live files; safe as a file name.
 *
 * Queue directories under queue_directory: maildrop incoming active deferred
 * hold requeue corrupt, plus defer/ (per-message deferral reasons), bounce/ and
 * trace/, and recycle/: finished queue files (qmgr renames them there
 * instead of unlinking them) that the writer reuses for new messages, so
 * the spool allocates and frees no inode per message.  recycle/ is not a
 * queue: nothing in it is ever listed or delivered.  deferred/ defer/ bounce/ trace/ are hashed one level by the last
 * character of the microseconds field (qid[13]): deferred/E/QID.  Others are
 * flat: incoming/QID.  queue_path() knows which.
 *
 * Queue file format: a sequence of records, each
 *     TYPE LENGTH ':' DATA '\n'          e.g. "S17:alice@example.org\n"
 * TYPE is one ASCII letter, LENGTH decimal (no sign, no leading zeros unless
 * "0", at most 9 digits), DATA binary-safe.  Order:
 *   V "1"                 version, always first
 *   T "SEC USEC"          arrival time
 *   S sender              ("" = null sender <>)
 *   A "name=value"        attributes: client_name client_addr helo_name
 *                         protocol sasl_method sasl_username envid ret
 *                         (FULL|HDRS) origin (smtp|pickup|bounce) ...
 *   [N notify] [O orcpt] R "<status><address>"    per recipient, N and O
 *                         apply to the R that follows them.  status byte:
 *                         '-' pending, 'D' done (delivered, or bounced and
 *                         the bounce queued); qmgr flips it in place.
 *   M "<20 digits>"       start of content; DATA is the zero-padded offset of
 *                         the X record, so readers can skip the content
 *   L line                one content line, without its line terminator
 *                         (headers then blank line then body, RFC 5322)
 *   X "SIZE"              end of content; SIZE = content bytes counted with
 *                         CRLF line ends (what SMTP would transmit)
 *   [N] [O] R ...         recipients found after the content (sendmail -t,
 *                         virtual alias expansion) may follow X
 *   E ""                  end of file: a file without it is incomplete
 *
 * Contract: cleanup writes a new file unnamed (O_TMPFILE) or as
 * incoming/.tmp-PID-N, fsyncs it, links (then fsyncs it again) or renames
 * it to incoming/QID and fsyncs the directory before replying; qmgr never
 * looks at dot-files.  The reader (queue_file_open/read) rejects any
 * malformed, truncated or out-of-order record, or a missing E, with a reason
 * string; qmgr moves such files to corrupt/.  queue_file_mark_done()
 * overwrites one status byte with pwrite and fsyncs, so a crash leaves the
 * recipient either pending (delivered again later) or done, never garbled.
 */
#ifndef POSTERN_QUEUE_H
#define POSTERN_QUEUE_H

#include <stdio.h>
#include <sys/types.h>
#include <sys/stat.h>
#include "strbuf.h"

#define QUEUE_ID_MAX 40

#define QREC_VERSION   'V'
#define QREC_TIME      'T'
#define QREC_SENDER    'S'
#define QREC_ATTR      'A'
#define QREC_NOTIFY    'N'
#define QREC_ORCPT     'O'
#define QREC_RCPT      'R'
#define QREC_CONTENT   'M'
#define QREC_LINE      'L'
#define QREC_XEND      'X'
#define QREC_END       'E'

#define RCPT_PENDING   '-'
#define RCPT_DONE      'D'

/* --- queue ids ---------------------------------------------------------- */
/* Make a queue id from arrival time and inode; buf >= QUEUE_ID_MAX. */
void queue_id_make(char *buf, long long sec, long usec, unsigned long long ino);
/* 1 if s is a syntactically valid queue id (safe as a file name). */
int queue_id_valid(const char *s);
/* Arrival seconds encoded in a valid id. */
long long queue_id_time(const char *qid);

/* --- directories -------------------------------------------------------- */
/* Path of QID in queue NAME, relative to queue_directory: "deferred/E/QID".
 * out's previous content is replaced. */
void queue_path(strbuf *out, const char *queue_name, const char *qid);
/* Create the queue directory tree under dir (and hash subdirs); 0 or -1.
 * As root every directory is chowned to owner:owner_group (mail_owner and
 * its primary group), except maildrop/ and public/: owner:submit_group
 * (setgid_group), which only postdrop and postern are setgid to. */
int queue_dirs_create(const char *queue_dir, uid_t owner, gid_t owner_group,
                      gid_t submit_group);
/* rename(2) QID from one queue to another and fsync both directories.
 * Paths relative to the current directory (daemons chdir to the spool). */
int queue_move(const char *qid, const char *from_queue, const char *to_queue);
/* queue_move without the fsyncs, for callers that move many files and then
 * make the moves durable at once with fsync_dir on both directories (the
 * directory of a path: queue_path, then cut at the last '/'). */
int queue_rename(const char *qid, const char *from_queue, const char *to_queue);
/* fsync a directory by path. */
int fsync_dir(const char *path);
/* Iterate every QID in a queue (hash subdirs too); skips dot-files and any
 * name that is not a valid queue id.  Returns 0, or the first nonzero value
 * fn returned (which stops the scan), or -1 (errno) if the queue cannot be
 * read. */
int queue_scan(const char *queue_name,
               int (*fn)(const char *qid, void *ctx), void *ctx);

/* Remove temporary files (".tmp-*", left by a writer that crashed) older
 * than max_age seconds from a queue directory.  Returns how many were
 * removed, or -1 (errno) if the directory cannot be read.  Pick max_age
 * well above the longest possible write (e.g. a day): a live writer may be
 * silent for as long as its client's timeout. */
int queue_purge_temp(const char *queue_name, long max_age);

/* --- writing (cleanup) -------------------------------------------------- */
/* Finished queue files waiting to be reused (relative to queue_directory). */
#define QUEUE_RECYCLE_DIR "recycle"

typedef struct queue_writer queue_writer;
/* Open an unnamed file in the queue (or, without O_TMPFILE, create
 * QUEUE/.tmp-*) and learn the queue id.  NULL + err on failure. */
queue_writer *queue_writer_create(const char *queue_name, strbuf *err);
/* Options for queue_writer_create_opts. */
#define QUEUE_WRITER_REUSE 1    /* take a file from recycle/ when it has one */
/* queue_writer_create with options; 0 is queue_writer_create itself. */
queue_writer *queue_writer_create_opts(const char *queue_name, int options,
                                       strbuf *err);
/* 1 if the writer's file came from recycle/, 0 if it was created. */
int queue_writer_reused(const queue_writer *w);
const char *queue_writer_id(const queue_writer *w);
void queue_writer_record(queue_writer *w, int type, const void *data, size_t len);
void queue_writer_record_str(queue_writer *w, int type, const char *s);
/* Begin content: writes M with a placeholder, patched by content_end. */
void queue_writer_content_begin(queue_writer *w);
void queue_writer_line(queue_writer *w, const char *line, size_t len);
void queue_writer_content_end(queue_writer *w);
/* Append E, flush, fsync, rename into place, fsync dir.  0 ok; -1 with
 * err and errno (ENOSPC/EDQUOT => disk full) and the temp file removed.
 * The writer is NOT freed: call queue_writer_abort() afterwards in every
 * case (after a commit it only frees); queue_writer_id() stays valid. */
int queue_writer_commit(queue_writer *w, strbuf *err);
/* The same, but the file lands in queue_name (say "hold") instead of the
 * queue it was created in: never visible in the latter. */
int queue_writer_commit_to(queue_writer *w, const char *queue_name, strbuf *err);
/* Remove the temp file (unless committed) and free. */
void queue_writer_abort(queue_writer *w);
size_t queue_writer_content_size(const queue_writer *w);

/* --- reading (qmgr, local, smtp, postern queue cat) --------------------- */
struct queue_rcpt {
    char *address;
    char *orcpt;                /* NULL if none */
    char *notify;               /* NULL if none, else "NEVER" or "SUCCESS,FAILURE,DELAY" subset */
    int status;                 /* RCPT_PENDING or RCPT_DONE */
    off_t status_offset;        /* byte offset of the status byte */
};

struct queue_message {
    char *qid;
    long long arrival_sec;
    long arrival_usec;
    char *sender;
    int nattrs;
    char **attr_names;
    char **attr_values;
    int nrcpt;
    struct queue_rcpt *rcpts;
    off_t content_offset;       /* offset of the first L record */
    off_t content_end;          /* offset of the X record */
    long long size;             /* from X */
};

/* Parse the envelope of an open queue file (reads V..M, seeks to X, reads
 * the rest).  0 ok; -1 with reason in err (malformed/incomplete). */
int queue_message_load(int fd, const char *qid, struct queue_message *msg, strbuf *err);
void queue_message_free(struct queue_message *msg);
const char *queue_message_attr(const struct queue_message *msg, const char *name);

/* Content iteration: positions at content_offset; each call returns the next
 * line (without terminator) in line; 1 = got a line, 0 = end of content,
 * -1 = malformed (err set). */
typedef struct queue_content_reader queue_content_reader;
queue_content_reader *queue_content_open(int fd, const struct queue_message *msg);
int queue_content_next(queue_content_reader *r, strbuf *line, strbuf *err);
void queue_content_close(queue_content_reader *r);

/* Generic record reader (for postern queue cat and tests): reads one record
 * from fp; 1 got one, 0 EOF at a record boundary, -1 malformed (err set). */
int queue_record_read(FILE *fp, int *type, strbuf *data, strbuf *err);

/* After reading a queue file by path (showq, postern queue): 1 if the
 * file open on fd still starts with the V and T records msg was loaded
 * from, 0 if not (the file was recycled and is being rewritten for
 * another message while it was read: treat the message as gone).  A
 * writer's first write covers offset 0, and a new message's T differs
 * from the old one's, so an unchanged head means nothing was rewritten
 * before this check. */
int queue_message_unchanged(int fd, const struct queue_message *msg);

/* Flip a recipient's status byte to RCPT_DONE and fsync.  0 ok, -1 error. */
int queue_file_mark_done(int fd, off_t status_offset);
/* The same without the fsync: for a file that is removed right after
 * (the removal is the record; a crash in between at worst repeats the
 * delivery, never loses it). */
int queue_file_mark_done_nosync(int fd, off_t status_offset);

#endif
