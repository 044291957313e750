/*
 * config.c - main.cf: the parameter table, the file parser, $name expansion
 * and the typed accessors.  See config.h for the interface.
 *
 * Layers, highest priority first: config_override() values, main.cf values,
 * the params.def defaults.  Each parameter's expanded value is cached and
 * the whole cache is invalidated (by a generation counter) whenever a layer
 * changes.
 *
 * main.cf syntax (Postfix's):
 *   name = value        name is [A-Za-z0-9_]+; blanks around '=' and at the
 *                       end of the value are dropped.
 *   <blank>more text    a line that starts with whitespace continues the
 *                       previous logical line (joined with one space).
 *   # comment           a line whose first non-blank character is '#';
 *                       comments and blank lines do not end a logical line.
 *   NUL bytes are refused.  A later assignment of the same name wins.
 *
 * Expansion (applied by config_str and the typed accessors):
 *   $name ${name} $(name)   the expanded value of name; empty if undefined
 *   ${name?text}            text (expanded) if $name is non-empty, else ""
 *   ${name:text}            text (expanded) if $name is empty, else ""
 *   ${name?{a}:{b}}         Postfix 3: a if $name is non-empty, else b;
 *   ${name?{a}} ${name:{a}} like the plain forms.  Blanks around and
 *                           inside the braces are dropped.  A value that
 *                           starts with '{' must be one of these forms.
 *   $$                      a literal '$'; a '$' followed by anything else
 *                           (blank, punctuation, end of text) is literal.
 * Names defined only in main.cf or by an override ("user-defined", e.g.
 * mua_client_restrictions) expand like the built-in ones.
 *
 * Contract beyond config.h:
 *   - config_load() is all-or-nothing: on error nothing changes.  It checks
 *     the syntax of every value's expansions and the type of every known
 *     parameter whose value holds no '$', so mistakes are reported with file
 *     and line at load time rather than as a fatal error later.
 *   - Strings returned by config_str()/config_raw() stay valid until the
 *     next config_load(); config_override() never frees earlier results.
 *   - config_str(), config_raw() and config_is_set() also accept
 *     user-defined names; any other name not in params.def log_panic()s.
 *   - config_override(name, NULL) removes an override.
 *   - config_load() sets config_directory to the directory it read (a
 *     config_directory line in main.cf cannot point elsewhere).
 *   - config_edit() validates every assignment (name, expansion syntax,
 *     type) before touching the file; replaces the first entry of a name
 *     (with its continuation lines) in place and deletes later duplicates;
 *     appends new names at the end in argument order; keeps the file's
 *     mode (and owner, when run as root); writes a temporary file in the
 *     same directory, fsyncs it, renames it over main.cf and fsyncs the
 *     directory.  A missing main.cf is created.
 *   - Computed defaults: an empty myhostname is gethostname(), made
 *     fully qualified by appending ".localdomain" when it has no dot; an
 *     empty mydomain is myhostname minus its first label ("localdomain"
 *     when myhostname has no dot).
 *   - Not thread-safe (no daemon uses threads).
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "file_read.h"
#include "log.h"
#include "mem.h"
#include "strbuf.h"

#define EXPAND_MAX_DEPTH 100
#define MAIN_CF_MAX_SIZE (64 * 1024 * 1024)     /* sanity bound, not a policy */

static const struct param_def param_table[] = {
#define PARAM(n, t, d, doc) { n, t, d, doc },
#include "params.def"
#undef PARAM
};
#define PARAM_COUNT (sizeof(param_table) / sizeof(param_table[0]))

/* One parameter's state: the layers above its default, and the cache. */
struct param_value {
    const struct param_def *def;        /* NULL for a user-defined name */
    char *name;                         /* owned, user-defined only */
    char *file_value;                   /* main.cf, NULL = not set */
    int file_line;
    char *override_value;               /* config_override, NULL = none */
    char *cache;                        /* expanded value */
    unsigned cache_gen;                 /* valid iff == config_generation */
};

static struct param_value known_values[PARAM_COUNT];
static size_t sorted_index[PARAM_COUNT];        /* known_values by name */
static int table_ready;

static struct param_value *user_values;         /* user-defined names */
static size_t user_count, user_cap;

static unsigned config_generation = 1;
static char *loaded_dir;                        /* what config_load read */
static char *loaded_file;                       /* DIR/main.cf */

/* Old cached expansions, kept until the next config_load (see contract). */
static char **retired;
static size_t retired_count, retired_cap;

/* ------------------------------------------------------------------ */
/* table lookup                                                         */

static int compare_index_by_name(const void *a, const void *b)
{
    return strcmp(param_table[*(const size_t *) a].name,
                  param_table[*(const size_t *) b].name);
}

