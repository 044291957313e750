/*
 * tmpfile_link.c - unnamed files (O_TMPFILE) named once complete.
 *
 * What it does: tmpfile_open() opens an unnamed regular file in a
 * directory (open(dir, O_TMPFILE)); tmpfile_link() gives it a name with
 * linkat(fd, "", AT_FDCWD, path, AT_EMPTY_PATH), or, where the kernel
 * wants CAP_DAC_READ_SEARCH for that (before Linux 6.10 or so: ENOENT),
 * with linkat(AT_FDCWD, "/proc/self/fd/N", AT_FDCWD, path,
 * AT_SYMLINK_FOLLOW), then fsyncs the file again.
 *
 * Interface: tmpfile_link.h.
 *
 * Contract:
 *   - Failure to use the mechanism is reported as EOPNOTSUPP (from the
 *     open: EOPNOTSUPP, EISDIR or EINVAL from a file system or kernel
 *     without O_TMPFILE; from the link: neither way of naming works), so
 *     callers have one value meaning "use your named temporary file".
 *   - Per process, what failed is remembered: a refused O_TMPFILE or a
 *     process that cannot name such files makes later tmpfile_open()
 *     calls fail at once (no failing syscalls per message); a refused
 *     AT_EMPTY_PATH makes tmpfile_link() go to /proc directly.  The memory
 *     is per process, not per file system: a process that met one file
 *     system without O_TMPFILE uses named files for the rest of its life
 *     (daemons are recycled after max_use requests).
 *   - An ENOENT is taken as "method refused" only when it cannot be the
 *     target directory missing: AT_EMPTY_PATH's ENOENT counts when the
 *     /proc way then works or /proc itself is not there; /proc's counts
 *     when /proc/self/fd/N cannot be looked up.  Otherwise ENOENT is
 *     returned and nothing is remembered.
 *   - Durability: the caller fsyncs the file before tmpfile_link() (its
 *     data must be on disk before any name can reach the disk: a
 *     directory block may be written back at any time).  The link then
 *     raises the inode's link count from 0 to 1, and that count lives in
 *     the inode, which an fsync of the directory does not write on every
 *     file system (ext4 without a journal: the directory's fsync writes
 *     its own blocks and inode only).  After a crash, fsck would find a
 *     name pointing at an inode whose on-disk count is 0, take the inode
 *     for a deleted one and drop the name -- a message lost after it was
 *     acknowledged.  So tmpfile_link() fsyncs the file once more after
 *     the link; on a journalling file system that fsync commits the
 *     transaction the link is in and the caller's directory fsync finds
 *     little left to do.  When that fsync fails the name is removed
 *     again.  The caller still fsyncs the directory.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tmpfile_link.h"

static enum tmpfile_method method = TMPFILE_UNKNOWN;

enum tmpfile_method tmpfile_method(void)
{
    return method;
}

void tmpfile_method_set(enum tmpfile_method m)
{
    method = m;
}

int tmpfile_open(const char *dir, int access, mode_t mode)
{
    if (method == TMPFILE_NONE) {
        errno = EOPNOTSUPP;
        return -1;
    }
    int fd = open(dir, O_TMPFILE | access | O_CLOEXEC, mode);
    if (fd < 0 && (errno == EOPNOTSUPP || errno == EISDIR || errno == EINVAL)) {
        /* No O_TMPFILE here (EISDIR: a kernel that does not know the flag
         * saw O_DIRECTORY with write access). */
        method = TMPFILE_NONE;
        errno = EOPNOTSUPP;
    }
    return fd;
}

/* linkat through /proc.  0, or -1 with errno (EOPNOTSUPP: /proc unusable). */
static int link_via_proc(int fd, const char *path)
{
    char proc_path[64];
    snprintf(proc_path, sizeof(proc_path), "/proc/self/fd/%d", fd);
    if (linkat(AT_FDCWD, proc_path, AT_FDCWD, path, AT_SYMLINK_FOLLOW) == 0)
        return 0;
    int err = errno;
    struct stat st;
    if ((err == ENOENT || err == EACCES || err == ENOTDIR)
        && stat(proc_path, &st) < 0) {
        /* No /proc (a chroot): the fd itself cannot be reached. */
        errno = EOPNOTSUPP;
        return -1;
    }
    errno = err;
    return -1;
}

/* The link alone.  0, or -1 with errno (EOPNOTSUPP: no way works). */
static int link_fd(int fd, const char *path)
{
    if (method == TMPFILE_NONE) {
        errno = EOPNOTSUPP;
        return -1;
    }
    if (method != TMPFILE_PROC) {
        if (linkat(fd, "", AT_FDCWD, path, AT_EMPTY_PATH) == 0) {
            method = TMPFILE_EMPTY_PATH;
            return 0;
        }
        if (errno != ENOENT)
            return -1;          /* a real error: EEXIST, ENOSPC, ... */
        /* ENOENT: no capability for AT_EMPTY_PATH, or the target's
         * directory is missing; /proc tells which. */
    }
    if (link_via_proc(fd, path) == 0) {
        method = TMPFILE_PROC;
        return 0;
    }
    if (errno == EOPNOTSUPP)
        method = TMPFILE_NONE;
    return -1;
}

int tmpfile_copy(int from, int to, off_t len)
{
    char chunk[65536];
    off_t off = 0;
    while (off < len) {
        size_t want = (size_t)(len - off) < sizeof(chunk) ? (size_t)(len - off) : sizeof(chunk);
        ssize_t n = pread(from, chunk, want, off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            if (n == 0)
                errno = EIO;
            return -1;
        }
        for (ssize_t done = 0; done < n;) {
            ssize_t m = write(to, chunk + done, (size_t)(n - done));
            if (m < 0 && errno == EINTR)
                continue;
            if (m < 0)
                return -1;
            done += m;
        }
        off += n;
    }
    return 0;
}

int tmpfile_link(int fd, const char *path)
{
    if (link_fd(fd, path) < 0)
        return -1;
    /* The new link count must reach the disk with the name: see above. */
    if (fsync(fd) < 0) {
        int err = errno;
        unlink(path);
        errno = err;
        return -1;
    }
    return 0;
}
