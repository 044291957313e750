/*
 * fail_tmpfile.c - an LD_PRELOAD shim for tests: takes away the unnamed
 * files of common/tmpfile_link.c, so that the named-temporary-file paths
 * are exercised on a kernel that has everything.
 *
 *   FAIL_TMPFILE=open  open()/openat() with O_TMPFILE fail with EOPNOTSUPP
 *                      (a file system without O_TMPFILE);
 *   FAIL_TMPFILE=link  O_TMPFILE works, but linkat(AT_EMPTY_PATH) fails
 *                      with ENOENT (a kernel that wants CAP_DAC_READ_SEARCH)
 *                      and /proc/self/fd cannot be reached (a chroot): the
 *                      linkat through it and stat() of it fail with ENOENT.
 *   FAIL_TMPFILE=rename  renameat2() with RENAME_NOREPLACE fails with
 *                      EINVAL (a file system without it: local's Maildir
 *                      rename falls back to link + unlink).
 *
 * Everything else goes to the real calls.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int failing(const char *what)
{
    const char *mode = getenv("FAIL_TMPFILE");
    return mode && strcmp(mode, what) == 0;
}

static int is_proc_fd(const char *path)
{
    return path && strncmp(path, "/proc/self/fd/", 14) == 0;
}

/* O_TMPFILE includes O_DIRECTORY: test all of its bits. */
#define WANTS_TMPFILE(flags) (((flags) & O_TMPFILE) == O_TMPFILE)

int open(const char *path, int flags, ...)
{
    static int (*real_open)(const char *, int, ...);
    if (!real_open)
        real_open = (int (*)(const char *, int, ...))dlsym(RTLD_NEXT, "open");
    va_list ap;
    va_start(ap, flags);
    mode_t mode = va_arg(ap, mode_t);
    va_end(ap);
    if (WANTS_TMPFILE(flags) && failing("open")) {
        errno = EOPNOTSUPP;
        return -1;
    }
    return real_open(path, flags, mode);
}

int open64(const char *path, int flags, ...)
{
    static int (*real_open64)(const char *, int, ...);
    if (!real_open64)
        real_open64 = (int (*)(const char *, int, ...))dlsym(RTLD_NEXT, "open64");
    va_list ap;
    va_start(ap, flags);
    mode_t mode = va_arg(ap, mode_t);
    va_end(ap);
    if (WANTS_TMPFILE(flags) && failing("open")) {
        errno = EOPNOTSUPP;
        return -1;
    }
    return real_open64(path, flags, mode);
}

int openat(int dirfd, const char *path, int flags, ...)
{
    static int (*real_openat)(int, const char *, int, ...);
    if (!real_openat)
        real_openat = (int (*)(int, const char *, int, ...))dlsym(RTLD_NEXT, "openat");
    va_list ap;
    va_start(ap, flags);
    mode_t mode = va_arg(ap, mode_t);
    va_end(ap);
    if (WANTS_TMPFILE(flags) && failing("open")) {
        errno = EOPNOTSUPP;
        return -1;
    }
    return real_openat(dirfd, path, flags, mode);
}

int linkat(int olddirfd, const char *oldpath, int newdirfd, const char *newpath, int flags)
{
    static int (*real_linkat)(int, const char *, int, const char *, int);
    if (!real_linkat)
        real_linkat = (int (*)(int, const char *, int, const char *, int))
            dlsym(RTLD_NEXT, "linkat");
    if (failing("link") && ((flags & AT_EMPTY_PATH) || is_proc_fd(oldpath))) {
        errno = ENOENT;
        return -1;
    }
    return real_linkat(olddirfd, oldpath, newdirfd, newpath, flags);
}

int stat(const char *path, struct stat *st)
{
    static int (*real_stat)(const char *, struct stat *);
    if (!real_stat)
        real_stat = (int (*)(const char *, struct stat *))dlsym(RTLD_NEXT, "stat");
    if (failing("link") && is_proc_fd(path)) {
        errno = ENOENT;
        return -1;
    }
    return real_stat(path, st);
}

int renameat2(int olddirfd, const char *oldpath, int newdirfd, const char *newpath,
              unsigned int flags)
{
    static int (*real_renameat2)(int, const char *, int, const char *, unsigned int);
    if (!real_renameat2)
        real_renameat2 = (int (*)(int, const char *, int, const char *, unsigned int))
            dlsym(RTLD_NEXT, "renameat2");
    if ((flags & RENAME_NOREPLACE) && failing("rename")) {
        errno = EINVAL;
        return -1;
    }
    return real_renameat2(olddirfd, oldpath, newdirfd, newpath, flags);
}
