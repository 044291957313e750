/*
 * cmd_conf.c - `postern conf`: show and change main.cf, show master.cf
 * (Postfix's postconf, as a subcommand).
 *
 *   postern conf [-n|-d] [-h] [-x] [NAME...]
 *       every parameter as "name = value", sorted by name (the value as
 *       written, $names unexpanded); -n only those main.cf sets (including
 *       names params.def does not know), -d the built-in defaults, -h the
 *       values without "name = ", -x values with $names expanded.  NAMEs
 *       select parameters; an unknown one is a warning and exit 1.
 *   postern conf [-e] NAME=VALUE...
 *       edit main.cf in place (config_edit: comments, order and other
 *       entries kept; the file replaced atomically: temp file, fsync,
 *       rename).  Every assignment is checked first; none is written when
 *       one is bad.
 *   postern conf -M [SERVICE[/TYPE]...]
 *       master.cf services, one line each in master.cf's column layout.
 *
 * Contract: output on stdout; any error one "postern: fatal: ..." line and
 * exit 1.  Editing needs write access to the configuration directory;
 * running services see the change after `postern reload`.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "master_cf.h"
#include "mem.h"
#include "postern.h"
#include "strbuf.h"

#define SHOW_NONDEFAULT 1
#define SHOW_DEFAULTS 2
#define SHOW_VALUES_ONLY 4
#define SHOW_EXPANDED 8

struct name_list {
    char **v;
    int n, cap;
};

static void name_list_add(struct name_list *l, const char *name)
{
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 256;
        l->v = xrealloc(l->v, (size_t) l->cap * sizeof(*l->v));
    }
    l->v[l->n++] = xstrdup(name);
}

static int collect_known(const struct param_def *def, void *ctx)
{
    name_list_add(ctx, def->name);
    return 0;
}

static void collect_unknown(const char *name, const char *file, int line, void *ctx)
{
    (void) file;
    (void) line;
    name_list_add(ctx, name);
}

static int cmp_name(const void *a, const void *b)
{
    return strcmp(*(char *const *) a, *(char *const *) b);
}

/* Known to params.def or set in main.cf. */
static int name_known(const char *name, const struct name_list *user)
{
    if (config_lookup_def(name))
        return 1;
    for (int i = 0; i < user->n; i++)
        if (strcmp(user->v[i], name) == 0)
            return 1;
    return 0;
}

static void show_one(const char *name, int flags)
{
    const char *value;
    if (flags & SHOW_DEFAULTS)
        value = config_lookup_def(name) ? config_default(name) : "";
    else if (flags & SHOW_EXPANDED)
        value = config_str(name);
    else
        value = config_raw(name);
    if (flags & SHOW_VALUES_ONLY)
        printf("%s\n", value);
    else if (*value)
        printf("%s = %s\n", name, value);
    else
        printf("%s =\n", name);
}

static int conf_edit(int argc, char **argv)
{
    for (int i = 0; i < argc; i++)
        if (strchr(argv[i], '=') == NULL)
            postern_fatal("conf: \"%s\" is not NAME=VALUE (do not mix names and assignments)",
                          argv[i]);
    strbuf err;
    strbuf_init(&err);
    /* A missing main.cf almost always means the wrong -c: never create one. */
    strbuf_printf(&err, "%s/main.cf", postern_config_dir());
    if (access(strbuf_str(&err), F_OK) < 0)
        postern_fatal("conf: %s: %m", strbuf_str(&err));
    strbuf_reset(&err);
    if (config_edit(postern_config_dir(), argv, argc, &err) < 0)
        postern_fatal("conf: %s", strbuf_str(&err));
    strbuf_release(&err);
    return 0;
}

static const char *yes_no(int v)
{
    return v ? "y" : "n";
}

