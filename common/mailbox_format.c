/*
 * mailbox_format.c - mbox separator and quoting, Maildir names, and the
 * Delivered-To: header test.  See mailbox_format.h.
 */
#include <string.h>
#include <strings.h>
#include <time.h>

#include "mailbox_format.h"

void mbox_from_line(strbuf *out, const char *sender, time_t when)
{
    static const char *const days[] = { "Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat" };
    static const char *const months[] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                          "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
    struct tm tm;

    strbuf_append_str(out, "From ");
    if (sender == NULL || *sender == '\0') {
        strbuf_append_str(out, "MAILER-DAEMON");
    } else {
        /* Readers split the separator on white space: keep SENDER one word. */
        for (const unsigned char *p = (const unsigned char *)sender; *p; p++)
            strbuf_append_char(out, (*p <= ' ' || *p == 0x7f) ? '_' : *p);
    }
    localtime_r(&when, &tm);
    /* asctime format, written by hand so no locale can change it. */
    strbuf_appendf(out, " %s %s %2d %02d:%02d:%02d %d\n",
                   days[tm.tm_wday % 7], months[tm.tm_mon % 12], tm.tm_mday,
                   tm.tm_hour, tm.tm_min, tm.tm_sec, tm.tm_year + 1900);
}

int mbox_needs_quote(const char *line, size_t len)
{
    size_t i = 0;
    while (i < len && line[i] == '>')
        i++;
    return len - i >= 5 && memcmp(line + i, "From ", 5) == 0;
}

void mbox_quote_line(strbuf *out, const char *line, size_t len)
{
    if (mbox_needs_quote(line, len))
        strbuf_append_char(out, '>');
    strbuf_append(out, line, len);
}

void maildir_unique_name(strbuf *out, long long sec, long usec, long pid,
                         unsigned long counter, const char *host)
{
    strbuf_printf(out, "%lld.M%ldP%ldQ%lu.", sec, usec, pid, counter);
    for (const char *p = host; *p; p++) {
        if (*p == '/')
            strbuf_append_str(out, "\\057");
        else if (*p == ':')
            strbuf_append_str(out, "\\072");
        else
            strbuf_append_char(out, *p);
    }
}

int header_delivered_to(const char *line, size_t len, strbuf *value)
{
    static const char name[] = "delivered-to";
    size_t n = sizeof(name) - 1;
    if (len < n || strncasecmp(line, name, n) != 0)
        return 0;
    size_t i = n;
    while (i < len && (line[i] == ' ' || line[i] == '\t'))
        i++;
    if (i >= len || line[i] != ':')
        return 0;
    i++;
    while (i < len && (line[i] == ' ' || line[i] == '\t'))
        i++;
    size_t end = len;
    while (end > i && (line[end - 1] == ' ' || line[end - 1] == '\t' || line[end - 1] == '\r'))
        end--;
    strbuf_set(value, line + i, end - i);
    return 1;
}
