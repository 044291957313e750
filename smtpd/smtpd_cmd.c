/*
 * smtpd_cmd.c - the envelope commands: HELO, EHLO, MAIL, RCPT, RSET, NOOP,
 * HELP, VRFY, QUIT.
 *
 * Interface: smtpd_cmd_*(st, arg) from smtpd.h; arg is the command line
 * after the verb (no CR LF, no NUL: the session loop guarantees it).
 *
 * Contract: every reply carries an RFC 3463 enhanced status code (except
 * the EHLO capability lines, as Postfix); replies and their texts follow
 * Postfix.  Addresses are parsed by common/addr.c, so an address with shell
 * metacharacters or quotes is only ever an address string here.  ESMTP
 * parameters are accepted only after EHLO and only those advertised.
 */
#include <string.h>
#include <strings.h>
#include <sys/statvfs.h>

#include "addr.h"
#include "config.h"
#include "log.h"
#include "mem.h"
#include "smtp_parse.h"
#include "smtpd.h"

/* A fixed line of the EHLO reply, queued without printf (one EHLO per
 * session, and a session per message is the common case). */
#define EHLO_LINE(st, text) smtpd_io_put(&(st)->io, text, sizeof(text) - 1)

void smtpd_cmd_helo(struct smtpd_state *st, const char *arg, int esmtp)
{
    const char *verb = esmtp ? "EHLO" : "HELO";

    if (*arg == '\0' || strchr(arg, ' ') != NULL || strchr(arg, '\t') != NULL) {
        smtpd_reply(st, "501 5.5.4 Syntax: %s hostname", verb);
        return;
    }
    /* RFC 5321 4.1.4: a new EHLO/HELO resets any transaction in progress. */
    smtpd_reset_transaction(st);
    xfree(st->helo_name);
    st->helo_name = xstrdup(arg);
    st->esmtp = esmtp;
    if (!esmtp) {
        smtpd_reply(st, "250 %s", smtpd_params.myhostname);
        return;
    }
    EHLO_LINE(st, "250-");
    smtpd_io_put(&st->io, smtpd_params.myhostname, strlen(smtpd_params.myhostname));
    EHLO_LINE(st, "\r\n");
    EHLO_LINE(st, "250-PIPELINING\r\n");
    if (smtpd_params.message_size_limit > 0)
        smtpd_io_printf(&st->io, "250-SIZE %lld\r\n", smtpd_params.message_size_limit);
    else
        EHLO_LINE(st, "250-SIZE\r\n");
    if (!smtpd_params.disable_vrfy)
        EHLO_LINE(st, "250-VRFY\r\n");
    if (smtpd_tls_offer(st))
        EHLO_LINE(st, "250-STARTTLS\r\n");
    const char *mechs = smtpd_sasl_mechs(st);
    if (mechs) {
        smtpd_io_printf(&st->io, "250-AUTH %s\r\n", mechs);
        /* old Outlook / Netscape clients only understand AUTH= */
        if (config_bool("broken_sasl_auth_clients"))
            smtpd_io_printf(&st->io, "250-AUTH=%s\r\n", mechs);
    }
    EHLO_LINE(st, "250-ENHANCEDSTATUSCODES\r\n");
    EHLO_LINE(st, "250-8BITMIME\r\n");
    EHLO_LINE(st, "250-DSN\r\n");
    EHLO_LINE(st, "250-SMTPUTF8\r\n");
    smtpd_reply(st, "250 CHUNKING");
}

/* Parse "<path> [params]" into addr and params.  utf8_seen is set when the
 * address needed 8-bit bytes.  Returns 0, or -1 after replying. */
static int parse_path_and_params(struct smtpd_state *st, const char *path, int flags,
                                 const char *bad_syntax_reply, strbuf *addr,
                                 struct smtp_params *params, int *utf8_seen)
{
    strbuf err;
    long used;

