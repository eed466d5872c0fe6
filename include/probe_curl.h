/* What every libcurl-based probe kind sets the same way (http, grpc, websocket):
 * one place for the kubelet-like transport rules of SPEC 3. */
#pragma once
#include <curl/curl.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A new easy handle for one attempt: NOSIGNAL, no proxy (environment ignored), a fresh
 * connection never reused, SO_LINGER 0 on its socket (no TIME_WAIT on our side),
 * User-Agent probed/<version>, TLS verification as asked, and a total-time backstop a
 * little past timeout_ms (the lifecycle's deadline is the real timeout).
 * NULL on ENOMEM. Caller owns it (curl_easy_cleanup). */
CURL *probe_curl_new(const char *url, uint64_t timeout_ms, bool tls_verify);

/* A short lower-case reason for a failed transfer: "connection refused",
 * "connection reset by peer", "empty reply from server", ... into buf. */
void probe_curl_error(CURL *easy, CURLcode rc, char *buf, size_t n);

/* strerror(err) with a lower-case first letter, into buf ("connection refused"). */
void probe_strerror(int err, char *buf, size_t n);
