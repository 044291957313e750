/*
 * addr_list.c - RFC 5322 address-list parsing for To:, Cc:, Bcc: and the
 * like (cleanup's sendmail -t recipient extraction and header rewriting).
 *
 * Interface: addr_list_parse(value, len, cb, ctx) (see addr.h).  cb gets
 * every addr-spec in the internal form addr_parse_path() produces: local
 * part unquoted when it is a dot-atom, quoted otherwise, then "@domain"
 * if there was one (a bare "root" is passed on as "root").
 *
 * Contract: returns the number of addresses passed to cb, or -1 when some
 * element of the list was malformed; a malformed element is skipped (never
 * half-passed to cb) and the elements around it are still delivered.
 * Understood: display names (atoms, quoted strings, obsolete dots),
 * angle addresses with obsolete routes "<@a,@b:u@d>" (route dropped),
 * groups "name: a, b;" including empty "undisclosed-recipients:;",
 * nested comments with quoted-pairs, folding whitespace (CR/LF anywhere
 * between tokens counts as space), empty list elements ("a,,b").
 * Refused (element skipped, result -1): NUL and other controls, invalid
 * UTF-8, unbalanced quotes/comments/brackets, local part > 64 octets (in
 * its quoted form), addresses over 254 octets, invalid domains: every
 * address passed to cb is one addr_parse_path() accepts as "<addr>" with
 * ADDR_UTF8 and gives back unchanged.  Never reads past len, never modifies value.
 */
#include <string.h>

#include "addr.h"
#include "addr_internal.h"
#include "mem.h"

enum token_type { TOK_ATOM, TOK_QSTRING, TOK_DLIT, TOK_SPECIAL, TOK_BAD };

struct token {
    enum token_type type;
    char special;               /* TOK_SPECIAL: the character */
    char *text;                 /* decoded text (ATOM, QSTRING, DLIT) */
    size_t len;
};

struct token_list {
    struct token *tok;
    size_t count;
    size_t cap;
};

static void token_push(struct token_list *tl, enum token_type type,
                       char special, const char *text, size_t len)
{
    if (tl->count == tl->cap) {
        tl->cap = tl->cap ? tl->cap * 2 : 16;
        tl->tok = xrealloc(tl->tok, tl->cap * sizeof(*tl->tok));
    }
    struct token *t = &tl->tok[tl->count++];
    t->type = type;
    t->special = special;
    t->text = NULL;
    if (text) {                 /* text is not NUL-terminated: copy len */
        t->text = xmalloc(len + 1);
        memcpy(t->text, text, len);
        t->text[len] = '\0';
    }
    t->len = len;
}

/* Skip a comment starting at v[*pos] == '('; 0 ok, -1 unbalanced. */
static int skip_comment(const char *v, size_t len, size_t *pos)
{
    int depth = 0;
    size_t p = *pos;
    while (p < len) {
        char c = v[p];
        if (c == '\\') {
            p += 2;
            continue;
        }
        if (c == '(')
            depth++;
        else if (c == ')' && --depth == 0) {
            *pos = p + 1;
            return 0;
        }
        p++;
    }
    *pos = len;
    return -1;
}

/* Append the UTF-8 sequence at v[p] (8-bit lead byte) or return 0. */
static size_t utf8_step(const char *v, size_t len, size_t p)
{
    return addr_utf8_len((const unsigned char *) v + p, len - p);
}

