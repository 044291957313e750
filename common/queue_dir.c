/*
 * queue_dir.c - queue directories: paths, creation, moves between queues,
 * directory fsync and scanning.
 *
 * Interface (queue.h): queue_path, queue_dirs_create, queue_move,
 * queue_rename, fsync_dir, queue_scan, queue_purge_temp.  Also queue_is_hashed() for the other queue_*.c.
 *
 * Contract:
 *   - deferred/ defer/ bounce/ trace/ are hashed one level by qid[13], the
 *     last microseconds digit, which spreads arrivals evenly over 0-F;
 *     every other queue is flat.
 *   - queue_move() is rename(2) followed by an fsync of the destination
 *     directory and then of the source directory: after it returns 0 the
 *     move survives a crash.  A crash in between leaves the file in exactly
 *     one of the two places (rename is atomic), never lost.
 *   - queue_rename() is the rename alone; the caller makes a batch of
 *     moves durable with one fsync_dir() per directory involved.
 *   - queue_path() never yields a path outside the queue: an id that is
 *     empty, starts with '.' or holds a '/' maps to QUEUE/.invalid-queue-id,
 *     which never exists.  Callers should still check queue_id_valid().
 *   - queue_scan() reports only names that are valid queue ids; dot-files
 *     (files being written) and stray names are never handed out.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "queue.h"
#include "queue_internal.h"

static const char *const hashed_queues[] = { "deferred", "defer", "bounce", "trace", NULL };
static const char hash_digits[] = "0123456789ABCDEF";

int queue_is_hashed(const char *queue_name)
{
    for (int i = 0; hashed_queues[i]; i++)
        if (strcmp(queue_name, hashed_queues[i]) == 0)
            return 1;
    return 0;
}

void queue_path(strbuf *out, const char *queue_name, const char *qid)
{
    /* Ids can come from users (postern queue cat ID) and peers: never let
     * one name a file outside its queue.  Anything that could ("../x",
     * "a/b", ".", "") becomes a name no queue file ever has. */
    if (qid[0] == '\0' || qid[0] == '.' || strchr(qid, '/'))
        qid = ".invalid-queue-id";
    if (queue_is_hashed(queue_name)) {
        /* Invalid (short) ids are the caller's bug; keep the path sane. */
        char h = '0';
        if (strlen(qid) > QUEUE_HASH_INDEX && strchr(hash_digits, qid[QUEUE_HASH_INDEX]))
            h = qid[QUEUE_HASH_INDEX];
        strbuf_printf(out, "%s/%c/%s", queue_name, h, qid);
    } else {
        strbuf_printf(out, "%s/%s", queue_name, qid);
    }
}

/* Directory part of a relative path ("deferred/E/QID" -> "deferred/E"). */
static void queue_path_dir(strbuf *out, const char *path)
{
    const char *slash = strrchr(path, '/');
    if (slash)
        strbuf_set(out, path, (size_t)(slash - path));
    else
        strbuf_set_str(out, ".");
}

int fsync_dir(const char *path)
{
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    int rc = fsync(fd);
    int saved = errno;
    close(fd);
    errno = saved;
    return rc;
}

/* Log "what path: strerror" and keep errno for the caller. */
static int queue_dir_fail(const char *what, const char *path)
{
    int saved = errno;
    log_error("%s %s: %s", what, path, strerror(saved));
    errno = saved;
    return -1;
}

/* mkdir if missing, then force mode (umask-proof) and ownership. */
static int queue_make_dir(const char *path, mode_t mode, uid_t owner, gid_t group)
{
    if (mkdir(path, mode & 0777) < 0 && errno != EEXIST)
        return queue_dir_fail("mkdir", path);
    struct stat st;
    if (stat(path, &st) < 0)
        return queue_dir_fail("stat", path);
    if (!S_ISDIR(st.st_mode)) {
        log_error("%s exists and is not a directory", path);
        errno = ENOTDIR;
        return -1;
    }
    /* Only root can give files away; an unprivileged instance keeps them
     * as the current user, which is then also the mail owner. */
    if (geteuid() == 0 &&
        chown(path, owner, group) < 0)
        return queue_dir_fail("chown", path);
    if (chmod(path, mode) < 0)
        return queue_dir_fail("chmod", path);
    return 0;
}

