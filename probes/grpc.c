/* grpc probe (README "Probe kinds"): one grpc.health.v1.Health/Check call over
 * HTTP/2 through libcurl, on a fresh connection (h2c with prior knowledge by default,
 * HTTP/2 over TLS with `tls`, unverified like kubelet unless tls_verify or ca_file ask;
 * client certificates and server_name as for https, probes/probe_tls.c). Success only for
 * grpc-status 0 with exactly one HealthCheckResponse saying SERVING.
 *
 *   start --> POST /grpc.health.v1.Health/Check (5-byte prefix + HealthCheckRequest)
 *               |   headers/trailers --> grpc-status, grpc-message (HEADERFUNCTION)
 *               |   DATA --> body (WRITEFUNCTION, at most GRPC_MAX_REPLY_BYTES)
 *               v
 *             done(result) --> transport error?        --> failure "connect: ..." / "..."
 *                              grpc-status absent?     --> failure from the HTTP status
 *                              grpc-status != 0?       --> failure "grpc-status 5 (NOT_FOUND): msg"
 *                              body not one response?  --> failure "malformed reply: ..."
 *                              status != SERVING?      --> failure "status NOT_SERVING"
 *                              otherwise               --> success
 *
 * Trailers: libcurl 7.88 hands HTTP/2 trailers to CURLOPT_HEADERFUNCTION after the body
 * (checked against python3-grpcio in tests/integration/test_kinds.py), and a
 * Trailers-Only answer (an immediate error) comes as ordinary headers, so one header
 * callback sees grpc-status in both places. The connection is never reused (kubelet dials
 * per probe), so a server that went away is seen as "connection refused". */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "config.h"
#include "grpcwire.h"
#include "loop.h"
#include "probe.h"
#include "probe_curl.h"
#include "probe_tls.h"
#include "util.h"

#define GRPC_PATH "/grpc.health.v1.Health/Check"
#define GRPC_MESSAGE_MAX 80 /* grpc-message bytes kept for last_error */

struct grpc_spec {
        char *url;     /* http(s)://ADDRESS/grpc.health.v1.Health/Check */
        uint8_t *body; /* length-prefixed HealthCheckRequest */
        size_t body_len;
        bool tls;
        struct probe_tls *tls_keys; /* NULL: unverified, no TLS key */
        uint16_t port;
        char host[]; /* of address, without brackets: resolved at each attempt (README "Names") */
};

struct grpc_attempt {
        struct attempt *a;
        const struct grpc_spec *spec;
        CURL *easy;
        struct curl_slist *headers;
        struct curl_slist *pin; /* the host's addresses for libcurl (probe_curl_pin) */
        size_t header_bytes;
        int socket_errno; /* set when socket() fails */
        bool have_status;
        long grpc_status;
        char grpc_message[GRPC_MESSAGE_MAX];
        bool too_large;
        size_t body_len;
        uint8_t body[GRPC_MAX_REPLY_BYTES];
};

/* ---- config ------------------------------------------------------------------------ */

static void grpc_free_spec(void *p)
{
        struct grpc_spec *spec = p;

        if (!spec)
                return;
        free(spec->url);
        free(spec->body);
        probe_tls_free(spec->tls_keys);
        free(spec);
}

/* HOST:PORT or [V6]:PORT (address_split), the host free of URL syntax: it goes into
 * the URL libcurl is given. */
static bool address_valid(const char *address)
{
        char host[256];
        uint16_t port;
        bool v6 = address[0] == '[';

        if (address_split(address, false, host, sizeof(host), &port) < 0)
                return false;
        for (const char *c = host; *c; c++)
                if (v6 ? !isxdigit((unsigned char) *c) && *c != ':' && *c != '.'
                       : !isalnum((unsigned char) *c) && *c != '.' && *c != '-' && *c != '_')
                        return false;
        return true;
}

