/*
 * master_lock.c - the master's pid file and lock; see master_lock.h.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "master_lock.h"

void master_lock_path(strbuf *out, const char *queue_dir)
{
    strbuf_printf(out, "%s/pid/master.pid", queue_dir);
}

int master_lock_acquire(const char *path, pid_t *holder, strbuf *err)
{
    *holder = 0;
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
        strbuf_printf(err, "open %s: %s", path, strerror(errno));
        return -1;
    }
    struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET };
    if (fcntl(fd, F_SETLK, &fl) < 0) {
        int saved = errno;
        if (saved == EACCES || saved == EAGAIN) {
            struct flock q = { .l_type = F_WRLCK, .l_whence = SEEK_SET };
            if (fcntl(fd, F_GETLK, &q) == 0 && q.l_type != F_UNLCK)
                *holder = q.l_pid;
            strbuf_printf(err, "the mail system is already running (pid %ld)",
                          (long)*holder);
        } else {
            strbuf_printf(err, "lock %s: %s", path, strerror(saved));
        }
        close(fd);
        return -1;
    }
    char buf[32];
    int n = snprintf(buf, sizeof(buf), "%10ld\n", (long)getpid());
    if (ftruncate(fd, 0) < 0 || pwrite(fd, buf, (size_t)n, 0) != n) {
        strbuf_printf(err, "write %s: %s", path, strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

pid_t master_lock_holder(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? 0 : -1;
    /* F_GETLK wants a lock type we could take on this fd's open mode; a
     * read lock conflicts with the master's write lock all the same. */
    struct flock q = { .l_type = F_RDLCK, .l_whence = SEEK_SET };
    int rc = fcntl(fd, F_GETLK, &q);
    close(fd);
    if (rc < 0)
        return -1;
    return q.l_type == F_UNLCK ? 0 : q.l_pid;
}
