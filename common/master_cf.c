/*
 * master_cf.c - parse master.cf into a list of services.  See master_cf.h.
 *
 * Logical lines: a line that starts with whitespace continues the previous
 * entry; blank lines and lines whose first non-blank character is '#' are
 * skipped and do not end an entry (as in main.cf).  An entry is split on
 * whitespace into fields:
 *
 *   service type private unpriv chroot wakeup maxproc command [args...]
 *
 * Field rules (each violation is an error "FILE, line N: ..."; N is the
 * entry's first line):
 *   service   unix/fifo/pass: a plain name without '/'.  inet: "port",
 *             "host:port" or "[ipv6]:port"; port is a number 1-65535 or a
 *             service name from /etc/services style ([A-Za-z0-9_-]+).
 *   type      inet, unix, fifo or pass.
 *   private, unpriv, chroot   y, n or '-' (default y; '-' for private on an
 *             inet service means n, and an inet service cannot be private).
 *   wakeup    '-' or 0 (none), or a number of seconds, optionally followed
 *             by '?' (only when the service is in use).
 *   maxproc   '-' (-1: use default_process_limit) or a number >= 0
 *             (0 = unlimited).
 *   command   required; args follow.  Among the leading options (up to the
 *             first word not starting with '-', or "--"), "-o name=value"
 *             (two words) records an override; the name must be a
 *             parameter name ([A-Za-z0-9_]+) followed by '=' in the same
 *             word; the value may be empty.  "-oname=value" is refused so
 *             the daemon's own option parser never has to guess.  Words
 *             after the options (pipe-style "argv=/bin/x -o y") are
 *             passed on untouched and are not overrides.
 *             Postfix 3 grouping: an argument that starts with '{' runs to
 *             the matching '}' and may hold blanks; it is passed on as its
 *             content without the braces and the blanks next to them.
 *             "-o { name = value }" is accepted and passed to the child
 *             as "-o" "name=value".
 * The same service name with the same type twice is an error.  NUL bytes are
 * refused.  On error the list is left NULL and nothing leaks.
 */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "file_read.h"
#include "master_cf.h"
#include "mem.h"
#include "strbuf.h"

#define MASTER_CF_MAX_SIZE (16 * 1024 * 1024)   /* sanity bound */
#define MASTER_CF_FIELDS 8                      /* incl. the command */

static const struct {
    const char *name;
    enum service_type type;
} service_types[] = {
    { "inet", SERVICE_INET },
    { "unix", SERVICE_UNIX },
    { "fifo", SERVICE_FIFO },
    { "pass", SERVICE_PASS },
};

struct word_list {
    char **words;
    char *grouped;              /* 1 = the word was a { ... } group */
    int count, cap;
};

static void words_add(struct word_list *wl, const char *s, size_t len, int grouped)
{
    if (wl->count + 1 >= wl->cap) {
        wl->cap = wl->cap ? wl->cap * 2 : 16;
        wl->words = xrealloc(wl->words, (size_t) wl->cap * sizeof(*wl->words));
        wl->grouped = xrealloc(wl->grouped, (size_t) wl->cap);
    }
    wl->grouped[wl->count] = (char) grouped;
    wl->words[wl->count++] = xstrndup(s, len);
    wl->words[wl->count] = NULL;
}

static void words_free(struct word_list *wl)
{
    for (int i = 0; i < wl->count; i++)
        xfree(wl->words[i]);
    xfree(wl->words);
    xfree(wl->grouped);
    memset(wl, 0, sizeof(*wl));
}

/*
 * Split a logical line into words.  From the command on (word index 7), a
 * word that starts with '{' runs to the matching '}' (Postfix 3 syntax for
 * arguments with blanks) and becomes its content with the braces and the
 * blanks next to them removed.  Returns 0, or -1 with the reason in why.
 */
static int split_words(const char *text, size_t len, struct word_list *wl, strbuf *why)
{
    size_t i = 0;
    for (;;) {
        while (i < len && isspace((unsigned char) text[i]))
            i++;
        if (i >= len)
            return 0;
        size_t start = i;
        if (text[i] == '{' && wl->count >= MASTER_CF_FIELDS - 1) {
            const char *inner;
            size_t inner_len;
            long end = config_brace_group(text, len, i, &inner, &inner_len);
            if (end < 0) {
                strbuf_printf(why, "missing '}' in argument: %.*s", (int) (len - start),
                              text + start);
                return -1;
            }
            i = (size_t) end + 1;
            if (i < len && !isspace((unsigned char) text[i])) {
                strbuf_printf(why, "text after '}' in argument: %.*s", (int) (i - start),
                              text + start);
                return -1;
            }
            words_add(wl, inner, inner_len, 1);
            continue;
        }
        while (i < len && !isspace((unsigned char) text[i]))
            i++;
        words_add(wl, text + start, i - start, 0);
    }
}

