/* http probe, as kubelet's httpGet (README "Probe kinds"): one request on a fresh connection,
 * success when the status is in expect_status and the body read (at most max_body
 * bytes; more is not read and is not an error) contains expect_body, matches
 * expect_body_regex and holds expect_json's values (probes/expect.c). TLS keys:
 * probes/probe_tls.c.
 *
 * This file is the kind: its config (the request prebuilt at load), redirects, the
 * judging, and the transport of each hop. http:// goes through probed's own HTTP/1.1
 * client (probes/http_client.c: connect, send, bounded reads into httpresp.c);
 * https:// goes through libcurl. One attempt may hop between them when a redirect
 * changes the scheme.
 *
 *   start --> hop(url) --http://--> http_client: connect, send, read --> done ------+
 *              ^    |                 (body_take keeps the body)                     |
 *              |    +--https://--> libcurl easy handle on the loop --> done ----------+
 *              |                                                                      v
 *              +---- 3xx to the same host (port ignored), < 10 hops ---------- judge(status,
 *                    otherwise: status in expect_status, body has expect_body  Location)
 *                    -> attempt_end
 *
 * Redirects are followed by hand (libcurl cannot express kubelet's rule): only 301, 302,
 * 303, 307 and 308 with a non-empty Location; same host followed with the same headers
 * (Host override kept), another host not followed and judged by its 3xx status, a chain
 * reaching HTTP_MAX_REDIRECTS is a failure. The host of each hop is resolved when the hop
 * starts, on the loop (attempt_resolve, README "Names"): probed's client connects to its
 * addresses in turn; libcurl is handed them.
 *
 * Fairness (docs/design.md, "Stalls and busy wake-ups"): probed's client reads at most
 * LOOP_READ_BUDGET bytes per wake-up (probes/http_client.c); max_body and
 * HTTP_MAX_HEADER_BYTES bound the attempt as a whole. libcurl (https://) stops at
 * max_body the same way; left alone it reads some 800 KiB per wake-up of a streaming TLS
 * peer (libcurl 7.88), so its write callback takes LOOP_READ_BUDGET bytes, then answers
 * CURL_WRITEFUNC_PAUSE (libcurl keeps that chunk) and a zero-delay timer unpauses the
 * transfer on the next wake-up. With max_body at most the budget it never pauses. */
#include <regex.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "config.h"
#include "expect.h"
#include "http_client.h"
#include "loop.h"
#include "probe.h"
#include "probe_curl.h"
#include "probe_tls.h"
#include "util.h"

#define MAX_STATUS_RANGES 16

struct status_range {
        unsigned lo, hi;
};

/* What a URL is made of, for probed's client and the same-host rule. */
struct url_parts {
        char *url;    /* absolute, normalized */
        char *host;   /* as in the URL: "127.0.0.1", "[::1]", "localhost" */
        char *target; /* path and query: "/healthz?x=1" */
        unsigned port;
        bool https, port_given;
};

/* Kept per probe (10,000 of them): no copy of what can be derived on the rare path. */
struct http_spec {
        char *url;
        char *expect_body;   /* NULL: any body */
        regex_t *body_regex; /* expect_body_regex compiled at load, or NULL */
        cJSON *expect_json;  /* pointers -> values, or NULL */
        size_t max_body;
        /* The request for url, as probed's client sends it. Its header lines (from
         * lines_off, the final CRLF excepted) are the defaults plus the user's headers,
         * Host only when the user sets it: redirects and libcurl take them from here. */
        char *request;
        size_t request_len, lines_off;
        char *removed;                   /* "Name:\r\n" lines: headers emptied by the user, for libcurl */
        struct curl_slist *curl_headers; /* https:// specs: libcurl's header list, built once */
        bool head, keep_body, host_set, native;
        struct probe_tls *tls; /* NULL: unverified, no TLS key */
        unsigned port;
        char *host; /* the URL's host without the brackets of an IPv6 literal, to resolve */
        size_t n_ranges;
        struct status_range ranges[];
};

