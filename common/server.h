/*
 * server.h - the one skeleton every daemon is built on.
 *
 * A daemon's main() is just:
 *     int main(int argc, char **argv) {
 *         static const struct server_spec spec = {
 *             .program = "smtpd", .mode = SERVER_SINGLE,
 *             .pre_jail = smtpd_pre_jail, .post_jail = smtpd_init,
 *             .serve = smtpd_serve_client,
 *         };
 *         return server_main(argc, argv, &spec);
 *     }
 *
 * server_main(), in this fixed order: parse the master's command line
 * (-n service_name -t type [-c config_dir] [-v]... [-o name=value]...
 * [-u] [-r] [-w wakeup] [--] extra args), load main.cf, apply the -o
 * overrides, open the log (maillog_file or syslog), call pre_jail() (still
 * privileged: read keys and maps that need privilege), chdir to
 * queue_directory, chroot there when master says so (-r), drop to
 * mail_owner and its primary group when unprivileged (-u; never
 * setgid_group, no supplementary groups), call post_jail(), then
 * serve.
 *
 * Master hands the child its listening socket on fd SERVER_LISTEN_FD (3) and
 * a status pipe on fd SERVER_STATUS_FD (4).  Modes:
 *   SERVER_SINGLE   accept one client at a time and call serve(fd); report
 *                   busy before serve, idle after; exit after max_use
 *                   clients or max_idle seconds idle.  (smtpd, cleanup,
 *                   local, smtp, pickup's requests)
 *   SERVER_EVENT    the daemon runs its own loop: server_main calls
 *                   run(listen_fd) and never reports busy (qmgr).
 * A `wakeup` (master.cf column) makes the master connect to the service
 * every N seconds and send a record {request=wakeup}; SERVER_SINGLE daemons
 * with a wakeup() callback get it called instead of serve().
 *
 * Standalone use (tests, `-S`): with -S the daemon serves stdin/stdout as a
 * single client (serve(0) with output on 1) without master.
 *
 * Contract: serve() must close nothing it did not open; the skeleton closes
 * the client fd afterwards.  SIGTERM makes an idle child exit at once and a
 * busy one exit after its current client.  Callbacks may use
 * server_service_name() and server_queue_dir().
 */
#ifndef POSTERN_SERVER_H
#define POSTERN_SERVER_H

#include <signal.h>
#include <stdint.h>

#define SERVER_LISTEN_FD 3
#define SERVER_STATUS_FD 4

/*
 * The status message a child writes to SERVER_STATUS_FD: two native-endian
 * 32-bit integers {pid, status}, 8 bytes, one write(2) (atomic on a pipe).
 * A child reports IDLE once when it is ready to accept, BUSY when it has
 * accepted a client and IDLE again when done.  From Python:
 * os.write(4, struct.pack("=ii", os.getpid(), 1)).
 */
#define SERVER_STATUS_IDLE 1
#define SERVER_STATUS_BUSY 2
struct server_status_msg {
    int32_t pid;
    int32_t status;
};

enum server_mode { SERVER_SINGLE, SERVER_EVENT };

struct server_spec {
    const char *program;
    enum server_mode mode;
    void (*pre_jail)(int argc, char **argv);
    void (*post_jail)(int argc, char **argv);
    void (*serve)(int client_fd);               /* SERVER_SINGLE */
    void (*wakeup)(void);                       /* optional */
    void (*run)(int listen_fd);                 /* SERVER_EVENT */
};

int server_main(int argc, char **argv, const struct server_spec *spec);
const char *server_service_name(void);
const char *server_queue_dir(void);     /* absolute path of the spool */
int server_chrooted(void);
/* For SERVER_EVENT daemons: tell the master we are alive (no-op otherwise). */
void server_report_idle(void);
/* The status pipe, for SERVER_EVENT daemons to poll with events 0:
 * POLLERR/POLLHUP there means the master is gone (its read end closed);
 * -1 when there is no master (-S).  SERVER_SINGLE daemons are handled by
 * the skeleton: an idle one exits when the master dies. */
int server_master_fd(void);
/* Non-blocking check of the same: 1 when the master is gone. */
int server_master_gone(void);
/*
 * The watchdog (daemon_timeout, as Postfix's): the skeleton arms it before
 * each client (SERVER_SINGLE) or before run() (SERVER_EVENT); a process
 * still busy when it expires is ended by SERVER_WATCHDOG_SIGNAL (default
 * action: terminate; no handler, so no EINTR anywhere), and the master
 * logs that.  A daemon whose one client may rightly last long re-arms it
 * on each sign of progress with server_watchdog_pat() (smtpd per command,
 * local per request, qmgr per loop turn).  No-op when daemon_timeout is 0
 * or the timer could not be made.
 *
 * Pats are nearly free: a pat reads a coarse monotonic clock (vDSO, no
 * system call) and re-arms the timer only when it is disarmed or was armed
 * slack or more ago, slack = min(daemon_timeout / 10, 60 s) (watchdog.h).
 * So a process stuck after its last pat is ended between daemon_timeout -
 * slack and daemon_timeout after it.
 */
#define SERVER_WATCHDOG_SIGNAL SIGVTALRM
void server_watchdog_pat(void);
/* Before a wait for work that may rightly take long to come (an idle
 * child's accept, qmgr's poll): disarm the timer only when it could fire
 * before max_wait_ms (< 0: no bound) are over; otherwise leave it armed
 * (no system call).  The next server_watchdog_pat() arms it again when it
 * was disarmed.  The skeleton does this in its idle wait. */
void server_watchdog_pause_for(long long max_wait_ms);
/* Disarm it unconditionally (a system call only when it is armed). */
void server_watchdog_pause(void);

#endif
