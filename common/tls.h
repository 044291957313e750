/*
 * tls.h - TLS for postern's SMTP server and client, over OpenSSL 3.
 *
 * Server side (smtpd):
 *   tls_server_create(params, err)   build a server context: certificates
 *       and keys (RSA and ECDSA at once, each with its chain), protocol
 *       range, cipher grade, session tickets, SNI table.  Reads every key
 *       file now: call it before the chroot and the privilege drop.
 *       NULL + one-line reason in err when a file is missing, unreadable,
 *       or a key does not match its certificate.
 *   tls_server_start(ctx, fd, timeout, err)   TLS handshake as a server on
 *       a connected socket (after "220 Ready to start TLS", or at once for
 *       wrapper mode).  NULL + err on failure or timeout.
 *       With ask_ccert the server sends a certificate request (CA names
 *       from cafile) and accepts ANY chain the client offers, or none:
 *       tls_conn_trust() then says Anonymous (no certificate), Untrusted
 *       (did not verify against cafile/capath within ccert_verifydepth) or
 *       Trusted; the caller decides (smtpd_tls_req_ccert, restrictions).
 *
 * Client side (the smtp agent):
 *   tls_client_create(params, err)   a client context: protocols, ciphers,
 *       trust anchors (CAfile / CApath), optional client certificate.
 *   tls_client_start(ctx, fd, timeout, sni, verify_name, err)   handshake
 *       as a client; sends SNI `sni` when not NULL/empty; when verify_name
 *       is set, the peer certificate's names (SAN DNS, else CN; a leading
 *       "*." wildcard matches one label) are matched against it.  The
 *       handshake does NOT fail for an untrusted peer: the caller reads
 *       tls_conn_trust() and decides by its security level (may accepts
 *       anything, verify/secure need TLS_TRUST_VERIFIED).
 *
 * Both:
 *   tls_read(conn, buf, n, timeout)  >0 bytes, 0 clean EOF, -1 error,
 *   tls_write(conn, buf, n, timeout) -2 timeout (the smtpd_io transport
 *                                     contract).  Timeouts in seconds,
 *                                     <= 0 means wait forever.
 *   tls_conn_free(conn, timeout)     send close_notify (best effort, bounded
 *                                     by timeout) and free; the fd stays open.
 *   tls_conn_summary(conn, out)      "TLSv1.3 with cipher NAME (256/256 bits)
 *                                     key-exchange X25519 server-signature
 *                                     RSA-PSS (2048 bits) server-digest SHA256"
 *   tls_conn_protocol/cipher/...     the pieces.
 *   tls_conn_trust(conn)             peer trust, see enum tls_trust.
 *   tls_trust_name(trust)            "Anonymous", "Untrusted", "Trusted",
 *                                     "Verified" (Postfix's log words).
 *   tls_log_established(conn, "from"|"to", namaddr)   Postfix's line
 *       "Anonymous TLS connection established from host[addr]: <summary>".
 *   tls_conn_peer_cn/issuer_cn(conn)  the peer certificate's subject CN and
 *       issuer CN (else issuer O), non-printable bytes as '?'; "" when none.
 *   tls_conn_peer_fingerprint(conn)   the peer certificate's digest and
 *   tls_conn_peer_pkey_fingerprint(conn)  its public key's (DER of the
 *       SubjectPublicKeyInfo), by fingerprint_digest, as Postfix writes them
 *       ("AB:01:..."); NULL when the peer sent no certificate.
 *   tls_fingerprint(data, len, digest, out, err)  the same format for any
 *       bytes: 0, or -1 + err for an unknown digest name.
 *
 * Parameter syntax (Postfix's):
 *   protocols  ">=TLSv1.2", "<=TLSv1.2", "!SSLv3, !TLSv1", "TLSv1.2 TLSv1.3"
 *              (separators: space, comma, colon).  Unknown names: error.
 *   ciphers    a grade: high, medium, low, export, null; the grade's list
 *              comes from tls_*_cipherlist and exclude_ciphers are appended
 *              as "!NAME".  Applies to TLS 1.2 and lower (TLS 1.3 suites
 *              are OpenSSL's defaults).
 *
 * Contract: no function here exits or panics on bad input from the peer;
 * every blocking step is bounded by the caller's timeout; OpenSSL's error
 * queue is drained into err/log so one session's error never leaks into
 * the next.  Sockets are switched to non-blocking while TLS owns them
 * (restored by tls_conn_free).  Callers must ignore SIGPIPE: a peer that
 * resets the connection makes a write fail, not kill the process.
 */
#ifndef POSTERN_TLS_H
#define POSTERN_TLS_H

#include <stddef.h>
#include <sys/types.h>

#include "strbuf.h"

typedef struct tls_server_ctx tls_server_ctx;
typedef struct tls_client_ctx tls_client_ctx;
typedef struct tls_conn tls_conn;

