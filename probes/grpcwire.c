/* gRPC health-check wire format (see include/grpcwire.h).
 *
 * The two messages of grpc.health.v1 are small enough to encode by hand (no protobuf
 * library): HealthCheckRequest is field 1 (string, tag 0x0A); HealthCheckResponse is field
 * 1 (enum as varint, tag 0x08). The decoder follows the proto3 wire format rules a
 * generated parser would: unknown fields of every non-group wire type are skipped, the
 * last occurrence of a field wins, an absent enum is 0. It never reads past the buffer
 * and treats anything it cannot account for as malformed, because a probe that guesses
 * would call a broken server healthy. */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "grpcwire.h"
#include "util.h"

const char *grpc_serving_status_to_string(uint64_t s)
{
        static const char *const names[] = {
                [GRPC_SERVING_UNKNOWN] = "UNKNOWN",
                [GRPC_SERVING_SERVING] = "SERVING",
                [GRPC_SERVING_NOT_SERVING] = "NOT_SERVING",
                [GRPC_SERVING_SERVICE_UNKNOWN] = "SERVICE_UNKNOWN",
        };

        return s < sizeof(names) / sizeof(names[0]) ? names[s] : NULL;
}

const char *grpc_code_to_string(long code)
{
        static const char *const names[] = {
                "OK",        "CANCELLED",       "UNKNOWN",           "INVALID_ARGUMENT",   "DEADLINE_EXCEEDED",
                "NOT_FOUND", "ALREADY_EXISTS",  "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
                "ABORTED",   "OUT_OF_RANGE",    "UNIMPLEMENTED",     "INTERNAL",           "UNAVAILABLE",
                "DATA_LOSS", "UNAUTHENTICATED",
        };

        return code >= 0 && (size_t) code < sizeof(names) / sizeof(names[0]) ? names[code] : NULL;
}

static size_t varint_put(uint8_t *out, uint64_t v)
{
        size_t n = 0;

        do {
                out[n++] = (uint8_t) ((v & 0x7F) | (v > 0x7F ? 0x80 : 0));
                v >>= 7;
        } while (v > 0);
        return n;
}

int grpcwire_request_encode(const char *service, uint8_t **ret_buf, size_t *ret_len)
{
        size_t slen = strlen(service), mlen = 0, n;
        uint8_t *buf;

        if (slen > GRPCWIRE_SERVICE_MAX)
                return -EINVAL;
        buf = malloc(GRPCWIRE_PREFIX_SIZE + 1 + 10 + slen);
        if (!buf)
                return -ENOMEM;
        if (slen > 0) {                           /* proto3 omits the empty string */
                buf[GRPCWIRE_PREFIX_SIZE] = 0x0A; /* field 1, wire type 2 */
                mlen = 1 + varint_put(buf + GRPCWIRE_PREFIX_SIZE + 1, slen);
                memcpy(buf + GRPCWIRE_PREFIX_SIZE + mlen, service, slen);
                mlen += slen;
        }
        buf[0] = 0; /* not compressed */
        for (n = 0; n < 4; n++)
                buf[1 + n] = (uint8_t) (mlen >> (24 - 8 * n));
        *ret_buf = buf;
        *ret_len = GRPCWIRE_PREFIX_SIZE + mlen;
        return 0;
}

/* Reads a varint at *p (< end): 0 and advances *p, or -EBADMSG. */
static int varint_get(const uint8_t **p, const uint8_t *end, uint64_t *ret)
{
        uint64_t v = 0;

        for (unsigned i = 0; i < 10; i++) {
                uint8_t b;

                if (*p >= end)
                        return -EBADMSG;
                b = *(*p)++;
                if (i == 9 && b > 1)
                        return -EBADMSG; /* more than 64 bits */
                v |= (uint64_t) (b & 0x7F) << (7 * i);
                if (!(b & 0x80)) {
                        *ret = v;
                        return 0;
                }
        }
        return -EBADMSG;
}

static int bad(const char **why, const char *msg, int r)
{
        if (why)
                *why = msg;
        return r;
}

/* The walk both messages share: buf holds exactly one uncompressed length-prefixed
 * message (at most max_len bytes) whose field 1 has wire type want_type (0 varint, 2
 * bytes); the last occurrence wins, unknown fields are skipped. *ret_v: field 1's
 * varint, or its bytes' length with *ret_bytes pointing into buf; untouched when the
 * field is absent. 0, or -EBADMSG / -EMSGSIZE with *why. */
