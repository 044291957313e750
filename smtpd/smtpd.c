/*
 * smtpd.c - the SMTP server daemon: main(), parameters, the session loop.
 *
 * Interface: built on common/server.h as a SERVER_SINGLE daemon; serve(fd)
 * speaks one RFC 5321 session on fd (in standalone -S mode fd is 0 and
 * replies go to fd 1).  The command handlers live in smtpd_cmd.c and
 * smtpd_data.c; this file owns the loop, replies and session logging.
 *
 * Contract:
 *  - Every reply goes through smtpd_reply(), which counts 4xx/5xx replies
 *    as errors; beyond smtpd_soft_error_limit each error reply is delayed
 *    by smtpd_error_sleep_time, and at smtpd_hard_error_limit the session
 *    ends with "421 4.7.0 HOST Error: too many errors".
 *  - A command line longer than line_length_limit is read to its end and
 *    answered "500 5.5.2 Error: line too long"; a NUL or other control
 *    byte in the verb gets "500 5.5.2 Error: bad syntax".
 *  - A TLS session without the trusted client certificate that
 *    smtpd_tls_req_ccert requires answers its first command (wrapper
 *    mode: instead of the greeting) with "421 4.7.1 HOST Error: REASON"
 *    and ends (smtpd_tls.c).
 *  - A read or write that waits smtpd_timeout ends the session with
 *    "421 4.4.2 HOST Error: timeout exceeded".
 *  - Log lines follow Postfix: "connect from", "disconnect from ... ehlo=1
 *    mail=1 rcpt=2/3 ... commands=N/M", "lost connection after CMD from",
 *    "timeout after CMD from", "too many errors after CMD from".
 */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "log.h"
#include "maps.h"
#include "mem.h"
#include "server.h"
#include "smtp_parse.h"
#include "smtpd.h"

struct smtpd_params smtpd_params;

static const struct {
    const char *verb;           /* upper case, as split */
    const char *log_name;       /* lower case, for the disconnect line */
    enum smtpd_cmd_id id;
} commands[] = {
    { "HELO", "helo", CMD_HELO },
    { "EHLO", "ehlo", CMD_EHLO },
    { "MAIL", "mail", CMD_MAIL },
    { "RCPT", "rcpt", CMD_RCPT },
    { "DATA", "data", CMD_DATA },
    { "BDAT", "bdat", CMD_BDAT },
    { "RSET", "rset", CMD_RSET },
    { "NOOP", "noop", CMD_NOOP },
    { "VRFY", "vrfy", CMD_VRFY },
    { "HELP", "help", CMD_HELP },
    { "QUIT", "quit", CMD_QUIT },
    { "STARTTLS", "starttls", CMD_STARTTLS },
    { "AUTH", "auth", CMD_AUTH },
    { NULL, "unknown", CMD_UNKNOWN },
};

static const char *cmd_log_name(enum smtpd_cmd_id id)
{
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        if (commands[i].id == id)
            return commands[i].log_name;
    return "unknown";
}

void smtpd_reply(struct smtpd_state *st, const char *fmt, ...)
{
    strbuf text;
    va_list ap;

    strbuf_init(&text);
    va_start(ap, fmt);
    strbuf_vappendf(&text, fmt, ap);
    va_end(ap);
    st->last_reply_code = atoi(strbuf_str(&text));
    int not_error = st->reply_not_error;
    st->reply_not_error = 0;
    if (st->last_reply_code >= 400 && strncmp(strbuf_str(&text), "421", 3) != 0 && !not_error) {
        st->error_count++;
        /* Slow down clients that keep making errors (tarpit). */
        if (st->error_count > smtpd_params.soft_error_limit
            && smtpd_params.error_sleep_time > 0) {
            smtpd_io_flush(&st->io);
            sleep((unsigned)smtpd_params.error_sleep_time);
        }
    }
    strbuf_append(&text, "\r\n", 2);
    smtpd_io_put(&st->io, text.data, text.len);
    strbuf_release(&text);
}

const char *smtpd_protocol_name(const struct smtpd_state *st)
{
    if (st->smtputf8)
        return st->tls_active ? (st->sasl_username ? "UTF8SMTPSA" : "UTF8SMTPS")
                              : (st->sasl_username ? "UTF8SMTPA" : "UTF8SMTP");
    if (!st->esmtp)
        return "SMTP";
    if (st->tls_active)
        return st->sasl_username ? "ESMTPSA" : "ESMTPS";
    return st->sasl_username ? "ESMTPA" : "ESMTP";
}

