/*
 * smtpd_sasl.c - SMTP AUTH (RFC 4954) with Cyrus SASL 2.
 *
 * Interface (smtpd.h):
 *   smtpd_sasl_init()        pre-jail: sasl_server_init() with the
 *                            application name smtpd_sasl_path ("smtpd":
 *                            Cyrus reads smtpd.conf from
 *                            cyrus_sasl_config_path, else its default
 *                            path); plugins are loaded here, outside the
 *                            chroot.
 *   smtpd_sasl_mechs(st)     the mechanism list for "250-AUTH", or NULL
 *                            when AUTH is not offered in this state.
 *   smtpd_cmd_auth(st, arg)  the AUTH conversation.
 *   smtpd_sasl_reset(st)     forget the login and the SASL connection (at
 *                            STARTTLS and at session end).
 *   smtpd_sasl_received(st, out)  "(Authenticated sender: NAME)" for
 *                            Received: when smtpd_sasl_authenticated_header.
 *   smtpd_sasl_auth_param(st, value, reply)   MAIL's AUTH= parameter.
 *
 * Contract (replies as Postfix and RFC 4954):
 *   235 2.7.0 Authentication successful
 *   535 5.7.8 Error: authentication failed: REASON   (after a delay that
 *       grows with each failure of the session: 1s, 2s, ... at most 5s)
 *   538 5.7.11 Encryption required for requested authentication mechanism
 *       (smtpd_tls_auth_only = yes and no TLS yet); 530 5.7.0 Must issue
 *       a STARTTLS command first (smtpd_tls_security_level = encrypt)
 *   503 5.5.1 for AUTH when disabled, before EHLO, a second AUTH, or AUTH
 *       inside a mail transaction; 504 5.5.4 unknown mechanism; 501 5.5.2
 *       undecodable base64; 501 5.7.0 "*" cancels.
 *   454 4.7.0 Temporary authentication failure: generic failure   when
 *       the password check itself failed (saslauthd unreachable: Cyrus
 *       SASL_FAIL; also SASL_TRYAGAIN, SASL_UNAVAIL, SASL_NOMEM); the
 *       session goes on.
 * Failures are logged as Postfix does ("warning: host[addr]: SASL PLAIN
 * authentication failed: ...") so fail2ban filters work, and so are
 * Cyrus' own messages ("warning: SASL authentication failure: cannot
 * connect to saslauthd server: ...", "warning: SASL authentication
 * problem: ..."); the login shows
 * in the "QID: client=host[addr], sasl_method=PLAIN, sasl_username=NAME"
 * line.  Passwords are never logged.
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <sasl/sasl.h>
#include <sasl/saslutil.h>

#include "config.h"
#include "log.h"
#include "mem.h"
#include "smtp_parse.h"
#include "smtpd.h"

static int sasl_enabled;        /* smtpd_sasl_auth_enable and init worked */
static char *sasl_conf_path;

/* Cyrus' own messages, worded as Postfix logs them.  FAIL carries why a
 * login failed beyond what sasl_errdetail() keeps (it is overwritten by
 * the mechanism's "Password verification failed"): "cannot connect to
 * saslauthd server: No such file or directory" is how an operator learns
 * that saslauthd is down or outside smtpd's chroot.  TRACE and PASS are
 * never logged: PASS messages may contain passwords. */
static int sasl_log_cb(void *context, int level, const char *message)
{
    switch (level) {
    case SASL_LOG_ERR:
    case SASL_LOG_WARN:
        log_warning("SASL authentication problem: %s", message);
        break;
    case SASL_LOG_FAIL:
        log_warning("SASL authentication failure: %s", message);
        break;
    case SASL_LOG_NOTE:
    case SASL_LOG_DEBUG:
        log_debug("SASL: %s", message);
        break;
    default:
        break;
    }
    return SASL_OK;
}

static int sasl_confpath_cb(void *context, const char **path)
{
    *path = sasl_conf_path;
    return SASL_OK;
}

