/*
 * mail_date.h - RFC 5322 date-time text, for Date:, Arrival-Date: and
 * Received: headers.
 *
 * Interface: mail_date_format(out, when) appends e.g.
 * "Wed, 25 Nov 2026 19:27:05 +0000 (UTC)" for WHEN in local time.
 * Contract: English day and month names regardless of locale; the numeric
 * zone is always present; the zone comment only when the system names it.
 */
#ifndef POSTERN_MAIL_DATE_H
#define POSTERN_MAIL_DATE_H

#include <time.h>
#include "strbuf.h"

void mail_date_format(strbuf *out, time_t when);

#endif
