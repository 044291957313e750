/*
 * smtp_tls.c - outbound STARTTLS (common/tls.h) and SASL client AUTH
 * (Cyrus libsasl2) for one session.
 *
 * Interface: smtp_tls_init() in pre_jail (CA files, password and policy
 * tables and SASL plugins are loaded before the chroot);
 * smtp_tls_session_start() and smtp_sasl_session_auth() after EHLO
 * (smtp_tls.h).
 *
 * TLS policy: smtp_tls_security_level, overridden per destination by
 * smtp_tls_policy_maps (keys: the nexthop as given, e.g.
 * "[relay.example]:587"; for a domain nexthop the domain, then ".parent"
 * domains; values "LEVEL [match=NAMES] [protocols=...] [ciphers=...]"):
 *   none     never STARTTLS
 *   may      STARTTLS when offered; a failed handshake is retried once in
 *            plaintext
 *   encrypt  STARTTLS required (4.7.4 when not offered), any certificate
 *   verify   encrypt + certificate chain verified against smtp_tls_CAfile /
 *            smtp_tls_CApath and a name in smtp_tls_verify_cert_match
 *            (hostname = the server's name; nexthop; dot-nexthop)
 *   secure   the same with smtp_tls_secure_cert_match (nexthop,
 *            dot-nexthop: names that do not come from DNS)
 * Failures are soft (4.7.x): the next server is tried, then the mail is
 * deferred.  With smtp_tls_loglevel >= 1 every handshake is logged as
 * "Trusted|Untrusted|Anonymous|Verified TLS connection established to
 * host[addr]:port: TLSv1.3 with cipher ...".
 *
 * AUTH: with smtp_sasl_auth_enable, a "user:password" from
 * smtp_sasl_password_maps (looked up by the server's host name, then by
 * the nexthop as given) and a server that offers AUTH, the agent
 * authenticates with Cyrus SASL (mechanisms the server offers, filtered
 * by smtp_sasl_mechanism_filter, restricted by
 * smtp_sasl_security_options without TLS and
 * smtp_sasl_tls_security_options inside TLS).  No SASL security layer is
 * negotiated.  A refused AUTH is a soft failure ("SASL authentication
 * failed; server H[A] said: 535 ...").
 */
#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <sasl/sasl.h>
#include <sasl/saslutil.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "config.h"
#include "log.h"
#include "maps.h"
#include "mem.h"
#include "smtp_reply.h"
#include "smtp_tls.h"
#include "tls.h"

static tls_client_ctx *ctx_opportunistic;   /* smtp_tls_protocols / _ciphers */
static tls_client_ctx *ctx_mandatory;       /* smtp_tls_mandatory_* */
static maps *policy_maps;
static maps *password_maps;
static int sasl_ready;

enum tls_level { LEVEL_NONE, LEVEL_MAY, LEVEL_ENCRYPT, LEVEL_VERIFY, LEVEL_SECURE };

static int parse_level(const char *s, enum tls_level *out)
{
    static const struct { const char *name; enum tls_level level; } names[] = {
        { "none", LEVEL_NONE }, { "may", LEVEL_MAY }, { "encrypt", LEVEL_ENCRYPT },
        { "verify", LEVEL_VERIFY }, { "secure", LEVEL_SECURE }, { "", LEVEL_NONE },
    };
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (strcasecmp(s, names[i].name) == 0) {
            *out = names[i].level;
            return 0;
        }
    return -1;
}

static tls_client_ctx *make_ctx(const char *protocols, const char *grade,
                                const char *exclude)
{
    struct tls_client_params p;
    memset(&p, 0, sizeof(p));
    p.cafile = config_str("smtp_tls_CAfile");
    p.capath = config_str("smtp_tls_CApath");
    p.cert_file = config_str("smtp_tls_cert_file");
    p.key_file = config_str("smtp_tls_key_file");
    p.protocols = config_str(protocols);
    p.cipher_grade = config_str(grade);
    p.exclude_ciphers = config_str(exclude);
    const char *listparam = tls_cipherlist_param(p.cipher_grade);
    p.cipherlist = listparam ? config_str(listparam) : "";
    strbuf err;
    strbuf_init(&err);
    tls_client_ctx *c = tls_client_create(&p, &err);
    if (!c)
        log_warning("TLS client (%s, %s): %s -- outbound TLS disabled", protocols, grade,
                    strbuf_str(&err));
    strbuf_release(&err);
    return c;
}