static int grpc_parse(cJSON *obj, const char *path, void **ret_spec, char **ret_target, char **reterr)
{
        struct grpc_spec *spec;
        const char *address = NULL, *service = "";
        bool tls = false;
        int r;

        if ((r = cfg_string(obj, "address", path, true, &address, reterr)) < 0 ||
            (r = cfg_string(obj, "service", path, false, &service, reterr)) < 0 ||
            (r = cfg_bool(obj, "tls", path, &tls, reterr)) < 0)
                return r;
        if (!address_valid(address))
                return cfg_error(reterr, path, "address", "\"%s\" is not HOST:PORT", address);
        if (strlen(service) > GRPCWIRE_SERVICE_MAX)
                return cfg_error(reterr, path, "service", "is longer than %d bytes", GRPCWIRE_SERVICE_MAX);
        spec = calloc(1, sizeof(*spec) + strlen(address) + 1);
        if (!spec)
                return -ENOMEM;
        spec->tls = tls;
        (void) address_split(address, false, spec->host, strlen(address) + 1, &spec->port); /* checked above */
        spec->url = strdup_printf("%s://%s" GRPC_PATH, tls ? "https" : "http", address);
        if (spec->url && (r = probe_tls_parse(obj, path, tls, spec->url, &spec->tls_keys, reterr)) < 0) {
                grpc_free_spec(spec);
                return r;
        }
        if (!spec->url || (r = grpcwire_request_encode(service, &spec->body, &spec->body_len)) < 0 ||
            !(*ret_target = strdup(address)) ||
            (!cJSON_HasObjectItem(obj, "service") && !cJSON_AddStringToObject(obj, "service", service)) ||
            (!cJSON_HasObjectItem(obj, "tls") && !cJSON_AddBoolToObject(obj, "tls", tls))) {
                grpc_free_spec(spec);
                return -ENOMEM;
        }
        *ret_spec = spec;
        return 0;
}

/* ---- attempt ----------------------------------------------------------------------- */

/* Headers, Trailers-Only headers and trailers all pass here, one line at a time. */
static size_t grpc_on_header(char *buf, size_t size, size_t n, void *data)
{
        struct grpc_attempt *g = data;
        size_t len = size * n;

        g->header_bytes += len;
        if (g->header_bytes > HTTP_MAX_HEADER_BYTES)
                return 0; /* CURLE_WRITE_ERROR */
        grpcwire_header_line(buf, len, &g->have_status, &g->grpc_status, g->grpc_message, sizeof(g->grpc_message));
        return len;
}

static size_t grpc_on_body(char *buf, size_t size, size_t n, void *data)
{
        struct grpc_attempt *g = data;
        size_t len = size * n;

        if (len > sizeof(g->body) - g->body_len) {
                g->too_large = true;
                return 0; /* CURLE_WRITE_ERROR: a health reply is a few bytes */
        }
        memcpy(g->body + g->body_len, buf, len);
        g->body_len += len;
        return len;
}

/* Judges a completed call (README "Probe kinds": success only for SERVING). */
static void grpc_judge(struct grpc_attempt *g, long http_status)
{
        const struct grpcwire_reply r = { .have_status = g->have_status,
                                          .grpc_status = g->grpc_status,
                                          .grpc_message = g->grpc_message,
                                          .http_status = http_status,
                                          .body = g->body,
                                          .body_len = g->body_len };
        char why[ERROR_MAX];
        bool ok = grpcwire_judge(&r, GRPC_MAX_REPLY_BYTES, why, sizeof(why));

        attempt_end(g->a, ok ? OUTCOME_SUCCESS : OUTCOME_FAILURE, "%s", why);
}

static void grpc_on_done(struct attempt *a, CURL *easy, CURLcode rc)
{
        struct grpc_attempt *g = a->data;
        char err[ERROR_MAX - 16];
        long http_status = 0;

        if (rc == CURLE_WRITE_ERROR && g->too_large) {
                attempt_end(a, OUTCOME_FAILURE, "malformed reply: more than %d bytes", GRPC_MAX_REPLY_BYTES);
                return;
        }
        if (rc == CURLE_WRITE_ERROR && g->header_bytes > HTTP_MAX_HEADER_BYTES) {
                attempt_end(a, OUTCOME_FAILURE, "malformed reply: headers exceed %d bytes", HTTP_MAX_HEADER_BYTES);
                return;
        }
        (void) curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &http_status);
        if (rc != CURLE_OK) {
                enum outcome o = probe_curl_error(easy, rc, g->socket_errno, err, sizeof(err));
                if (http_status == 0 &&
                    (rc == CURLE_COULDNT_CONNECT || rc == CURLE_COULDNT_RESOLVE_HOST || rc == CURLE_SSL_CONNECT_ERROR))
                        attempt_end(a, o, "connect: %s", err);
                else
                        attempt_end(a, o, "%s", err);
                return;
        }
        grpc_judge(g, http_status);
}

static void grpc_cancel(struct attempt *a)
{
        struct grpc_attempt *g = a->data;

        probe_curl_free(g->easy);
        curl_slist_free_all(g->headers);
        curl_slist_free_all(g->pin);
        free(g);
        a->data = NULL;
}

