/*
 * smtp_reply.c - SMTP reply lines, enhanced status codes and EHLO keywords
 * as a client reads them (see smtp_reply.h).  Pure functions.
 */
#include <ctype.h>
#include <string.h>

#include "smtp_reply.h"

int smtp_reply_line(const char *line, size_t len, int *code, int *more,
                    const char **text)
{
    if (len < 3 || line[0] < '2' || line[0] > '5' || line[1] < '0' || line[1] > '5'
        || !isdigit((unsigned char)line[2]))
        return -1;
    *code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
    if (len == 3) {
        *more = 0;
        *text = line + 3;
        return 0;
    }
    if (line[3] != ' ' && line[3] != '-')
        return -1;
    *more = line[3] == '-';
    *text = line + 4;
    return 0;
}

/* digits of one component: 1..max digits; returns count or 0 */
static size_t digits(const char *s, size_t max)
{
    size_t n = 0;
    while (n <= max && isdigit((unsigned char)s[n]))
        n++;
    return n >= 1 && n <= max ? n : 0;
}

size_t smtp_reply_enhanced(const char *text, int reply_class, strbuf *out)
{
    const char *p = text;
    if (p[0] != '0' + reply_class || p[1] != '.')
        return 0;
    p += 2;
    size_t n = digits(p, 3);
    if (!n || p[n] != '.')
        return 0;
    p += n + 1;
    n = digits(p, 3);
    if (!n)
        return 0;
    p += n;
    if (*p != '\0' && *p != ' ' && *p != '\t')
        return 0;
    strbuf_set(out, text, (size_t)(p - text));
    while (*p == ' ' || *p == '\t')
        p++;
    return (size_t)(p - text);
}

void smtp_ehlo_keyword(const char *text, strbuf *kw, strbuf *arg)
{
    strbuf_reset(kw);
    strbuf_reset(arg);
    const char *p = text;
    while (*p == ' ')
        p++;
    while (*p && *p != ' ' && *p != '=') {
        strbuf_append_char(kw, toupper((unsigned char)*p));
        p++;
    }
    /* "AUTH=LOGIN PLAIN" is an old form some servers still send */
    while (*p == ' ' || *p == '=')
        p++;
    strbuf_append_str(arg, p);
    strbuf_rtrim(arg);
}