void smtp_tls_init(void)
{
    enum tls_level level;
    if (parse_level(config_str("smtp_tls_security_level"), &level) < 0)
        log_fatal("smtp_tls_security_level: unknown level \"%s\"",
                  config_str("smtp_tls_security_level"));
    if (level != LEVEL_NONE || *config_str("smtp_tls_policy_maps")) {
        ctx_opportunistic = make_ctx("smtp_tls_protocols", "smtp_tls_ciphers",
                                     "smtp_tls_exclude_ciphers");
        ctx_mandatory = make_ctx("smtp_tls_mandatory_protocols", "smtp_tls_mandatory_ciphers",
                                 "smtp_tls_mandatory_exclude_ciphers");
    }
    policy_maps = maps_open_param("smtp_tls_policy_maps", log_warning);
    if (config_bool("smtp_sasl_auth_enable")) {
        password_maps = maps_open_param("smtp_sasl_password_maps", log_warning);
        int rc = sasl_client_init(NULL);
        if (rc != SASL_OK)
            log_warning("SASL client initialization failed: %s", sasl_errstring(rc, NULL, NULL));
        else
            sasl_ready = 1;
    }
}

/* ---- TLS transport for smtp_io --------------------------------------- */

static ssize_t tls_io_read(struct smtp_io *io, void *buf, size_t len)
{
    ssize_t n = tls_read(io->ctx, buf, len, io->op_timeout);
    if (n == -2) {
        io->failed = SMTP_IO_TIMEOUT;
        errno = ETIMEDOUT;
        return -1;
    }
    if (n < 0)
        errno = EPIPE;
    return n;
}

static ssize_t tls_io_write(struct smtp_io *io, const void *buf, size_t len)
{
    ssize_t n = tls_write(io->ctx, buf, len, io->op_timeout);
    if (n == -2) {
        io->failed = SMTP_IO_TIMEOUT;
        errno = ETIMEDOUT;
        return -1;
    }
    if (n <= 0) {
        errno = EPIPE;
        return -1;
    }
    return n;
}

static void tls_io_close(struct smtp_io *io)
{
    if (io->ctx)
        tls_conn_free(io->ctx, 1);
    io->ctx = NULL;
}

static const struct smtp_io_ops tls_ops = { tls_io_read, tls_io_write, tls_io_close };

/* ---- policy ------------------------------------------------------------ */

struct tls_policy {
    enum tls_level level;
    strbuf match;               /* names for verify/secure, ':' separated */
};

/* The nexthop's domain: "[x]:25" -> x, "example.com:25" -> example.com. */
static void nexthop_domain(const char *nexthop, strbuf *out, int *bracketed)
{
    const char *p = nexthop;
    if (strncmp(p, "inet:", 5) == 0)
        p += 5;
    *bracketed = *p == '[';
    if (*bracketed) {
        const char *e = strchr(p, ']');
        strbuf_set(out, p + 1, e ? (size_t)(e - p - 1) : strlen(p + 1));
    } else {
        const char *c = strrchr(p, ':');
        strbuf_set(out, p, c ? (size_t)(c - p) : strlen(p));
    }
}

/* Look the destination up in smtp_tls_policy_maps.  1 found (value in
 * out), 0 not, -1 temporary error. */
static int policy_lookup(const char *nexthop, strbuf *out)
{
    if (!policy_maps)
        return 0;
    int rc = maps_lookup(policy_maps, nexthop, out);
    if (rc != 0)
        return rc;
    strbuf dom;
    strbuf_init(&dom);
    int bracketed;
    nexthop_domain(nexthop, &dom, &bracketed);
    if (!bracketed) {
        const char *d = strbuf_str(&dom);
        if (strcmp(d, nexthop) != 0)
            rc = maps_lookup(policy_maps, d, out);
        for (const char *dot = strchr(d, '.'); rc == 0 && dot; dot = strchr(dot + 1, '.'))
            rc = maps_lookup(policy_maps, dot, out);
    }
    strbuf_release(&dom);
    return rc;
}

