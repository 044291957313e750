/*
 * alias_list.h - split an alias value, a .forward file or an :include: file
 * into delivery items.
 *
 * Interface:
 *   alias_list_parse(text, len, &items, err)   returns the number of items
 *       (>= 0, items allocated, possibly NULL when 0) or -1 with a short
 *       reason in err.  alias_list_free(items, n) releases them.
 *
 * Syntax (Postfix's aliases(5) / forward(5) as operators write them):
 *   - items are separated by commas and newlines; an address item also ends
 *     at unquoted whitespace ("alice bob" is two items);
 *   - a line whose first non-blank character is '#' is a comment;
 *   - double quotes group text ("|cmd a, b" keeps its comma and spaces), a
 *     backslash inside quotes escapes the next character; quotes are removed;
 *   - a leading backslash on an address (\user) means "this user's mailbox,
 *     no further alias or .forward expansion" (item.no_expand = 1);
 *   - the kind follows from the first character after unquoting:
 *     '|' command (value = the command line after '|'), '/' file (value =
 *     the path), ":include:" (case-insensitive) include file (value = the
 *     path), anything else an address (user or user@domain);
 *   - CR is treated as white space, empty items are skipped.
 *
 * Contract: pure function, never reads past len.  Errors: a NUL byte, an
 * unterminated quote, an empty command, an :include: or file item without an
 * absolute path.  The caller bounds the input size and the item count.
 */
#ifndef POSTERN_ALIAS_LIST_H
#define POSTERN_ALIAS_LIST_H

#include <stddef.h>
#include "strbuf.h"

enum alias_item_kind {
    ALIAS_ITEM_ADDRESS,
    ALIAS_ITEM_COMMAND,
    ALIAS_ITEM_FILE,
    ALIAS_ITEM_INCLUDE
};

struct alias_item {
    enum alias_item_kind kind;
    char *value;                /* address, command line, or path */
    int no_expand;              /* \user: mailbox only */
};

int alias_list_parse(const char *text, size_t len, struct alias_item **items, strbuf *err);
void alias_list_free(struct alias_item *items, int n);

#endif
