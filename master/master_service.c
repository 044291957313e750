/*
 * master_service.c - master.cf entries to services with open listeners.
 *
 * Interface (master.h): master_services_build(), master_services_free(),
 * master_dirs_create().
 *
 * Listeners: inet `[host]:port`, `host:port` or `port` (a number or a
 * service name); without a host, one service per inet_interfaces address
 * ("all" = the wildcard address, "loopback-only" = 127.0.0.1).  unix
 * sockets live at queue_directory/private/NAME or public/NAME by the
 * private column, mode 0666 (access is the directory's business).  Every
 * listener is non-blocking (the master polls it, children accept from it),
 * SO_REUSEADDR, backlog SOMAXCONN.  fifo and pass services are not
 * supported yet: warned about and skipped.  A service whose program does
 * not exist or is not executable is warned about once per (re)load and
 * skipped, so an instance runs while pieces are missing.
 *
 * Contract: on reload a listener whose sock_id (address) is unchanged is
 * handed over to the new service as is, so no connection waiting in its
 * backlog is lost and the children still holding it stay valid.
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "config.h"
#include "log.h"
#include "master.h"
#include "mem.h"
#include "privs.h"
#include "queue.h"
#include "service_addr.h"

static void svc_free(struct master_svc *s)
{
    if (s->borrowed)                    /* the fds still belong to the old list */
        s->listen_fd = s->status_rd = s->status_wr = -1;
    if (s->listen_fd >= 0) {
        close(s->listen_fd);
        if (s->unix_path)               /* a closed service: no stale socket */
            (void)unlink(s->unix_path);
    }
    if (s->status_rd >= 0)
        close(s->status_rd);
    if (s->status_wr >= 0)
        close(s->status_wr);
    xfree(s->key);
    xfree(s->name);
    xfree(s->type_name);
    xfree(s->sock_id);
    xfree(s->unix_path);
    xfree(s->program);
    if (s->argv)
        for (char **a = s->argv; *a; a++)
            xfree(*a);
    xfree(s->argv);
    xfree(s);
}

void master_services_free(struct master_svc *list)
{
    while (list) {
        struct master_svc *next = list->next;
        svc_free(list);
        list = next;
    }
}

static int open_inet_listener(const char *host, const char *port, strbuf *err)
{
    const char *protocols = config_str("inet_protocols");
    int want4 = strstr(protocols, "ipv4") || strstr(protocols, "all");
    int want6 = strstr(protocols, "ipv6") || strstr(protocols, "all");
    struct addrinfo hints, *res = NULL, *ai;
    memset(&hints, 0, sizeof(hints));
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE;
    hints.ai_family = want4 && !want6 ? AF_INET : (want6 && !want4 ? AF_INET6 : AF_UNSPEC);
    /* The wildcard with both protocols: one dual-stack IPv6 socket when the
     * host has IPv6, else IPv4. */
    const char *lookup_host = host;
    if (!host && want6)
        lookup_host = "::";
    int rc = getaddrinfo(lookup_host, port, &hints, &res);
    if (rc != 0 && !host && want6 && want4) {
        lookup_host = "0.0.0.0";
        rc = getaddrinfo(lookup_host, port, &hints, &res);
    }
    if (rc != 0) {
        strbuf_printf(err, "%s:%s: %s", host ? host : "*", port, gai_strerror(rc));
        return -1;
    }
    int fd = -1, saved = 0;
    for (ai = res; ai; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK,
                    ai->ai_protocol);
        if (fd < 0) {
            saved = errno;
            continue;
        }
        int on = 1, off = 0;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
        if (ai->ai_family == AF_INET6)
            setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, host || !want4 ? &on : &off,
                       sizeof(int));
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, SOMAXCONN) == 0)
            break;
        saved = errno;
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0 && !host && want4 && want6 && lookup_host && strcmp(lookup_host, "::") == 0)
        return open_inet_listener("0.0.0.0", port, err);
    if (fd < 0)
        strbuf_printf(err, "bind %s%s%s:%s: %s", host && strchr(host, ':') ? "[" : "",
                      host ? host : "*", host && strchr(host, ':') ? "]" : "", port,
                      strerror(saved));
    return fd;
}