/* Expand hostname / nexthop / dot-nexthop into concrete names. */
static void expand_match(const char *spec, const struct smtp_session *s, strbuf *out)
{
    strbuf dom;
    strbuf_init(&dom);
    int bracketed;
    nexthop_domain(s->dest, &dom, &bracketed);
    int n = 0;
    char **list = config_list(spec, &n);
    strbuf_reset(out);
    for (int i = 0; i < n; i++) {
        /* Postfix separates policy-table match names with ':' */
        char *save = NULL;
        for (char *w = strtok_r(list[i], ":", &save); w; w = strtok_r(NULL, ":", &save)) {
            if (out->len)
                strbuf_append_char(out, ' ');
            if (strcasecmp(w, "hostname") == 0)
                strbuf_append_str(out, s->host);
            else if (strcasecmp(w, "nexthop") == 0)
                strbuf_append(out, dom.data, dom.len);
            else if (strcasecmp(w, "dot-nexthop") == 0) {
                strbuf_append_char(out, '.');
                strbuf_append(out, dom.data, dom.len);
            } else
                strbuf_append_str(out, w);
        }
    }
    config_list_free(list);
    strbuf_release(&dom);
}

/* 0 ok, -1 bad policy (reason in why). */
static int session_policy(const struct smtp_session *s, struct tls_policy *pol, strbuf *why)
{
    strbuf value;
    strbuf_init(&value);
    int rc = parse_level(config_str("smtp_tls_security_level"), &pol->level);
    const char *match_spec = NULL;
    char *owned_match = NULL;
    int found = policy_lookup(s->dest, &value);
    if (found < 0) {
        strbuf_printf(why, "smtp_tls_policy_maps lookup error for %s", s->dest);
        rc = -1;
    } else if (found > 0) {
        int n = 0;
        char **list = config_list(strbuf_str(&value), &n);
        if (n == 0 || parse_level(list[0], &pol->level) < 0) {
            strbuf_printf(why, "smtp_tls_policy_maps: bad policy for %s: %s", s->dest,
                          strbuf_str(&value));
            rc = -1;
        }
        for (int i = 1; i < n && rc == 0; i++)
            if (strncasecmp(list[i], "match=", 6) == 0)
                owned_match = xstrdup(list[i] + 6);
        config_list_free(list);
    }
    if (owned_match)
        match_spec = owned_match;
    else if (pol->level == LEVEL_VERIFY)
        match_spec = config_str("smtp_tls_verify_cert_match");
    else if (pol->level == LEVEL_SECURE)
        match_spec = config_str("smtp_tls_secure_cert_match");
    if (match_spec)
        expand_match(match_spec, s, &pol->match);
    /* A TLS-less build of the context means no TLS at all. */
    if (rc == 0 && pol->level >= LEVEL_ENCRYPT && !ctx_mandatory) {
        strbuf_printf(why, "TLS is required, but the TLS client could not be initialized");
        rc = -1;
    }
    xfree(owned_match);
    strbuf_release(&value);
    return rc;
}

static void tls_soft_failure(struct smtp_request *req, struct smtp_session *s,
                             const char *dsn, const strbuf *reason)
{
    strbuf_set_str(&req->last_dsn, dsn);
    strbuf_set(&req->last_reason, reason->data, reason->len);
    strbuf_set_str(&req->last_relay, s->relay);
}

