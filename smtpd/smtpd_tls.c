/*
 * smtpd_tls.c - TLS in smtpd: the server context, STARTTLS (RFC 3207) and
 * implicit TLS (smtpd_tls_wrappermode, RFC 8314).
 *
 * Interface (smtpd.h):
 *   smtpd_tls_init()          pre-jail: read the level and build the server
 *                             context (keys are read here, before the chroot
 *                             and the privilege drop).
 *   smtpd_tls_offer(st)       whether EHLO advertises STARTTLS.
 *   smtpd_tls_required(st)    encrypt level (or wrapper mode) and TLS not
 *                             active yet: MAIL and AUTH get 530 5.7.0.
 *   smtpd_cmd_starttls(st, arg)   the command.
 *   smtpd_tls_wrapper_start(st)   wrapper mode: handshake before the greeting;
 *                             -1 ends the session.
 *   smtpd_tls_end(st)         close_notify and free at session end.
 *   smtpd_tls_received(st, out)   the "(using ...)" comment for Received:,
 *                             then the client certificate comment.
 *   smtpd_tls_ccert_refusal(st)   after a handshake without the trusted
 *                             client certificate smtpd_tls_req_ccert wants:
 *                             the reason ("No client certificate presented",
 *                             "Client certificate not trusted"), else NULL.
 *   smtpd_tls_ccert_fingerprint(st), _pkey_fingerprint(st), _trusted(st)
 *                             the client certificate as the restrictions
 *                             see it (NULL / 0 without one).
 *
 * Contract:
 *  - After "220 2.0.0 Ready to start TLS" every byte the client sent ahead
 *    in plaintext is thrown away (CVE-2011-0411): nothing read before the
 *    handshake is ever executed inside TLS.
 *  - After the handshake the session starts over (RFC 3207 4.2): HELO
 *    name, ESMTP, SASL login and the transaction are forgotten.
 *  - Client certificates (Postfix's semantics): smtpd_tls_ask_ccert asks
 *    for one and accepts any; the log says Anonymous / Untrusted / Trusted
 *    and, with a certificate, "host[addr]: Trusted: subject_CN=..,
 *    issuer=.., fingerprint=.., pkey_fingerprint=..".  smtpd_tls_req_ccert
 *    applies only when TLS is enforced (level encrypt, wrapper mode; else a
 *    warning and it is ignored) and implies asking: without a trusted
 *    certificate the session is logged "NOQUEUE: abort: TLS from
 *    host[addr]: REASON" and its next command (in wrapper mode: at once,
 *    instead of the greeting) gets "421 4.7.1 HOST Error: REASON".
 *  - A certificate that cannot be loaded disables TLS with a warning at
 *    level may; at level encrypt (and in wrapper mode) the service keeps
 *    refusing mail (STARTTLS gets 454 4.7.0, MAIL 530 5.7.0, a wrapper-mode
 *    connection is closed) rather than falling back to plaintext.
 */
#include <string.h>
#include <strings.h>

#include "config.h"
#include "log.h"
#include "mem.h"
#include "smtpd.h"
#include "tls.h"

static tls_server_ctx *server_ctx;
static int tls_level;           /* SMTPD_TLS_NONE / MAY / ENCRYPT */
static int wrappermode;
static int require_ccert;       /* smtpd_tls_req_ccert in force */

static ssize_t tls_transport_read(void *ctx, void *buf, size_t n, int timeout)
{
    return tls_read(ctx, buf, n, timeout);
}

static ssize_t tls_transport_write(void *ctx, const void *buf, size_t n, int timeout)
{
    return tls_write(ctx, buf, n, timeout);
}

static const struct smtpd_io_transport tls_transport = {
    .read = tls_transport_read,
    .write = tls_transport_write,
};

