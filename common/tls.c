/*
 * tls.c - OpenSSL 3 glue: server and client contexts, handshakes, timed
 * I/O on non-blocking sockets, and Postfix-style connection summaries.
 *
 * Interface and contract: see tls.h.  Design notes:
 *  - Every SSL_* call that may block runs in a loop: on WANT_READ /
 *    WANT_WRITE we poll() the socket until one overall deadline (the
 *    caller's timeout) expires, so a peer that stalls mid-record cannot hold
 *    a process longer than the timeout.
 *  - Server certificates are loaded as (key, leaf, chain) triples with
 *    SSL_CTX_use_cert_and_key(), one per key type, so RSA and ECDSA live in
 *    one context and OpenSSL picks by the client's signature algorithms.
 *  - SNI: the servername callback looks the name up in tls_server_sni_maps
 *    (then its parent domains as ".example.com"); the value lists chain
 *    files whose context is built once per process and cached.
 *  - Resumption across smtpd processes uses RFC 5077 tickets whose keys
 *    come from one small file per period of the session timeout
 *    (ticket_key_file.PERIOD), created atomically by the first process of
 *    the period (older periods' files are removed).
 *  - Client certificates (ask_ccert): every server context (the default
 *    one and each SNI one, since OpenSSL verifies with the store of the
 *    context the connection ends up in) gets the trust anchors, the CA
 *    names and a verify callback that never fails the handshake but
 *    remembers the first error, so trust is judged afterwards like the
 *    client side does.  The session id context differs with and without
 *    ask_ccert, so a session (ticket) made without a certificate request
 *    is never resumed where one would have been asked.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <openssl/ec.h>

#include "config.h"
#include "log.h"
#include "maps.h"
#include "mem.h"
#include "tls.h"

#define TICKET_KEY_LEN 80       /* name 16 + HMAC 32 + AES 32 */

struct sni_entry {
    char *files;                /* the map value, as the cache key */
    SSL_CTX *ctx;               /* NULL: the files failed to load */
    struct sni_entry *next;
};

struct tls_server_ctx {
    SSL_CTX *ctx;
    maps *sni;
    struct sni_entry *sni_cache;
    struct tls_server_params params;    /* strings owned (copied) */
};

struct tls_client_ctx {
    SSL_CTX *ctx;
};

struct tls_conn {
    SSL *ssl;
    int fd;
    int saved_flags;
    int is_server;
    enum tls_trust trust;
    char *verify_error;
    char *sni;
    int chain_error;            /* first X509_V_ERR_* the verify callback saw */
    char *peer_cn;              /* peer certificate facts, NULL without one */
    char *issuer_cn;
    char *peer_fprint;
    char *peer_pkey_fprint;
};

static int tls_initialized;

void tls_library_init(void)
{
    if (tls_initialized)
        return;
    OPENSSL_init_ssl(OPENSSL_INIT_LOAD_SSL_STRINGS | OPENSSL_INIT_LOAD_CRYPTO_STRINGS, NULL);
    tls_initialized = 1;
}

/* Append OpenSSL's queued errors (and clear them) to err. */
static void drain_errors(strbuf *err)
{
    unsigned long e;
    char buf[256];
    int first = 1;

    while ((e = ERR_get_error()) != 0) {
        if (err) {
            ERR_error_string_n(e, buf, sizeof(buf));
            strbuf_appendf(err, "%s%s", first ? ": " : "; ", buf);
        }
        first = 0;
    }
}

/* ---- parameters ------------------------------------------------------ */

static const struct {
    const char *name;
    int version;
    int bit;
} protocol_names[] = {
    { "SSLv3", SSL3_VERSION, TLS_PROTO_SSLv3 },
    { "TLSv1", TLS1_VERSION, TLS_PROTO_TLSv1 },
    { "TLSv1.1", TLS1_1_VERSION, TLS_PROTO_TLSv1_1 },
    { "TLSv1.2", TLS1_2_VERSION, TLS_PROTO_TLSv1_2 },
    { "TLSv1.3", TLS1_3_VERSION, TLS_PROTO_TLSv1_3 },
};
#define N_PROTOCOLS (int)(sizeof(protocol_names) / sizeof(protocol_names[0]))

static int protocol_index(const char *name)
{
    for (int i = 0; i < N_PROTOCOLS; i++)
        if (strcasecmp(protocol_names[i].name, name) == 0)
            return i;
    /* SSLv2 no longer exists; excluding it is a no-op (old main.cf files) */
    if (strcasecmp(name, "SSLv2") == 0)
        return -2;
    return -1;
}

int tls_parse_protocols(const char *spec, int *min_version, int *max_version,
                        int *disabled, strbuf *err)
{
    int enabled_mask = 0, excluded_mask = 0;
    int lo = 0, hi = N_PROTOCOLS - 1;
    int count;
    /* Postfix allows ':' as a separator too */
    char *copy = xstrdup(spec);
    for (char *colon = copy; (colon = strchr(colon, ':')) != NULL; )
        *colon = ',';
    char **words = config_list(copy, &count);
    int rc = 0;

    xfree(copy);

    for (int i = 0; i < count; i++) {
        const char *w = words[i];
        const char *name = w;
        int kind = 0;           /* 0 include, 1 exclude, 2 >=, 3 <= */
        if (w[0] == '!') {
            kind = 1;
            name = w + 1;
        } else if (w[0] == '>' && w[1] == '=') {
            kind = 2;
            name = w + 2;
        } else if (w[0] == '<' && w[1] == '=') {
            kind = 3;
            name = w + 2;
        }
        int idx = protocol_index(name);
        if (idx == -2 && kind != 2 && kind != 3)
            continue;
        if (idx < 0) {
            strbuf_printf(err, "unknown TLS protocol \"%s\"", w);
            rc = -1;
            break;
        }
        switch (kind) {
        case 0: enabled_mask |= 1 << idx; break;
        case 1: excluded_mask |= 1 << idx; break;
        case 2: if (idx > lo) lo = idx; break;
        case 3: if (idx < hi) hi = idx; break;
        }
    }
    config_list_free(words);
    if (rc < 0)
        return -1;
    if (enabled_mask == 0)
        enabled_mask = (1 << N_PROTOCOLS) - 1;
    enabled_mask &= ~excluded_mask;
    for (int i = 0; i < N_PROTOCOLS; i++)
        if (i < lo || i > hi)
            enabled_mask &= ~(1 << i);
    if (enabled_mask == 0) {
        strbuf_printf(err, "TLS protocol list \"%s\" enables no protocol", spec);
        return -1;
    }
    int first = -1, last = -1;
    for (int i = 0; i < N_PROTOCOLS; i++)
        if (enabled_mask & (1 << i)) {
            if (first < 0)
                first = i;
            last = i;
        }
    *min_version = protocol_names[first].version;
    *max_version = protocol_names[last].version;
    *disabled = 0;
    for (int i = first; i <= last; i++)
        if (!(enabled_mask & (1 << i)))
            *disabled |= protocol_names[i].bit;
    return 0;
}

