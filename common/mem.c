/*
 * mem.c - allocation wrappers that exit instead of returning NULL.
 * See mem.h for the contract.  Out of memory is logged through log_fatal()
 * so it lands in the mail log like every other fatal error.
 */
#include <stdlib.h>
#include <string.h>
#include <stdint.h>

#include "mem.h"
#include "log.h"

static void out_of_memory(size_t size)
{
    /* A temporary failure (EX_TEMPFAIL), as mem.h promises: a sendmail
     * caller must not take it for a rejected message. */
    log_set_fatal_status(75);
    log_fatal("out of memory allocating %zu bytes", size);
}

void *xmalloc(size_t size)
{
    void *p = malloc(size ? size : 1);
    if (p == NULL)
        out_of_memory(size);
    return p;
}

void *xcalloc(size_t nmemb, size_t size)
{
    if (size && nmemb > SIZE_MAX / size)
        out_of_memory(SIZE_MAX);
    void *p = calloc(nmemb ? nmemb : 1, size ? size : 1);
    if (p == NULL)
        out_of_memory(nmemb * size);
    return p;
}

void *xrealloc(void *ptr, size_t size)
{
    void *p = realloc(ptr, size ? size : 1);
    if (p == NULL)
        out_of_memory(size);
    return p;
}

char *xstrdup(const char *s)
{
    return xmemdup(s, strlen(s) + 1);
}

char *xstrndup(const char *s, size_t n)
{
    size_t len = strnlen(s, n);
    char *p = xmalloc(len + 1);
    memcpy(p, s, len);
    p[len] = '\0';
    return p;
}

void *xmemdup(const void *src, size_t n)
{
    void *p = xmalloc(n);
    memcpy(p, src, n);
    return p;
}

void xfree(void *ptr)
{
    free(ptr);
}
