/*
 * smtp_parse.c - pure parsers for SMTP command lines and ESMTP parameters.
 *
 * Interface and contract: see smtp_parse.h.  Everything here is a function
 * of its input bytes; nothing reads past the given length, nothing keeps
 * state between calls.
 */
#include <ctype.h>
#include <string.h>
#include <strings.h>

#include "mem.h"
#include "smtp_parse.h"

void smtp_cmd_init(struct smtp_cmd *cmd)
{
    strbuf_init(&cmd->verb);
    strbuf_init(&cmd->arg);
}

void smtp_cmd_release(struct smtp_cmd *cmd)
{
    strbuf_release(&cmd->verb);
    strbuf_release(&cmd->arg);
}

int smtp_cmd_split(const char *line, size_t len, struct smtp_cmd *cmd)
{
    size_t i = 0;

    strbuf_reset(&cmd->verb);
    strbuf_reset(&cmd->arg);
    /* A NUL or other control byte anywhere makes the whole line suspect:
     * C code downstream would see a shorter string than the peer sent, and
     * a CR or LF could end up splitting a header or log line. */
    for (size_t k = 0; k < len; k++) {
        unsigned char c = (unsigned char)line[k];
        if ((c < 0x20 && c != '\t') || c == 0x7f)
            return -1;
    }
    /* Postfix tolerates leading and trailing white space; so do we. */
    while (i < len && (line[i] == ' ' || line[i] == '\t'))
        i++;
    while (len > i && (line[len - 1] == ' ' || line[len - 1] == '\t'))
        len--;
    if (i == len)
        return -1;
    while (i < len && line[i] != ' ' && line[i] != '\t') {
        unsigned char c = (unsigned char)line[i];
        if (c < 0x21 || c > 0x7e)
            return -1;
        strbuf_append_char(&cmd->verb, toupper(c));
        i++;
    }
    while (i < len && (line[i] == ' ' || line[i] == '\t'))
        i++;
    strbuf_append(&cmd->arg, line + i, len - i);
    return 0;
}

const char *smtp_path_arg(const char *arg, const char *keyword)
{
    size_t klen = strlen(keyword);

    if (strncasecmp(arg, keyword, klen) != 0 || arg[klen] != ':')
        return NULL;
    arg += klen + 1;
    while (*arg == ' ')
        arg++;
    return arg;
}

void smtp_params_init(struct smtp_params *p)
{
    p->list = NULL;
    p->n = 0;
}

void smtp_params_release(struct smtp_params *p)
{
    for (size_t i = 0; i < p->n; i++) {
        xfree(p->list[i].key);
        xfree(p->list[i].value);
    }
    xfree(p->list);
    p->list = NULL;
    p->n = 0;
}

/* RFC 5321 esmtp-keyword: ALPHA / DIGIT then ALPHA / DIGIT / "-". */
static int keyword_char(unsigned char c, int first)
{
    return isalnum(c) || (!first && c == '-');
}

int smtp_params_parse(const char *s, size_t len, int utf8,
                      struct smtp_params *p, strbuf *err)
{
    size_t i = 0;

    smtp_params_release(p);
    for (;;) {
        while (i < len && s[i] == ' ')
            i++;
        if (i >= len)
            return 0;
        size_t kstart = i;
        while (i < len && keyword_char((unsigned char)s[i], i == kstart))
            i++;
        if (i == kstart || (i < len && s[i] != '=' && s[i] != ' ')) {
            strbuf_set_str(err, "malformed parameter name");
            return -1;
        }
        if (i - kstart > 64) {
            strbuf_set_str(err, "parameter name too long");
            return -1;
        }
        char *key = xstrndup(s + kstart, i - kstart);
        for (char *k = key; *k; k++)
            *k = (char)toupper((unsigned char)*k);
        char *value = NULL;
        if (i < len && s[i] == '=') {
            size_t vstart = ++i;
            while (i < len && s[i] != ' ') {
                unsigned char c = (unsigned char)s[i];
                /* esmtp-value = 1*(%d33-60 / %d62-126), UTF-8 with SMTPUTF8 */
                if (c == '=' || c < 33 || c == 127 || (c > 127 && !utf8)) {
                    xfree(key);
                    strbuf_set_str(err, "malformed parameter value");
                    return -1;
                }
                i++;
            }
            if (i == vstart) {
                xfree(key);
                strbuf_set_str(err, "empty parameter value");
                return -1;
            }
            value = xstrndup(s + vstart, i - vstart);
        }
        p->list = xrealloc(p->list, (p->n + 1) * sizeof(*p->list));
        p->list[p->n].key = key;
        p->list[p->n].value = value;
        p->n++;
    }
}

