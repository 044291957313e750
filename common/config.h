/*
 * config.h - main.cf: parameters with Postfix's names, types and defaults.
 *
 * Interface:
 *   config_load(dir, err)   read DIR/main.cf on top of the built-in defaults
 *                           (the table in params.def).  Returns 0, or -1 with
 *                           "FILE, line N: what is wrong" in err.
 *   config_override(n, v)   a `-o name=value` from master.cf or the command
 *                           line; applied on top of main.cf (call after load,
 *                           or before: overrides survive a reload).
 *   config_str(name)        the value with $name / ${name} expanded (cached);
 *   config_int/bool/time/size   typed accessors.  time values take Postfix's
 *                           units (s m h d w; a bare number is in the unit of
 *                           the default), returned in seconds.
 *   config_raw(name)        the unexpanded value; config_is_set(name) whether
 *                           main.cf or an override set it; config_default().
 *   config_each(fn, ctx)    every known parameter in table order (postern conf).
 *   config_dir()            the configuration directory in use.
 *
 * Contract: asking for a parameter that is not in params.def is a programming
 * error and log_panic()s.  Unknown names in main.cf are accepted (Postfix
 * does the same) but reported by config_unknown() for `postern check`.
 * A value that does not parse as its type makes the typed accessor
 * log_fatal() naming the parameter and value.  Expansion of an undefined
 * $name yields the empty string; recursion deeper than 100 is fatal.
 * The selected directory: explicit argument, else $POSTERN_CONFIG_DIR, else
 * the compiled-in DEFAULT_CONFIG_DIR (/etc/postern).
 */
#ifndef POSTERN_CONFIG_H
#define POSTERN_CONFIG_H

#include "strbuf.h"

#ifndef DEFAULT_CONFIG_DIR
#define DEFAULT_CONFIG_DIR "/etc/postern"
#endif

enum param_type { PARAM_STR, PARAM_INT, PARAM_BOOL, PARAM_TIME, PARAM_SIZE };

struct param_def {
    const char *name;
    enum param_type type;
    const char *def;            /* default, unexpanded */
    const char *doc;            /* one-line description */
};

/* Resolve the configuration directory: arg, $POSTERN_CONFIG_DIR, default. */
const char *config_pick_dir(const char *arg);

int config_load(const char *dir, strbuf *err);
void config_override(const char *name, const char *value);
const char *config_dir(void);

const char *config_str(const char *name);
long long config_int(const char *name);
int config_bool(const char *name);
long long config_time(const char *name);
long long config_size(const char *name);
const char *config_raw(const char *name);
const char *config_default(const char *name);
int config_is_set(const char *name);
const struct param_def *config_lookup_def(const char *name);

/* Every known parameter, table order; fn returns nonzero to stop. */
void config_each(int (*fn)(const struct param_def *def, void *ctx), void *ctx);
/* Names set in main.cf that the table does not know; fn called for each. */
void config_unknown(void (*fn)(const char *name, const char *file, int line, void *ctx), void *ctx);

/* Split a list value on whitespace and commas; returns count, fills a
 * NULL-terminated array the caller frees with config_list_free(). */
char **config_list(const char *value, int *count);
void config_list_free(char **list);

/* Postfix 3's brace grouping ({...} in values, in ${name?{...}} and in
 * master.cf arguments): TEXT[open_at] is '{'.  Returns the index of the
 * matching '}' (nested braces counted), or -1 when there is none before
 * len.  When found and inner is not NULL, *inner / *inner_len are the text
 * between the braces with blanks at both ends trimmed. */
long config_brace_group(const char *text, size_t len, size_t open_at,
                        const char **inner, size_t *inner_len);

/* Parse a time / size value in isolation (used by master.cf -o checks). */
int config_parse_time(const char *value, char default_unit, long long *out);
int config_parse_bool(const char *value, int *out);

/* Rewrite NAME=VALUE pairs in DIR/main.cf in place, keeping comments and
 * order (postern conf NAME=VALUE). Returns 0 or -1 with err set. */
int config_edit(const char *dir, char **assignments, int count, strbuf *err);

#endif
