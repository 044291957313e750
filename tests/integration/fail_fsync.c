/*
 * fail_fsync.c - an LD_PRELOAD shim for tests: fsync() of a directory
 * whose path ends in $FAIL_FSYNC_DIR_SUFFIX fails with EIO, and so does
 * fsync() of a regular file whose path contains $FAIL_FSYNC_FILE_PART;
 * every other fsync() is the real one.  Lets test_local.py show what local does when
 * a Maildir's new/ cannot be made durable.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int fsync(int fd)
{
    static int (*real_fsync)(int);
    if (real_fsync == NULL)
        real_fsync = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
    const char *suffix = getenv("FAIL_FSYNC_DIR_SUFFIX");
    struct stat st;
    if (suffix && *suffix && fstat(fd, &st) == 0 && S_ISDIR(st.st_mode)) {
        char link[64], path[4096];
        snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
        ssize_t n = readlink(link, path, sizeof(path) - 1);
        if (n > 0) {
            path[n] = '\0';
            size_t sl = strlen(suffix);
            if ((size_t)n >= sl && strcmp(path + n - sl, suffix) == 0) {
                errno = EIO;
                return -1;
            }
        }
    }
    const char *part = getenv("FAIL_FSYNC_FILE_PART");
    if (part && *part && fstat(fd, &st) == 0 && S_ISREG(st.st_mode)) {
        char link[64], path[4096];
        snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
        ssize_t n = readlink(link, path, sizeof(path) - 1);
        if (n > 0) {
            path[n] = '\0';
            if (strstr(path, part) != NULL) {
                errno = EIO;
                return -1;
            }
        }
    }
    return real_fsync(fd);
}
