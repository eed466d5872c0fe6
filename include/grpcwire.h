/* grpc.health.v1 on the wire, pure and unit-testable: the length-prefixed
 * HealthCheckRequest, the HealthCheckResponse decoder (proto3, unknown fields
 * skipped), and the grpc-status / grpc-message trailer values (the gRPC health protocol: grpc.health.v1);
 * for the server, the request decoder and the response encoder.
 * Used by probes/grpc.c, daemon/check_grpc.c and daemon/server_grpc.c; tested by
 * tests/unit/check_grpcwire.c and fuzzed by tests/fuzz/fuzz_grpcwire.c. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define GRPCWIRE_PREFIX_SIZE 5                                /* compressed flag + 4-byte big-endian length */
#define GRPCWIRE_SERVICE_MAX 4096                             /* longest service name encoded or decoded */
#define GRPCWIRE_RESPONSE_MAX (GRPCWIRE_PREFIX_SIZE + 1 + 10) /* a whole HealthCheckResponse */

enum grpc_serving_status {
        GRPC_SERVING_UNKNOWN = 0,
        GRPC_SERVING_SERVING = 1,
        GRPC_SERVING_NOT_SERVING = 2,
        GRPC_SERVING_SERVICE_UNKNOWN = 3,
};

/* "UNKNOWN", "SERVING", "NOT_SERVING", "SERVICE_UNKNOWN"; NULL for other values. */
const char *grpc_serving_status_to_string(uint64_t s);

/* gRPC status code names: 0 "OK" ... 16 "UNAUTHENTICATED"; NULL when out of range. */
const char *grpc_code_to_string(long code);

/* The whole request body for HealthCheckRequest{service} (prefix included) into a
 * malloc'd buffer (*ret_buf, caller frees) of *ret_len bytes. service "" gives the
 * 5-byte empty message. -EINVAL when service is longer than GRPCWIRE_SERVICE_MAX,
 * -ENOMEM. */
int grpcwire_request_encode(const char *service, uint8_t **ret_buf, size_t *ret_len);

/* Decodes a complete response body: exactly one uncompressed length-prefixed message
 * holding a HealthCheckResponse. Unknown fields are skipped; a missing status field is
 * UNKNOWN (proto3 omits zero). Returns 0 and *ret_status, or -EBADMSG with *why (static
 * text) when the body is empty, truncated, compressed, followed by more bytes, or not a
 * valid message, or -EMSGSIZE when the length prefix exceeds max_len. */
int grpcwire_response_decode(const uint8_t *buf, size_t len, size_t max_len, uint64_t *ret_status, const char **why);

/* The server side (daemon/server_grpc.c). Decodes a complete request body: exactly one
 * uncompressed length-prefixed HealthCheckRequest of at most max_len bytes, unknown
 * fields skipped. Returns 0 with *ret_service (pointing into buf, not NUL-terminated;
 * "" when absent) and *ret_service_len, or -EBADMSG / -EMSGSIZE with *why (static
 * text), as grpcwire_response_decode; a name longer than GRPCWIRE_SERVICE_MAX is
 * -EMSGSIZE. */
int grpcwire_request_decode(const uint8_t *buf, size_t len, size_t max_len, const uint8_t **ret_service,
                            size_t *ret_service_len, const char **why);

/* HealthCheckResponse{status} with its prefix into out; returns its length. */
size_t grpcwire_response_encode(uint64_t status, uint8_t out[GRPCWIRE_RESPONSE_MAX]);

/* Parses a grpc-status header value (len bytes, surrounding blanks allowed): 0 and
 * *ret_code (0..99), or -EINVAL. */
int grpcwire_status_parse(const char *v, size_t len, long *ret_code);

/* Percent-decodes a grpc-message value (len bytes) into out (n bytes, NUL-terminated,
 * truncated to fit); bytes outside printable ASCII become '?'. */
void grpcwire_message_decode(const char *v, size_t len, char *out, size_t n);

/* One header or trailer line as libcurl hands it over ("grpc-status: 5\r\n"): for
 * grpc-status sets *have_status and *status (the code, or -1 when unreadable); for
 * grpc-message decodes the value into msg (n bytes, as grpcwire_message_decode). Other
 * lines change nothing. */
void grpcwire_header_line(const char *buf, size_t len, bool *have_status, long *status, char *msg, size_t n);

/* What a client gathered from one Check call. */
struct grpcwire_reply {
        bool have_status;         /* grpc-status seen, in headers or trailers */
        long grpc_status;         /* its code; -1 when unreadable */
        const char *grpc_message; /* decoded grpc-message, "" when none */
        long http_status;         /* :status */
        const uint8_t *body;      /* the DATA bytes */
        size_t body_len;
};

/* The client's verdict on a Check (README "Probe kinds": success only for grpc-status 0
 * with exactly one HealthCheckResponse saying SERVING): true or false, with why (n
 * bytes) saying "status SERVING" or what failed ("grpc-status 5 (NOT_FOUND): msg",
 * "status NOT_SERVING", "malformed reply: ..."). max_len bounds the message. */
bool grpcwire_judge(const struct grpcwire_reply *r, size_t max_len, char *why, size_t n);

/* The gRPC code implied by an HTTP status when grpc-status is absent
 * (doc/http-grpc-status-mapping.md). */
long grpcwire_code_from_http(long http_status);
