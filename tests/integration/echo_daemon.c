/*
 * echo_daemon.c - a test daemon built on the real skeleton (common/server.h),
 * compiled by the integration harness (harness.build_echo_daemon) against
 * the build's libpostern.a.  Not part of the product.
 *
 * serve(): greets "220 echo-daemon PID uid=UID root=ROOT", answers each
 * line with "250 LINE" (and pats the watchdog, as smtpd does per command),
 * "QUIT" with "221 bye", and "HANG" with nothing: it waits forever, for
 * the watchdog (daemon_timeout) to end it.  wakeup(): logs "wakeup
 * received".  post_jail(): logs "ready uid=U chrooted=C".
 */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "server.h"

static void echo_post_jail(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    char cwd[4096];
    if (!getcwd(cwd, sizeof(cwd)))
        strcpy(cwd, "?");
    log_info("ready uid=%ld chrooted=%d cwd=%s", (long)getuid(), server_chrooted(), cwd);
}

static void echo_wakeup(void)
{
    log_info("wakeup received");
}

static void echo_serve(int fd)
{
    FILE *in = fdopen(dup(fd), "r");
    if (!in)
        return;
    dprintf(fd, "220 echo-daemon %ld uid=%ld\r\n", (long)getpid(), (long)getuid());
    char line[1024];
    while (fgets(line, sizeof(line), in)) {
        line[strcspn(line, "\r\n")] = '\0';
        if (strcasecmp(line, "QUIT") == 0) {
            dprintf(fd, "221 bye\r\n");
            break;
        }
        if (strcasecmp(line, "HANG") == 0)
            for (;;)
                pause();
        server_watchdog_pat();
        dprintf(fd, "250 %s\r\n", line);
    }
    fclose(in);
}

int main(int argc, char **argv)
{
    static const struct server_spec spec = {
        .program = "echo-daemon",
        .mode = SERVER_SINGLE,
        .post_jail = echo_post_jail,
        .serve = echo_serve,
        .wakeup = echo_wakeup,
    };
    return server_main(argc, argv, &spec);
}
