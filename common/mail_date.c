/*
 * mail_date.c - RFC 5322 date-time text (see mail_date.h).  Names are
 * spelled out here rather than with strftime so the locale never leaks
 * into mail headers.
 */
#include <stdlib.h>
#include <time.h>

#include "mail_date.h"

void mail_date_format(strbuf *out, time_t when)
{
    static const char *const days[] = { "Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat" };
    static const char *const months[] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                          "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
    struct tm tm;
    localtime_r(&when, &tm);
    long off = tm.tm_gmtoff / 60;
    char sign = off < 0 ? '-' : '+';
    off = labs(off);
    strbuf_appendf(out, "%s, %d %s %d %02d:%02d:%02d %c%02ld%02ld",
                   days[tm.tm_wday % 7], tm.tm_mday, months[tm.tm_mon % 12],
                   tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec,
                   sign, off / 60, off % 60);
    if (tm.tm_zone && tm.tm_zone[0])
        strbuf_appendf(out, " (%s)", tm.tm_zone);
}