/* The smtpd_tls_security_level value; -1 when unknown. */
int smtpd_tls_parse_level(const char *value)
{
    if (*value == '\0' || strcasecmp(value, "none") == 0)
        return SMTPD_TLS_NONE;
    if (strcasecmp(value, "may") == 0)
        return SMTPD_TLS_MAY;
    if (strcasecmp(value, "encrypt") == 0)
        return SMTPD_TLS_ENCRYPT;
    return -1;
}

/* The server parameters as main.cf (and -o) set them; mandatory selects
 * the smtpd_tls_mandatory_* protocol and cipher settings. */
void smtpd_tls_server_params(struct tls_server_params *p, int mandatory)
{
    memset(p, 0, sizeof(*p));
    p->cert_file = config_str("smtpd_tls_cert_file");
    p->key_file = config_str("smtpd_tls_key_file");
    p->eccert_file = config_str("smtpd_tls_eccert_file");
    p->eckey_file = config_str("smtpd_tls_eckey_file");
    p->chain_files = config_str("smtpd_tls_chain_files");
    p->protocols = config_str(mandatory ? "smtpd_tls_mandatory_protocols" : "smtpd_tls_protocols");
    p->cipher_grade = config_str(mandatory ? "smtpd_tls_mandatory_ciphers" : "smtpd_tls_ciphers");
    p->exclude_ciphers = config_str(mandatory ? "smtpd_tls_mandatory_exclude_ciphers"
                                    : "smtpd_tls_exclude_ciphers");
    const char *list_param = tls_cipherlist_param(p->cipher_grade);
    p->cipherlist = list_param ? config_str(list_param) : "";
    p->sni_maps = config_str("tls_server_sni_maps");
    p->session_timeout = (int)config_time("smtpd_tls_session_cache_timeout");
    /* req_ccert implies asking, where it applies (enforced TLS) */
    p->ask_ccert = config_bool("smtpd_tls_ask_ccert")
        || (mandatory && config_bool("smtpd_tls_req_ccert"));
    p->cafile = config_str("smtpd_tls_CAfile");
    p->capath = config_str("smtpd_tls_CApath");
    p->ccert_verifydepth = (int)config_int("smtpd_tls_ccert_verifydepth");
    p->fingerprint_digest = config_str("smtpd_tls_fingerprint_digest");
}

void smtpd_tls_init(void)
{
    struct tls_server_params p;
    strbuf err, keyfile;

    wrappermode = config_bool("smtpd_tls_wrappermode");
    tls_level = smtpd_tls_parse_level(config_str("smtpd_tls_security_level"));
    if (tls_level < 0) {
        /* Fail safe: an unknown level must not silently mean "no TLS". */
        log_warning("unknown smtpd_tls_security_level \"%s\": using encrypt",
                    config_str("smtpd_tls_security_level"));
        tls_level = SMTPD_TLS_ENCRYPT;
    }
    if (wrappermode)
        tls_level = SMTPD_TLS_ENCRYPT;
    if (config_bool("smtpd_tls_req_ccert")) {
        if (tls_level == SMTPD_TLS_ENCRYPT)
            require_ccert = 1;
        else
            log_warning("smtpd_tls_req_ccert = yes is ignored: it needs enforced TLS "
                        "(smtpd_tls_security_level = encrypt)");
    }
    if (tls_level == SMTPD_TLS_NONE)
        return;
    smtpd_tls_server_params(&p, tls_level == SMTPD_TLS_ENCRYPT);
    strbuf_init(&err);
    strbuf_init(&keyfile);
    /* Shared ticket keys let a client resume with any smtpd process. */
    strbuf_printf(&keyfile, "%s/smtpd_tls_ticket.key", config_str("data_directory"));
    p.ticket_key_file = strbuf_str(&keyfile);
    server_ctx = tls_server_create(&p, &err);
    if (server_ctx == NULL) {
        if (tls_level == SMTPD_TLS_MAY)
            log_warning("TLS disabled: %s", strbuf_str(&err));
        else
            log_warning("TLS is required (%s) but not available: %s; mail is refused "
                        "until this is fixed", wrappermode ? "smtpd_tls_wrappermode"
                        : "smtpd_tls_security_level=encrypt", strbuf_str(&err));
    }
    strbuf_release(&err);
    strbuf_release(&keyfile);
}

