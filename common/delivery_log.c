/*
 * delivery_log.c - the delivery outcome log line and the times behind its
 * delays (contract in delivery_log.h).
 *
 * One formatter for qmgr, local and smtp, so the line that pflogsumm,
 * fail2ban filters and grep habits rely on cannot drift between them.
 */
#include <string.h>
#include <strings.h>
#include <sys/time.h>

#include "delivery_log.h"
#include "log.h"

double delivery_now(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (double) tv.tv_sec + tv.tv_usec / 1e6;
}

void delivery_format_delay(strbuf *out, double s)
{
    if (!(s >= 0.005)) {                /* also a NaN */
        strbuf_append_char(out, '0');
    } else if (s < 10) {
        size_t start = out->len;
        strbuf_appendf(out, "%.2f", s);
        while (out->len > start && out->data[out->len - 1] == '0')
            strbuf_truncate(out, out->len - 1);
        if (out->len > start && out->data[out->len - 1] == '.')
            strbuf_truncate(out, out->len - 1);
    } else if (s < 1e12) {
        strbuf_appendf(out, "%.0f", s);
    } else {
        strbuf_append_str(out, "999999999999");
    }
}

static const char *default_dsn(const char *status)
{
    if (strcmp(status, "sent") == 0)
        return "2.0.0";
    if (strcmp(status, "bounced") == 0)
        return "5.0.0";
    return "4.0.0";
}

void delivery_log_format(strbuf *out, const char *qid, const char *rcpt,
                         const char *orcpt, const char *relay,
                         const struct delivery_times *t, double end,
                         const char *dsn, const char *status, const char *reason)
{
    strbuf_appendf(out, "%s: to=<%s>, ", qid, rcpt);
    if (orcpt) {
        /* ORCPT as "rfc822;addr": show the address like Postfix's orig_to. */
        const char *semi = strchr(orcpt, ';');
        const char *o = semi ? semi + 1 : orcpt;
        if (strcasecmp(o, rcpt) != 0)
            strbuf_appendf(out, "orig_to=<%s>, ", o);
    }
    strbuf_appendf(out, "relay=%s, delay=", relay && *relay ? relay : "none");
    delivery_format_delay(out, end - t->arrival);
    strbuf_append_str(out, ", delays=");
    delivery_format_delay(out, t->active - t->arrival);
    strbuf_append_char(out, '/');
    delivery_format_delay(out, t->request - t->active);
    strbuf_append_char(out, '/');
    delivery_format_delay(out, t->session - t->request);
    strbuf_append_char(out, '/');
    delivery_format_delay(out, end - t->session);
    strbuf_appendf(out, ", dsn=%s, status=%s (%s)", dsn && *dsn ? dsn : default_dsn(status),
                   status, reason ? reason : "");
}

void delivery_log(const char *qid, const char *rcpt, const char *orcpt,
                  const char *relay, const struct delivery_times *t, double end,
                  const char *dsn, const char *status, const char *reason)
{
    strbuf line;
    strbuf_init(&line);
    delivery_log_format(&line, qid, rcpt, orcpt, relay, t, end, dsn, status, reason);
    log_info("%s", strbuf_str(&line));
    strbuf_release(&line);
}

static long long to_usec(double t)
{
    return (long long) (t * 1e6 + 0.5);
}

void delivery_times_add(ipc_record *r, const struct delivery_times *t)
{
    ipc_record_add_int(r, "arrival_us", to_usec(t->arrival));
    ipc_record_add_int(r, "active_us", to_usec(t->active));
    ipc_record_add_int(r, "request_us", to_usec(t->request));
}

/* A time from the request, or fallback when absent or outside
 * [lo, now + a minute of clock skew]. */
static double time_attr(const ipc_record *r, const char *name, double lo, double now,
                        double fallback)
{
    long long us;
    if (ipc_record_get_int(r, name, &us) != 0 || us < 0)
        return fallback;
    double t = (double) us / 1e6;
    if (t < lo || t > now + 60)
        return fallback;
    return t;
}

void delivery_times_get(const ipc_record *r, double now, struct delivery_times *t)
{
    long long sec;
    double arrival = now;
    if (ipc_record_get_int(r, "arrival", &sec) == 0 && sec >= 0 && sec <= now + 60)
        arrival = (double) sec;
    t->arrival = time_attr(r, "arrival_us", 0, now, arrival);
    t->active = time_attr(r, "active_us", t->arrival, now, t->arrival);
    t->request = time_attr(r, "request_us", t->active, now, t->active);
    t->session = now;
}
