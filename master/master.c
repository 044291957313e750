/*
 * master.c - the supervisor: opens every listener, forks and watches the
 * daemons of master.cf.
 *
 * Usage: master [-c config_dir] [-f] [-v]
 *   -c   the instance (else $POSTERN_CONFIG_DIR, else /etc/postern)
 *   -f   stay in the foreground (make run); -d is a synonym
 *   -v   verbose logging, passed on to the children
 *
 * Startup, in order: read main.cf and master.cf (errors go to stderr, exit
 * 1); create pid/, private/, public/ and the queue directories; unless -f,
 * fork: the parent waits on a pipe and exits 0 only once the child reports
 * that it holds the lock and every listener is open (so `postern start`
 * returns when the mail system is serving), else 1; the child calls
 * setsid().  Then: lock queue_directory/pid/master.pid (a second master is
 * refused: "the mail system is already running"), open the listeners, log
 * "daemon started -- version V, configuration DIR", point stdio at
 * /dev/null (unless -f) and run the event loop.
 *
 * Event loop: poll() over the signal self-pipe, every status pipe, and the
 * listener of every service that may fork (a connection pending, no idle
 * child, below maxproc, not throttled); timers for wakeups and throttles.
 * A service with a wakeup column is woken at once at start and after a
 * reload, then every `wakeup` seconds, and one second after a process of
 * it ended (master_child.c).
 * Signals: SIGCHLD reaps; SIGHUP reloads main.cf and master.cf (listeners
 * whose address is unchanged are kept, the others opened or closed; every
 * running child is sent SIGTERM, which makes an idle one exit at once and a
 * busy one finish its session first, so new children pick up the new
 * configuration and no session is cut; a configuration that does not load
 * is logged and the old one stays); SIGTERM and SIGINT stop: listeners
 * closed, children SIGTERMed and waited for up to 5 seconds -- or, while
 * a qmgr still holds its lock on active/ (it drains: waits for running
 * deliveries so their results are recorded), up to qmgr_drain_time_limit
 * plus 5 seconds -- then SIGKILLed, pid file removed.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "log.h"
#include "master.h"
#include "master_cf.h"
#include "master_lock.h"
#include "mem.h"
#include "strbuf.h"

/* Stop: children get this long after SIGTERM; a draining qmgr (and the
 * agents whose results it waits for) qmgr_drain_time_limit plus the
 * margin, for qmgr to notice its deadline and exit. */
#define MASTER_STOP_GRACE_MS 5000
#define MASTER_STOP_DRAIN_MARGIN_MS 5000

struct master_svc *master_services;

static int master_sigpipe[2] = { -1, -1 };
static char *master_config_arg;

long long master_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void master_signal(int sig)
{
    int saved = errno;
    unsigned char b = (unsigned char)sig;
    (void)write(master_sigpipe[1], &b, 1);
    errno = saved;
}

static void master_usage(void)
{
    fprintf(stderr, "usage: master [-c config_dir] [-f] [-v]\n");
    exit(1);
}

/* Load main.cf and master.cf; 0 or -1 with err. */
static int master_load_config(struct master_service **cf, strbuf *err)
{
    if (config_load(config_pick_dir(master_config_arg), err) < 0)
        return -1;
    strbuf path;
    strbuf_init(&path);
    strbuf_printf(&path, "%s/master.cf", config_dir());
    int rc = master_cf_load(strbuf_str(&path), cf, err);
    strbuf_release(&path);
    return rc;
}

static void master_open_log(void)
{
    log_set_syslog_name(config_str("syslog_name"));
    const char *file = config_str("maillog_file");
    if (file[0]) {
        if (log_use_file(file) < 0)
            log_fatal("open maillog_file %s: %m", file);
    } else {
        log_use_syslog();
    }
}

/* The first wakeup is due at once (at start and after a reload), so mail
 * queued while the system was down, or in maildrop/, is picked up now
 * rather than one wakeup interval later; then every `wakeup` seconds. */
