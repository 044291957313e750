/*
 * local_resolve.c - what one local recipient becomes: aliases, :include:
 * files, ~/.forward, and finally a mailbox.
 *
 * Order for a local name (lowercased; "user+ext" tried before "user"):
 *   1. alias_maps, unless the name is already being alias-expanded (an
 *      alias that expands to itself means that user's mailbox) or came as
 *      \name;
 *   2. the user's .forward (forward_path; owned by the user, not group or
 *      world writable), unless that user's .forward is already being
 *      expanded or the name came as \name;
 *   3. the mailbox (local_mailbox.c).
 * Items of aliases, .forward and :include: files: local names recurse;
 * user@domain is resubmitted through cleanup; |command and /file are
 * delivered when allow_mail_to_commands / allow_mail_to_files permit the
 * source (alias, forward, include).
 *
 * Privileges for commands and files: alias -> the owner of the alias
 * database (default_privs when root owns it); .forward -> its user
 * (default_privs for root); :include: -> the include file's owner unless
 * root, else the including context's identity.
 *
 * Lists with an owner (as Postfix's local does): when owner-NAME exists,
 * owner-NAME@$myorigin is the sender of NAME's expansion, and every local
 * user in that expansion (a name that is not itself an alias, other than
 * the owner alias) is not delivered directly but resubmitted through
 * cleanup as USER@$myorigin: each member then has its own queue file
 * record, so a member that bounces is reported to the owner, not to the
 * original sender, and a member that defers is retried alone.
 *
 * Partial success: when an expansion got through to some destinations but
 * some mailbox deliveries were deferred (and nothing else was), those
 * users are resubmitted as a new message (same sender) and the recipient
 * is done; so a retry never gives the others a second copy.  Deferred
 * commands, files or :include: reads still defer the whole recipient.
 *
 * Contract: expansion is bounded in depth (LOCAL_MAX_DEPTH) and size
 * (LOCAL_MAX_DESTINATIONS); each destination is delivered at most once per
 * message (duplicate filter, duplicate_filter_limit entries).
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "alias_list.h"
#include "addr.h"
#include "config.h"
#include "local.h"
#include "log.h"
#include "maps.h"
#include "mem.h"

#define LOCAL_MAX_DEPTH         100
#define LOCAL_MAX_DESTINATIONS  1000
#define LOCAL_MAX_LIST_FILE     (1024 * 1024)

/* ---- alias maps, reopened when their file changed ------------------- */

/* Opening a texthash: alias table parses the whole file, so the maps are
 * kept open between requests and reopened only when a file behind them
 * changed (device, inode, size, mtime or ctime differ) or an open failed:
 * an edited aliases file still counts from the next delivery on, as when
 * they were opened per request. */
struct alias_map {
    map *m;
    uid_t owner;                /* owner of the database file; 0 if none */
    int has_file;               /* the spec names a file, stat below */
    struct stat st;
};

static struct alias_map *alias_maps;
static int alias_nmaps;
static int alias_open_failed;   /* a listed map could not be opened */
static int alias_maps_open;

/* The file behind "type:/path" (NAME.db for hash: and btree:); 0 when the
 * spec names no file (inline:, static:, unix:...). */
static int alias_map_file(const char *spec, strbuf *path)
{
    while (strncmp(spec, "proxy:", 6) == 0)
        spec += 6;
    const char *colon = strchr(spec, ':');
    if (colon == NULL || colon[1] != '/')
        return 0;
    strbuf_set_str(path, colon + 1);
    if (strncmp(spec, "hash:", 5) == 0 || strncmp(spec, "btree:", 6) == 0)
        strbuf_append_str(path, ".db");
    return 1;
}

static int same_file(const struct stat *a, const struct stat *b)
{
    return a->st_dev == b->st_dev && a->st_ino == b->st_ino && a->st_size == b->st_size
        && a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec
        && a->st_ctim.tv_sec == b->st_ctim.tv_sec && a->st_ctim.tv_nsec == b->st_ctim.tv_nsec;
}

