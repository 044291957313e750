/*
 * local_mailbox.c - delivery to mbox files (mailboxes and /file items) and
 * to Maildir directories.
 *
 * Interface: local_deliver_mailbox(a, user, pw) and
 * local_deliver_file(a, path, as); see local.h.
 *
 * Where: mailbox_command, when set and the user has a passwd entry, is
 * run instead (local_command.c); else home_mailbox (relative to the home directory; a trailing '/'
 * means Maildir) when set and the user has a passwd entry, else
 * mail_spool_directory/USER (Maildir when the spool ends in '/').
 *
 * Privileges (root instance): mailboxes under home are created and written
 * as the user; spool mailboxes are created as root and given to the user
 * (the spool is not writable by users, and the dot-lock lives there), then
 * written -- mbox as root, Maildir files as the user.  /file items run as
 * the identity chosen by the resolver.  Non-root instance: everything as
 * the instance user.
 *
 * mbox contract: dot-lock PATH.lock (O_EXCL, stale after stale_lock_time)
 * and an fcntl write lock, each retried deliver_lock_attempts times
 * deliver_lock_delay apart; the copy is fsynced; on any failure the file is
 * truncated back to its old size, so a mailbox never holds half a message.
 * Maildir contract: the copy is written to tmp/NAME here; the group commit
 * (local_sync.c, on for every connection from qmgr) then fsyncs it,
 * renames it to new/NAME with RENAME_NOREPLACE (link + unlink where the
 * file system lacks it) and fsyncs new/ -- for a batch of pipelined
 * requests together -- before the result is logged or answered.  So the
 * file is on disk before it appears in new/, and a failed copy leaves
 * nothing.
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "local.h"
#include "log.h"
#include "mailbox_format.h"
#include "mem.h"
#include "queue.h"

/* How a delivery failed, for the reply. */
struct failure {
    enum local_status status;
    const char *dsn;
    strbuf text;
};

static void fail_set(struct failure *f, enum local_status st, const char *dsn,
                     const char *fmt, const char *arg, int err)
{
    f->status = st;
    f->dsn = dsn;
    strbuf_printf(&f->text, fmt, arg);
    if (err)
        strbuf_appendf(&f->text, ": %s", strerror(err));
}

/* Map a copy error to a status. */
static void fail_from_copy(struct failure *f, int err, const char *what,
                           const char *path, const strbuf *why)
{
    if (err == EFBIG)
        fail_set(f, LOCAL_BOUNCE, "5.2.2", "cannot update %s: size limit exceeded", path, 0);
    else if (err == ENOSPC || err == EDQUOT)
        fail_set(f, LOCAL_DEFER, "4.2.2", "cannot update %s", path, err);
    else if (err == EIO && why->len) {
        f->status = LOCAL_DEFER;
        f->dsn = "4.3.0";
        strbuf_printf(&f->text, "cannot copy message to %s %s: %s", what, path, strbuf_str(why));
    } else
        fail_set(f, LOCAL_DEFER, "4.2.0", "cannot update %s", path, err);
}

static int lock_uses(const char *kind)
{
    int n = 0, yes = 0;
    char **list = config_list(config_str("mailbox_delivery_lock"), &n);
    for (int i = 0; i < n; i++)
        if (strcmp(list[i], kind) == 0)
            yes = 1;
    config_list_free(list);
    return yes;
}

static void lock_pause(void)
{
    long long delay = config_time("deliver_lock_delay");
    struct timespec ts = { .tv_sec = delay > 0 ? (time_t)delay : 0,
                           .tv_nsec = delay > 0 ? 0 : 100 * 1000 * 1000 };
    nanosleep(&ts, NULL);
}