static const char *const cipher_grades[] = { "high", "medium", "low", "export", "null" };

const char *tls_cipherlist_param(const char *grade)
{
    static const char *const params[] = {
        "tls_high_cipherlist", "tls_medium_cipherlist", "tls_low_cipherlist",
        "tls_export_cipherlist", "tls_null_cipherlist",
    };
    for (size_t i = 0; i < sizeof(cipher_grades) / sizeof(cipher_grades[0]); i++)
        if (grade && strcasecmp(grade, cipher_grades[i]) == 0)
            return params[i];
    return NULL;
}

int tls_cipher_string(const char *grade, const char *cipherlist, const char *exclude,
                      strbuf *out, strbuf *err)
{
    int count;

    if (tls_cipherlist_param(grade) == NULL) {
        strbuf_printf(err, "unknown TLS cipher grade \"%s\"", grade ? grade : "");
        return -1;
    }
    strbuf_set_str(out, cipherlist ? cipherlist : "");
    char **words = config_list(exclude ? exclude : "", &count);
    for (int i = 0; i < count; i++)
        strbuf_appendf(out, "%s!%s", out->len ? ":" : "", words[i]);
    config_list_free(words);
    if (out->len == 0) {
        strbuf_printf(err, "empty cipher list for grade \"%s\"", grade);
        return -1;
    }
    return 0;
}

static int apply_protocols_ciphers(SSL_CTX *ctx, const char *protocols, const char *grade,
                                   const char *cipherlist, const char *exclude, strbuf *err)
{
    int minv, maxv, disabled;
    strbuf ciphers;

    if (tls_parse_protocols(protocols ? protocols : "", &minv, &maxv, &disabled, err) < 0)
        return -1;
    SSL_CTX_set_min_proto_version(ctx, minv);
    SSL_CTX_set_max_proto_version(ctx, maxv);
    if (disabled & TLS_PROTO_TLSv1)
        SSL_CTX_set_options(ctx, SSL_OP_NO_TLSv1);
    if (disabled & TLS_PROTO_TLSv1_1)
        SSL_CTX_set_options(ctx, SSL_OP_NO_TLSv1_1);
    if (disabled & TLS_PROTO_TLSv1_2)
        SSL_CTX_set_options(ctx, SSL_OP_NO_TLSv1_2);
    if (disabled & TLS_PROTO_TLSv1_3)
        SSL_CTX_set_options(ctx, SSL_OP_NO_TLSv1_3);
    strbuf_init(&ciphers);
    if (tls_cipher_string(grade ? grade : "medium", cipherlist, exclude, &ciphers, err) < 0) {
        strbuf_release(&ciphers);
        return -1;
    }
    if (SSL_CTX_set_cipher_list(ctx, strbuf_str(&ciphers)) != 1) {
        strbuf_printf(err, "bad cipher list \"%s\"", strbuf_str(&ciphers));
        drain_errors(err);
        strbuf_release(&ciphers);
        return -1;
    }
    strbuf_release(&ciphers);
    return 0;
}

/* ---- certificates ---------------------------------------------------- */

/* Read every private key and certificate of a PEM file, in order. */
static int read_pem(const char *file, EVP_PKEY **key, STACK_OF(X509) *certs, strbuf *err)
{
    BIO *bio = BIO_new_file(file, "r");
    if (bio == NULL) {
        strbuf_printf(err, "cannot open %s: %s", file, strerror(errno ? errno : EACCES));
        ERR_clear_error();
        return -1;
    }
    for (;;) {
        char *name = NULL, *header = NULL;
        unsigned char *data = NULL;
        long len = 0;
        if (PEM_read_bio(bio, &name, &header, &data, &len) != 1) {
            ERR_clear_error();  /* end of file */
            break;
        }
        const unsigned char *p = data;
        if (strcmp(name, "CERTIFICATE") == 0 || strcmp(name, "TRUSTED CERTIFICATE") == 0) {
            X509 *x = d2i_X509(NULL, &p, len);
            if (x == NULL) {
                strbuf_printf(err, "%s: bad certificate", file);
                goto bad;
            }
            sk_X509_push(certs, x);
        } else if (strstr(name, "PRIVATE KEY") != NULL && key != NULL) {
            if (*key == NULL) {
                /* re-encode to let OpenSSL's decoder handle every key format */
                BIO *mem = BIO_new(BIO_s_mem());
                PEM_write_bio(mem, name, header, data, len);
                *key = PEM_read_bio_PrivateKey(mem, NULL, NULL, NULL);
                BIO_free(mem);
                if (*key == NULL) {
                    strbuf_printf(err, "%s: bad or encrypted private key", file);
                    goto bad;
                }
            }
        }
        OPENSSL_free(name);
        OPENSSL_free(header);
        OPENSSL_free(data);
        continue;
bad:
        drain_errors(err);
        OPENSSL_free(name);
        OPENSSL_free(header);
        OPENSSL_free(data);
        BIO_free(bio);
        return -1;
    }
    BIO_free(bio);
    return 0;
}

