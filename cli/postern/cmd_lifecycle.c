/*
 * cmd_lifecycle.c - postern start, stop, reload, status.
 *
 * Whether the mail system runs is decided by the master's lock on
 * queue_directory/pid/master.pid (common/master_lock.h), never by a pid
 * that might be stale.
 *   start   runs daemon_directory/master, which returns only once it holds
 *           the lock and every listener is open; exit 1 when already
 *           running ("postern: fatal: the mail system is already running")
 *           or when the master failed (its reason is on stderr).
 *   stop    SIGTERM to the master, then wait until the lock is gone, i.e.
 *           the master and, before it, its children exited.  The master
 *           gives a draining qmgr up to qmgr_drain_time_limit + 5 s before
 *           it SIGKILLs, so stop waits that plus POSTERN_STOP_SLACK_MS;
 *           past it: exit 1 ("did not stop within N seconds").
 *   reload  SIGHUP to the master.
 *   status  exit 0 when running, 1 when not, with a one-line message.
 */
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "log.h"
#include "postern.h"
#include "strbuf.h"

/* Beyond the master's own bound (qmgr_drain_time_limit + 5 s, see
 * master.c): time for the SIGKILLs, the reaping and a loaded machine. */
#define POSTERN_STOP_SLACK_MS 15000

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int postern_cmd_start(int argc, char **argv)
{
    if (argc != 1)
        postern_fatal("usage: postern start");
    postern_load_config();
    if (postern_master_pid() > 0)
        postern_fatal("the mail system is already running");
    strbuf program;
    strbuf_init(&program);
    strbuf_printf(&program, "%s/master", config_str("daemon_directory"));
    if (access(strbuf_str(&program), X_OK) < 0)
        postern_fatal("%s: %s (check daemon_directory in %s/main.cf)",
                      strbuf_str(&program), strerror(errno), config_dir());
    postern_info("starting the mail system");
    char *args[8];
    int n = 0;
    args[n++] = (char *)strbuf_str(&program);
    args[n++] = "-c";
    args[n++] = (char *)config_dir();
    if (log_verbose)
        args[n++] = "-v";
    args[n] = NULL;
    pid_t pid = fork();
    if (pid < 0)
        postern_fatal("fork: %s", strerror(errno));
    if (pid == 0) {
        execv(args[0], args);
        postern_fatal("exec %s: %s", args[0], strerror(errno));
    }
    int status;
    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR)
            postern_fatal("waitpid: %s", strerror(errno));
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        postern_fatal("the mail system did not start");
    if (postern_master_pid() == 0)
        postern_fatal("the master exited right after starting; see the log");
    strbuf_release(&program);
    return 0;
}

int postern_cmd_stop(int argc, char **argv)
{
    if (argc != 1)
        postern_fatal("usage: postern stop");
    postern_load_config();
    pid_t pid = postern_master_pid();
    if (pid == 0)
        postern_fatal("the mail system is not running");
    postern_info("stopping the mail system");
    if (kill(pid, SIGTERM) < 0 && errno != ESRCH)
        postern_fatal("kill %ld: %s", (long)pid, strerror(errno));
    long long wait_ms = 1000LL * config_time("qmgr_drain_time_limit") + 5000
                        + POSTERN_STOP_SLACK_MS;
    long long deadline = now_ms() + wait_ms;
    while (postern_master_pid() != 0) {
        if (now_ms() > deadline)
            postern_fatal("the master (pid %ld) did not stop within %lld seconds",
                          (long)pid, wait_ms / 1000);
        struct timespec ts = { 0, 50 * 1000 * 1000 };
        nanosleep(&ts, NULL);
    }
    return 0;
}

int postern_cmd_reload(int argc, char **argv)
{
    if (argc != 1)
        postern_fatal("usage: postern reload");
    postern_load_config();
    pid_t pid = postern_master_pid();
    if (pid == 0)
        postern_fatal("the mail system is not running");
    if (kill(pid, SIGHUP) < 0)
        postern_fatal("kill %ld: %s", (long)pid, strerror(errno));
    postern_info("refreshing the mail system");
    return 0;
}

int postern_cmd_status(int argc, char **argv)
{
    if (argc != 1)
        postern_fatal("usage: postern status");
    postern_load_config();
    pid_t pid = postern_master_pid();
    if (pid == 0) {
        postern_info("the mail system is not running");
        return 1;
    }
    postern_info("the mail system is running: PID: %ld", (long)pid);
    return 0;
}
