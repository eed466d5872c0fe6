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
 * The call itself (headers, the reply's callbacks, the verdict) is probes/grpc_call.c,
 * shared with `probed check grpc://`. The connection is never reused (kubelet dials per
 * probe), so a server that went away is seen as "connection refused". */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "config.h"
#include "grpc_call.h"
#include "grpcwire.h"
#include "loop.h"
#include "probe.h"
#include "probe_curl.h"
#include "probe_tls.h"
#include "util.h"

#define GRPC_PATH "/grpc.health.v1.Health/Check"

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
        uint64_t timeout_ms;
        CURL *easy;
        struct curl_slist *pin; /* the host's addresses for libcurl (probe_curl_pin) */
        int socket_errno;       /* set when socket() fails */
        struct grpc_call call;
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

static void grpc_on_done(struct attempt *a, CURL *easy, CURLcode rc)
{
        struct grpc_attempt *g = a->data;
        char why[ERROR_MAX];
        enum outcome o = grpc_call_result(&g->call, easy, rc, g->socket_errno, why, sizeof(why));

        attempt_end(a, o, "%s", why);
}

static void grpc_cancel(struct attempt *a)
{
        struct grpc_attempt *g = a->data;

        probe_curl_free(g->easy);
        grpc_call_free(&g->call);
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

        g->easy = probe_curl_new(spec->url, &g->socket_errno);
        if (!g->easy || probe_tls_apply(g->easy, spec->tls_keys, spec->url) < 0 ||
            (r = probe_curl_pin(g->easy, spec->host, addrs, &g->pin)) < 0 ||
            /* the spec (and its request body) outlives the attempt */
            (r = grpc_call_setup(&g->call, g->easy, spec->body, spec->body_len, g->timeout_ms)) < 0) {
                attempt_end(a, OUTCOME_ERROR, "cannot run attempt: %s", strerror(-r));
                return;
        }
        r = attempt_curl_add(a, g->easy, grpc_on_done);
        if (r < 0)
                attempt_end(a, OUTCOME_ERROR, "cannot run attempt: %s", strerror(-r));
}

static int grpc_start(struct attempt *a, const void *specp, uint64_t timeout_ms)
{
        const struct grpc_spec *spec = specp;
        struct grpc_attempt *g = calloc(1, sizeof(*g));

        if (!g)
                return -ENOMEM;
        g->a = a;
        g->spec = spec;
        g->timeout_ms = timeout_ms;
        a->data = g; /* from here on, an error return has the lifecycle call grpc_cancel */
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