/* Load one (key, leaf, chain) into ctx.  The key comes from key_file (or
 * cert_file when key_file is empty/NULL). */
static int load_cert_key(SSL_CTX *ctx, const char *cert_file, const char *key_file,
                         strbuf *err)
{
    EVP_PKEY *key = NULL;
    STACK_OF(X509) *certs = sk_X509_new_null();
    int rc = -1;

    if (key_file == NULL || *key_file == '\0')
        key_file = cert_file;
    errno = 0;
    if (read_pem(cert_file, strcmp(key_file, cert_file) == 0 ? &key : NULL, certs, err) < 0)
        goto out;
    if (strcmp(key_file, cert_file) != 0) {
        STACK_OF(X509) *ignore = sk_X509_new_null();
        errno = 0;
        int r = read_pem(key_file, &key, ignore, err);
        sk_X509_pop_free(ignore, X509_free);
        if (r < 0)
            goto out;
    }
    if (sk_X509_num(certs) == 0) {
        strbuf_printf(err, "no certificate in %s", cert_file);
        goto out;
    }
    if (key == NULL) {
        strbuf_printf(err, "no private key in %s", key_file);
        goto out;
    }
    X509 *leaf = sk_X509_shift(certs);
    if (X509_check_private_key(leaf, key) != 1) {
        ERR_clear_error();
        strbuf_printf(err, "private key %s does not match certificate %s", key_file, cert_file);
        X509_free(leaf);
        goto out;
    }
    if (ctx != NULL && SSL_CTX_use_cert_and_key(ctx, leaf, key, certs, 1) != 1) {
        strbuf_printf(err, "cannot use certificate %s", cert_file);
        drain_errors(err);
        X509_free(leaf);
        goto out;
    }
    X509_free(leaf);
    rc = 0;
out:
    EVP_PKEY_free(key);
    sk_X509_pop_free(certs, X509_free);
    return rc;
}

int tls_check_cert_key(const char *cert_file, const char *key_file, strbuf *err)
{
    tls_library_init();
    return load_cert_key(NULL, cert_file, key_file, err);
}

/* Each file of a list holds a key, its certificate, then the chain. */
static int load_chain_files(SSL_CTX *ctx, const char *files, strbuf *err)
{
    int count, rc = 0;
    char **list = config_list(files, &count);
    for (int i = 0; i < count && rc == 0; i++)
        rc = load_cert_key(ctx, list[i], list[i], err);
    config_list_free(list);
    return rc;
}

/* ---- server ---------------------------------------------------------- */

static char *dup_or_empty(const char *s)
{
    return xstrdup(s ? s : "");
}

/* Never fail the handshake over the client's chain: remember the first
 * problem for tls_server_start() to judge. */
static int record_chain_error(int ok, X509_STORE_CTX *store)
{
    if (!ok) {
        SSL *ssl = X509_STORE_CTX_get_ex_data(store, SSL_get_ex_data_X509_STORE_CTX_idx());
        tls_conn *c = ssl ? SSL_get_app_data(ssl) : NULL;
        if (c && c->chain_error == X509_V_OK)
            c->chain_error = X509_STORE_CTX_get_error(store);
    }
    return 1;
}

static int load_ca(SSL_CTX *ctx, const char *cafile, const char *capath, strbuf *err)
{
    const char *file = cafile && *cafile ? cafile : NULL;
    const char *path = capath && *capath ? capath : NULL;
    if ((file || path) && SSL_CTX_load_verify_locations(ctx, file, path) != 1) {
        strbuf_printf(err, "cannot load CA locations %s%s%s", file ? file : "",
                      file && path ? ", " : "", path ? path : "");
        drain_errors(err);
        return -1;
    }
    return 0;
}

int tls_check_ca(const char *cafile, const char *capath, strbuf *err)
{
    tls_library_init();
    ERR_clear_error();
    if (cafile && *cafile && access(cafile, R_OK) != 0) {
        strbuf_printf(err, "cannot open %s: %s", cafile, strerror(errno));
        return -1;
    }
    if (capath && *capath && access(capath, R_OK | X_OK) != 0) {
        strbuf_printf(err, "cannot open %s: %s", capath, strerror(errno));
        return -1;
    }
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (ctx == NULL) {
        strbuf_set_str(err, "cannot create TLS context");
        drain_errors(err);
        return -1;
    }
    int rc = load_ca(ctx, cafile, capath, err);
    SSL_CTX_free(ctx);
    return rc;
}

/* Request a client certificate: trust anchors, the CA names the request
 * carries (Postfix sends those of the CAfile), depth, callback. */
static int ask_client_certificate(SSL_CTX *ctx, const struct tls_server_params *p,
                                  strbuf *err)
{
    if (load_ca(ctx, p->cafile, p->capath, err) < 0)
        return -1;
    if (p->cafile && *p->cafile) {
        STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(p->cafile);
        if (names != NULL)
            SSL_CTX_set_client_CA_list(ctx, names);
        ERR_clear_error();
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_CLIENT_ONCE, record_chain_error);
    SSL_CTX_set_verify_depth(ctx, p->ccert_verifydepth > 0 ? p->ccert_verifydepth : 9);
    return 0;
}