int queue_dirs_create(const char *queue_dir, uid_t owner, gid_t owner_group,
                      gid_t submit_group)
{
    /* set_group: the directory's group is submit_group (setgid_group), the
     * one group the daemons do not hold; every other one is owner_group. */
    static const struct {
        const char *name;
        mode_t mode;
        int set_group;
    } dirs[] = {
        { "maildrop", 01730, 1 },   /* postdrop (setgid) may add, not list */
        { "incoming", 0700, 0 },
        { "active",   0700, 0 },
        { "deferred", 0700, 0 },
        { "hold",     0700, 0 },
        { "requeue",  0700, 0 },    /* queue files for pickup to re-clean */
        { "corrupt",  0700, 0 },
        { "recycle",  0700, 0 },    /* finished files for cleanup to reuse */
        { "defer",    0700, 0 },
        { "bounce",   0700, 0 },
        { "trace",    0700, 0 },
        { "private",  0700, 0 },
        { "public",   0710, 1 },    /* setgid_group may reach its sockets */
    };
    if (mkdir(queue_dir, 0755) < 0 && errno != EEXIST)
        return queue_dir_fail("mkdir", queue_dir);
    strbuf path;
    strbuf_init(&path);
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < sizeof(dirs) / sizeof(dirs[0]); i++) {
        strbuf_printf(&path, "%s/%s", queue_dir, dirs[i].name);
        rc = queue_make_dir(path.data, dirs[i].mode, owner,
                            dirs[i].set_group ? submit_group : owner_group);
        if (rc == 0 && queue_is_hashed(dirs[i].name)) {
            for (int h = 0; rc == 0 && h < 16; h++) {
                strbuf_printf(&path, "%s/%s/%c", queue_dir, dirs[i].name, hash_digits[h]);
                rc = queue_make_dir(path.data, 0700, owner, owner_group);
            }
        }
    }
    int saved = errno;
    strbuf_release(&path);
    errno = saved;
    return rc;
}

int queue_move(const char *qid, const char *from_queue, const char *to_queue)
{
    strbuf from, to, dir;
    strbuf_init(&from);
    strbuf_init(&to);
    strbuf_init(&dir);
    queue_path(&from, from_queue, qid);
    queue_path(&to, to_queue, qid);
    int rc = rename(from.data, to.data);
    if (rc == 0) {
        /* Destination first (the new name must survive a crash), then the
         * source (so the old name cannot come back after one). */
        queue_path_dir(&dir, to.data);
        rc = fsync_dir(dir.data);
        if (rc == 0) {
            strbuf to_dir;
            strbuf_init(&to_dir);
            strbuf_set(&to_dir, dir.data, dir.len);
            queue_path_dir(&dir, from.data);
            if (strcmp(dir.data, to_dir.data) != 0)
                rc = fsync_dir(dir.data);
            strbuf_release(&to_dir);
        }
    }
    int saved = errno;
    strbuf_release(&from);
    strbuf_release(&to);
    strbuf_release(&dir);
    errno = saved;
    return rc;
}

int queue_rename(const char *qid, const char *from_queue, const char *to_queue)
{
    strbuf from, to;
    strbuf_init(&from);
    strbuf_init(&to);
    queue_path(&from, from_queue, qid);
    queue_path(&to, to_queue, qid);
    int rc = rename(from.data, to.data);
    int saved = errno;
    strbuf_release(&from);
    strbuf_release(&to);
    errno = saved;
    return rc;
}

/* Report every valid queue id in one directory.  0, fn's nonzero value, or
 * -1 (errno set) when the directory cannot be read. */
static int queue_scan_dir(const char *path, int missing_ok,
                          int (*fn)(const char *qid, void *ctx), void *ctx)
{
    DIR *d = opendir(path);
    if (!d)
        return (missing_ok && errno == ENOENT) ? 0 : -1;
    int rc = 0;
    struct dirent *de;
    while (rc == 0 && (de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.')
            continue;
        if (!queue_id_valid(de->d_name)) {
            log_debug("queue_scan: ignoring %s/%s", path, de->d_name);
            continue;
        }
        rc = fn(de->d_name, ctx);
    }
    int saved = errno;
    closedir(d);
    errno = saved;
    return rc;
}

int queue_scan(const char *queue_name,
               int (*fn)(const char *qid, void *ctx), void *ctx)
{
    if (!queue_is_hashed(queue_name))
        return queue_scan_dir(queue_name, 0, fn, ctx);
    struct stat st;
    if (stat(queue_name, &st) < 0)
        return -1;
    strbuf path;
    strbuf_init(&path);
    int rc = 0;
    for (int h = 0; rc == 0 && h < 16; h++) {
        strbuf_printf(&path, "%s/%c", queue_name, hash_digits[h]);
        rc = queue_scan_dir(path.data, 1, fn, ctx);
    }
    int saved = errno;
    strbuf_release(&path);
    errno = saved;
    return rc;
}

int queue_purge_temp(const char *queue_name, long max_age)
{
    DIR *d = opendir(queue_name);
    if (!d)
        return -1;
    int dfd = dirfd(d);
    time_t now = time(NULL);
    int removed = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (strncmp(de->d_name, ".tmp-", 5) != 0)
            continue;
        struct stat st;
        if (fstatat(dfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(st.st_mode))
            continue;
        if (now - st.st_mtime < max_age)
            continue;
        if (unlinkat(dfd, de->d_name, 0) == 0) {
            log_info("removed stale temporary file %s/%s", queue_name, de->d_name);
            removed++;
        }
    }
    closedir(d);
    return removed;
}