struct http_attempt {
        struct attempt *a;
        const struct http_spec *spec;
        unsigned redirects;
        char *url; /* after a redirect: the current URL (else spec->url) */
        /* an https hop */
        CURL *easy;
        struct curl_slist *headers; /* built for this hop (an http:// spec's), or NULL */
        struct curl_slist *pin;     /* the hop's addresses for libcurl (probe_curl_pin) */
        int socket_errno;           /* set when socket() fails */
        size_t header_bytes;
        /* body bytes this wake-up may still take (LOOP_READ_BUDGET); when they ran out, the
         * attempt's timer unpauses the transfer */
        size_t curl_budget;
        /* an http hop: its request is spec->request or own_request, to the addresses of
         * the spec's host with the hop's port */
        struct http_client client;
        struct addr_list addrs;
        char *own_request;
        /* the body read */
        bool body_capped;
        size_t body_len;
        char body[]; /* max_body + 1 bytes with a body check (keep_body), else 1 */
};

/* Parses s into ranges[MAX_STATUS_RANGES]; returns how many, or -EINVAL. */
static int parse_status_ranges(const char *s, struct status_range *ranges)
{
        const char *p = s;
        int n = 0;

        for (;;) {
                char *end;
                unsigned long lo, hi;

                if (n == MAX_STATUS_RANGES)
                        return -EINVAL;
                lo = strtoul(p, &end, 10);
                if (end == p || lo < 100 || lo > 599)
                        return -EINVAL;
                hi = lo;
                p = end;
                if (*p == '-') {
                        p++;
                        hi = strtoul(p, &end, 10);
                        if (end == p || hi < lo || hi > 599)
                                return -EINVAL;
                        p = end;
                }
                ranges[n++] = (struct status_range){ (unsigned) lo, (unsigned) hi };
                if (*p == '\0')
                        return n;
                if (*p != ',')
                        return -EINVAL;
                p++;
        }
}

static bool headers_have(const cJSON *headers, const char *name)
{
        const cJSON *h;

        cJSON_ArrayForEach(h, headers) if (strcasecmp(h->string, name) == 0) return true;
        return false;
}

static void url_parts_free(struct url_parts *u)
{
        curl_free(u->url);
        curl_free(u->host);
        free(u->target);
        *u = (struct url_parts){ 0 };
}

/* Splits url, resolved against base when base is not NULL (a redirect's Location).
 * Returns 0, -EINVAL (not an http(s) URL) or -ENOMEM. */
