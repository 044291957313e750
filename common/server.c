/*
 * server.c - the daemon skeleton every postern daemon is built on.
 *
 * Interface: server_main() and the accessors declared in server.h.
 *
 * What it does, in order (the contract is in server.h):
 *   1. parse the master's command line: -n SERVICE -t TYPE -c DIR -v...
 *      -o NAME=VALUE... -u -r -w SECONDS -S, then "--" or the first word
 *      that is none of these starts the extra arguments.  pre_jail() and
 *      post_jail() get (argc, argv) = the program path followed by those
 *      extra arguments.
 *   2. config_load() the instance's main.cf, apply the -o overrides.
 *   3. logging: maillog_file when set, else syslog, tagged syslog_name.
 *   4. pre_jail(); chdir(queue_directory); chroot there with -r (only when
 *      root; otherwise skipped with a debug log); with -u and root, drop
 *      to mail_owner and its primary group (no supplementary groups; not
 *      setgid_group) via privs.h and verify we are no longer
 *      root (fatal otherwise); post_jail().
 *   5. serve: SERVER_SINGLE accepts on fd 3 one client at a time and calls
 *      serve(fd) (or wakeup() for a {request=wakeup} record when the daemon
 *      has a wakeup callback), reporting busy/idle on fd 4; exits after
 *      max_use clients or max_idle seconds without a client.
 *      SERVER_EVENT reports idle once and calls run(3).
 *      A master that dies (SIGKILL, crash) closes the read end of the
 *      status pipe: an idle SERVER_SINGLE child sees POLLERR on fd 4 and
 *      exits ("master is gone"), so orphans neither hold the old listening
 *      sockets (a new master could not bind) nor serve beside a new
 *      master; SERVER_EVENT daemons poll server_master_fd() themselves.
 *      -S (standalone): serve stdin/stdout as one client, no master.
 *
 * SIGTERM: an idle child exits at once; a busy one finishes its client
 * first.  SIGPIPE is ignored so a vanished peer is an EPIPE, not a death.
 * Watchdog: a POSIX timer (CLOCK_MONOTONIC, SERVER_WATCHDOG_SIGNAL),
 * made after the jail, armed for daemon_timeout before each client and
 * before run(); server_watchdog_pat() re-arms it, at most once per slack
 * (server.h, watchdog.h: a stuck process dies between daemon_timeout -
 * slack and daemon_timeout after its last pat).  It is not disarmed after
 * each client: the idle wait calls server_watchdog_pause_for() with its
 * own bound (max_idle), which disarms only when the timer could fire
 * during the wait, so a busy child makes about one timer_settime per
 * slack instead of two per client.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "log.h"
#include "mem.h"
#include "privs.h"
#include "server.h"
#include "strbuf.h"
#include "watchdog.h"

/* The wakeup record in ipc.h wire format: {request=wakeup}. */
static const char server_wakeup_record[] = "request 6\nwakeup\n\n";

static const char *server_service;
static char *server_queue_directory;
static int server_is_chrooted;
static int server_has_status_fd;
static int server_listener_is_unix;     /* wakeups come over UNIX sockets */

/* The watchdog timer (daemon_timeout); POSIX timers are neither inherited
 * by fork() nor kept across execve(), so commands local runs never get it.
 * watchdog.h decides when a pat or a wait needs timer_settime(); the clock
 * it is fed is CLOCK_MONOTONIC_COARSE, read in the vDSO (no system call). */
static timer_t server_watchdog_timer;
static int server_watchdog_ready;
static long long server_watchdog_seconds;
static struct watchdog_plan server_watchdog_plan;

static long long server_watchdog_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void server_watchdog_init(void)
{
    server_watchdog_seconds = config_time("daemon_timeout");
    if (server_watchdog_seconds <= 0)
        return;
    signal(SERVER_WATCHDOG_SIGNAL, SIG_DFL);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SERVER_WATCHDOG_SIGNAL);
    sigprocmask(SIG_UNBLOCK, &set, NULL);
    struct sigevent sev;
    memset(&sev, 0, sizeof(sev));
    sev.sigev_notify = SIGEV_SIGNAL;
    sev.sigev_signo = SERVER_WATCHDOG_SIGNAL;
    if (timer_create(CLOCK_MONOTONIC, &sev, &server_watchdog_timer) < 0) {
        log_warning("watchdog: timer_create: %m -- running without one");
        return;
    }
    /* The coarse clock lags by up to its resolution (a jiffy): rounded
     * up to whole milliseconds, plus one for the truncation above. */
    struct timespec res;
    long long tick_ms = 10;
    if (clock_getres(CLOCK_MONOTONIC_COARSE, &res) == 0)
        tick_ms = (long long)res.tv_sec * 1000 + (res.tv_nsec + 999999) / 1000000 + 1;
    watchdog_plan_init(&server_watchdog_plan, server_watchdog_seconds * 1000, tick_ms);
    server_watchdog_ready = 1;
}

