/*
 * local_command.c - delivery to |command items of aliases and .forward.
 *
 * Interface: local_deliver_command(a, command, as); see local.h.
 *
 * The message (Return-Path:, Delivered-To:, then the original) is first
 * copied to an anonymous memory file, which becomes the command's stdin, so
 * a command that never reads its input cannot block local.  The command
 * runs as `local_command_shell -c COMMAND` (default /bin/sh -c) in a new
 * session, as the identity `as` (in a root instance), with its home as the
 * working directory and a clean environment: HOME USER LOGNAME SHELL
 * SENDER RECIPIENT ORIGINAL_RECIPIENT LOCAL DOMAIN EXTENSION, and
 * PATH=/usr/bin:/bin.  stdout and stderr go to a pipe; the first line
 * (bounded) explains a failure.
 *
 * Contract: the whole process group is killed at command_time_limit and
 * the recipient deferred (4.3.0).  Exit 0 = delivered; 75 (EX_TEMPFAIL) =
 * deferred 4.3.0; 67 (EX_NOUSER) = bounced 5.1.1; any other status or
 * signal = bounced 5.3.0 with the command's output in the reason.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "local.h"
#include "log.h"
#include "mem.h"
#include "privs.h"

#define COMMAND_OUTPUT_MAX 512     /* bytes of output kept for the reason */
#define EX_NOUSER_CODE     67
#define EX_TEMPFAIL_CODE   75

static long long monotonic_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void env_add(char ***env, int *n, const char *name, const char *value)
{
    strbuf sb;
    strbuf_init(&sb);
    strbuf_printf(&sb, "%s=%s", name, value ? value : "");
    *env = xrealloc(*env, (size_t)(*n + 2) * sizeof(char *));
    (*env)[(*n)++] = strbuf_detach(&sb, NULL);
    (*env)[*n] = NULL;
}

/* In the child: never returns. */
static void command_child(const char *command, const struct local_user *as,
                          int in_fd, int out_fd, char **env)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = SIG_DFL;
    for (int sig = 1; sig < NSIG; sig++)
        sigaction(sig, &sa, NULL);      /* SIGPIPE was ignored in local */
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    setsid();
    if (dup2(in_fd, 0) < 0 || dup2(out_fd, 1) < 0 || dup2(out_fd, 2) < 0)
        _exit(EX_TEMPFAIL_CODE);
    for (int fd = 3; fd < 1024; fd++)
        close(fd);
    if (local_is_root) {
        strbuf err;
        strbuf_init(&err);
        if (privs_drop(as->uid, as->gid, &err) < 0) {
            /* stdout is the pipe: the parent reports this line */
            dprintf(1, "cannot drop privileges: %s\n", strbuf_str(&err));
            _exit(EX_TEMPFAIL_CODE);
        }
    }
    if (chdir(as->home) < 0 && chdir("/") < 0)
        _exit(EX_TEMPFAIL_CODE);
    const char *shell = config_str("local_command_shell");
    if (*shell == '\0')
        shell = "/bin/sh";
    char *argv[] = { (char *)shell, (char *)"-c", (char *)command, NULL };
    execve(shell, argv, env);
    dprintf(1, "cannot execute %s: %s\n", shell, strerror(errno));
    _exit(EX_TEMPFAIL_CODE);
}

/* The first line of the output, printable, bounded. */
static void output_first_line(const strbuf *out, strbuf *line)
{
    strbuf_reset(line);
    for (size_t i = 0; i < out->len; i++) {
        unsigned char c = (unsigned char)out->data[i];
        if (c == '\n') {
            if (line->len)
                break;
            continue;
        }
        strbuf_append_char(line, (c < 0x20 || c == 0x7f) ? ' ' : c);
    }
    strbuf_rtrim(line);
}

