/*
 * sendmail_smtp.c - `sendmail -bs`: an SMTP conversation on stdin and
 * stdout (as programs that speak SMTP to a pipe expect), each accepted
 * message submitted through postdrop like any other local submission.
 *
 * Commands: HELO, EHLO (PIPELINING, SIZE, 8BITMIME, DSN,
 * ENHANCEDSTATUSCODES), MAIL FROM:<addr> [RET= ENVID= SIZE= BODY=
 * SMTPUTF8], RCPT TO:<addr> [NOTIFY= ORCPT=], DATA, RSET, NOOP, QUIT, HELP;
 * VRFY is disabled; anything else is 502 5.5.2.  Lines end in CRLF or LF;
 * DATA ends at a line holding only "."; leading dots are unstuffed.
 *
 * Contract: "250 2.0.0 Ok: queued as MID" only after postdrop exited 0,
 * MID being the maildrop file's name that postdrop -v reports (as with
 * Postfix's sendmail -bs: the queue id proper is given when pickup hands
 * the file to cleanup); a failed postdrop is "451 4.3.0" with its reason;
 * content over message_size_limit is read to its end and refused with
 * 552 5.3.4.  End of input in DATA queues nothing.  Every 4xx/5xx reply
 * counts as an error; at smtpd_hard_error_limit errors (Postfix's smtpd
 * semantics, default 20) the session ends with "421 4.7.0 HOST Error: too
 * many errors" and exit status 76 (EX_PROTOCOL).  Exit 0 after QUIT or
 * end of input.  Access control does
 * not apply (the user could run sendmail directly); the envelope sender is
 * the one given in MAIL FROM, the uid is logged by pickup.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sysexits.h>

#include "addr.h"
#include "config.h"
#include "mem.h"
#include "sendmail.h"
#include "smtp_parse.h"

static void reply(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Error replies (4xx, 5xx) sent in this session, for smtpd_hard_error_limit. */
static int bs_error_count;

static void reply(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    fputs("\r\n", stdout);
    fflush(stdout);
    if (fmt[0] == '4' || fmt[0] == '5')
        bs_error_count++;
}

static int read_line(char **line, size_t *cap, size_t *len)
{
    ssize_t n = getline(line, cap, stdin);
    if (n < 0)
        return -1;
    *len = (size_t) n;
    if (*len && (*line)[*len - 1] == '\n')
        (*len)--;
    if (*len && (*line)[*len - 1] == '\r')
        (*len)--;
    (*line)[*len] = '\0';
    return 0;
}

struct bs_txn {
    int have_mail;
    struct sm_envelope env;
};

static void txn_reset(struct bs_txn *t, const struct sm_envelope *defaults)
{
    sm_envelope_free_rcpts(&t->env);
    xfree(t->env.sender);
    xfree(t->env.envid);
    xfree(t->env.ret);
    t->env.sender = t->env.envid = t->env.ret = NULL;
    t->env.fullname = defaults->fullname;
    t->env.notify = NULL;
    t->env.extract = 0;
    t->have_mail = 0;
}