static void server_watchdog_set(long long seconds)
{
    struct itimerspec its;
    memset(&its, 0, sizeof(its));
    its.it_value.tv_sec = (time_t)seconds;
    if (timer_settime(server_watchdog_timer, 0, &its, NULL) < 0)
        log_warning("watchdog: timer_settime: %m");
}

void server_watchdog_pat(void)
{
    if (server_watchdog_ready
        && watchdog_plan_pat(&server_watchdog_plan, server_watchdog_now_ms()))
        server_watchdog_set(server_watchdog_seconds);
}

void server_watchdog_pause_for(long long max_wait_ms)
{
    if (server_watchdog_ready
        && watchdog_plan_wait(&server_watchdog_plan, server_watchdog_now_ms(), max_wait_ms))
        server_watchdog_set(0);
}

void server_watchdog_pause(void)
{
    if (server_watchdog_ready && watchdog_plan_disarm(&server_watchdog_plan))
        server_watchdog_set(0);
}

/* Signal state: the handler exits at once while we wait idle in poll(). */
static volatile sig_atomic_t server_terminate;
static volatile sig_atomic_t server_waiting_idle;

const char *server_service_name(void)
{
    return server_service ? server_service : log_program();
}

const char *server_queue_dir(void)
{
    return server_queue_directory ? server_queue_directory : "";
}

int server_chrooted(void)
{
    return server_is_chrooted;
}

static void server_report(int status)
{
    if (!server_has_status_fd)
        return;
    struct server_status_msg msg = { .pid = (int32_t)log_pid(), .status = status };
    ssize_t n;
    do {
        n = write(SERVER_STATUS_FD, &msg, sizeof(msg));
    } while (n < 0 && errno == EINTR);
    /* A master that went away is not our problem to report. */
}

void server_report_idle(void)
{
    server_report(SERVER_STATUS_IDLE);
}

int server_master_fd(void)
{
    return server_has_status_fd ? SERVER_STATUS_FD : -1;
}

int server_master_gone(void)
{
    if (!server_has_status_fd)
        return 0;
    struct pollfd p = { .fd = SERVER_STATUS_FD, .events = 0 };
    return poll(&p, 1, 0) == 1 && (p.revents & (POLLERR | POLLHUP)) != 0;
}

static void server_sigterm(int sig)
{
    (void)sig;
    server_terminate = 1;
    if (server_waiting_idle)
        _exit(0);
}

static void server_usage(const char *program)
{
    log_fatal("usage: %s -n service -t type [-c config_dir] [-v] [-u] [-r] "
              "[-o name=value]... [-S] [--] [args]", program);
}

/*
 * Peek at a freshly accepted client: 1 when it starts with the exact wakeup
 * record (which is then consumed), 0 otherwise (nothing consumed).  Only
 * for daemons with a wakeup() callback on a UNIX socket, whose clients
 * speak first (pickup, qmgr); waits at most a second for the bytes.
 */
static int server_is_wakeup(int fd)
{
    size_t want = sizeof(server_wakeup_record) - 1;
    char buf[sizeof(server_wakeup_record)];
    struct timespec start;
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (;;) {
        ssize_t n = recv(fd, buf, want, MSG_PEEK | MSG_DONTWAIT);
        if (n < 0 && errno == ENOTSOCK)
            return 0;
        if (n > 0 && memcmp(buf, server_wakeup_record, (size_t)n) != 0)
            return 0;
        if (n == (ssize_t)want) {
            ssize_t got = 0;
            while (got < (ssize_t)want) {
                ssize_t r = read(fd, buf, want - (size_t)got);
                if (r <= 0)
                    break;
                got += r;
            }
            return 1;
        }
        if (n == 0)
            return 0;                   /* EOF before a whole record */
        if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
            return 0;
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        if ((now.tv_sec - start.tv_sec) * 1000 + (now.tv_nsec - start.tv_nsec) / 1000000 >= 1000)
            return 0;
        struct pollfd pfd = { .fd = fd, .events = POLLIN };
        (void)poll(&pfd, 1, 200);
    }
}