int smtp_tls_session_start(struct smtp_session *s, struct smtp_request *req)
{
    struct tls_policy pol;
    pol.level = LEVEL_NONE;
    strbuf_init(&pol.match);
    strbuf why, line;
    strbuf_init(&why);
    strbuf_init(&line);
    int rc = -1;
    if (session_policy(s, &pol, &why) < 0) {
        tls_soft_failure(req, s, "4.7.5", &why);
        goto out;
    }
    if (pol.level == LEVEL_NONE || (pol.level == LEVEL_MAY && (s->no_tls || !ctx_opportunistic))) {
        rc = 0;
        goto out;
    }
    if (!(s->features & SMTP_FEAT_STARTTLS)) {
        if (pol.level == LEVEL_MAY) {
            rc = 0;
            goto out;
        }
        strbuf_printf(&why, "TLS is required, but was not offered by host %s[%s]",
                      s->host, s->addr);
        tls_soft_failure(req, s, "4.7.4", &why);
        goto out;
    }
    smtp_io_puts(&s->io, "STARTTLS\r\n");
    smtp_io_set_timeout(&s->io, smtp_params.starttls_timeout);
    int code = 0, more = 1;
    const char *text = "";
    strbuf reply;
    strbuf_init(&reply);
    while (more) {
        if (smtp_io_getline(&s->io, &line, 2048) < 0
            || smtp_reply_line(strbuf_str(&line), line.len, &code, &more, &text) < 0) {
            strbuf_printf(&why, "%s with %s[%s] while sending STARTTLS",
                          s->io.failed == SMTP_IO_TIMEOUT ? "conversation timed out"
                          : "lost connection", s->host, s->addr);
            s->io.failed = s->io.failed ? s->io.failed : SMTP_IO_LOST;
            tls_soft_failure(req, s, "4.4.2", &why);
            strbuf_release(&reply);
            goto out;
        }
        if (!reply.len)
            strbuf_printf(&reply, "%d", code);
        if (*text)
            strbuf_appendf(&reply, " %s", text);
    }
    if (code != 220) {
        if (pol.level == LEVEL_MAY) {
            /* refused opportunistic TLS: carry on in plaintext */
            rc = 0;
            strbuf_release(&reply);
            goto out;
        }
        strbuf_printf(&why, "TLS is required, but host %s[%s] refused to start TLS: %s",
                      s->host, s->addr, strbuf_str(&reply));
        tls_soft_failure(req, s, "4.7.5", &why);
        strbuf_release(&reply);
        goto out;
    }
    strbuf_release(&reply);
    /* Nothing the server sent before the handshake counts (CVE-2011-0411 class) */
    smtp_io_discard_input(&s->io);
    tls_client_ctx *ctx = pol.level == LEVEL_MAY ? ctx_opportunistic : ctx_mandatory;
    const char *verify = pol.level >= LEVEL_VERIFY ? strbuf_str(&pol.match) : NULL;
    strbuf err;
    strbuf_init(&err);
    /* SNI carries host names only, never an address literal (RFC 6066) */
    unsigned char ipbuf[16];
    int literal = inet_pton(AF_INET, s->host, ipbuf) == 1
                  || inet_pton(AF_INET6, s->host, ipbuf) == 1;
    tls_conn *conn = tls_client_start(ctx, s->io.fd, smtp_params.starttls_timeout,
                                      !literal && dns_hostname_valid(s->host) ? s->host : NULL,
                                      verify, &err);
    if (!conn) {
        s->io.failed = SMTP_IO_LOST;    /* no plaintext QUIT into a TLS stream */
        strbuf_printf(&why, "Cannot start TLS: handshake failure with %s[%s]: %s",
                      s->host, s->addr, strbuf_str(&err));
        log_info("%s", strbuf_str(&why));
        tls_soft_failure(req, s, "4.7.5", &why);
        strbuf_release(&err);
        rc = pol.level == LEVEL_MAY ? 1 : -1;
        goto out;
    }
    strbuf_release(&err);
    s->io.ctx = conn;
    s->io.ops = &tls_ops;
    s->tls = 1;
    if (config_int("smtp_tls_loglevel") >= 1) {
        strbuf namaddr;
        strbuf_init(&namaddr);
        strbuf_printf(&namaddr, "%s[%s]:%d", s->host, s->addr, s->port);
        tls_log_established(conn, "to", strbuf_str(&namaddr));
        strbuf_release(&namaddr);
    }
    if (pol.level >= LEVEL_VERIFY && tls_conn_trust(conn) != TLS_TRUST_VERIFIED) {
        const char *e = tls_conn_verify_error(conn);
        strbuf_printf(&why, "Server certificate not verified: %s[%s]: %s", s->host, s->addr,
                      e ? e : "no matching name");
        log_info("%s", strbuf_str(&why));
        tls_soft_failure(req, s, "4.7.5", &why);
        goto out;
    }
    /* RFC 3207: forget everything learned before TLS, EHLO again */
    rc = smtp_session_helo(s, req) == 0 ? 0 : -1;
out:
    strbuf_release(&pol.match);
    strbuf_release(&why);
    strbuf_release(&line);
    return rc;
}

/* ---- SASL -------------------------------------------------------------- */

struct sasl_creds {
    char *user;
    sasl_secret_t *secret;
};

static int cb_user(void *ctx, int id, const char **result, unsigned *len)
{
    struct sasl_creds *c = ctx;
    if (id != SASL_CB_USER && id != SASL_CB_AUTHNAME)
        return SASL_BADPARAM;
    *result = c->user;
    if (len)
        *len = (unsigned)strlen(c->user);
    return SASL_OK;
}

static int cb_pass(sasl_conn_t *conn, void *ctx, int id, sasl_secret_t **psecret)
{
    (void)conn;
    struct sasl_creds *c = ctx;
    if (id != SASL_CB_PASS)
        return SASL_BADPARAM;
    *psecret = c->secret;
    return SASL_OK;
}

