/* JSON string escaping: the policy is in include/json.h. */
#include <string.h>

#include "json.h"

size_t utf8_valid_len(const unsigned char *p)
{
        unsigned char c = p[0];

        if (c >= 0xc2 && c <= 0xdf)
                return (p[1] & 0xc0) == 0x80 ? 2 : 0;
        if (c >= 0xe0 && c <= 0xef) {
                unsigned char lo = c == 0xe0 ? 0xa0 : 0x80, hi = c == 0xed ? 0x9f : 0xbf;

                if (p[1] < lo || p[1] > hi || (p[2] & 0xc0) != 0x80)
                        return 0;
                return 3;
        }
        if (c >= 0xf0 && c <= 0xf4) {
                unsigned char lo = c == 0xf0 ? 0x90 : 0x80, hi = c == 0xf4 ? 0x8f : 0xbf;

                if (p[1] < lo || p[1] > hi || (p[2] & 0xc0) != 0x80 || (p[3] & 0xc0) != 0x80)
                        return 0;
                return 4;
        }
        return 0;
}

size_t json_plain_len(const char *s)
{
        const unsigned char *p = (const unsigned char *) s;

        for (;;) {
                size_t n;

                if (*p >= 0x20 && *p < 0x7f && *p != '"' && *p != '\\') {
                        p++;
                        continue;
                }
                if (*p < 0x80 || (n = utf8_valid_len(p)) == 0)
                        return (size_t) (p - (const unsigned char *) s);
                p += n;
        }
}

size_t json_escape_byte(unsigned char c, char out[JSON_ESCAPE_MAX])
{
        static const char hex[] = "0123456789abcdef";

        switch (c) {
        case '"':
        case '\\':
                out[0] = '\\';
                out[1] = (char) c;
                return 2;
        case '\n':
                memcpy(out, "\\n", 2);
                return 2;
        case '\r':
                memcpy(out, "\\r", 2);
                return 2;
        case '\t':
                memcpy(out, "\\t", 2);
                return 2;
        }
        if (c >= 0x80) {
                memcpy(out, "\xef\xbf\xbd", 3); /* U+FFFD */
                return 3;
        }
        memcpy(out, "\\u00", 4);
        out[4] = hex[c >> 4];
        out[5] = hex[c & 0xf];
        return 6;
}