void smtpd_log_reject(struct smtpd_state *st, const char *cmd, const char *reply,
                      const char *rcpt)
{
    strbuf extra;
    strbuf_init(&extra);
    if (st->sender)
        strbuf_appendf(&extra, " from=<%s>", st->sender);
    if (rcpt)
        strbuf_appendf(&extra, " to=<%s>", rcpt);
    log_info("%s: reject: %s from %s: %s;%s proto=%s%s%s%s",
             st->queue_id ? st->queue_id : "NOQUEUE", cmd, st->namaddr, reply,
             strbuf_str(&extra), st->esmtp ? "ESMTP" : "SMTP",
             st->helo_name ? " helo=<" : "", st->helo_name ? st->helo_name : "",
             st->helo_name ? ">" : "");
    strbuf_release(&extra);
}

void smtpd_reset_transaction(struct smtpd_state *st)
{
    smtpd_cleanup_abort(st);
    xfree(st->queue_id);
    st->queue_id = NULL;
    xfree(st->sender);
    st->sender = NULL;
    xfree(st->envid);
    st->envid = NULL;
    xfree(st->ret);
    st->ret = NULL;
    st->smtputf8 = 0;
    st->declared_size = 0;
    for (size_t i = 0; i < st->nrcpt; i++) {
        xfree(st->rcpts[i].addr);
        xfree(st->rcpts[i].notify);
        xfree(st->rcpts[i].orcpt);
    }
    st->nrcpt = 0;
    st->rcpt_attempts = 0;
    st->rcpt_overshoot = 0;
    st->bdat_active = 0;
    st->bdat_failed = 0;
    strbuf_reset(&st->content);
}

static void log_disconnect(struct smtpd_state *st)
{
    strbuf line;
    int ok = 0, total = 0;

    strbuf_init(&line);
    for (int id = 0; id < CMD_COUNT; id++) {
        if (st->stats_total[id] == 0)
            continue;
        ok += st->stats_ok[id];
        total += st->stats_total[id];
        if (st->stats_ok[id] == st->stats_total[id])
            strbuf_appendf(&line, " %s=%d", cmd_log_name(id), st->stats_total[id]);
        else
            strbuf_appendf(&line, " %s=%d/%d", cmd_log_name(id), st->stats_ok[id],
                           st->stats_total[id]);
    }
    if (ok == total)
        strbuf_appendf(&line, " commands=%d", total);
    else
        strbuf_appendf(&line, " commands=%d/%d", ok, total);
    log_info("disconnect from %s%s", st->namaddr, strbuf_str(&line));
    strbuf_release(&line);
}

/* The connection failed under us: log it as Postfix does, 421 on timeout. */
static void session_io_failed(struct smtpd_state *st)
{
    if (st->io.status == SMTPD_IO_TIMEOUT) {
        st->io.status = SMTPD_IO_OK;   /* the socket may still take a reply */
        smtpd_reply(st, "421 4.4.2 %s Error: timeout exceeded", smtpd_params.myhostname);
        smtpd_io_flush(&st->io);
        log_info("timeout after %s from %s", st->where, st->namaddr);
    } else {
        log_info("lost connection after %s from %s", st->where, st->namaddr);
    }
}

static void dispatch(struct smtpd_state *st, const char *verb, const char *arg)
{
    size_t i;

    for (i = 0; commands[i].verb != NULL; i++)
        if (strcmp(commands[i].verb, verb) == 0)
            break;
    enum smtpd_cmd_id id = commands[i].id;
    st->stats_total[id]++;
    st->last_reply_code = 0;
    switch (id) {
    case CMD_HELO: st->where = "HELO"; smtpd_cmd_helo(st, arg, 0); break;
    case CMD_EHLO: st->where = "EHLO"; smtpd_cmd_helo(st, arg, 1); break;
    case CMD_MAIL: st->where = "MAIL"; smtpd_cmd_mail(st, arg); break;
    case CMD_RCPT: st->where = "RCPT"; smtpd_cmd_rcpt(st, arg); break;
    case CMD_DATA: st->where = "DATA"; smtpd_cmd_data(st, arg); break;
    case CMD_BDAT: st->where = "BDAT"; smtpd_cmd_bdat(st, arg); break;
    case CMD_RSET: st->where = "RSET"; smtpd_cmd_rset(st, arg); break;
    case CMD_NOOP: st->where = "NOOP"; smtpd_cmd_noop(st, arg); break;
    case CMD_VRFY: st->where = "VRFY"; smtpd_cmd_vrfy(st, arg); break;
    case CMD_HELP: st->where = "HELP"; smtpd_cmd_help(st, arg); break;
    case CMD_QUIT: st->where = "QUIT"; smtpd_cmd_quit(st, arg); break;
    case CMD_STARTTLS: st->where = "STARTTLS"; smtpd_cmd_starttls(st, arg); break;
    case CMD_AUTH: st->where = "AUTH"; smtpd_cmd_auth(st, arg); break;
    default:
        st->where = "UNKNOWN";
        if (strcmp(verb, "GET") == 0 || strcmp(verb, "POST") == 0
            || strcmp(verb, "CONNECT") == 0) {
            /* An HTTP client (or a browser-based attack) talking to port 25 */
            log_warning("non-SMTP command from %s: %s", st->namaddr, verb);
            smtpd_reply(st, "221 2.7.0 Error: I can break rules, too. Goodbye.");
            st->quit = 1;
            return;
        }
        smtpd_reply(st, "502 5.5.2 Error: command not recognized");
        return;
    }
    /* A command cut short by a lost connection (e.g. DATA after its 354)
     * did not succeed. */
    if (st->last_reply_code > 0 && st->last_reply_code < 400 && st->io.status == SMTPD_IO_OK)
        st->stats_ok[id]++;
}

