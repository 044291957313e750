/*
 * alias_list.c - split alias values and .forward/:include: files into items.
 * See alias_list.h for the syntax and the contract.
 */
#include <ctype.h>
#include <string.h>
#include <strings.h>

#include "alias_list.h"
#include "mem.h"

struct item_vec {
    struct alias_item *items;
    int n;
    int cap;
};

static void item_vec_push(struct item_vec *v, enum alias_item_kind kind,
                          const char *value, int no_expand)
{
    if (v->n == v->cap) {
        v->cap = v->cap ? v->cap * 2 : 8;
        v->items = xrealloc(v->items, (size_t)v->cap * sizeof(*v->items));
    }
    v->items[v->n].kind = kind;
    v->items[v->n].value = xstrdup(value);
    v->items[v->n].no_expand = no_expand;
    v->n++;
}

static int is_blank(int c)
{
    return c == ' ' || c == '\t' || c == '\r';
}

/* Classify one unquoted item and store it; 0 ok, -1 with err. */
static int finish_item(struct item_vec *v, strbuf *text, int quoted_start,
                       int backslash, strbuf *err)
{
    strbuf_rtrim(text);
    const char *s = strbuf_str(text);
    size_t lead = 0;
    while (lead < text->len && is_blank((unsigned char)s[lead]))
        lead++;
    if (lead > 0) {
        /* blanks inside quotes at the start mean nothing either */
        char *rest = xstrdup(s + lead);
        strbuf_set_str(text, rest);
        xfree(rest);
        s = strbuf_str(text);
    }
    if (text->len == 0 && !quoted_start)
        return 0;
    if (s[0] == '|') {
        const char *cmd = s + 1;
        while (is_blank((unsigned char)*cmd))
            cmd++;
        if (*cmd == '\0') {
            strbuf_set_str(err, "empty command");
            return -1;
        }
        item_vec_push(v, ALIAS_ITEM_COMMAND, cmd, 0);
    } else if (strncasecmp(s, ":include:", 9) == 0) {
        const char *path = s + 9;
        while (is_blank((unsigned char)*path))
            path++;
        if (*path != '/') {
            strbuf_set_str(err, ":include: needs an absolute path");
            return -1;
        }
        item_vec_push(v, ALIAS_ITEM_INCLUDE, path, 0);
    } else if (s[0] == '/') {
        item_vec_push(v, ALIAS_ITEM_FILE, s, 0);
    } else if (text->len == 0) {
        strbuf_set_str(err, "empty quoted item");
        return -1;
    } else {
        item_vec_push(v, ALIAS_ITEM_ADDRESS, s, backslash);
    }
    return 0;
}

int alias_list_parse(const char *text, size_t len, struct alias_item **items_out,
                     strbuf *err)
{
    struct item_vec v = { NULL, 0, 0 };
    strbuf item;
    strbuf_init(&item);
    size_t i = 0;
    int at_line_start = 1;

    *items_out = NULL;
    if (memchr(text, '\0', len) != NULL) {
        strbuf_set_str(err, "NUL byte in alias list");
        goto fail;
    }
    while (i < len) {
        unsigned char c = (unsigned char)text[i];
        /* Separators and blanks between items. */
        if (c == ',' || is_blank(c)) {
            i++;
            continue;
        }
        if (c == '\n') {
            at_line_start = 1;
            i++;
            continue;
        }
        if (c == '#' && at_line_start) {
            while (i < len && text[i] != '\n')
                i++;
            continue;
        }
        at_line_start = 0;

        /* One item.  Addresses stop at blanks; commands, files and
         * includes run to the next unquoted comma or newline. */
        strbuf_reset(&item);
        int backslash = 0, quoted_start = (c == '"');
        if (c == '\\') {
            backslash = 1;
            i++;
        }
        int long_item = -1;     /* unknown until the first real character */
        int in_quote = 0;
        while (i < len) {
            c = (unsigned char)text[i];
            if (in_quote) {
                if (c == '"') {
                    in_quote = 0;
                    i++;
                    continue;
                }
                if (c == '\\' && i + 1 < len) {
                    strbuf_append_char(&item, text[i + 1]);
                    i += 2;
                    continue;
                }
                if (c == '\n') {
                    strbuf_set_str(err, "unterminated quote");
                    goto fail;
                }
                if (long_item < 0 && item.len == 0 && !is_blank(c))
                    long_item = (c == '|' || c == '/' || c == ':');
                strbuf_append_char(&item, c);
                i++;
                continue;
            }
            if (c == '"') {
                in_quote = 1;
                i++;
                continue;
            }
            if (c == ',' || c == '\n')
                break;
            if (long_item < 0 && !is_blank(c))
                long_item = (c == '|' || c == '/' || c == ':');
            if (is_blank(c) && long_item != 1)
                break;
            strbuf_append_char(&item, c == '\r' ? ' ' : c);
            i++;
        }
        if (in_quote) {
            strbuf_set_str(err, "unterminated quote");
            goto fail;
        }
        if (finish_item(&v, &item, quoted_start, backslash, err) < 0)
            goto fail;
    }
    strbuf_release(&item);
    *items_out = v.items;
    return v.n;

fail:
    strbuf_release(&item);
    alias_list_free(v.items, v.n);
    return -1;
}

void alias_list_free(struct alias_item *items, int n)
{
    for (int i = 0; i < n; i++)
        xfree(items[i].value);
    xfree(items);
}