/* 1 when the open maps are still what alias_maps names. */
static int aliases_current(void)
{
    if (!alias_maps_open || alias_open_failed)
        return 0;
    strbuf path;
    strbuf_init(&path);
    int current = 1;
    for (int i = 0; i < alias_nmaps && current; i++) {
        if (!alias_maps[i].has_file)
            continue;
        struct stat st;
        alias_map_file(map_spec(alias_maps[i].m), &path);
        current = stat(strbuf_str(&path), &st) == 0 && same_file(&st, &alias_maps[i].st);
    }
    strbuf_release(&path);
    return current;
}

static void aliases_close_all(void)
{
    for (int i = 0; i < alias_nmaps; i++)
        map_close(alias_maps[i].m);
    xfree(alias_maps);
    alias_maps = NULL;
    alias_nmaps = 0;
    alias_maps_open = 0;
}

void local_aliases_open(void)
{
    if (aliases_current())
        return;
    aliases_close_all();
    int n = 0;
    char **list = config_list(config_str("alias_maps"), &n);
    strbuf err, path;
    strbuf_init(&err);
    strbuf_init(&path);
    alias_maps = xcalloc((size_t)n + 1, sizeof(*alias_maps));
    alias_open_failed = 0;
    for (int i = 0; i < n; i++) {
        strbuf_reset(&err);
        /* stat before open: a change in between makes the next request
         * reopen, never keeps a stale table. */
        struct stat st;
        int has_file = alias_map_file(list[i], &path);
        if (has_file && stat(strbuf_str(&path), &st) < 0)
            memset(&st, 0, sizeof(st));     /* missing: the open fails below */
        map *m = map_open(list[i], &err);
        if (m == NULL) {
            log_warning("alias_maps: %s", strbuf_str(&err));
            alias_open_failed = 1;
            continue;
        }
        struct alias_map *am = &alias_maps[alias_nmaps++];
        am->m = m;
        am->has_file = has_file;
        am->owner = has_file ? st.st_uid : 0;
        if (has_file)
            am->st = st;
    }
    alias_maps_open = 1;
    config_list_free(list);
    strbuf_release(&err);
    strbuf_release(&path);
}

void local_aliases_close(void)
{
    /* Kept open for the next request; local_aliases_open() checks them. */
}

/* 1 found (value, owner), 0 not found, -1 temporary error.  An aliases(5)
 * file read as a texthash: table keeps the colon of "name: value" in the
 * key, so "name:" is tried after "name" in each map. */
static int alias_lookup(const char *key, strbuf *value, uid_t *owner)
{
    strbuf colon_key;
    strbuf_init(&colon_key);
    strbuf_printf(&colon_key, "%s:", key);
    int rc = 0;
    for (int i = 0; i < alias_nmaps && rc == 0; i++) {
        rc = map_lookup(alias_maps[i].m, key, value);
        if (rc == 0)
            rc = map_lookup(alias_maps[i].m, strbuf_str(&colon_key), value);
        if (rc != 0)
            *owner = alias_maps[i].owner;
    }
    strbuf_release(&colon_key);
    if (rc == 0 && alias_open_failed)
        rc = -1;
    return rc;
}

/* ---- duplicate filter -------------------------------------------------- */

int local_dup_check(struct local_attempt *a, const char *key)
{
    struct local_request *req = a->req;
    for (int i = 0; i < req->ndups; i++) {
        if (strcmp(req->dups[i].key, key) == 0) {
            local_result_add(a, req->dups[i].status, req->dups[i].dsn, "%s",
                             req->dups[i].reason);
            return 1;
        }
    }
    return 0;
}

void local_dup_record(struct local_attempt *a, const char *key,
                      enum local_status status, const char *dsn, const char *reason)
{
    struct local_request *req = a->req;
    if (req->ndups >= config_int("duplicate_filter_limit"))
        return;
    req->dups = xrealloc(req->dups, (size_t)(req->ndups + 1) * sizeof(*req->dups));
    req->dups[req->ndups].key = xstrdup(key);
    req->dups[req->ndups].status = status;
    req->dups[req->ndups].dsn = xstrdup(dsn);
    req->dups[req->ndups].reason = xstrdup(reason);
    req->ndups++;
}

void local_report(struct local_attempt *a, const char *key, enum local_status status,
                  const char *dsn, const char *reason)
{
    local_result_add(a, status, dsn, "%s", reason);
    if (key != NULL)
        local_dup_record(a, key, status, dsn, reason);
}