/* Postfix 3.9: "yes" (alias "reject") refuses bare LF unless the client is
 * in smtpd_forbid_bare_newline_exclusions ($mynetworks by default). */
static int smtpd_forbid_bare_lf(struct smtpd_state *st)
{
    const char *v = smtpd_params.forbid_bare_newline;
    strbuf err;

    if (strcasecmp(v, "yes") != 0 && strcasecmp(v, "reject") != 0)
        return 0;
    strbuf_init(&err);
    int excluded = cidr_list_match(smtpd_params.forbid_bare_newline_exclusions,
                                   st->client_addr, &err);
    if (excluded < 0)
        log_warning("smtpd_forbid_bare_newline_exclusions: %s", strbuf_str(&err));
    strbuf_release(&err);
    return excluded != 1;
}

/* smtpd_tls_req_ccert is not met: 421 and the end of the session. */
static void ccert_refuse(struct smtpd_state *st)
{
    smtpd_reply(st, "421 4.7.1 %s Error: %s", smtpd_params.myhostname,
                smtpd_tls_ccert_refusal(st));
    smtpd_io_flush(&st->io);
    st->quit = 1;
}

static void smtpd_serve(int client_fd)
{
    struct smtpd_state st;
    struct smtp_cmd cmd;
    strbuf line;
    size_t limit = smtpd_params.line_length_limit > 0
        ? (size_t)smtpd_params.line_length_limit : 2048;

    memset(&st, 0, sizeof(st));
    /* Standalone mode (-S) serves stdin and answers on stdout. */
    smtpd_io_init(&st.io, client_fd, client_fd == 0 ? 1 : client_fd,
                  smtpd_params.timeout);
    strbuf_init(&st.content);
    strbuf_init(&line);
    smtp_cmd_init(&cmd);
    smtpd_peer_lookup(&st, client_fd);
    log_info("connect from %s", st.namaddr);
    st.forbid_bare_lf = smtpd_forbid_bare_lf(&st);
    st.where = "CONNECT";

    if (smtpd_tls_wrapper_start(&st) < 0) {
        st.quit = 1;
        st.io.status = SMTPD_IO_ERROR;
        log_info("lost connection after CONNECT from %s", st.namaddr);
    } else if (smtpd_tls_ccert_refusal(&st) != NULL) {
        /* wrapper mode: no greeting for a client smtpd_tls_req_ccert refuses */
        ccert_refuse(&st);
    } else {
        smtpd_reply(&st, "220 %s", smtpd_params.banner);
    }
    while (!st.quit) {
        if (st.error_count >= smtpd_params.hard_error_limit) {
            smtpd_reply(&st, "421 4.7.0 %s Error: too many errors", smtpd_params.myhostname);
            smtpd_io_flush(&st.io);
            smtpd_io_linger(&st.io, 2);
            log_info("too many errors after %s from %s", st.where, st.namaddr);
            break;
        }
        int too_long, bare_lf;
        /* a command line earns no extra time per byte */
        smtpd_io_deadline(&st.io, smtpd_params.per_request_deadline, 0);
        int rc = smtpd_io_get_line(&st.io, &line, limit, &too_long, &bare_lf);
        if (rc <= 0) {
            session_io_failed(&st);
            break;
        }
        server_watchdog_pat();          /* a command: the session makes progress */
        if (smtpd_tls_ccert_refusal(&st) != NULL) {
            /* Postfix reads the command after the handshake, then refuses */
            ccert_refuse(&st);
            break;
        }
        if (too_long) {
            st.stats_total[CMD_UNKNOWN]++;
            smtpd_reply(&st, "500 5.5.2 Error: line too long");
            continue;
        }
        if (bare_lf && st.forbid_bare_lf) {
            st.stats_total[CMD_UNKNOWN]++;
            log_info("bare <LF> received from %s", st.namaddr);
            smtpd_reply(&st, "550 5.5.2 Error: bare <LF> received");
            continue;
        }
        if (smtp_cmd_split(line.data, line.len, &cmd) < 0) {
            st.stats_total[CMD_UNKNOWN]++;
            smtpd_reply(&st, "500 5.5.2 Error: bad syntax");
            continue;
        }
        dispatch(&st, strbuf_str(&cmd.verb), strbuf_str(&cmd.arg));
        if (st.io.status != SMTPD_IO_OK) {
            session_io_failed(&st);
            break;
        }
    }
    smtpd_io_flush(&st.io);
    smtpd_reset_transaction(&st);
    log_disconnect(&st);
    smtpd_tls_end(&st);
    smtpd_sasl_reset(&st);

    smtp_cmd_release(&cmd);
    strbuf_release(&line);
    strbuf_release(&st.content);
    smtpd_io_release(&st.io);
    xfree(st.rcpts);
    xfree(st.helo_name);
    xfree(st.client_name);
    xfree(st.client_addr);
    xfree(st.namaddr);
}