void smtpd_sasl_init(void)
{
    static sasl_callback_t callbacks[] = {
        { SASL_CB_LOG, (int (*)(void))(void (*)(void))sasl_log_cb, NULL },
        { SASL_CB_GETCONFPATH, (int (*)(void))(void (*)(void))sasl_confpath_cb, NULL },
        { SASL_CB_LIST_END, NULL, NULL },
    };

    if (!config_bool("smtpd_sasl_auth_enable"))
        return;
    if (strcasecmp(config_str("smtpd_sasl_type"), "cyrus") != 0) {
        log_warning("smtpd_sasl_type %s is not supported (only cyrus): AUTH disabled",
                    config_str("smtpd_sasl_type"));
        return;
    }
    const char *path = config_str("cyrus_sasl_config_path");
    if (*path == '\0')
        callbacks[1].id = SASL_CB_LIST_END;     /* Cyrus' default path */
    else
        sasl_conf_path = xstrdup(path);
    int rc = sasl_server_init(callbacks, config_str("smtpd_sasl_path"));
    if (rc != SASL_OK) {
        log_warning("SASL per-process initialization failed: %s: AUTH disabled",
                    sasl_errstring(rc, NULL, NULL));
        return;
    }
    sasl_enabled = 1;
}

/* Postfix's security option words to Cyrus flags. */
static unsigned sasl_sec_flags(const char *options)
{
    unsigned flags = 0;
    int n;
    char **words = config_list(options, &n);
    for (int i = 0; i < n; i++) {
        const char *w = words[i];
        if (strcasecmp(w, "noplaintext") == 0)
            flags |= SASL_SEC_NOPLAINTEXT;
        else if (strcasecmp(w, "noactive") == 0)
            flags |= SASL_SEC_NOACTIVE;
        else if (strcasecmp(w, "nodictionary") == 0)
            flags |= SASL_SEC_NODICTIONARY;
        else if (strcasecmp(w, "noanonymous") == 0)
            flags |= SASL_SEC_NOANONYMOUS;
        else if (strcasecmp(w, "forward_secrecy") == 0)
            flags |= SASL_SEC_FORWARD_SECRECY;
        else if (strcasecmp(w, "mutual_auth") == 0)
            flags |= SASL_SEC_MUTUAL_AUTH;
        else
            log_warning("unknown SASL security option \"%s\" ignored", w);
    }
    config_list_free(words);
    return flags;
}

/* The SASL connection of this session, created on first use. */
static sasl_conn_t *conn_get(struct smtpd_state *st)
{
    if (st->sasl_conn != NULL)
        return st->sasl_conn;
    sasl_conn_t *conn = NULL;
    const char *realm = config_str("smtpd_sasl_local_domain");
    int rc = sasl_server_new(config_str("smtpd_sasl_service"), smtpd_params.myhostname,
                             *realm ? realm : NULL, NULL, NULL, NULL, 0, &conn);
    if (rc != SASL_OK) {
        log_warning("SASL per-connection initialization failed: %s",
                    sasl_errstring(rc, NULL, NULL));
        return NULL;
    }
    sasl_security_properties_t props;
    memset(&props, 0, sizeof(props));
    props.max_ssf = 256;
    props.maxbufsize = 0;       /* no SASL security layer: TLS does that */
    props.security_flags = sasl_sec_flags(config_str(st->tls_active
        ? "smtpd_sasl_tls_security_options" : "smtpd_sasl_security_options"));
    sasl_setprop(conn, SASL_SEC_PROPS, &props);
    if (st->tls_active) {
        sasl_ssf_t ssf = (sasl_ssf_t)tls_conn_cipher_bits(st->tls, NULL);
        sasl_setprop(conn, SASL_SSF_EXTERNAL, &ssf);
    }
    st->sasl_conn = conn;
    return conn;
}

void smtpd_sasl_reset(struct smtpd_state *st)
{
    if (st->sasl_conn != NULL) {
        sasl_conn_t *conn = st->sasl_conn;
        sasl_dispose(&conn);
        st->sasl_conn = NULL;
    }
    xfree(st->sasl_username);
    st->sasl_username = NULL;
    xfree(st->sasl_method);
    st->sasl_method = NULL;
}

/* Why AUTH cannot be used now, as a reply; NULL when it can. */
static const char *auth_refusal(const struct smtpd_state *st)
{
    if (!sasl_enabled)
        return "503 5.5.1 Error: authentication not enabled";
    if (smtpd_tls_required(st))
        return "530 5.7.0 Must issue a STARTTLS command first";
    if (!st->tls_active && config_bool("smtpd_tls_auth_only"))
        return "538 5.7.11 Encryption required for requested authentication mechanism";
    return NULL;
}

