/*
 * maps_regexp.c - regexp: tables, POSIX regular expressions (regcomp).
 *
 * Interface: map_open_regexp(file) through maps.c.
 *
 * File format (Postfix's regexp_table, the parts we support):
 *     /pattern/flags result        the result when the key matches
 *     !/pattern/flags result       the result when the key does NOT match
 *     if /pattern/flags            the lines up to the matching "endif"
 *     if !/pattern/flags             are tried only when the condition holds
 *     endif
 * The delimiter is '/' or any other punctuation except '\'; inside the
 * pattern a backslash escapes the next byte (kept for regcomp, so "\/"
 * stays a literal '/').  Flags:
 *     i  case-insensitive (the default)    I  case-sensitive
 *     x  toggle extended syntax (default extended: POSIX ERE)
 *     m  toggle multi-line mode (REG_NEWLINE)
 * Postfix itself treats 'i' as a toggle; here 'i' always means
 * case-insensitive, which is what people who write /.../i expect.
 * Results: "$1".."$9" or "${1}".."${9}" insert the matching group (empty
 * when that group did not take part), "$$" is one '$'.
 *
 * Contract: every problem is found at open and fails it with
 * "FILE: line N: reason": bad regex (regerror text), unterminated
 * pattern, unknown flag, missing result, text after an "if" condition,
 * "endif" without "if", missing "endif", "$N" beyond the pattern's groups
 * or in a negated rule, any other '$', patterns whose repetitions would
 * make regcomp build a huge automaton ("too complex", estimated for ERE
 * syntax), and back-references \1..\9 (they make matching time
 * exponential in the key, which comes from clients).  Patterns come only from the file
 * (never from the key).  Lookups: first matching rule wins; the key is
 * matched whole (regexec on the C string), unanchored unless the pattern
 * anchors itself.
 */
#include <ctype.h>
#include <regex.h>
#include <string.h>

#include "maps_internal.h"
#include "mem.h"

enum rule_kind { RULE_MATCH, RULE_IF, RULE_ENDIF };

struct regexp_rule {
    enum rule_kind kind;
    regex_t re;
    int negate;
    char *result;               /* RULE_MATCH */
    size_t endif_index;         /* RULE_IF: index of its endif */
    int lineno;
};

struct regexp_table {
    struct regexp_rule *rules;
    size_t count, cap;
    size_t *open_ifs;           /* stack of RULE_IF indexes while loading */
    size_t depth;
};

static struct regexp_rule *new_rule(struct regexp_table *t)
{
    if (t->count == t->cap) {
        t->cap = t->cap ? t->cap * 2 : 16;
        t->rules = xrealloc(t->rules, t->cap * sizeof(*t->rules));
    }
    struct regexp_rule *r = &t->rules[t->count];
    memset(r, 0, sizeof(*r));
    return r;
}

/*
 * glibc's regcomp copies a sub-expression once per repetition ("(a{9}){9}"
 * holds 81 copies, "a++++..." doubles per '+'), and its work on repeated
 * parts grows about quadratically: "(((a*b*)+)+)..." nine deep takes 160 MB
 * and seconds.  So estimate, before compiling, the number of nodes (atoms
 * times the repeat counts around them) and how many of those sit under a
 * quantifier; refuse patterns above the limits.  Plain text, long
 * alternations and bounded classes like [a-z]{1,64} stay far below them.
 */
#define REGEXP_MAX_NODES      20000
#define REGEXP_MAX_REPEATED   1000
/* Quantifiers stacked through groups ("((a*)+)+"; direct runs like "a*+"
 * are collapsed or refused below): glibc's epsilon-closure work grows by
 * orders of magnitude per level ("^(((((((a*)+)+)+)+)+)+)+" ran for
 * minutes, "^((a*++)++)++" too before collapsing; fuzz_maps), whatever the
 * node counts say.  A chain counts the quantifiers on an atom plus the
 * deepest chain inside it when the atom is a group. */
#define REGEXP_MAX_STACKED    4

struct regexp_cost {
    size_t nodes;               /* all nodes */
    size_t repeated;            /* nodes under some quantifier */
    size_t stacked;             /* deepest chain of stacked quantifiers */
};

static size_t saturating_mul(size_t a, size_t b)
{
    if (a != 0 && b > REGEXP_MAX_NODES * 4 / a)
        return REGEXP_MAX_NODES * 4;
    return a * b;
}

/* Skip a bracket expression starting after '['; returns the index after ']'. */
static size_t skip_bracket(const char *p, size_t i)
{
    if (p[i] == '^')
        i++;
    if (p[i] == ']')
        i++;
    while (p[i] && p[i] != ']') {
        if (p[i] == '[' && (p[i + 1] == ':' || p[i + 1] == '.' || p[i + 1] == '=')) {
            char kind = p[i + 1];
            i += 2;
            while (p[i] && !(p[i] == kind && p[i + 1] == ']'))
                i++;
            if (p[i])
                i += 2;
            continue;
        }
        i++;
    }
    return p[i] ? i + 1 : i;
}