static void do_mail(struct bs_txn *t, const char *arg)
{
    if (t->have_mail) {
        reply("503 5.5.1 Error: nested MAIL command");
        return;
    }
    const char *path = smtp_path_arg(arg, "FROM");
    if (!path) {
        reply("501 5.5.4 Syntax: MAIL FROM:<address>");
        return;
    }
    strbuf addr, err;
    strbuf_init(&addr);
    strbuf_init(&err);
    long n = addr_parse_path(path, strlen(path), ADDR_ALLOW_NULL | ADDR_UTF8, &addr, &err);
    if (n < 0) {
        reply("501 5.1.7 Bad sender address syntax");
        goto out;
    }
    struct smtp_params params;
    smtp_params_init(&params);
    const char *rest = path + n;
    if (smtp_params_parse(rest, strlen(rest), 1, &params, &err) < 0) {
        reply("501 5.5.4 Bad parameter syntax");
        smtp_params_release(&params);
        goto out;
    }
    const struct smtp_param *p;
    char *ret = NULL, *envid = NULL;
    int bad = 0;
    if ((p = smtp_params_find(&params, "RET")) != NULL) {
        if (p->value && (strcasecmp(p->value, "FULL") == 0 || strcasecmp(p->value, "HDRS") == 0)) {
            ret = xstrdup(p->value);
            for (char *c = ret; *c; c++)
                *c = (char) (*c & ~0x20);
        } else {
            bad = 1;
        }
    }
    if ((p = smtp_params_find(&params, "ENVID")) != NULL) {
        strbuf dec;
        strbuf_init(&dec);
        if (p->value && smtp_xtext_decode(p->value, strlen(p->value), &dec) == 0
            && dec.len > 0 && dec.len <= 100) {
            envid = strbuf_detach(&dec, NULL);
            for (char *c = envid; *c; c++)
                if (*c < 33 || *c > 126)
                    bad = 1;
        } else {
            bad = 1;
            strbuf_release(&dec);
        }
    }
    for (size_t i = 0; i < params.n; i++) {
        const char *k = params.list[i].key;
        if (strcmp(k, "RET") && strcmp(k, "ENVID") && strcmp(k, "SIZE")
            && strcmp(k, "BODY") && strcmp(k, "SMTPUTF8"))
            bad = 2;
    }
    smtp_params_release(&params);
    if (bad) {
        reply(bad == 2 ? "555 5.5.4 Unsupported option" : "501 5.5.4 Bad parameter value");
        xfree(ret);
        xfree(envid);
        goto out;
    }
    t->env.sender = xstrdup(strbuf_str(&addr));
    t->env.ret = ret;
    t->env.envid = envid;
    t->have_mail = 1;
    reply("250 2.1.0 Ok");
out:
    strbuf_release(&addr);
    strbuf_release(&err);
}

static void do_rcpt(struct bs_txn *t, const char *arg)
{
    if (!t->have_mail) {
        reply("503 5.5.1 Error: need MAIL command");
        return;
    }
    const char *path = smtp_path_arg(arg, "TO");
    if (!path) {
        reply("501 5.5.4 Syntax: RCPT TO:<address>");
        return;
    }
    strbuf addr, err;
    strbuf_init(&addr);
    strbuf_init(&err);
    long n = addr_parse_path(path, strlen(path), ADDR_UTF8, &addr, &err);
    if (n < 0) {
        reply("501 5.1.3 Bad recipient address syntax");
        goto out;
    }
    struct smtp_params params;
    smtp_params_init(&params);
    const char *rest = path + n;
    const char *notify = NULL, *orcpt = NULL;
    int bad = smtp_params_parse(rest, strlen(rest), 1, &params, &err) < 0;
    for (size_t i = 0; !bad && i < params.n; i++) {
        const char *k = params.list[i].key, *v = params.list[i].value;
        if (strcmp(k, "NOTIFY") == 0 && v && smtp_notify_valid(v))
            notify = v;
        else if (strcmp(k, "ORCPT") == 0 && v && smtp_orcpt_valid(v))
            orcpt = v;
        else
            bad = 1;
    }
    if (bad)
        reply("555 5.5.4 Unsupported option or bad parameter");
    else {
        sm_envelope_add_rcpt(&t->env, addr.data, notify, orcpt);
        reply("250 2.1.5 Ok");
    }
    smtp_params_release(&params);
out:
    strbuf_release(&addr);
    strbuf_release(&err);
}