static int message_walk(const uint8_t *buf, size_t len, size_t max_len, unsigned want_type, const char *wrong_type,
                        uint64_t *ret_v, const uint8_t **ret_bytes, const char **why)
{
        const uint8_t *p, *end;
        uint32_t mlen;

        if (len == 0)
                return bad(why, "no message", -EBADMSG);
        if (len < GRPCWIRE_PREFIX_SIZE)
                return bad(why, "truncated message prefix", -EBADMSG);
        if (buf[0] == 1)
                return bad(why, "compressed message", -EBADMSG);
        if (buf[0] != 0)
                return bad(why, "bad compressed flag", -EBADMSG);
        mlen = (uint32_t) buf[1] << 24 | (uint32_t) buf[2] << 16 | (uint32_t) buf[3] << 8 | buf[4];
        if (mlen > max_len)
                return bad(why, "message too large", -EMSGSIZE);
        if (len - GRPCWIRE_PREFIX_SIZE < mlen)
                return bad(why, "truncated message", -EBADMSG);
        if (len - GRPCWIRE_PREFIX_SIZE > mlen)
                return bad(why, "more than one message", -EBADMSG);

        p = buf + GRPCWIRE_PREFIX_SIZE;
        end = p + mlen;
        while (p < end) {
                uint64_t tag, v;

                if (varint_get(&p, end, &tag) < 0)
                        return bad(why, "bad field tag", -EBADMSG);
                if (tag >> 3 == 0 || tag >> 3 > 0x1FFFFFFF)
                        return bad(why, "bad field number", -EBADMSG);
                if (tag >> 3 == 1 && (tag & 7) != want_type)
                        return bad(why, wrong_type, -EBADMSG);
                switch (tag & 7) {
                case 0: /* varint */
                        if (varint_get(&p, end, &v) < 0)
                                return bad(why, "bad varint", -EBADMSG);
                        if (tag >> 3 == 1)
                                *ret_v = v;
                        break;
                case 1: /* 64-bit */
                        if (end - p < 8)
                                return bad(why, "truncated field", -EBADMSG);
                        p += 8;
                        break;
                case 2: /* length-delimited */
                        if (varint_get(&p, end, &v) < 0)
                                return bad(why, "bad length", -EBADMSG);
                        if (v > (uint64_t) (end - p))
                                return bad(why, "truncated field", -EBADMSG);
                        if (tag >> 3 == 1) {
                                *ret_v = v;
                                *ret_bytes = p;
                        }
                        p += v;
                        break;
                case 5: /* 32-bit */
                        if (end - p < 4)
                                return bad(why, "truncated field", -EBADMSG);
                        p += 4;
                        break;
                default: /* groups (3, 4) are not proto3; 6 and 7 do not exist */
                        return bad(why, "bad wire type", -EBADMSG);
                }
        }
        return 0;
}

int grpcwire_response_decode(const uint8_t *buf, size_t len, size_t max_len, uint64_t *ret_status, const char **why)
{
        uint64_t status = GRPC_SERVING_UNKNOWN;
        const uint8_t *unused = NULL;
        int r = message_walk(buf, len, max_len, 0, "status field is not a varint", &status, &unused, why);

        if (r < 0)
                return r;
        *ret_status = status;
        return 0;
}

int grpcwire_request_decode(const uint8_t *buf, size_t len, size_t max_len, const uint8_t **ret_service,
                            size_t *ret_service_len, const char **why)
{
        static const uint8_t empty[1];
        const uint8_t *service = empty;
        uint64_t slen = 0;
        int r = message_walk(buf, len, max_len, 2, "service field is not a string", &slen, &service, why);

        if (r < 0)
                return r;
        if (slen > GRPCWIRE_SERVICE_MAX)
                return bad(why, "service name too long", -EMSGSIZE);
        *ret_service = service;
        *ret_service_len = (size_t) slen;
        return 0;
}