int smtpd_tls_offer(const struct smtpd_state *st)
{
    if (st->tls_active || tls_level == SMTPD_TLS_NONE)
        return 0;
    /* At level may a broken setup is simply not advertised; at encrypt
     * the client learns why it cannot send mail. */
    return server_ctx != NULL || tls_level == SMTPD_TLS_ENCRYPT;
}

int smtpd_tls_required(const struct smtpd_state *st)
{
    return tls_level == SMTPD_TLS_ENCRYPT && !st->tls_active;
}

/* Handshake on the client socket; on success switch the stream to TLS. */
static int start_tls(struct smtpd_state *st)
{
    strbuf err;
    strbuf_init(&err);
    tls_conn *c = tls_server_start(server_ctx, st->io.in_fd,
                                   (int)config_time("smtpd_starttls_timeout"), &err);
    if (c == NULL) {
        log_info("SSL_accept error from %s: %s", st->namaddr, strbuf_str(&err));
        strbuf_release(&err);
        return -1;
    }
    strbuf_release(&err);
    st->tls = c;
    st->tls_active = 1;
    smtpd_io_set_transport(&st->io, &tls_transport, c);
    enum tls_trust trust = tls_conn_trust(c);
    if (tls_conn_peer_fingerprint(c) != NULL)
        log_info("%s: %s: subject_CN=%s, issuer=%s, fingerprint=%s, pkey_fingerprint=%s",
                 st->namaddr, tls_trust_name(trust), tls_conn_peer_cn(c),
                 tls_conn_issuer_cn(c), tls_conn_peer_fingerprint(c),
                 tls_conn_peer_pkey_fingerprint(c) ? tls_conn_peer_pkey_fingerprint(c) : "");
    tls_log_established(c, "from", st->namaddr);
    if (require_ccert && trust < TLS_TRUST_TRUSTED) {
        st->ccert_refusal = trust == TLS_TRUST_ANONYMOUS ? "No client certificate presented"
                                                         : "Client certificate not trusted";
        log_info("NOQUEUE: abort: TLS from %s: %s", st->namaddr, st->ccert_refusal);
    }
    return 0;
}

const char *smtpd_tls_ccert_refusal(const struct smtpd_state *st)
{
    return st->ccert_refusal;
}

/* Postfix's permit_tls_clientcerts / permit_tls_all_clientcerts /
 * check_ccert_access need these; NULL without a client certificate. */
const char *smtpd_tls_ccert_fingerprint(const struct smtpd_state *st)
{
    return st->tls ? tls_conn_peer_fingerprint(st->tls) : NULL;
}

const char *smtpd_tls_ccert_pkey_fingerprint(const struct smtpd_state *st)
{
    return st->tls ? tls_conn_peer_pkey_fingerprint(st->tls) : NULL;
}

int smtpd_tls_ccert_trusted(const struct smtpd_state *st)
{
    return st->tls != NULL && tls_conn_trust(st->tls) >= TLS_TRUST_TRUSTED;
}