static int conf_master(int argc, char **argv)
{
    strbuf path, err;
    strbuf_init(&path);
    strbuf_init(&err);
    strbuf_printf(&path, "%s/master.cf", postern_config_dir());
    struct master_service *list = NULL;
    if (master_cf_load(strbuf_str(&path), &list, &err) < 0)
        postern_fatal("%s", strbuf_str(&err));
    int *matched = xcalloc((size_t) argc + 1, sizeof(int));
    for (struct master_service *s = list; s; s = s->next) {
        int want = argc == 0;
        for (int i = 0; i < argc; i++) {
            const char *slash = strchr(argv[i], '/');
            size_t nlen = slash ? (size_t) (slash - argv[i]) : strlen(argv[i]);
            if (strlen(s->name) == nlen && strncmp(s->name, argv[i], nlen) == 0
                && (!slash || strcmp(slash + 1, s->type_name) == 0)) {
                want = 1;
                matched[i] = 1;
            }
        }
        if (!want)
            continue;
        char wakeup[32], maxproc[32];
        if (s->wakeup)
            snprintf(wakeup, sizeof(wakeup), "%d%s", s->wakeup, s->wakeup_conditional ? "?" : "");
        else
            snprintf(wakeup, sizeof(wakeup), "-");
        if (s->maxproc < 0)
            snprintf(maxproc, sizeof(maxproc), "-");
        else
            snprintf(maxproc, sizeof(maxproc), "%d", s->maxproc);
        printf("%-9s %-5s %-7s %-7s %-7s %-7s %-7s", s->name, s->type_name,
               s->type == SERVICE_INET ? "n" : yes_no(s->private_), yes_no(s->unpriv),
               yes_no(s->chroot), wakeup, maxproc);
        for (int i = 0; i < s->argc; i++)
            printf(" %s", s->argv[i]);
        putchar('\n');
    }
    int rc = 0;
    for (int i = 0; i < argc; i++)
        if (!matched[i]) {
            postern_warning("%s: no such service in %s", argv[i], strbuf_str(&path));
            rc = 1;
        }
    xfree(matched);
    master_cf_free(list);
    strbuf_release(&path);
    strbuf_release(&err);
    return rc;
}

int postern_cmd_conf(int argc, char **argv)
{
    int flags = 0, master = 0, edit = 0, i = 1;
    for (; i < argc && argv[i][0] == '-' && argv[i][1]; i++) {
        if (strcmp(argv[i], "--") == 0) {
            i++;
            break;
        }
        for (const char *f = argv[i] + 1; *f; f++) {
            switch (*f) {
            case 'n': flags |= SHOW_NONDEFAULT; break;
            case 'd': flags |= SHOW_DEFAULTS; break;
            case 'h': flags |= SHOW_VALUES_ONLY; break;
            case 'x': flags |= SHOW_EXPANDED; break;
            case 'M': master = 1; break;
            case 'e': edit = 1; break;
            default:
                postern_fatal("conf: unknown option -%c (usage: postern conf [-n|-d] [-h] [-x] "
                              "[NAME...] | postern conf NAME=VALUE... | postern conf -M)", *f);
            }
        }
    }
    if ((flags & SHOW_NONDEFAULT) && (flags & SHOW_DEFAULTS))
        postern_fatal("conf: -n and -d cannot be used together");
    if (master) {
        if (flags || edit)
            postern_fatal("conf: -M takes no other option");
        return conf_master(argc - i, argv + i);
    }
    int assignments = 0;
    for (int k = i; k < argc; k++)
        if (strchr(argv[k], '='))
            assignments++;
    if (edit || assignments) {
        if (flags)
            postern_fatal("conf: -n, -d, -h and -x do not apply to NAME=VALUE");
        if (argc - i == 0)
            postern_fatal("usage: postern conf NAME=VALUE...");
        return conf_edit(argc - i, argv + i);
    }
    postern_load_config();

    struct name_list user = { 0 };
    config_unknown(collect_unknown, &user);
    int rc = 0;
    if (argc - i > 0) {
        for (int k = i; k < argc; k++) {
            if (!name_known(argv[k], &user)) {
                postern_warning("%s: unknown parameter", argv[k]);
                rc = 1;
                continue;
            }
            if ((flags & SHOW_NONDEFAULT) && config_lookup_def(argv[k]) && !config_is_set(argv[k]))
                continue;
            show_one(argv[k], flags);
        }
    } else {
        struct name_list all = { 0 };
        config_each(collect_known, &all);
        if (!(flags & SHOW_DEFAULTS))
            for (int k = 0; k < user.n; k++)
                name_list_add(&all, user.v[k]);
        qsort(all.v, (size_t) all.n, sizeof(*all.v), cmp_name);
        for (int k = 0; k < all.n; k++) {
            if (k > 0 && strcmp(all.v[k], all.v[k - 1]) == 0)
                continue;
            if ((flags & SHOW_NONDEFAULT) && config_lookup_def(all.v[k])
                && !config_is_set(all.v[k]))
                continue;
            show_one(all.v[k], flags);
        }
        for (int k = 0; k < all.n; k++)
            xfree(all.v[k]);
        xfree(all.v);
    }
    for (int k = 0; k < user.n; k++)
        xfree(user.v[k]);
    xfree(user.v);
    if (fflush(stdout) != 0)
        postern_fatal("write error on standard output");
    return rc;
}