/* The repeat factor of the quantifiers at p[*i] (0 if there are none,
 * else at least 1); moves *i past them.  A quantifier stacked on another
 * ("a**", "(.*)*?", "a{2}+") makes the pattern too complex at once: POSIX
 * leaves adjacent duplication symbols undefined, and glibc's regcomp walks
 * the epsilon closure of such runs recursively, in time exponential in
 * their length ("^(.***...*)" with 100 stars ran for minutes, and a few
 * runs of 8-10 stars still took over 10 s; both found by fuzz_maps). */
static size_t quantifier_factor(const char *p, size_t *i, size_t *count)
{
    size_t factor = 0;
    for (;; (*count)++) {
        char c = p[*i];
        if (factor && (c == '*' || c == '?' || c == '+'
                       || (c == '{' && p[*i + 1] >= '0' && p[*i + 1] <= '9'))) {
            (*i)++;
            return REGEXP_MAX_NODES * 4;        /* stacked: refused */
        }
        if (c == '*' || c == '?') {
            factor = 1;
            (*i)++;
        } else if (c == '+') {
            factor = 2;
            (*i)++;
        } else if (c == '{' && p[*i + 1] >= '0' && p[*i + 1] <= '9') {
            size_t j = *i + 1, lo = 0, hi = 0;
            while (p[j] >= '0' && p[j] <= '9' && lo <= REGEXP_MAX_NODES)
                lo = lo * 10 + (size_t) (p[j++] - '0');
            hi = lo;
            if (p[j] == ',') {
                j++;
                if (p[j] >= '0' && p[j] <= '9') {
                    hi = 0;
                    while (p[j] >= '0' && p[j] <= '9' && hi <= REGEXP_MAX_NODES)
                        hi = hi * 10 + (size_t) (p[j++] - '0');
                } else {
                    hi = lo + 1;
                }
            }
            while (p[j] >= '0' && p[j] <= '9')
                j++;
            if (p[j] != '}')
                return factor;  /* not a bound; regcomp judges it */
            *i = j + 1;
            factor = saturating_mul(factor ? factor : 1, (hi > lo ? hi : lo) + 1);
        } else {
            return factor;
        }
    }
}

/*
 * Runs of stacked '*', '+' and '?' ("a**", ".*?", "a+*") are undefined in
 * POSIX EREs; glibc accepts them, as a repetition of a repetition, at a
 * compile cost exponential in the run's length.  Each run matches what one
 * operator matches ("++" is "+", "??" is "?", any other mix is "*"), so
 * the pattern compiled is the one with every run collapsed: tables written
 * for Postfix (".*?" is common) keep working, and cost stays linear.
 */
static void regexp_collapse_quantifiers(const char *p, strbuf *out)
{
    size_t i = 0;
    strbuf_set_str(out, "");
    while (p[i]) {
        if (p[i] == '[') {
            size_t end = skip_bracket(p, i + 1);
            strbuf_append(out, p + i, end - i);
            i = end;
        } else if (p[i] == '\\' && p[i + 1]) {
            strbuf_append(out, p + i, 2);
            i += 2;
        } else if (p[i] == '*' || p[i] == '+' || p[i] == '?') {
            char op = p[i++];
            while (p[i] == '*' || p[i] == '+' || p[i] == '?') {
                if (p[i] != op)
                    op = '*';
                i++;
            }
            strbuf_append_char(out, op);
        } else {
            strbuf_append_char(out, p[i++]);
        }
    }
}

static int regexp_too_complex(const char *p)
{
    struct regexp_cost stack[64];       /* cost so far of each open group */
    size_t depth = 0, i = 0;
    memset(&stack[0], 0, sizeof(stack[0]));
    while (p[i]) {
        struct regexp_cost atom = { 1, 0, 0 };
        if (p[i] == '(') {
            if (++depth >= sizeof(stack) / sizeof(*stack))
                return 1;
            memset(&stack[depth], 0, sizeof(stack[depth]));
            i++;
            continue;
        }
        if (p[i] == ')' && depth > 0) {
            atom = stack[depth--];
            atom.nodes++;
            i++;
        } else if (p[i] == '[') {
            i = skip_bracket(p, i + 1);
        } else if (p[i] == '\\' && p[i + 1]) {
            i += 2;
        } else {
            i++;
        }
        size_t quantifiers = 0;
        size_t factor = quantifier_factor(p, &i, &quantifiers);
        if (factor) {
            atom.nodes = saturating_mul(atom.nodes, factor);
            atom.repeated = atom.nodes;
        }
        atom.stacked += quantifiers;
        stack[depth].nodes += atom.nodes;
        stack[depth].repeated += atom.repeated;
        if (atom.stacked > stack[depth].stacked)
            stack[depth].stacked = atom.stacked;
        if (stack[depth].nodes > REGEXP_MAX_NODES
            || stack[depth].repeated > REGEXP_MAX_REPEATED
            || atom.stacked > REGEXP_MAX_STACKED)
            return 1;
    }
    return 0;                   /* unclosed groups: regcomp refuses them */
}