/* Dot-lock: 1 held, 0 not used (directory not writable), -1 timed out. */
static int dotlock_take(const char *lock_path)
{
    long long attempts = config_int("deliver_lock_attempts");
    long long stale = config_time("stale_lock_time");
    for (long long i = 0; i < attempts; i++) {
        int fd = open(lock_path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (fd >= 0) {
            close(fd);
            return 1;
        }
        if (errno == EACCES || errno == EPERM || errno == EROFS) {
            log_warning("cannot create lock file %s: %m -- using fcntl lock only", lock_path);
            return 0;
        }
        if (errno != EEXIST)
            return -1;
        struct stat st;
        if (lstat(lock_path, &st) == 0 && time(NULL) - st.st_mtime > stale) {
            log_warning("removing stale lock file %s", lock_path);
            unlink(lock_path);
            continue;
        }
        if (i + 1 < attempts)
            lock_pause();
    }
    errno = EAGAIN;
    return -1;
}

static int fcntl_lock_take(int fd)
{
    long long attempts = config_int("deliver_lock_attempts");
    struct flock fl;
    memset(&fl, 0, sizeof(fl));
    fl.l_type = F_WRLCK;
    fl.l_whence = SEEK_SET;
    for (long long i = 0; i < attempts; i++) {
        if (fcntl(fd, F_SETLK, &fl) == 0)
            return 0;
        if (errno != EAGAIN && errno != EACCES && errno != EINTR)
            return -1;
        if (i + 1 < attempts)
            lock_pause();
    }
    errno = EAGAIN;
    return -1;
}

/*
 * Append the message to an mbox file.  chown_uid/gid >= 0: give a newly
 * created file to that owner (spool mailboxes created by root).  is_file:
 * a /file item (devices such as /dev/null allowed, no link count check).
 */
static void mbox_append(struct local_attempt *a, const char *path, long chown_uid,
                        long chown_gid, int is_file, struct failure *f)
{
    const char *what = is_file ? "file" : "mailbox";
    strbuf lock_path, why;
    strbuf_init(&lock_path);
    strbuf_init(&why);
    int have_dotlock = 0, fd = -1;
    struct stat st;

    /* Devices (e.g. /dev/null) need no lock and have no size to restore. */
    int is_device = is_file && stat(path, &st) == 0 && !S_ISREG(st.st_mode);
    if (!is_device && lock_uses("dotlock")) {
        strbuf_printf(&lock_path, "%s.lock", path);
        int rc = dotlock_take(strbuf_str(&lock_path));
        if (rc < 0) {
            fail_set(f, LOCAL_DEFER, "4.2.0", "cannot lock %s for exclusive access", path, errno);
            goto out;
        }
        have_dotlock = rc;
    }

    int created = 0;
    fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd >= 0) {
        created = 1;
    } else if (errno == EEXIST) {
        fd = open(path, O_WRONLY | O_APPEND | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY);
    }
    if (fd < 0) {
        fail_set(f, LOCAL_DEFER, "4.2.0", "cannot open %s", path, errno);
        goto out;
    }
    if (created && chown_uid >= 0 && fchown(fd, (uid_t)chown_uid, (gid_t)chown_gid) < 0) {
        fail_set(f, LOCAL_DEFER, "4.2.0", "cannot set owner of %s", path, errno);
        unlink(path);
        goto out;
    }
    if (fstat(fd, &st) < 0) {
        fail_set(f, LOCAL_DEFER, "4.2.0", "cannot stat %s", path, errno);
        goto out;
    }
    int regular = S_ISREG(st.st_mode);
    if (!regular && !(is_file && S_ISCHR(st.st_mode))) {
        fail_set(f, LOCAL_BOUNCE, "5.2.0", "%s is not a regular file", path, 0);
        goto out;
    }
    if (regular && !is_file && st.st_nlink != 1) {
        fail_set(f, LOCAL_BOUNCE, "5.2.0", "mailbox %s has more than one hard link", path, 0);
        goto out;
    }
    if (regular && chown_uid >= 0 && st.st_uid != (uid_t)chown_uid) {
        fail_set(f, LOCAL_DEFER, "4.2.0", "mailbox %s is not owned by its user", path, 0);
        goto out;
    }
    if (regular && lock_uses("fcntl") && fcntl_lock_take(fd) < 0) {
        fail_set(f, LOCAL_DEFER, "4.2.0", "cannot lock %s for exclusive access", path, errno);
        goto out;
    }
    off_t old_size = regular ? lseek(fd, 0, SEEK_END) : 0;
    long long limit = regular ? config_size("mailbox_size_limit") : 0;
    if (limit > 0) {
        limit -= (long long)old_size;
        if (limit <= 0) {
            fail_from_copy(f, EFBIG, what, path, &why);
            goto out;
        }
    }
    int err = local_copy_message(a, fd, COPY_MBOX | COPY_RETURN_PATH, limit, &why);
    if (err == 0 && regular && fsync(fd) < 0)
        err = errno;
    if (err != 0) {
        if (regular && ftruncate(fd, old_size) < 0)
            log_warning("%s: cannot truncate %s back to %lld bytes: %m",
                        a->req->qid, path, (long long)old_size);
        fail_from_copy(f, err, what, path, &why);
        goto out;
    }
    f->status = LOCAL_SENT;
    f->dsn = "2.0.0";
    strbuf_printf(&f->text, is_file ? "delivered to file: %s" : "delivered to mailbox", path);
out:
    if (fd >= 0)
        close(fd);              /* releases the fcntl lock */
    if (have_dotlock)
        unlink(strbuf_str(&lock_path));
    strbuf_release(&lock_path);
    strbuf_release(&why);
}