/* ---- helpers ----------------------------------------------------------- */

static int stack_has(char **stack, int n, const char *name)
{
    for (int i = 0; i < n; i++)
        if (strcmp(stack[i], name) == 0)
            return 1;
    return 0;
}

static void stack_push(char ***stack, int *n, const char *name)
{
    *stack = xrealloc(*stack, (size_t)(*n + 1) * sizeof(char *));
    (*stack)[(*n)++] = xstrdup(name);
}

static void stack_pop(char **stack, int *n)
{
    xfree(stack[--(*n)]);
}

static char *lowercase(const char *s)
{
    char *d = xstrdup(s);
    for (char *p = d; *p; p++)
        *p = (char)tolower((unsigned char)*p);
    return d;
}

/* Split NAME into user and extension at the first recipient_delimiter
 * character; owner-x and x-request stay whole (owner_request_special). */
static void split_extension(const char *name, char **user, char **ext)
{
    const char *delims = config_str("recipient_delimiter");
    size_t len = strlen(name);
    size_t pos = *delims ? strcspn(name, delims) : len;
    if (config_bool("owner_request_special")
        && (strncmp(name, "owner-", 6) == 0
            || (len > 8 && strcmp(name + len - 8, "-request") == 0))
        && strchr(delims, '-') != NULL)
        pos = len;
    if (pos == 0 || pos >= len) {
        *user = xstrdup(name);
        *ext = xstrdup("");
    } else {
        *user = xstrndup(name, pos);
        *ext = xstrdup(name + pos + 1);
    }
}

/* Allowed sources for commands or files, from a list "alias, forward". */
static int allowed_sources(const char *param)
{
    int n = 0, mask = 0;
    char **list = config_list(config_str(param), &n);
    for (int i = 0; i < n; i++) {
        if (strcasecmp(list[i], "alias") == 0)
            mask |= SOURCE_ALIAS;
        else if (strcasecmp(list[i], "forward") == 0)
            mask |= SOURCE_FORWARD;
        else if (strcasecmp(list[i], "include") == 0)
            mask |= SOURCE_INCLUDE;
        else
            log_warning("%s: unknown source: %s", param, list[i]);
    }
    config_list_free(list);
    return mask;
}

/* The identity commands and files run as for a context owned by uid. */
static void identity_for_owner(uid_t owner, struct local_user *out)
{
    if (!local_is_root) {
        local_user_copy(out, &local_instance_user);
    } else if (owner == 0 || !local_user_by_uid(owner, out)) {
        local_user_copy(out, &local_default_privs);
    }
}

/* Read a small list file (.forward, :include:) as identity uid/gid.
 * 1 read, 0 absent or unusable (skipped), -1 temporary error (why set). */
static int read_list_file(const char *path, uid_t uid, gid_t gid, int forward,
                          strbuf *content, uid_t *file_owner, strbuf *why)
{
    int result = 0;
    if (local_become(uid, gid) < 0) {
        strbuf_printf(why, "cannot switch to uid %ld", (long)uid);
        return -1;
    }
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | (forward ? O_NOFOLLOW : 0));
    if (fd < 0) {
        if (errno == ENOENT || errno == ENOTDIR || errno == ELOOP
            || (forward && errno == EACCES)) {
            result = 0;
        } else {
            strbuf_printf(why, "cannot open %s: %s", path, strerror(errno));
            result = -1;
        }
        goto out;
    }
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        log_warning("%s: not a regular file -- ignored", path);
        goto close_out;
    }
    if (forward && (st.st_uid != uid || (st.st_mode & 022) != 0)) {
        log_warning("%s: not owned by uid %ld or group/world writable -- ignored",
                    path, (long)uid);
        goto close_out;
    }
    *file_owner = st.st_uid;
    strbuf_reset(content);
    content->limit = LOCAL_MAX_LIST_FILE;
    char chunk[8192];
    for (;;) {
        ssize_t n = read(fd, chunk, sizeof(chunk));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            strbuf_printf(why, "read %s: %s", path, strerror(errno));
            result = -1;
            break;
        }
        if (n == 0) {
            result = 1;
            break;
        }
        if (strbuf_append(content, chunk, (size_t)n) < 0) {
            strbuf_printf(why, "%s: larger than %d bytes", path, LOCAL_MAX_LIST_FILE);
            result = -1;
            break;
        }
    }
    content->limit = 0;
