/*
 * sendmail.c - the sendmail-compatible submission command, also installed
 * as mailq and newaliases (it acts by the name it is called by).
 *
 *   sendmail [options] [--] [recipient...]     submit a message (stdin)
 *   mailq     = sendmail -bp     newaliases = sendmail -bi
 *
 * Options (doc/submission.md has the full table):
 *   -t        recipients also from To/Cc/Bcc (cleanup extracts, drops Bcc)
 *   -i, -oi   a line with a single "." does not end the message
 *   -f ADDR, -r ADDR   envelope sender (default: the login name, qualified
 *             with myorigin by cleanup); "" or "<>" = null sender
 *   -F NAME   full name for the From: header cleanup adds
 *   -N DSN    never | comma list of success, delay, failure
 *   -R RET    full | hdrs        -V ENVID   DSN envelope id
 *   -C DIR    configuration directory (or a main.cf path in it)
 *   -bm       submit (default)   -bs  SMTP on stdin/stdout
 *   -bp       list the queue: runs `postern queue`
 *   -bi, -I   newaliases: build every hash:/btree: table in alias_maps
 *   -q        flush the queue: runs `postern flush`
 *   -bd, -bl  start the mail system: runs `postern start`
 *   accepted and ignored: -B TYPE -oem -oe* -od* -om -o7 -o8 -v
 *   ignored with a warning: -G -h N -L LABEL -n -U -X FILE -O OPT -oA* -oQ*
 *             other -oX, -qINTERVAL, -qRsite/-qSsite (whole queue flushed)
 *
 * Programs it runs (postdrop, postern) come from command_directory of the
 * chosen instance's main.cf; -C DIR is passed on to them as -c DIR, and
 * POSTERN_CONFIG_DIR is inherited.
 *
 * Contract: exit 0 only after postdrop reported the message on disk; on
 * failure one line "sendmail: fatal: TEXT" and a sysexits.h status:
 * EX_USAGE (64) bad option or no recipients, EX_DATAERR (65) bad address
 * or oversized message, EX_UNAVAILABLE (69) a helper program cannot run,
 * EX_CONFIG (78) main.cf does not load, EX_TEMPFAIL (75) postdrop could
 * not queue the message (or postdrop's own status).
 */
#include <ctype.h>
#include <errno.h>
#include <libgen.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sysexits.h>
#include <unistd.h>

#include "addr.h"
#include "config.h"
#include "log.h"
#include "maps.h"
#include "mem.h"
#include "sendmail.h"
#include "smtp_parse.h"

const char *sm_config_dir;
int sm_verbose;