static int open_unix_listener(const char *path, strbuf *err)
{
    struct sockaddr_un sun;
    memset(&sun, 0, sizeof(sun));
    sun.sun_family = AF_UNIX;
    if (strlen(path) >= sizeof(sun.sun_path)) {
        strbuf_printf(err, "socket path too long: %s", path);
        return -1;
    }
    strcpy(sun.sun_path, path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        strbuf_printf(err, "socket: %s", strerror(errno));
        return -1;
    }
    (void)unlink(path);
    if (bind(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0
        || chmod(path, 0666) < 0 || listen(fd, SOMAXCONN) < 0) {
        strbuf_printf(err, "bind %s: %s", path, strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

/* The child's argv: PROGRAM -n NAME -t TYPE -c DIR [-u] [-r] [-v]... ARGS */
static char **child_argv(const struct master_service *cf, const char *program)
{
    int n = 0, cap = cf->argc + 16 + log_verbose;
    char **argv = xcalloc((size_t)cap, sizeof(char *));
    argv[n++] = xstrdup(program);
    argv[n++] = xstrdup("-n");
    argv[n++] = xstrdup(cf->name);
    argv[n++] = xstrdup("-t");
    argv[n++] = xstrdup(cf->type_name);
    argv[n++] = xstrdup("-c");
    argv[n++] = xstrdup(config_dir());
    if (cf->unpriv)
        argv[n++] = xstrdup("-u");
    if (cf->chroot)
        argv[n++] = xstrdup("-r");
    for (int v = 0; v < log_verbose; v++)
        argv[n++] = xstrdup("-v");
    for (int i = 1; i < cf->argc; i++)
        argv[n++] = xstrdup(cf->argv[i]);
    argv[n] = NULL;
    return argv;
}

static struct master_svc *find_by_sock(struct master_svc *list, const char *sock_id)
{
    for (; list; list = list->next)
        if (list->listen_fd >= 0 && strcmp(list->sock_id, sock_id) == 0)
            return list;
    return NULL;
}

/* One service for one listener; appended to *tail.  0 ok, -1 err set. */
static int add_service(const struct master_service *cf, const char *host,
                       const char *port, const char *program,
                       struct master_svc *old, struct master_svc ***tail,
                       strbuf *err)
{
    struct master_svc *s = xcalloc(1, sizeof(*s));
    s->listen_fd = s->status_rd = s->status_wr = -1;
    s->name = xstrdup(cf->name);
    s->type_name = xstrdup(cf->type_name);
    s->type = cf->type;
    s->line = cf->line;
    s->program = xstrdup(program);
    s->argv = child_argv(cf, program);
    s->wakeup = cf->wakeup;
    s->wakeup_conditional = cf->wakeup_conditional;
    s->maxproc = cf->maxproc < 0 ? (int)config_int("default_process_limit") : cf->maxproc;
    strbuf sb;
    strbuf_init(&sb);
    if (cf->type == SERVICE_INET) {
        int v6 = host && strchr(host, ':');
        strbuf_printf(&sb, "inet:%s%s%s:%s", v6 ? "[" : "", host ? host : "*",
                      v6 ? "]" : "", port);
        s->sock_id = xstrdup(strbuf_str(&sb));
        strbuf_printf(&sb, "%s/%s/%s", cf->name, cf->type_name, host ? host : "*");
        s->key = xstrdup(strbuf_str(&sb));
    } else {
        strbuf_printf(&sb, "%s/%s/%s", config_str("queue_directory"),
                      cf->private_ ? "private" : "public", cf->name);
        s->unix_path = xstrdup(strbuf_str(&sb));
        strbuf_printf(&sb, "unix:%s", s->unix_path);
        s->sock_id = xstrdup(strbuf_str(&sb));
        strbuf_printf(&sb, "%s/%s", cf->name, cf->type_name);
        s->key = xstrdup(strbuf_str(&sb));
    }
    strbuf_release(&sb);

    struct master_svc *prev = find_by_sock(old, s->sock_id);
    if (prev) {
        /* Same address: take over the listener and the status pipe (the old
         * list lets go of them only once the whole build succeeded). */
        s->listen_fd = prev->listen_fd;
        s->status_rd = prev->status_rd;
        s->status_wr = prev->status_wr;
        s->status_part_len = prev->status_part_len;
        memcpy(s->status_part, prev->status_part, prev->status_part_len);
        s->borrowed = 1;
    } else {
        s->listen_fd = cf->type == SERVICE_INET
            ? open_inet_listener(host, port, err)
            : open_unix_listener(s->unix_path, err);
        if (s->listen_fd < 0) {
            svc_free(s);
            return -1;
        }
        int p[2];
        if (pipe2(p, O_CLOEXEC) < 0) {
            strbuf_printf(err, "pipe: %s", strerror(errno));
            svc_free(s);
            return -1;
        }
        s->status_rd = p[0];
        s->status_wr = p[1];
        (void)fcntl(s->status_rd, F_SETFL, O_NONBLOCK);
    }
    **tail = s;
    *tail = &s->next;
    return 0;
}

int master_services_build(struct master_service *cf, struct master_svc *old,
                          struct master_svc **out, strbuf *err)
{
    struct master_svc *list = NULL, **tail = &list;
    const char *daemon_dir = config_str("daemon_directory");
    strbuf program;
    strbuf_init(&program);
    *out = NULL;

    for (; cf; cf = cf->next) {
        if (cf->type != SERVICE_INET && cf->type != SERVICE_UNIX) {
            log_warning("service %s: type %s is not supported yet -- skipped",
                        cf->name, cf->type_name);
            continue;
        }
        const char *cmd = cf->argv[0];
        if (cmd[0] == '/')
            strbuf_set_str(&program, cmd);
        else
            strbuf_printf(&program, "%s/%s", daemon_dir, cmd);
        if (access(strbuf_str(&program), X_OK) < 0) {
            log_warning("service %s: program %s not found", cf->name,
                        strbuf_str(&program));
            continue;
        }
        int rc = 0;
        if (cf->type == SERVICE_UNIX && (strchr(cf->name, '/') || strcmp(cf->name, ".") == 0
                                         || strcmp(cf->name, "..") == 0)) {
            log_warning("service %s (master.cf line %d): a unix service name must not "
                        "contain '/' -- skipped", cf->name, cf->line);
            continue;
        }
        if (cf->type == SERVICE_UNIX) {
            rc = add_service(cf, NULL, NULL, strbuf_str(&program), old, &tail, err);
        } else {
            char *host, *port;
            if (service_addr_split(cf->name, &host, &port, err) < 0) {
                log_warning("service %s (master.cf line %d): %s -- skipped", cf->name,
                            cf->line, strbuf_str(err));
                strbuf_reset(err);
                continue;
            }
            if (host) {
                rc = add_service(cf, host, port, strbuf_str(&program), old, &tail, err);
            } else {
                const char *ifaces = config_str("inet_interfaces");
                int n = 0;
                char **list_if = config_list(ifaces, &n);
                if (n == 0 || strcmp(list_if[0], "all") == 0) {
                    rc = add_service(cf, NULL, port, strbuf_str(&program), old, &tail, err);
                } else {
                    for (int i = 0; i < n && rc == 0; i++) {
                        const char *h = list_if[i];
                        if (strcmp(h, "loopback-only") == 0 || strcmp(h, "localhost") == 0)
                            h = "127.0.0.1";
                        rc = add_service(cf, h, port, strbuf_str(&program), old, &tail, err);
                    }
                }
                config_list_free(list_if);
            }
            xfree(host);
            xfree(port);
        }
        if (rc < 0) {
            strbuf tmp;
            strbuf_init(&tmp);
            strbuf_printf(&tmp, "service %s (master.cf line %d): %s", cf->name,
                          cf->line, strbuf_str(err));
            strbuf_set_str(err, strbuf_str(&tmp));
            strbuf_release(&tmp);
            master_services_free(list);  /* borrowed fds stay with old */
            strbuf_release(&program);
            return -1;
        }
    }
    strbuf_release(&program);
    /* Success: the old list gives up what the new one took over. */
    for (struct master_svc *s = list; s; s = s->next) {
        if (!s->borrowed)
            continue;
        for (struct master_svc *o = old; o; o = o->next)
            if (o->listen_fd == s->listen_fd)
                o->listen_fd = o->status_rd = o->status_wr = -1;
        s->borrowed = 0;
    }
    *out = list;
    return 0;
}

static int make_dir(const char *path, mode_t mode, uid_t uid, gid_t gid, strbuf *err)
{
    if (mkdir(path, mode) < 0 && errno != EEXIST) {
        strbuf_printf(err, "mkdir %s: %s", path, strerror(errno));
        return -1;
    }
    if (geteuid() == 0 && chown(path, uid, gid) < 0) {
        strbuf_printf(err, "chown %s: %s", path, strerror(errno));
        return -1;
    }
    if (chmod(path, mode) < 0) {
        strbuf_printf(err, "chmod %s: %s", path, strerror(errno));
        return -1;
    }
    return 0;
}

int master_dirs_create(strbuf *err)
{
    const char *qdir = config_str("queue_directory");
    uid_t uid = getuid();
    gid_t gid = getgid();           /* mail_owner's primary group */
    gid_t submit_gid = getgid();    /* setgid_group: maildrop/ and public/ */
    if (geteuid() == 0) {
        uid_t unused;
        if (privs_lookup(config_str("mail_owner"), NULL, &uid, &gid, err) < 0
            || privs_lookup(config_str("mail_owner"), config_str("setgid_group"),
                            &unused, &submit_gid, err) < 0)
            return -1;
    }
    struct stat st;
    if (stat(qdir, &st) < 0 || !S_ISDIR(st.st_mode)) {
        strbuf_printf(err, "queue_directory %s: %s", qdir,
                      errno ? strerror(errno) : "not a directory");
        return -1;
    }
    strbuf path;
    strbuf_init(&path);
    int rc = 0;
    strbuf_printf(&path, "%s/pid", qdir);
    rc |= make_dir(strbuf_str(&path), 0755, 0, 0, err);
    strbuf_printf(&path, "%s/private", qdir);
    if (rc == 0)
        rc |= make_dir(strbuf_str(&path), 0700, uid, gid, err);
    strbuf_printf(&path, "%s/public", qdir);
    if (rc == 0)
        rc |= make_dir(strbuf_str(&path), 0710, uid, submit_gid, err);
    strbuf_release(&path);
    if (rc == 0 && queue_dirs_create(qdir, uid, gid, submit_gid) < 0) {
        strbuf_printf(err, "cannot create the queue directories under %s: %s",
                      qdir, strerror(errno));
        rc = -1;
    }
    return rc ? -1 : 0;
}