static int url_split(const char *base, const char *url, struct url_parts *u)
{
        CURLU *h = curl_url();
        char *scheme = NULL, *path = NULL, *query = NULL, *port = NULL;
        int r = -EINVAL;

        *u = (struct url_parts){ 0 };
        if (!h)
                return -ENOMEM;
        if ((base && curl_url_set(h, CURLUPART_URL, base, 0) != CURLUE_OK) ||
            curl_url_set(h, CURLUPART_URL, url, 0) != CURLUE_OK ||
            curl_url_get(h, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
            (strcasecmp(scheme, "http") != 0 && strcasecmp(scheme, "https") != 0) ||
            curl_url_get(h, CURLUPART_URL, &u->url, 0) != CURLUE_OK ||
            curl_url_get(h, CURLUPART_HOST, &u->host, 0) != CURLUE_OK ||
            curl_url_get(h, CURLUPART_PATH, &path, 0) != CURLUE_OK)
                goto out;
        (void) curl_url_get(h, CURLUPART_QUERY, &query, 0);
        u->https = strcasecmp(scheme, "https") == 0;
        u->port_given = curl_url_get(h, CURLUPART_PORT, &port, 0) == CURLUE_OK;
        u->port = u->port_given ? (unsigned) atoi(port) : u->https ? 443 : 80;
        u->target = strdup_printf("%s%s%s", path, query ? "?" : "", query ? query : "");
        r = u->target ? 0 : -ENOMEM;
out:
        curl_free(scheme);
        curl_free(path);
        curl_free(query);
        curl_free(port);
        curl_url_cleanup(h);
        if (r < 0)
                url_parts_free(u);
        return r;
}

/* The request probed's client sends for u, with header lines[0..lines_len) (NULL on
 * ENOMEM). */
static char *request_build(const struct http_spec *spec, const struct url_parts *u, const char *lines, size_t lines_len,
                           size_t *ret_len)
{
        char host[300] = "";
        char *req;

        if (spec->host_set)
                ; /* the user's Host (or none) is among the lines */
        else if (u->port_given)
                snprintf(host, sizeof(host), "Host: %s:%u\r\n", u->host, u->port);
        else
                snprintf(host, sizeof(host), "Host: %s\r\n", u->host);
        req = strdup_printf("%s %s HTTP/1.1\r\n%s%.*s\r\n", spec->head ? "HEAD" : "GET", u->target, host,
                            (int) lines_len, lines);
        if (req)
                *ret_len = strlen(req);
        return req;
}

/* Appends "Name: value\r\n" to *lines, or "Name:\r\n" to spec->removed when value is
 * empty (libcurl then drops a header it would add; probed's client sends nothing). */
static int add_header(struct http_spec *spec, char **lines, const char *name, const char *value)
{
        char **to = *value ? lines : &spec->removed;
        char *n = strdup_printf("%s%s:%s%s\r\n", *to ? *to : "", name, *value ? " " : "", value);

        if (!n)
                return -ENOMEM;
        free(*to);
        *to = n;
        if (strcasecmp(name, "Host") == 0)
                spec->host_set = true;
        return 0;
}

/* The header lines as libcurl takes them (NULL: none, or ENOMEM: *ret_r). */
static struct curl_slist *curl_headers(const struct http_spec *spec, int *ret_r)
{
        const char *parts[] = { spec->request + spec->lines_off, spec->removed };
        const char *ends[] = { spec->request + spec->request_len - 2,
                               spec->removed ? spec->removed + strlen(spec->removed) : NULL };
        struct curl_slist *l = NULL;

        *ret_r = 0;
        for (size_t i = 0; i < 2; i++) {
                for (const char *p = parts[i]; p && p < ends[i];) {
                        const char *e = strstr(p, "\r\n");
                        char *line = strndup(p, (size_t) (e - p));
                        struct curl_slist *n = line ? curl_slist_append(l, line) : NULL;
                        free(line);
                        if (!n) {
                                curl_slist_free_all(l);
                                *ret_r = -ENOMEM;
                                return NULL;
                        }
                        l = n;
                        p = e + 2;
                }
        }
        return l;
}

static void http_free_spec(void *p)
{
        struct http_spec *spec = p;

        if (!spec)
                return;
        free(spec->url);
        free(spec->expect_body);
        if (spec->body_regex)
                regfree(spec->body_regex);
        free(spec->body_regex);
        cJSON_Delete(spec->expect_json);
        probe_tls_free(spec->tls);
        free(spec->request);
        free(spec->removed);
        free(spec->host);
        curl_slist_free_all(spec->curl_headers);
        free(spec);
}

/* Host of u to resolve: without the brackets of an IPv6 literal (NULL on ENOMEM). */
static char *url_host_dup(const struct url_parts *u)
{
        size_t n = strlen(u->host);

        return u->host[0] == '[' && n >= 2 ? strndup(u->host + 1, n - 2) : strdup(u->host);
}

/* An http probe's keys, read and checked (http_read_keys); u is the URL's parts. */
struct http_conf {
        const char *url, *method, *expect_status, *expect_body, *expect_body_regex;
        const cJSON *expect_json;
        uint64_t max_body;
        struct url_parts u;
        int n_ranges;
        struct status_range ranges[MAX_STATUS_RANGES];
};

/* Reads and checks the keys into k (its u to free with url_parts_free on success). */
static int http_read_keys(cJSON *obj, const char *path, struct http_conf *k, char **reterr)
{
        int r;

        *k = (struct http_conf){ .method = "GET", .expect_status = "200-399", .max_body = HTTP_MAX_BODY_DEFAULT };
        if ((r = cfg_string(obj, "url", path, true, &k->url, reterr)) < 0 ||
            (r = cfg_string(obj, "method", path, false, &k->method, reterr)) < 0 ||
            (r = cfg_string(obj, "expect_status", path, false, &k->expect_status, reterr)) < 0 ||
            (r = cfg_string(obj, "expect_body", path, false, &k->expect_body, reterr)) < 0 ||
            (r = cfg_string(obj, "expect_body_regex", path, false, &k->expect_body_regex, reterr)) < 0 ||
            (r = cfg_uint(obj, "max_body", path, 1, 64u << 20, &k->max_body, reterr)) < 0)
                return r;
        k->expect_json = cJSON_GetObjectItemCaseSensitive(obj, "expect_json");
        if (strncasecmp(k->url, "http://", 7) != 0 && strncasecmp(k->url, "https://", 8) != 0)
                return cfg_error(reterr, path, "url", "\"%s\" must be an http:// or https:// URL", k->url);
        r = url_split(NULL, k->url, &k->u);
        if (r == -EINVAL)
                return cfg_error(reterr, path, "url", "\"%s\" is not a valid URL", k->url);
        if (r < 0)
                return r;
        if (strcmp(k->method, "GET") != 0 && strcmp(k->method, "HEAD") != 0) {
                url_parts_free(&k->u);
                return cfg_error(reterr, path, "method", "\"%s\" is not GET or HEAD", k->method);
        }
        k->n_ranges = parse_status_ranges(k->expect_status, k->ranges);
        if (k->n_ranges < 0) {
                url_parts_free(&k->u);
                return cfg_error(reterr, path, "expect_status",
                                 "\"%s\" is not a status list (e.g. \"200-399\", \"200,204\")", k->expect_status);
        }
        return 0;
}

/* The header lines of the request into *lines (kubelet's defaults, then the user's
 * headers), emptied ones into spec->removed. */
static int http_read_headers(cJSON *obj, const char *path, struct http_spec *spec, char **lines, char **reterr)
{
        const cJSON *headers = cJSON_GetObjectItemCaseSensitive(obj, "headers"), *h;
        int r;

        if (headers && !cJSON_IsObject(headers))
                return cfg_error(reterr, path, "headers", "must be an object of strings");
        /* kubelet's defaults, unless the user set (or emptied) them */
        if ((!headers_have(headers, "User-Agent") &&
             (r = add_header(spec, lines, "User-Agent", "probed/" PROBED_VERSION)) < 0) ||
            (!headers_have(headers, "Accept") && (r = add_header(spec, lines, "Accept", "*/*")) < 0) ||
            (!headers_have(headers, "Connection") && (r = add_header(spec, lines, "Connection", "close")) < 0))
                return r;
        cJSON_ArrayForEach(h, headers)
        {
                if (!cJSON_IsString(h) || !cfg_token_valid(h->string) || !cfg_header_value_valid(h->valuestring)) {
                        char *hp = strdup_printf("%s.headers", path);
                        r = hp ? cfg_error(reterr, hp, h->string, "must be a valid header with a string value")
                               : -ENOMEM;
                        free(hp);
                        return r;
                }
                if ((r = add_header(spec, lines, h->string, h->valuestring)) < 0)
                        return r;
        }
        return 0;
}

/* The transport's part of the spec: the host to resolve at each attempt (no DNS here:
 * README "Names"); the request with the header lines; for https://, libcurl's header list. */
static int http_prepare(const char *path, struct http_spec *spec, const struct url_parts *u, const char *lines,
                        char **reterr)
{
        int r;

        (void) path;
        (void) reterr;
        r = -ENOMEM;
        spec->native = !u->https;
        spec->port = u->port;
        spec->host = url_host_dup(u);
        if (!spec->host)
                return r;
        spec->request = request_build(spec, u, lines, strlen(lines), &spec->request_len);
        if (!spec->request)
                return r;
        spec->lines_off = spec->request_len - strlen(lines) - 2;
        if (!spec->native && !(spec->curl_headers = curl_headers(spec, &r)) && r < 0)
                return r;
        return 0;
}

/* The body checks beyond expect_body (README "Probe kinds"): expect_body_regex compiled
 * once here, expect_json's pointers checked here; and the TLS keys. */
static int http_read_checks(cJSON *obj, const char *path, struct http_spec *spec, const struct http_conf *k,
                            char **reterr)
{
        const cJSON *w;
        int r;

        if (k->expect_body_regex) {
                char why[128];

                spec->body_regex = malloc(sizeof(*spec->body_regex));
                if (!spec->body_regex)
                        return -ENOMEM;
                r = regcomp(spec->body_regex, k->expect_body_regex, REG_EXTENDED | REG_NOSUB);
                if (r != 0) {
                        regerror(r, spec->body_regex, why, sizeof(why));
                        free(spec->body_regex);
                        spec->body_regex = NULL;
                        return cfg_error(reterr, path, "expect_body_regex", "\"%s\" is not a POSIX extended regex: %s",
                                         k->expect_body_regex, why);
                }
        }
        if (k->expect_json) {
                if (!cJSON_IsObject(k->expect_json))
                        return cfg_error(reterr, path, "expect_json",
                                         "must be an object of JSON pointers to values (e.g. {\"/status\": \"ok\"})");
                cJSON_ArrayForEach(w, k->expect_json) if (!json_pointer_valid(w->string)) return cfg_error(
                        reterr, path, "expect_json",
                        "\"%s\" is not a JSON pointer (RFC 6901: \"/a/b\", ~0 for ~, ~1 for /)", w->string);
                spec->expect_json = cJSON_Duplicate(k->expect_json, true);
                if (!spec->expect_json)
                        return -ENOMEM;
        }
        spec->keep_body = k->expect_body || spec->body_regex || spec->expect_json;
        return probe_tls_parse(obj, path, k->u.https, k->u.url, &spec->tls, reterr);
}

/* Adds the keys' defaults to obj, for --check-config and reload comparison. */
static int http_normalize(cJSON *obj, const struct http_conf *k)
{
        if ((!cJSON_HasObjectItem(obj, "method") && !cJSON_AddStringToObject(obj, "method", k->method)) ||
            (!cJSON_HasObjectItem(obj, "expect_status") &&
             !cJSON_AddStringToObject(obj, "expect_status", k->expect_status)) ||
            (!cJSON_HasObjectItem(obj, "max_body") && !cJSON_AddNumberToObject(obj, "max_body", (double) k->max_body)))
                return -ENOMEM;
        return 0;
}

static int http_parse(cJSON *obj, const char *path, void **ret_spec, char **ret_target, char **reterr)
{
        struct http_spec *spec;
        struct http_conf k;
        char *lines = NULL;
        int r;

        if ((r = http_read_keys(obj, path, &k, reterr)) < 0)
                return r;
        spec = calloc(1, sizeof(*spec) + (size_t) k.n_ranges * sizeof(k.ranges[0]));
        if (!spec) {
                url_parts_free(&k.u);
                return -ENOMEM;
        }
        spec->n_ranges = (size_t) k.n_ranges;
        memcpy(spec->ranges, k.ranges, (size_t) k.n_ranges * sizeof(k.ranges[0]));
        spec->head = strcmp(k.method, "HEAD") == 0;
        spec->max_body = k.max_body;
        r = -ENOMEM;
        spec->url = strdup(k.url);
        lines = strdup("");
        if (!spec->url || !lines || (k.expect_body && !(spec->expect_body = strdup(k.expect_body))))
                goto fail;
        if ((r = http_read_checks(obj, path, spec, &k, reterr)) < 0 ||
            (r = http_read_headers(obj, path, spec, &lines, reterr)) < 0 ||
            (r = http_prepare(path, spec, &k.u, lines, reterr)) < 0 || (r = http_normalize(obj, &k)) < 0)
                goto fail;
        free(lines);
        lines = NULL;
        *ret_target = strdup(k.url);
        if (!*ret_target) {
                r = -ENOMEM;
                goto fail;
        }
        url_parts_free(&k.u);
        *ret_spec = spec;
        return 0;
fail:
        url_parts_free(&k.u);
        free(lines);
        http_free_spec(spec);
        return r;
}

/* Keeps body bytes (when there is an expect_body to search) up to max_body; false when
 * the cap is reached: the rest is not read, and that is not an error. */
static bool body_take(const char *buf, size_t len, void *data)
{
        struct http_attempt *h = data;
        size_t room = h->spec->max_body - h->body_len, n = len > room ? room : len;

        if (h->spec->keep_body)
                memcpy(h->body + h->body_len, buf, n);
        h->body_len += n;
        h->body_capped = len > room;
        return !h->body_capped;
}

static bool status_expected(const struct http_spec *spec, long code)
{
        for (size_t i = 0; i < spec->n_ranges; i++)
                if (code >= spec->ranges[i].lo && code <= spec->ranges[i].hi)
                        return true;
        return false;
}

/* Frees what the current hop holds: its connection (either kind), parser and request.
 * Its registrations are released already (hop_release, or the attempt's end). */
static void hop_free(struct http_attempt *h)
{
        probe_curl_free(h->easy);
        h->easy = NULL;
        curl_slist_free_all(h->pin);
        h->pin = NULL;
        curl_slist_free_all(h->headers);
        h->headers = NULL;
        http_client_free(&h->client);
        free(h->own_request);
        h->own_request = NULL;
}

/* Ends the current hop before a redirect's: its registrations, then what it holds. */
static void hop_release(struct http_attempt *h)
{
        attempt_timer_disarm(h->a);
        attempt_curl_remove(h->a, h->easy);
        stream_client_close(&h->client.s);
        hop_free(h);
}

static void judge(struct http_attempt *h, long code, const char *location);

/* ---- probed's client (http://): probes/http_client.c ------------------------------ */

static void client_on_io(struct attempt *a, int fd, uint32_t events)
{
        struct http_attempt *h = a->data;

        (void) fd;
        (void) events;
        stream_client_on_io(&h->client.s);
}

static void client_done(struct http_client *c, int rc)
{
        struct http_attempt *h = c->data;

        if (rc == HTTP_RESP_ERROR)
                attempt_end(h->a, c->resp.err == -ENOMEM ? OUTCOME_ERROR : OUTCOME_FAILURE, "%s", c->resp.error);
        else
                judge(h, (long) c->resp.status, c->resp.location);
}

static void client_on_resolved(struct attempt *a, const struct addr_list *addrs)
{
        struct http_attempt *h = a->data;
        int r;

        h->addrs = *addrs;
        r = http_client_start(&h->client, h->spec->head);
        if (r < 0)
                attempt_end(a, OUTCOME_ERROR, "cannot run attempt: %s", strerror(-r));
}

/* A hop of probed's client to u (the spec's own URL when u is NULL): its request, then
 * the host's addresses with the hop's port, then the connection. */
static int client_start(struct http_attempt *h, const struct url_parts *u)
{
        const struct http_spec *spec = h->spec;
        struct http_client *c = &h->client;

        c->s.addrs = &h->addrs;
        c->s.request = spec->request;
        c->s.request_len = spec->request_len;
        if (u) {
                h->own_request = request_build(spec, u, spec->request + spec->lines_off,
                                               spec->request_len - spec->lines_off - 2, &c->s.request_len);
                if (!h->own_request)
                        return -ENOMEM;
                c->s.request = h->own_request;
        }
        return attempt_resolve(h->a, spec->host, (uint16_t) (u ? u->port : spec->port), NULL, client_on_resolved);
}

/* ---- libcurl (https://) -------------------------------------------------------------- */

static size_t curl_on_header(char *buf, size_t size, size_t n, void *data)
{
        struct http_attempt *h = data;

        (void) buf;
        h->header_bytes += size * n;
        return h->header_bytes > HTTP_MAX_HEADER_BYTES ? 0 : size * n;
}

static attempt_timer_fn curl_on_resume;

static size_t curl_on_body(char *buf, size_t size, size_t n, void *data)
{
        struct http_attempt *h = data;
        size_t len = size * n;

        if (len > h->curl_budget && h->curl_budget < LOOP_READ_BUDGET) {
                attempt_timer_arm(h->a, curl_on_resume, now_ns());
                return CURL_WRITEFUNC_PAUSE; /* libcurl keeps buf and gives it again */
        }
        h->curl_budget -= len < h->curl_budget ? len : h->curl_budget;
        return body_take(buf, len, data) ? len : 0;
}

static void curl_on_done(struct attempt *a, CURL *easy, CURLcode rc)
{
        struct http_attempt *h = a->data;
        long code = 0;
        char *location = NULL;
        char err[ERROR_MAX];

        if (rc == CURLE_WRITE_ERROR && h->body_capped)
                rc = CURLE_OK;
        if (rc != CURLE_OK) {
                enum outcome o = OUTCOME_FAILURE;
                if (rc == CURLE_WRITE_ERROR || h->header_bytes > HTTP_MAX_HEADER_BYTES)
                        snprintf(err, sizeof(err), "response headers too large");
                else
                        o = probe_curl_error(easy, rc, h->socket_errno, err, sizeof(err));
                attempt_end(a, o, "%s", err);
                return;
        }
        (void) curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &code);
        (void) curl_easy_getinfo(easy, CURLINFO_REDIRECT_URL, &location);
        judge(h, code, location);
}

