/*
 * mem.h - memory allocation that never returns NULL.
 *
 * Interface: xmalloc, xcalloc, xrealloc, xstrdup, xstrndup, xmemdup, xfree.
 * Contract: on exhaustion these log a fatal error and exit(75); callers never
 * check for NULL.  xfree(NULL) is a no-op.  xmalloc(0) returns a valid pointer.
 */
#ifndef POSTERN_MEM_H
#define POSTERN_MEM_H

#include <stddef.h>

void *xmalloc(size_t size);
void *xcalloc(size_t nmemb, size_t size);
void *xrealloc(void *ptr, size_t size);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
void *xmemdup(const void *p, size_t n);
void xfree(void *ptr);

#endif
