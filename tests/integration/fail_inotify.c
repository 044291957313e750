/*
 * fail_inotify.c - an LD_PRELOAD shim for tests: while the file named by
 * $FAIL_INOTIFY_WHILE exists, inotify_add_watch() fails with ENOSPC (the
 * error of a full fs.inotify.max_user_watches); once it is removed, the
 * real call.  Lets test_qmgr.py show qmgr's fallback (a scan of incoming/
 * every second, one warning) and its recovery when the watch can be set.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/inotify.h>
#include <unistd.h>

int inotify_add_watch(int fd, const char *path, uint32_t mask)
{
    static int (*real_add_watch)(int, const char *, uint32_t);
    if (real_add_watch == NULL)
        real_add_watch = (int (*)(int, const char *, uint32_t))dlsym(RTLD_NEXT,
                                                                    "inotify_add_watch");
    const char *flag = getenv("FAIL_INOTIFY_WHILE");
    if (flag && *flag && access(flag, F_OK) == 0) {
        errno = ENOSPC;
        return -1;
    }
    return real_add_watch(fd, path, mask);
}