static void service_free(struct master_service *s)
{
    if (s == NULL)
        return;
    xfree(s->name);
    xfree(s->type_name);
    if (s->argv)
        for (int i = 0; i < s->argc; i++)
            xfree(s->argv[i]);
    xfree(s->argv);
    for (int i = 0; i < s->noverrides; i++) {
        xfree(s->override_names[i]);
        xfree(s->override_values[i]);
    }
    xfree(s->override_names);
    xfree(s->override_values);
    xfree(s);
}

void master_cf_free(struct master_service *list)
{
    while (list) {
        struct master_service *next = list->next;
        service_free(list);
        list = next;
    }
}

static int parse_flag(const char *word, int default_value, int *out)
{
    if (strcmp(word, "-") == 0)
        *out = default_value;
    else if (strcmp(word, "y") == 0)
        *out = 1;
    else if (strcmp(word, "n") == 0)
        *out = 0;
    else
        return -1;
    return 0;
}

/* A non-negative decimal number that fits an int. */
static int parse_count(const char *word, int *out)
{
    if (!isdigit((unsigned char) word[0]))
        return -1;
    long v = 0;
    for (const char *p = word; *p; p++) {
        if (!isdigit((unsigned char) *p))
            return -1;
        v = v * 10 + (*p - '0');
        if (v > INT_MAX)
            return -1;
    }
    *out = (int) v;
    return 0;
}

static int is_port(const char *s, size_t len)
{
    if (len == 0)
        return 0;
    int numeric = 1;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char) s[i];
        if (!isdigit(c))
            numeric = 0;
        if (!isalnum(c) && c != '-' && c != '_')
            return 0;
    }
    if (!numeric)
        return isalpha((unsigned char) s[0]);
    if (len > 5)
        return 0;
    long v = strtol(s, NULL, 10);           /* stops at the ':'-free end */
    return v >= 1 && v <= 65535;
}

/* Check an inet service name: port, host:port, [ipv6]:port. */
static int valid_inet_name(const char *name, const char **why)
{
    const char *port;
    if (name[0] == '[') {
        const char *close = strchr(name, ']');
        if (close == NULL || close == name + 1) {
            *why = "bad bracketed address";
            return 0;
        }
        for (const char *p = name + 1; p < close; p++)
            if (!isxdigit((unsigned char) *p) && *p != ':' && *p != '.' && *p != '%') {
                *why = "bad character in bracketed address";
                return 0;
            }
        if (close[1] != ':') {
            *why = "missing ':port' after bracketed address";
            return 0;
        }
        port = close + 2;
    } else {
        const char *colon = strrchr(name, ':');
        if (colon) {
            if (colon == name) {
                *why = "missing host before ':'";
                return 0;
            }
            for (const char *p = name; p < colon; p++)
                if (!isalnum((unsigned char) *p) && *p != '.' && *p != '-'
                    && *p != '_' && *p != '*') {
                    *why = *p == ':' ? "IPv6 address must be in brackets"
                        : "bad character in host name";
                    return 0;
                }
            port = colon + 1;
        } else {
            port = name;
        }
    }
    if (!is_port(port, strlen(port))) {
        *why = "bad port";
        return 0;
    }
    return 1;
}

static int valid_local_name(const char *name)
{
    if (name[0] == '\0' || strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
        return 0;
    for (const char *p = name; *p; p++)
        if (*p == '/' || !isgraph((unsigned char) *p))
            return 0;
    return 1;
}

static int valid_param_name(const char *s, size_t len)
{
    if (len == 0)
        return 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char) s[i];
        if (!isalnum(c) && c != '_')
            return 0;
    }
    return 1;
}