/* Settings shared by the default context and the per-SNI contexts. */
static SSL_CTX *server_ctx_new(const struct tls_server_params *p, strbuf *err)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (ctx == NULL) {
        strbuf_set_str(err, "cannot create TLS context");
        drain_errors(err);
        return NULL;
    }
    SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF | SSL_OP_CIPHER_SERVER_PREFERENCE
                        | SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    SSL_CTX_set_dh_auto(ctx, 1);
    if (apply_protocols_ciphers(ctx, p->protocols, p->cipher_grade, p->cipherlist,
                                p->exclude_ciphers, err) < 0) {
        SSL_CTX_free(ctx);
        return NULL;
    }
    static const unsigned char sid_plain[] = "postern", sid_ccert[] = "postern-ccert";
    if (p->ask_ccert)
        SSL_CTX_set_session_id_context(ctx, sid_ccert, sizeof(sid_ccert) - 1);
    else
        SSL_CTX_set_session_id_context(ctx, sid_plain, sizeof(sid_plain) - 1);
    if (p->ask_ccert && ask_client_certificate(ctx, p, err) < 0) {
        SSL_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}

/* Ticket keys shared by every process of the service.  The keys of one
 * period of `timeout` seconds live in FILE.PERIOD; the first process of a
 * period creates it with link(2), which fails when another process won the
 * race, and then everyone reads the winner's keys.  A new period means new
 * keys (rotation; older tickets just fall back to a full handshake). */
static int ticket_keys(const char *file, int timeout, unsigned char *keys, strbuf *err)
{
    long period = (long)(time(NULL) / (timeout > 0 ? timeout : 3600));
    strbuf path, tmp;
    int fd, rc = -1;

    strbuf_init(&path);
    strbuf_init(&tmp);
    strbuf_printf(&path, "%s.%ld", file, period);
    for (int attempt = 0; attempt < 2 && rc < 0; attempt++) {
        if ((fd = open(strbuf_str(&path), O_RDONLY)) >= 0) {
            ssize_t n = read(fd, keys, TICKET_KEY_LEN);
            close(fd);
            if (n == TICKET_KEY_LEN) {
                rc = 0;
                break;
            }
        }
        if (RAND_bytes(keys, TICKET_KEY_LEN) != 1) {
            strbuf_set_str(err, "cannot generate session ticket keys");
            drain_errors(err);
            break;
        }
        strbuf_printf(&tmp, "%s.tmp%ld", file, (long)getpid());
        fd = open(strbuf_str(&tmp), O_WRONLY | O_CREAT | O_TRUNC, 0600);
        int ok = fd >= 0 && write(fd, keys, TICKET_KEY_LEN) == TICKET_KEY_LEN
            && fsync(fd) == 0;
        if (fd >= 0 && close(fd) < 0)
            ok = 0;
        int linked = ok ? link(strbuf_str(&tmp), strbuf_str(&path)) : -1;
        int link_errno = errno;
        unlink(strbuf_str(&tmp));
        if (linked == 0) {
            /* the previous periods' keys are of no further use */
            for (long old = period - 3; old < period; old++) {
                strbuf_printf(&tmp, "%s.%ld", file, old);
                unlink(strbuf_str(&tmp));
            }
            rc = 0;
        } else if (!ok || link_errno != EEXIST) {
            /* Resumption still works within this process. */
            log_warning("cannot write TLS session ticket key file %s: %s",
                        strbuf_str(&path), strerror(ok ? link_errno : errno));
            rc = 0;
        }
        /* EEXIST: another process won; read its keys */
    }
    if (rc < 0 && strbuf_str(err)[0] == '\0') {
        /* a file of the wrong size that is not ours to replace */
        log_warning("unusable TLS session ticket key file %s", strbuf_str(&path));
        rc = 0;
    }
    strbuf_release(&path);
    strbuf_release(&tmp);
    return rc;
}

static SSL_CTX *sni_context(tls_server_ctx *sc, const char *files)
{
    struct sni_entry *e;

    for (e = sc->sni_cache; e; e = e->next)
        if (strcmp(e->files, files) == 0)
            return e->ctx;
    strbuf err;
    strbuf_init(&err);
    e = xcalloc(1, sizeof(*e));
    e->files = xstrdup(files);
    e->ctx = server_ctx_new(&sc->params, &err);
    if (e->ctx && load_chain_files(e->ctx, files, &err) < 0) {
        SSL_CTX_free(e->ctx);
        e->ctx = NULL;
    }
    if (e->ctx == NULL)
        log_warning("tls_server_sni_maps: %s", strbuf_str(&err));
    e->next = sc->sni_cache;
    sc->sni_cache = e;
    strbuf_release(&err);
    return e->ctx;
}

static int sni_callback(SSL *ssl, int *alert, void *arg)
{
    tls_server_ctx *sc = arg;
    const char *name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
    tls_conn *c = SSL_get_app_data(ssl);
    strbuf key, value;
    int found = 0;

    if (name == NULL || *name == '\0')
        return SSL_TLSEXT_ERR_NOACK;
    for (const char *s = name; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z')
              || (*s >= '0' && *s <= '9') || *s == '-' || *s == '.' || *s == '_')) {
            log_warning("TLS SNI name with a bad character rejected");
            *alert = SSL_AD_UNRECOGNIZED_NAME;
            return SSL_TLSEXT_ERR_ALERT_FATAL;
        }
    if (c && c->sni == NULL)
        c->sni = xstrdup(name);
    if (sc->sni == NULL)
        return SSL_TLSEXT_ERR_OK;
    strbuf_init(&key);
    strbuf_init(&value);
    /* the name, then each parent domain as ".parent" */
    for (const char *d = name; d && *d && found == 0; ) {
        strbuf_set_str(&key, d == name ? "" : ".");
        strbuf_append_str(&key, d);
        for (char *k = key.data; *k; k++)
            if (*k >= 'A' && *k <= 'Z')
                *k = (char)(*k + 32);
        found = maps_lookup(sc->sni, strbuf_str(&key), &value);
        d = strchr(d, '.');
        if (d)
            d++;
    }
    if (found < 0)
        log_warning("tls_server_sni_maps lookup of %s failed: default certificate used", name);
    if (found == 1) {
        SSL_CTX *ctx = sni_context(sc, strbuf_str(&value));
        if (ctx)
            SSL_set_SSL_CTX(ssl, ctx);
    }
    strbuf_release(&key);
    strbuf_release(&value);
    return SSL_TLSEXT_ERR_OK;
}