const char *smtpd_sasl_mechs(struct smtpd_state *st)
{
    const char *list = NULL;
    unsigned len;
    int count;

    if (auth_refusal(st) != NULL)
        return NULL;
    sasl_conn_t *conn = conn_get(st);
    if (conn == NULL
        || sasl_listmech(conn, NULL, "", " ", "", &list, &len, &count) != SASL_OK
        || count == 0)
        return NULL;
    return list;
}

int smtpd_sasl_offered(void)
{
    return sasl_enabled;
}

/* Send "334 base64(data)" and read the client's answer into out (decoded).
 * Returns 1 answer, 0 cancelled ("*"), -1 after replying or I/O failure. */
static int challenge(struct smtpd_state *st, const char *data, unsigned len, strbuf *out)
{
    strbuf line;
    int too_long, bare_lf;
    size_t limit = 12288;
    unsigned cap = len * 4 / 3 + 8, used = 0;
    char *enc = xmalloc(cap);

    if (sasl_encode64(data ? data : "", len, enc, cap, &used) != SASL_OK) {
        xfree(enc);
        smtpd_reply(st, "454 4.7.0 Temporary authentication failure: internal error");
        return -1;
    }
    smtpd_io_printf(&st->io, "334 %.*s\r\n", (int)used, enc);
    xfree(enc);
    strbuf_init(&line);
    if (smtpd_io_get_line(&st->io, &line, limit, &too_long, &bare_lf) <= 0) {
        strbuf_release(&line);
        return -1;
    }
    if (too_long) {
        strbuf_release(&line);
        smtpd_reply(st, "500 5.5.6 Authentication Error: line too long");
        return -1;
    }
    if (strcmp(strbuf_str(&line), "*") == 0) {
        strbuf_release(&line);
        return 0;
    }
    int rc = smtpd_sasl_decode(st, strbuf_str(&line), out);
    strbuf_release(&line);
    return rc < 0 ? -1 : 1;
}

int smtpd_sasl_decode(struct smtpd_state *st, const char *text, strbuf *out)
{
    size_t tlen = strlen(text);
    unsigned cap = (unsigned)(tlen / 4 * 3 + 4), used = 0;

    strbuf_reset(out);
    strbuf_reserve(out, cap);
    if (tlen > 0 && sasl_decode64(text, (unsigned)tlen, out->data, cap, &used) != SASL_OK) {
        smtpd_reply(st, "501 5.5.2 Cannot decode response");
        return -1;
    }
    out->len = used;
    out->data[used] = '\0';
    return 0;
}

static void auth_failed(struct smtpd_state *st, const char *mech, int rc)
{
    sasl_conn_t *conn = st->sasl_conn;
    const char *detail = conn ? sasl_errdetail(conn) : sasl_errstring(rc, NULL, NULL);
    const char *reason = rc == SASL_NOUSER || rc == SASL_BADAUTH || rc == SASL_NOAUTHZ
        ? "authentication failure" : sasl_errstring(rc, NULL, NULL);

    log_warning("%s: SASL %s authentication failed: %s", st->namaddr, mech,
                detail ? detail : reason);
    /* Slow down password guessing: a growing delay per failure. */
    st->auth_failures++;
    smtpd_io_flush(&st->io);
    sleep((unsigned)(st->auth_failures < 5 ? st->auth_failures : 5));
    if (rc == SASL_TRYAGAIN || rc == SASL_UNAVAIL || rc == SASL_FAIL || rc == SASL_NOMEM)
        smtpd_reply(st, "454 4.7.0 Temporary authentication failure: %s", reason);
    else
        smtpd_reply(st, "535 5.7.8 Error: authentication failed: %s", reason);
    /* A new conversation needs a fresh connection state. */
    smtpd_sasl_reset(st);
}

