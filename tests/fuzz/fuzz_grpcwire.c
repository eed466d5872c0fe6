/* Fuzz target: the gRPC health reply decoder and trailer parsers (include/grpcwire.h).
 *
 * The whole input is a response body as received. Properties (abort() on violation):
 *   - grpcwire_response_decode returns 0, -EBADMSG or -EMSGSIZE, sets why on error and
 *     never writes *ret_status on error; -EMSGSIZE only when the length prefix exceeds
 *     max_len (checked with GRPC_MAX_REPLY_BYTES-like small limits and with SIZE_MAX);
 *   - a decoded status re-encoded as a minimal HealthCheckResponse decodes to itself;
 *   - grpcwire_status_parse gives 0..99 or -EINVAL, and digits it accepts print back;
 *   - grpcwire_message_decode stays inside its buffer, NUL-terminates and emits only
 *     printable ASCII;
 *   - the name helpers never crash on any value.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "grpcwire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fail(const char *what)
{
        fprintf(stderr, "fuzz_grpcwire: %s\n", what);
        abort();
}

static size_t prefix_len(const uint8_t *buf, size_t len)
{
        if (len < GRPCWIRE_PREFIX_SIZE)
                return 0;
        return (size_t) buf[1] << 24 | (size_t) buf[2] << 16 | (size_t) buf[3] << 8 | buf[4];
}

static int decode_checked(const uint8_t *buf, size_t len, size_t max_len, uint64_t *ret_status)
{
        const uint64_t poison = 0xA5A5A5A5A5A5A5A5ULL;
        const char *why = NULL;
        uint64_t st = poison;
        int r;

        r = grpcwire_response_decode(buf, len, max_len, &st, &why);
        if (r == 0) {
                *ret_status = st;
                return 0;
        }
        if (st != poison)
                fail("status written on error");
        if (r != -EBADMSG && r != -EMSGSIZE)
                fail("unexpected return value");
        if (!why || !*why)
                fail("error without a reason");
        if (r == -EMSGSIZE && prefix_len(buf, len) <= max_len)
                fail("-EMSGSIZE while the prefix is within max_len");
        return r;
}

/* prefix + field 1 varint: the encoding a server would send for status s. */
static size_t encode_response(uint64_t s, uint8_t *out)
{
        size_t n = GRPCWIRE_PREFIX_SIZE;

        if (s != 0) {
                out[n++] = 0x08;
                do {
                        out[n] = s & 0x7F;
                        s >>= 7;
                        if (s)
                                out[n] |= 0x80;
                        n++;
                } while (s);
        }
        out[0] = 0;
        out[1] = out[2] = out[3] = 0;
        out[4] = (uint8_t) (n - GRPCWIRE_PREFIX_SIZE);
        return n;
}

static void check_trailers(const uint8_t *data, size_t size)
{
        char out[32], digits[8];
        long code = -1;
        int r;

        r = grpcwire_status_parse((const char *) data, size, &code);
        if (r == 0) {
                if (code < 0 || code > 99)
                        fail("status code out of range");
                (void) snprintf(digits, sizeof(digits), "%ld", code);
                if (!memmem(data, size, digits, strlen(digits)))
                        fail("accepted status code not in the input");
                (void) grpc_code_to_string(code);
        } else if (r != -EINVAL) {
                fail("unexpected status parse result");
        }

        for (size_t n = 1; n <= sizeof(out); n += 7) {
                memset(out, 'X', sizeof(out));
                grpcwire_message_decode((const char *) data, size, out, n);
                if (!memchr(out, '\0', n))
                        fail("message not NUL-terminated inside the buffer");
                if (n < sizeof(out) && out[n] != 'X')
                        fail("message decode wrote past the buffer");
                for (size_t i = 0; out[i]; i++)
                        if (out[i] < 0x20 || out[i] > 0x7E)
                                fail("non-printable byte in a decoded message");
        }
        (void) grpcwire_code_from_http(size ? (long) data[0] * 7 - 100 : 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        uint8_t *buf, enc[16];
        uint64_t status = 0, again = 0;
        size_t n;

        /* A copy of exactly size bytes, so ASan sees any read past the end. */
        buf = malloc(size ? size : 1);
        if (!buf)
                return 0;
        memcpy(buf, data, size);

        (void) decode_checked(buf, size, 4096, &status);
        (void) decode_checked(buf, size, 0, &status);
        (void) decode_checked(buf, size, 16, &status);
        if (decode_checked(buf, size, SIZE_MAX, &status) == 0) {
                (void) grpc_serving_status_to_string(status);
                n = encode_response(status, enc);
                if (decode_checked(enc, n, 4096, &again) != 0 || again != status)
                        fail("re-encoded status does not decode to itself");
        }
        check_trailers(buf, size);
        free(buf);
        return 0;
}