static void tokenize(const char *v, size_t len, struct token_list *tl)
{
    strbuf text;
    strbuf_init(&text);
    size_t p = 0;
    while (p < len) {
        unsigned char c = (unsigned char) v[p];
        if (c == ' ' || c == '\t' || c == '\r' || c == '\n') {
            p++;
        } else if (c == '(') {
            if (skip_comment(v, len, &p) < 0)
                token_push(tl, TOK_BAD, 0, NULL, 0);
        } else if (c == '"') {
            int closed = 0, bad = 0;
            strbuf_reset(&text);
            for (p++; p < len; ) {
                unsigned char q = (unsigned char) v[p];
                if (q == '"') {
                    closed = 1;
                    p++;
                    break;
                }
                if (q == '\\' && p + 1 < len
                    && (unsigned char) v[p + 1] >= 0x80) {
                    p++;        /* "\" before UTF-8: checked as UTF-8 below */
                    continue;
                }
                if (q == '\\' && p + 1 < len) {
                    q = (unsigned char) v[p + 1];
                    p += 2;
                    if (q < 0x20 || q == 0x7F)
                        bad = 1;
                    strbuf_append_char(&text, q);
                    continue;
                }
                if (q == '\r' || q == '\n') {       /* folding */
                    p++;
                    continue;
                }
                if (q >= 0x80) {
                    size_t k = utf8_step(v, len, p);
                    if (k == 0) {
                        bad = 1;
                        k = 1;
                    }
                    strbuf_append(&text, v + p, k);
                    p += k;
                    continue;
                }
                if (q == '\t')
                    q = ' ';    /* whitespace; envelopes cannot hold TAB */
                else if (q < 0x20 || q == 0x7F)
                    bad = 1;
                strbuf_append_char(&text, q);
                p++;
            }
            if (closed && !bad)
                token_push(tl, TOK_QSTRING, 0, strbuf_str(&text), text.len);
            else
                token_push(tl, TOK_BAD, 0, NULL, 0);
        } else if (c == '[') {
            size_t start = p++;
            while (p < len && v[p] != ']' && v[p] != '[' && v[p] != '\0')
                p++;
            if (p < len && v[p] == ']') {
                p++;
                token_push(tl, TOK_DLIT, 0, v + start, p - start);
            } else {            /* unterminated: the rest is unusable */
                token_push(tl, TOK_BAD, 0, NULL, 0);
                p = len;
            }
        } else if (c != 0 && strchr("<>@,;:.\\]", c)) {
            token_push(tl, TOK_SPECIAL, (char) c, NULL, 0);
            p++;
        } else if (addr_is_atext(c) || c >= 0x80) {
            size_t start = p;
            int bad = 0;
            while (p < len) {
                unsigned char a = (unsigned char) v[p];
                if (addr_is_atext(a)) {
                    p++;
                } else if (a >= 0x80) {
                    size_t k = utf8_step(v, len, p);
                    if (k == 0) {
                        bad = 1;
                        k = 1;
                    }
                    p += k;
                } else {
                    break;
                }
            }
            token_push(tl, bad ? TOK_BAD : TOK_ATOM, 0, v + start, p - start);
        } else {                /* NUL, controls, ')' out of place */
            token_push(tl, TOK_BAD, 0, NULL, 0);
            p++;
        }
    }
    strbuf_release(&text);
}

static int is_special(const struct token *t, char c)
{
    return t->type == TOK_SPECIAL && t->special == c;
}

/*
 * Turn tokens [a, b) holding exactly one addr-spec into the internal form.
 * Returns 0 and fills out, or -1 when they are not an addr-spec.
 */
static int build_addr_spec(const struct token *tok, size_t a, size_t b,
                           strbuf *out)
{
    strbuf local;
    strbuf_init(&local);
    strbuf_reset(out);
    size_t i = a;
    int rc = -1;

    /* local-part = word *("." word) */
    for (;;) {
        if (i >= b || (tok[i].type != TOK_ATOM && tok[i].type != TOK_QSTRING))
            goto done;
        strbuf_append(&local, tok[i].text, tok[i].len);
        i++;
        if (i < b && is_special(&tok[i], '.')) {
            strbuf_append_char(&local, '.');
            i++;
            continue;
        }
        break;
    }
    if (local.len == 0)
        goto done;
    /* the same limits as an envelope path: 64 octets of local part as it
     * is written (quoted if it must be), 256 for "<addr>" */
    addr_quote_local_n(strbuf_str(&local), local.len, out);
    if (out->len > 64)
        goto done;
    if (i == b) {
        rc = 0;                 /* bare local name */
        goto done;
    }
    if (!is_special(&tok[i], '@'))
        goto done;
    i++;
    size_t domain_start = out->len + 1;
    strbuf_append_char(out, '@');
    if (i < b && tok[i].type == TOK_DLIT) {
        strbuf_append(out, tok[i].text, tok[i].len);
        i++;
    } else {
        for (;;) {
            if (i >= b || tok[i].type != TOK_ATOM)
                goto done;
            strbuf_append(out, tok[i].text, tok[i].len);
            i++;
            if (i < b && is_special(&tok[i], '.')) {
                strbuf_append_char(out, '.');
                i++;
                continue;
            }
            break;
        }
    }
    if (i != b || out->len + 2 > 256)
        goto done;
    if (addr_domain_problem(out->data + domain_start,
                            out->len - domain_start, 1) != NULL)
        goto done;
    rc = 0;
done:
    strbuf_release(&local);
    if (rc < 0)
        strbuf_reset(out);
    return rc;
}

struct list_parser {
    const struct token *tok;
    size_t count;
    void (*cb)(const char *addr, void *ctx);
    void *ctx;
    int delivered;
    int malformed;
    strbuf addr;
};