/* DATA: 0 to continue the session, -1 at end of input. */
static int do_data(struct bs_txn *t, char **line, size_t *cap)
{
    if (!t->have_mail) {
        reply("503 5.5.1 Error: need MAIL command");
        return 0;
    }
    if (t->env.nrcpt == 0) {
        reply("503 5.5.1 Error: need RCPT command");
        return 0;
    }
    struct sm_postdrop pd;
    strbuf err;
    strbuf_init(&err);
    int status, too_big = 0, eof = 0;
    long long limit = config_size("message_size_limit");
    unsigned long long size = 0;
    if (sm_postdrop_open(&pd, &t->env, &err) < 0) {
        reply("451 4.3.0 Error: %s", strbuf_str(&err));
        strbuf_release(&err);
        return 0;
    }
    reply("354 End data with <CR><LF>.<CR><LF>");
    size_t len;
    for (;;) {
        if (read_line(line, cap, &len) < 0) {
            eof = 1;
            break;
        }
        const char *l = *line;
        if (len == 1 && l[0] == '.')
            break;
        if (l[0] == '.') {
            l++;
            len--;
        }
        size += len + 2;
        if (limit > 0 && size > (unsigned long long) limit)
            too_big = 1;
        if (!too_big)
            sm_postdrop_line(&pd, l, len);
    }
    if (eof || too_big) {
        sm_postdrop_close(&pd, 0, &err, &status);
        if (too_big && !eof)
            reply("552 5.3.4 Message size exceeds fixed limit");
    } else if (sm_postdrop_close(&pd, 1, &err, &status) < 0) {
        reply("451 4.3.0 Error: %s", strbuf_str(&err));
    } else if (pd.queued_as[0]) {
        reply("250 2.0.0 Ok: queued as %s", pd.queued_as);
    } else {
        reply("250 2.0.0 Ok: queued");
    }
    strbuf_release(&err);
    return eof ? -1 : 0;
}

int sm_smtp_session(struct sm_envelope *defaults)
{
    const char *host = config_str("myhostname");
    struct bs_txn t;
    memset(&t, 0, sizeof(t));
    txn_reset(&t, defaults);
    struct smtp_cmd cmd;
    smtp_cmd_init(&cmd);
    char *line = NULL;
    size_t cap = 0, len;

    long long hard_limit = config_int("smtpd_hard_error_limit");
    int rc = 0;
    bs_error_count = 0;
    reply("220 %s ESMTP %s", host, config_str("mail_name"));
    for (;;) {
        /* Checked before reading on, as smtpd does: the client hears why. */
        if (hard_limit > 0 && bs_error_count >= hard_limit) {
            printf("421 4.7.0 %s Error: too many errors\r\n", host);
            fflush(stdout);
            rc = EX_PROTOCOL;
            break;
        }
        if (read_line(&line, &cap, &len) < 0)
            break;
        if (smtp_cmd_split(line, len, &cmd) < 0) {
            reply("500 5.5.2 Error: bad syntax");
            continue;
        }
        const char *verb = strbuf_str(&cmd.verb), *arg = strbuf_str(&cmd.arg);
        if (strcmp(verb, "HELO") == 0 || strcmp(verb, "EHLO") == 0) {
            if (cmd.arg.len == 0) {
                reply("501 5.5.4 Syntax: %s hostname", verb);
            } else if (verb[0] == 'H') {
                txn_reset(&t, defaults);
                reply("250 %s", host);
            } else {
                txn_reset(&t, defaults);
                printf("250-%s\r\n250-PIPELINING\r\n250-SIZE %lld\r\n250-8BITMIME\r\n"
                       "250-DSN\r\n", host, config_size("message_size_limit"));
                reply("250 ENHANCEDSTATUSCODES");
            }
        } else if (strcmp(verb, "MAIL") == 0) {
            do_mail(&t, arg);
        } else if (strcmp(verb, "RCPT") == 0) {
            do_rcpt(&t, arg);
        } else if (strcmp(verb, "DATA") == 0) {
            int data_rc = do_data(&t, &line, &cap);
            txn_reset(&t, defaults);
            if (data_rc < 0)
                break;
        } else if (strcmp(verb, "RSET") == 0) {
            txn_reset(&t, defaults);
            reply("250 2.0.0 Ok");
        } else if (strcmp(verb, "NOOP") == 0) {
            reply("250 2.0.0 Ok");
        } else if (strcmp(verb, "VRFY") == 0) {
            reply("502 5.5.1 VRFY command is disabled");
        } else if (strcmp(verb, "HELP") == 0) {
            reply("214 2.0.0 See RFC 5321");
        } else if (strcmp(verb, "QUIT") == 0) {
            reply("221 2.0.0 Bye");
            break;
        } else {
            reply("502 5.5.2 Error: command not recognized");
        }
    }
    txn_reset(&t, defaults);
    smtp_cmd_release(&cmd);
    free(line);
    return rc;
}
