/*
 * master_child.c - forking, tracking, reaping and throttling children.
 *
 * Interface (master.h): master_child_spawn, master_child_read_status,
 * master_child_reap, master_child_retire_all, master_child_stop_all,
 * master_wakeup_send, master_child_count.
 *
 * Process accounting follows Postfix: a freshly forked child counts as
 * idle (it will accept the pending connection), so the master does not
 * fork again for the same connection; it becomes busy when it reports
 * BUSY on the status pipe and idle again with IDLE.  The master forks only
 * when a connection is pending, no child of the service is idle and
 * maxproc allows (master.c decides; this file does the work).  The status
 * pipe is drained up to 64 records per read(2); a record read in part
 * (never, from children that write each one whole) waits for its rest.
 *
 * A child that exits without ever having reported a status (it failed
 * before it could serve: bad program, bad configuration, exec failure)
 * throttles its service for service_throttle_time: no fork loop.
 * Abnormal deaths are logged as Postfix does:
 *   warning: process /path/smtpd pid 123 exit status 1
 *   warning: process /path/smtpd pid 123 killed by signal 9
 * and a child ended by its watchdog (server.h, daemon_timeout) as
 *   warning: process /path/smtpd pid 123 killed by its watchdog: busy longer than daemon_timeout
 * except the SIGTERM the master itself sent to a retiring child.
 * A child of an (unconditional) wakeup service that is gone brings the
 * service's next wakeup forward to one second later, so a killed qmgr is
 * back within a second, not a wakeup interval later.
 *
 * The child's environment is cleaned: only import_environment names (NAME
 * or NAME=value) and POSTERN_CONFIG_DIR.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "config.h"
#include "log.h"
#include "master.h"
#include "mem.h"
#include "server.h"

struct master_child *master_children;

int master_child_count(void)
{
    int n = 0;
    for (struct master_child *c = master_children; c; c = c->next)
        n++;
    return n;
}

static struct master_child *find_child(pid_t pid)
{
    for (struct master_child *c = master_children; c; c = c->next)
        if (c->pid == pid)
            return c;
    return NULL;
}

/* The cleaned environment for children (built in the parent: no malloc
 * between fork and exec). */
static char **child_environment(void)
{
    int n = 0;
    char **names = config_list(config_str("import_environment"), &n);
    char **env = xcalloc((size_t)n + 2, sizeof(char *));
    int k = 0;
    strbuf sb;
    strbuf_init(&sb);
    for (int i = 0; i < n; i++) {
        if (strchr(names[i], '=')) {
            env[k++] = xstrdup(names[i]);
        } else if (strcmp(names[i], "POSTERN_CONFIG_DIR") != 0) {
            const char *v = getenv(names[i]);
            if (v) {
                strbuf_printf(&sb, "%s=%s", names[i], v);
                env[k++] = xstrdup(strbuf_str(&sb));
            }
        }
    }
    strbuf_printf(&sb, "POSTERN_CONFIG_DIR=%s", config_dir());
    env[k++] = xstrdup(strbuf_str(&sb));
    env[k] = NULL;
    strbuf_release(&sb);
    config_list_free(names);
    return env;
}

static void free_environment(char **env)
{
    for (char **e = env; *e; e++)
        xfree(*e);
    xfree(env);
}

void master_child_spawn(struct master_svc *svc)
{
    char **env = child_environment();
    /* Every signal is blocked across fork() until the child has put back
     * the default actions: a signal that reaches the child earlier (say the
     * SIGTERM of a reload right after the fork) would otherwise run the
     * master's handler there and write into the master's own signal pipe,
     * which the master would then take for a signal to itself (a SIGTERM:
     * the whole mail system stopping). */
    sigset_t all, saved;
    sigfillset(&all);
    sigprocmask(SIG_SETMASK, &all, &saved);
    pid_t pid = fork();
    if (pid < 0) {
        sigprocmask(SIG_SETMASK, &saved, NULL);
        log_warning("fork: %m -- service %s throttled", svc->name);
        svc->throttle_until = master_now_ms() + 1000LL * config_time("service_throttle_time");
        free_environment(env);
        return;
    }
    if (pid == 0) {
        /* Child: listener on 3, status pipe on 4, default signals. */
        int lfd = fcntl(svc->listen_fd, F_DUPFD_CLOEXEC, 10);
        int sfd = fcntl(svc->status_wr, F_DUPFD_CLOEXEC, 10);
        if (lfd < 0 || sfd < 0 || dup2(lfd, SERVER_LISTEN_FD) < 0
            || dup2(sfd, SERVER_STATUS_FD) < 0)
            _exit(127);
        /* Own process group: a Ctrl-C at `master -f` (make run) reaches the
         * master only, which then stops the children gracefully. */
        (void)setpgid(0, 0);
        signal(SIGPIPE, SIG_DFL);
        signal(SIGHUP, SIG_DFL);
        signal(SIGTERM, SIG_DFL);
        signal(SIGINT, SIG_DFL);
        signal(SIGCHLD, SIG_DFL);
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        execve(svc->program, svc->argv, env);
        log_warning("exec %s: %m", svc->program);
        _exit(127);
    }
    sigprocmask(SIG_SETMASK, &saved, NULL);
    free_environment(env);
    struct master_child *c = xcalloc(1, sizeof(*c));
    c->pid = pid;
    c->svc = svc;
    c->program = xstrdup(svc->program);
    c->idle = 1;
    c->started = master_now_ms();
    c->next = master_children;
    master_children = c;
    svc->total++;
    svc->idle++;
    log_debug("service %s: started pid %ld", svc->name, (long)pid);
}