tls_server_ctx *tls_server_create(const struct tls_server_params *p, strbuf *err)
{
    tls_server_ctx *sc;
    int have_cert = 0;

    tls_library_init();
    ERR_clear_error();
    sc = xcalloc(1, sizeof(*sc));
    sc->params.cert_file = dup_or_empty(p->cert_file);
    sc->params.key_file = dup_or_empty(p->key_file);
    sc->params.eccert_file = dup_or_empty(p->eccert_file);
    sc->params.eckey_file = dup_or_empty(p->eckey_file);
    sc->params.chain_files = dup_or_empty(p->chain_files);
    sc->params.protocols = dup_or_empty(p->protocols);
    sc->params.cipher_grade = dup_or_empty(p->cipher_grade);
    sc->params.exclude_ciphers = dup_or_empty(p->exclude_ciphers);
    sc->params.cipherlist = dup_or_empty(p->cipherlist);
    sc->params.sni_maps = dup_or_empty(p->sni_maps);
    sc->params.ticket_key_file = dup_or_empty(p->ticket_key_file);
    sc->params.session_timeout = p->session_timeout;
    sc->params.ask_ccert = p->ask_ccert;
    sc->params.cafile = dup_or_empty(p->cafile);
    sc->params.capath = dup_or_empty(p->capath);
    sc->params.ccert_verifydepth = p->ccert_verifydepth;
    sc->params.fingerprint_digest = dup_or_empty(p->fingerprint_digest && *p->fingerprint_digest
                                                 ? p->fingerprint_digest : "sha256");
    if (EVP_get_digestbyname(sc->params.fingerprint_digest) == NULL) {
        strbuf_printf(err, "unknown fingerprint digest \"%s\"", sc->params.fingerprint_digest);
        goto bad;
    }

    if ((sc->ctx = server_ctx_new(p, err)) == NULL)
        goto bad;
    if (p->chain_files && *p->chain_files) {
        if (load_chain_files(sc->ctx, p->chain_files, err) < 0)
            goto bad;
        have_cert = 1;
    }
    if (p->cert_file && *p->cert_file) {
        if (load_cert_key(sc->ctx, p->cert_file, p->key_file, err) < 0)
            goto bad;
        have_cert = 1;
    }
    if (p->eccert_file && *p->eccert_file) {
        if (load_cert_key(sc->ctx, p->eccert_file, p->eckey_file, err) < 0)
            goto bad;
        have_cert = 1;
    }
    if (!have_cert) {
        strbuf_set_str(err, "no server certificate configured (smtpd_tls_cert_file, "
                       "smtpd_tls_eccert_file or smtpd_tls_chain_files)");
        goto bad;
    }
    if (p->session_timeout > 0) {
        SSL_CTX_set_timeout(sc->ctx, p->session_timeout);
        SSL_CTX_set_num_tickets(sc->ctx, 1);
        if (p->ticket_key_file && *p->ticket_key_file) {
            unsigned char keys[TICKET_KEY_LEN];
            if (ticket_keys(p->ticket_key_file, p->session_timeout, keys, err) < 0)
                goto bad;
            SSL_CTX_set_tlsext_ticket_keys(sc->ctx, keys, sizeof(keys));
            OPENSSL_cleanse(keys, sizeof(keys));
        }
    } else {
        SSL_CTX_set_options(sc->ctx, SSL_OP_NO_TICKET);
        SSL_CTX_set_session_cache_mode(sc->ctx, SSL_SESS_CACHE_OFF);
        SSL_CTX_set_num_tickets(sc->ctx, 0);
    }
    if (p->sni_maps && *p->sni_maps) {
        strbuf merr;
        strbuf_init(&merr);
        sc->sni = maps_open(p->sni_maps, &merr);
        if (sc->sni == NULL) {
            strbuf_printf(err, "tls_server_sni_maps: %s", strbuf_str(&merr));
            strbuf_release(&merr);
            goto bad;
        }
        strbuf_release(&merr);
    }
    /* The callback also records the SNI name for logging. */
    SSL_CTX_set_tlsext_servername_callback(sc->ctx, sni_callback);
    SSL_CTX_set_tlsext_servername_arg(sc->ctx, sc);
    return sc;
bad:
    tls_server_free(sc);
    return NULL;
}

void tls_server_free(tls_server_ctx *sc)
{
    if (sc == NULL)
        return;
    SSL_CTX_free(sc->ctx);
    if (sc->sni)
        maps_close(sc->sni);
    while (sc->sni_cache) {
        struct sni_entry *e = sc->sni_cache;
        sc->sni_cache = e->next;
        SSL_CTX_free(e->ctx);
        xfree(e->files);
        xfree(e);
    }
    xfree((char *)sc->params.cert_file);
    xfree((char *)sc->params.key_file);
    xfree((char *)sc->params.eccert_file);
    xfree((char *)sc->params.eckey_file);
    xfree((char *)sc->params.chain_files);
    xfree((char *)sc->params.protocols);
    xfree((char *)sc->params.cipher_grade);
    xfree((char *)sc->params.exclude_ciphers);
    xfree((char *)sc->params.cipherlist);
    xfree((char *)sc->params.sni_maps);
    xfree((char *)sc->params.ticket_key_file);
    xfree((char *)sc->params.cafile);
    xfree((char *)sc->params.capath);
    xfree((char *)sc->params.fingerprint_digest);
    xfree(sc);
}

/* ---- timed I/O ------------------------------------------------------- */

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Wait for fd until the deadline (0 = none).  0 ready, -2 timeout, -1 error. */
static int wait_until(int fd, short events, long long deadline)
{
    struct pollfd p = { .fd = fd, .events = events };
    for (;;) {
        int ms = -1;
        if (deadline > 0) {
            long long left = deadline - now_ms();
            if (left <= 0)
                return -2;
            ms = left > 1000000000 ? 1000000000 : (int)left;
        }
        int n = poll(&p, 1, ms);
        if (n > 0)
            return 0;
        if (n == 0)
            return -2;
        if (errno != EINTR)
            return -1;
    }
}

