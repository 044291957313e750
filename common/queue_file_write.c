/*
 * queue_file_write.c - the queue file writer (used by cleanup and postdrop).
 *
 * What it does: opens an unnamed file (O_TMPFILE, mode 0600) in QUEUE
 * (tmpfile_link.c), or where that is not available creates
 * QUEUE/.tmp-PID-N exclusively (mode 0600); with QUEUE_WRITER_REUSE it
 * first tries to take a finished queue file from recycle/ under such a
 * .tmp name.  It derives the queue id from the arrival time and the
 * file's inode, buffers records in the format of queue.h, and on commit
 * appends E, cuts a reused file to the new length, fsyncs the file, gives
 * it its final name -- an unnamed file by linkat (then fsynced again for
 * its link count), a .tmp file by rename -- and fsyncs the directory.
 *
 * Interface (queue.h): queue_writer_create, _create_opts, _reused, _id,
 * _record, _record_str, _content_begin, _line, _content_end, _commit,
 * _commit_to, _abort, _content_size.
 *
 * Contract:
 *   - Nothing is visible under a queue id before commit succeeds: an
 *     unnamed file has no name until the linkat after its fsync, readers
 *     (qmgr) ignore dot-files, and the link or rename is the last step
 *     before the directory fsync.
 *   - commit_to puts the file straight into another queue of the same
 *     spool (cleanup: hold/), so it is never seen in the first one: a
 *     commit to incoming/ and a move to hold/ after it would let a qmgr
 *     scanning meanwhile take a message that must be held.
 *   - Write errors are sticky: the first one is remembered (errno kept),
 *     later writes are skipped, and commit reports it, so callers check
 *     once.  On a commit error the temporary (or final) file is removed
 *     (an unnamed one vanishes with its close) and errno is the original
 *     cause (ENOSPC/EDQUOT => disk full).
 *   - The M record holds a 20-digit placeholder written at content_begin
 *     and patched in place (in the buffer, or with pwrite once flushed) by
 *     content_end with the offset of the X record.
 *   - Callers write V T S A N O R (and L inside the content) with
 *     queue_writer_record; M, X and E come only from content_begin,
 *     content_end and commit.  Breaking the order (no V first, a non-L
 *     record inside the content, M/X/E by hand) is a programming error and
 *     panics: the file would be rejected by every reader.
 *   - Always call queue_writer_abort() to free the writer, also after a
 *     commit (successful or not): it then only frees.  queue_writer_id()
 *     stays valid until then.
 *   - Within one process ids are strictly increasing: if the clock has not
 *     moved (or went back) since the last id, the last time plus one
 *     microsecond is used, so two files in one process never share an id
 *     even when the kernel reuses an inode at once.
 *   - Reuse (QUEUE_WRITER_REUSE; cleanup only, never maildrop/): names
 *     come from a per-process batch read from recycle/ (one readdir per
 *     batch of up to 64; after an empty one the next 4 files are
 *     created without looking).  rename(recycle/NAME, QUEUE/.tmp-PID-N)
 *     is the claim: of several writers trying one name exactly one
 *     succeeds, the others get ENOENT and try their next name.  The
 *     claimed file is used only if fstat shows a regular file owned by
 *     the effective uid with one link (after a system crash on a file
 *     system without a journal, fsck can leave a recycled inode also
 *     linked under a live queue name: its link count is then 2 and it is
 *     not touched); anything else is unlinked and skipped.  It is
 *     written from offset 0 over the old bytes and cut to the new length
 *     (ftruncate) before the fsync, so after commit it holds exactly the
 *     new message.  Its mtime is set at the claim (temp file age).
 *   - Uniqueness of reused ids: a queue id is (arrival time, inode).
 *     Two live files never share an inode, so two live files never share
 *     an id.  A reused inode gets a new id because its new arrival time
 *     differs from the old one: the old id's time was taken before the
 *     old message was written, delivered and recycled, and this
 *     process's times only increase; only a wall clock stepped back past
 *     the old arrival could repeat a (time, inode) pair, the same risk
 *     the kernel's own inode reuse always had.  The claim rename makes
 *     one process the only owner of the inode until its commit.
 *   - Readers that open queue files by path (showq, postern queue) check
 *     with queue_message_unchanged() after reading: the first write of
 *     a writer that took a file over covers offset 0 (the T record).
 *   - Fallback: when the unnamed file cannot be linked (tmpfile_link says
 *     EOPNOTSUPP: an old kernel that wants CAP_DAC_READ_SEARCH for
 *     AT_EMPTY_PATH and no /proc, e.g. a chrooted cleanup), commit copies
 *     it to a .tmp file and renames that; the process then creates .tmp
 *     files from the start (tmpfile_link.c remembers).  The id keeps the
 *     unnamed file's inode: its arrival time was taken while that inode
 *     was live, so no other writer's id can equal it unless the clock
 *     steps back, and the NOREPLACE rename refuses a clash anyway.
 *   - Crash safety: a writer killed with an unnamed file leaves nothing;
 *     one killed with a .tmp file (fallback, or after a reuse claim)
 *     leaves it for queue_purge_temp; one killed before a claim leaves
 *     the file in recycle/, which is never delivered.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include "log.h"
#include "mem.h"
#include "queue.h"
#include "tmpfile_link.h"

#define QUEUE_WRITE_CHUNK   65536
#define QUEUE_RECORD_MAXLEN 999999999UL
#define QUEUE_MARK_DIGITS   20

struct queue_writer {
    char *queue_name;
    char qid[QUEUE_ID_MAX];
    strbuf tmp_path;            /* "" while the file is unnamed */
    int fd;
    int unnamed;                /* an O_TMPFILE: named by linkat at commit */
    strbuf buf;                 /* bytes not yet written to fd */
    off_t flushed;              /* bytes already written to fd */
    off_t mark_offset;          /* offset of the M placeholder digits, or -1 */
    size_t content_size;        /* content bytes counted with CRLF */
    int wrote_version;          /* a record was written (V must be first) */
    int in_content;
    int content_done;
    int committed;              /* 1 after commit (ok or failed): file handled */
    int reused;                 /* the file came from recycle/: old bytes
                                 * past our end are cut at commit */
    int error;                  /* first errno, 0 = none */
    const char *error_op;       /* what failed: "write", "fsync", ... */
};

