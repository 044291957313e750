/*
 * queue_select.c - message selection for `postern queue` (see
 * queue_select.h for the argument syntax and the pattern rules).
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "mem.h"
#include "queue.h"
#include "queue_select.h"

#define PATTERN_MAX 1000

void queue_select_init(struct queue_select *s)
{
    memset(s, 0, sizeof(*s));
}

void queue_select_free(struct queue_select *s)
{
    for (int i = 0; i < s->nids; i++)
        xfree(s->ids[i]);
    xfree(s->ids);
    xfree(s->from);
    xfree(s->to);
    memset(s, 0, sizeof(*s));
}

int queue_select_pattern_check(const char *p, strbuf *err)
{
    size_t len = strlen(p);
    if (len == 0) {
        strbuf_set_str(err, "empty address pattern");
        return -1;
    }
    if (len > PATTERN_MAX) {
        strbuf_set_str(err, "address pattern too long");
        return -1;
    }
    if (strcmp(p, "<>") == 0)
        return 0;
    for (const unsigned char *c = (const unsigned char *) p; *c; c++)
        if (*c <= ' ' || *c == 0x7F || *c == '<' || *c == '>') {
            strbuf_printf(err, "bad character in address pattern \"%s\"", p);
            return -1;
        }
    const char *at = strrchr(p, '@');
    const char *domain = at ? at + 1 : p;
    if (*domain == '\0') {
        strbuf_printf(err, "address pattern \"%s\" has no domain", p);
        return -1;
    }
    if (strcmp(domain, ".") == 0 || strstr(domain, "..")
        || (domain[0] == '.' && at != NULL)) {
        strbuf_printf(err, "bad domain in address pattern \"%s\"", p);
        return -1;
    }
    return 0;
}

int queue_select_addr_match(const char *pattern, const char *addr)
{
    if (strcmp(pattern, "<>") == 0)
        return *addr == '\0';
    if (*addr == '\0')
        return 0;
    const char *pat_at = strrchr(pattern, '@');
    const char *addr_at = strrchr(addr, '@');
    if (pat_at && pat_at != pattern)            /* user@domain */
        return strcasecmp(pattern, addr) == 0;
    const char *want = pat_at ? pat_at + 1 : pattern;
    const char *domain = addr_at ? addr_at + 1 : "";
    if (want[0] == '.') {                       /* any subdomain */
        size_t dl = strlen(domain), wl = strlen(want);
        return dl > wl && strcasecmp(domain + dl - wl, want) == 0;
    }
    return strcasecmp(domain, want) == 0;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *) a, *(char *const *) b);
}

static int set_pattern(char **slot, const char *opt, const char *value, strbuf *err)
{
    if (value == NULL) {
        strbuf_printf(err, "%s needs an address or domain", opt);
        return -1;
    }
    if (queue_select_pattern_check(value, err) < 0)
        return -1;
    xfree(*slot);
    *slot = xstrdup(value);
    return 0;
}

int queue_select_parse(struct queue_select *s, int argc, char **argv, strbuf *err)
{
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--from") == 0 || strcmp(a, "--to") == 0) {
            const char *v = i + 1 < argc ? argv[++i] : NULL;
            if (set_pattern(a[2] == 'f' ? &s->from : &s->to, a, v, err) < 0)
                return -1;
        } else if (strncmp(a, "--from=", 7) == 0) {
            if (set_pattern(&s->from, "--from", a + 7, err) < 0)
                return -1;
        } else if (strncmp(a, "--to=", 5) == 0) {
            if (set_pattern(&s->to, "--to", a + 5, err) < 0)
                return -1;
        } else if (strcmp(a, "ALL") == 0) {
            s->all = 1;
        } else if (a[0] == '-') {
            strbuf_printf(err, "unknown option %s", a);
            return -1;
        } else if (!queue_id_valid(a)) {
            strbuf_printf(err, "bad queue id: \"%s\"", a);
            return -1;
        } else {
            s->ids = xrealloc(s->ids, (size_t) (s->nids + 1) * sizeof(*s->ids));
            s->ids[s->nids++] = xstrdup(a);
        }
    }
    if (s->nids > 1)
        qsort(s->ids, (size_t) s->nids, sizeof(*s->ids), cmp_str);
    return 0;
}

int queue_select_any(const struct queue_select *s)
{
    return s->all || s->nids > 0 || s->from || s->to;
}

int queue_select_id(const struct queue_select *s, const char *qid)
{
    if (s->nids == 0 || s->all)
        return 1;
    return bsearch(&qid, s->ids, (size_t) s->nids, sizeof(*s->ids), cmp_str) != NULL;
}

int queue_select_envelope(const struct queue_select *s, const char *sender,
                          const char *const *rcpts, int nrcpt)
{
    if (s->from && !queue_select_addr_match(s->from, sender))
        return 0;
    if (s->to) {
        for (int i = 0; i < nrcpt; i++)
            if (queue_select_addr_match(s->to, rcpts[i]))
                return 1;
        return 0;
    }
    return 1;
}
