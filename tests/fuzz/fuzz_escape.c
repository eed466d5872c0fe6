/* Fuzz target: the escape syntax of tcp's send and expect (include/expect.h).
 *
 * The input, cut at its first NUL, is decoded as a send/expect value; the whole input is
 * also shown as raw bytes. Properties (abort() on violation):
 *   - escape_decode returns 0 or -EINVAL (-ENOMEM aside); on -EINVAL it sets why and an
 *     offset inside the input that points at a backslash, and sets no buffer;
 *   - a decoded value is never longer than its text, and NUL-terminated;
 *   - escape_show of any bytes, given room, decodes back to exactly those bytes;
 *   - escape_show into a buffer of every size from 0 to 80 stays inside it and
 *     NUL-terminates, and what it writes is a prefix of the full text or ends in "...".
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "expect.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fail(const char *what)
{
        fprintf(stderr, "fuzz_escape: %s\n", what);
        abort();
}

static void check_show(const char *buf, size_t len)
{
        size_t full_n = 4 * len + 1;
        char *full = malloc(full_n), *back = NULL, small[88];
        const char *why = NULL;
        size_t back_len = 0, off = 0;
        int r;

        if (!full)
                return;
        escape_show(buf, len, full, full_n);
        r = escape_decode(full, &back, &back_len, &off, &why);
        if (r == -ENOMEM) {
                free(full);
                return;
        }
        if (r != 0)
                fail("shown bytes do not decode");
        if (back_len != len || memcmp(back, buf, len) != 0)
                fail("show/decode round trip changed the bytes");
        for (size_t n = 0; n <= 80; n++) {
                memset(small, 'X', sizeof(small));
                escape_show(buf, len, small, n);
                if (n == 0) {
                        if (small[0] != 'X')
                                fail("wrote into a zero-size buffer");
                        continue;
                }
                size_t l = strnlen(small, n);
                if (l >= n)
                        fail("not NUL-terminated inside the buffer");
                if (small[n] != 'X' && n < sizeof(small))
                        fail("wrote past the buffer");
                if (strncmp(small, full, l) != 0 && (l < 3 || strcmp(small + l - 3, "...") != 0 ||
                                                     strncmp(small, full, l - 3) != 0))
                        fail("cut text is not a prefix of the full one");
        }
        free(back);
        free(full);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        char *s = malloc(size + 1), *out = (char *) 0x1;
        const char *why = NULL;
        size_t len = 0, off = (size_t) -1;
        int r;

        if (!s)
                return 0;
        memcpy(s, data, size);
        s[size] = '\0';
        r = escape_decode(s, &out, &len, &off, &why);
        if (r == 0) {
                if (len > strlen(s) || out[len] != '\0')
                        fail("decoded value longer than its text, or not terminated");
                check_show(out, len);
                free(out);
        } else if (r == -EINVAL) {
                if (!why || off >= strlen(s) || s[off] != '\\')
                        fail("an error without a reason, or at a byte that is not a backslash");
                if (out != (char *) 0x1)
                        fail("an error set the buffer");
        } else if (r != -ENOMEM)
                fail("unexpected return value");
        check_show((const char *) data, size);
        free(s);
        return 0;
}