static void server_handle_client(const struct server_spec *spec, int fd)
{
    server_watchdog_pat();
    if (spec->wakeup && server_listener_is_unix && server_is_wakeup(fd)) {
        log_debug("wakeup request");
        spec->wakeup();
    } else {
        spec->serve(fd);
    }
    /* No disarm here: the idle wait that follows decides (pause_for). */
}

/* Accept one client at a time until max_use, max_idle or SIGTERM. */
static void server_loop_single(const struct server_spec *spec)
{
    long long max_use = config_int("max_use");
    long long max_idle = config_time("max_idle");
    long long served = 0;

    server_report(SERVER_STATUS_IDLE);
    while (!server_terminate && (max_use <= 0 || served < max_use)) {
        struct timespec idle_start, now;
        clock_gettime(CLOCK_MONOTONIC, &idle_start);
        int client = -1;
        while (client < 0) {
            clock_gettime(CLOCK_MONOTONIC, &now);
            long long idle_ms = (now.tv_sec - idle_start.tv_sec) * 1000LL
                + (now.tv_nsec - idle_start.tv_nsec) / 1000000;
            int timeout = -1;
            if (max_idle > 0) {
                long long left = max_idle * 1000LL - idle_ms;
                if (left <= 0) {
                    log_debug("idle timeout -- exiting");
                    exit(0);
                }
                timeout = left > 1000000000LL ? 1000000000 : (int)left;
            }
            struct pollfd pfd[2] = {
                { .fd = SERVER_LISTEN_FD, .events = POLLIN },
                { .fd = server_master_fd(), .events = 0 },      /* -1: ignored */
            };
            /* Usually the timer, armed at the last client, outlasts this
             * wait and stays (no system call); an unbounded wait disarms. */
            server_watchdog_pause_for(timeout);
            server_waiting_idle = 1;
            if (server_terminate)
                exit(0);
            int rc = poll(pfd, 2, timeout);
            server_waiting_idle = 0;
            if (rc < 0 && errno != EINTR)
                log_fatal("poll on the listening socket: %m");
            if (rc <= 0)
                continue;
            if (pfd[0].revents & (POLLERR | POLLNVAL))
                log_fatal("the listening socket is gone");
            /* A client already waiting is served first (qmgr may have
             * handed us a delivery just before the master died). */
            if (!(pfd[0].revents & POLLIN)) {
                if (pfd[1].revents & (POLLERR | POLLHUP)) {
                    log_info("master is gone -- exiting");
                    exit(0);
                }
                continue;
            }
            client = accept4(SERVER_LISTEN_FD, NULL, NULL, SOCK_CLOEXEC);
            if (client < 0 && errno != EAGAIN && errno != EWOULDBLOCK
                && errno != EINTR && errno != ECONNABORTED)
                log_fatal("accept: %m");
        }
        /* The listening socket is non-blocking (shared with the master); the
         * client must not be -- and is not: on Linux accept4() without
         * SOCK_NONBLOCK never passes O_NONBLOCK on (other systems copy the
         * listener's flags, hence the check there). */
#ifndef __linux__
        int fl = fcntl(client, F_GETFL);
        if (fl >= 0 && (fl & O_NONBLOCK))
            (void)fcntl(client, F_SETFL, fl & ~O_NONBLOCK);
#endif
        server_report(SERVER_STATUS_BUSY);
        server_handle_client(spec, client);
        close(client);
        served++;
        server_report(SERVER_STATUS_IDLE);
    }
    log_debug("served %lld clients -- exiting", served);
    exit(0);
}

/*
 * -S: serve stdin/stdout as one client.  A daemon's serve() takes one fd, so
 * when stdin is not already a socket, a relay child copies stdin into one
 * end of a socketpair and the other direction back to stdout.
 */
