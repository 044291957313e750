/*
 * tmpfile_link.h - unnamed files (O_TMPFILE) that get their name only once
 * they are complete: no temporary directory entry to create, sync and
 * remove, and a writer that dies leaves nothing behind.
 *
 * Interface:
 *   tmpfile_open(dir, access, mode)
 *       an unnamed regular file in dir's file system (access: O_WRONLY or
 *       O_RDWR; mode as for open, umask applies; close-on-exec).  The fd,
 *       or -1 with errno; errno EOPNOTSUPP means "not available here"
 *       (file system or kernel without O_TMPFILE, or this process already
 *       found that it cannot name such files): use a named temporary file.
 *   tmpfile_link(fd, path)
 *       give the file of fd (from tmpfile_open, written and fsynced by the
 *       caller) the name path, then fsync it again.  0 ok; -1 with errno:
 *       EOPNOTSUPP when no way of naming it works in this process (the
 *       caller falls back; the unnamed file vanishes on close), else the
 *       link's or fsync's error (EEXIST, ENOSPC, EDQUOT, EIO, ...), and
 *       then path does not name the file.
 *   tmpfile_copy(from, to, len)
 *       for the fallback after tmpfile_link() said EOPNOTSUPP: copy the
 *       first len bytes of from (opened O_RDWR) to to's current offset.
 *       0, or -1 with errno (EIO: from is shorter than len).
 *   tmpfile_method() / tmpfile_method_set(m)
 *       what this process has learned (for tests and diagnostics).
 */
#ifndef POSTERN_TMPFILE_LINK_H
#define POSTERN_TMPFILE_LINK_H

#include <sys/types.h>

enum tmpfile_method {
    TMPFILE_UNKNOWN = 0,        /* nothing tried yet: linkat(AT_EMPTY_PATH) first */
    TMPFILE_EMPTY_PATH,         /* linkat(fd, "", ..., AT_EMPTY_PATH) works */
    TMPFILE_PROC,               /* only linkat("/proc/self/fd/N", AT_SYMLINK_FOLLOW) works */
    TMPFILE_NONE,               /* neither (or no O_TMPFILE): named temporary files */
};

int tmpfile_open(const char *dir, int access, mode_t mode);
int tmpfile_link(int fd, const char *path);
int tmpfile_copy(int from, int to, off_t len);
enum tmpfile_method tmpfile_method(void);
void tmpfile_method_set(enum tmpfile_method m);

#endif