/* The host's addresses are known: the call goes out on them. */
static void grpc_on_resolved(struct attempt *a, const struct addr_list *addrs)
{
        struct grpc_attempt *g = a->data;
        const struct grpc_spec *spec = g->spec;
        int r = -ENOMEM;

        g->easy = probe_curl_new(spec->url, probe_tls_verify(spec->tls_keys), &g->socket_errno);
        if (!g->easy || probe_tls_apply(g->easy, spec->tls_keys, spec->url) < 0 ||
            (r = probe_curl_pin(g->easy, spec->host, addrs, &g->pin)) < 0) {
                attempt_end(a, OUTCOME_ERROR, "cannot run attempt: %s", strerror(-r));
                return;
        }
        curl_easy_setopt(g->easy, CURLOPT_HTTP_VERSION, (long) CURL_HTTP_VERSION_2_PRIOR_KNOWLEDGE);
        curl_easy_setopt(g->easy, CURLOPT_POST, 1L);
        curl_easy_setopt(g->easy, CURLOPT_POSTFIELDS, spec->body); /* the spec outlives the attempt */
        curl_easy_setopt(g->easy, CURLOPT_POSTFIELDSIZE, (long) spec->body_len);
        curl_easy_setopt(g->easy, CURLOPT_HTTPHEADER, g->headers);
        curl_easy_setopt(g->easy, CURLOPT_HEADERFUNCTION, grpc_on_header);
        curl_easy_setopt(g->easy, CURLOPT_HEADERDATA, g);
        curl_easy_setopt(g->easy, CURLOPT_WRITEFUNCTION, grpc_on_body);
        curl_easy_setopt(g->easy, CURLOPT_WRITEDATA, g);
        r = attempt_curl_add(a, g->easy, grpc_on_done);
        if (r < 0)
                attempt_end(a, OUTCOME_ERROR, "cannot run attempt: %s", strerror(-r));
}

static int grpc_start(struct attempt *a, const void *specp, uint64_t timeout_ms)
{
        const struct grpc_spec *spec = specp;
        const char *fixed[] = { "Content-Type: application/grpc", "TE: trailers", "Expect:", "Accept:" };
        struct grpc_attempt *g;
        char deadline[40];

        g = calloc(1, sizeof(*g));
        if (!g)
                return -ENOMEM;
        g->a = a;
        a->data = g; /* from here on, an error return has the lifecycle call grpc_cancel */
        /* grpc-timeout: at most 8 digits (gRPC over HTTP/2, PROTOCOL-HTTP2.md); past
         * 99999999 ms, in seconds */
        if (timeout_ms <= 99999999)
                snprintf(deadline, sizeof(deadline), "grpc-timeout: %llum", (unsigned long long) timeout_ms);
        else
                snprintf(deadline, sizeof(deadline), "grpc-timeout: %lluS",
                         (unsigned long long) (timeout_ms / 1000 > 99999999 ? 99999999 : timeout_ms / 1000));
        for (size_t i = 0; i <= ELEMENTSOF(fixed); i++) {
                struct curl_slist *n = curl_slist_append(g->headers, i < ELEMENTSOF(fixed) ? fixed[i] : deadline);

                if (!n)
                        return -ENOMEM;
                g->headers = n;
        }
        g->spec = spec;
        return attempt_resolve(a, spec->host, spec->port, NULL, grpc_on_resolved);
}

static const char *const grpc_keys[] = { "address", "service", "tls", PROBE_TLS_KEYS, NULL };

/* --grpc NAME=HOST:PORT[/SERVICE]: the service after the first '/', "" (the server's
 * overall health) without one. */
static int grpc_flag_to_json(cJSON *obj, const char *value)
{
        const char *slash = strchr(value, '/');
        char *addr = slash ? strndup(value, (size_t) (slash - value)) : strdup(value);
        int r = -ENOMEM;

        if (addr && cJSON_AddStringToObject(obj, "address", addr) &&
            cJSON_AddStringToObject(obj, "service", slash ? slash + 1 : ""))
                r = 0;
        free(addr);
        return r;
}

const struct probe_ops grpc_probe_ops = {
        .type = "grpc",
        .keys = grpc_keys,
        /* libcurl's socket; two at once while it races IPv6 and IPv4 (happy eyeballs), or
         * the threaded resolver's socketpair before that */
        .fds_per_attempt = 2,
        .flag = { .name = "grpc", .arg = "NAME=HOST:PORT[/SERVICE]", .to_json = grpc_flag_to_json },
        .parse = grpc_parse,
        .free_spec = grpc_free_spec,
        .start = grpc_start,
        .cancel = grpc_cancel,
};
