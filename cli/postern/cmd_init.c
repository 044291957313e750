/*
 * cmd_init.c - `postern init DIR [--port N]`: create a self-contained
 * instance (DESIGN.md, "Instances").
 *
 * DIR gets main.cf, master.cf and aliases made from the shipped templates,
 * and everything else lives under it too:
 *     DIR/spool      queue_directory (sockets, queue, pid file)
 *     DIR/data       data_directory
 *     DIR/log/maillog   maillog_file
 *     DIR/mail/      mail_spool_directory; the trailing slash = Maildir,
 *                    so mail for USER lands in DIR/mail/USER/new/
 * main.cf additionally gets: daemon_directory and command_directory = the
 * absolute libexec/ and bin/ next to this postern binary (when they exist),
 * alias_maps = alias_database = texthash:DIR/aliases (no database build),
 * myhostname = localhost.localdomain, mydomain = localdomain, mydestination
 * = $myhostname, localhost.$mydomain, localhost, inet_interfaces =
 * 127.0.0.1, mynetworks = 127.0.0.0/8.  local_recipient_maps keeps its
 * default.  master.cf: smtp listens on 127.0.0.1:N (default 2525),
 * submission on 127.0.0.1:N+1, submissions (implicit TLS) on N+2; the
 * latter two refuse mail until main.cf names a certificate (doc/tls.md).
 *
 * Run by a non-root user: mail_owner = that user, setgid_group = that
 * user's primary group, and no service is chrooted.  Run by root:
 * mail_owner = postern, setgid_group = postdrop (both must exist; if not,
 * init fails printing the exact groupadd/useradd commands), and smtpd,
 * cleanup, pickup and smtp keep the template's chroot.
 *
 * Templates are looked up in this order: $POSTERN_ETC_DIR; the source
 * tree's etc/ when postern runs from BUILD/bin inside it
 * (/proc/self/exe/../../etc); EXE/../share/postern; POSTERN_DATADIR
 * (compiled in, default /usr/local/share/postern, where `make install`
 * will put them).
 *
 * The queue directories (queue_dirs_create: owned by mail_owner and its
 * primary group, except maildrop/ 1730 and public/ 0710 whose group is
 * setgid_group) are made at once, so local submission works before the
 * first start.  As root, init refuses a postern account whose primary
 * group is postdrop: the daemons run with that group.
 *
 * Contract: init refuses a DIR that already holds a main.cf, and leaves
 * nothing half-written there on most failures (it checks accounts and
 * templates before writing).
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "mem.h"
#include "postern.h"
#include "queue.h"
#include "strbuf.h"

#ifndef POSTERN_DATADIR
#define POSTERN_DATADIR "/usr/local/share/postern"
#endif

static int read_file(const char *path, strbuf *out)
{
    FILE *fp = fopen(path, "r");
    if (!fp)
        return -1;
    char buf[8192];
    size_t n;
    strbuf_reset(out);
    while ((n = fread(buf, 1, sizeof(buf), fp)) > 0)
        strbuf_append(out, buf, n);
    int bad = ferror(fp);
    fclose(fp);
    return bad ? -1 : 0;
}

static void write_file(const char *path, const strbuf *content, mode_t mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
    if (fd < 0)
        postern_fatal("create %s: %s", path, strerror(errno));
    size_t off = 0;
    while (off < content->len) {
        ssize_t w = write(fd, content->data + off, content->len - off);
        if (w <= 0)
            postern_fatal("write %s: %s", path, strerror(errno));
        off += (size_t)w;
    }
    if (fsync(fd) < 0 || close(fd) < 0)
        postern_fatal("write %s: %s", path, strerror(errno));
}

/* Directory of the running executable (realpath), or NULL. */
static char *exe_dir(void)
{
    char *exe = realpath("/proc/self/exe", NULL);
    if (!exe)
        return NULL;
    char *slash = strrchr(exe, '/');
    if (slash)
        *slash = '\0';
    return exe;
}