/* The next wake-up after a pause: a new budget, and the transfer goes on. Unpausing hands
 * libcurl's held chunk to curl_on_body at once; when that ends the transfer (max_body
 * reached, or an error), libcurl reports it here rather than as a completion. */
static void curl_on_resume(struct attempt *a)
{
        struct http_attempt *h = a->data;
        CURLcode rc;

        h->curl_budget = LOOP_READ_BUDGET;
        rc = curl_easy_pause(h->easy, CURLPAUSE_CONT);
        if (rc != CURLE_OK)
                curl_on_done(a, h->easy, rc);
}

static int curl_start(struct http_attempt *h, const struct addr_list *addrs)
{
        struct curl_slist *headers = h->spec->curl_headers;
        int r;

        h->header_bytes = 0;
        h->curl_budget = LOOP_READ_BUDGET;
        if (h->spec->native) { /* an http:// spec redirected to https: a rare hop */
                headers = h->headers = curl_headers(h->spec, &r);
                if (r < 0)
                        return r;
        }
        h->easy = probe_curl_new(h->url ? h->url : h->spec->url, &h->socket_errno);
        if (!h->easy || probe_tls_apply(h->easy, h->spec->tls, h->url ? h->url : h->spec->url) < 0)
                return -ENOMEM;
        r = probe_curl_pin(h->easy, h->spec->host, addrs, &h->pin);
        if (r < 0)
                return r;
        curl_easy_setopt(h->easy, CURLOPT_HTTPHEADER, headers);
        curl_easy_setopt(h->easy, CURLOPT_NOBODY, h->spec->head ? 1L : 0L);
        curl_easy_setopt(h->easy, CURLOPT_HEADERFUNCTION, curl_on_header);
        curl_easy_setopt(h->easy, CURLOPT_HEADERDATA, h);
        curl_easy_setopt(h->easy, CURLOPT_WRITEFUNCTION, curl_on_body);
        curl_easy_setopt(h->easy, CURLOPT_WRITEDATA, h);
        return attempt_curl_add(h->a, h->easy, curl_on_done);
}

