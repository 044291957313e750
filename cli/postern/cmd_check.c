/*
 * cmd_check.c - `postern check`: is this instance able to run?
 *
 * Checks, each reported as "postern: warning: ..." or "postern: error: ..."
 * naming the file, line or path concerned:
 *   - main.cf parses (errors name file and line); parameters the table
 *     does not know are warnings (a typo is the usual cause);
 *   - master.cf parses; inet addresses are well-formed, unix names hold no
 *     '/'; fifo/pass services are warned about (not supported yet);
 *     each service's program exists in daemon_directory
 *     (missing: a warning, the master skips such a service) and is
 *     executable (a file that is not: an error);
 *   - queue_directory exists, is a directory, is not group or world
 *     writable; private/ (when present) is not accessible to others; as
 *     root: owned by root, with private/ owned by mail_owner;
 *   - as root: mail_owner and setgid_group exist, mail_owner is not root
 *     and its primary group (the daemons' group) is not setgid_group;
 *   - maildrop/ (mode 1730) and public/ (0710), when present, have their
 *     modes, and as root mail_owner as owner and setgid_group as group;
 *     command_directory/postdrop exists (else a warning) and, as root, is
 *     setgid setgid_group (else a warning: only root could submit);
 *   - each smtpd service, with its -o overrides: smtpd_tls_security_level,
 *     protocol lists and cipher grades parse; every configured certificate
 *     and key file loads and the key matches (missing, unreadable or
 *     mismatched: an error), so do smtpd_tls_CAfile / smtpd_tls_CApath
 *     (client certificate trust anchors) and smtpd_tls_fingerprint_digest
 *     must name a digest; a service that requires TLS (encrypt, wrapper
 *     mode) without any certificate is a warning (it refuses mail); with
 *     smtpd_sasl_auth_enable, a missing SMTPD_SASL_PATH.conf in
 *     cyrus_sasl_config_path is a warning;
 *   - the smtp client's settings (doc/smtp.md): smtp_tls_security_level
 *     is a known level, smtp_tcp_port a port, smtp_dns_resolver
 *     IPv4[:port], smtp_tls_CAfile readable, smtp_tls_policy_maps and
 *     smtp_sasl_password_maps open.
 * Exit 0 when there is no error (warnings allowed), 1 otherwise.
 */
#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "dns.h"
#include "maps.h"
#include "master_cf.h"
#include "mem.h"
#include "postern.h"
#include "service_addr.h"
#include "smtp_nexthop.h"
#include "strbuf.h"
#include "tls.h"

static int check_errors;

static void check_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void check_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("postern: error: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    check_errors++;
}

static void check_unknown(const char *name, const char *file, int line, void *ctx)
{
    (void)ctx;
    postern_warning("%s, line %d: unknown parameter %s", file, line, name);
}

static void check_programs(const struct master_service *list, const char *cf_path)
{
    const char *daemon_dir = config_str("daemon_directory");
    strbuf p;
    strbuf_init(&p);
    for (; list; list = list->next) {
        const char *cmd = list->argv[0];
        if (cmd[0] == '/')
            strbuf_set_str(&p, cmd);
        else
            strbuf_printf(&p, "%s/%s", daemon_dir, cmd);
        if (list->type == SERVICE_INET) {
            char *host, *port;
            strbuf why;
            strbuf_init(&why);
            if (service_addr_split(list->name, &host, &port, &why) < 0)
                check_error("%s, line %d: service %s: %s", cf_path, list->line,
                            list->name, strbuf_str(&why));
            else {
                xfree(host);
                xfree(port);
            }
            strbuf_release(&why);
        } else if (list->type == SERVICE_UNIX) {
            if (strchr(list->name, '/') || strcmp(list->name, ".") == 0
                || strcmp(list->name, "..") == 0)
                check_error("%s, line %d: service %s: a unix service name must not "
                            "contain '/'", cf_path, list->line, list->name);
        } else {
            postern_warning("%s, line %d: service %s: type %s is not supported yet "
                            "(the master skips it)", cf_path, list->line, list->name,
                            list->type_name);
        }
        struct stat st;
        if (stat(strbuf_str(&p), &st) < 0)
            postern_warning("%s, line %d: service %s: program %s: %s", cf_path,
                            list->line, list->name, strbuf_str(&p), strerror(errno));
        else if (!S_ISREG(st.st_mode) || access(strbuf_str(&p), X_OK) < 0)
            check_error("%s, line %d: service %s: program %s is not executable",
                        cf_path, list->line, list->name, strbuf_str(&p));
    }
    strbuf_release(&p);
}