    strbuf_init(&err);
    *utf8_seen = 0;
    /* Postfix's default: "MAIL FROM:user@domain" without <> is tolerated. */
    if (!smtpd_params.strict_rfc821_envelopes)
        flags |= ADDR_ALLOW_BARE;
    used = addr_parse_path(path, strlen(path), flags, addr, &err);
    if (used < 0 && st->esmtp) {
        /* 8-bit addresses are legal only in an SMTPUTF8 transaction; find
         * out whether that is what failed, the caller decides. */
        strbuf_reset(&err);
        used = addr_parse_path(path, strlen(path), flags | ADDR_UTF8, addr, &err);
        if (used >= 0)
            *utf8_seen = 1;
    }
    const char *rest = used < 0 ? path : path + used;
    if (used < 0 || (*rest != '\0' && *rest != ' ')) {
        /* Postfix's line, which fail2ban-style filters look for */
        log_warning("Illegal address syntax from %s in %s command: %s", st->namaddr,
                    st->where, path);
        smtpd_reply(st, "%s", bad_syntax_reply);
        strbuf_release(&err);
        return -1;
    }
    strbuf_reset(&err);
    if (smtp_params_parse(rest, strlen(rest), st->esmtp, params, &err) < 0) {
        smtpd_reply(st, "501 5.5.4 Syntax error in parameters: %s", strbuf_str(&err));
        strbuf_release(&err);
        return -1;
    }
    strbuf_release(&err);
    if (params->n > 0 && !st->esmtp) {
        smtpd_reply(st, "555 5.5.4 Unsupported option: %s", params->list[0].key);
        return -1;
    }
    return 0;
}

/* Postfix's free-space rule at MAIL: the spool (our working directory)
 * must keep queue_minfree free, and room for 1.5 times the declared SIZE. */
static int spool_has_room(unsigned long long declared)
{
    struct statvfs vfs;

    if (statvfs(".", &vfs) < 0)
        return 1;               /* cannot tell: let cleanup find out */
    unsigned long long avail = (unsigned long long)vfs.f_bavail * vfs.f_frsize;
    if (smtpd_params.queue_minfree > 0
        && avail < (unsigned long long)smtpd_params.queue_minfree)
        return 0;
    return declared == 0 || avail - (avail > declared / 2 ? declared / 2 : avail) >= declared;
}

void smtpd_cmd_mail(struct smtpd_state *st, const char *arg)
{
    struct smtp_params params;
    strbuf addr, tmp;
    int utf8_addr;
    const char *path;

    if (smtpd_params.helo_required && st->helo_name == NULL) {
        smtpd_reply(st, "503 5.5.1 Error: send HELO/EHLO first");
        return;
    }
    if (smtpd_tls_required(st)) {
        smtpd_reply(st, "530 5.7.0 Must issue a STARTTLS command first");
        return;
    }
    if (st->sender != NULL) {
        smtpd_reply(st, "503 5.5.1 Error: nested MAIL command");
        return;
    }
    if ((path = smtp_path_arg(arg, "FROM")) == NULL) {
        smtpd_reply(st, "501 5.5.4 Syntax: MAIL FROM:<address>");
        return;
    }
    smtp_params_init(&params);
    strbuf_init(&addr);
    strbuf_init(&tmp);
    if (parse_path_and_params(st, path, ADDR_ALLOW_NULL,
                              "501 5.1.7 Bad sender address syntax",
                              &addr, &params, &utf8_addr) < 0)
        goto out;

    int smtputf8 = 0;
    unsigned long long size = 0;
    char *envid = NULL, *ret = NULL;
    for (size_t i = 0; i < params.n; i++) {
        const char *key = params.list[i].key, *val = params.list[i].value;
        if (strcmp(key, "SIZE") == 0) {
            if (val == NULL || smtp_size_parse(val, &size) < 0) {
                smtpd_reply(st, "501 5.5.4 Bad message size syntax");
                goto bad;
            }
        } else if (strcmp(key, "BODY") == 0) {
            if (val == NULL || (strcasecmp(val, "7BIT") != 0 && strcasecmp(val, "8BITMIME") != 0)) {
                smtpd_reply(st, "501 5.5.4 Unsupported BODY parameter");
                goto bad;
            }
        } else if (strcmp(key, "SMTPUTF8") == 0 && val == NULL) {
            smtputf8 = 1;
        } else if (strcmp(key, "RET") == 0) {
            if (ret != NULL || val == NULL
                || (strcasecmp(val, "FULL") != 0 && strcasecmp(val, "HDRS") != 0)) {
                smtpd_reply(st, "501 5.5.4 Bad RET parameter syntax");
                goto bad;
            }
            ret = xstrdup(val);
            for (char *c = ret; *c; c++)
                *c = (char)(*c >= 'a' && *c <= 'z' ? *c - 32 : *c);
        } else if (strcmp(key, "ENVID") == 0) {
            /* RFC 3461: at most 100 characters, xtext of printable ASCII */
            if (envid != NULL || val == NULL || strlen(val) > 100
                || smtp_xtext_decode(val, strlen(val), &tmp) < 0
                || memchr(tmp.data, '\0', tmp.len) != NULL) {
                smtpd_reply(st, "501 5.5.4 Bad ENVID parameter syntax");
                goto bad;
            }
            envid = xstrdup(strbuf_str(&tmp));
        } else if (strcmp(key, "AUTH") == 0) {
            /* RFC 4954 AUTH=: checked, not trusted */
            if (smtpd_sasl_auth_param(st, val) < 0)
                goto bad;
        } else {
            smtpd_reply(st, "555 5.5.4 Unsupported option: %s", key);
            goto bad;
        }
    }
    if (utf8_addr && !smtputf8) {
        smtpd_reply(st, "553 5.6.7 Must declare SMTPUTF8 to send unicode address");
        goto bad;
    }
    if (smtpd_params.message_size_limit > 0
        && size > (unsigned long long)smtpd_params.message_size_limit) {
        smtpd_reply(st, "552 5.3.4 Message size exceeds fixed limit");
        goto bad;
    }
    if (!spool_has_room(size)) {
        smtpd_reply(st, "452 4.3.1 Insufficient system storage");
        goto bad;
    }
    st->sender = xstrdup(strbuf_str(&addr));
    st->smtputf8 = smtputf8;
    st->declared_size = size;
    st->envid = envid;
    st->ret = ret;
    smtpd_reply(st, "250 2.1.0 Ok");
    goto out;
bad:
    xfree(envid);
    xfree(ret);
out:
    smtp_params_release(&params);
    strbuf_release(&addr);
    strbuf_release(&tmp);
}