static unsigned sec_flags(const char *spec)
{
    unsigned flags = 0;
    int n = 0;
    char **list = config_list(spec, &n);
    for (int i = 0; i < n; i++) {
        if (strcasecmp(list[i], "noplaintext") == 0)
            flags |= SASL_SEC_NOPLAINTEXT;
        else if (strcasecmp(list[i], "noactive") == 0)
            flags |= SASL_SEC_NOACTIVE;
        else if (strcasecmp(list[i], "nodictionary") == 0)
            flags |= SASL_SEC_NODICTIONARY;
        else if (strcasecmp(list[i], "noanonymous") == 0)
            flags |= SASL_SEC_NOANONYMOUS;
        else if (strcasecmp(list[i], "mutual_auth") == 0)
            flags |= SASL_SEC_MUTUAL_AUTH;
        else
            log_warning("unknown SASL security option \"%s\" ignored", list[i]);
    }
    config_list_free(list);
    return flags;
}

/* Mechanisms the server offers that smtp_sasl_mechanism_filter allows. */
static void filter_mechs(const char *offered, strbuf *out)
{
    const char *filter = config_str("smtp_sasl_mechanism_filter");
    int n = 0, nf = 0;
    char **list = config_list(offered, &n);
    char **fl = config_list(filter, &nf);
    strbuf_reset(out);
    for (int i = 0; i < n; i++) {
        int ok = nf == 0;
        for (int k = 0; k < nf && !ok; k++)
            ok = strcasecmp(list[i], fl[k]) == 0;
        if (ok) {
            if (out->len)
                strbuf_append_char(out, ' ');
            strbuf_append_str(out, list[i]);
        }
    }
    config_list_free(list);
    config_list_free(fl);
}

/* Read one reply: code and joined text; -1 on I/O failure. */
static int auth_reply(struct smtp_session *s, int *code, strbuf *text, strbuf *first_text)
{
    strbuf line;
    strbuf_init(&line);
    int more = 1, rc = 0, n = 0;
    strbuf_reset(text);
    strbuf_reset(first_text);
    while (more) {
        const char *t;
        if (smtp_io_getline(&s->io, &line, 16384) < 0
            || smtp_reply_line(strbuf_str(&line), line.len, code, &more, &t) < 0) {
            if (!s->io.failed)
                s->io.failed = SMTP_IO_LOST;
            rc = -1;
            break;
        }
        if (n++ == 0) {
            strbuf_printf(text, "%d", *code);
            strbuf_set_str(first_text, t);
        }
        if (*t)
            strbuf_appendf(text, " %s", t);
    }
    strbuf_release(&line);
    return rc;
}