enum { OP_HANDSHAKE, OP_READ, OP_WRITE, OP_SHUTDOWN };

/* Run one SSL operation to completion.  Returns >0 (bytes, or 1 for
 * handshake/shutdown), 0 EOF, -1 error, -2 timeout. */
static ssize_t ssl_run(tls_conn *c, int op, void *buf, size_t n, int timeout, strbuf *err)
{
    long long deadline = timeout > 0 ? now_ms() + (long long)timeout * 1000 : 0;

    for (;;) {
        int r;
        size_t done = 0;
        ERR_clear_error();
        errno = 0;
        switch (op) {
        case OP_HANDSHAKE: r = SSL_do_handshake(c->ssl); break;
        case OP_READ: r = SSL_read_ex(c->ssl, buf, n, &done); break;
        case OP_WRITE: r = SSL_write_ex(c->ssl, buf, n, &done); break;
        default: r = SSL_shutdown(c->ssl); if (r == 0) r = 1; break;
        }
        if (r > 0)
            return op == OP_READ || op == OP_WRITE ? (ssize_t)done : 1;
        int e = SSL_get_error(c->ssl, r);
        int w;
        switch (e) {
        case SSL_ERROR_WANT_READ:
            w = wait_until(c->fd, POLLIN, deadline);
            break;
        case SSL_ERROR_WANT_WRITE:
            w = wait_until(c->fd, POLLOUT, deadline);
            break;
        case SSL_ERROR_ZERO_RETURN:
            return 0;
        case SSL_ERROR_SYSCALL:
            if (err)
                strbuf_appendf(err, "%s", errno ? strerror(errno) : "lost connection");
            drain_errors(NULL);
            return op == OP_READ && errno == 0 ? 0 : -1;
        default:
            if (err)
                strbuf_append_str(err, "TLS protocol error");
            drain_errors(err);
            return -1;
        }
        if (w < 0) {
            if (err)
                strbuf_append_str(err, w == -2 ? "timeout" : strerror(errno));
            return w;
        }
    }
}

ssize_t tls_read(tls_conn *c, void *buf, size_t n, int timeout)
{
    ssize_t r = ssl_run(c, OP_READ, buf, n, timeout, NULL);
    return r;
}

ssize_t tls_write(tls_conn *c, const void *buf, size_t n, int timeout)
{
    if (n == 0)
        return 0;
    return ssl_run(c, OP_WRITE, (void *)buf, n, timeout, NULL);
}

static tls_conn *conn_new(SSL_CTX *ctx, int fd, int is_server, strbuf *err)
{
    tls_conn *c = xcalloc(1, sizeof(*c));
    c->fd = fd;
    c->is_server = is_server;
    c->ssl = SSL_new(ctx);
    if (c->ssl == NULL || SSL_set_fd(c->ssl, fd) != 1) {
        strbuf_set_str(err, "cannot create TLS connection");
        drain_errors(err);
        SSL_free(c->ssl);
        xfree(c);
        return NULL;
    }
    SSL_set_app_data(c->ssl, c);
    c->saved_flags = fcntl(fd, F_GETFL);
    if (c->saved_flags >= 0)
        fcntl(fd, F_SETFL, c->saved_flags | O_NONBLOCK);
    return c;
}

static void conn_release(tls_conn *c)
{
    if (c->saved_flags >= 0)
        fcntl(c->fd, F_SETFL, c->saved_flags);
    SSL_free(c->ssl);
    xfree(c->verify_error);
    xfree(c->sni);
    xfree(c->peer_cn);
    xfree(c->issuer_cn);
    xfree(c->peer_fprint);
    xfree(c->peer_pkey_fprint);
    xfree(c);
}

/* Printable text of one name entry (CN, O): bytes outside printable
 * ASCII become '?' so a certificate cannot forge log lines or headers. */
static char *name_entry(const X509_NAME *name, int nid)
{
    int idx = name ? X509_NAME_get_index_by_NID(name, nid, -1) : -1;
    if (idx < 0)
        return NULL;
    const ASN1_STRING *data = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, idx));
    unsigned char *utf8 = NULL;
    int len = ASN1_STRING_to_UTF8(&utf8, data);
    if (len < 0) {
        ERR_clear_error();
        return NULL;
    }
    char *out = xmalloc((size_t)len + 1);
    for (int i = 0; i < len; i++)
        out[i] = utf8[i] >= 0x20 && utf8[i] < 0x7f ? (char)utf8[i] : '?';
    out[len] = '\0';
    OPENSSL_free(utf8);
    return out;
}

int tls_fingerprint(const unsigned char *data, size_t len, const char *digest, strbuf *out,
                    strbuf *err)
{
    static const char hex[] = "0123456789ABCDEF";
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;

    tls_library_init();
    const EVP_MD *type = EVP_get_digestbyname(digest ? digest : "");
    if (type == NULL || EVP_Digest(data, len, md, &mdlen, type, NULL) != 1) {
        strbuf_printf(err, "unknown fingerprint digest \"%s\"", digest ? digest : "");
        ERR_clear_error();
        return -1;
    }
    strbuf_reset(out);
    for (unsigned int i = 0; i < mdlen; i++)
        strbuf_appendf(out, "%s%c%c", i ? ":" : "", hex[md[i] >> 4], hex[md[i] & 15]);
    return 0;
}

/* The DER encoding's fingerprint, or NULL. */
static char *der_fingerprint(unsigned char *der, int len, const char *digest)
{
    strbuf fp, err;
    char *result = NULL;
    strbuf_init(&fp);
    strbuf_init(&err);
    if (len > 0 && tls_fingerprint(der, (size_t)len, digest, &fp, &err) == 0)
        result = strbuf_detach(&fp, NULL);
    strbuf_release(&fp);
    strbuf_release(&err);
    OPENSSL_free(der);
    return result;
}