void smtpd_cmd_auth(struct smtpd_state *st, const char *arg)
{
    const char *refusal = auth_refusal(st);
    char mech[64];
    strbuf in;

    if (refusal) {
        smtpd_reply(st, "%s", refusal);
        return;
    }
    if (!st->esmtp) {
        smtpd_reply(st, "503 5.5.1 Error: send EHLO first");
        return;
    }
    if (st->sasl_username) {
        smtpd_reply(st, "503 5.5.1 Error: already authenticated");
        return;
    }
    if (st->sender) {
        smtpd_reply(st, "503 5.5.1 Error: MAIL transaction in progress");
        return;
    }
    size_t mlen = strcspn(arg, " ");
    if (mlen == 0 || mlen >= sizeof(mech)) {
        smtpd_reply(st, "501 5.5.4 Syntax: AUTH mechanism");
        return;
    }
    memcpy(mech, arg, mlen);
    mech[mlen] = '\0';
    for (char *c = mech; *c; c++)
        if (*c >= 'a' && *c <= 'z')
            *c = (char)(*c - 32);
    const char *initial = arg[mlen] == ' ' ? arg + mlen + 1 : NULL;
    if (initial && (*initial == '\0' || strchr(initial, ' '))) {
        smtpd_reply(st, "501 5.5.4 Syntax: AUTH mechanism [initial-response]");
        return;
    }
    sasl_conn_t *conn = conn_get(st);
    if (conn == NULL) {
        smtpd_reply(st, "454 4.7.0 Temporary authentication failure: internal error");
        return;
    }
    /* Only what we advertise (sasl_server_start would accept others). */
    const char *list = smtpd_sasl_mechs(st);
    int offered = 0;
    if (list) {
        int n;
        char **words = config_list(list, &n);
        for (int i = 0; i < n; i++)
            if (strcasecmp(words[i], mech) == 0)
                offered = 1;
        config_list_free(words);
    }
    if (!offered) {
        smtpd_reply(st, "504 5.5.4 Unsupported authentication mechanism");
        return;
    }
    strbuf_init(&in);
    int have_initial = 0;
    if (initial) {
        /* "=" is an empty initial response (RFC 4954 4) */
        if (strcmp(initial, "=") != 0 && smtpd_sasl_decode(st, initial, &in) < 0)
            goto out;
        have_initial = 1;
    }
    const char *serverout = NULL;
    unsigned outlen = 0;
    int rc = sasl_server_start(conn, mech, have_initial ? strbuf_str(&in) : NULL,
                               have_initial ? (unsigned)in.len : 0, &serverout, &outlen);
    while (rc == SASL_CONTINUE) {
        int got = challenge(st, serverout, outlen, &in);
        if (got < 0) {
            /* I/O failure, or a reply was sent: abandon this attempt */
            smtpd_sasl_reset(st);
            goto out;
        }
        if (got == 0) {
            smtpd_sasl_reset(st);
            smtpd_reply(st, "501 5.7.0 Authentication aborted");
            goto out;
        }
        rc = sasl_server_step(conn, strbuf_str(&in), (unsigned)in.len, &serverout, &outlen);
    }
    if (rc != SASL_OK) {
        auth_failed(st, mech, rc);
        goto out;
    }
    const void *user = NULL;
    if (sasl_getprop(conn, SASL_USERNAME, &user) != SASL_OK || user == NULL) {
        auth_failed(st, mech, SASL_FAIL);
        goto out;
    }
    st->sasl_username = xstrdup(user);
    st->sasl_method = xstrdup(mech);
    smtpd_reply(st, "235 2.7.0 Authentication successful");
out:
    /* the password must not linger in memory */
    if (in.data)
        memset(in.data, 0, in.len);
    strbuf_release(&in);
}

void smtpd_sasl_received(const struct smtpd_state *st, strbuf *out)
{
    if (st->sasl_username && config_bool("smtpd_sasl_authenticated_header"))
        strbuf_appendf(out, "\t(Authenticated sender: %s)\n", st->sasl_username);
}

int smtpd_sasl_auth_param(struct smtpd_state *st, const char *value)
{
    strbuf decoded;
    int ok;

    if (!sasl_enabled) {
        smtpd_reply(st, "503 5.5.4 Error: authentication not enabled");
        return -1;
    }
    /* RFC 4954 5: xtext of an address or "<>"; we record nothing from it
     * (the login, not the client's claim, is what counts), but it must
     * be well-formed. */
    strbuf_init(&decoded);
    ok = value != NULL && strlen(value) <= 500
        && smtp_xtext_decode(value, strlen(value), &decoded) == 0
        && memchr(decoded.data, '\0', decoded.len) == NULL;
    strbuf_release(&decoded);
    if (!ok) {
        smtpd_reply(st, "501 5.5.4 Bad AUTH parameter value");
        return -1;
    }
    return 0;
}
