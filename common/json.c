/*
 * json.c - JSON string output (interface and contract in json.h).
 */
#include "json.h"

/* Length of the well-formed UTF-8 sequence at s (1..4), or 0 when the
 * bytes there are not one (RFC 3629: no overlongs, no surrogates, nothing
 * above U+10FFFF). */
static size_t utf8_seq_len(const unsigned char *s, size_t left)
{
    unsigned c = s[0];
    size_t n;
    unsigned min, cp;
    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF) {
        n = 2; cp = c & 0x1F; min = 0x80;
    } else if (c >= 0xE0 && c <= 0xEF) {
        n = 3; cp = c & 0x0F; min = 0x800;
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4; cp = c & 0x07; min = 0x10000;
    } else {
        return 0;
    }
    if (left < n)
        return 0;
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return n;
}

void json_append_string(strbuf *out, const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *) s;
    strbuf_append_char(out, '"');
    for (size_t i = 0; i < len;) {
        unsigned c = p[i];
        if (c == '"' || c == '\\') {
            strbuf_append_char(out, '\\');
            strbuf_append_char(out, (int) c);
            i++;
        } else if (c == '\n') {
            strbuf_append_str(out, "\\n");
            i++;
        } else if (c == '\r') {
            strbuf_append_str(out, "\\r");
            i++;
        } else if (c == '\t') {
            strbuf_append_str(out, "\\t");
            i++;
        } else if (c < 0x20 || c == 0x7F) {
            strbuf_appendf(out, "\\u%04x", c);
            i++;
        } else {
            size_t n = utf8_seq_len(p + i, len - i);
            if (n == 0) {
                strbuf_append_str(out, "\\ufffd");
                i++;
            } else {
                strbuf_append(out, p + i, n);
                i += n;
            }
        }
    }
    strbuf_append_char(out, '"');
}
