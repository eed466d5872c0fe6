/* Fuzz target: duration_parse / duration_format (include/util.h).
 *
 * The input, cut at its first NUL, is parsed as a duration. Properties (abort() on
 * violation):
 *   - duration_parse returns 0, -EINVAL or -ERANGE, and never writes ret_ms on failure;
 *   - a parsed value formats to a string that parses back to the same value, and that
 *     string is canonical (formatting it again gives itself);
 *   - the first 8 input bytes, read as a number, format and parse back to that number
 *     whenever it is at most UINT64_MAX / NSEC_PER_MSEC (deadlines are ns in 64 bits;
 *     -ERANGE is only allowed above that);
 *   - duration_format into a buffer of every size from 0 to 40 stays NUL-terminated
 *     inside the buffer and is a prefix of the full text.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FMT_SIZE 64 /* "18446744073709551615h..." fits comfortably */
/* The largest duration util.c accepts: deadlines are ns in a uint64_t. */
#define DURATION_LIMIT_MS (UINT64_MAX / NSEC_PER_MSEC)

static void fail(const char *what, const char *s, uint64_t v)
{
        fprintf(stderr, "fuzz_duration: %s (input \"%s\", value %llu)\n", what, s, (unsigned long long) v);
        abort();
}

static void check_format(uint64_t ms)
{
        char full[FMT_SIZE], again[FMT_SIZE], small[48];
        uint64_t back = 0xDEADBEEF;
        int r;

        duration_format(ms, full, sizeof(full));
        if (strlen(full) >= sizeof(full) - 1)
                fail("formatted text may be truncated", full, ms);
        r = duration_parse(full, &back);
        if (r == -ERANGE && ms > DURATION_LIMIT_MS)
                return; /* above what a parse accepts: not representable as a deadline */
        if (r < 0)
                fail("formatted duration does not parse", full, ms);
        if (back != ms)
                fail("format/parse round trip changed the value", full, ms);
        duration_format(back, again, sizeof(again));
        if (strcmp(full, again) != 0)
                fail("format is not canonical", again, ms);

        for (size_t n = 0; n <= 40; n++) {
                memset(small, 'X', sizeof(small));
                duration_format(ms, small, n);
                if (n == 0) {
                        if (small[0] != 'X')
                                fail("wrote into a zero-size buffer", full, ms);
                        continue;
                }
                if (!memchr(small, '\0', n))
                        fail("not NUL-terminated inside the buffer", full, ms);
                if (small[n] != 'X')
                        fail("wrote past the buffer", full, ms);
                if (strncmp(small, full, strlen(small)) != 0)
                        fail("truncated text is not a prefix", small, ms);
        }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        static const uint64_t poison = 0x5A5A5A5A5A5A5A5AULL;
        uint64_t ms = poison, v = 0;
        char *s;
        int r;

        s = malloc(size + 1);
        if (!s)
                return 0;
        memcpy(s, data, size);
        s[size] = '\0';

        r = duration_parse(s, &ms);
        if (r == 0) {
                check_format(ms);
        } else if (r != -EINVAL && r != -ERANGE) {
                fail("unexpected error code", s, (uint64_t) -r);
        } else if (ms != poison) {
                fail("ret_ms written on failure", s, ms);
        }

        for (size_t i = 0; i < size && i < 8; i++)
                v = v << 8 | data[i];
        check_format(v);
        free(s);
        return 0;
}