size_t grpcwire_response_encode(uint64_t status, uint8_t out[GRPCWIRE_RESPONSE_MAX])
{
        size_t mlen = 0;

        if (status != GRPC_SERVING_UNKNOWN) {     /* proto3 omits zero */
                out[GRPCWIRE_PREFIX_SIZE] = 0x08; /* field 1, wire type 0 */
                mlen = 1 + varint_put(out + GRPCWIRE_PREFIX_SIZE + 1, status);
        }
        out[0] = 0;
        for (size_t n = 0; n < 4; n++)
                out[1 + n] = (uint8_t) (mlen >> (24 - 8 * n));
        return GRPCWIRE_PREFIX_SIZE + mlen;
}

int grpcwire_status_parse(const char *v, size_t len, long *ret_code)
{
        long code = 0;
        size_t i = 0, digits = 0;

        while (i < len && (v[i] == ' ' || v[i] == '\t'))
                i++;
        for (; i < len && v[i] >= '0' && v[i] <= '9'; i++, digits++) {
                if (digits == 2)
                        return -EINVAL;
                code = code * 10 + (v[i] - '0');
        }
        while (i < len && (v[i] == ' ' || v[i] == '\t' || v[i] == '\r' || v[i] == '\n'))
                i++;
        if (digits == 0 || i != len)
                return -EINVAL;
        *ret_code = code;
        return 0;
}

void grpcwire_message_decode(const char *v, size_t len, char *out, size_t n)
{
        size_t o = 0;

        if (n == 0)
                return;
        for (size_t i = 0; i < len && o + 1 < n; i++) {
                unsigned char c = (unsigned char) v[i];

                if (c == '\r' || c == '\n')
                        break; /* a header line end, never part of the value */
                if (c == '%' && i + 2 < len && hexval(v[i + 1]) >= 0 && hexval(v[i + 2]) >= 0) {
                        c = (unsigned char) (hexval(v[i + 1]) << 4 | hexval(v[i + 2]));
                        i += 2;
                }
                out[o++] = (c >= 0x20 && c < 0x7F) ? (char) c : '?';
        }
        out[o] = '\0';
}

void grpcwire_header_line(const char *buf, size_t len, bool *have_status, long *status, char *msg, size_t n)
{
        if (len > 12 && strncasecmp(buf, "grpc-status:", 12) == 0) {
                long code;

                *status = grpcwire_status_parse(buf + 12, len - 12, &code) == 0 ? code : -1;
                *have_status = true;
        } else if (len > 13 && strncasecmp(buf, "grpc-message:", 13) == 0) {
                const char *v = buf + 13;
                size_t vlen = len - 13;

                while (vlen > 0 && (*v == ' ' || *v == '\t')) {
                        v++;
                        vlen--;
                }
                grpcwire_message_decode(v, vlen, msg, n);
        }
}

bool grpcwire_judge(const struct grpcwire_reply *r, size_t max_len, char *why, size_t n)
{
        const char *name, *bad_why = "";
        uint64_t status;
        long code;

        if (!r->have_status) {
                code = grpcwire_code_from_http(r->http_status);
                snprintf(why, n, "no grpc-status, HTTP status %ld (%s)", r->http_status, grpc_code_to_string(code));
                return false;
        }
        if (r->grpc_status < 0) {
                snprintf(why, n, "malformed reply: bad grpc-status");
                return false;
        }
        if (r->grpc_status != 0) {
                name = grpc_code_to_string(r->grpc_status);
                snprintf(why, n, "grpc-status %ld (%s)%s%s", r->grpc_status, name ? name : "?",
                         r->grpc_message[0] ? ": " : "", r->grpc_message);
                return false;
        }
        if (grpcwire_response_decode(r->body, r->body_len, max_len, &status, &bad_why) < 0) {
                snprintf(why, n, "malformed reply: %s", bad_why);
                return false;
        }
        name = grpc_serving_status_to_string(status);
        if (status != GRPC_SERVING_SERVING) {
                if (name)
                        snprintf(why, n, "status %s", name);
                else
                        snprintf(why, n, "status %llu", (unsigned long long) status);
                return false;
        }
        snprintf(why, n, "status SERVING");
        return true;
}

long grpcwire_code_from_http(long http_status)
{
        switch (http_status) {
        case 400:
                return 13; /* INTERNAL */
        case 401:
                return 16; /* UNAUTHENTICATED */
        case 403:
                return 7; /* PERMISSION_DENIED */
        case 404:
                return 12; /* UNIMPLEMENTED */
        case 429:
        case 502:
        case 503:
        case 504:
                return 14; /* UNAVAILABLE */
        default:
                return 2; /* UNKNOWN */
        }
}