static int is_file(const char *dir, const char *name)
{
    strbuf p;
    strbuf_init(&p);
    strbuf_printf(&p, "%s/%s", dir, name);
    struct stat st;
    int ok = stat(strbuf_str(&p), &st) == 0 && S_ISREG(st.st_mode);
    strbuf_release(&p);
    return ok;
}

static char *find_templates(const char *bindir)
{
    const char *env = getenv("POSTERN_ETC_DIR");
    if (env && *env) {
        if (!is_file(env, "main.cf"))
            postern_fatal("POSTERN_ETC_DIR=%s: no main.cf template there", env);
        return xstrdup(env);
    }
    strbuf p;
    strbuf_init(&p);
    if (bindir) {
        strbuf_printf(&p, "%s/../../etc", bindir);
        char *r = realpath(strbuf_str(&p), NULL);
        if (r && is_file(r, "main.cf") && is_file(r, "master.cf")) {
            strbuf_release(&p);
            return r;
        }
        free(r);
        strbuf_printf(&p, "%s/../share/postern", bindir);
        r = realpath(strbuf_str(&p), NULL);
        if (r && is_file(r, "main.cf")) {
            strbuf_release(&p);
            return r;
        }
        free(r);
    }
    strbuf_release(&p);
    if (is_file(POSTERN_DATADIR, "main.cf"))
        return xstrdup(POSTERN_DATADIR);
    postern_fatal("cannot find the main.cf/master.cf templates (looked in "
                  "$POSTERN_ETC_DIR, %s/../../etc, %s/../share/postern and %s)",
                  bindir ? bindir : "?", bindir ? bindir : "?", POSTERN_DATADIR);
}

/*
 * The instance's master.cf from the template: smtp, submission and
 * submissions move to 127.0.0.1:PORT, :PORT+1 and :PORT+2, and without root nothing is chrooted.  Only
 * the columns are touched; comments and arguments stay as they are.
 */
static void rewrite_master_cf(const strbuf *in, strbuf *out, int port, int chroot_ok)
{
    const char *p = in->data ? in->data : "";
    const char *end = p + in->len;
    strbuf_reset(out);
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *eol = nl ? nl : end;
        size_t len = (size_t)(eol - p);
        if (len == 0 || p[0] == '#' || p[0] == ' ' || p[0] == '\t') {
            strbuf_append(out, p, len);
        } else {
            /* Split the first 7 columns; keep the rest verbatim. */
            char *line = xstrndup(p, len);
            char *field[7];
            int nf = 0;
            char *q = line;
            while (nf < 7) {
                while (*q == ' ' || *q == '\t')
                    q++;
                if (!*q)
                    break;
                field[nf++] = q;
                while (*q && *q != ' ' && *q != '\t')
                    q++;
                if (*q)
                    *q++ = '\0';
            }
            while (*q == ' ' || *q == '\t')
                q++;
            if (nf < 7) {
                strbuf_append(out, p, len);
            } else {
                strbuf name;
                strbuf_init(&name);
                strbuf_set_str(&name, field[0]);
                if (strcmp(field[1], "inet") == 0 && strcmp(field[0], "smtp") == 0)
                    strbuf_printf(&name, "127.0.0.1:%d", port);
                else if (strcmp(field[1], "inet") == 0 && strcmp(field[0], "submission") == 0)
                    strbuf_printf(&name, "127.0.0.1:%d", port + 1);
                else if (strcmp(field[1], "inet") == 0 && strcmp(field[0], "submissions") == 0)
                    strbuf_printf(&name, "127.0.0.1:%d", port + 2);
                strbuf_appendf(out, "%-15s %-5s %-7s %-7s %-7s %-7s %-7s %s",
                               strbuf_str(&name), field[1], field[2], field[3],
                               chroot_ok ? field[4] : "n", field[5], field[6], q);
                strbuf_rtrim(out);
                strbuf_release(&name);
            }
            xfree(line);
        }
        if (nl)
            strbuf_append_char(out, '\n');
        p = nl ? nl + 1 : end;
    }
}