static void curl_on_resolved(struct attempt *a, const struct addr_list *addrs)
{
        int r = curl_start(a->data, addrs);

        if (r < 0)
                attempt_end(a, OUTCOME_ERROR, "cannot run attempt: %s", strerror(-r));
}

/* ---- one attempt ------------------------------------------------------------------- */

/* Starts a hop: to the spec's URL (u NULL) or to a redirect's. */
static int hop_start(struct http_attempt *h, const struct url_parts *u)
{
        h->body_len = 0;
        h->body_capped = false;
        /* probed's client carries an http:// spec's requests (an https:// spec redirected
         * to http:// stays on libcurl) */
        if (!h->spec->native || (u && u->https))
                return attempt_resolve(h->a, h->spec->host, (uint16_t) (u ? u->port : h->spec->port), NULL,
                                       curl_on_resolved);
        return client_start(h, u);
}

/* As Go's client in kubelet: only 301, 302, 303, 307 and 308 are followed, and only
 * with a Location that is not empty; any other 3xx is the final answer (README
 * "Redirects"). */
static bool redirect_followed(long code, const char *location)
{
        return (code == 301 || code == 302 || code == 303 || code == 307 || code == 308) && location && *location;
}

/* expect_body_regex and expect_json over the body read; false: the attempt failed. */
static bool body_checks_pass(struct http_attempt *h, long code)
{
        const struct http_spec *spec = h->spec;
        const char *cut = h->body_capped ? " (cut at max_body)" : "";
        char err[ERROR_MAX];

        if (!spec->body_regex && !spec->expect_json)
                return true;
        h->body[h->body_len] = '\0'; /* body has max_body + 1 bytes */
        if (spec->body_regex) {
                regmatch_t m = { .rm_so = 0, .rm_eo = (regoff_t) h->body_len };
                if (regexec(spec->body_regex, h->body, 1, &m, REG_STARTEND) != 0) {
                        attempt_end(h->a, OUTCOME_FAILURE, "status %ld, body does not match expect_body_regex%s", code,
                                    cut);
                        return false;
                }
        }
        if (spec->expect_json && !json_expect_match(spec->expect_json, h->body, h->body_len, err, sizeof(err))) {
                attempt_end(h->a, OUTCOME_FAILURE, "status %ld, %s%s", code, err,
                            strcmp(err, "body is not JSON") == 0 ? cut : "");
                return false;
        }
        return true;
}