/* maildrop/ and public/ (when present: the master creates them) and the
 * postdrop program: what local submission needs (doc/submission.md). */
static void check_submission(const char *qdir, uid_t owner)
{
    struct group *gr = geteuid() == 0 ? getgrnam(config_str("setgid_group")) : NULL;
    static const struct { const char *name; mode_t mode; } dirs[] = {
        { "maildrop", 01730 }, { "public", 0710 },
    };
    strbuf p;
    strbuf_init(&p);
    for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++) {
        struct stat st;
        strbuf_printf(&p, "%s/%s", qdir, dirs[i].name);
        if (stat(strbuf_str(&p), &st) < 0)
            continue;
        if ((st.st_mode & 07777) != dirs[i].mode)
            check_error("%s has mode %04o; it must be %04o", strbuf_str(&p),
                        (unsigned)(st.st_mode & 07777), (unsigned)dirs[i].mode);
        if (geteuid() == 0 && st.st_uid != owner)
            check_error("%s is owned by uid %ld, not mail_owner (uid %ld)",
                        strbuf_str(&p), (long)st.st_uid, (long)owner);
        if (gr && st.st_gid != gr->gr_gid)
            check_error("%s has group %ld, not setgid_group %s", strbuf_str(&p),
                        (long)st.st_gid, gr->gr_name);
    }
    /* A root instance's postdrop must be setgid setgid_group, or ordinary
     * users cannot submit (root still can): a warning. */
    strbuf_printf(&p, "%s/postdrop", config_str("command_directory"));
    struct stat st;
    if (stat(strbuf_str(&p), &st) < 0)
        postern_warning("%s: %s (sendmail cannot queue mail)", strbuf_str(&p), strerror(errno));
    else if (gr && (!(st.st_mode & S_ISGID) || st.st_gid != gr->gr_gid))
        postern_warning("%s is not setgid %s: only root can submit mail with sendmail "
                        "(chgrp %s %s; chmod 2755 %s)", strbuf_str(&p), gr->gr_name,
                        gr->gr_name, strbuf_str(&p), strbuf_str(&p));
    strbuf_release(&p);
}

/* What the smtp agent would refuse or warn about at start. */
static void check_smtp_client(void)
{
    static const char *const levels[] = { "", "none", "may", "encrypt", "verify", "secure", NULL };
    const char *level = config_str("smtp_tls_security_level");
    int known = 0;
    for (int i = 0; levels[i]; i++)
        known |= strcasecmp(level, levels[i]) == 0;
    if (!known)
        check_error("smtp_tls_security_level: unknown level \"%s\" (none, may, encrypt, "
                    "verify, secure)", level);
    if (smtp_port_parse(config_str("smtp_tcp_port")) < 0)
        check_error("smtp_tcp_port: bad port \"%s\"", config_str("smtp_tcp_port"));
    strbuf err;
    strbuf_init(&err);
    const char *resolver = config_str("smtp_dns_resolver");
    if (*resolver && dns_init(resolver, &err) < 0)
        check_error("smtp_dns_resolver: %s", strbuf_str(&err));
    const char *cafile = config_str("smtp_tls_CAfile");
    if (*cafile && access(cafile, R_OK) != 0)
        check_error("smtp_tls_CAfile %s: %s", cafile, strerror(errno));
    static const char *const tables[] = { "smtp_tls_policy_maps", "smtp_sasl_password_maps",
                                          NULL };
    for (int i = 0; tables[i]; i++) {
        maps *m = maps_open_param(tables[i], check_error);
        if (m)
            maps_close(m);
    }
    strbuf_release(&err);
}