void smtpd_cmd_rcpt(struct smtpd_state *st, const char *arg)
{
    struct smtp_params params;
    strbuf addr, reply;
    int utf8_addr;
    const char *path;
    char *notify = NULL, *orcpt = NULL;

    if (st->sender == NULL) {
        smtpd_reply(st, "503 5.5.1 Error: need MAIL command");
        return;
    }
    if ((path = smtp_path_arg(arg, "TO")) == NULL) {
        smtpd_reply(st, "501 5.5.4 Syntax: RCPT TO:<address>");
        return;
    }
    smtp_params_init(&params);
    strbuf_init(&addr);
    strbuf_init(&reply);
    /* RFC 5321 4.5.1: <Postmaster> without a domain must be accepted. */
    if (strncasecmp(path, "<postmaster>", 12) == 0
        && (path[12] == '\0' || path[12] == ' ')) {
        strbuf_set_str(&addr, "postmaster");
        utf8_addr = 0;
        if (smtp_params_parse(path + 12, strlen(path + 12), st->esmtp, &params, &reply) < 0
            || (params.n > 0 && !st->esmtp)) {
            smtpd_reply(st, "501 5.5.4 Syntax error in parameters");
            goto out;
        }
    } else if (parse_path_and_params(st, path, 0, "501 5.1.3 Bad recipient address syntax",
                                     &addr, &params, &utf8_addr) < 0) {
        goto out;
    }
    if (utf8_addr && !st->smtputf8) {
        smtpd_reply(st, "553 5.6.7 Must declare SMTPUTF8 to send unicode address");
        goto out;
    }
    for (size_t i = 0; i < params.n; i++) {
        const char *key = params.list[i].key, *val = params.list[i].value;
        if (strcmp(key, "NOTIFY") == 0) {
            if (notify != NULL || !smtp_notify_valid(val)) {
                smtpd_reply(st, "501 5.5.4 Error: Bad NOTIFY parameter syntax");
                goto out;
            }
            notify = xstrdup(val);
            for (char *c = notify; *c; c++)
                *c = (char)(*c >= 'a' && *c <= 'z' ? *c - 32 : *c);
        } else if (strcmp(key, "ORCPT") == 0) {
            if (orcpt != NULL || !smtp_orcpt_valid(val) || strlen(val) > 500) {
                smtpd_reply(st, "501 5.5.4 Error: Bad ORCPT parameter syntax");
                goto out;
            }
            orcpt = xstrdup(val);
        } else {
            smtpd_reply(st, "555 5.5.4 Unsupported option: %s", key);
            goto out;
        }
    }
    st->rcpt_attempts++;
    if ((long long)st->nrcpt >= smtpd_params.recipient_limit) {
        /* As Postfix: a client that sends its whole list pipelined gets
         * 452 for the excess without being tarpitted or cut off, up to
         * smtpd_recipient_overshoot_limit; beyond that each counts. */
        st->reply_not_error = st->rcpt_overshoot++ < smtpd_params.recipient_overshoot_limit;
        smtpd_reply(st, "452 4.5.3 Error: too many recipients");
        goto out;
    }
    strbuf_reset(&reply);
    if (smtpd_check_rcpt(st, strbuf_str(&addr), &reply) == SMTPD_CHECK_REJECT) {
        smtpd_log_reject(st, "RCPT", strbuf_str(&reply), strbuf_str(&addr));
        smtpd_reply(st, "%s", strbuf_str(&reply));
        goto out;
    }
    /* As Postfix: the queue file (and its id) exists from the first
     * accepted recipient, so rejected attempts log NOQUEUE. */
    if (st->cleanup == NULL && smtpd_cleanup_open(st, &reply) < 0) {
        smtpd_reply(st, "%s", strbuf_str(&reply));
        goto out;
    }
    if (st->nrcpt == st->rcpt_cap) {
        st->rcpt_cap = st->rcpt_cap ? st->rcpt_cap * 2 : 8;
        st->rcpts = xrealloc(st->rcpts, st->rcpt_cap * sizeof(*st->rcpts));
    }
    st->rcpts[st->nrcpt].addr = xstrdup(strbuf_str(&addr));
    st->rcpts[st->nrcpt].notify = notify;
    st->rcpts[st->nrcpt].orcpt = orcpt;
    st->nrcpt++;
    notify = orcpt = NULL;
    smtpd_reply(st, "250 2.1.5 Ok");
out:
    xfree(notify);
    xfree(orcpt);
    smtp_params_release(&params);
    strbuf_release(&addr);
    strbuf_release(&reply);
}