static void master_set_wakeups(struct master_svc *list)
{
    long long now = master_now_ms();
    for (struct master_svc *s = list; s; s = s->next)
        if (s->wakeup > 0)
            s->next_wakeup = now;
}

static void master_reload(void)
{
    struct master_service *cf = NULL;
    struct master_svc *fresh = NULL;
    strbuf err;
    strbuf_init(&err);
    if (master_load_config(&cf, &err) < 0) {
        log_warning("reload failed, keeping the running configuration: %s",
                    strbuf_str(&err));
        strbuf_release(&err);
        return;
    }
    master_open_log();
    if (master_dirs_create(&err) < 0)
        log_warning("%s", strbuf_str(&err));
    strbuf_reset(&err);
    if (master_services_build(cf, master_services, &fresh, &err) < 0) {
        log_warning("reload failed, keeping the running services: %s",
                    strbuf_str(&err));
        master_cf_free(cf);
        strbuf_release(&err);
        return;
    }
    master_cf_free(cf);
    strbuf_release(&err);
    /* Every running child finishes its session with the old configuration
     * and exits; new clients get children of the new one. */
    master_child_retire_all();
    master_services_free(master_services);
    master_services = fresh;
    master_set_wakeups(master_services);
    log_info("reload -- version %s, configuration %s", config_str("mail_version"),
             config_dir());
}

static void master_stop(int sig, const char *pid_path)
{
    log_info("terminating on signal %d", sig);
    /* Detach the children from their services first: they point at the
     * service structures that master_services_free() releases. */
    master_child_retire_all();
    master_services_free(master_services);     /* closes the listeners */
    master_services = NULL;
    long long drain_ms = 1000LL * config_time("qmgr_drain_time_limit")
                         + MASTER_STOP_DRAIN_MARGIN_MS;
    if (drain_ms > 24LL * 3600 * 1000)
        drain_ms = 24LL * 3600 * 1000;
    master_child_stop_all(MASTER_STOP_GRACE_MS, (int)drain_ms, master_sigpipe[0]);
    (void)unlink(pid_path);
    exit(0);
}

static int master_may_fork(const struct master_svc *s, long long now)
{
    if (s->idle > 0)
        return 0;
    if (s->maxproc > 0 && s->total >= s->maxproc)
        return 0;
    return s->throttle_until <= now;
}

static void master_loop(const char *pid_path)
{
    struct pollfd *pfd = NULL;
    struct master_svc **owner = NULL;
    int *what = NULL;                   /* 0 signal pipe, 1 status, 2 listener */
    size_t cap = 0;

    for (;;) {
        long long now = master_now_ms();
        long long timeout = 1000;
        size_t n = 0, need = 1;
        for (struct master_svc *s = master_services; s; s = s->next)
            need += 2;
        if (need > cap) {
            cap = need * 2;
            pfd = xrealloc(pfd, cap * sizeof(*pfd));
            owner = xrealloc(owner, cap * sizeof(*owner));
            what = xrealloc(what, cap * sizeof(*what));
        }
        pfd[n] = (struct pollfd){ .fd = master_sigpipe[0], .events = POLLIN };
        owner[n] = NULL;
        what[n++] = 0;
        for (struct master_svc *s = master_services; s; s = s->next) {
            if (s->wakeup > 0) {
                if (s->next_wakeup <= now) {
                    if (!s->wakeup_conditional || s->total > 0)
                        master_wakeup_send(s);
                    s->next_wakeup = now + 1000LL * s->wakeup;
                }
                if (s->next_wakeup - now < timeout)
                    timeout = s->next_wakeup - now;
            }
            if (s->throttle_until > now && s->throttle_until - now < timeout)
                timeout = s->throttle_until - now;
            pfd[n] = (struct pollfd){ .fd = s->status_rd, .events = POLLIN };
            owner[n] = s;
            what[n++] = 1;
            if (master_may_fork(s, now)) {
                pfd[n] = (struct pollfd){ .fd = s->listen_fd, .events = POLLIN };
                owner[n] = s;
                what[n++] = 2;
            }
        }
        if (timeout < 0)
            timeout = 0;
        int rc = poll(pfd, n, (int)timeout);
        if (rc < 0 && errno != EINTR)
            log_fatal("poll: %m");
        if (rc <= 0)
            continue;
        /* Status first (a child may just have become idle), then signals
         * (a reload frees services), then forks on the fresh state. */
        for (size_t i = 0; i < n; i++)
            if (what[i] == 1 && pfd[i].revents)
                master_child_read_status(owner[i]);
        if (pfd[0].revents & POLLIN) {
            unsigned char sigs[64];
            ssize_t got;
            int hup = 0, term = 0;
            while ((got = read(master_sigpipe[0], sigs, sizeof(sigs))) > 0) {
                for (ssize_t k = 0; k < got; k++) {
                    if (sigs[k] == SIGHUP)
                        hup = 1;
                    else if (sigs[k] == SIGTERM || sigs[k] == SIGINT)
                        term = sigs[k];
                }
            }
            master_child_reap();
            if (term)
                master_stop(term, pid_path);
            if (hup) {
                master_reload();
                continue;               /* owner[] may point at freed services */
            }
        }
        now = master_now_ms();
        for (size_t i = 0; i < n; i++)
            if (what[i] == 2 && pfd[i].revents && master_may_fork(owner[i], now))
                master_child_spawn(owner[i]);
    }
}