void local_deliver_command(struct local_attempt *a, const char *command,
                           const struct local_user *as)
{
    strbuf key, why, output, line, text;
    strbuf_init(&key);
    strbuf_init(&why);
    strbuf_init(&output);
    strbuf_init(&line);
    strbuf_init(&text);
    enum local_status status = LOCAL_DEFER;
    const char *dsn = "4.3.0";
    char **env = NULL;
    int nenv = 0, msg_fd = -1, pipe_fd[2] = { -1, -1 };

    strbuf_printf(&key, "command:%ld:%s", (long)as->uid, command);
    if (local_dup_check(a, strbuf_str(&key)))
        goto done;

    msg_fd = memfd_create("postern-local", MFD_CLOEXEC);
    if (msg_fd < 0) {
        strbuf_printf(&text, "cannot create message buffer: %s", strerror(errno));
        goto report;
    }
    int err = local_copy_message(a, msg_fd, COPY_RETURN_PATH, 0, &why);
    if (err != 0) {
        strbuf_printf(&text, "cannot copy message for command: %s",
                      why.len ? strbuf_str(&why) : strerror(err));
        goto report;
    }
    lseek(msg_fd, 0, SEEK_SET);
    if (pipe2(pipe_fd, O_CLOEXEC) < 0) {
        strbuf_printf(&text, "pipe: %s", strerror(errno));
        goto report;
    }

    env_add(&env, &nenv, "HOME", as->home);
    env_add(&env, &nenv, "USER", as->name);
    env_add(&env, &nenv, "LOGNAME", as->name);
    env_add(&env, &nenv, "SHELL", as->shell);
    env_add(&env, &nenv, "SENDER", a->sender);
    env_add(&env, &nenv, "RECIPIENT", a->rcpt);
    env_add(&env, &nenv, "ORIGINAL_RECIPIENT", a->orcpt);
    env_add(&env, &nenv, "LOCAL", a->local_part);
    env_add(&env, &nenv, "DOMAIN", a->domain);
    env_add(&env, &nenv, "EXTENSION", a->extension);
    env_add(&env, &nenv, "PATH", "/usr/bin:/bin");

    pid_t pid = fork();
    if (pid < 0) {
        strbuf_printf(&text, "fork: %s", strerror(errno));
        goto report;
    }
    if (pid == 0)
        command_child(command, as, msg_fd, pipe_fd[1], env);
    close(pipe_fd[1]);
    pipe_fd[1] = -1;

    /* Collect output until EOF and the child's exit, within the limit. */
    long long deadline = monotonic_ms() + config_time("command_time_limit") * 1000;
    int wstatus = 0, exited = 0, timed_out = 0, out_open = 1;
    char chunk[4096];
    while (!exited) {
        long long left = deadline - monotonic_ms();
        if (left <= 0) {
            timed_out = 1;
            break;
        }
        if (out_open) {
            struct pollfd pfd = { .fd = pipe_fd[0], .events = POLLIN };
            int rc = poll(&pfd, 1, left > 1000 ? 1000 : (int)left);
            if (rc > 0) {
                ssize_t n = read(pipe_fd[0], chunk, sizeof(chunk));
                if (n > 0) {
                    size_t room = COMMAND_OUTPUT_MAX > output.len ? COMMAND_OUTPUT_MAX - output.len : 0;
                    strbuf_append(&output, chunk, (size_t)n < room ? (size_t)n : room);
                } else if (n == 0 || (errno != EINTR && errno != EAGAIN)) {
                    out_open = 0;
                }
            }
        } else {
            /* output closed but the process lives on: poll its exit */
            struct timespec ts = { 0, 20 * 1000 * 1000 };
            nanosleep(&ts, NULL);
        }
        pid_t w = waitpid(pid, &wstatus, WNOHANG);
        if (w == pid && !out_open)
            exited = 1;
        else if (w == pid) {
            /* exited; drain what is left without blocking past the limit */
            exited = 1;
            for (;;) {
                struct pollfd pfd = { .fd = pipe_fd[0], .events = POLLIN };
                if (poll(&pfd, 1, 0) <= 0)
                    break;
                ssize_t n = read(pipe_fd[0], chunk, sizeof(chunk));
                if (n <= 0)
                    break;
                size_t room = COMMAND_OUTPUT_MAX > output.len ? COMMAND_OUTPUT_MAX - output.len : 0;
                strbuf_append(&output, chunk, (size_t)n < room ? (size_t)n : room);
            }
        }
    }
    if (timed_out) {
        kill(-pid, SIGKILL);
        kill(pid, SIGKILL);
        waitpid(pid, &wstatus, 0);
        strbuf_printf(&text, "command time limit exceeded: \"%s\"", command);
        log_warning("%s: %s: %s", a->req->qid, a->rcpt, strbuf_str(&text));
        goto report;
    }
    output_first_line(&output, &line);
    if (WIFEXITED(wstatus) && WEXITSTATUS(wstatus) == 0) {
        status = LOCAL_SENT;
        dsn = "2.0.0";
        strbuf_printf(&text, "delivered to command: %s", command);
    } else if (WIFEXITED(wstatus) && WEXITSTATUS(wstatus) == EX_TEMPFAIL_CODE) {
        status = LOCAL_DEFER;
        dsn = "4.3.0";
        strbuf_printf(&text, "temporary failure. Command output: %s",
                      line.len ? strbuf_str(&line) : "(none)");
    } else {
        status = LOCAL_BOUNCE;
        dsn = (WIFEXITED(wstatus) && WEXITSTATUS(wstatus) == EX_NOUSER_CODE) ? "5.1.1" : "5.3.0";
        if (WIFEXITED(wstatus))
            strbuf_printf(&text, "command died with status %d: \"%s\"",
                          WEXITSTATUS(wstatus), command);
        else
            strbuf_printf(&text, "command killed by signal %d: \"%s\"",
                          WTERMSIG(wstatus), command);
        if (line.len)
            strbuf_appendf(&text, ". Command output: %s", strbuf_str(&line));
    }

report:
    local_report(a, strbuf_str(&key), status, dsn, strbuf_str(&text));
done:
    for (int i = 0; i < nenv; i++)
        xfree(env[i]);
    xfree(env);
    if (msg_fd >= 0)
        close(msg_fd);
    if (pipe_fd[0] >= 0)
        close(pipe_fd[0]);
    if (pipe_fd[1] >= 0)
        close(pipe_fd[1]);
    strbuf_release(&key);
    strbuf_release(&why);
    strbuf_release(&output);
    strbuf_release(&line);
    strbuf_release(&text);
}