static void server_standalone(const struct server_spec *spec)
{
    struct stat st;
    server_listener_is_unix = 1;        /* a test may feed a wakeup record */
    if (fstat(0, &st) == 0 && S_ISSOCK(st.st_mode)) {
        server_handle_client(spec, 0);
        server_watchdog_pause();
        exit(0);
    }
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
        log_fatal("socketpair: %m");
    pid_t relay = fork();
    if (relay < 0)
        log_fatal("fork: %m");
    if (relay == 0) {
        close(sv[0]);
        int in_open = 1;
        char *buf = xmalloc(65536);
        for (;;) {
            struct pollfd pfd[2] = {
                { .fd = in_open ? 0 : -1, .events = POLLIN },
                { .fd = sv[1], .events = POLLIN },
            };
            if (poll(pfd, 2, -1) < 0) {
                if (errno == EINTR)
                    continue;
                _exit(1);
            }
            if (pfd[0].revents) {
                ssize_t n = read(0, buf, 65536);
                if (n <= 0) {
                    in_open = 0;
                    shutdown(sv[1], SHUT_WR);
                } else {
                    for (ssize_t off = 0; off < n;) {
                        ssize_t w = write(sv[1], buf + off, (size_t)(n - off));
                        if (w <= 0)
                            _exit(1);
                        off += w;
                    }
                }
            }
            if (pfd[1].revents) {
                ssize_t n = read(sv[1], buf, 65536);
                if (n <= 0)
                    _exit(0);
                for (ssize_t off = 0; off < n;) {
                    ssize_t w = write(1, buf + off, (size_t)(n - off));
                    if (w <= 0)
                        _exit(1);
                    off += w;
                }
            }
        }
    }
    close(sv[1]);
    server_handle_client(spec, sv[0]);
    server_watchdog_pause();            /* the relay's exit is not our work */
    close(sv[0]);
    int status;
    while (waitpid(relay, &status, 0) < 0 && errno == EINTR)
        ;
    exit(0);
}

static void server_open_log(void)
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

/* chroot (-r) and privilege drop (-u), each only when running as root.
 * The account is looked up before the chroot: /etc/passwd is outside. */
static void server_jail(int want_chroot, int want_unpriv)
{
    strbuf err;
    strbuf_init(&err);
    uid_t uid = 0;
    gid_t gid = 0;
    const char *owner = config_str("mail_owner");
    int drop = want_unpriv && geteuid() == 0;
    if (drop) {
        /* mail_owner's primary group only, never setgid_group: that group
         * opens maildrop/ and public/ to postdrop and postern, and a
         * compromised daemon must not gain it (Postfix's model). */
        if (privs_lookup(owner, NULL, &uid, &gid, &err) < 0)
            log_fatal("mail_owner %s: %s", owner, strbuf_str(&err));
        if (uid == 0)
            log_fatal("mail_owner %s has uid 0: refusing to run as root", owner);
    } else if (want_unpriv) {
        log_debug("not root: running as the current user");
    }
    if (want_chroot) {
        if (geteuid() != 0) {
            log_debug("not root: no chroot to %s", server_queue_directory);
        } else {
            if (privs_chroot(server_queue_directory, &err) < 0)
                log_fatal("chroot %s: %s", server_queue_directory, strbuf_str(&err));
            server_is_chrooted = 1;
        }
    }
    if (drop) {
        if (privs_drop(uid, gid, &err) < 0)
            log_fatal("cannot drop privileges to %s: %s", owner, strbuf_str(&err));
        if (getuid() == 0 || geteuid() == 0)
            log_fatal("still root after dropping privileges to %s", owner);
    }
    strbuf_release(&err);
}

