/* One grpc.health.v1.Health/Check over a libcurl easy handle: the request's headers and
 * options, the reply gathered by libcurl's callbacks, and its verdict. Shared by the grpc
 * kind (probes/grpc.c, on the loop's curl multi) and `probed check grpc://`
 * (daemon/check_grpc.c, curl_easy_perform). */
#pragma once
#include <curl/curl.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bounds.h"
#include "probe.h"

#define GRPC_CALL_MESSAGE_MAX 80 /* grpc-message bytes kept for the verdict's text */

struct grpc_call {
        struct curl_slist *headers;
        size_t header_bytes;
        bool have_status;
        long grpc_status;
        char grpc_message[GRPC_CALL_MESSAGE_MAX];
        bool too_large;
        size_t body_len;
        uint8_t body[GRPC_MAX_REPLY_BYTES];
};

/* Sets easy up for one Check of req (the length-prefixed HealthCheckRequest, which must
 * outlive the transfer) over HTTP/2 (h2c with prior knowledge for an http:// URL), with
 * grpc-timeout from timeout_ms; the reply goes into c. 0 or -ENOMEM. */
int grpc_call_setup(struct grpc_call *c, CURL *easy, const uint8_t *req, size_t req_len, uint64_t timeout_ms);

/* The call's outcome once libcurl finished with rc: success only for SERVING, why (n
 * bytes) says what came ("status SERVING", "grpc-status 5 (NOT_FOUND): msg",
 * "connect: connection refused", ...). */
enum outcome grpc_call_result(struct grpc_call *c, CURL *easy, CURLcode rc, int socket_errno, char *why, size_t n);

/* Frees what grpc_call_setup allocated (the header list), after the transfer. */
void grpc_call_free(struct grpc_call *c);
