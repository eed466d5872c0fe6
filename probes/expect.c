/* Checks of an answer's content (include/expect.h): the escape syntax of tcp's `send`
 * and `expect`, and RFC 6901 JSON pointers for http's `expect_json`. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "expect.h"

static int hexval(char c)
{
        if (c >= '0' && c <= '9')
                return c - '0';
        if (c >= 'a' && c <= 'f')
                return c - 'a' + 10;
        if (c >= 'A' && c <= 'F')
                return c - 'A' + 10;
        return -1;
}

int escape_decode(const char *s, char **ret, size_t *ret_len, size_t *ret_off, const char **why)
{
        size_t n = strlen(s), len = 0;
        char *out = malloc(n + 1);

        if (!out)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                int hi, lo;

                if (s[i] != '\\') {
                        out[len++] = s[i];
                        continue;
                }
                *ret_off = i;
                switch (s[i + 1]) {
                case 'r':
                        out[len++] = '\r';
                        break;
                case 'n':
                        out[len++] = '\n';
                        break;
                case 't':
                        out[len++] = '\t';
                        break;
                case '\\':
                        out[len++] = '\\';
                        break;
                case 'x':
                        hi = hexval(s[i + 2]);
                        lo = hi < 0 ? -1 : hexval(s[i + 3]);
                        if (lo < 0) {
                                *why = "\\x without two hex digits";
                                free(out);
                                return -EINVAL;
                        }
                        out[len++] = (char) (hi << 4 | lo);
                        i += 2;
                        break;
                case '\0':
                        *why = "a lone \\";
                        free(out);
                        return -EINVAL;
                default:
                        *why = "an unknown escape";
                        free(out);
                        return -EINVAL;
                }
                i++;
        }
        out[len] = '\0';
        *ret = out;
        *ret_len = len;
        return 0;
}

/* The escaped form of byte c into e (at most 4 bytes); returns its length. */
static size_t escape_byte(unsigned char c, char e[5])
{
        if (c == '\r' || c == '\n' || c == '\t' || c == '\\') {
                e[0] = '\\';
                e[1] = c == '\r' ? 'r' : c == '\n' ? 'n' : c == '\t' ? 't' : '\\';
                return 2;
        }
        if (c >= 0x20 && c < 0x7F) {
                e[0] = (char) c;
                return 1;
        }
        snprintf(e, 5, "\\x%02x", c);
        return 4;
}

void escape_show(const char *buf, size_t len, char *out, size_t n)
{
        size_t o = 0, total = 0;
        bool cut;
        char e[5];

        if (n == 0)
                return;
        for (size_t i = 0; i < len; i++)
                total += escape_byte((unsigned char) buf[i], e);
        cut = total >= n; /* then room is kept for "..." */
        for (size_t i = 0; i < len; i++) {
                size_t el = escape_byte((unsigned char) buf[i], e);

                if (o + el + (cut ? 3 : 0) >= n)
                        break;
                memcpy(out + o, e, el);
                o += el;
        }
        if (cut && o + 3 < n) {
                memcpy(out + o, "...", 3);
                o += 3;
        }
        out[o] = '\0';
}

bool json_pointer_valid(const char *p)
{
        if (*p != '\0' && *p != '/')
                return false;
        for (; *p; p++)
                if (*p == '~' && p[1] != '0' && p[1] != '1')
                        return false;
        return true;
}

/* The token at p (up to the next '/' or the end), unescaped into tok (room for len + 1). */
static void token_decode(const char *p, size_t len, char *tok)
{
        size_t o = 0;

        for (size_t i = 0; i < len; i++) {
                if (p[i] == '~') {
                        tok[o++] = p[i + 1] == '1' ? '/' : '~';
                        i++;
                } else
                        tok[o++] = p[i];
        }
        tok[o] = '\0';
}