/* One mailbox (name-addr or addr-spec) in tokens [a, b), no ',' inside. */
static void parse_mailbox(struct list_parser *lp, size_t a, size_t b)
{
    const struct token *tok = lp->tok;
    if (a == b)
        return;                 /* empty element: obsolete syntax, harmless */
    size_t lt = a;
    while (lt < b && !is_special(&tok[lt], '<'))
        lt++;
    size_t spec_a = a, spec_b = b;
    if (lt < b) {
        /* display name: words and obsolete dots only */
        for (size_t i = a; i < lt; i++)
            if (tok[i].type != TOK_ATOM && tok[i].type != TOK_QSTRING
                && !is_special(&tok[i], '.')) {
                lp->malformed = 1;
                return;
            }
        size_t gt = lt + 1;
        while (gt < b && !is_special(&tok[gt], '>'))
            gt++;
        if (gt >= b || gt + 1 != b) {
            lp->malformed = 1;
            return;
        }
        spec_a = lt + 1;
        spec_b = gt;
        if (spec_a < spec_b && is_special(&tok[spec_a], '@')) {
            /* obsolete route "@a,@b:" - dropped */
            while (spec_a < spec_b && !is_special(&tok[spec_a], ':'))
                spec_a++;
            if (spec_a == spec_b) {
                lp->malformed = 1;
                return;
            }
            spec_a++;
        }
        if (spec_a == spec_b)
            return;             /* "<>" in a header: nothing to deliver */
    }
    if (build_addr_spec(tok, spec_a, spec_b, &lp->addr) < 0) {
        lp->malformed = 1;
        return;
    }
    lp->cb(strbuf_str(&lp->addr), lp->ctx);
    lp->delivered++;
}

/* End of the element starting at i: the next ',' (or ';' in a group) that
 * is not inside "<...>" (an obsolete route there holds ',' and ':'). */
static size_t element_end(const struct list_parser *lp, size_t i, int in_group)
{
    int angle = 0;
    for (; i < lp->count; i++) {
        const struct token *t = &lp->tok[i];
        if (is_special(t, '<'))
            angle = 1;
        else if (is_special(t, '>'))
            angle = 0;
        else if (!angle && (is_special(t, ',') || (in_group && is_special(t, ';'))))
            break;
    }
    return i;
}

/* Is tokens [i, end) a group, "display-name:" before anything else? */
static size_t group_colon(const struct list_parser *lp, size_t i, size_t end)
{
    for (; i < end; i++) {
        const struct token *t = &lp->tok[i];
        if (is_special(t, ':'))
            return i;
        if (t->type == TOK_SPECIAL && t->special != '.')
            return (size_t) -1;
    }
    return (size_t) -1;
}

int addr_list_parse(const char *value, size_t len,
                    void (*cb)(const char *addr, void *ctx), void *ctx)
{
    struct token_list tl = { NULL, 0, 0 };
    tokenize(value, len, &tl);

    struct list_parser lp = { tl.tok, tl.count, cb, ctx, 0, 0, { 0 } };
    strbuf_init(&lp.addr);

    size_t i = 0;
    while (i < tl.count) {
        /* "name: a, b;" - the ':' comes before the first top-level ',' */
        size_t end = element_end(&lp, i, 0);
        size_t colon = group_colon(&lp, i, end);
        if (colon != (size_t) -1) {
            size_t j = colon + 1;
            for (;;) {
                size_t member_end = element_end(&lp, j, 1);
                parse_mailbox(&lp, j, member_end);
                j = member_end;
                if (j >= tl.count) {
                    break;      /* missing ';': tolerated */
                }
                if (is_special(&tl.tok[j], ';')) {
                    j++;
                    break;
                }
                j++;            /* ',' */
            }
            /* after the group: only a ',' or the end */
            if (j < tl.count && !is_special(&tl.tok[j], ',')) {
                lp.malformed = 1;
                j = element_end(&lp, j, 0);
            }
            i = j < tl.count ? j + 1 : j;
            continue;
        }
        int broken = 0;
        for (size_t k = i; k < end; k++)
            if (is_special(&tl.tok[k], ';') || tl.tok[k].type == TOK_BAD)
                broken = 1;
        if (broken)
            lp.malformed = 1;   /* skip the whole element */
        else
            parse_mailbox(&lp, i, end);
        i = end < tl.count ? end + 1 : end;
    }

    for (size_t k = 0; k < tl.count; k++)
        xfree(tl.tok[k].text);
    xfree(tl.tok);
    strbuf_release(&lp.addr);
    return lp.malformed ? -1 : lp.delivered;
}
