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
#include <strings.h>

#include "bounds.h"
#include "check_grpc.h"
#include "grpcwire.h"
#include "probe_curl.h"
#include "util.h"

#define EXIT_USAGE 2

struct call {
        size_t header_bytes;
        bool have_status, too_large;
        long grpc_status;
        char grpc_message[80];
        size_t body_len;
        uint8_t body[GRPC_MAX_REPLY_BYTES];
};

static size_t on_header(char *buf, size_t size, size_t n, void *data)
{
        struct call *c = data;
        size_t len = size * n;

        c->header_bytes += len;
        if (c->header_bytes > HTTP_MAX_HEADER_BYTES)
                return 0;
        grpcwire_header_line(buf, len, &c->have_status, &c->grpc_status, c->grpc_message, sizeof(c->grpc_message));
        return len;
}

static size_t on_body(char *buf, size_t size, size_t n, void *data)
{
        struct call *c = data;
        size_t len = size * n;

        if (len > sizeof(c->body) - c->body_len) {
                c->too_large = true;
                return 0;
        }
        memcpy(c->body + c->body_len, buf, len);
        c->body_len += len;
        return len;
}

/* One Check on easy (set up for url); true on SERVING. why: what it got. */
static bool check_call(CURL *e, const uint8_t *req, size_t req_len, uint64_t timeout_ms, char *why, size_t n)
{
        struct curl_slist *h = NULL, *t;
        const char *fixed[] = { "Content-Type: application/grpc", "TE: trailers", "Expect:", "Accept:" };
        struct call *c = calloc(1, sizeof(*c));
        long http_status = 0;
        bool ok = false;
        CURLcode rc;

        if (!c) {
                snprintf(why, n, "out of memory");
                return false;
        }
        for (size_t i = 0; i < ELEMENTSOF(fixed); i++) {
                if (!(t = curl_slist_append(h, fixed[i]))) {
                        snprintf(why, n, "out of memory");
                        goto out;
                }
                h = t;
        }
        curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long) CURL_HTTP_VERSION_2_PRIOR_KNOWLEDGE);
        curl_easy_setopt(e, CURLOPT_POST, 1L);
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, req);
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE, (long) req_len);
        curl_easy_setopt(e, CURLOPT_HTTPHEADER, h);
        curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
        curl_easy_setopt(e, CURLOPT_HEADERDATA, c);
        curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
        curl_easy_setopt(e, CURLOPT_WRITEDATA, c);
        curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long) timeout_ms);
        rc = curl_easy_perform(e);
        (void) curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &http_status);
        if (rc == CURLE_WRITE_ERROR && c->too_large) {
                snprintf(why, n, "malformed reply: more than %d bytes", GRPC_MAX_REPLY_BYTES);
        } else if (rc != CURLE_OK) {
                (void) probe_curl_error(e, rc, 0, why, n);
        } else {
                const struct grpcwire_reply r = { .have_status = c->have_status,
                                                  .grpc_status = c->grpc_status,
                                                  .grpc_message = c->grpc_message,
                                                  .http_status = http_status,
                                                  .body = c->body,
                                                  .body_len = c->body_len };
                ok = grpcwire_judge(&r, GRPC_MAX_REPLY_BYTES, why, n);
        }
out:
        curl_slist_free_all(h);
        free(c);
        return ok;
}

int check_grpc(const char *url, uint64_t timeout_ms)
{
        const char *rest = url + strlen("grpc://"), *slash;
        char *address = NULL, *http_url = NULL, host[256], why[ERROR_MAX];
        uint8_t *req = NULL;
        size_t req_len = 0;
        uint16_t port;
        int ret = 1;
        CURL *e;

        if (strncasecmp(url, "grpc://", 7) != 0) {
                fprintf(stderr, "probed: check: \"%s\" is not grpc://HOST:PORT[/SERVICE] (see probed --help)\n", url);
                return EXIT_USAGE;
        }
        slash = strchr(rest, '/');
        address = slash ? strndup(rest, (size_t) (slash - rest)) : strdup(rest);
        if (!address)
                return 1;
        if (address_split(address, false, host, sizeof(host), &port) < 0 ||
            grpcwire_request_encode(slash ? slash + 1 : "", &req, &req_len) < 0) {
                fprintf(stderr, "probed: check: \"%s\" is not grpc://HOST:PORT[/SERVICE] (see probed --help)\n", url);
                free(address);
                return EXIT_USAGE;
        }
        http_url = strdup_printf("http://%s/grpc.health.v1.Health/Check", address);
        if (!http_url || curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
                goto out;
        e = probe_curl_new(http_url, false, NULL);
        if (e) {
                if (check_call(e, req, req_len, timeout_ms, why, sizeof(why)))
                        ret = 0;
                else
                        fprintf(stderr, "probed: check %s: %s\n", url, why);
                probe_curl_free(e);
        }
        probe_curl_pool_drain();
        curl_global_cleanup();
out:
        free(http_url);
        free(req);
        free(address);
        return ret;
}