/* What smtpd logs, writes into Received: and looks up. */
static void peer_facts(tls_conn *c, X509 *peer, const char *digest)
{
    unsigned char *der = NULL;

    c->peer_cn = name_entry(X509_get_subject_name(peer), NID_commonName);
    c->issuer_cn = name_entry(X509_get_issuer_name(peer), NID_commonName);
    if (c->issuer_cn == NULL)
        c->issuer_cn = name_entry(X509_get_issuer_name(peer), NID_organizationName);
    int len = i2d_X509(peer, &der);
    c->peer_fprint = der_fingerprint(der, len, digest);
    der = NULL;
    len = i2d_X509_PUBKEY(X509_get_X509_PUBKEY(peer), &der);
    c->peer_pkey_fprint = der_fingerprint(der, len, digest);
    ERR_clear_error();
}

tls_conn *tls_server_start(tls_server_ctx *sc, int fd, int timeout, strbuf *err)
{
    ERR_clear_error();
    tls_conn *c = conn_new(sc->ctx, fd, 1, err);
    if (c == NULL)
        return NULL;
    SSL_set_accept_state(c->ssl);
    if (ssl_run(c, OP_HANDSHAKE, NULL, 0, timeout, err) <= 0) {
        conn_release(c);
        return NULL;
    }
    c->trust = TLS_TRUST_ANONYMOUS;
    X509 *peer = SSL_get0_peer_certificate(c->ssl);
    if (peer != NULL) {
        /* A resumed session ran no callback: its stored result stands. */
        long v = c->chain_error != X509_V_OK ? c->chain_error : SSL_get_verify_result(c->ssl);
        if (v == X509_V_OK) {
            c->trust = TLS_TRUST_TRUSTED;
        } else {
            c->trust = TLS_TRUST_UNTRUSTED;
            c->verify_error = xstrdup(X509_verify_cert_error_string(v));
        }
        peer_facts(c, peer, sc->params.fingerprint_digest);
    }
    ERR_clear_error();
    return c;
}

void tls_conn_free(tls_conn *c, int timeout)
{
    if (c == NULL)
        return;
    /* Best effort close_notify, bounded: a peer that stopped reading must
     * not hold us. */
    if (timeout > 0 && !(SSL_get_shutdown(c->ssl) & SSL_SENT_SHUTDOWN))
        ssl_run(c, OP_SHUTDOWN, NULL, 0, timeout, NULL);
    ERR_clear_error();
    conn_release(c);
}

/* ---- client ---------------------------------------------------------- */

tls_client_ctx *tls_client_create(const struct tls_client_params *p, strbuf *err)
{
    tls_library_init();
    ERR_clear_error();
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (ctx == NULL) {
        strbuf_set_str(err, "cannot create TLS context");
        drain_errors(err);
        return NULL;
    }
    SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF | SSL_OP_NO_RENEGOTIATION
                        | SSL_OP_NO_COMPRESSION);
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    /* Verification is judged after the handshake (tls_conn_trust). */
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    if (apply_protocols_ciphers(ctx, p->protocols, p->cipher_grade, p->cipherlist,
                                p->exclude_ciphers, err) < 0)
        goto bad;
    const char *cafile = p->cafile && *p->cafile ? p->cafile : NULL;
    const char *capath = p->capath && *p->capath ? p->capath : NULL;
    if ((cafile || capath) && SSL_CTX_load_verify_locations(ctx, cafile, capath) != 1) {
        strbuf_printf(err, "cannot load CA locations %s%s%s", cafile ? cafile : "",
                      cafile && capath ? ", " : "", capath ? capath : "");
        drain_errors(err);
        goto bad;
    }
    if (p->cert_file && *p->cert_file
        && load_cert_key(ctx, p->cert_file, p->key_file, err) < 0)
        goto bad;
    tls_client_ctx *cc = xcalloc(1, sizeof(*cc));
    cc->ctx = ctx;
    return cc;
bad:
    SSL_CTX_free(ctx);
    return NULL;
}

void tls_client_free(tls_client_ctx *cc)
{
    if (cc == NULL)
        return;
    SSL_CTX_free(cc->ctx);
    xfree(cc);
}

/* Does the certificate match one of the comma/space separated names? */
static int match_names(X509 *cert, const char *names)
{
    int count, ok = 0;
    char **list = config_list(names, &count);
    for (int i = 0; i < count && !ok; i++)
        ok = X509_check_host(cert, list[i], 0, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS,
                             NULL) == 1;
    config_list_free(list);
    return ok;
}

tls_conn *tls_client_start(tls_client_ctx *cc, int fd, int timeout, const char *sni,
                           const char *verify_name, strbuf *err)
{
    ERR_clear_error();
    tls_conn *c = conn_new(cc->ctx, fd, 0, err);
    if (c == NULL)
        return NULL;
    SSL_set_connect_state(c->ssl);
    if (sni && *sni) {
        SSL_set_tlsext_host_name(c->ssl, sni);
        c->sni = xstrdup(sni);
    }
    if (ssl_run(c, OP_HANDSHAKE, NULL, 0, timeout, err) <= 0) {
        conn_release(c);
        return NULL;
    }
    X509 *peer = SSL_get0_peer_certificate(c->ssl);
    if (peer == NULL) {
        c->trust = TLS_TRUST_ANONYMOUS;
    } else {
        long v = SSL_get_verify_result(c->ssl);
        if (v != X509_V_OK) {
            c->trust = TLS_TRUST_UNTRUSTED;
            c->verify_error = xstrdup(X509_verify_cert_error_string(v));
        } else if (verify_name && *verify_name && match_names(peer, verify_name)) {
            c->trust = TLS_TRUST_VERIFIED;
        } else {
            c->trust = TLS_TRUST_TRUSTED;
            if (verify_name && *verify_name) {
                strbuf m;
                strbuf_init(&m);
                strbuf_printf(&m, "server certificate name does not match %s", verify_name);
                c->verify_error = strbuf_detach(&m, NULL);
            }
        }
    }
    return c;
}