/* Build one service from the words of a logical line.  NULL + err on error. */
static struct master_service *parse_entry(struct word_list *wl, const char *file, int line,
                                          strbuf *err)
{
    char **w = wl->words;
    if (wl->count < MASTER_CF_FIELDS - 1) {
        strbuf_printf(err, "%s, line %d: too few fields (%d, need %d and a command)",
                      file, line, wl->count, MASTER_CF_FIELDS - 1);
        return NULL;
    }
    if (wl->count == MASTER_CF_FIELDS - 1) {
        strbuf_printf(err, "%s, line %d: missing command field", file, line);
        return NULL;
    }
    struct master_service *s = xcalloc(1, sizeof(*s));
    s->line = line;
    s->name = xstrdup(w[0]);
    s->type_name = xstrdup(w[1]);

    size_t t;
    for (t = 0; t < sizeof(service_types) / sizeof(service_types[0]); t++)
        if (strcmp(w[1], service_types[t].name) == 0)
            break;
    if (t == sizeof(service_types) / sizeof(service_types[0])) {
        strbuf_printf(err, "%s, line %d: bad transport type: %s", file, line, w[1]);
        goto fail;
    }
    s->type = service_types[t].type;

    const char *why = NULL;
    if (s->type == SERVICE_INET ? !valid_inet_name(w[0], &why) : !valid_local_name(w[0])) {
        strbuf_printf(err, "%s, line %d: bad service name for type %s: %s%s%s", file, line,
                      w[1], w[0], why ? ": " : "", why ? why : "");
        goto fail;
    }
    if (parse_flag(w[2], s->type == SERVICE_INET ? 0 : 1, &s->private_) < 0) {
        strbuf_printf(err, "%s, line %d: bad private field: %s", file, line, w[2]);
        goto fail;
    }
    if (s->type == SERVICE_INET && s->private_) {
        strbuf_printf(err, "%s, line %d: inet service %s cannot be private", file, line, w[0]);
        goto fail;
    }
    if (parse_flag(w[3], 1, &s->unpriv) < 0) {
        strbuf_printf(err, "%s, line %d: bad unprivileged field: %s", file, line, w[3]);
        goto fail;
    }
    if (parse_flag(w[4], 1, &s->chroot) < 0) {
        strbuf_printf(err, "%s, line %d: bad chroot field: %s", file, line, w[4]);
        goto fail;
    }
    if (strcmp(w[5], "-") == 0) {
        s->wakeup = 0;
    } else {
        size_t wl_len = strlen(w[5]);
        char *digits = xstrdup(w[5]);
        if (wl_len > 1 && digits[wl_len - 1] == '?') {
            digits[wl_len - 1] = '\0';
            s->wakeup_conditional = 1;
        }
        int ok = parse_count(digits, &s->wakeup) == 0;
        xfree(digits);
        if (!ok) {
            strbuf_printf(err, "%s, line %d: bad wakeup field: %s", file, line, w[5]);
            goto fail;
        }
    }
    if (strcmp(w[6], "-") == 0) {
        s->maxproc = -1;
    } else if (parse_count(w[6], &s->maxproc) < 0) {
        strbuf_printf(err, "%s, line %d: bad maxproc field: %s", file, line, w[6]);
        goto fail;
    }

    s->argc = wl->count - (MASTER_CF_FIELDS - 1);
    s->argv = xcalloc((size_t) s->argc + 1, sizeof(*s->argv));
    for (int i = 0; i < s->argc; i++)
        s->argv[i] = xstrdup(w[MASTER_CF_FIELDS - 1 + i]);

    /* Options come before the first non-option word, as getopt sees them:
     * pipe(8)-style "argv=/bin/prog -o x" arguments are not overrides. */
    for (int i = 1; i < s->argc; i++) {
        if (wl->grouped[MASTER_CF_FIELDS - 1 + i] || s->argv[i][0] != '-'
            || strcmp(s->argv[i], "--") == 0)
            break;
        if (strcmp(s->argv[i], "-o") != 0) {
            if (strncmp(s->argv[i], "-o", 2) == 0) {
                strbuf_printf(err, "%s, line %d: write \"-o name=value\" as two words: %s",
                              file, line, s->argv[i]);
                goto fail;
            }
            continue;
        }
        if (i + 1 >= s->argc) {
            strbuf_printf(err, "%s, line %d: missing name=value after -o", file, line);
            goto fail;
        }
        const char *nv = s->argv[++i];
        size_t name_len, value_at;
        if (wl->grouped[MASTER_CF_FIELDS - 1 + i]) {
            /* "-o { name = value }": blanks allowed around '='.  The child
             * gets the usual one-word "name=value" form. */
            name_len = 0;
            while (nv[name_len] && (isalnum((unsigned char) nv[name_len]) || nv[name_len] == '_'))
                name_len++;
            value_at = name_len;
            while (isspace((unsigned char) nv[value_at]))
                value_at++;
            if (name_len == 0 || nv[value_at] != '=') {
                strbuf_printf(err, "%s, line %d: bad -o argument (need { name = value }): {%s}",
                              file, line, nv);
                goto fail;
            }
            value_at++;
            while (isspace((unsigned char) nv[value_at]))
                value_at++;
            strbuf normal;
            strbuf_init(&normal);
            strbuf_printf(&normal, "%.*s=%s", (int) name_len, nv, nv + value_at);
            xfree(s->argv[i]);
            s->argv[i] = strbuf_detach(&normal, NULL);
            nv = s->argv[i];
            value_at = name_len + 1;
        } else {
            const char *eq = strchr(nv, '=');
            if (eq == NULL || !valid_param_name(nv, (size_t) (eq - nv))) {
                strbuf_printf(err, "%s, line %d: bad -o argument (need name=value): %s",
                              file, line, nv);
                goto fail;
            }
            name_len = (size_t) (eq - nv);
            value_at = name_len + 1;
        }
        s->override_names = xrealloc(s->override_names,
                                     (size_t) (s->noverrides + 1) * sizeof(char *));
        s->override_values = xrealloc(s->override_values,
                                      (size_t) (s->noverrides + 1) * sizeof(char *));
        s->override_names[s->noverrides] = xstrndup(nv, name_len);
        s->override_values[s->noverrides] = xstrdup(nv + value_at);
        s->noverrides++;
    }
    return s;
fail:
    service_free(s);
    return NULL;
}