void sm_fatal(int status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("sendmail: fatal: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(status);
}

void sm_warning(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("sendmail: warning: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

char *sm_command_path(const char *program)
{
    strbuf path;
    strbuf_init(&path);
    strbuf_printf(&path, "%s/%s", config_str("command_directory"), program);
    return strbuf_detach(&path, NULL);
}

/* Run `postern [-c DIR] ARGS...` in place of this process. */
static void run_postern(const char *const *args) __attribute__((noreturn));
static void run_postern(const char *const *args)
{
    char *path = sm_command_path("postern");
    const char *argv[16];
    int n = 0;
    argv[n++] = "postern";
    if (sm_config_dir) {
        argv[n++] = "-c";
        argv[n++] = sm_config_dir;
    }
    for (int i = 0; args[i] && n < 15; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    fflush(stdout);
    execv(path, (char **) argv);
    sm_fatal(EX_UNAVAILABLE, "execute %s: %s", path, strerror(errno));
}

/* newaliases: build every hash:/btree: table of alias_maps. */
static int build_aliases(void)
{
    int n;
    char **tables = config_list(config_str("alias_maps"), &n);
    strbuf err;
    strbuf_init(&err);
    for (int i = 0; i < n; i++) {
        const char *colon = strchr(tables[i], ':');
        if (!colon)
            continue;
        size_t tlen = (size_t) (colon - tables[i]);
        char *type = xstrndup(tables[i], tlen);
        if (strcmp(type, "hash") == 0 || strcmp(type, "btree") == 0) {
            if (map_build(type, colon + 1, &err) < 0) {
                xfree(type);
                config_list_free(tables);
                sm_fatal(EX_CANTCREAT, "%s", strbuf_str(&err));
            }
            if (sm_verbose)
                fprintf(stderr, "sendmail: built %s\n", tables[i]);
        }
        xfree(type);
    }
    config_list_free(tables);
    strbuf_release(&err);
    return 0;
}

static char *config_dir_copy;           /* -C with a file: its directory */

static void set_config_dir(const char *arg)
{
    struct stat st;
    if (stat(arg, &st) == 0 && !S_ISDIR(st.st_mode)) {
        /* -C /etc/postern/main.cf, as Sendmail takes a file */
        char *copy = xstrdup(arg);
        xfree(config_dir_copy);
        config_dir_copy = xstrdup(dirname(copy));
        sm_config_dir = config_dir_copy;
        xfree(copy);
    } else {
        sm_config_dir = arg;
    }
}

static char *upper_copy(const char *s)
{
    char *u = xstrdup(s);
    for (char *p = u; *p; p++)
        *p = (char) toupper((unsigned char) *p);
    return u;
}

static void add_rcpt(const char *addr, void *ctx)
{
    sm_envelope_add_rcpt(ctx, addr, NULL, NULL);
}

int main(int argc, char **argv)
{
    struct sm_envelope env = { 0 };
    char mode = 'm';
    int dot_ends = 1, extract = 0;
    const char *sender = NULL, *fullname = NULL;
    const char *name = strrchr(argv[0], '/') ? strrchr(argv[0], '/') + 1 : argv[0];

    signal(SIGPIPE, SIG_IGN);
    log_open("sendmail");
    log_use_stderr();
    if (strcmp(name, "mailq") == 0)
        mode = 'p';
    else if (strcmp(name, "newaliases") == 0)
        mode = 'i';

    int i = 1;
    for (; i < argc; i++) {
        const char *arg = argv[i];
        if (strcmp(arg, "--") == 0) {
            i++;
            break;
        }
        if (arg[0] != '-' || arg[1] == '\0')
            break;
        for (const char *p = arg + 1; *p; p++) {
            char opt = *p;
            const char *val = NULL;
            /* Options with a value take the rest of this word or the next. */
            if (strchr("BCFLNORVXfhr", opt)) {
                if (p[1])
                    val = p + 1;
                else if (i + 1 < argc)
                    val = argv[++i];
                else
                    sm_fatal(EX_USAGE, "option -%c needs a value", opt);
            }
            switch (opt) {
            case 't': extract = 1; continue;
            case 'i': dot_ends = 0; continue;
            case 'v': sm_verbose++; continue;
            case 'I': mode = 'i'; continue;
            case 'n': case 'U': case 'G':
                sm_warning("option -%c ignored", opt);
                continue;
            case 'B':
                break;          /* body type: cleanup keeps 8-bit as is */
            case 'C': set_config_dir(val); break;
            case 'F': fullname = val; break;
            case 'f': case 'r': sender = val; break;
            case 'N': {
                char *u = upper_copy(val);
                if (!smtp_notify_valid(u))
                    sm_fatal(EX_USAGE, "-N %s: expected never or a list of success, delay, failure", val);
                xfree(env.notify);
                env.notify = u;
                break;
            }
            case 'R': {
                char *u = upper_copy(val);
                if (strcmp(u, "FULL") != 0 && strcmp(u, "HDRS") != 0)
                    sm_fatal(EX_USAGE, "-R %s: expected full or hdrs", val);
                xfree(env.ret);
                env.ret = u;
                break;
            }
            case 'V': {
                size_t len = strlen(val);
                int ok = len > 0 && len <= 100;
                for (size_t k = 0; ok && k < len; k++)
                    ok = val[k] >= 33 && val[k] <= 126;
                if (!ok)
                    sm_fatal(EX_USAGE, "-V: the envelope id must be 1..100 printable ASCII characters");
                env.envid = xstrdup(val);
                break;
            }
            case 'h': case 'L': case 'O': case 'X':
                sm_warning("option -%c %s ignored", opt, val);
                break;
            case 'b':
                if (!p[1] || !strchr("mspidlvhH", p[1]) || p[2])
                    sm_fatal(EX_USAGE, "unknown mode %s", arg);
                if (strchr("vhH", p[1]))
                    sm_fatal(EX_USAGE, "mode -b%c is not supported", p[1]);
                mode = p[1] == 'l' ? 'd' : p[1];
                p++;
                continue;
            case 'o':
                if (p[1] == 'i' && !p[2])
                    dot_ends = 0;
                else if (!p[1])
                    sm_fatal(EX_USAGE, "option -o needs a letter");
                else if (!strchr("emd78", p[1]))
                    sm_warning("option %s ignored", arg);
                break;          /* the rest of the word belongs to -o */
            case 'q':
                if (!p[1])
                    mode = 'q';
                else if (p[1] == 'R' || p[1] == 'S') {
                    sm_warning("%s: flushing the whole queue", arg);
                    mode = 'q';
                } else {
                    sm_warning("option %s ignored: set queue_run_delay in main.cf", arg);
                    if (mode == 'm')
                        mode = 'n';     /* nothing to do */
                }
                break;
            default:
                sm_fatal(EX_USAGE, "unknown option -%c (usage: sendmail [-t] [-i] "
                         "[-f sender] [-F name] [-N dsn] [-R ret] [-V envid] [-C dir] "
                         "[-bm|-bs|-bp|-bi|-q] [--] [recipient...])", opt);
            }
            break;              /* val or the -o/-q word used the rest */
        }
    }

    strbuf err;
    strbuf_init(&err);
    if (config_load(config_pick_dir(sm_config_dir), &err) < 0)
        sm_fatal(EX_CONFIG, "%s", strbuf_str(&err));

    switch (mode) {
    case 'p': {
        static const char *const args[] = { "queue", NULL };
        run_postern(args);
    }
    case 'q': {
        static const char *const args[] = { "flush", NULL };
        run_postern(args);
    }
    case 'd': {
        static const char *const args[] = { "start", NULL };
        run_postern(args);
    }
    case 'i':
        return build_aliases();
    case 'n':
        return 0;
    default:
        break;
    }

    /* The envelope. */
    char *gecos = NULL;
    strbuf addr;
    strbuf_init(&addr);
    if (sender) {
        if (sm_parse_address(sender, 1, &addr) < 0)
            sm_fatal(EX_DATAERR, "bad sender address syntax: %s", sender);
        env.sender = xstrdup(strbuf_str(&addr));
    } else {
        struct passwd *pw = getpwuid(getuid());
        if (!pw)
            sm_fatal(EX_OSFILE, "no login name found for user ID %ld", (long) getuid());
        env.sender = xstrdup(pw->pw_name);
        if (!fullname && !getenv("NAME") && pw->pw_gecos && *pw->pw_gecos) {
            gecos = xstrdup(pw->pw_gecos);
            gecos[strcspn(gecos, ",")] = '\0';     /* "Full Name,room,phone" */
            fullname = *gecos ? gecos : NULL;
        }
    }
    if (!fullname)
        fullname = getenv("NAME");
    if (fullname && *fullname) {
        for (const char *c = fullname; *c; c++)
            if ((unsigned char) *c < 0x20 || *c == 0x7f)
                sm_fatal(EX_USAGE, "-F: control character in the full name");
        env.fullname = xstrdup(fullname);
    }
    xfree(gecos);
    env.extract = extract;

    int rc;
    if (mode == 's') {
        rc = sm_smtp_session(&env);
        goto done;
    }

    for (; i < argc; i++) {
        /* One address, or a list "a@x, Name <b@y>" as mail programs pass. */
        if (!strchr(argv[i], ',') && sm_parse_address(argv[i], 0, &addr) == 0) {
            sm_envelope_add_rcpt(&env, addr.data, NULL, NULL);
            continue;
        }
        int before = env.nrcpt;
        if (addr_list_parse(argv[i], strlen(argv[i]), add_rcpt, &env) < 0
            || env.nrcpt == before)
            sm_fatal(EX_DATAERR, "bad recipient address syntax: %s", argv[i]);
    }
    if (env.nrcpt == 0 && !extract)
        sm_fatal(EX_USAGE, "Recipient addresses must be specified on the command line or via the -t option");
    rc = sm_submit_stdin(&env, dot_ends);
done:
    sm_envelope_free_rcpts(&env);
    xfree(config_dir_copy);
    xfree(env.sender);
    xfree(env.fullname);
    xfree(env.notify);
    xfree(env.ret);
    xfree(env.envid);
    strbuf_release(&addr);
    strbuf_release(&err);
    return rc;
}
