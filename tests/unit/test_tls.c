/*
 * test_tls.c - unit tests for common/tls.c: the protocol and cipher
 * parameter parsers (good and malformed), certificate/key loading (missing
 * file, garbage, mismatched key), and real handshakes between a server and
 * a client context over a socketpair (the server side in a child process):
 * RSA and ECDSA certificates in one context, peer trust classification
 * (Untrusted without a CA, Verified with the CA and the right name,
 * Trusted with the wrong name), SNI selecting another certificate, data
 * both ways, and a handshake timeout against a silent peer; client
 * certificates (ask_ccert: none, one signed by the CA, a self-signed one,
 * the CA names in the request, fingerprints equal to openssl's) and the
 * fingerprint format itself.  Certificates
 * are made with the openssl command in a fresh directory per test.
 */
#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <sys/wait.h>
#include <unistd.h>

#include "config.h"
#include "mem.h"
#include "strbuf.h"
#include "tls.h"

static char dir[64];

static void run(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void run(const char *fmt, ...)
{
    strbuf cmd;
    va_list ap;
    strbuf_init(&cmd);
    strbuf_printf(&cmd, "cd '%s' && (", dir);
    va_start(ap, fmt);
    strbuf_vappendf(&cmd, fmt, ap);
    va_end(ap);
    strbuf_append_str(&cmd, ") >/dev/null 2>&1");
    ck_assert_msg(system(strbuf_str(&cmd)) == 0, "failed: %s", strbuf_str(&cmd));
    strbuf_release(&cmd);
}

static char *path(const char *name)
{
    strbuf p;
    strbuf_init(&p);
    strbuf_printf(&p, "%s/%s", dir, name);
    return strbuf_detach(&p, NULL);
}

/* A CA, an RSA leaf for mx.example.org and an ECDSA leaf for the same
 * name, both signed by the CA, and a self-signed RSA cert for
 * other.example.net (chain file: key + cert). */
static void setup_certs(void)
{
    strcpy(dir, "/tmp/postern-tls-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    run("openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 "
        "-subj /CN=Test-CA");
    run("openssl req -newkey rsa:2048 -nodes -keyout rsa.key -out rsa.csr "
        "-subj /CN=mx.example.org -addext subjectAltName=DNS:mx.example.org");
    run("openssl x509 -req -in rsa.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 "
        "-copy_extensions copy -out rsa.crt && cat rsa.crt ca.pem > rsa.pem");
    run("openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ec.key "
        "-out ec.csr -subj /CN=mx.example.org -addext subjectAltName=DNS:mx.example.org");
    run("openssl x509 -req -in ec.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 "
        "-copy_extensions copy -out ec.pem");
    run("openssl req -x509 -newkey rsa:2048 -nodes -keyout other.key -out other.crt "
        "-days 2 -subj /CN=other.example.net -addext subjectAltName=DNS:other.example.net "
        "&& cat other.key other.crt > other-chain.pem");
    run("echo garbage > garbage.pem");
}

static void remove_certs(void)
{
    strbuf cmd;
    strbuf_init(&cmd);
    strbuf_printf(&cmd, "rm -rf '%s'", dir);
    ck_assert_int_eq(system(strbuf_str(&cmd)), 0);
    strbuf_release(&cmd);
}

START_TEST(protocols_parse)
{
    int lo, hi, off;
    strbuf err;
    strbuf_init(&err);
    ck_assert_int_eq(tls_parse_protocols(">=TLSv1.2", &lo, &hi, &off, &err), 0);
    ck_assert_int_eq(lo, 0x0303);
    ck_assert_int_eq(hi, 0x0304);
    ck_assert_int_eq(off, 0);
    ck_assert_int_eq(tls_parse_protocols("!SSLv2, !SSLv3, !TLSv1, !TLSv1.1", &lo, &hi, &off,
                                         &err), 0);
    ck_assert_int_eq(lo, 0x0303);
    ck_assert_int_eq(tls_parse_protocols("TLSv1.2", &lo, &hi, &off, &err), 0);
    ck_assert_int_eq(lo, 0x0303);
    ck_assert_int_eq(hi, 0x0303);
    ck_assert_int_eq(tls_parse_protocols("<=TLSv1.2 >=TLSv1.1", &lo, &hi, &off, &err), 0);
    ck_assert_int_eq(lo, 0x0302);
    ck_assert_int_eq(hi, 0x0303);
    /* a hole in the middle is switched off inside the range */
    ck_assert_int_eq(tls_parse_protocols("TLSv1.1:TLSv1.3", &lo, &hi, &off, &err), 0);
    ck_assert_int_eq(lo, 0x0302);
    ck_assert_int_eq(hi, 0x0304);
    ck_assert_int_eq(off, TLS_PROTO_TLSv1_2);
    /* malformed */
    ck_assert_int_eq(tls_parse_protocols("TLSv9", &lo, &hi, &off, &err), -1);
    ck_assert_str_eq(strbuf_str(&err), "unknown TLS protocol \"TLSv9\"");
    ck_assert_int_eq(tls_parse_protocols(">=", &lo, &hi, &off, &err), -1);
    ck_assert_int_eq(tls_parse_protocols(">=TLSv1.3 <=TLSv1.2", &lo, &hi, &off, &err), -1);
    ck_assert_int_eq(tls_parse_protocols("!TLSv1.2 !TLSv1.3 !TLSv1.1 !TLSv1 !SSLv3", &lo, &hi,
                                         &off, &err), -1);
    strbuf_release(&err);
}
END_TEST

START_TEST(ciphers)
{
    strbuf out, err;
    strbuf_init(&out);
    strbuf_init(&err);
    ck_assert_str_eq(tls_cipherlist_param("High"), "tls_high_cipherlist");
    ck_assert_ptr_null(tls_cipherlist_param("strong"));
    ck_assert_int_eq(tls_cipher_string("medium", "HIGH:MEDIUM", "aNULL, RC4 MD5", &out, &err), 0);
    ck_assert_str_eq(strbuf_str(&out), "HIGH:MEDIUM:!aNULL:!RC4:!MD5");
    ck_assert_int_eq(tls_cipher_string("strong", "HIGH", "", &out, &err), -1);
    ck_assert_str_eq(strbuf_str(&err), "unknown TLS cipher grade \"strong\"");
    strbuf_release(&out);
    strbuf_release(&err);
}
END_TEST

START_TEST(cert_loading)
{
    strbuf err;
    char *rsa = path("rsa.pem"), *rsakey = path("rsa.key"), *eckey = path("ec.key");
    char *missing = path("missing.pem"), *garbage = path("garbage.pem");
    char *chain = path("other-chain.pem");
    strbuf_init(&err);
    ck_assert_int_eq(tls_check_cert_key(rsa, rsakey, &err), 0);
    ck_assert_int_eq(tls_check_cert_key(chain, "", &err), 0);
    ck_assert_int_eq(tls_check_cert_key(missing, rsakey, &err), -1);
    ck_assert_msg(strstr(strbuf_str(&err), "cannot open") != NULL, "%s", strbuf_str(&err));
    strbuf_reset(&err);
    ck_assert_int_eq(tls_check_cert_key(garbage, rsakey, &err), -1);
    ck_assert_msg(strstr(strbuf_str(&err), "no certificate") != NULL, "%s", strbuf_str(&err));
    strbuf_reset(&err);
    ck_assert_int_eq(tls_check_cert_key(rsa, eckey, &err), -1);
    ck_assert_msg(strstr(strbuf_str(&err), "does not match") != NULL, "%s", strbuf_str(&err));
    strbuf_reset(&err);
    ck_assert_int_eq(tls_check_cert_key(rsa, garbage, &err), -1);
    ck_assert_msg(strstr(strbuf_str(&err), "no private key") != NULL, "%s", strbuf_str(&err));

    /* a server context refuses a missing file and a bad protocol list */
    struct tls_server_params sp = { .cert_file = missing, .protocols = ">=TLSv1.2",
                                    .cipher_grade = "medium", .cipherlist = "HIGH" };
    strbuf_reset(&err);
    ck_assert_ptr_null(tls_server_create(&sp, &err));
    ck_assert_msg(strstr(strbuf_str(&err), missing) != NULL, "%s", strbuf_str(&err));
    sp.cert_file = rsa;
    sp.key_file = rsakey;
    sp.protocols = "TLSv7";
    strbuf_reset(&err);
    ck_assert_ptr_null(tls_server_create(&sp, &err));
    sp.protocols = "";
    sp.cert_file = "";
    strbuf_reset(&err);
    ck_assert_ptr_null(tls_server_create(&sp, &err));
    ck_assert_msg(strstr(strbuf_str(&err), "no server certificate") != NULL, "%s",
                  strbuf_str(&err));
    strbuf_release(&err);
    xfree(rsa); xfree(rsakey); xfree(eckey); xfree(missing); xfree(garbage); xfree(chain);
}
END_TEST

/* The server half: handshake, read one line, answer "echo: LINE", then
 * the summary; exit status 0 on success. */
static void serve_child(tls_server_ctx *sc, int fd)
{
    strbuf err, sum;
    char buf[256];
    strbuf_init(&err);
    strbuf_init(&sum);
    tls_conn *c = tls_server_start(sc, fd, 10, &err);
    if (c == NULL)
        _exit(2);
    ssize_t n = tls_read(c, buf, sizeof(buf) - 1, 10);
    if (n <= 0)
        _exit(3);
    buf[n] = 0;
    tls_conn_summary(c, &sum);
    strbuf_appendf(&err, "echo: %s|%s|%s", buf, strbuf_str(&sum),
                   tls_conn_sni(c) ? tls_conn_sni(c) : "-");
    /* what the server learnt of the client's certificate */
    strbuf_appendf(&err, "|ccert %s|%s|%s|%s|%s", tls_trust_name(tls_conn_trust(c)),
                   tls_conn_peer_cn(c), tls_conn_issuer_cn(c),
                   tls_conn_peer_fingerprint(c) ? tls_conn_peer_fingerprint(c) : "-",
                   tls_conn_peer_pkey_fingerprint(c) ? tls_conn_peer_pkey_fingerprint(c) : "-");
    if (tls_write(c, err.data, err.len, 10) != (ssize_t)err.len)
        _exit(4);
    tls_conn_free(c, 5);
    _exit(0);
}

/* the certificate the next handshake() presents; NULL: none */
static const char *client_cert, *client_key;

struct client_result {
    enum tls_trust trust;
    char reply[1024];
    char peer_cn[128];
};

static int handshake(tls_server_ctx *sc, const char *cafile, const char *sni,
                     const char *verify_name, const char *client_ciphers_tls12,
                     struct client_result *res)
{
    int sv[2];
    strbuf err;
    signal(SIGPIPE, SIG_IGN);
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        close(sv[0]);
        serve_child(sc, sv[1]);
    }
    close(sv[1]);
    struct tls_client_params cp = {
        .cafile = cafile, .protocols = client_ciphers_tls12 ? "TLSv1.2" : "",
        .cipher_grade = "high", .cipherlist = client_ciphers_tls12 ? client_ciphers_tls12 : "HIGH",
        .cert_file = client_cert, .key_file = client_key,
    };
    strbuf_init(&err);
    tls_client_ctx *cc = tls_client_create(&cp, &err);
    ck_assert_msg(cc != NULL, "%s", strbuf_str(&err));
    tls_conn *c = tls_client_start(cc, sv[0], 10, sni, verify_name, &err);
    ck_assert_msg(c != NULL, "client handshake: %s", strbuf_str(&err));
    res->trust = tls_conn_trust(c);
    ssize_t wrote = tls_write(c, "hello", 5, 10);
    int status;
    if (wrote != 5) {
        waitpid(pid, &status, 0);
        ck_abort_msg("write %zd, server status %d", wrote, status);
    }
    size_t got = 0;
    for (;;) {
        ssize_t n = tls_read(c, res->reply + got, sizeof(res->reply) - 1 - got, 10);
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    res->reply[got] = 0;
    strbuf_reset(&err);
    tls_conn_summary(c, &err);
    snprintf(res->peer_cn, sizeof(res->peer_cn), "%s", strbuf_str(&err));
    tls_conn_free(c, 5);
    tls_client_free(cc);
    close(sv[0]);
    strbuf_release(&err);
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 99;
}

START_TEST(handshakes)
{
    char *rsa = path("rsa.pem"), *rsakey = path("rsa.key"), *ec = path("ec.pem");
    char *eckey = path("ec.key"), *ca = path("ca.pem"), *other = path("other-chain.pem");
    strbuf err, sni;
    struct client_result res;

    strbuf_init(&err);
    strbuf_init(&sni);
    strbuf_printf(&sni, "inline:{ other.example.net=%s }", other);
    struct tls_server_params sp = {
        .cert_file = rsa, .key_file = rsakey, .eccert_file = ec, .eckey_file = eckey,
        .protocols = ">=TLSv1.2", .cipher_grade = "medium",
        .cipherlist = "aNULL:-aNULL:HIGH:MEDIUM:+RC4:@STRENGTH",
        .sni_maps = strbuf_str(&sni), .session_timeout = 3600,
    };
    tls_server_ctx *sc = tls_server_create(&sp, &err);
    ck_assert_msg(sc != NULL, "%s", strbuf_str(&err));

    /* no trust anchors: the chain cannot verify */
    ck_assert_int_eq(handshake(sc, NULL, NULL, NULL, NULL, &res), 0);
    ck_assert_int_eq(res.trust, TLS_TRUST_UNTRUSTED);
    ck_assert_msg(strncmp(res.reply, "echo: hello|TLSv1.3 with cipher ", 32) == 0, "%s",
                  res.reply);
    ck_assert_msg(strstr(res.reply, "key-exchange ") != NULL, "%s", res.reply);
    ck_assert_msg(strstr(res.reply, "server-signature ") != NULL, "%s", res.reply);

    /* the CA and the right name */
    ck_assert_int_eq(handshake(sc, ca, "mx.example.org", "mx.example.org", NULL, &res), 0);
    ck_assert_int_eq(res.trust, TLS_TRUST_VERIFIED);
    ck_assert_msg(strstr(res.reply, "|mx.example.org") != NULL, "%s", res.reply);

    /* the CA but another name */
    ck_assert_int_eq(handshake(sc, ca, NULL, "mail.example.com", NULL, &res), 0);
    ck_assert_int_eq(res.trust, TLS_TRUST_TRUSTED);

    /* TLS 1.2 with an ECDSA-only cipher suite: the ECDSA certificate */
    ck_assert_int_eq(handshake(sc, ca, NULL, "mx.example.org", "ECDHE-ECDSA-AES256-GCM-SHA384",
                               &res), 0);
    ck_assert_int_eq(res.trust, TLS_TRUST_VERIFIED);
    ck_assert_msg(strstr(res.peer_cn, "TLSv1.2 with cipher ECDHE-ECDSA-AES256-GCM-SHA384")
                  != NULL, "%s", res.peer_cn);
    ck_assert_msg(strstr(res.peer_cn, "server-signature ECDSA (P-256)") != NULL, "%s",
                  res.peer_cn);
    /* ... and an RSA-only suite: the RSA certificate */
    ck_assert_int_eq(handshake(sc, ca, NULL, "mx.example.org", "ECDHE-RSA-AES256-GCM-SHA384",
                               &res), 0);
    ck_assert_int_eq(res.trust, TLS_TRUST_VERIFIED);
    ck_assert_msg(strstr(res.peer_cn, "(2048 bits)") != NULL, "%s", res.peer_cn);

    /* SNI picks the other (self-signed) certificate: it verifies as
     * itself and is not trusted by our CA */
    char *othercrt = path("other.crt");
    ck_assert_int_eq(handshake(sc, othercrt, "other.example.net", "other.example.net", NULL,
                               &res), 0);
    ck_assert_int_eq(res.trust, TLS_TRUST_VERIFIED);
    ck_assert_int_eq(handshake(sc, ca, "other.example.net", "other.example.net", NULL,
                               &res), 0);
    ck_assert_int_eq(res.trust, TLS_TRUST_UNTRUSTED);
    xfree(othercrt);

    tls_server_free(sc);
    strbuf_release(&err);
    strbuf_release(&sni);
    xfree(rsa); xfree(rsakey); xfree(ec); xfree(eckey); xfree(ca); xfree(other);
}
END_TEST

START_TEST(handshake_timeout_and_garbage)
{
    char *rsa = path("rsa.pem");
    char *rsakey = path("rsa.key");
    strbuf err;
    int sv[2];

    strbuf_init(&err);
    struct tls_server_params sp = { .cert_file = rsa, .key_file = rsakey,
                                    .protocols = ">=TLSv1.2", .cipher_grade = "medium",
                                    .cipherlist = "HIGH" };
    tls_server_ctx *sc = tls_server_create(&sp, &err);
    ck_assert_ptr_nonnull(sc);
    /* a silent peer: the handshake gives up after the timeout */
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    ck_assert_ptr_null(tls_server_start(sc, sv[0], 1, &err));
    ck_assert_msg(strstr(strbuf_str(&err), "timeout") != NULL, "%s", strbuf_str(&err));
    close(sv[0]);
    close(sv[1]);
    /* plaintext instead of a ClientHello: an error, not a crash */
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    ck_assert_int_eq(write(sv[1], "EHLO x\r\nMAIL FROM:<a@b>\r\n", 25), 25);
    strbuf_reset(&err);
    ck_assert_ptr_null(tls_server_start(sc, sv[0], 5, &err));
    ck_assert_msg(strstr(strbuf_str(&err), "TLS protocol error") != NULL, "%s",
                  strbuf_str(&err));
    close(sv[0]);
    close(sv[1]);
    tls_server_free(sc);
    strbuf_release(&err);
    xfree(rsa);
    xfree(rsakey);
}
END_TEST


/* Shared ticket keys: the first context of a period creates FILE.PERIOD
 * (80 bytes, 0600) and removes older periods' files; the second reads it
 * and leaves it alone. */
START_TEST(ticket_key_file)
{
    char *rsa = path("rsa.pem"), *rsakey = path("rsa.key");
    char *base = path("ticket.key");
    strbuf err, cur, old;
    struct stat sb;

    strbuf_init(&err);
    strbuf_init(&cur);
    strbuf_init(&old);
    long period = (long)(time(NULL) / 3600);
    strbuf_printf(&cur, "%s.%ld", base, period);
    strbuf_printf(&old, "%s.%ld", base, period - 1);
    FILE *f = fopen(strbuf_str(&old), "w");
    ck_assert_ptr_nonnull(f);
    fputs("old keys", f);
    fclose(f);
    struct tls_server_params sp = { .cert_file = rsa, .key_file = rsakey,
                                    .protocols = ">=TLSv1.2", .cipher_grade = "medium",
                                    .cipherlist = "HIGH", .session_timeout = 3600,
                                    .ticket_key_file = base };
    tls_server_ctx *a = tls_server_create(&sp, &err);
    ck_assert_msg(a != NULL, "%s", strbuf_str(&err));
    ck_assert_int_eq(stat(strbuf_str(&cur), &sb), 0);
    ck_assert_int_eq((int)sb.st_size, 80);
    ck_assert_int_eq((int)(sb.st_mode & 0777), 0600);
    ck_assert_int_eq(stat(strbuf_str(&old), &sb), -1);       /* old period removed */
    unsigned char first[80], second[80];
    f = fopen(strbuf_str(&cur), "rb");
    ck_assert_int_eq((int)fread(first, 1, 80, f), 80);
    fclose(f);
    tls_server_ctx *b = tls_server_create(&sp, &err);
    ck_assert_ptr_nonnull(b);
    f = fopen(strbuf_str(&cur), "rb");
    ck_assert_int_eq((int)fread(second, 1, 80, f), 80);
    fclose(f);
    ck_assert_int_eq(memcmp(first, second, 80), 0);           /* not replaced */
    tls_server_free(a);
    tls_server_free(b);
    /* an unwritable location: still a context (per-process keys), no crash */
    sp.ticket_key_file = "/nonexistent-dir/ticket.key";
    a = tls_server_create(&sp, &err);
    ck_assert_ptr_nonnull(a);
    tls_server_free(a);
    strbuf_release(&err);
    strbuf_release(&cur);
    strbuf_release(&old);
    xfree(rsa);
    xfree(rsakey);
    xfree(base);
}
END_TEST

/* openssl's own "sha256 Fingerprint=AB:..." of a certificate file */
static void openssl_fingerprint(const char *file, char *out, size_t size)
{
    strbuf cmd;
    strbuf_init(&cmd);
    strbuf_printf(&cmd, "openssl x509 -noout -fingerprint -sha256 -in '%s'", file);
    FILE *f = popen(strbuf_str(&cmd), "r");
    ck_assert_ptr_nonnull(f);
    char line[256] = "";
    ck_assert_ptr_nonnull(fgets(line, sizeof(line), f));
    pclose(f);
    char *eq = strchr(line, '=');
    ck_assert_ptr_nonnull(eq);
    snprintf(out, size, "%.*s", (int)strcspn(eq + 1, "\r\n"), eq + 1);
    strbuf_release(&cmd);
}

START_TEST(fingerprint_format)
{
    strbuf fp, err;
    strbuf_init(&fp);
    strbuf_init(&err);
    /* colon-separated upper-case hex pairs, as Postfix writes them */
    ck_assert_int_eq(tls_fingerprint((const unsigned char *)"abc", 3, "sha256", &fp, &err), 0);
    ck_assert_str_eq(strbuf_str(&fp), "BA:78:16:BF:8F:01:CF:EA:41:41:40:DE:5D:AE:22:23:B0:03:"
                     "61:A3:96:17:7A:9C:B4:10:FF:61:F2:00:15:AD");
    ck_assert_int_eq(tls_fingerprint((const unsigned char *)"abc", 3, "md5", &fp, &err), 0);
    ck_assert_str_eq(strbuf_str(&fp), "90:01:50:98:3C:D2:4F:B0:D6:96:3F:7D:28:E1:7F:72");
    /* nothing at all still has a digest; the output is replaced, not appended to */
    ck_assert_int_eq(tls_fingerprint((const unsigned char *)"", 0, "SHA1", &fp, &err), 0);
    ck_assert_str_eq(strbuf_str(&fp), "DA:39:A3:EE:5E:6B:4B:0D:32:55:BF:EF:95:60:18:90:AF:D8:07:09");
    /* unknown or empty digest names */
    ck_assert_int_eq(tls_fingerprint((const unsigned char *)"abc", 3, "sha257", &fp, &err), -1);
    ck_assert_msg(strstr(strbuf_str(&err), "unknown fingerprint digest \"sha257\"") != NULL,
                  "%s", strbuf_str(&err));
    ck_assert_int_eq(tls_fingerprint((const unsigned char *)"abc", 3, "", &fp, &err), -1);
    ck_assert_int_eq(tls_fingerprint((const unsigned char *)"abc", 3, NULL, &fp, &err), -1);
    strbuf_release(&fp);
    strbuf_release(&err);
}
END_TEST

START_TEST(client_certificates)
{
    char *rsa = path("rsa.pem"), *rsakey = path("rsa.key"), *ca = path("ca.pem");
    char *rsacrt = path("rsa.crt"), *other = path("other.crt"), *otherkey = path("other.key");
    char *missing = path("missing.pem");
    char expect[256], line[512];
    strbuf err;
    struct client_result res;

    strbuf_init(&err);
    struct tls_server_params sp = {
        .cert_file = rsa, .key_file = rsakey, .protocols = ">=TLSv1.2",
        .cipher_grade = "medium", .cipherlist = "aNULL:-aNULL:HIGH:MEDIUM:+RC4:@STRENGTH",
        .ask_ccert = 1, .cafile = ca, .ccert_verifydepth = 9,
    };
    tls_server_ctx *sc = tls_server_create(&sp, &err);
    ck_assert_msg(sc != NULL, "%s", strbuf_str(&err));

    /* no certificate: Anonymous, no fingerprint */
    client_cert = client_key = NULL;
    ck_assert_int_eq(handshake(sc, ca, NULL, NULL, NULL, &res), 0);
    ck_assert_msg(strstr(res.reply, "|ccert Anonymous|||-|-") != NULL, "%s", res.reply);

    /* signed by the CA: Trusted, names, openssl's fingerprint */
    client_cert = rsa;
    client_key = rsakey;
    openssl_fingerprint(rsacrt, expect, sizeof(expect));
    ck_assert_int_eq(handshake(sc, ca, NULL, NULL, NULL, &res), 0);
    snprintf(line, sizeof(line), "|ccert Trusted|mx.example.org|Test-CA|%s|", expect);
    ck_assert_msg(strstr(res.reply, line) != NULL, "%s\nwant %s", res.reply, line);
    /* the same over TLS 1.2 (the certificate request differs) */
    ck_assert_int_eq(handshake(sc, ca, NULL, NULL, "ECDHE-RSA-AES256-GCM-SHA384", &res), 0);
    ck_assert_msg(strstr(res.reply, line) != NULL, "%s\nwant %s", res.reply, line);

    /* self-signed: accepted, but Untrusted */
    client_cert = other;
    client_key = otherkey;
    openssl_fingerprint(other, expect, sizeof(expect));
    ck_assert_int_eq(handshake(sc, ca, NULL, NULL, NULL, &res), 0);
    snprintf(line, sizeof(line), "|ccert Untrusted|other.example.net|other.example.net|%s|",
             expect);
    ck_assert_msg(strstr(res.reply, line) != NULL, "%s\nwant %s", res.reply, line);
    tls_server_free(sc);

    /* without ask_ccert a client certificate is never requested */
    sp.ask_ccert = 0;
    sc = tls_server_create(&sp, &err);
    ck_assert_msg(sc != NULL, "%s", strbuf_str(&err));
    client_cert = rsa;
    client_key = rsakey;
    ck_assert_int_eq(handshake(sc, ca, NULL, NULL, NULL, &res), 0);
    ck_assert_msg(strstr(res.reply, "|ccert Anonymous|||-|-") != NULL, "%s", res.reply);
    tls_server_free(sc);
    client_cert = client_key = NULL;

    /* a missing CA file, a garbage one, an unknown digest: no context */
    sp.ask_ccert = 1;
    sp.cafile = missing;
    strbuf_reset(&err);
    ck_assert_ptr_null(tls_server_create(&sp, &err));
    ck_assert_msg(strstr(strbuf_str(&err), "cannot load CA locations") != NULL, "%s",
                  strbuf_str(&err));
    strbuf_reset(&err);
    ck_assert_int_eq(tls_check_ca(missing, "", &err), -1);
    ck_assert_msg(strstr(strbuf_str(&err), "No such file") != NULL, "%s", strbuf_str(&err));
    char *garbage = path("garbage.pem");
    strbuf_reset(&err);
    ck_assert_int_eq(tls_check_ca(garbage, "", &err), -1);
    strbuf_reset(&err);
    ck_assert_int_eq(tls_check_ca(ca, "", &err), 0);
    sp.cafile = ca;
    sp.fingerprint_digest = "nosuchdigest";
    strbuf_reset(&err);
    ck_assert_ptr_null(tls_server_create(&sp, &err));
    ck_assert_msg(strstr(strbuf_str(&err), "unknown fingerprint digest") != NULL, "%s",
                  strbuf_str(&err));

    strbuf_release(&err);
    xfree(rsa); xfree(rsakey); xfree(ca); xfree(rsacrt); xfree(other); xfree(otherkey);
    xfree(missing); xfree(garbage);
}
END_TEST

Suite *tls_suite(void)
{
    Suite *s = suite_create("tls");
    TCase *tc = tcase_create("tls");
    tcase_set_timeout(tc, 60);
    tcase_add_checked_fixture(tc, setup_certs, remove_certs);
    tcase_add_test(tc, protocols_parse);
    tcase_add_test(tc, ciphers);
    tcase_add_test(tc, cert_loading);
    tcase_add_test(tc, handshakes);
    tcase_add_test(tc, handshake_timeout_and_garbage);
    tcase_add_test(tc, ticket_key_file);
    tcase_add_test(tc, fingerprint_format);
    tcase_add_test(tc, client_certificates);
    suite_add_tcase(s, tc);
    return s;
}