static void table_init(void)
{
    if (table_ready)
        return;
    for (size_t i = 0; i < PARAM_COUNT; i++) {
        known_values[i].def = &param_table[i];
        sorted_index[i] = i;
    }
    qsort(sorted_index, PARAM_COUNT, sizeof(sorted_index[0]), compare_index_by_name);
    for (size_t i = 1; i < PARAM_COUNT; i++)
        if (strcmp(param_table[sorted_index[i - 1]].name,
                   param_table[sorted_index[i]].name) == 0)
            log_panic("params.def: parameter %s is declared twice",
                      param_table[sorted_index[i]].name);
    table_ready = 1;
}

static struct param_value *find_known(const char *name)
{
    table_init();
    size_t lo = 0, hi = PARAM_COUNT;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int cmp = strcmp(name, param_table[sorted_index[mid]].name);
        if (cmp == 0)
            return &known_values[sorted_index[mid]];
        if (cmp < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return NULL;
}

static struct param_value *find_user(const char *name)
{
    for (size_t i = 0; i < user_count; i++)
        if (strcmp(user_values[i].name, name) == 0)
            return &user_values[i];
    return NULL;
}

static struct param_value *find_any(const char *name)
{
    struct param_value *pv = find_known(name);
    return pv ? pv : find_user(name);
}

static struct param_value *add_user(const char *name)
{
    if (user_count == user_cap) {
        user_cap = user_cap ? user_cap * 2 : 16;
        user_values = xrealloc(user_values, user_cap * sizeof(*user_values));
    }
    struct param_value *pv = &user_values[user_count++];
    memset(pv, 0, sizeof(*pv));
    pv->name = xstrdup(name);
    return pv;
}

static const char *value_name(const struct param_value *pv)
{
    return pv->def ? pv->def->name : pv->name;
}

/* A programming error: the name is neither in params.def nor user-defined. */
static struct param_value *require(const char *name, const char *caller)
{
    struct param_value *pv = find_any(name);
    if (pv == NULL)
        log_panic("%s: unknown parameter: %s", caller, name);
    return pv;
}

static const char *raw_value(const struct param_value *pv)
{
    if (pv->override_value)
        return pv->override_value;
    if (pv->file_value)
        return pv->file_value;
    return pv->def ? pv->def->def : "";
}

static void retire(char *s)
{
    if (s == NULL)
        return;
    if (retired_count == retired_cap) {
        retired_cap = retired_cap ? retired_cap * 2 : 32;
        retired = xrealloc(retired, retired_cap * sizeof(*retired));
    }
    retired[retired_count++] = s;
}

static void free_retired(void)
{
    for (size_t i = 0; i < retired_count; i++)
        xfree(retired[i]);
    retired_count = 0;
}

/* ------------------------------------------------------------------ */
/* expansion                                                            */

static int is_name_char(int c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
        || (c >= '0' && c <= '9') || c == '_';
}

/* Describe a byte for an error message: 'x' or \xNN. */
static void describe_char(strbuf *sb, unsigned char c)
{
    if (c >= 0x21 && c < 0x7f)
        strbuf_appendf(sb, "'%c'", c);
    else
        strbuf_appendf(sb, "\\x%02x", c);
}

static const char *expand_param(struct param_value *pv, int depth);

/* Expanded value of NAME for use inside another value ("" if undefined). */
static const char *expand_name(const char *name, size_t len, int depth)
{
    char *copy = xstrndup(name, len);
    struct param_value *pv = find_any(copy);
    xfree(copy);
    return pv ? expand_param(pv, depth) : "";
}

struct text_span {
    const char *text;
    size_t len;
};

long config_brace_group(const char *text, size_t len, size_t open_at,
                        const char **inner, size_t *inner_len)
{
    size_t nesting = 0, i;
    for (i = open_at; i < len; i++) {
        if (text[i] == '{')
            nesting++;
        else if (text[i] == '}' && --nesting == 0)
            break;
    }
    if (i >= len)
        return -1;
    if (inner) {
        size_t a = open_at + 1, b = i;
        while (a < b && isspace((unsigned char) text[a]))
            a++;
        while (b > a && isspace((unsigned char) text[b - 1]))
            b--;
        *inner = text + a;
        *inner_len = b - a;
    }
    return (long) i;
}

/*
 * The value part of ${name?...} / ${name:...} in Postfix 3's brace form:
 * "{v1}" or, when allow_else, "{v1}:{v2}" (blanks allowed around the
 * groups and trimmed inside them).  Returns the number of values found (1
 * or 2), 0 when TEXT does not start with '{' (the plain form), or -1 with
 * the reason in why.
 */
static int split_brace_values(const char *text, size_t len, int allow_else,
                              struct text_span values[2], strbuf *why)
{
    size_t i = 0;
    while (i < len && isspace((unsigned char) text[i]))
        i++;
    if (i >= len || text[i] != '{')
        return 0;
    int n = 0;
    for (;;) {
        long close_at = config_brace_group(text, len, i, &values[n].text, &values[n].len);
        if (close_at < 0) {
            strbuf_printf(why, "unbalanced '{' in conditional value");
            return -1;
        }
        n++;
        i = (size_t) close_at + 1;
        while (i < len && isspace((unsigned char) text[i]))
            i++;
        if (i >= len)
            return n;
        if (n == 1 && allow_else && text[i] == ':') {
            i++;
            while (i < len && isspace((unsigned char) text[i]))
                i++;
            if (i < len && text[i] == '{')
                continue;
        }
        strbuf_printf(why, "bad conditional value: expected {value}%s",
                      allow_else ? " or {value1}:{value2}" : "");
        return -1;
    }
}

/*
 * Parse TEXT[0..len) and, when out is not NULL, append its expansion.
 * With out == NULL only the syntax is checked.  Returns 0, or -1 with the
 * reason in why.  OWNER names the parameter being expanded (for the fatal
 * recursion error).
 */
static int expand_text(strbuf *out, const char *text, size_t len, int depth,
                       const char *owner, strbuf *why)
{
    size_t i = 0;
    while (i < len) {
        const char *dollar = memchr(text + i, '$', len - i);
        size_t plain = dollar ? (size_t) (dollar - (text + i)) : len - i;
        if (out)
            strbuf_append(out, text + i, plain);
        i += plain;
        if (i >= len)
            break;
        i++;                                    /* the '$' */
        if (i < len && text[i] == '$') {        /* $$ is a literal $ */
            if (out)
                strbuf_append_char(out, '$');
            i++;
            continue;
        }
        if (i < len && is_name_char((unsigned char) text[i])) {
            size_t start = i;
            while (i < len && is_name_char((unsigned char) text[i]))
                i++;
            if (out)
                strbuf_append_str(out, expand_name(text + start, i - start, depth + 1));
            continue;
        }
        if (i >= len || (text[i] != '{' && text[i] != '(')) {
            if (out)
                strbuf_append_char(out, '$');   /* a lone '$' is literal */
            continue;
        }
        char open = text[i], close = open == '{' ? '}' : ')';
        i++;
        size_t start = i;
        while (i < len && is_name_char((unsigned char) text[i]))
            i++;
        size_t name_len = i - start;
        if (i >= len) {
            strbuf_printf(why, "unterminated '$%c'", open);
            return -1;
        }
        if (name_len == 0) {
            strbuf_printf(why, "missing parameter name after '$%c'", open);
            return -1;
        }
        if (text[i] == close) {
            if (out)
                strbuf_append_str(out, expand_name(text + start, name_len, depth + 1));
            i++;
            continue;
        }
        if (text[i] != '?' && text[i] != ':') {
            strbuf_printf(why, "bad character ");
            describe_char(why, (unsigned char) text[i]);
            strbuf_appendf(why, " in '$%c%.*s'", open, (int) name_len, text + start);
            return -1;
        }
        char op = text[i++];
        /* Find the matching close, counting nested brackets of this kind. */
        size_t inner = i;
        int nesting = 1;
        for (; i < len; i++) {
            if (text[i] == open)
                nesting++;
            else if (text[i] == close && --nesting == 0)
                break;
        }
        if (i >= len) {
            strbuf_printf(why, "unterminated '$%c'", open);
            return -1;
        }
        size_t inner_len = i - inner;
        i++;
        /* Postfix 3 forms: {value} and, after '?', {value1}:{value2}. */
        struct text_span values[2];
        int nvalues = split_brace_values(text + inner, inner_len, op == '?', values, why);
        if (nvalues < 0)
            return -1;
        if (nvalues == 0) {                     /* plain ${name?value} */
            values[0].text = text + inner;
            values[0].len = inner_len;
            nvalues = 1;
        }
        if (out == NULL) {                      /* check the values too */
            for (int v = 0; v < nvalues; v++)
                if (expand_text(NULL, values[v].text, values[v].len, depth, owner, why) < 0)
                    return -1;
            continue;
        }
        const char *cond = expand_name(text + start, name_len, depth + 1);
        int nonempty = *cond != '\0';
        const struct text_span *chosen = NULL;
        if (op == '?')
            chosen = nonempty ? &values[0] : nvalues == 2 ? &values[1] : NULL;
        else
            chosen = nonempty ? NULL : &values[0];
        if (chosen) {
            if (depth + 1 > EXPAND_MAX_DEPTH)
                log_fatal("parameter %s: expansion nested deeper than %d (recursion loop?)",
                          owner, EXPAND_MAX_DEPTH);
            if (expand_text(out, chosen->text, chosen->len, depth + 1, owner, why) < 0)
                return -1;
        }
    }
    return 0;
}

/* gethostname(), fully qualified with ".localdomain" when it has no dot. */
static char *computed_hostname(void)
{
    strbuf host;
    strbuf_init(&host);
    strbuf_reserve(&host, 256);
    if (gethostname(host.data, host.cap - 1) != 0 || host.data[0] == '\0')
        strcpy(host.data, "localhost");
    host.data[host.cap - 1] = '\0';
    host.len = strlen(host.data);
    if (strchr(host.data, '.') == NULL)
        strbuf_append_str(&host, ".localdomain");
    return strbuf_detach(&host, NULL);
}

static char *computed_default(const struct param_value *pv, int depth)
{
    if (pv->def == NULL)
        return NULL;
    if (strcmp(pv->def->name, "myhostname") == 0)
        return computed_hostname();
    if (strcmp(pv->def->name, "mydomain") == 0) {
        const char *host = expand_param(find_known("myhostname"), depth + 1);
        const char *dot = strchr(host, '.');
        return xstrdup(dot && dot[1] ? dot + 1 : "localdomain");
    }
    return NULL;
}

static const char *expand_param(struct param_value *pv, int depth)
{
    if (pv->cache_gen == config_generation && pv->cache)
        return pv->cache;
    if (depth > EXPAND_MAX_DEPTH)
        log_fatal("parameter %s: expansion nested deeper than %d (recursion loop?)",
                  value_name(pv), EXPAND_MAX_DEPTH);
    const char *raw = raw_value(pv);
    strbuf out, why;
    strbuf_init(&out);
    strbuf_init(&why);
    if (expand_text(&out, raw, strlen(raw), depth, value_name(pv), &why) < 0)
        log_fatal("parameter %s: %s: %s", value_name(pv), strbuf_str(&why), raw);
    strbuf_release(&why);
    if (out.len == 0) {
        char *computed = computed_default(pv, depth);
        if (computed) {
            strbuf_set_str(&out, computed);
            xfree(computed);
        }
    }
    retire(pv->cache);
    if (out.data == NULL)
        strbuf_set_str(&out, "");
    pv->cache = strbuf_detach(&out, NULL);
    pv->cache_gen = config_generation;
    return pv->cache;
}

static void invalidate(void)
{
    config_generation++;
    if (config_generation == 0)         /* never collide with a fresh 0 */
        config_generation = 1;
}

/* ------------------------------------------------------------------ */
/* typed values                                                         */

/* Strip leading/trailing blanks into a fresh string. */
static char *trimmed_copy(const char *s)
{
    while (isspace((unsigned char) *s))
        s++;
    size_t len = strlen(s);
    while (len > 0 && isspace((unsigned char) s[len - 1]))
        len--;
    return xstrndup(s, len);
}

static int parse_long_long(const char *value, int allow_negative, long long *out)
{
    char *copy = trimmed_copy(value);
    const char *p = copy;
    int ok = 0;
    if (*p == '-' && !allow_negative)
        goto done;
    if (*p == '+' || *p == '-')
        p++;
    if (!isdigit((unsigned char) *p))
        goto done;
    for (const char *q = p; *q; q++)
        if (!isdigit((unsigned char) *q))
            goto done;
    errno = 0;
    long long v = strtoll(copy, NULL, 10);
    if (errno == ERANGE)
        goto done;
    *out = v;
    ok = 1;
done:
    xfree(copy);
    return ok ? 0 : -1;
}

int config_parse_bool(const char *value, int *out)
{
    char *copy = trimmed_copy(value);
    int rc = 0;
    if (strcasecmp(copy, "yes") == 0 || strcasecmp(copy, "true") == 0
        || strcmp(copy, "1") == 0)
        *out = 1;
    else if (strcasecmp(copy, "no") == 0 || strcasecmp(copy, "false") == 0
             || strcmp(copy, "0") == 0)
        *out = 0;
    else
        rc = -1;
    xfree(copy);
    return rc;
}

static long long time_unit_seconds(char unit)
{
    switch (unit) {
    case 's': return 1;
    case 'm': return 60;
    case 'h': return 3600;
    case 'd': return 86400;
    case 'w': return 7 * 86400;
    default: return 0;
    }
}

int config_parse_time(const char *value, char default_unit, long long *out)
{
    char *copy = trimmed_copy(value);
    size_t len = strlen(copy);
    int rc = -1;
    char unit = default_unit;
    if (len > 0 && !isdigit((unsigned char) copy[len - 1])) {
        unit = copy[len - 1];
        copy[--len] = '\0';
    }
    long long mult = time_unit_seconds(unit);
    long long n;
    if (len > 0 && mult > 0 && strspn(copy, "0123456789") == len
        && parse_long_long(copy, 0, &n) == 0 && n <= LLONG_MAX / mult) {
        *out = n * mult;
        rc = 0;
    }
    xfree(copy);
    return rc;
}

/* The unit of a bare number for a time parameter: the default's unit. */
static char default_time_unit(const struct param_value *pv)
{
    const char *def = pv->def ? pv->def->def : "";
    size_t len = strlen(def);
    if (len > 0 && strchr(def, '$') == NULL && time_unit_seconds(def[len - 1]))
        return def[len - 1];
    return 's';
}

/* Check VALUE against TYPE; 0 if fine, -1 with the reason in why. */
static int check_type(const struct param_value *pv, const char *value, strbuf *why)
{
    long long n;
    int b;
    switch (pv->def ? pv->def->type : PARAM_STR) {
    case PARAM_STR:
        return 0;
    case PARAM_INT:
        if (parse_long_long(value, 1, &n) == 0)
            return 0;
        strbuf_printf(why, "bad numerical configuration: %s = %s", value_name(pv), value);
        return -1;
    case PARAM_SIZE:
        if (parse_long_long(value, 0, &n) == 0)
            return 0;
        strbuf_printf(why, "bad size configuration (plain bytes): %s = %s", value_name(pv), value);
        return -1;
    case PARAM_BOOL:
        if (config_parse_bool(value, &b) == 0)
            return 0;
        strbuf_printf(why, "bad boolean configuration: %s = %s", value_name(pv), value);
        return -1;
    case PARAM_TIME:
        if (config_parse_time(value, default_time_unit(pv), &n) == 0)
            return 0;
        strbuf_printf(why, "bad time configuration: %s = %s", value_name(pv), value);
        return -1;
    }
    return 0;
}

long long config_int(const char *name)
{
    struct param_value *pv = require(name, "config_int");
    const char *v = expand_param(pv, 0);
    long long n;
    if (parse_long_long(v, 1, &n) < 0)
        log_fatal("bad numerical configuration: %s = %s", name, v);
    return n;
}

long long config_size(const char *name)
{
    struct param_value *pv = require(name, "config_size");
    const char *v = expand_param(pv, 0);
    long long n;
    if (parse_long_long(v, 0, &n) < 0)
        log_fatal("bad size configuration (plain bytes): %s = %s", name, v);
    return n;
}

int config_bool(const char *name)
{
    struct param_value *pv = require(name, "config_bool");
    const char *v = expand_param(pv, 0);
    int b;
    if (config_parse_bool(v, &b) < 0)
        log_fatal("bad boolean configuration: %s = %s", name, v);
    return b;
}

long long config_time(const char *name)
{
    struct param_value *pv = require(name, "config_time");
    const char *v = expand_param(pv, 0);
    long long n;
    if (config_parse_time(v, default_time_unit(pv), &n) < 0)
        log_fatal("bad time configuration: %s = %s", name, v);
    return n;
}

/* ------------------------------------------------------------------ */
/* simple accessors                                                     */

const char *config_str(const char *name)
{
    return expand_param(require(name, "config_str"), 0);
}

const char *config_raw(const char *name)
{
    return raw_value(require(name, "config_raw"));
}

const char *config_default(const char *name)
{
    struct param_value *pv = require(name, "config_default");
    return pv->def ? pv->def->def : "";
}

int config_is_set(const char *name)
{
    struct param_value *pv = require(name, "config_is_set");
    return pv->file_value != NULL || pv->override_value != NULL;
}

const struct param_def *config_lookup_def(const char *name)
{
    struct param_value *pv = find_known(name);
    return pv ? pv->def : NULL;
}

void config_each(int (*fn)(const struct param_def *def, void *ctx), void *ctx)
{
    for (size_t i = 0; i < PARAM_COUNT; i++)
        if (fn(&param_table[i], ctx))
            break;
}

void config_unknown(void (*fn)(const char *name, const char *file, int line, void *ctx), void *ctx)
{
    for (size_t i = 0; i < user_count; i++)
        if (user_values[i].file_value)
            fn(user_values[i].name, loaded_file ? loaded_file : "main.cf",
               user_values[i].file_line, ctx);
}

void config_override(const char *name, const char *value)
{
    struct param_value *pv = find_any(name);
    if (pv == NULL) {
        if (value == NULL)
            return;
        pv = add_user(name);
    }
    xfree(pv->override_value);
    pv->override_value = value ? xstrdup(value) : NULL;
    invalidate();
}

const char *config_pick_dir(const char *arg)
{
    if (arg && *arg)
        return arg;
    const char *env = getenv("POSTERN_CONFIG_DIR");
    if (env && *env)
        return env;
    return DEFAULT_CONFIG_DIR;
}

const char *config_dir(void)
{
    return loaded_dir ? loaded_dir : config_pick_dir(NULL);
}

/* ------------------------------------------------------------------ */
/* main.cf parsing                                                      */

enum line_kind { LINE_BLANK, LINE_COMMENT, LINE_CONTINUATION, LINE_START };

static enum line_kind classify_line(const char *line, size_t len)
{
    size_t i = 0;
    while (i < len && isspace((unsigned char) line[i]))
        i++;
    if (i == len)
        return LINE_BLANK;
    if (line[i] == '#')
        return LINE_COMMENT;
    return i > 0 ? LINE_CONTINUATION : LINE_START;
}

/*
 * Split "name = value" (a logical line, or an assignment argument) into
 * name and value.  Returns 0, or -1 with the reason in why.
 */
static int parse_assignment(const char *text, size_t len, strbuf *name,
                            strbuf *value, strbuf *why)
{
    size_t i = 0;
    while (i < len && isspace((unsigned char) text[i]))
        i++;
    size_t start = i;
    while (i < len && is_name_char((unsigned char) text[i]))
        i++;
    size_t name_len = i - start;
    if (i < len && !isspace((unsigned char) text[i]) && text[i] != '=') {
        strbuf_printf(why, "bad character ");
        describe_char(why, (unsigned char) text[i]);
        strbuf_append_str(why, " in parameter name");
        return -1;
    }
    while (i < len && isspace((unsigned char) text[i]))
        i++;
    if (name_len == 0) {
        strbuf_printf(why, i < len && text[i] == '=' ? "missing parameter name before '='"
                      : "missing parameter name");
        return -1;
    }
    if (i >= len || text[i] != '=') {
        strbuf_printf(why, "missing '=' after parameter name");
        return -1;
    }
    i++;
    while (i < len && isspace((unsigned char) text[i]))
        i++;
    size_t end = len;
    while (end > i && isspace((unsigned char) text[end - 1]))
        end--;
    strbuf_set(name, text + start, name_len);
    strbuf_set(value, text + i, end - i);
    return 0;
}

struct pending_assignment {
    char *name;
    char *value;
    int line;
};

struct pending_list {
    struct pending_assignment *items;
    size_t count, cap;
};

static void pending_free(struct pending_list *list)
{
    for (size_t i = 0; i < list->count; i++) {
        xfree(list->items[i].name);
        xfree(list->items[i].value);
    }
    xfree(list->items);
    memset(list, 0, sizeof(*list));
}

/* Validate one logical line and add it to LIST.  -1 with err on error. */
static int finish_logical_line(const char *path, const strbuf *logical, int line,
                               struct pending_list *list, strbuf *err)
{
    strbuf name, value, why;
    strbuf_init(&name);
    strbuf_init(&value);
    strbuf_init(&why);
    int rc = -1;
    if (parse_assignment(logical->data, logical->len, &name, &value, &why) < 0) {
        strbuf_printf(err, "%s, line %d: %s", path, line, strbuf_str(&why));
        goto done;
    }
    if (expand_text(NULL, value.data, value.len, 0, strbuf_str(&name), &why) < 0) {
        strbuf_printf(err, "%s, line %d: parameter %s: %s", path, line,
                      strbuf_str(&name), strbuf_str(&why));
        goto done;
    }
    struct param_value *pv = find_known(strbuf_str(&name));
    if (pv && strchr(strbuf_str(&value), '$') == NULL
        && check_type(pv, strbuf_str(&value), &why) < 0) {
        strbuf_printf(err, "%s, line %d: %s", path, line, strbuf_str(&why));
        goto done;
    }
    if (list->count == list->cap) {
        list->cap = list->cap ? list->cap * 2 : 32;
        list->items = xrealloc(list->items, list->cap * sizeof(*list->items));
    }
    list->items[list->count].name = strbuf_detach(&name, NULL);
    list->items[list->count].value = xstrdup(strbuf_str(&value));
    list->items[list->count].line = line;
    list->count++;
    rc = 0;
done:
    strbuf_release(&name);
    strbuf_release(&value);
    strbuf_release(&why);
    return rc;
}

/* Parse main.cf text into LIST.  PATH is used in errors. */
static int parse_main_cf(const char *path, const char *text, size_t len,
                         struct pending_list *list, strbuf *err)
{
    const char *nul = memchr(text, '\0', len);
    if (nul) {
        int line = 1;
        for (const char *p = text; p < nul; p++)
            line += *p == '\n';
        strbuf_printf(err, "%s, line %d: NUL byte in file", path, line);
        return -1;
    }
    strbuf logical;
    strbuf_init(&logical);
    int logical_line = 0;           /* 0 = no logical line open */
    int line = 0;
    size_t pos = 0;
    int rc = 0;
    while (pos < len) {
        const char *start = text + pos;
        const char *nl = memchr(start, '\n', len - pos);
        size_t line_len = nl ? (size_t) (nl - start) : len - pos;
        pos += line_len + (nl ? 1 : 0);
        line++;
        switch (classify_line(start, line_len)) {
        case LINE_BLANK:
        case LINE_COMMENT:
            break;
        case LINE_CONTINUATION:
            if (logical_line == 0) {
                strbuf_printf(err, "%s, line %d: continuation line (starts with whitespace) "
                              "without a preceding parameter", path, line);
                rc = -1;
                goto done;
            }
            while (line_len > 0 && isspace((unsigned char) *start)) {
                start++;
                line_len--;
            }
            strbuf_append_char(&logical, ' ');
            strbuf_append(&logical, start, line_len);
            break;
        case LINE_START:
            if (logical_line
                && finish_logical_line(path, &logical, logical_line, list, err) < 0) {
                rc = -1;
                goto done;
            }
            strbuf_set(&logical, start, line_len);
            logical_line = line;
            break;
        }
    }
    if (logical_line && finish_logical_line(path, &logical, logical_line, list, err) < 0)
        rc = -1;
done:
    strbuf_release(&logical);
    return rc;
}

int config_load(const char *dir, strbuf *err)
{
    table_init();
    dir = config_pick_dir(dir);
    strbuf path, text;
    strbuf_init(&path);
    strbuf_init(&text);
    strbuf_printf(&path, "%s/main.cf", dir);
    struct pending_list list = { 0 };
    int rc = -1;
    if (file_read_all(strbuf_str(&path), &text, MAIN_CF_MAX_SIZE, err) < 0)
        goto done;
    if (parse_main_cf(strbuf_str(&path), text.data, text.len, &list, err) < 0)
        goto done;

    /* Commit: nothing below can fail. */
    free_retired();
    for (size_t i = 0; i < PARAM_COUNT; i++) {
        xfree(known_values[i].file_value);
        known_values[i].file_value = NULL;
        known_values[i].file_line = 0;
    }
    for (size_t i = 0; i < user_count; i++) {
        xfree(user_values[i].file_value);
        user_values[i].file_value = NULL;
        user_values[i].file_line = 0;
    }
    for (size_t i = 0; i < list.count; i++) {
        struct param_value *pv = find_any(list.items[i].name);
        if (pv == NULL)
            pv = add_user(list.items[i].name);
        if (pv->file_value) {
            xfree(pv->file_value);          /* a later assignment wins */
        }
        pv->file_value = list.items[i].value;
        pv->file_line = list.items[i].line;
        list.items[i].value = NULL;
    }
    struct param_value *dir_pv = find_known("config_directory");
    xfree(dir_pv->file_value);
    dir_pv->file_value = xstrdup(dir);
    xfree(loaded_dir);
    loaded_dir = xstrdup(dir);
    xfree(loaded_file);
    loaded_file = strbuf_detach(&path, NULL);
    invalidate();
    rc = 0;
done:
    pending_free(&list);
    strbuf_release(&path);
    strbuf_release(&text);
    return rc;
}

/* ------------------------------------------------------------------ */
/* lists                                                                */

char **config_list(const char *value, int *count)
{
    size_t n = 0, cap = 8;
    char **list = xmalloc(cap * sizeof(*list));
    const char *p = value ? value : "";
    for (;;) {
        while (*p && (isspace((unsigned char) *p) || *p == ','))
            p++;
        if (*p == '\0')
            break;
        const char *start = p;
        while (*p && !isspace((unsigned char) *p) && *p != ',') {
            if (*p == '{') {            /* a group is part of the word: skip it */
                size_t rest = strlen(p);
                long close_at = config_brace_group(p, rest, 0, NULL, NULL);
                p += close_at < 0 ? rest : (size_t) close_at + 1;
            } else {
                p++;
            }
        }
        if (n + 1 >= cap) {
            cap *= 2;
            list = xrealloc(list, cap * sizeof(*list));
        }
        list[n++] = xstrndup(start, (size_t) (p - start));
    }
    list[n] = NULL;
    if (count)
        *count = (int) n;
    return list;
}

void config_list_free(char **list)
{
    if (list == NULL)
        return;
    for (char **p = list; *p; p++)
        xfree(*p);
    xfree(list);
}

/* ------------------------------------------------------------------ */
/* config_edit                                                          */

/* The parameter name at the start of a LINE_START line ("" if none). */
static void line_param_name(const char *line, size_t len, strbuf *name)
{
    size_t i = 0;
    while (i < len && is_name_char((unsigned char) line[i]))
        i++;
    if (i < len && !isspace((unsigned char) line[i]) && line[i] != '=')
        i = 0;                              /* malformed: matches nothing */
    strbuf_set(name, line, i);
}

/* "name = value\n", or "name =\n" for an empty value (no trailing blank). */
static void append_assignment(strbuf *out, const char *name, const char *value)
{
    if (*value)
        strbuf_appendf(out, "%s = %s\n", name, value);
    else
        strbuf_appendf(out, "%s =\n", name);
}

static int write_file_atomically(const char *dir, const char *path, const strbuf *content,
                                 const struct stat *old, strbuf *err)
{
    strbuf tmp;
    strbuf_init(&tmp);
    strbuf_printf(&tmp, "%s.tmpXXXXXX", path);
    int fd = mkstemp(tmp.data);
    if (fd < 0) {
        strbuf_printf(err, "create %s: %s", strbuf_str(&tmp), strerror(errno));
        strbuf_release(&tmp);
        return -1;
    }
    const char *what = "write";
    if (fchmod(fd, old ? (old->st_mode & 07777) : 0644) < 0) {
        what = "chmod";
        goto fail;
    }
    if (old && geteuid() == 0 && fchown(fd, old->st_uid, old->st_gid) < 0) {
        what = "chown";
        goto fail;
    }
    for (size_t off = 0; off < content->len;) {
        ssize_t n = write(fd, content->data + off, content->len - off);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            goto fail;
        }
        off += (size_t) n;
    }
    if (fsync(fd) < 0) {
        what = "fsync";
        goto fail;
    }
    if (close(fd) < 0) {
        fd = -1;
        what = "close";
        goto fail;
    }
    fd = -1;
    if (rename(tmp.data, path) < 0) {
        what = "rename";
        goto fail;
    }
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        (void) fsync(dfd);
        close(dfd);
    }
    strbuf_release(&tmp);
    return 0;
