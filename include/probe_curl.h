/* What every libcurl-based probe kind sets the same way (http, grpc, websocket):
 * one place for the kubelet-like transport rules (README, "Probe kinds"). */
#pragma once
#include <curl/curl.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "probe.h"
#include "probe_net.h"

/* A new easy handle for one attempt: NOSIGNAL, no proxy (environment ignored), a fresh
 * connection never reused, SO_LINGER 0 on its socket (no TIME_WAIT on our side),
 * User-Agent probed/<version>, TLS unverified (a probe's TLS keys change that:
 * probe_tls_apply), and no time limit of libcurl's own
 * (the lifecycle's deadline, which counts awake time only, is the timeout).
 * ret_socket_errno (may be NULL; borrowed for the handle's life) receives the errno of
 * a socket() that failed, so that EMFILE is told apart from a refused connection.
 * NULL on ENOMEM. Caller owns it (curl_easy_cleanup). */
CURL *probe_curl_new(const char *url, int *ret_socket_errno);

/* Pins the transfer's host to addrs (CURLOPT_RESOLVE "HOST:PORT:ADDR,ADDR..."; the port is
 * that of addrs, set by attempt_resolve), so that libcurl never resolves a name itself: every
 * kind resolves through the attempt's lookup (README "Names"). host as in the URL, without
 * brackets; a literal address needs no pin. *pin (freed and replaced) holds the list, which
 * must live until the transfer ends: the caller frees it (curl_slist_free_all) after
 * probe_curl_free. 0 or -ENOMEM. */
int probe_curl_pin(CURL *easy, const char *host, const struct addr_list *addrs, struct curl_slist **pin);

/* Gives back a handle from probe_curl_new, out of the multi (attempt_curl_remove, or
 * the attempt's end, removed it): kept for reuse, at most CURL_POOL_MAX of them, else
 * cleaned up. NULL-safe. */
void probe_curl_free(CURL *easy);

/* Cleans up the kept handles (before curl_global_cleanup). */
void probe_curl_pool_drain(void);

/* Judges a failed transfer: OUTCOME_ERROR when probed itself could not open a socket
 * (socket_errno EMFILE, ENFILE, ENOBUFS, ENOMEM: the target is not at fault), else
 * OUTCOME_FAILURE. A short reason goes into buf: "connection refused",
 * "connection reset by peer", "empty reply from server", "cannot open socket: ...",
 * "response headers too large" (libcurl's own limit on a header line), or
 * libcurl's own text as it spells it ("SSL peer certificate or SSH remote key was not OK"). */
enum outcome probe_curl_error(CURL *easy, CURLcode rc, int socket_errno, char *buf, size_t n);