void smtpd_cmd_rset(struct smtpd_state *st, const char *arg)
{
    if (*arg != '\0') {
        smtpd_reply(st, "501 5.5.4 Syntax: RSET");
        return;
    }
    smtpd_reset_transaction(st);
    smtpd_reply(st, "250 2.0.0 Ok");
}

void smtpd_cmd_noop(struct smtpd_state *st, const char *arg)
{
    smtpd_reply(st, "250 2.0.0 Ok");
}

void smtpd_cmd_help(struct smtpd_state *st, const char *arg)
{
    smtpd_reply(st, "214 2.0.0 Commands: HELO EHLO STARTTLS AUTH MAIL RCPT DATA BDAT RSET NOOP VRFY HELP QUIT");
}

void smtpd_cmd_vrfy(struct smtpd_state *st, const char *arg)
{
    strbuf addr, err;

    if (smtpd_params.disable_vrfy) {
        smtpd_reply(st, "502 5.5.1 VRFY command is disabled");
        return;
    }
    if (*arg == '\0') {
        smtpd_reply(st, "501 5.5.4 Syntax: VRFY address");
        return;
    }
    strbuf_init(&addr);
    strbuf_init(&err);
    long used = addr_parse_path(arg, strlen(arg), ADDR_ALLOW_BARE, &addr, &err);
    if (used < 0 || arg[used] != '\0') {
        smtpd_reply(st, "501 5.1.3 Bad recipient address syntax");
    } else {
        strbuf_reset(&err);
        if (smtpd_check_local_recipient(st, strbuf_str(&addr), &err) == SMTPD_CHECK_REJECT)
            smtpd_reply(st, "%s", strbuf_str(&err));
        else
            smtpd_reply(st, "252 2.0.0 %s", strbuf_str(&addr));
    }
    strbuf_release(&addr);
    strbuf_release(&err);
}

void smtpd_cmd_quit(struct smtpd_state *st, const char *arg)
{
    smtpd_reply(st, "221 2.0.0 Bye");
    st->quit = 1;
}
