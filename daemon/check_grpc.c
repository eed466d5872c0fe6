/* `probed check grpc://HOST:PORT[/SERVICE]` (README "Command line"): one
 * grpc.health.v1.Health/Check over h2c with prior knowledge, as the kubelet's gRPC probe
 * makes it, through libcurl (CURL_HTTP_VERSION_2_PRIOR_KNOWLEDGE) and the grpc kind's wire
 * code (probes/grpcwire.c: the request, the trailer lines, the verdict). The service is
 * everything after the first '/' after the address, as in --grpc NAME=HOST:PORT/SERVICE. */
#include <curl/curl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bounds.h"
#include "check_grpc.h"
#include "grpc_call.h"
#include "grpcwire.h"
#include "probe_curl.h"
#include "util.h"

int check_grpc(const char *url, uint64_t timeout_ms, char *why, size_t n)
{
        const char *rest = url + strlen("grpc://"), *slash = strchr(rest, '/');
        char *address = slash ? strndup(rest, (size_t) (slash - rest)) : strdup(rest), *http_url = NULL, host[256];
        struct grpc_call *c = calloc(1, sizeof(*c));
        uint8_t *req = NULL;
        size_t req_len = 0;
        uint16_t port;
        int ret = 1;
        CURL *e = NULL;

        snprintf(why, n, "out of memory");
        if (!address || !c)
                goto out;
        if (address_split(address, false, host, sizeof(host), &port) < 0 ||
            grpcwire_request_encode(slash ? slash + 1 : "", &req, &req_len) < 0) {
                snprintf(why, n, "is not grpc://HOST:PORT[/SERVICE]");
                ret = 2;
                goto out;
        }
        if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
                snprintf(why, n, "cannot initialize libcurl");
                goto out;
        }
        http_url = strdup_printf("http://%s/grpc.health.v1.Health/Check", address);
        if (http_url && (e = probe_curl_new(http_url, NULL)) && grpc_call_setup(c, e, req, req_len, timeout_ms) == 0) {
                curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long) timeout_ms);
                ret = grpc_call_result(c, e, curl_easy_perform(e), 0, why, n) == OUTCOME_SUCCESS ? 0 : 1;
        }
        probe_curl_free(e);
        probe_curl_pool_drain();
        curl_global_cleanup();
out:
        if (c)
                grpc_call_free(c);
        free(c);
        free(http_url);
        free(req);
        free(address);
        return ret;
}
