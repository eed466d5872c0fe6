/* Fuzz target: the WebSocket frame decoder and handshake checker (include/wsframe.h).
 *
 * Input layout: byte 0 chooses the mode (bit 0: expect_masked; bits 1-2: max_payload
 * 125, 4096, 1 MiB or UINT64_MAX); the rest is the bytes received. Properties
 * (abort() on violation):
 *   - wsframe_decode returns 1, 0 or -EPROTO/-EMSGSIZE, sets why on error, and leaves
 *     ret untouched unless it returns 1;
 *   - on 1: header_len <= len and <= WSFRAME_HEADER_MAX; the opcode is known; masked
 *     matches expect_masked; control frames are FIN and <= 125 bytes; payload_len <=
 *     max_payload; every shorter prefix of the header returns 0 (needs more bytes);
 *   - a complete masked FIN frame re-encodes byte for byte with wsframe_encode (the
 *     decoder rejects non-minimal lengths, so the encoding is unique);
 *   - wsframe_mask unmasks in pieces exactly as in one go;
 *   - the same bytes as a handshake response: wsframe_response_end never points past
 *     the input, and wsframe_response_check on a complete head returns 0 or -EPROTO
 *     with a NUL-terminated reason that fits its buffer.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wsframe.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A fixed key and its accept value (RFC 6455 section 1.3 example). */
static const char fuzz_key[] = "dGhlIHNhbXBsZSBub25jZQ==";

static void fail(const char *what)
{
        fprintf(stderr, "fuzz_wsframe: %s\n", what);
        abort();
}

static void check_frame(const uint8_t *buf, size_t len, bool expect_masked, uint64_t max_payload)
{
        struct wsframe f, poison;
        const char *why = NULL;
        int r;

        memset(&poison, 0xA5, sizeof(poison));
        f = poison;
        r = wsframe_decode(buf, len, expect_masked, max_payload, &f, &why);
        if (r != 1) {
                if (memcmp(&f, &poison, sizeof(f)) != 0)
                        fail("ret written without a whole header");
                if (r == 0)
                        return;
                if (r != -EPROTO && r != -EMSGSIZE)
                        fail("unexpected return value");
                if (!why || !*why)
                        fail("error without a reason");
                return;
        }
        if (f.header_len < 2 || f.header_len > len || f.header_len > WSFRAME_HEADER_MAX)
                fail("bad header_len");
        if (!(f.opcode <= WSFRAME_BINARY || (f.opcode >= WSFRAME_CLOSE && f.opcode <= WSFRAME_PONG)))
                fail("unknown opcode accepted");
        if (f.masked != expect_masked)
                fail("mask bit accepted against expect_masked");
        if (f.opcode >= WSFRAME_CLOSE && (!f.fin || f.payload_len > WSFRAME_CONTROL_MAX))
                fail("bad control frame accepted");
        if (f.payload_len > max_payload)
                fail("payload_len above max_payload accepted");
        for (size_t k = 0; k < f.header_len; k++) {
                struct wsframe g = poison;

                if (wsframe_decode(buf, k, expect_masked, max_payload, &g, NULL) != 0)
                        fail("a prefix of a whole header did not ask for more bytes");
        }

        if (f.masked && f.fin && f.payload_len <= len - f.header_len) {
                size_t plen = (size_t) f.payload_len, out_len = 0;
                uint8_t *payload = malloc(plen + 1), *piece = malloc(plen + 1);
                uint8_t *out = malloc(plen + WSFRAME_HEADER_MAX);

                if (!payload || !piece || !out)
                        goto out;
                memcpy(payload, buf + f.header_len, plen);
                wsframe_mask(payload, plen, f.mask, 0);
                /* Unmasking in two pieces gives the same bytes. */
                memcpy(piece, buf + f.header_len, plen);
                wsframe_mask(piece, plen / 3, f.mask, 0);
                wsframe_mask(piece + plen / 3, plen - plen / 3, f.mask, plen / 3);
                if (memcmp(piece, payload, plen) != 0)
                        fail("piecewise unmasking differs");
                if (wsframe_encode(f.opcode, payload, plen, f.mask, out, plen + WSFRAME_HEADER_MAX, &out_len) != 0)
                        fail("a decoded frame does not encode");
                if (out_len != f.header_len + plen || memcmp(out, buf, out_len) != 0)
                        fail("re-encoding differs from the decoded frame");
        out:
                free(out);
                free(piece);
                free(payload);
        }
}

static void check_handshake(const uint8_t *buf, size_t len)
{
        char reason[64];
        int status = -1;
        size_t end;
        int r;

        end = wsframe_response_end((const char *) buf, len);
        if (end > len)
                fail("response end past the input");
        if (end == 0)
                return;
        memset(reason, 'X', sizeof(reason));
        r = wsframe_response_check((const char *) buf, end, fuzz_key, NULL, &status, reason, sizeof(reason));
        if (r != 0 && r != -EPROTO)
                fail("unexpected handshake check result");
        if (status < 0)
                fail("status not set");
        if (r != 0 && !memchr(reason, '\0', sizeof(reason)))
                fail("reason not NUL-terminated");
        r = wsframe_response_check((const char *) buf, end, fuzz_key, "chat", &status, reason, 8);
        if (r != 0 && r != -EPROTO)
                fail("unexpected handshake check result (subprotocol)");
        if (r != 0 && !memchr(reason, '\0', 8))
                fail("reason not NUL-terminated in a small buffer");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        static const uint64_t max_payloads[] = { 125, 4096, 1u << 20, UINT64_MAX };
        uint8_t *buf;
        size_t len;

        if (size == 0)
                return 0;
        len = size - 1;
        /* A copy of exactly len bytes, so ASan sees any read past the end. */
        buf = malloc(len ? len : 1);
        if (!buf)
                return 0;
        memcpy(buf, data + 1, len);
        check_frame(buf, len, data[0] & 1, max_payloads[(data[0] >> 1) & 3]);
        check_handshake(buf, len);
        free(buf);
        return 0;
}