static unsigned long queue_tmp_counter;
static long long queue_last_sec = -1;
static long queue_last_usec;

static void queue_writer_fail(queue_writer *w, const char *op, int err)
{
    if (!w->error) {
        w->error = err ? err : EIO;
        w->error_op = op;
    }
}

/* Arrival time for a new id: wall clock, but strictly increasing. */
static void queue_next_time(long long *sec, long *usec)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    long long s = tv.tv_sec;
    long u = tv.tv_usec;
    if (s < queue_last_sec || (s == queue_last_sec && u <= queue_last_usec)) {
        s = queue_last_sec;
        u = queue_last_usec + 1;
        if (u > 999999) {
            s++;
            u = 0;
        }
    }
    queue_last_sec = s;
    queue_last_usec = u;
    *sec = s;
    *usec = u;
}

/*
 * Reuse of finished queue files (recycle/).  qmgr renames a finished
 * queue file to recycle/QID instead of unlinking it; a writer asked to
 * reuse claims one by renaming it to its own QUEUE/.tmp-PID-N.  Names are
 * read from recycle/ in batches, so there is one readdir per batch, not
 * per message; every process reading the same batch starts at its own
 * place in it (by pid) to make two claims of one name rarer.
 */
#define RECYCLE_BATCH        64
#define RECYCLE_TRIES        16  /* names tried per create before creating */
#define RECYCLE_EMPTY_SKIP   4   /* creates without a look after an empty batch */

static char *recycle_names[RECYCLE_BATCH];
static int recycle_count, recycle_next;
static int recycle_skip;

static void recycle_batch_clear(void)
{
    for (int i = 0; i < recycle_count; i++)
        xfree(recycle_names[i]);
    recycle_count = recycle_next = 0;
}