close_out:
    close(fd);
out:
    local_unbecome();
    return result;
}

/* Per-recipient expansion of forward_path and mailbox_command: $name,
 * ${name}, ${name?text}, ${name:text} with name one of home user extension
 * local domain recipient shell or a main.cf parameter; any other $NAME
 * (e.g. $EXTENSION for the shell) is kept as written. */
struct expand_vars {
    const char *home, *user, *extension, *local, *domain, *recipient, *shell;
};

/* The value of name, or NULL when it is not a known name. */
static const char *expand_var(const struct expand_vars *v, const char *name)
{
    if (strcmp(name, "home") == 0) return v->home;
    if (strcmp(name, "user") == 0) return v->user;
    if (strcmp(name, "extension") == 0) return v->extension;
    if (strcmp(name, "local") == 0) return v->local;
    if (strcmp(name, "domain") == 0) return v->domain;
    if (strcmp(name, "recipient") == 0) return v->recipient;
    if (strcmp(name, "shell") == 0) return v->shell;
    if (config_lookup_def(name))
        return config_str(name);
    return NULL;
}

static void expand_text(strbuf *out, const char *s, size_t len,
                        const struct expand_vars *v, int depth)
{
    size_t i = 0;
    while (i < len) {
        if (s[i] != '$' || depth > 10) {
            strbuf_append_char(out, s[i++]);
            continue;
        }
        size_t dollar = i++;
        strbuf name;
        strbuf_init(&name);
        if (i < len && s[i] == '$') {
            strbuf_append_char(out, '$');
            i++;
        } else if (i < len && s[i] == '{') {
            size_t start = ++i;
            int nest = 1;
            size_t end = start;
            while (end < len && nest > 0) {
                if (s[end] == '{')
                    nest++;
                else if (s[end] == '}')
                    nest--;
                if (nest > 0)
                    end++;
            }
            size_t name_end = start;
            while (name_end < end && (isalnum((unsigned char)s[name_end]) || s[name_end] == '_'))
                name_end++;
            strbuf_set(&name, s + start, name_end - start);
            const char *val = expand_var(v, strbuf_str(&name));
            if (name_end < end && s[name_end] == '?') {
                if (val && *val)
                    expand_text(out, s + name_end + 1, end - name_end - 1, v, depth + 1);
            } else if (name_end < end && s[name_end] == ':') {
                if (!val || !*val)
                    expand_text(out, s + name_end + 1, end - name_end - 1, v, depth + 1);
            } else if (val) {
                strbuf_append_str(out, val);
            } else {
                strbuf_append(out, s + dollar, (end < len ? end + 1 : len) - dollar);
            }
            i = end < len ? end + 1 : len;
        } else {
            size_t start = i;
            while (i < len && (isalnum((unsigned char)s[i]) || s[i] == '_'))
                i++;
            strbuf_set(&name, s + start, i - start);
            const char *val = name.len ? expand_var(v, strbuf_str(&name)) : NULL;
            if (val)
                strbuf_append_str(out, val);
            else
                strbuf_append(out, s + dollar, i - dollar);
        }
        strbuf_release(&name);
    }
}

void local_expand(strbuf *out, const char *raw, const struct local_attempt *a,
                  const struct local_user *pw, const char *extension)
{
    struct expand_vars v = {
        .home = pw->home, .user = pw->name, .extension = extension,
        .local = a->local_part, .domain = a->domain, .recipient = a->rcpt,
        .shell = pw->shell,
    };
    expand_text(out, raw, strlen(raw), &v, 0);
}

/* ---- expansion ------------------------------------------------------- */

static void expand_local(struct local_attempt *a, const char *name, int level,
                         int no_expand);

static void expand_items(struct local_attempt *a, const char *text, size_t len,
                         enum local_source src, const struct local_user *ident,
                         int level, const char *what);