static void check_spool(uid_t owner)
{
    const char *qdir = config_str("queue_directory");
    struct stat st;
    if (stat(qdir, &st) < 0) {
        check_error("queue_directory %s: %s", qdir, strerror(errno));
        return;
    }
    if (!S_ISDIR(st.st_mode)) {
        check_error("queue_directory %s is not a directory", qdir);
        return;
    }
    if (st.st_mode & 022)
        check_error("queue_directory %s is group or world writable (mode %03o)",
                    qdir, (unsigned)(st.st_mode & 07777));
    if (geteuid() == 0 && st.st_uid != 0)
        check_error("queue_directory %s is owned by uid %ld, not root", qdir,
                    (long)st.st_uid);
    strbuf p;
    strbuf_init(&p);
    strbuf_printf(&p, "%s/private", qdir);
    if (stat(strbuf_str(&p), &st) == 0) {
        if (st.st_mode & 07)
            check_error("%s is accessible to others (mode %03o); it must be 0700",
                        strbuf_str(&p), (unsigned)(st.st_mode & 07777));
        if (geteuid() == 0 && st.st_uid != owner)
            check_error("%s is owned by uid %ld, not mail_owner (uid %ld)",
                        strbuf_str(&p), (long)st.st_uid, (long)owner);
    }
    check_submission(qdir, owner);
    strbuf_release(&p);
}

/* A parameter as the service sees it: its -o override, else main.cf. */
static const char *svc_param(const struct master_service *svc, const char *name)
{
    for (int i = svc->noverrides - 1; i >= 0; i--)
        if (strcmp(svc->override_names[i], name) == 0)
            return svc->override_values[i];
    return config_str(name);
}

static void check_cert(const char *svc, const char *cert, const char *key)
{
    strbuf err;
    strbuf_init(&err);
    if (tls_check_cert_key(cert, key, &err) < 0)
        check_error("service %s: %s", svc, strbuf_str(&err));
    strbuf_release(&err);
}

/* smtpd_sasl_auth_enable: the Cyrus configuration file must exist where
 * cyrus_sasl_config_path says (without it Cyrus offers every installed
 * mechanism against a password store nobody configured). */
static void check_sasl(const struct master_service *svc)
{
    int enabled = 0;
    if (config_parse_bool(svc_param(svc, "smtpd_sasl_auth_enable"), &enabled) < 0) {
        check_error("service %s: bad smtpd_sasl_auth_enable", svc->name);
        return;
    }
    const char *path = svc_param(svc, "cyrus_sasl_config_path");
    if (!enabled || *path == '\0')
        return;
    const char *app = svc_param(svc, "smtpd_sasl_path");
    char *dirs = xstrdup(path);
    int found = 0;
    strbuf file;
    strbuf_init(&file);
    for (char *d = strtok(dirs, ":"); d && !found; d = strtok(NULL, ":")) {
        strbuf_printf(&file, "%s/%s.conf", d, app);
        found = access(strbuf_str(&file), R_OK) == 0;
    }
    if (!found)
        postern_warning("service %s: no readable %s.conf in cyrus_sasl_config_path %s",
                        svc->name, app, path);
    strbuf_release(&file);
    xfree(dirs);
}