/* One {pid, status} record from a child of svc's service. */
static void apply_status(const struct server_status_msg *msg)
{
    struct master_child *c = find_child((pid_t)msg->pid);
    if (!c || c->retiring || !c->svc)
        return;
    c->reported = 1;
    if (msg->status == SERVER_STATUS_IDLE && !c->idle) {
        c->idle = 1;
        c->svc->idle++;
    } else if (msg->status == SERVER_STATUS_BUSY && c->idle) {
        c->idle = 0;
        c->svc->idle--;
    }
}

/*
 * Drain the status pipe with few reads: many records per read(2), again
 * only while a read fills the whole buffer (a short read emptied the pipe;
 * poll() says when more comes).  Children write each 8-byte record with one
 * write (atomic on a pipe), so reads return whole records; should one ever
 * end mid-record, its bytes wait in svc->status_part for the rest.
 */
void master_child_read_status(struct master_svc *svc)
{
    enum { RECORDS_PER_READ = 64 };
    const size_t rec = sizeof(struct server_status_msg);
    unsigned char buf[RECORDS_PER_READ * sizeof(struct server_status_msg)];
    for (;;) {
        size_t have = svc->status_part_len;
        memcpy(buf, svc->status_part, have);
        ssize_t n = read(svc->status_rd, buf + have, sizeof(buf) - have);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return;                     /* EAGAIN, or no writer left */
        size_t len = have + (size_t)n;
        size_t off = 0;
        for (; off + rec <= len; off += rec) {
            struct server_status_msg msg;
            memcpy(&msg, buf + off, rec);
            apply_status(&msg);
        }
        svc->status_part_len = len - off;
        memcpy(svc->status_part, buf + off, svc->status_part_len);
        if ((size_t)n < sizeof(buf) - have)
            return;
    }
}

static void unlink_child(struct master_child *gone)
{
    for (struct master_child **p = &master_children; *p; p = &(*p)->next) {
        if (*p == gone) {
            *p = gone->next;
            break;
        }
    }
    if (gone->svc && !gone->retiring) {
        gone->svc->total--;
        if (gone->idle)
            gone->svc->idle--;
    }
    xfree(gone->program);
    xfree(gone);
}

void master_child_reap(void)
{
    int status;
    pid_t pid;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        struct master_child *c = find_child(pid);
        if (!c)
            continue;
        if (WIFEXITED(status) && WEXITSTATUS(status) != 0)
            log_warning("process %s pid %ld exit status %d", c->program,
                        (long)pid, WEXITSTATUS(status));
        else if (WIFSIGNALED(status) && WTERMSIG(status) == SERVER_WATCHDOG_SIGNAL)
            log_warning("process %s pid %ld killed by its watchdog: busy longer than "
                        "daemon_timeout", c->program, (long)pid);
        else if (WIFSIGNALED(status) && !(c->retiring && WTERMSIG(status) == SIGTERM))
            log_warning("process %s pid %ld killed by signal %d", c->program,
                        (long)pid, WTERMSIG(status));
        if (c->svc && !c->retiring && !c->reported) {
            long long t = config_time("service_throttle_time");
            log_warning("%s: bad command startup -- throttling for %lld seconds",
                        c->program, t);
            c->svc->throttle_until = master_now_ms() + 1000LL * t;
        }
        /* A wakeup service that is gone (killed, crashed, or done) gets its
         * next wakeup within a second, not a whole interval later: new
         * mail no longer wakes qmgr itself (cleanup only commits it and
         * qmgr watches incoming/), so a killed qmgr would otherwise leave
         * it waiting up to `wakeup` seconds.  The throttle above still
         * holds a service that cannot start. */
        if (c->svc && !c->retiring && c->svc->wakeup > 0 && !c->svc->wakeup_conditional) {
            long long soon = master_now_ms() + 1000;
            if (c->svc->next_wakeup > soon)
                c->svc->next_wakeup = soon;
        }
        unlink_child(c);
    }
}

