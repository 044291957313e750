/*
 * queue_id.c - queue ids: make, validate, decode the arrival time.
 *
 * Format (see queue.h): 9 uppercase hex digits of arrival seconds, 5 of
 * microseconds, then the queue file's inode number in uppercase hex without
 * leading zeros ("0" for inode 0).  E.g. "06925A3F1B0C2E41A7F".
 *
 * Interface: queue_id_make, queue_id_valid, queue_id_time (queue.h).
 *
 * Contract: a valid id is 15..30 characters of [0-9A-F], its microseconds
 * field is below 1000000 and its inode field has no leading zero, so one
 * (time, inode) pair has exactly one spelling and every valid id is safe as
 * a file name (no '/', no '.', never empty).  Ids sort by arrival time as
 * strings: the fixed-width time fields come first, so the inode only
 * breaks ties.
 */
#include <stdio.h>
#include <string.h>

#include "queue.h"

#define QID_SEC_DIGITS  9
#define QID_USEC_DIGITS 5
#define QID_TIME_DIGITS (QID_SEC_DIGITS + QID_USEC_DIGITS)
#define QID_INO_MAX     16      /* 64-bit inode in hex */

void queue_id_make(char *buf, long long sec, long usec, unsigned long long ino)
{
    /* Clamp to what the fixed-width fields can hold so the id stays valid
     * even for absurd inputs (a clock before 1970, a bad usec). */
    if (sec < 0)
        sec = 0;
    if (sec > 0xFFFFFFFFFLL)
        sec = 0xFFFFFFFFFLL;
    if (usec < 0 || usec > 999999)
        usec = usec < 0 ? 0 : 999999;
    snprintf(buf, QUEUE_ID_MAX, "%09llX%05lX%llX",
             (unsigned long long)sec, (unsigned long)usec, ino);
}

static int queue_id_hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int queue_id_valid(const char *s)
{
    if (!s)
        return 0;
    size_t n = strlen(s);
    if (n < QID_TIME_DIGITS + 1 || n > QID_TIME_DIGITS + QID_INO_MAX)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (queue_id_hexval((unsigned char)s[i]) < 0)
            return 0;
    long usec = 0;
    for (size_t i = QID_SEC_DIGITS; i < QID_TIME_DIGITS; i++)
        usec = usec * 16 + queue_id_hexval((unsigned char)s[i]);
    if (usec > 999999)
        return 0;
    if (s[QID_TIME_DIGITS] == '0' && n > QID_TIME_DIGITS + 1)
        return 0;               /* leading zero in the inode field */
    return 1;
}

long long queue_id_time(const char *qid)
{
    long long sec = 0;
    for (size_t i = 0; i < QID_SEC_DIGITS && qid[i]; i++) {
        int v = queue_id_hexval((unsigned char)qid[i]);
        if (v < 0)
            return -1;
        sec = sec * 16 + v;
    }
    return sec;
}