/* The response of a hop is complete (or its body capped): follow it or judge it. */
static void judge(struct http_attempt *h, long code, const char *location)
{
        struct attempt *a = h->a;
        const struct http_spec *spec = h->spec;
        struct url_parts u, orig;
        int r;

        if (redirect_followed(code, location) && url_split(h->url ? h->url : spec->url, location, &u) == 0) {
                bool same = url_split(NULL, spec->url, &orig) == 0 && strcasecmp(u.host, orig.host) == 0;
                url_parts_free(&orig);
                if (same) {
                        if (++h->redirects >= HTTP_MAX_REDIRECTS) {
                                url_parts_free(&u);
                                attempt_end(a, OUTCOME_FAILURE, "stopped after %d redirects", HTTP_MAX_REDIRECTS);
                                return;
                        }
                        hop_release(h);
                        free(h->url);
                        h->url = strdup(u.url);
                        r = h->url ? hop_start(h, &u) : -ENOMEM;
                        url_parts_free(&u);
                        if (r < 0)
                                attempt_end(a, OUTCOME_ERROR, "follow redirect: %s", strerror(-r));
                        return;
                }
                url_parts_free(&u);
        }
        if (!status_expected(spec, code)) {
                attempt_end(a, OUTCOME_FAILURE, "status %ld", code);
                return;
        }
        if (spec->expect_body && !memmem(h->body, h->body_len, spec->expect_body, strlen(spec->expect_body))) {
                attempt_end(a, OUTCOME_FAILURE, "status %ld, body does not contain expect_body", code);
                return;
        }
        if (!body_checks_pass(h, code))
                return;
        attempt_end(a, OUTCOME_SUCCESS, "status %ld", code);
}