/* Read up to RECYCLE_BATCH names from recycle/.  Number read. */
static int recycle_batch_read(void)
{
    recycle_batch_clear();
    DIR *d = opendir(QUEUE_RECYCLE_DIR);
    if (!d)
        return 0;               /* no recycle/ (an old spool): create */
    struct dirent *de;
    while (recycle_count < RECYCLE_BATCH && (de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.')
            continue;
        recycle_names[recycle_count++] = xstrdup(de->d_name);
    }
    closedir(d);
    if (recycle_count > 0)
        recycle_next = (int)((unsigned long)getpid() % (unsigned long)recycle_count);
    return recycle_count;
}

/* Next name to try, or NULL when recycle/ looks empty. */
static const char *recycle_next_name(void)
{
    if (recycle_skip > 0) {
        recycle_skip--;
        return NULL;
    }
    if (recycle_count == 0 && recycle_batch_read() == 0) {
        recycle_skip = RECYCLE_EMPTY_SKIP;
        return NULL;
    }
    /* Each name is handed out once: taken or lost to another process,
     * it is not in recycle/ any more. */
    char *name = recycle_names[recycle_next];
    recycle_names[recycle_next] = recycle_names[--recycle_count];
    recycle_names[recycle_count] = NULL;
    if (recycle_next >= recycle_count)
        recycle_next = 0;
    static char current[NAME_MAX + 1];
    snprintf(current, sizeof(current), "%s", name);
    xfree(name);
    return current;
}

/*
 * Claim a file from recycle/ as w->tmp_path: the rename is the claim
 * (ENOENT: another writer took it first).  The file must be a regular
 * file of ours with one link; anything else is unlinked and skipped.
 * Sets w->fd and *st; 0 ok, -1 none (create a new file instead).
 */
static int recycle_claim(queue_writer *w, struct stat *st)
{
    strbuf from;
    strbuf_init(&from);
    int rc = -1;
    for (int tries = 0; rc < 0 && tries < RECYCLE_TRIES; tries++) {
        const char *name = recycle_next_name();
        if (!name)
            break;
        strbuf_printf(&from, "%s/%s", QUEUE_RECYCLE_DIR, name);
        int moved = -1;
        for (int attempt = 0; attempt < 100; attempt++) {
            strbuf_printf(&w->tmp_path, "%s/.tmp-%ld-%lu", w->queue_name,
                          (long)log_pid(), queue_tmp_counter++);
            moved = renameat2(AT_FDCWD, from.data, AT_FDCWD, w->tmp_path.data,
                              RENAME_NOREPLACE);
            if (moved < 0 && (errno == EINVAL || errno == ENOSYS))
                moved = rename(from.data, w->tmp_path.data);
            if (moved == 0 || errno != EEXIST)
                break;          /* EEXIST: a stale temp file with our pid */
        }
        if (moved < 0) {
            if (errno == ENOENT)
                continue;       /* another writer claimed it */
            log_warning("reuse %s: rename to %s: %s", from.data,
                        w->tmp_path.data, strerror(errno));
            recycle_skip = RECYCLE_EMPTY_SKIP;
            break;
        }
        /* O_NONBLOCK: a FIFO must not block the open; O_NOFOLLOW: nor may a
         * symlink lead anywhere.  Neither is ever put there by qmgr. */
        int fd = open(w->tmp_path.data,
                      O_WRONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
        if (fd >= 0 && fstat(fd, st) == 0 && S_ISREG(st->st_mode)
            && st->st_uid == geteuid() && st->st_nlink == 1) {
            /* A regular file: O_NONBLOCK changes nothing; mode as created. */
            /* The mtime is the temp file's age for queue_purge_temp(): a
             * file that sat in recycle/ for days must look new now, not
             * only after its first write (small messages are written at
             * commit). */
            if ((st->st_mode & 07777) != 0600 && fchmod(fd, 0600) < 0) {
                log_warning("reuse %s: fchmod: %s", w->tmp_path.data, strerror(errno));
            } else if (futimens(fd, NULL) < 0) {
                log_warning("reuse %s: futimens: %s", w->tmp_path.data, strerror(errno));
            } else {
                w->fd = fd;
                w->reused = 1;
                rc = 0;
                break;
            }
        } else {
            log_warning("reuse %s: not a regular file of ours with one link: "
                        "removed", from.data);
        }
        if (fd >= 0)
            close(fd);
        /* A directory (open said EISDIR) goes too, when it is empty. */
        if (unlink(w->tmp_path.data) < 0 && errno == EISDIR
            && rmdir(w->tmp_path.data) < 0)
            log_warning("reuse %s: cannot remove %s: %s", from.data,
                        w->tmp_path.data, strerror(errno));
    }
    strbuf_release(&from);
    return rc;
}

queue_writer *queue_writer_create(const char *queue_name, strbuf *err)
{
    return queue_writer_create_opts(queue_name, 0, err);
}

/* Create QUEUE/.tmp-PID-N (O_EXCL, mode 0600) as w->tmp_path.  A stale
 * temp file of an earlier process with our pid may exist: step the
 * counter past it rather than reuse it.  The fd, or -1 (errno). */
static int create_named_temp(queue_writer *w)
{
    int fd = -1;
    for (int attempt = 0; attempt < 100; attempt++) {
        strbuf_printf(&w->tmp_path, "%s/.tmp-%ld-%lu", w->queue_name,
                      (long)log_pid(), queue_tmp_counter++);
        fd = open(w->tmp_path.data, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (fd >= 0 || errno != EEXIST)
            break;
    }
    return fd;
}

queue_writer *queue_writer_create_opts(const char *queue_name, int options,
                                       strbuf *err)
{
    queue_writer *w = xcalloc(1, sizeof(*w));
    w->queue_name = xstrdup(queue_name);
    w->fd = -1;
    w->mark_offset = -1;
    strbuf_init(&w->tmp_path);
    strbuf_init(&w->buf);
    struct stat st;
    if ((options & QUEUE_WRITER_REUSE) && recycle_claim(w, &st) == 0)
        goto have_file;
    /* An unnamed file, linked to its final name at commit.  O_RDWR: the
     * fallback at commit copies it to a named file.  Any failure here
     * sends us to the named file, which reports its own error. */
    w->fd = tmpfile_open(queue_name, O_RDWR, 0600);
    if (w->fd >= 0) {
        if (fstat(w->fd, &st) == 0) {
            w->unnamed = 1;
            goto have_file;
        }
        close(w->fd);
        w->fd = -1;
    }
    w->fd = create_named_temp(w);
    if (w->fd < 0) {
        int saved = errno;
        if (err)
            strbuf_printf(err, "create queue file %s: %s",
                          w->tmp_path.data, strerror(saved));
        strbuf_release(&w->tmp_path);
        strbuf_release(&w->buf);
        xfree(w->queue_name);
        xfree(w);
        errno = saved;
        return NULL;
    }
    if (fstat(w->fd, &st) < 0) {
        int saved = errno;
        if (err)
            strbuf_printf(err, "fstat queue file %s: %s",
                          w->tmp_path.data, strerror(saved));
        queue_writer_abort(w);
        errno = saved;
        return NULL;
    }
have_file:;
    long long sec;
    long usec;
    queue_next_time(&sec, &usec);
    queue_id_make(w->qid, sec, usec, (unsigned long long)st.st_ino);
    return w;
}

int queue_writer_reused(const queue_writer *w)
{
    return w->reused;
}

const char *queue_writer_id(const queue_writer *w)
{
    return w->qid;
}

/* Write the whole buffer to the file. */
static void queue_writer_flush(queue_writer *w)
{
    size_t off = 0;
    while (!w->error && off < w->buf.len) {
        ssize_t n = write(w->fd, w->buf.data + off, w->buf.len - off);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            queue_writer_fail(w, "write", errno);
            break;
        }
        off += (size_t)n;
    }
    w->flushed += (off_t)off;
    strbuf_reset(&w->buf);
}

static off_t queue_writer_offset(const queue_writer *w)
{
    return w->flushed + (off_t)w->buf.len;
}

/* Append one record to the buffer, no order checks. */
static void queue_writer_put(queue_writer *w, int type, const void *data, size_t len)
{
    if (w->error || w->committed)
        return;
    if (len > QUEUE_RECORD_MAXLEN) {
        queue_writer_fail(w, "record too long", EFBIG);
        return;
    }
    strbuf_appendf(&w->buf, "%c%zu:", type, len);
    strbuf_append(&w->buf, data, len);
    strbuf_append_char(&w->buf, '\n');
    if (w->buf.len >= QUEUE_WRITE_CHUNK)
        queue_writer_flush(w);
}

void queue_writer_record(queue_writer *w, int type, const void *data, size_t len)
{
    /* Misuse would produce a file every reader rejects (and the mail
     * would go to corrupt/ after being acknowledged), so stop at the bug. */
    if (type == 0 || !strchr("VTSANORL", type))
        log_panic("queue_writer_record: record type %d is not for callers "
                  "(M, X and E come from content_begin/content_end/commit)", type);
    if (type == QREC_LINE) {
        queue_writer_line(w, data, len);
        return;
    }
    if (w->in_content)
        log_panic("queue_writer_record: %c record inside the content", type);
    if (!w->wrote_version && type != QREC_VERSION)
        log_panic("queue_writer_record: first record must be V, not %c", type);
    w->wrote_version = 1;
    queue_writer_put(w, type, data, len);
}

void queue_writer_record_str(queue_writer *w, int type, const char *s)
{
    queue_writer_record(w, type, s, strlen(s));
}

void queue_writer_content_begin(queue_writer *w)
{
    if (w->in_content || w->content_done)
        log_panic("queue_writer_content_begin: content already begun");
    if (!w->wrote_version)
        log_panic("queue_writer_content_begin: no envelope written");
    w->in_content = 1;
    /* "M20:" then the placeholder digits. */
    w->mark_offset = queue_writer_offset(w) + 4;
    queue_writer_put(w, QREC_CONTENT, "00000000000000000000", QUEUE_MARK_DIGITS);
}

void queue_writer_line(queue_writer *w, const char *line, size_t len)
{
    if (!w->in_content)
        log_panic("queue_writer_line: outside content");
    queue_writer_put(w, QREC_LINE, line, len);
    w->content_size += len + 2;
}

void queue_writer_content_end(queue_writer *w)
{
    if (!w->in_content)
        log_panic("queue_writer_content_end: content not begun");
    w->in_content = 0;
    w->content_done = 1;
    off_t x_offset = queue_writer_offset(w);
    char digits[QUEUE_MARK_DIGITS + 1];
    snprintf(digits, sizeof(digits), "%020lld", (long long)x_offset);
    char size[32];
    snprintf(size, sizeof(size), "%zu", w->content_size);
    queue_writer_put(w, QREC_XEND, size, strlen(size));
    if (w->error)
        return;
    if (w->mark_offset >= w->flushed) {
        memcpy(w->buf.data + (w->mark_offset - w->flushed), digits, QUEUE_MARK_DIGITS);
    } else {
        ssize_t n;
        do
            n = pwrite(w->fd, digits, QUEUE_MARK_DIGITS, w->mark_offset);
        while (n < 0 && errno == EINTR);
        if (n != QUEUE_MARK_DIGITS)
            queue_writer_fail(w, "pwrite", n < 0 ? errno : EIO);
    }
}

size_t queue_writer_content_size(const queue_writer *w)
{
    return w->content_size;
}

/*
 * The unnamed file cannot be linked in this process (tmpfile_link said
 * EOPNOTSUPP; later writers will not try): copy what was written into
 * QUEUE/.tmp-PID-N, fsync it and continue with that file as if it had
 * been created named.  Errors go to w->error.
 */
static void queue_writer_copy_to_named(queue_writer *w)
{
    int to = create_named_temp(w);
    if (to < 0) {
        queue_writer_fail(w, "create", errno);
        return;
    }
    w->unnamed = 0;             /* from now on tmp_path is the file */
    if (tmpfile_copy(w->fd, to, w->flushed) < 0)
        queue_writer_fail(w, "copy", errno);
    if (!w->error && fsync(to) < 0)
        queue_writer_fail(w, "fsync", errno);
    /* The unnamed file goes with this close. */
    close(w->fd);
    w->fd = to;
}

int queue_writer_commit(queue_writer *w, strbuf *err)
{
    return queue_writer_commit_to(w, w->queue_name, err);
}

int queue_writer_commit_to(queue_writer *w, const char *queue_name, strbuf *err)
{
    if (w->committed) {
        if (err)
            strbuf_set_str(err, "queue file already committed");
        errno = EINVAL;
        return -1;
    }
    if (!w->content_done)
        queue_writer_fail(w, "commit before end of content", EINVAL);
    queue_writer_put(w, QREC_END, "", 0);
    queue_writer_flush(w);
    /* A reused file may be longer than the new message: cut its old tail
     * before the fsync, or readers would see bytes after E. */
    if (!w->error && w->reused && ftruncate(w->fd, w->flushed) < 0)
        queue_writer_fail(w, "ftruncate", errno);
    if (!w->error && fsync(w->fd) < 0)
        queue_writer_fail(w, "fsync", errno);

    strbuf final;
    strbuf_init(&final);
    queue_path(&final, queue_name, w->qid);
    int renamed = 0;            /* final names the file */
    if (!w->error && w->unnamed) {
        /* Straight to the final name (tmpfile_link also fsyncs the new
         * link count); where no way of naming an unnamed file works, copy
         * it into a named temporary file and rename that as before. */
        if (tmpfile_link(w->fd, final.data) == 0)
            renamed = 1;
        else if (errno == EOPNOTSUPP)
            queue_writer_copy_to_named(w);
        else
            queue_writer_fail(w, "link", errno);
    }
    /* close() can report a delayed write error on some filesystems. */
    if (close(w->fd) < 0)
        queue_writer_fail(w, "close", errno);
    w->fd = -1;
    w->committed = 1;
    if (!w->error && !renamed) {
        /* NOREPLACE: never overwrite an existing message, however unlikely
         * an id collision is.  Fall back where the filesystem lacks it. */
        int rc = renameat2(AT_FDCWD, w->tmp_path.data, AT_FDCWD, final.data,
                           RENAME_NOREPLACE);
        if (rc < 0 && (errno == EINVAL || errno == ENOSYS))
            rc = rename(w->tmp_path.data, final.data);
        if (rc < 0)
            queue_writer_fail(w, "rename", errno);
        else
            renamed = 1;
    }
    if (!w->error) {
        strbuf dir;
        strbuf_init(&dir);
        const char *slash = strrchr(final.data, '/');
        strbuf_set(&dir, final.data, (size_t)(slash - final.data));
        if (fsync_dir(dir.data) < 0)
            queue_writer_fail(w, "fsync directory", errno);
        strbuf_release(&dir);
    }
    if (w->error) {
        /* Leave nothing behind: the client will be told to try again.
         * (An unnamed file vanished with its close.) */
        if (renamed)
            unlink(final.data);
        else if (!w->unnamed)
            unlink(w->tmp_path.data);
        if (err)
            strbuf_printf(err, "queue file %s: %s: %s", w->qid, w->error_op,
                          strerror(w->error));
        strbuf_release(&final);
        errno = w->error;
        return -1;
    }
    strbuf_release(&final);
    return 0;
}

void queue_writer_abort(queue_writer *w)
{
    if (!w)
        return;
    if (!w->committed) {
        if (w->fd >= 0)
            close(w->fd);
        if (!w->unnamed)
            unlink(w->tmp_path.data);
    }
    strbuf_release(&w->tmp_path);
    strbuf_release(&w->buf);
    xfree(w->queue_name);
    xfree(w);
}
