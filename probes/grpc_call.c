/* One gRPC health Check over libcurl (include/grpc_call.h).
 *
 * Trailers: libcurl 7.88 hands HTTP/2 trailers to CURLOPT_HEADERFUNCTION after the body
 * (checked against python3-grpcio in tests/integration/test_kinds.py), and a
 * Trailers-Only answer (an immediate error) comes as ordinary headers, so one header
 * callback sees grpc-status in both places. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "grpc_call.h"
#include "grpcwire.h"
#include "probe_curl.h"
#include "util.h"

/* Headers, Trailers-Only headers and trailers all pass here, one line at a time. */
static size_t on_header(char *buf, size_t size, size_t n, void *data)
{
        struct grpc_call *c = data;
        size_t len = size * n;

        c->header_bytes += len;
        if (c->header_bytes > HTTP_MAX_HEADER_BYTES)
                return 0; /* CURLE_WRITE_ERROR */
        grpcwire_header_line(buf, len, &c->have_status, &c->grpc_status, c->grpc_message, sizeof(c->grpc_message));
        return len;
}

static size_t on_body(char *buf, size_t size, size_t n, void *data)
{
        struct grpc_call *c = data;
        size_t len = size * n;

        if (len > sizeof(c->body) - c->body_len) {
                c->too_large = true;
                return 0; /* CURLE_WRITE_ERROR: a health reply is a few bytes */
        }
        memcpy(c->body + c->body_len, buf, len);
        c->body_len += len;
        return len;
}

int grpc_call_setup(struct grpc_call *c, CURL *easy, const uint8_t *req, size_t req_len, uint64_t timeout_ms)
{
        const char *fixed[] = { "Content-Type: application/grpc", "TE: trailers", "Expect:", "Accept:" };
        char deadline[40];

        /* grpc-timeout: at most 8 digits (gRPC over HTTP/2, PROTOCOL-HTTP2.md); past
         * 99999999 ms, in seconds */
        if (timeout_ms <= 99999999)
                snprintf(deadline, sizeof(deadline), "grpc-timeout: %llum", (unsigned long long) timeout_ms);
        else
                snprintf(deadline, sizeof(deadline), "grpc-timeout: %lluS",
                         (unsigned long long) (timeout_ms / 1000 > 99999999 ? 99999999 : timeout_ms / 1000));
        for (size_t i = 0; i <= ELEMENTSOF(fixed); i++) {
                struct curl_slist *l = curl_slist_append(c->headers, i < ELEMENTSOF(fixed) ? fixed[i] : deadline);

                if (!l)
                        return -ENOMEM;
                c->headers = l;
        }
        curl_easy_setopt(easy, CURLOPT_HTTP_VERSION, (long) CURL_HTTP_VERSION_2_PRIOR_KNOWLEDGE);
        curl_easy_setopt(easy, CURLOPT_POST, 1L);
        curl_easy_setopt(easy, CURLOPT_POSTFIELDS, req);
        curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE, (long) req_len);
        curl_easy_setopt(easy, CURLOPT_HTTPHEADER, c->headers);
        curl_easy_setopt(easy, CURLOPT_HEADERFUNCTION, on_header);
        curl_easy_setopt(easy, CURLOPT_HEADERDATA, c);
        curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, on_body);
        curl_easy_setopt(easy, CURLOPT_WRITEDATA, c);
        return 0;
}

enum outcome grpc_call_result(struct grpc_call *c, CURL *easy, CURLcode rc, int socket_errno, char *why, size_t n)
{
        long http_status = 0;

        if (rc == CURLE_WRITE_ERROR && c->too_large) {
                snprintf(why, n, "malformed reply: more than %d bytes", GRPC_MAX_REPLY_BYTES);
                return OUTCOME_FAILURE;
        }
        if (rc == CURLE_WRITE_ERROR && c->header_bytes > HTTP_MAX_HEADER_BYTES) {
                snprintf(why, n, "malformed reply: headers exceed %d bytes", HTTP_MAX_HEADER_BYTES);
                return OUTCOME_FAILURE;
        }
        (void) curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &http_status);
        if (rc != CURLE_OK) {
                char err[ERROR_MAX - 16];
                enum outcome o = probe_curl_error(easy, rc, socket_errno, err, sizeof(err));

                if (http_status == 0 &&
                    (rc == CURLE_COULDNT_CONNECT || rc == CURLE_COULDNT_RESOLVE_HOST || rc == CURLE_SSL_CONNECT_ERROR))
                        snprintf(why, n, "connect: %s", err);
                else
                        snprintf(why, n, "%s", err);
                return o;
        }
        const struct grpcwire_reply r = { .have_status = c->have_status,
                                          .grpc_status = c->grpc_status,
                                          .grpc_message = c->grpc_message,
                                          .http_status = http_status,
                                          .body = c->body,
                                          .body_len = c->body_len };
        return grpcwire_judge(&r, GRPC_MAX_REPLY_BYTES, why, n) ? OUTCOME_SUCCESS : OUTCOME_FAILURE;
}

void grpc_call_free(struct grpc_call *c)
{
        curl_slist_free_all(c->headers);
        c->headers = NULL;
}