static void check_tls(const struct master_service *list)
{
    strbuf err;
    strbuf_init(&err);
    for (; list; list = list->next) {
        const char *prog = strrchr(list->argv[0], '/');
        prog = prog ? prog + 1 : list->argv[0];
        if (strcmp(prog, "smtpd") != 0)
            continue;
        const char *name = list->name;
        check_sasl(list);
        const char *level = svc_param(list, "smtpd_tls_security_level");
        int wrapper = 0;
        if (config_parse_bool(svc_param(list, "smtpd_tls_wrappermode"), &wrapper) < 0) {
            check_error("service %s: bad smtpd_tls_wrappermode", name);
            continue;
        }
        int lvl = *level == '\0' || strcasecmp(level, "none") == 0 ? 0
            : strcasecmp(level, "may") == 0 ? 1 : strcasecmp(level, "encrypt") == 0 ? 2 : -1;
        if (lvl < 0) {
            check_error("service %s: unknown smtpd_tls_security_level \"%s\"", name, level);
            continue;
        }
        if (wrapper)
            lvl = 2;
        if (lvl == 0)
            continue;
        int minv, maxv, off;
        const char *pnames[] = { "smtpd_tls_protocols", "smtpd_tls_mandatory_protocols" };
        for (int i = 0; i < 2; i++) {
            strbuf_reset(&err);
            if (tls_parse_protocols(svc_param(list, pnames[i]), &minv, &maxv, &off, &err) < 0)
                check_error("service %s: %s: %s", name, pnames[i], strbuf_str(&err));
        }
        const char *gnames[] = { "smtpd_tls_ciphers", "smtpd_tls_mandatory_ciphers" };
        for (int i = 0; i < 2; i++)
            if (tls_cipherlist_param(svc_param(list, gnames[i])) == NULL)
                check_error("service %s: %s: unknown cipher grade \"%s\"", name, gnames[i],
                            svc_param(list, gnames[i]));
        const char *cert = svc_param(list, "smtpd_tls_cert_file");
        const char *eccert = svc_param(list, "smtpd_tls_eccert_file");
        const char *chains = svc_param(list, "smtpd_tls_chain_files");
        if (*cert)
            check_cert(name, cert, svc_param(list, "smtpd_tls_key_file"));
        if (*eccert)
            check_cert(name, eccert, svc_param(list, "smtpd_tls_eckey_file"));
        int n;
        char **files = config_list(chains, &n);
        for (int i = 0; i < n; i++)
            check_cert(name, files[i], files[i]);
        config_list_free(files);
        const char *cafile = svc_param(list, "smtpd_tls_CAfile");
        const char *capath = svc_param(list, "smtpd_tls_CApath");
        strbuf_reset(&err);
        if ((*cafile || *capath) && tls_check_ca(cafile, capath, &err) < 0)
            check_error("service %s: smtpd_tls_CAfile/CApath: %s", name, strbuf_str(&err));
        const char *digest = svc_param(list, "smtpd_tls_fingerprint_digest");
        strbuf_reset(&err);
        strbuf fp;
        strbuf_init(&fp);
        if (*digest && tls_fingerprint((const unsigned char *)"", 0, digest, &fp, &err) < 0)
            check_error("service %s: smtpd_tls_fingerprint_digest: %s", name, strbuf_str(&err));
        strbuf_release(&fp);
        if (!*cert && !*eccert && n == 0)
            postern_warning("service %s: TLS is %s but no certificate is configured "
                            "(smtpd_tls_cert_file): %s", name,
                            lvl == 2 ? "required" : "offered",
                            lvl == 2 ? "the service refuses mail" : "STARTTLS is not offered");
    }
    strbuf_release(&err);
}

int postern_cmd_check(int argc, char **argv)
{
    if (argc != 1)
        postern_fatal("usage: postern check");
    strbuf err;
    strbuf_init(&err);
    if (config_load(postern_config_dir(), &err) < 0) {
        check_error("%s", strbuf_str(&err));
        return 1;
    }
    config_unknown(check_unknown, NULL);

    uid_t owner = getuid();
    if (geteuid() == 0) {
        const char *user = config_str("mail_owner");
        const char *group = config_str("setgid_group");
        struct passwd *pw = getpwnam(user);
        if (!pw)
            check_error("mail_owner %s: no such user (create it: useradd --system "
                        "--user-group --no-create-home --home-dir /nonexistent "
                        "--shell /usr/sbin/nologin %s)", user, user);
        else if (pw->pw_uid == 0)
            check_error("mail_owner %s has uid 0: the daemons must not run as root", user);
        else
            owner = pw->pw_uid;
        gid_t owner_gid = pw ? pw->pw_gid : (gid_t)-1;
        struct group *gr = getgrnam(group);
        if (!gr)
            check_error("setgid_group %s: no such group (create it: groupadd --system %s)",
                        group, group);
        else if (pw && owner_gid == gr->gr_gid)
            check_error("mail_owner %s has setgid_group %s as its primary group: the "
                        "daemons would hold it (give %s a group of its own: usermod -g)",
                        user, group, user);
    }

    strbuf cf_path;
    strbuf_init(&cf_path);
    strbuf_printf(&cf_path, "%s/master.cf", config_dir());
    struct master_service *list = NULL;
    strbuf_reset(&err);
    if (master_cf_load(strbuf_str(&cf_path), &list, &err) < 0) {
        check_error("%s", strbuf_str(&err));
    } else {
        check_programs(list, strbuf_str(&cf_path));
        check_tls(list);
        master_cf_free(list);
    }
    check_spool(owner);
    check_smtp_client();
    strbuf_release(&cf_path);
    strbuf_release(&err);
    return check_errors ? 1 : 0;
}