const struct smtp_param *smtp_params_find(const struct smtp_params *p, const char *key)
{
    for (size_t i = 0; i < p->n; i++)
        if (strcmp(p->list[i].key, key) == 0)
            return &p->list[i];
    return NULL;
}

static int hexval(unsigned char c)
{
    /* RFC 3461: hexchar uses upper-case A-F only. */
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* xtext = *( xchar / hexchar ); xchar = %d33-42 / %d44-60 / %d62-126 */
int smtp_xtext_decode(const char *in, size_t len, strbuf *out)
{
    strbuf_reset(out);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)in[i];
        if (c == '+') {
            if (i + 2 >= len)           /* need two hex digits after '+' */
                return -1;
            int hi = hexval((unsigned char)in[i + 1]);
            int lo = hexval((unsigned char)in[i + 2]);
            if (hi < 0 || lo < 0)
                return -1;
            strbuf_append_char(out, hi * 16 + lo);
            i += 2;
        } else if (c >= 33 && c <= 126 && c != '=') {
            strbuf_append_char(out, c);
        } else {
            return -1;
        }
    }
    return 0;
}

int smtp_xtext_valid(const char *in, size_t len)
{
    strbuf tmp;
    strbuf_init(&tmp);
    int rc = smtp_xtext_decode(in, len, &tmp);
    strbuf_release(&tmp);
    return rc == 0;
}

int smtp_notify_valid(const char *value)
{
    if (value == NULL || *value == '\0')
        return 0;
    if (strcasecmp(value, "NEVER") == 0)
        return 1;
    const char *p = value;
    int seen = 0;
    for (;;) {
        const char *comma = strchr(p, ',');
        size_t n = comma ? (size_t)(comma - p) : strlen(p);
        int bit;
        if (n == 7 && strncasecmp(p, "SUCCESS", 7) == 0)
            bit = 1;
        else if (n == 7 && strncasecmp(p, "FAILURE", 7) == 0)
            bit = 2;
        else if (n == 5 && strncasecmp(p, "DELAY", 5) == 0)
            bit = 4;
        else
            return 0;           /* also NEVER inside a list, empty items */
        if (seen & bit)
            return 0;
        seen |= bit;
        if (!comma)
            return 1;
        p = comma + 1;
    }
}

int smtp_orcpt_valid(const char *value)
{
    if (value == NULL)
        return 0;
    const char *semi = strchr(value, ';');
    if (semi == NULL || semi == value)
        return 0;
    for (const char *t = value; t < semi; t++)
        if (!isalnum((unsigned char)*t) && *t != '-')
            return 0;
    size_t rest = strlen(semi + 1);
    return rest > 0 && smtp_xtext_valid(semi + 1, rest);
}

int smtp_size_parse(const char *value, unsigned long long *out)
{
    unsigned long long n = 0;

    if (value == NULL || *value == '\0')
        return -1;
    for (const char *p = value; *p; p++) {
        if (*p < '0' || *p > '9')
            return -1;
        unsigned d = (unsigned)(*p - '0');
        if (n > (~0ULL - d) / 10)
            return -1;
        n = n * 10 + d;
    }
    *out = n;
    return 0;
}

int smtp_bdat_parse(const char *arg, unsigned long long *size, int *last)
{
    const char *p = arg;
    strbuf num;
    int rc = -1;

    strbuf_init(&num);
    while (*p >= '0' && *p <= '9')
        strbuf_append_char(&num, *p++);
    if (num.len == 0 || num.len > 19)
        goto out;
    *last = 0;
    if (*p == ' ') {
        while (*p == ' ')
            p++;
        if (strcasecmp(p, "LAST") != 0)
            goto out;
        *last = 1;
    } else if (*p != '\0') {
        goto out;
    }
    rc = smtp_size_parse(strbuf_str(&num), size);
out:
    strbuf_release(&num);
    return rc;
}