void smtpd_cmd_starttls(struct smtpd_state *st, const char *arg)
{
    if (*arg != '\0') {
        smtpd_reply(st, "501 5.5.4 Syntax: STARTTLS");
        return;
    }
    if (st->tls_active) {
        smtpd_reply(st, "554 5.5.1 Error: TLS already active");
        return;
    }
    if (tls_level == SMTPD_TLS_NONE || (server_ctx == NULL && tls_level == SMTPD_TLS_MAY)) {
        smtpd_reply(st, "502 5.5.1 Error: command not implemented");
        return;
    }
    if (server_ctx == NULL) {
        smtpd_reply(st, "454 4.7.0 TLS not available due to local problem");
        return;
    }
    if (st->sender != NULL) {
        smtpd_reply(st, "503 5.5.1 Error: MAIL transaction in progress");
        return;
    }
    smtpd_reply(st, "220 2.0.0 Ready to start TLS");
    if (smtpd_io_flush(&st->io) < 0)
        return;
    /* CVE-2011-0411: plaintext pipelined behind STARTTLS is not carried
     * into the TLS session. */
    if (smtpd_io_pending(&st->io) > 0)
        log_info("discarding %zu bytes of plaintext pipelined after STARTTLS from %s",
                 smtpd_io_pending(&st->io), st->namaddr);
    smtpd_io_discard_input(&st->io);
    if (start_tls(st) < 0) {
        st->io.status = SMTPD_IO_ERROR;
        return;
    }
    /* RFC 3207 4.2: forget everything learned from the client. */
    smtpd_reset_transaction(st);
    xfree(st->helo_name);
    st->helo_name = NULL;
    st->esmtp = 0;
    smtpd_sasl_reset(st);
    /* the STARTTLS command itself succeeded */
    st->last_reply_code = 220;
}

int smtpd_tls_wrapper_start(struct smtpd_state *st)
{
    if (!wrappermode)
        return 0;
    if (server_ctx == NULL) {
        log_warning("TLS wrapper mode connection from %s dropped: TLS not available "
                    "due to local problem", st->namaddr);
        return -1;
    }
    return start_tls(st);
}

int smtpd_tls_wrappermode(void)
{
    return wrappermode;
}

void smtpd_tls_end(struct smtpd_state *st)
{
    if (st->tls == NULL)
        return;
    smtpd_io_set_transport(&st->io, NULL, NULL);
    /* a short bound: the client may be gone already */
    tls_conn_free(st->tls, st->io.status == SMTPD_IO_OK ? 2 : 0);
    st->tls = NULL;
}

void smtpd_tls_received(const struct smtpd_state *st, strbuf *out)
{
    if (st->tls == NULL || !config_bool("smtpd_tls_received_header"))
        return;
    strbuf summary;
    strbuf_init(&summary);
    tls_conn_summary(st->tls, &summary);
    /* Postfix folds the long summary before key-exchange */
    const char *kx = strstr(strbuf_str(&summary), " key-exchange ");
    if (kx) {
        strbuf_appendf(out, "\t(using %.*s\n\t %s)\n", (int)(kx - summary.data),
                       summary.data, kx + 1);
    } else {
        strbuf_appendf(out, "\t(using %s)\n", strbuf_str(&summary));
    }
    if (tls_conn_peer_fingerprint(st->tls) != NULL) {
        /* the names come sanitized (printable ASCII); '"' and '(' ')' would
         * still break the comment */
        strbuf cn, issuer;
        strbuf_init(&cn);
        strbuf_init(&issuer);
        strbuf_set_str(&cn, tls_conn_peer_cn(st->tls));
        strbuf_set_str(&issuer, tls_conn_issuer_cn(st->tls));
        for (char *p = cn.data; p && *p; p++)
            if (*p == '"' || *p == '(' || *p == ')' || *p == '\\')
                *p = '?';
        for (char *p = issuer.data; p && *p; p++)
            if (*p == '"' || *p == '(' || *p == ')' || *p == '\\')
                *p = '?';
        strbuf_appendf(out, "\t(Client CN \"%s\", Issuer \"%s\" (%s))\n", strbuf_str(&cn),
                       strbuf_str(&issuer), tls_conn_trust(st->tls) >= TLS_TRUST_TRUSTED
                       ? "verified OK" : "not verified");
        strbuf_release(&cn);
        strbuf_release(&issuer);
    } else if (config_bool("smtpd_tls_ask_ccert") || require_ccert) {
        strbuf_append_str(out, "\t(Client did not present a certificate)\n");
    } else {
        strbuf_append_str(out, "\t(No client certificate requested)\n");
    }
    strbuf_release(&summary);
}