static void smtpd_load_params(void)
{
    struct smtpd_params *p = &smtpd_params;
    static char hostbuf[256];

    p->myhostname = config_str("myhostname");
    if (*p->myhostname == '\0') {
        if (gethostname(hostbuf, sizeof(hostbuf) - 1) < 0)
            strcpy(hostbuf, "localhost");
        p->myhostname = hostbuf;
    }
    p->banner = config_str("smtpd_banner");
    p->mynetworks = config_str("mynetworks");
    p->mydestination = config_str("mydestination");
    p->relay_domains = config_str("relay_domains");
    p->local_recipient_maps = config_str("local_recipient_maps");
    p->virtual_alias_maps = config_str("virtual_alias_maps");
    p->virtual_alias_domains = config_str("virtual_alias_domains");
    p->recipient_delimiter = config_str("recipient_delimiter");
    p->client_restrictions = config_str("smtpd_client_restrictions");
    p->helo_restrictions = config_str("smtpd_helo_restrictions");
    p->sender_restrictions = config_str("smtpd_sender_restrictions");
    p->relay_restrictions = config_str("smtpd_relay_restrictions");
    p->recipient_restrictions = config_str("smtpd_recipient_restrictions");
    p->forbid_bare_newline = config_str("smtpd_forbid_bare_newline");
    p->forbid_bare_newline_exclusions = config_str("smtpd_forbid_bare_newline_exclusions");
    p->timeout = (int)config_time("smtpd_timeout");
    p->per_request_deadline = config_bool("smtpd_per_request_deadline");
    p->min_data_rate = config_int("smtpd_min_data_rate");
    p->ipc_timeout = (int)config_time("ipc_timeout");
    p->recipient_limit = config_int("smtpd_recipient_limit");
    p->recipient_overshoot_limit = config_int("smtpd_recipient_overshoot_limit");
    p->soft_error_limit = config_int("smtpd_soft_error_limit");
    p->hard_error_limit = config_int("smtpd_hard_error_limit");
    p->error_sleep_time = (int)config_time("smtpd_error_sleep_time");
    p->message_size_limit = config_size("message_size_limit");
    p->queue_minfree = config_size("queue_minfree");
    p->line_length_limit = config_int("line_length_limit");
    p->helo_required = config_bool("smtpd_helo_required");
    p->strict_rfc821_envelopes = config_bool("strict_rfc821_envelopes");
    p->reject_unlisted_recipient = config_bool("smtpd_reject_unlisted_recipient");
    p->peername_lookup = config_bool("smtpd_peername_lookup");
    p->disable_vrfy = config_bool("disable_vrfy_command");
    p->reject_code = (int)config_int("reject_code");
    p->defer_code = (int)config_int("defer_code");
    p->relay_reject_code = (int)config_int("relay_domains_reject_code");
    p->unknown_local_code = (int)config_int("unknown_local_recipient_reject_code");
    p->unknown_address_code = (int)config_int("unknown_address_reject_code");
    p->access_reject_code = (int)config_int("access_map_reject_code");
    p->access_defer_code = (int)config_int("access_map_defer_code");
}

static void smtpd_pre_jail(int argc, char **argv)
{
    smtpd_load_params();
    /* The zone of Received: dates: /etc/localtime is gone after chroot. */
    tzset();
    /* Lookup tables (passwd, alias files) and the resolver configuration
     * must be read before a chroot hides them. */
    smtpd_check_init();
    /* Private keys, certificates and the SASL configuration are read while
     * still privileged and outside the jail. */
    smtpd_tls_init();
    smtpd_sasl_init();
}

static void smtpd_post_jail(int argc, char **argv)
{
}

int main(int argc, char **argv)
{
    static const struct server_spec spec = {
        .program = "smtpd",
        .mode = SERVER_SINGLE,
        .pre_jail = smtpd_pre_jail,
        .post_jail = smtpd_post_jail,
        .serve = smtpd_serve,
    };
    return server_main(argc, argv, &spec);
}