int main(int argc, char **argv)
{
    int foreground = 0;
    int opt;

    log_open("master");
    while ((opt = getopt(argc, argv, "c:dfv")) != -1) {
        switch (opt) {
        case 'c': master_config_arg = optarg; break;
        case 'd':
        case 'f': foreground = 1; break;
        case 'v': log_verbose++; break;
        default: master_usage();
        }
    }
    if (optind != argc)
        master_usage();

    struct master_service *cf = NULL;
    strbuf err;
    strbuf_init(&err);
    if (master_load_config(&cf, &err) < 0)
        log_fatal("%s", strbuf_str(&err));
    if (master_dirs_create(&err) < 0)
        log_fatal("%s", strbuf_str(&err));

    /* Background: the parent returns only once the daemon serves. */
    int ready[2] = { -1, -1 };
    if (!foreground) {
        if (pipe2(ready, O_CLOEXEC) < 0)
            log_fatal("pipe: %m");
        pid_t pid = fork();
        if (pid < 0)
            log_fatal("fork: %m");
        if (pid > 0) {
            close(ready[1]);
            char b;
            ssize_t r;
            do {
                r = read(ready[0], &b, 1);
            } while (r < 0 && errno == EINTR);
            _exit(r == 1 ? 0 : 1);
        }
        close(ready[0]);
        setsid();
    }

    strbuf pid_path;
    strbuf_init(&pid_path);
    master_lock_path(&pid_path, config_str("queue_directory"));
    pid_t holder;
    int lock_fd = master_lock_acquire(strbuf_str(&pid_path), &holder, &err);
    if (lock_fd < 0)
        log_fatal("%s", strbuf_str(&err));

    master_open_log();
    log_also_stderr(1);                 /* startup errors reach the operator */

    if (pipe2(master_sigpipe, O_CLOEXEC | O_NONBLOCK) < 0)
        log_fatal("pipe: %m");
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = master_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    sigaction(SIGCHLD, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    if (master_services_build(cf, NULL, &master_services, &err) < 0) {
        (void)unlink(strbuf_str(&pid_path));
        log_fatal("%s", strbuf_str(&err));
    }
    master_cf_free(cf);
    master_set_wakeups(master_services);
    log_info("daemon started -- version %s, configuration %s",
             config_str("mail_version"), config_dir());

    if (!foreground) {
        int null = open("/dev/null", O_RDWR);
        if (null >= 0) {
            dup2(null, 0);
            dup2(null, 1);
            dup2(null, 2);
            if (null > 2)
                close(null);
        }
        log_also_stderr(0);
        if (write(ready[1], "", 1) != 1)
            log_warning("cannot tell the starting process we are up: %m");
        close(ready[1]);
    }
    strbuf_release(&err);
    master_loop(strbuf_str(&pid_path));
    return 0;
}