static void expand_include(struct local_attempt *a, const char *path,
                           const struct local_user *ident, int level)
{
    strbuf key, content, why;
    strbuf_init(&key);
    strbuf_init(&content);
    strbuf_init(&why);
    strbuf_printf(&key, ":include:%s", path);
    if (stack_has(a->alias_stack, a->nalias_stack, strbuf_str(&key))) {
        log_warning("%s: :include: loop on %s -- ignored", a->req->qid, path);
        goto out;
    }
    uid_t owner = 0;
    int rc = read_list_file(path, ident->uid, ident->gid, 0, &content, &owner, &why);
    if (rc <= 0) {
        if (rc == 0)
            strbuf_printf(&why, "cannot open include file %s", path);
        log_warning("%s: %s", a->req->qid, strbuf_str(&why));
        local_result_add(a, LOCAL_DEFER, "4.3.0", "%s", strbuf_str(&why));
        goto out;
    }
    struct local_user inc_ident;
    memset(&inc_ident, 0, sizeof(inc_ident));
    if (owner != 0 && local_is_root)
        identity_for_owner(owner, &inc_ident);
    else
        local_user_copy(&inc_ident, ident);
    stack_push(&a->alias_stack, &a->nalias_stack, strbuf_str(&key));
    expand_items(a, content.data, content.len, SOURCE_INCLUDE, &inc_ident, level, path);
    stack_pop(a->alias_stack, &a->nalias_stack);
    local_user_free(&inc_ident);
out:
    strbuf_release(&key);
    strbuf_release(&content);
    strbuf_release(&why);
}

static void expand_items(struct local_attempt *a, const char *text, size_t len,
                         enum local_source src, const struct local_user *ident,
                         int level, const char *what)
{
    struct alias_item *items;
    strbuf err;
    strbuf_init(&err);
    int n = alias_list_parse(text, len, &items, &err);
    if (n < 0) {
        log_warning("%s: malformed entry for %s: %s", a->req->qid, what, strbuf_str(&err));
        local_result_add(a, LOCAL_DEFER, "4.3.5", "malformed alias or forward entry for %s: %s",
                         what, strbuf_str(&err));
        strbuf_release(&err);
        return;
    }
    strbuf_release(&err);
    for (int i = 0; i < n; i++) {
        struct alias_item *it = &items[i];
        if (++a->ndestinations > LOCAL_MAX_DESTINATIONS) {
            local_result_add(a, LOCAL_BOUNCE, "5.4.6",
                             "too many destinations in the expansion of %s", a->rcpt);
            break;
        }
        switch (it->kind) {
        case ALIAS_ITEM_ADDRESS:
            if (strchr(it->value, '@') != NULL) {
                local_forward_add(a, it->value);
            } else {
                char *name = lowercase(it->value);
                expand_local(a, name, level + 1, it->no_expand);
                xfree(name);
            }
            break;
        case ALIAS_ITEM_COMMAND:
            if (!(allowed_sources("allow_mail_to_commands") & src))
                local_result_add(a, LOCAL_BOUNCE, "5.7.1", "mail to command is restricted: %s",
                                 it->value);
            else
                local_deliver_command(a, it->value, ident);
            break;
        case ALIAS_ITEM_FILE:
            if (!(allowed_sources("allow_mail_to_files") & src))
                local_result_add(a, LOCAL_BOUNCE, "5.7.1", "mail to file is restricted: %s",
                                 it->value);
            else
                local_deliver_file(a, it->value, ident);
            break;
        case ALIAS_ITEM_INCLUDE:
            expand_include(a, it->value, ident, level + 1);
            break;
        }
    }
    alias_list_free(items, n);
}

/* Try the aliases for name (then its base without extension).
 * 1 handled, 0 no alias. */