fail:
    strbuf_printf(err, "%s %s: %s", what, strbuf_str(&tmp), strerror(errno));
    if (fd >= 0)
        close(fd);
    unlink(tmp.data);
    strbuf_release(&tmp);
    return -1;
}

int config_edit(const char *dir, char **assignments, int count, strbuf *err)
{
    dir = config_pick_dir(dir);
    int rc = -1;
    char **names = xcalloc((size_t) count + 1, sizeof(*names));
    char **values = xcalloc((size_t) count + 1, sizeof(*values));
    int *written = xcalloc((size_t) count + 1, sizeof(*written));
    strbuf path, text, out, name, value, why;
    strbuf_init(&path);
    strbuf_init(&text);
    strbuf_init(&out);
    strbuf_init(&name);
    strbuf_init(&value);
    strbuf_init(&why);
    strbuf_printf(&path, "%s/main.cf", dir);

    for (int i = 0; i < count; i++) {
        const char *a = assignments[i];
        if (parse_assignment(a, strlen(a), &name, &value, &why) < 0) {
            strbuf_printf(err, "bad assignment \"%s\": %s", a, strbuf_str(&why));
            goto done;
        }
        if (strpbrk(strbuf_str(&value), "\r\n")) {
            strbuf_printf(err, "bad assignment \"%s\": value contains a line break", a);
            goto done;
        }
        if (expand_text(NULL, value.data ? value.data : "", value.len, 0,
                        strbuf_str(&name), &why) < 0) {
            strbuf_printf(err, "bad assignment \"%s\": %s", a, strbuf_str(&why));
            goto done;
        }
        struct param_value *pv = find_known(strbuf_str(&name));
        if (pv && strchr(strbuf_str(&value), '$') == NULL
            && check_type(pv, strbuf_str(&value), &why) < 0) {
            strbuf_printf(err, "bad assignment \"%s\": %s", a, strbuf_str(&why));
            goto done;
        }
        /* A name given twice: the later value wins, written once. */
        for (int j = 0; j < i; j++)
            if (names[j] && strcmp(names[j], strbuf_str(&name)) == 0) {
                xfree(names[j]);
                xfree(values[j]);
                names[j] = values[j] = NULL;
            }
        names[i] = xstrdup(strbuf_str(&name));
        values[i] = xstrdup(strbuf_str(&value));
    }

    struct stat st;
    int exists = stat(strbuf_str(&path), &st) == 0;
    if (exists && file_read_all(strbuf_str(&path), &text, MAIN_CF_MAX_SIZE, err) < 0)
        goto done;
    if (!exists && errno != ENOENT) {
        strbuf_printf(err, "stat %s: %s", strbuf_str(&path), strerror(errno));
        goto done;
    }

    int dropping = 0;               /* inside an entry being replaced */
    size_t pos = 0;
    while (pos < text.len) {
        const char *start = text.data + pos;
        const char *nl = memchr(start, '\n', text.len - pos);
        size_t line_len = nl ? (size_t) (nl - start) : text.len - pos;
        size_t full_len = line_len + (nl ? 1 : 0);
        pos += full_len;
        switch (classify_line(start, line_len)) {
        case LINE_BLANK:
        case LINE_COMMENT:
            strbuf_append(&out, start, full_len);
            break;
        case LINE_CONTINUATION:
            if (!dropping)
                strbuf_append(&out, start, full_len);
            break;
        case LINE_START: {
            line_param_name(start, line_len, &name);
            int match = -1;
            for (int i = 0; i < count && name.len; i++)
                if (names[i] && strcmp(names[i], strbuf_str(&name)) == 0)
                    match = i;
            dropping = match >= 0;
            if (match < 0)
                strbuf_append(&out, start, full_len);
            else if (!written[match]) {
                append_assignment(&out, names[match], values[match]);
                written[match] = 1;
            }
            /* else: a later duplicate of a replaced name is removed */
            break;
        }
        }
    }
    for (int i = 0; i < count; i++) {
        if (names[i] == NULL || written[i])
            continue;
        if (out.len > 0 && out.data[out.len - 1] != '\n')
            strbuf_append_char(&out, '\n');
        append_assignment(&out, names[i], values[i]);
    }
    rc = write_file_atomically(dir, strbuf_str(&path), &out, exists ? &st : NULL, err);
done:
    for (int i = 0; i < count; i++) {
        xfree(names[i]);
        xfree(values[i]);
    }
    xfree(names);
    xfree(values);
    xfree(written);
    strbuf_release(&path);
    strbuf_release(&text);
    strbuf_release(&out);
    strbuf_release(&name);
    strbuf_release(&value);
    strbuf_release(&why);
    return rc;
}