static void make_dir(const char *path, mode_t mode, uid_t uid, gid_t gid)
{
    if (mkdir(path, mode) < 0 && errno != EEXIST)
        postern_fatal("mkdir %s: %s", path, strerror(errno));
    if (geteuid() == 0 && chown(path, uid, gid) < 0)
        postern_fatal("chown %s: %s", path, strerror(errno));
    if (chmod(path, mode) < 0)
        postern_fatal("chmod %s: %s", path, strerror(errno));
}

int postern_cmd_init(int argc, char **argv)
{
    const char *dir_arg = NULL;
    int port = 2525;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--port") == 0 && i + 1 < argc) {
            char *e;
            long v = strtol(argv[++i], &e, 10);
            if (*e || v < 1 || v > 65533)
                postern_fatal("bad --port: %s (1..65533)", argv[i]);
            port = (int)v;
        } else if (argv[i][0] == '-' || dir_arg) {
            postern_fatal("usage: postern init DIR [--port N]");
        } else {
            dir_arg = argv[i];
        }
    }
    if (!dir_arg)
        postern_fatal("usage: postern init DIR [--port N]");

    /* Accounts first: nothing is written when they are missing. */
    int root = geteuid() == 0;
    const char *owner, *group;
    char *owner_copy = NULL, *group_copy = NULL;    /* getpw*() buffers are reused */
    uid_t uid = getuid();
    gid_t gid = getgid();           /* mail_owner's primary group */
    gid_t submit_gid = getgid();    /* setgid_group: maildrop/ and public/ */
    if (root) {
        owner = "postern";
        group = "postdrop";
        struct passwd *pw = getpwnam(owner);
        struct group *gr = getgrnam(group);
        if (!pw || !gr)
            postern_fatal("a root instance needs the user %s and the group %s; create them with:\n"
                          "    groupadd --system postdrop\n"
                          "    useradd --system --user-group --no-create-home "
                          "--home-dir /nonexistent --shell /usr/sbin/nologin postern",
                          owner, group);
        if (pw->pw_gid == gr->gr_gid)
            postern_fatal("the user %s has %s as its primary group: the daemons would "
                          "hold it; give %s a group of its own (usermod -g)",
                          owner, group, owner);
        uid = pw->pw_uid;
        gid = pw->pw_gid;
        submit_gid = gr->gr_gid;
    } else {
        struct passwd *pw = getpwuid(uid);
        struct group *gr = getgrgid(gid);
        if (!pw || !gr)
            postern_fatal("the current uid %ld / gid %ld has no name", (long)uid, (long)gid);
        owner = owner_copy = xstrdup(pw->pw_name);
        group = group_copy = xstrdup(gr->gr_name);
    }

    if (mkdir(dir_arg, 0755) < 0 && errno != EEXIST)
        postern_fatal("mkdir %s: %s", dir_arg, strerror(errno));
    char *dir = realpath(dir_arg, NULL);
    if (!dir)
        postern_fatal("%s: %s", dir_arg, strerror(errno));
    if (is_file(dir, "main.cf"))
        postern_fatal("%s/main.cf already exists: not overwriting an instance", dir);

    char *bindir = exe_dir();
    char *etc = find_templates(bindir);
    strbuf path, text, out;
    strbuf_init(&path);
    strbuf_init(&text);
    strbuf_init(&out);

    strbuf_printf(&path, "%s/master.cf", etc);
    if (read_file(strbuf_str(&path), &text) < 0)
        postern_fatal("read %s: %s", strbuf_str(&path), strerror(errno));
    rewrite_master_cf(&text, &out, port, root);
    strbuf_printf(&path, "%s/aliases", etc);
    if (read_file(strbuf_str(&path), &text) < 0)
        postern_fatal("read %s: %s", strbuf_str(&path), strerror(errno));
    strbuf_printf(&path, "%s/aliases", dir);
    write_file(strbuf_str(&path), &text, 0644);
    strbuf_printf(&path, "%s/master.cf", dir);
    write_file(strbuf_str(&path), &out, 0644);
    strbuf_printf(&path, "%s/main.cf", etc);
    if (read_file(strbuf_str(&path), &text) < 0)
        postern_fatal("read %s: %s", strbuf_str(&path), strerror(errno));
    strbuf_printf(&path, "%s/main.cf", dir);
    write_file(strbuf_str(&path), &text, 0644);

    /* Directories. */
    strbuf_printf(&path, "%s/spool", dir);
    make_dir(strbuf_str(&path), 0755, 0, 0);
    strbuf_printf(&path, "%s/data", dir);
    make_dir(strbuf_str(&path), 0700, uid, gid);
    strbuf_printf(&path, "%s/log", dir);
    make_dir(strbuf_str(&path), 0755, 0, 0);
    strbuf_printf(&path, "%s/mail", dir);
    /* Root instance: local delivers as each recipient, who must be able to
     * create DIR/mail/USER/; sticky like /tmp. */
    make_dir(strbuf_str(&path), root ? 01777 : 0700, 0, 0);

    /* main.cf settings of this instance. */
    char *daemon_dir = NULL, *command_dir = NULL;
    if (bindir) {
        strbuf_printf(&path, "%s/../libexec", bindir);
        daemon_dir = realpath(strbuf_str(&path), NULL);
        command_dir = xstrdup(bindir);
    }
    strbuf a[16];
    int na = 0;
    for (int i = 0; i < 16; i++)
        strbuf_init(&a[i]);
    strbuf_printf(&a[na++], "queue_directory=%s/spool", dir);
    strbuf_printf(&a[na++], "data_directory=%s/data", dir);
    if (daemon_dir)
        strbuf_printf(&a[na++], "daemon_directory=%s", daemon_dir);
    if (command_dir)
        strbuf_printf(&a[na++], "command_directory=%s", command_dir);
    strbuf_printf(&a[na++], "maillog_file=%s/log/maillog", dir);
    strbuf_printf(&a[na++], "mail_spool_directory=%s/mail/", dir);
    strbuf_printf(&a[na++], "alias_maps=texthash:%s/aliases", dir);
    strbuf_printf(&a[na++], "alias_database=texthash:%s/aliases", dir);
    strbuf_printf(&a[na++], "mail_owner=%s", owner);
    strbuf_printf(&a[na++], "setgid_group=%s", group);
    strbuf_printf(&a[na++], "myhostname=localhost.localdomain");
    strbuf_printf(&a[na++], "mydomain=localdomain");
    strbuf_printf(&a[na++], "mydestination=$myhostname, localhost.$mydomain, localhost");
    strbuf_printf(&a[na++], "inet_interfaces=127.0.0.1");
    strbuf_printf(&a[na++], "mynetworks=127.0.0.0/8");
    char *assign[16];
    for (int i = 0; i < na; i++)
        assign[i] = (char *)strbuf_str(&a[i]);
    strbuf err;
    strbuf_init(&err);
    if (config_edit(dir, assign, na, &err) < 0)
        postern_fatal("%s", strbuf_str(&err));
    /* The queue directories now, so sendmail works before the first start
     * (maildrop/ 1730 and public/ 0710 with group setgid_group). */
    strbuf_printf(&path, "%s/spool", dir);
    if (queue_dirs_create(strbuf_str(&path), uid, gid, submit_gid) < 0)
        postern_fatal("create the queue directories in %s: %s", strbuf_str(&path),
                      strerror(errno));

    printf("postern: created the instance %s\n"
           "    start it:   postern -c %s start   (or make run)\n"
           "    SMTP:       127.0.0.1:%d, submission 127.0.0.1:%d, submissions "
           "127.0.0.1:%d\n"
           "                (submission and submissions need TLS: set smtpd_tls_cert_file)\n"
           "    log:        %s/log/maillog\n"
           "    mailboxes:  %s/mail/USER/new/\n",
           dir, dir, port, port + 1, port + 2, dir, dir);
    for (int i = 0; i < 16; i++)
        strbuf_release(&a[i]);
    strbuf_release(&err);
    strbuf_release(&path);
    strbuf_release(&text);
    strbuf_release(&out);
    free(daemon_dir);
    xfree(command_dir);
    free(bindir);
    free(etc);
    free(dir);
    xfree(owner_copy);
    xfree(group_copy);
    return 0;
}