/* Finish a logical line: parse it and append to the list. */
static int add_entry(const strbuf *logical, const char *name, int line,
                     struct master_service **head, struct master_service **tail, strbuf *err)
{
    struct word_list wl = { 0 };
    strbuf why;
    strbuf_init(&why);
    if (split_words(logical->data, logical->len, &wl, &why) < 0) {
        strbuf_printf(err, "%s, line %d: %s", name, line, strbuf_str(&why));
        strbuf_release(&why);
        words_free(&wl);
        return -1;
    }
    strbuf_release(&why);
    struct master_service *s = parse_entry(&wl, name, line, err);
    words_free(&wl);
    if (s == NULL)
        return -1;
    for (struct master_service *p = *head; p; p = p->next)
        if (p->type == s->type && strcmp(p->name, s->name) == 0) {
            strbuf_printf(err, "%s, line %d: duplicate service %s/%s (first defined at line %d)",
                          name, line, s->name, s->type_name, p->line);
            service_free(s);
            return -1;
        }
    if (*tail)
        (*tail)->next = s;
    else
        *head = s;
    *tail = s;
    return 0;
}

static int parse_text(const char *text, size_t len, const char *name,
                      struct master_service **list, strbuf *err)
{
    *list = NULL;
    const char *nul = memchr(text, '\0', len);
    if (nul) {
        int line = 1;
        for (const char *p = text; p < nul; p++)
            line += *p == '\n';
        strbuf_printf(err, "%s, line %d: NUL byte in file", name, line);
        return -1;
    }
    struct master_service *head = NULL, *tail = NULL;
    strbuf logical;
    strbuf_init(&logical);
    int logical_line = 0, line = 0;
    size_t pos = 0;
    while (pos < len) {
        const char *start = text + pos;
        const char *nl = memchr(start, '\n', len - pos);
        size_t line_len = nl ? (size_t) (nl - start) : len - pos;
        pos += line_len + (nl ? 1 : 0);
        line++;
        size_t i = 0;
        while (i < line_len && isspace((unsigned char) start[i]))
            i++;
        if (i == line_len || start[i] == '#')
            continue;                       /* blank or comment */
        if (i > 0) {                        /* continuation */
            if (logical_line == 0) {
                strbuf_printf(err, "%s, line %d: continuation line (starts with whitespace) "
                              "without a preceding service", name, line);
                goto fail;
            }
            strbuf_append_char(&logical, ' ');
            strbuf_append(&logical, start, line_len);
            continue;
        }
        if (logical_line && add_entry(&logical, name, logical_line, &head, &tail, err) < 0)
            goto fail;
        strbuf_set(&logical, start, line_len);
        logical_line = line;
    }
    if (logical_line && add_entry(&logical, name, logical_line, &head, &tail, err) < 0)
        goto fail;
    strbuf_release(&logical);
    *list = head;
    return 0;
fail:
    strbuf_release(&logical);
    master_cf_free(head);
    return -1;
}

int master_cf_parse(const char *text, const char *name,
                    struct master_service **list, strbuf *err)
{
    return parse_text(text, strlen(text), name, list, err);
}

int master_cf_load(const char *path, struct master_service **list, strbuf *err)
{
    *list = NULL;
    strbuf text;
    strbuf_init(&text);
    int rc = -1;
    if (file_read_all(path, &text, MASTER_CF_MAX_SIZE, err) == 0)
        rc = parse_text(text.data, text.len, path, list, err);
    strbuf_release(&text);
    return rc;
}