int server_main(int argc, char **argv, const struct server_spec *spec)
{
    const char *config_arg = NULL;
    const char *type = NULL;
    int want_chroot = 0, want_unpriv = 0, standalone = 0;
    int noverride = 0;
    char **override = xcalloc((size_t)argc + 1, sizeof(char *));
    int i;

    log_open(spec->program);
    for (i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--") == 0) {
            i++;
            break;
        }
        if (strcmp(a, "-n") == 0 || strcmp(a, "-t") == 0 || strcmp(a, "-c") == 0
            || strcmp(a, "-o") == 0 || strcmp(a, "-w") == 0) {
            if (i + 1 >= argc)
                server_usage(argv[0]);
            const char *v = argv[++i];
            switch (a[1]) {
            case 'n': server_service = v; break;
            case 't': type = v; break;
            case 'c': config_arg = v; break;
            case 'o': override[noverride++] = (char *)v; break;
            case 'w': break;            /* the master drives wakeups */
            }
        } else if (a[0] == '-' && a[1] && strspn(a + 1, "v") == strlen(a + 1)) {
            log_verbose += (int)strlen(a + 1);
        } else if (strcmp(a, "-u") == 0) {
            want_unpriv = 1;
        } else if (strcmp(a, "-r") == 0) {
            want_chroot = 1;
        } else if (strcmp(a, "-S") == 0) {
            standalone = 1;
        } else {
            break;                      /* extra arguments start here */
        }
    }
    (void)type;
    if (!standalone && !server_service)
        server_usage(argv[0]);

    /* The extra arguments, with the program path as argv[0]; kept for the
     * process's life in a static (daemons may keep the array), so leak
     * checkers do not count it once the serving loop exits. */
    int xargc = 1 + (argc - i);
    static char **xargv;
    xargv = xcalloc((size_t)xargc + 1, sizeof(char *));
    xargv[0] = argv[0];
    for (int k = 1; k < xargc; k++)
        xargv[k] = argv[i + k - 1];

    strbuf err;
    strbuf_init(&err);
    if (config_load(config_pick_dir(config_arg), &err) < 0)
        log_fatal("%s", strbuf_str(&err));
    for (int k = 0; k < noverride; k++) {
        char *eq = strchr(override[k], '=');
        if (!eq || eq == override[k])
            log_fatal("bad -o argument (expected name=value): %s", override[k]);
        char *name = xstrndup(override[k], (size_t)(eq - override[k]));
        if (!config_lookup_def(name))
            log_warning("-o %s: unknown parameter", name);
        else
            config_override(name, eq + 1);
        xfree(name);
    }
    xfree(override);
    strbuf_release(&err);

    server_open_log();
    signal(SIGPIPE, SIG_IGN);

    if (!standalone) {
        struct stat st;
        if (fstat(SERVER_LISTEN_FD, &st) < 0)
            log_fatal("no listening socket on fd %d (use -S to run without master)",
                      SERVER_LISTEN_FD);
        server_has_status_fd = fcntl(SERVER_STATUS_FD, F_GETFD) >= 0;
        struct sockaddr_storage ss;
        socklen_t sslen = sizeof(ss);
        server_listener_is_unix = getsockname(SERVER_LISTEN_FD, (struct sockaddr *)&ss,
                                              &sslen) == 0 && ss.ss_family == AF_UNIX;
        (void)fcntl(SERVER_LISTEN_FD, F_SETFD, FD_CLOEXEC);
        if (server_has_status_fd)
            (void)fcntl(SERVER_STATUS_FD, F_SETFD, FD_CLOEXEC);
    }

    server_queue_directory = xstrdup(config_str("queue_directory"));
    if (spec->pre_jail)
        spec->pre_jail(xargc, xargv);
    if (chdir(server_queue_directory) < 0)
        log_fatal("chdir %s: %m", server_queue_directory);
    server_jail(want_chroot, want_unpriv);
    if (spec->post_jail)
        spec->post_jail(xargc, xargv);
    server_watchdog_init();

    if (standalone) {
        if (spec->mode != SERVER_SINGLE || !spec->serve)
            log_fatal("-S (standalone) needs a single-client daemon");
        server_standalone(spec);
    }
    if (spec->mode == SERVER_EVENT) {
        if (!spec->run)
            log_panic("SERVER_EVENT daemon without run()");
        server_report(SERVER_STATUS_IDLE);
        server_watchdog_pat();
        spec->run(SERVER_LISTEN_FD);
        exit(0);
    }
    if (!spec->serve)
        log_panic("SERVER_SINGLE daemon without serve()");
    /* SERVER_EVENT daemons keep SIGTERM's default (or their own handler):
     * their state is on disk and they may die at any instant. */
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = server_sigterm;
    sigemptyset(&sa.sa_mask);
    /* SA_RESTART: a busy child's reads and writes carry on (its client is
     * finished first); poll() still returns EINTR, which the idle wait
     * needs to notice. */
    sa.sa_flags = SA_RESTART;
    sigaction(SIGTERM, &sa, NULL);
    server_loop_single(spec);
    return 0;
}