/* Back-references (\1..\9) make glibc's matcher backtrack, with time
 * exponential in the key; keys come from clients, so they are refused. */
static int regexp_has_backref(const char *p)
{
    size_t i = 0;
    while (p[i]) {
        if (p[i] == '[') {
            i = skip_bracket(p, i + 1);
        } else if (p[i] == '\\' && p[i + 1]) {
            if (p[i + 1] >= '1' && p[i + 1] <= '9')
                return 1;
            i += 2;
        } else {
            i++;
        }
    }
    return 0;
}

/*
 * Parse "[!]/pattern/flags" at *pp; compile into rule.  *pp moves past
 * the flags.  Returns 0 or -1 with err set.
 */
static int parse_pattern(const char **pp, struct regexp_rule *rule, strbuf *err)
{
    const char *p = *pp;
    if (*p == '!') {
        rule->negate = 1;
        p++;
    }
    unsigned char delim = (unsigned char) *p;
    if (delim == '\0' || !ispunct(delim) || delim == '\\') {
        strbuf_set_str(err, "pattern must start with '/'");
        return -1;
    }
    p++;
    strbuf pattern;
    strbuf_init(&pattern);
    while (*p && (unsigned char) *p != delim) {
        if (*p == '\\' && p[1]) {
            strbuf_append(&pattern, p, 2);
            p += 2;
            continue;
        }
        strbuf_append_char(&pattern, *p);
        p++;
    }
    if (!*p) {
        strbuf_printf(err, "unterminated pattern (missing closing '%c')", delim);
        strbuf_release(&pattern);
        return -1;
    }
    p++;
    int cflags = REG_EXTENDED | REG_ICASE;
    for (; *p && *p != ' ' && *p != '\t'; p++) {
        switch (*p) {
        case 'i':
            cflags |= REG_ICASE;
            break;
        case 'I':
            cflags &= ~REG_ICASE;
            break;
        case 'x':
            cflags ^= REG_EXTENDED;
            break;
        case 'm':
            cflags ^= REG_NEWLINE;
            break;
        default:
            strbuf_printf(err, "unknown regexp flag '%c'", *p);
            strbuf_release(&pattern);
            return -1;
        }
    }
    if (regexp_has_backref(strbuf_str(&pattern))) {
        strbuf_printf(err, "regexp /%s/: back-references are not supported",
                      strbuf_str(&pattern));
        strbuf_release(&pattern);
        return -1;
    }
    strbuf collapsed;
    strbuf_init(&collapsed);
    regexp_collapse_quantifiers(strbuf_str(&pattern), &collapsed);
    int too_complex = regexp_too_complex(strbuf_str(&collapsed));
    if (!too_complex)
        strbuf_set(&pattern, collapsed.data, collapsed.len);
    strbuf_release(&collapsed);
    if (too_complex) {
        strbuf_printf(err, "regexp /%s/ too complex (repetitions nest too deep)",
                      strbuf_str(&pattern));
        strbuf_release(&pattern);
        return -1;
    }
    int rc = regcomp(&rule->re, strbuf_str(&pattern), cflags);
    if (rc != 0) {
        char msg[256];
        regerror(rc, &rule->re, msg, sizeof(msg));
        strbuf_printf(err, "bad regexp /%s/: %s", strbuf_str(&pattern), msg);
        strbuf_release(&pattern);
        return -1;
    }
    strbuf_release(&pattern);
    *pp = p;
    return 0;
}

/* Check "$N" references in a result against the pattern. */
static int check_result(const char *result, const struct regexp_rule *rule,
                        strbuf *err)
{
    for (const char *p = result; *p; p++) {
        if (*p != '$')
            continue;
        p++;
        if (*p == '$')
            continue;
        int braced = *p == '{';
        if (braced)
            p++;
        if (!(*p >= '1' && *p <= '9') || (braced && p[1] != '}')) {
            strbuf_set_str(err, "'$' in result must be $$ or $1..$9");
            return -1;
        }
        size_t n = (size_t) (*p - '0');
        if (rule->negate) {
            strbuf_printf(err, "$%zu in the result of a negated pattern", n);
            return -1;
        }
        if (n > rule->re.re_nsub) {
            strbuf_printf(err, "result uses $%zu but the pattern has %zu group%s",
                          n, rule->re.re_nsub, rule->re.re_nsub == 1 ? "" : "s");
            return -1;
        }
        if (braced)
            p++;
    }
    return 0;
}