static int expand_alias(struct local_attempt *a, const char *name, const char *user,
                        const char *ext, int level)
{
    strbuf value;
    strbuf_init(&value);
    uid_t owner = 0;
    const char *key = name;
    int rc = alias_lookup(name, &value, &owner);
    if (rc == 0 && *ext && !stack_has(a->alias_stack, a->nalias_stack, user)) {
        key = user;
        rc = alias_lookup(user, &value, &owner);
    }
    if (rc < 0) {
        local_result_add(a, LOCAL_DEFER, "4.3.0", "alias database unavailable");
        strbuf_release(&value);
        return 1;
    }
    if (rc == 0) {
        strbuf_release(&value);
        return 0;
    }

    /* owner-NAME: errors and forwarded copies of NAME's expansion go there */
    const char *saved_sender = a->sender;
    const char *saved_owner = a->owner;
    strbuf owner_addr, owner_value;
    strbuf_init(&owner_addr);
    strbuf_init(&owner_value);
    if (config_bool("owner_request_special") && strncmp(key, "owner-", 6) != 0) {
        strbuf_printf(&owner_addr, "owner-%s", key);
        uid_t ignored;
        if (alias_lookup(strbuf_str(&owner_addr), &owner_value, &ignored) == 1) {
            /* owner_value is no longer needed: it keeps the bare name */
            strbuf_set(&owner_value, owner_addr.data, owner_addr.len);
            a->owner = strbuf_str(&owner_value);
            strbuf_appendf(&owner_addr, "@%s", config_str("myorigin"));
            a->sender = strbuf_str(&owner_addr);
        }
    }

    struct local_user ident;
    memset(&ident, 0, sizeof(ident));
    identity_for_owner(owner, &ident);
    stack_push(&a->alias_stack, &a->nalias_stack, name);
    if (key != name)
        stack_push(&a->alias_stack, &a->nalias_stack, key);
    expand_items(a, value.data, value.len, SOURCE_ALIAS, &ident, level, key);
    if (key != name)
        stack_pop(a->alias_stack, &a->nalias_stack);
    stack_pop(a->alias_stack, &a->nalias_stack);
    local_user_free(&ident);
    a->sender = saved_sender;
    a->owner = saved_owner;
    strbuf_release(&owner_addr);
    strbuf_release(&owner_value);
    strbuf_release(&value);
    return 1;
}

/* The user's .forward: 1 handled, 0 none. */
static int expand_forward(struct local_attempt *a, const struct local_user *pw,
                          const char *ext, int level)
{
    strbuf paths, content, why;
    strbuf_init(&paths);
    strbuf_init(&content);
    strbuf_init(&why);
    local_expand(&paths, config_raw("forward_path"), a, pw, ext);
    int n = 0, handled = 0;
    char **list = config_list(strbuf_str(&paths), &n);
    for (int i = 0; i < n && !handled; i++) {
        if (list[i][0] != '/')
            continue;
        uid_t owner = 0;
        int rc = read_list_file(list[i], pw->uid, pw->gid, 1, &content, &owner, &why);
        if (rc < 0) {
            log_warning("%s: %s", a->req->qid, strbuf_str(&why));
            local_result_add(a, LOCAL_DEFER, "4.3.0", "%s", strbuf_str(&why));
            handled = 1;
        } else if (rc == 1) {
            struct local_user ident;
            memset(&ident, 0, sizeof(ident));
            if (local_is_root && pw->uid == 0)
                local_user_copy(&ident, &local_default_privs);
            else
                local_user_copy(&ident, pw);
            stack_push(&a->forward_stack, &a->nforward_stack, pw->name);
            expand_items(a, content.data, content.len, SOURCE_FORWARD, &ident, level, list[i]);
            stack_pop(a->forward_stack, &a->nforward_stack);
            local_user_free(&ident);
            handled = 1;
        }
    }
    config_list_free(list);
    strbuf_release(&paths);
    strbuf_release(&content);
    strbuf_release(&why);
    return handled;
}