void master_child_retire_all(void)
{
    for (struct master_child *c = master_children; c; c = c->next) {
        if (c->svc && !c->retiring) {
            c->svc->total--;
            if (c->idle)
                c->svc->idle--;
        }
        c->retiring = 1;
        c->svc = NULL;
        (void)kill(c->pid, SIGTERM);
    }
}

/* Whether a queue manager still works on the queue: qmgr holds an
 * exclusive flock() on active/ for its whole life, also while it drains
 * after SIGTERM (so does a `postern queue` command doing surgery, briefly).
 * Taking the lock for an instant is harmless: during a stop no new qmgr
 * is started that could want it. */
static int master_queue_in_use(void)
{
    strbuf path;
    strbuf_init(&path);
    strbuf_printf(&path, "%s/active", config_str("queue_directory"));
    int fd = open(strbuf_str(&path), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    strbuf_release(&path);
    if (fd < 0)
        return 0;
    int busy = flock(fd, LOCK_EX | LOCK_NB) < 0 && errno == EWOULDBLOCK;
    close(fd);                          /* also releases a lock we got */
    return busy;
}

void master_child_stop_all(int grace_ms, int drain_ms, int sigfd)
{
    master_child_retire_all();
    long long start = master_now_ms();
    long long deadline = start + grace_ms;
    long long drain_deadline = start + (drain_ms > grace_ms ? drain_ms : grace_ms);
    int told = 0;
    long long unlocked_at = 0;
    for (;;) {
        if (!master_children)
            break;
        long long now = master_now_ms();
        if (now >= drain_deadline)
            break;
        if (now >= deadline) {
            /* Past the short grace, everyone still running is waited for
             * only while a qmgr drains: it waits for the delivery agents'
             * results, and killing them now would repeat those deliveries
             * after the next start.  The lock goes when the drained qmgr
             * exits, a moment before we can reap it: allow a second for
             * that before anyone is said not to have stopped. */
            if (!master_queue_in_use()) {
                if (unlocked_at == 0)
                    unlocked_at = now;
                if (now - unlocked_at >= 1000)
                    break;
            } else if (!told) {
                log_info("waiting up to %lld seconds for the queue manager to "
                         "finish running deliveries", (drain_deadline - now + 999) / 1000);
                told = 1;
            }
        }
        struct pollfd pfd = { .fd = sigfd, .events = POLLIN };
        (void)poll(&pfd, 1, 100);
        if (pfd.revents & POLLIN) {
            char buf[64];
            while (read(sigfd, buf, sizeof(buf)) > 0)
                ;
        }
        master_child_reap();
    }
    for (struct master_child *c = master_children; c; c = c->next) {
        log_warning("process %s pid %ld did not stop: killing it", c->program,
                    (long)c->pid);
        (void)kill(c->pid, SIGKILL);
    }
    while (master_children) {
        int status;
        pid_t pid = waitpid(-1, &status, 0);
        if (pid < 0 && errno == EINTR)
            continue;
        if (pid < 0)
            break;
        struct master_child *c = find_child(pid);
        if (c)
            unlink_child(c);
    }
}

/* Connect to the service's own listener and send {request=wakeup}; a
 * connect that would block (backlog full) is skipped, not waited for. */
void master_wakeup_send(struct master_svc *svc)
{
    static const char record[] = "request 6\nwakeup\n\n";
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    if (getsockname(svc->listen_fd, (struct sockaddr *)&ss, &len) < 0)
        return;
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return;
    if (connect(fd, (struct sockaddr *)&ss, len) < 0) {
        log_debug("wakeup %s: %m", svc->name);
        close(fd);
        return;
    }
    if (write(fd, record, sizeof(record) - 1) < 0)
        log_debug("wakeup %s: %m", svc->name);
    close(fd);
}