static void http_cancel(struct attempt *a)
{
        struct http_attempt *h = a->data;

        hop_free(h);
        free(h->url);
        free(h);
        a->data = NULL;
}

static int http_start(struct attempt *a, const void *specp, uint64_t timeout_ms)
{
        const struct http_spec *spec = specp;
        struct http_attempt *h;

        (void) timeout_ms; /* the lifecycle's deadline is the timeout */
        h = malloc(sizeof(*h) + (spec->keep_body ? spec->max_body + 1 : 1));
        if (!h)
                return -ENOMEM;
        memset(h, 0, sizeof(*h));
        h->a = a;
        h->spec = spec;
        h->client = (struct http_client){
                .s = { .a = a, .fd = -1, .on_io = client_on_io },
                .body = body_take,
                .done = client_done,
                .data = h,
        };
        a->data = h;
        return hop_start(h, NULL); /* on an error, the lifecycle calls http_cancel */
}

static const char *const http_keys[] = {
        "url",      "method",       "headers", "expect_status", "expect_body", "expect_body_regex", "expect_json",
        "max_body", PROBE_TLS_KEYS, NULL,
};

static int http_flag_to_json(cJSON *obj, const char *value)
{
        return cJSON_AddStringToObject(obj, "url", value) ? 0 : -ENOMEM;
}

const struct probe_ops http_probe_ops = {
        .type = "http",
        .keys = http_keys,
        /* probed's client: one socket, addresses tried in turn; an https:// hop through
         * libcurl may race IPv6 and IPv4 (two sockets) */
        .fds_per_attempt = 2,
        .flag = { .name = "http", .arg = "NAME=URL", .to_json = http_flag_to_json },
        .parse = http_parse,
        .free_spec = http_free_spec,
        .start = http_start,
        .cancel = http_cancel,
};