/* mkdir -p: create missing directories of path with mode 0700, giving
 * the new ones to chown_uid when >= 0.  0 or -1 (errno). */
static int make_dirs(const char *path, long chown_uid, long chown_gid)
{
    char *copy = xstrdup(path);
    int rc = 0;
    size_t len = strlen(copy);
    while (len > 1 && copy[len - 1] == '/')
        copy[--len] = '\0';
    for (char *p = copy + 1; rc == 0; p++) {
        int last = (*p == '\0');
        if (*p != '/' && !last)
            continue;
        *p = '\0';
        if (mkdir(copy, 0700) == 0) {
            if (chown_uid >= 0 && chown(copy, (uid_t)chown_uid, (gid_t)chown_gid) < 0)
                rc = -1;
        } else if (errno != EEXIST) {
            rc = -1;
        }
        if (last)
            break;
        *p = '/';
    }
    xfree(copy);
    return rc;
}

static unsigned long maildir_counter;

static void maildir_write(struct local_attempt *a, const char *dir, struct failure *f)
{
    strbuf sub, name, tmp_path, new_path, why;
    strbuf_init(&sub);
    strbuf_init(&name);
    strbuf_init(&tmp_path);
    strbuf_init(&new_path);
    strbuf_init(&why);
    const char *subs[] = { "tmp", "new", "cur" };
    for (int i = 0; i < 3; i++) {
        strbuf_printf(&sub, "%s/%s", dir, subs[i]);
        struct stat st;
        if (stat(strbuf_str(&sub), &st) == 0 && S_ISDIR(st.st_mode))
            continue;           /* the usual case: one stat, not a mkdir per level */
        if (make_dirs(strbuf_str(&sub), -1, -1) < 0) {
            fail_set(f, LOCAL_DEFER, "4.2.0", "cannot create maildir %s", strbuf_str(&sub), errno);
            goto out;
        }
    }
    const char *host = config_str("myhostname");
    char hostbuf[256];
    if (*host == '\0') {
        if (gethostname(hostbuf, sizeof(hostbuf) - 1) < 0)
            strcpy(hostbuf, "localhost");
        hostbuf[sizeof(hostbuf) - 1] = '\0';
        host = hostbuf;
    }
    struct timeval tv;
    gettimeofday(&tv, NULL);
    maildir_unique_name(&name, (long long)tv.tv_sec, (long)tv.tv_usec, (long)log_pid(),
                        maildir_counter++, host);
    strbuf_printf(&new_path, "%s/new/%s", dir, strbuf_str(&name));
    strbuf_printf(&sub, "%s/new", dir);
    long long limit = config_size("mailbox_size_limit");
    /* A named file in tmp/ renamed into new/, not an unnamed one linked
     * there (queue files are, common/tmpfile_link.c): its link count is on
     * disk with its first fsync, while an unnamed file needs a second fsync
     * after the link, and with new/ fsynced once per batch (local_sync.c)
     * that second device flush per message made a Maildir delivery about
     * 60% slower (doc/performance.md, item 17). */
    strbuf_printf(&tmp_path, "%s/tmp/%s", dir, strbuf_str(&name));
    int fd = open(strbuf_str(&tmp_path), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) {
        fail_set(f, LOCAL_DEFER, "4.2.0", "cannot create maildir file %s", strbuf_str(&tmp_path), errno);
        goto out;
    }
    int err = local_copy_message(a, fd, COPY_RETURN_PATH, limit, &why);
    if (err != 0) {
        close(fd);
        unlink(strbuf_str(&tmp_path));
        fail_from_copy(f, err, "maildir", dir, &why);
        goto out;
    }
    /* Group commit: the fsync, the rename into new/ and new/'s fsync come
     * at the release, for the whole batch (local_sync.c); the data write
     * starts now. */
    (void)sync_file_range(fd, 0, 0, SYNC_FILE_RANGE_WRITE);
    local_sync_file_later(fd, strbuf_str(&tmp_path), strbuf_str(&new_path), strbuf_str(&sub));
    f->status = LOCAL_SENT;
    f->dsn = "2.0.0";
    strbuf_set_str(&f->text, "delivered to maildir");
out:
    strbuf_release(&sub);
    strbuf_release(&name);
    strbuf_release(&tmp_path);
    strbuf_release(&new_path);
    strbuf_release(&why);
}

