/*
 * fuzz_config.c - libFuzzer harness for the configuration parsers:
 * main.cf (common/config.c: config_load, $name expansion, config_list,
 * the time/bool value parsers) and master.cf (common/master_cf.c).
 *
 * Build and run: tests/fuzz/run.sh (builds every fuzz_*.c target).
 *
 * The first input byte chooses the parser: even for main.cf (the rest is
 * written to a private directory and loaded), odd for master.cf.
 *
 * Checked beyond "no crash, no over-read":
 *   - main.cf: a refused file names "main.cf, line N" and changes nothing
 *     (a parameter set by the previous good load keeps its value); after a
 *     good load every parameter expands, unless the values form a
 *     reference loop or a chain deeper than config.c's limit, which is
 *     fatal by contract - the harness computes that bound itself from the
 *     raw values (over-approximating) and only expands when it is safe;
 *   - master.cf: a refused file names its line; an accepted one yields
 *     services with a command, a known type, and -o overrides whose names
 *     are non-empty.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "log.h"
#include "master_cf.h"
#include "mem.h"
#include "strbuf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char dir[64];

/* ---- the set of defined names and their raw values ---- */

struct node {
    const char *name;
    const char *raw;
    int cost;                   /* 1 + deepest ${...} nesting in raw */
    int state;                  /* 0 new, 1 on stack, 2 done */
    int depth;                  /* longest weighted chain from here */
};

static struct node *nodes;
static size_t nnodes, cap_nodes;

static void add_node(const char *name)
{
    if (nnodes == cap_nodes) {
        cap_nodes = cap_nodes ? cap_nodes * 2 : 512;
        nodes = xrealloc(nodes, cap_nodes * sizeof(*nodes));
    }
    nodes[nnodes].name = name;
    nodes[nnodes].raw = config_raw(name);
    nodes[nnodes].state = 0;
    nodes[nnodes].depth = 0;
    int nest = 0, deepest = 0;
    for (const char *p = nodes[nnodes].raw; *p; p++) {
        if (*p == '{' || *p == '(') {
            if (++nest > deepest)
                deepest = nest;
        } else if ((*p == '}' || *p == ')') && nest > 0) {
            nest--;
        }
    }
    nodes[nnodes].cost = 1 + deepest;
    nnodes++;
}

static int each_known(const struct param_def *def, void *ctx)
{
    (void) ctx;
    add_node(def->name);
    return 0;
}

static void each_unknown(const char *name, const char *file, int line, void *ctx)
{
    (void) file;
    (void) line;
    (void) ctx;
    add_node(name);
}

static struct node *find_node(const char *name, size_t len)
{
    for (size_t i = 0; i < nnodes; i++)
        if (strlen(nodes[i].name) == len && memcmp(nodes[i].name, name, len) == 0)
            return &nodes[i];
    return NULL;
}

static int is_name_char(int c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}

/* Longest weighted reference chain from n; -1 on a loop. */
static int chain_depth(struct node *n)
{
    if (n->state == 1)
        return -1;
    if (n->state == 2)
        return n->depth;
    n->state = 1;
    int best = 0;
    const char *p = n->raw;
    /* mydomain's computed default expands myhostname. */
    if (strcmp(n->name, "mydomain") == 0) {
        struct node *h = find_node("myhostname", 10);
        if (h) {
            int d = chain_depth(h);
            if (d < 0)
                return -1;
            best = d;
        }
    }
    while ((p = strchr(p, '$')) != NULL) {
        p++;
        if (*p == '{' || *p == '(')
            p++;
        const char *start = p;
        while (is_name_char((unsigned char) *p))
            p++;
        struct node *m = find_node(start, (size_t) (p - start));
        if (m) {
            int d = chain_depth(m);
            if (d < 0)
                return -1;
            if (d > best)
                best = d;
        }
    }
    n->state = 2;
    n->depth = best + n->cost;
    return n->depth;
}

static void exercise_main_cf(void)
{
    nnodes = 0;
    config_each(each_known, NULL);
    config_unknown(each_unknown, NULL);
    for (size_t i = 0; i < nnodes; i++) {
        int d = chain_depth(&nodes[i]);
        if (d < 0 || d > 90)
            return;
    }
    for (size_t i = 0; i < nnodes; i++) {
        const char *v = config_str(nodes[i].name);
        long long t;
        int b;
        int count;
        (void) config_parse_time(v, 's', &t);
        (void) config_parse_bool(v, &b);
        char **list = config_list(v, &count);
        for (int k = 0; k < count; k++)
            if (list[k] == NULL || list[k][0] == '\0')
                abort();
        if (list[count] != NULL)
            abort();
        config_list_free(list);
    }
}

static void fuzz_main_cf(const uint8_t *data, size_t size)
{
    char path[96];
    snprintf(path, sizeof(path), "%s/main.cf", dir);
    FILE *fp = fopen(path, "w");
    if (fp == NULL || fwrite(data, 1, size, fp) != size || fclose(fp) != 0)
        abort();
    strbuf err;
    strbuf_init(&err);
    if (config_load(dir, &err) < 0) {
        if (strstr(strbuf_str(&err), "main.cf, line ") == NULL)
            abort();
        /* all-or-nothing: the sentinel from the last good load survives */
        if (strcmp(config_str("fuzz_sentinel"), "kept") != 0)
            abort();
    } else {
        exercise_main_cf();
    }
    strbuf_release(&err);
    /* Reset to a known good state holding the sentinel. */
    fp = fopen(path, "w");
    if (fp == NULL || fputs("fuzz_sentinel = kept\n", fp) < 0 || fclose(fp) != 0)
        abort();
    strbuf_init(&err);
    if (config_load(dir, &err) < 0)
        abort();
    strbuf_release(&err);
}

static void fuzz_master_cf(const uint8_t *data, size_t size)
{
    char *text = xmalloc(size + 1);
    memcpy(text, data, size);
    text[size] = '\0';
    struct master_service *list = NULL;
    strbuf err;
    strbuf_init(&err);
    if (master_cf_parse(text, "master.cf", &list, &err) < 0) {
        if (strstr(strbuf_str(&err), "master.cf") == NULL || list != NULL)
            abort();
    } else {
        for (struct master_service *s = list; s; s = s->next) {
            if (s->argc < 1 || s->argv[0] == NULL || s->argv[s->argc] != NULL
                || s->name[0] == '\0' || s->type > SERVICE_PASS)
                abort();
            for (int i = 0; i < s->noverrides; i++)
                if (s->override_names[i][0] == '\0')
                    abort();
        }
        master_cf_free(list);
    }
    strbuf_release(&err);
    xfree(text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (dir[0] == '\0') {
        log_use_stderr();
        snprintf(dir, sizeof(dir), "/tmp/fuzz_config.XXXXXX");
        if (mkdtemp(dir) == NULL)
            abort();
        char path[96];
        snprintf(path, sizeof(path), "%s/main.cf", dir);
        FILE *fp = fopen(path, "w");
        if (fp == NULL || fputs("fuzz_sentinel = kept\n", fp) < 0 || fclose(fp) != 0)
            abort();
        strbuf err;
        strbuf_init(&err);
        if (config_load(dir, &err) < 0)
            abort();
        strbuf_release(&err);
    }
    if (size == 0)
        return 0;
    if (data[0] & 1)
        fuzz_master_cf(data + 1, size - 1);
    else
        fuzz_main_cf(data + 1, size - 1);
    return 0;
}