/* ---- connection facts ------------------------------------------------ */

const char *tls_conn_protocol(const tls_conn *c)
{
    return SSL_get_version(c->ssl);
}

const char *tls_conn_cipher(const tls_conn *c)
{
    const SSL_CIPHER *ci = SSL_get_current_cipher(c->ssl);
    return ci ? SSL_CIPHER_get_name(ci) : "NONE";
}

int tls_conn_cipher_bits(const tls_conn *c, int *alg_bits)
{
    const SSL_CIPHER *ci = SSL_get_current_cipher(c->ssl);
    int alg = 0, bits = ci ? SSL_CIPHER_get_bits(ci, &alg) : 0;
    if (alg_bits)
        *alg_bits = alg;
    return bits;
}

int tls_conn_resumed(const tls_conn *c)
{
    return SSL_session_reused(c->ssl);
}

const char *tls_conn_sni(const tls_conn *c)
{
    return c->sni;
}

enum tls_trust tls_conn_trust(const tls_conn *c)
{
    return c->trust;
}

const char *tls_conn_verify_error(const tls_conn *c)
{
    return c->verify_error;
}

const char *tls_conn_peer_cn(const tls_conn *c)
{
    return c->peer_cn ? c->peer_cn : "";
}

const char *tls_conn_issuer_cn(const tls_conn *c)
{
    return c->issuer_cn ? c->issuer_cn : "";
}

const char *tls_conn_peer_fingerprint(const tls_conn *c)
{
    return c->peer_fprint;
}

const char *tls_conn_peer_pkey_fingerprint(const tls_conn *c)
{
    return c->peer_pkey_fprint;
}

const char *tls_trust_name(enum tls_trust t)
{
    switch (t) {
    case TLS_TRUST_UNTRUSTED: return "Untrusted";
    case TLS_TRUST_TRUSTED: return "Trusted";
    case TLS_TRUST_VERIFIED: return "Verified";
    default: return "Anonymous";
    }
}

static const char *sig_type_name(int nid)
{
    switch (nid) {
    case EVP_PKEY_RSA: return "RSA";
    case EVP_PKEY_RSA_PSS: return "RSA-PSS";
    case EVP_PKEY_EC: return "ECDSA";
    case EVP_PKEY_ED25519: return "ED25519";
    case EVP_PKEY_ED448: return "ED448";
    default: return OBJ_nid2sn(nid);
    }
}

/* " (2048 bits)" for RSA, " (P-256)" for EC keys. */
static void key_size(EVP_PKEY *key, strbuf *out)
{
    char group[64];
    size_t glen = 0;

    if (key == NULL)
        return;
    if (EVP_PKEY_get_base_id(key) == EVP_PKEY_EC
        && EVP_PKEY_get_group_name(key, group, sizeof(group), &glen) == 1) {
        const char *nist = EC_curve_nid2nist(OBJ_txt2nid(group));
        strbuf_appendf(out, " (%s)", nist ? nist : group);
    } else if (EVP_PKEY_get_base_id(key) == EVP_PKEY_RSA
               || EVP_PKEY_get_base_id(key) == EVP_PKEY_RSA_PSS) {
        strbuf_appendf(out, " (%d bits)", EVP_PKEY_get_bits(key));
    }
}

void tls_conn_summary(const tls_conn *c, strbuf *out)
{
    int alg = 0, bits = tls_conn_cipher_bits(c, &alg);
    int nid;

    strbuf_appendf(out, "%s with cipher %s (%d/%d bits)", tls_conn_protocol(c),
                   tls_conn_cipher(c), bits, alg);
    nid = SSL_get_negotiated_group(c->ssl);
    if (nid > 0) {
        /* "X25519", "prime256v1" as Postfix prints them */
        const char *g = OBJ_nid2sn(nid);
        if (g == NULL)
            g = SSL_group_to_name(c->ssl, nid);
        if (g)
            strbuf_appendf(out, " key-exchange %s", g);
    }
    /* The server's signature: our own on the server side, the peer's on
     * the client side. */
    int sig_nid = NID_undef, md_nid = NID_undef;
    EVP_PKEY *key = NULL;
    if (c->is_server) {
        if (SSL_get_signature_type_nid(c->ssl, &sig_nid) != 1)
            sig_nid = NID_undef;
        if (SSL_get_signature_nid(c->ssl, &md_nid) != 1)
            md_nid = NID_undef;
        X509 *mine = SSL_get_certificate(c->ssl);
        key = mine ? X509_get0_pubkey(mine) : NULL;
    } else {
        if (SSL_get_peer_signature_type_nid(c->ssl, &sig_nid) != 1)
            sig_nid = NID_undef;
        if (SSL_get_peer_signature_nid(c->ssl, &md_nid) != 1)
            md_nid = NID_undef;
        X509 *peer = SSL_get0_peer_certificate(c->ssl);
        key = peer ? X509_get0_pubkey(peer) : NULL;
    }
    if (sig_nid != NID_undef) {
        strbuf_appendf(out, " server-signature %s", sig_type_name(sig_nid));
        key_size(key, out);
        if (md_nid != NID_undef && OBJ_nid2sn(md_nid))
            strbuf_appendf(out, " server-digest %s", OBJ_nid2sn(md_nid));
    }
    ERR_clear_error();
}

void tls_log_established(const tls_conn *c, const char *direction, const char *namaddr)
{
    strbuf s;
    strbuf_init(&s);
    tls_conn_summary(c, &s);
    log_info("%s TLS connection %s %s %s: %s", tls_trust_name(c->trust),
             tls_conn_resumed(c) ? "reused" : "established", direction, namaddr,
             strbuf_str(&s));
    strbuf_release(&s);
}