int smtp_sasl_session_auth(struct smtp_session *s, struct smtp_request *req)
{
    if (!sasl_ready || !password_maps || !(s->features & SMTP_FEAT_AUTH))
        return 0;
    strbuf value, why, mechs, text, first, cmd;
    strbuf_init(&value);
    int found = maps_lookup(password_maps, s->host, &value);
    if (found == 0)
        found = maps_lookup(password_maps, s->dest, &value);
    if (found <= 0) {
        if (found < 0)
            log_warning("smtp_sasl_password_maps: lookup error for %s", s->dest);
        strbuf_release(&value);
        return 0;                       /* no password: no AUTH */
    }
    strbuf_init(&why);
    strbuf_init(&mechs);
    strbuf_init(&text);
    strbuf_init(&first);
    strbuf_init(&cmd);
    struct sasl_creds creds;
    const char *v = strbuf_str(&value);
    const char *colon = strchr(v, ':');
    creds.user = colon ? xstrndup(v, (size_t)(colon - v)) : xstrdup(v);
    const char *pw = colon ? colon + 1 : "";
    size_t pwlen = strlen(pw);
    creds.secret = xmalloc(sizeof(sasl_secret_t) + pwlen + 1);
    creds.secret->len = pwlen;
    memcpy(creds.secret->data, pw, pwlen + 1);

    sasl_callback_t callbacks[] = {
        { SASL_CB_USER, (int (*)(void))(void (*)(void))cb_user, &creds },
        { SASL_CB_AUTHNAME, (int (*)(void))(void (*)(void))cb_user, &creds },
        { SASL_CB_PASS, (int (*)(void))(void (*)(void))cb_pass, &creds },
        { SASL_CB_LIST_END, NULL, NULL },
    };
    sasl_conn_t *conn = NULL;
    int rc = -1;
    int sr = sasl_client_new("smtp", s->host, NULL, NULL, callbacks, 0, &conn);
    if (sr != SASL_OK) {
        strbuf_printf(&why, "SASL authentication failed: cannot create SASL client: %s",
                      sasl_errstring(sr, NULL, NULL));
        goto soft;
    }
    sasl_security_properties_t props;
    memset(&props, 0, sizeof(props));
    props.max_ssf = 0;                  /* no security layer */
    props.maxbufsize = 0;
    props.security_flags = sec_flags(config_str(s->tls ? "smtp_sasl_tls_security_options"
                                                       : "smtp_sasl_security_options"));
    sasl_setprop(conn, SASL_SEC_PROPS, &props);
    if (s->tls) {
        sasl_ssf_t ext = 1;
        sasl_setprop(conn, SASL_SSF_EXTERNAL, &ext);
    }
    filter_mechs(strbuf_str(&s->auth_mechs), &mechs);
    const char *out = NULL, *mech = NULL;
    unsigned outlen = 0;
    sasl_interact_t *interact = NULL;
    sr = sasl_client_start(conn, strbuf_str(&mechs), &interact, &out, &outlen, &mech);
    if (sr != SASL_OK && sr != SASL_CONTINUE) {
        strbuf_printf(&why, "SASL authentication failed: cannot authenticate to server "
                      "%s[%s]: %s", s->host, s->addr, sasl_errdetail(conn));
        goto soft;
    }
    strbuf_printf(&cmd, "AUTH %s", mech);
    char *b64 = xmalloc(65536);
    unsigned b64len = 0;
    if (out) {
        if (outlen == 0)
            strbuf_append_str(&cmd, " =");
        else if (sasl_encode64(out, outlen, b64, 65536, &b64len) == SASL_OK)
            strbuf_appendf(&cmd, " %.*s", (int)b64len, b64);
    }
    strbuf_append_str(&cmd, "\r\n");
    smtp_io_set_timeout(&s->io, smtp_params.helo_timeout);
    smtp_io_write(&s->io, cmd.data, cmd.len);
    for (int round = 0; round < 20; round++) {
        int code = 0;
        if (auth_reply(s, &code, &text, &first) < 0) {
            strbuf_printf(&why, "lost connection with %s[%s] while performing SASL "
                          "authentication", s->host, s->addr);
            break;
        }
        if (code == 235) {
            rc = 0;
            break;
        }
        if (code != 334) {
            strbuf_printf(&why, "SASL authentication failed; server %s[%s] said: %s",
                          s->host, s->addr, strbuf_str(&text));
            break;
        }
        char *in = xmalloc(first.len + 1);
        unsigned inlen = 0;
        if (sasl_decode64(strbuf_str(&first), (unsigned)first.len, in,
                          (unsigned)first.len + 1, &inlen) != SASL_OK) {
            xfree(in);
            strbuf_printf(&why, "SASL authentication failed: malformed challenge from "
                          "%s[%s]", s->host, s->addr);
            smtp_io_puts(&s->io, "*\r\n");  /* cancel the exchange */
            (void)auth_reply(s, &code, &text, &first);
            break;
        }
        sr = sasl_client_step(conn, in, inlen, &interact, &out, &outlen);
        xfree(in);
        if (sr != SASL_OK && sr != SASL_CONTINUE) {
            strbuf_printf(&why, "SASL authentication failed: %s", sasl_errdetail(conn));
            smtp_io_puts(&s->io, "*\r\n");
            (void)auth_reply(s, &code, &text, &first);
            break;
        }
        b64len = 0;
        if (outlen && sasl_encode64(out, outlen, b64, 65536, &b64len) != SASL_OK)
            b64len = 0;
        smtp_io_write(&s->io, b64, b64len);
        smtp_io_puts(&s->io, "\r\n");
    }
    xfree(b64);
    if (rc == 0)
        goto done;
soft:
    if (!why.len)
        strbuf_printf(&why, "SASL authentication failed with %s[%s]", s->host, s->addr);
    log_warning("%s", strbuf_str(&why));
    tls_soft_failure(req, s, "4.7.0", &why);
done:
    if (conn)
        sasl_dispose(&conn);
    xfree(creds.user);
    memset(creds.secret->data, 0, pwlen);
    xfree(creds.secret);
    strbuf_release(&value);
    strbuf_release(&why);
    strbuf_release(&mechs);
    strbuf_release(&text);
    strbuf_release(&first);
    strbuf_release(&cmd);
    return rc;
}