static void expand_local(struct local_attempt *a, const char *name, int level,
                         int no_expand)
{
    if (level > LOCAL_MAX_DEPTH) {
        local_result_add(a, LOCAL_BOUNCE, "5.4.6",
                         "alias expansion of %s is nested too deeply", a->rcpt);
        return;
    }
    char *user, *ext;
    split_extension(name, &user, &ext);
    if (!no_expand && !stack_has(a->alias_stack, a->nalias_stack, name)
        && expand_alias(a, name, user, ext, level))
        goto out;

    if (!local_user_name_safe(user)) {
        local_result_add(a, LOCAL_BOUNCE, "5.1.3", "bad address syntax: \"%s\"", user);
        goto out;
    }
    if (a->owner != NULL && !no_expand && strcmp(user, a->owner) != 0) {
        /* a member of a list with an owner: its own queue file record */
        strbuf addr;
        strbuf_init(&addr);
        strbuf_printf(&addr, "%s@%s", name, config_str("myorigin"));
        local_forward_add(a, strbuf_str(&addr));
        strbuf_release(&addr);
        goto out;
    }
    struct local_user pw;
    int found = local_user_lookup(user, &pw);
    if (!found && local_is_root) {
        local_result_add(a, LOCAL_BOUNCE, "5.1.1", "unknown user: \"%s\"", user);
        goto out;
    }
    if (found && !no_expand && (local_is_root || pw.uid == geteuid())
        && !stack_has(a->forward_stack, a->nforward_stack, pw.name)
        && expand_forward(a, &pw, ext, level)) {
        local_user_free(&pw);
        goto out;
    }
    int deferred_before = a->result.ndeferred;
    local_deliver_mailbox(a, user, found ? &pw : NULL);
    if (a->result.ndeferred > deferred_before && level > 0) {
        /* may be resubmitted alone if the rest of the expansion got through */
        a->retry_name = xrealloc(a->retry_name, (size_t) (a->nretry + 1) * sizeof(char *));
        a->retry_sender = xrealloc(a->retry_sender, (size_t) (a->nretry + 1) * sizeof(char *));
        a->retry_name[a->nretry] = xstrdup(name);
        a->retry_sender[a->nretry] = xstrdup(a->sender);
        a->nretry++;
    }
    if (found)
        local_user_free(&pw);
out:
    xfree(user);
    xfree(ext);
}

/* Partial success (see the top): the deferred mailbox deliveries become
 * a new message to those users, and the recipient's failure is cleared.
 * Only when every deferral was such a delivery and something else got (or
 * is about to get) the message. */
static void resubmit_deferred_members(struct local_attempt *a)
{
    struct local_result *r = &a->result;
    if (r->status != LOCAL_DEFER || a->nretry == 0 || r->ndeferred != a->nretry
        || r->ndelivered + a->nforward == 0)
        return;
    const char *saved_sender = a->sender;
    strbuf addr;
    strbuf_init(&addr);
    for (int i = 0; i < a->nretry; i++) {
        log_info("%s: %s: mailbox of %s deferred: resubmitted to it alone", a->req->qid,
                 a->rcpt, a->retry_name[i]);
        strbuf_printf(&addr, "%s@%s", a->retry_name[i], config_str("myorigin"));
        a->sender = a->retry_sender[i];
        local_forward_add(a, strbuf_str(&addr));
    }
    a->sender = saved_sender;
    strbuf_release(&addr);
    r->status = LOCAL_SENT;
    r->ndeferred = 0;
    strbuf_reset(&r->dsn);
    strbuf_reset(&r->reason);
}

void local_resolve(struct local_attempt *a)
{
    strbuf lp, dom;
    strbuf_init(&lp);
    strbuf_init(&dom);
    addr_split(a->rcpt, &lp, &dom);
    a->local_part = lowercase(strbuf_str(&lp));
    a->domain = xstrdup(strbuf_str(&dom));
    char *user;
    split_extension(a->local_part, &user, &a->extension);
    xfree(user);
    strbuf_release(&lp);
    strbuf_release(&dom);

    /* A copy that already passed through this recipient is a loop. */
    char *rcpt_lc = lowercase(a->rcpt);
    for (int i = 0; i < a->req->ndelivered_to; i++) {
        if (strcmp(a->req->delivered_to[i], rcpt_lc) == 0) {
            local_result_add(a, LOCAL_BOUNCE, "5.4.6", "mail forwarding loop for %s", a->rcpt);
            xfree(rcpt_lc);
            return;
        }
    }
    xfree(rcpt_lc);
    if (a->local_part[0] == '\0') {
        local_result_add(a, LOCAL_BOUNCE, "5.1.3", "bad address syntax: empty local part");
        return;
    }
    expand_local(a, a->local_part, 0, 0);
    local_owner_report(a);
    resubmit_deferred_members(a);
    local_forward_flush(a);
}
