/*
 * file_read.h - read a whole (configuration) file into a strbuf.
 *
 * Interface: file_read_all(path, out, limit, err) replaces out's content with
 * the bytes of PATH.  Returns 0, or -1 with "open PATH: reason" (or "read",
 * or "PATH: file too large") in err; errno is kept for the caller.
 *
 * Contract: binary-safe (NUL bytes are kept; callers decide whether they are
 * allowed).  limit 0 means no limit; otherwise a file longer than limit
 * bytes is refused rather than truncated.  Retries EINTR.
 */
#ifndef POSTERN_FILE_READ_H
#define POSTERN_FILE_READ_H

#include <stddef.h>
#include "strbuf.h"

int file_read_all(const char *path, strbuf *out, size_t limit, strbuf *err);

#endif