/* An array index: "0" or digits with no leading zero, below INT_MAX; -1 otherwise. */
static int index_parse(const char *tok)
{
        long v = 0;

        if (!*tok || (tok[0] == '0' && tok[1]))
                return -1;
        for (const char *c = tok; *c; c++) {
                if (*c < '0' || *c > '9')
                        return -1;
                v = v * 10 + (*c - '0');
                if (v >= INT_MAX)
                        return -1;
        }
        return (int) v;
}

const cJSON *json_pointer_get(const cJSON *root, const char *p)
{
        const cJSON *v = root;
        char *tok;

        if (!json_pointer_valid(p))
                return NULL;
        tok = malloc(strlen(p) + 1);
        if (!tok)
                return NULL;
        while (v && *p == '/') {
                size_t len = strcspn(p + 1, "/");

                token_decode(p + 1, len, tok);
                p += 1 + len;
                if (cJSON_IsObject(v))
                        v = cJSON_GetObjectItemCaseSensitive(v, tok);
                else if (cJSON_IsArray(v)) {
                        int i = index_parse(tok);
                        v = i >= 0 && i < cJSON_GetArraySize(v) ? cJSON_GetArrayItem(v, i) : NULL;
                } else
                        v = NULL;
        }
        free(tok);
        return v;
}

/* The value as JSON, cut to EXPECT_SHOW_MAX bytes (never inside a UTF-8 sequence). */
static void value_show(const cJSON *v, char *out, size_t n)
{
        char *s = cJSON_PrintUnformatted(v);
        size_t len, cut = EXPECT_SHOW_MAX;

        if (!s) {
                snprintf(out, n, "(out of memory)");
                return;
        }
        len = strlen(s);
        if (len > EXPECT_SHOW_MAX) {
                while (cut > 0 && ((unsigned char) s[cut] & 0xC0) == 0x80)
                        cut--;
                snprintf(out, n, "%.*s...", (int) cut, s);
        } else
                snprintf(out, n, "%s", s);
        free(s);
}

/* Appends text to err (o bytes used of n), cut at its end. */
static void err_add(char *err, size_t n, size_t *o, const char *text)
{
        int w;

        if (*o + 1 >= n)
                return;
        w = snprintf(err + *o, n - *o, "%s", text);
        *o += w < 0 ? 0 : (size_t) w >= n - *o ? n - *o - 1 : (size_t) w;
}

bool json_expect_match(const cJSON *want, const char *body, size_t len, char *err, size_t n)
{
        const char *end = NULL;
        cJSON *doc = cJSON_ParseWithLengthOpts(body, len, &end, false);
        const cJSON *w;
        size_t o = 0;
        bool ok = true;

        if (n > 0)
                err[0] = '\0';
        if (doc && end) /* whitespace only after the value */
                while (end < body + len && (*end == ' ' || *end == '\t' || *end == '\r' || *end == '\n'))
                        end++;
        if (!doc || !end || end != body + len) {
                cJSON_Delete(doc);
                snprintf(err, n, "body is not JSON");
                return false;
        }
        cJSON_ArrayForEach(w, want)
        {
                const cJSON *got = json_pointer_get(doc, w->string);
                char a[EXPECT_SHOW_MAX + 4], b[EXPECT_SHOW_MAX + 4], line[2 * EXPECT_SHOW_MAX + 64];

                if (got && (cJSON_Compare(got, w, true) ||
                            (cJSON_IsNumber(got) && cJSON_IsNumber(w) && got->valuedouble == w->valuedouble)))
                        continue; /* == too: cJSON_Compare never finds 1e999 (inf) equal to itself */
                value_show(w, b, sizeof(b));
                if (got) {
                        value_show(got, a, sizeof(a));
                        snprintf(line, sizeof(line), "%s%s is %s, want %s", ok ? "" : "; ", w->string, a, b);
                } else
                        snprintf(line, sizeof(line), "%s%s is missing, want %s", ok ? "" : "; ", w->string, b);
                err_add(err, n, &o, line);
                ok = false;
        }
        cJSON_Delete(doc);
        return ok;
}