void local_deliver_mailbox(struct local_attempt *a, const char *user,
                           const struct local_user *pw)
{
    strbuf key, path;
    strbuf_init(&key);
    strbuf_init(&path);
    strbuf_printf(&key, "mailbox:%s", user);
    if (local_dup_check(a, strbuf_str(&key)))
        goto done;

    int own = pw && (local_is_root || pw->uid == geteuid());
    const char *mailbox_command = config_raw("mailbox_command");
    if (*mailbox_command && own) {
        /* the command is the mailbox: it runs as the user (root: default_privs) */
        strbuf cmd;
        strbuf_init(&cmd);
        local_expand(&cmd, mailbox_command, a, pw, a->extension);
        local_deliver_command(a, strbuf_str(&cmd),
                              pw->uid == 0 && local_is_root ? &local_default_privs : pw);
        strbuf_release(&cmd);
        goto done;
    }
    struct failure f = { LOCAL_DEFER, "4.3.0", { 0 } };
    strbuf_init(&f.text);
    const char *home_mailbox = config_str("home_mailbox");
    if (*home_mailbox && own) {
        /* in the home directory: everything as the user */
        strbuf_printf(&path, "%s/%s", pw->home, home_mailbox);
        int maildir = path.data[path.len - 1] == '/';
        while (path.len > 1 && path.data[path.len - 1] == '/')
            strbuf_truncate(&path, path.len - 1);
        if (local_become(pw->uid, pw->gid) < 0) {
            fail_set(&f, LOCAL_DEFER, "4.3.0", "cannot switch to user %s", pw->name, 0);
        } else {
            if (maildir)
                maildir_write(a, strbuf_str(&path), &f);
            else
                mbox_append(a, strbuf_str(&path), -1, -1, 0, &f);
            local_unbecome();
        }
    } else {
        const char *spool = config_str("mail_spool_directory");
        size_t slen = strlen(spool);
        int maildir = slen > 0 && spool[slen - 1] == '/';
        while (slen > 1 && spool[slen - 1] == '/')
            slen--;
        strbuf_set(&path, spool, slen);
        strbuf_appendf(&path, "/%s", user);
        long uid = (local_is_root && pw) ? (long)pw->uid : -1;
        long gid = (local_is_root && pw) ? (long)pw->gid : -1;
        if (maildir) {
            /* root creates the directories in the spool for the user; one
             * stat instead of a mkdir per path level when they exist */
            struct stat st;
            int exists = stat(strbuf_str(&path), &st) == 0 && S_ISDIR(st.st_mode);
            if (!exists && make_dirs(strbuf_str(&path), uid, gid) < 0) {
                fail_set(&f, LOCAL_DEFER, "4.2.0", "cannot create maildir %s",
                         strbuf_str(&path), errno);
            } else if (pw && local_become(pw->uid, pw->gid) < 0) {
                fail_set(&f, LOCAL_DEFER, "4.3.0", "cannot switch to user %s", pw->name, 0);
            } else {
                /* tmp/ new/ cur/ are made as the user, so they are theirs */
                maildir_write(a, strbuf_str(&path), &f);
                local_unbecome();
            }
        } else {
            mbox_append(a, strbuf_str(&path), uid, gid, 0, &f);
        }
    }
    if (f.status != LOCAL_SENT)
        log_warning("%s: %s: %s", a->req->qid, a->rcpt, strbuf_str(&f.text));
    local_report(a, strbuf_str(&key), f.status, f.dsn, strbuf_str(&f.text));
    strbuf_release(&f.text);
done:
    strbuf_release(&key);
    strbuf_release(&path);
}

void local_deliver_file(struct local_attempt *a, const char *path,
                        const struct local_user *as)
{
    strbuf key;
    strbuf_init(&key);
    strbuf_printf(&key, "file:%s", path);
    if (local_dup_check(a, strbuf_str(&key))) {
        strbuf_release(&key);
        return;
    }
    struct failure f = { LOCAL_DEFER, "4.3.0", { 0 } };
    strbuf_init(&f.text);
    if (local_become(as->uid, as->gid) < 0) {
        fail_set(&f, LOCAL_DEFER, "4.3.0", "cannot switch to user %s", as->name, 0);
    } else {
        mbox_append(a, path, -1, -1, 1, &f);
        local_unbecome();
    }
    if (f.status != LOCAL_SENT)
        log_warning("%s: %s: %s", a->req->qid, a->rcpt, strbuf_str(&f.text));
    local_report(a, strbuf_str(&key), f.status, f.dsn, strbuf_str(&f.text));
    strbuf_release(&f.text);
    strbuf_release(&key);
}