static int regexp_line(const char *line, int lineno, void *ctx, strbuf *err)
{
    struct regexp_table *t = ctx;
    const char *p = line;

    if (strncmp(p, "endif", 5) == 0 && (p[5] == '\0' || isspace((unsigned char) p[5]))) {
        for (p += 5; isspace((unsigned char) *p); p++)
            ;
        if (*p) {
            strbuf_set_str(err, "text after endif");
            return -1;
        }
        if (t->depth == 0) {
            strbuf_set_str(err, "endif without if");
            return -1;
        }
        struct regexp_rule *r = new_rule(t);
        r->kind = RULE_ENDIF;
        r->lineno = lineno;
        t->rules[t->open_ifs[--t->depth]].endif_index = t->count;
        t->count++;
        return 0;
    }

    struct regexp_rule *r = new_rule(t);
    r->lineno = lineno;
    int is_if = strncmp(p, "if", 2) == 0 && isspace((unsigned char) p[2]);
    if (is_if)
        for (p += 2; isspace((unsigned char) *p); p++)
            ;
    if (parse_pattern(&p, r, err) < 0)
        return -1;
    while (isspace((unsigned char) *p))
        p++;
    if (is_if) {
        if (*p) {
            strbuf_set_str(err, "text after if condition");
            regfree(&r->re);
            return -1;
        }
        r->kind = RULE_IF;
        t->open_ifs = xrealloc(t->open_ifs, (t->depth + 1) * sizeof(size_t));
        t->open_ifs[t->depth++] = t->count;
        t->count++;
        return 0;
    }
    if (!*p) {
        strbuf_set_str(err, "missing result");
        regfree(&r->re);
        return -1;
    }
    if (check_result(p, r, err) < 0) {
        regfree(&r->re);
        return -1;
    }
    r->kind = RULE_MATCH;
    r->result = xstrdup(p);
    t->count++;
    return 0;
}

static void expand_result(const char *result, const char *key,
                          const regmatch_t *m, strbuf *out)
{
    strbuf_reset(out);
    for (const char *p = result; *p; p++) {
        if (*p != '$') {
            strbuf_append_char(out, *p);
            continue;
        }
        p++;
        if (*p == '$') {
            strbuf_append_char(out, '$');
            continue;
        }
        int braced = *p == '{';
        if (braced)
            p++;
        int n = *p - '0';       /* checked at open: 1..9, within re_nsub */
        if (braced)
            p++;
        if (m[n].rm_so >= 0 && m[n].rm_eo >= m[n].rm_so)
            strbuf_append(out, key + m[n].rm_so,
                          (size_t) (m[n].rm_eo - m[n].rm_so));
    }
}

static int regexp_lookup(void *impl, const char *key, strbuf *out)
{
    struct regexp_table *t = impl;
    regmatch_t m[10];
    size_t i = 0;
    while (i < t->count) {
        struct regexp_rule *r = &t->rules[i];
        if (r->kind == RULE_ENDIF) {
            i++;
            continue;
        }
        int matched = regexec(&r->re, key, 10, m, 0) == 0;
        if (r->negate)
            matched = !matched;
        if (r->kind == RULE_IF) {
            i = matched ? i + 1 : r->endif_index + 1;
            continue;
        }
        if (matched) {
            if (r->negate)
                strbuf_set_str(out, r->result);
            else
                expand_result(r->result, key, m, out);
            return 1;
        }
        i++;
    }
    return 0;
}

static void regexp_close(void *impl)
{
    struct regexp_table *t = impl;
    for (size_t i = 0; i < t->count; i++) {
        if (t->rules[i].kind != RULE_ENDIF)
            regfree(&t->rules[i].re);
        xfree(t->rules[i].result);
    }
    xfree(t->rules);
    xfree(t->open_ifs);
    xfree(t);
}

static const struct map_ops regexp_ops = { regexp_lookup, regexp_close };

int map_open_regexp(const char *name, struct map *m, strbuf *err)
{
    struct regexp_table *t = xcalloc(1, sizeof(*t));
    if (map_file_read(name, regexp_line, t, err) < 0) {
        regexp_close(t);
        return -1;
    }
    if (t->depth > 0) {
        strbuf_printf(err, "%s: line %d: if without endif", name,
                      t->rules[t->open_ifs[t->depth - 1]].lineno);
        regexp_close(t);
        return -1;
    }
    xfree(t->open_ifs);
    t->open_ifs = NULL;
    m->ops = &regexp_ops;
    m->impl = t;
    m->flags = MAP_FULL_KEY_ONLY;
    return 0;
}