struct tls_server_params {
    const char *cert_file;      /* smtpd_tls_cert_file: leaf + chain, PEM */
    const char *key_file;       /* smtpd_tls_key_file (empty: = cert_file) */
    const char *eccert_file;    /* smtpd_tls_eccert_file */
    const char *eckey_file;     /* smtpd_tls_eckey_file */
    const char *chain_files;    /* smtpd_tls_chain_files: each key + leaf + chain */
    const char *protocols;      /* smtpd_tls_protocols or _mandatory_protocols */
    const char *cipher_grade;   /* smtpd_tls_ciphers or _mandatory_ciphers */
    const char *exclude_ciphers;
    const char *cipherlist;     /* the grade's tls_*_cipherlist value */
    const char *sni_maps;       /* tls_server_sni_maps, "" = no SNI */
    const char *ticket_key_file;/* shared ticket keys for resumption across
                                 * processes; NULL/"" = per-process keys */
    int session_timeout;        /* smtpd_tls_session_cache_timeout, seconds;
                                 * 0 disables resumption */
    int ask_ccert;              /* smtpd_tls_ask_ccert (or req_ccert) */
    const char *cafile;         /* smtpd_tls_CAfile: trust anchors for client
                                 * certificates, and the CA names sent */
    const char *capath;         /* smtpd_tls_CApath */
    int ccert_verifydepth;      /* smtpd_tls_ccert_verifydepth */
    const char *fingerprint_digest; /* smtpd_tls_fingerprint_digest; "" = sha256 */
};

struct tls_client_params {
    const char *cafile;         /* smtp_tls_CAfile */
    const char *capath;         /* smtp_tls_CApath */
    const char *cert_file;      /* optional client certificate */
    const char *key_file;
    const char *protocols;
    const char *cipher_grade;
    const char *exclude_ciphers;
    const char *cipherlist;
};

enum tls_trust {
    TLS_TRUST_ANONYMOUS,        /* peer sent no certificate */
    TLS_TRUST_UNTRUSTED,        /* certificate chain did not verify */
    TLS_TRUST_TRUSTED,          /* chain verified, name not checked/matched */
    TLS_TRUST_VERIFIED,         /* chain verified and name matched */
};

/* Idempotent; every function below calls it. */
void tls_library_init(void);

tls_server_ctx *tls_server_create(const struct tls_server_params *p, strbuf *err);
void tls_server_free(tls_server_ctx *ctx);
tls_conn *tls_server_start(tls_server_ctx *ctx, int fd, int timeout, strbuf *err);

tls_client_ctx *tls_client_create(const struct tls_client_params *p, strbuf *err);
void tls_client_free(tls_client_ctx *ctx);
tls_conn *tls_client_start(tls_client_ctx *ctx, int fd, int timeout, const char *sni,
                           const char *verify_name, strbuf *err);

ssize_t tls_read(tls_conn *c, void *buf, size_t n, int timeout);
ssize_t tls_write(tls_conn *c, const void *buf, size_t n, int timeout);
void tls_conn_free(tls_conn *c, int timeout);

const char *tls_conn_protocol(const tls_conn *c);
const char *tls_conn_cipher(const tls_conn *c);
int tls_conn_cipher_bits(const tls_conn *c, int *alg_bits);
int tls_conn_resumed(const tls_conn *c);
const char *tls_conn_sni(const tls_conn *c);  /* server: name the client asked for */
void tls_conn_summary(const tls_conn *c, strbuf *out);
enum tls_trust tls_conn_trust(const tls_conn *c);
const char *tls_conn_verify_error(const tls_conn *c);   /* NULL when none */
const char *tls_trust_name(enum tls_trust t);
const char *tls_conn_peer_cn(const tls_conn *c);
const char *tls_conn_issuer_cn(const tls_conn *c);
const char *tls_conn_peer_fingerprint(const tls_conn *c);
const char *tls_conn_peer_pkey_fingerprint(const tls_conn *c);
int tls_fingerprint(const unsigned char *data, size_t len, const char *digest, strbuf *out,
                    strbuf *err);
void tls_log_established(const tls_conn *c, const char *direction, const char *namaddr);

/* Parse a Postfix protocol list into OpenSSL version numbers (0 = no bound)
 * and the versions to switch off inside the range (TLS_PROTO_* bits).
 * Returns 0, or -1 with err set.  Exposed for unit tests and `postern check`. */
#define TLS_PROTO_SSLv3  0x01
#define TLS_PROTO_TLSv1  0x02
#define TLS_PROTO_TLSv1_1 0x04
#define TLS_PROTO_TLSv1_2 0x08
#define TLS_PROTO_TLSv1_3 0x10
int tls_parse_protocols(const char *spec, int *min_version, int *max_version,
                        int *disabled, strbuf *err);
/* The OpenSSL cipher string of a grade: list + ":!EXCL" for each excluded
 * name.  -1 with err for an unknown grade. */
const char *tls_cipherlist_param(const char *grade); /* "tls_medium_cipherlist" or NULL */
int tls_cipher_string(const char *grade, const char *cipherlist, const char *exclude,
                      strbuf *out, strbuf *err);

/* Check that a certificate / key pair loads (postern check): 0 or -1 + err. */
int tls_check_cert_key(const char *cert_file, const char *key_file, strbuf *err);
/* Check that CA locations load (postern check): 0 or -1 + err. */
int tls_check_ca(const char *cafile, const char *capath, strbuf *err);

#endif
