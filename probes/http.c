/* http probe, as kubelet's httpGet (README "Probe kinds"): one request on a fresh connection,
 * success when the status is in expect_status and the body read (at most max_body
 * bytes; more is not read and is not an error) contains expect_body.
 *
 * http:// goes through probed's own HTTP/1.1 client (a sidecar's probes are plain
 * http to localhost, and this is their cost: a few syscalls, no allocation beyond
 * the attempt); https:// goes through libcurl. One attempt may hop between them when
 * a redirect changes the scheme.
 *
 *   start --> hop(url) --http://--> connect (next address on refusal) --> send request
 *              ^    |                 --> read: httpresp.c parses, body_take keeps --+
 *              |    +--https://--> libcurl easy handle on the loop --> done ----------+
 *              |                                                                      v
 *              +---- 3xx to the same host (port ignored), < 10 hops ---------- judge(status,
 *                    otherwise: status in expect_status, body has expect_body  Location)
 *                    -> attempt_end
 *
 * Redirects are followed by hand (libcurl cannot express kubelet's rule): same host
 * followed with the same headers (Host override kept), another host not followed and
 * judged by its 3xx status, a chain reaching HTTP_MAX_REDIRECTS is a failure. Host
 * names of http:// URLs are resolved when the config loads, as for tcp probes; the
 * attempt itself never blocks.
 *
 * Fairness (README "Design"): one wake-up of probed's client reads at most
 * LOOP_READ_BUDGET bytes (head or body), then returns to the loop with the socket still
 * registered (level-triggered: the next iteration comes back to it); max_body and
 * HTTP_MAX_HEADER_BYTES bound the attempt as a whole. libcurl (https://) stops at
 * max_body the same way; left alone it reads some 800 KiB per wake-up of a streaming TLS
 * peer (libcurl 7.88), so its write callback takes LOOP_READ_BUDGET bytes, then answers
 * CURL_WRITEFUNC_PAUSE (libcurl keeps that chunk) and a zero-delay timer unpauses the
 * transfer on the next wake-up. With max_body at most the budget it never pauses. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "config.h"
#include "httpresp.h"
#include "loop.h"
#include "probe.h"
#include "probe_curl.h"
#include "util.h"

#define MAX_STATUS_RANGES 16
#define READ_CHUNK 4096 /* bytes per recv(), on the loop's stack */

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
        char *expect_body; /* NULL: any body */
        size_t max_body;
        /* The request for url, as probed's client sends it. Its header lines (from
         * lines_off, the final CRLF excepted) are the defaults plus the user's headers,
         * Host only when the user sets it: redirects and libcurl take them from here. */
        char *request;
        size_t request_len, lines_off;
        char *removed;                   /* "Name:\r\n" lines: headers emptied by the user, for libcurl */
        struct curl_slist *curl_headers; /* https:// specs: libcurl's header list, built once */
        bool head, tls_verify, host_set, native;
        unsigned port;
        struct addr_list addrs; /* http:// */
        size_t n_ranges;
        struct status_range ranges[];
};

struct http_attempt {
        struct attempt *a;
        const struct http_spec *spec;
        uint64_t timeout_ms;
        unsigned redirects;
        char *url; /* after a redirect: the current URL (else spec->url) */
        /* an https hop */
        CURL *easy;
        struct curl_slist *headers; /* built for this hop (an http:// spec's), or NULL */
        int socket_errno;           /* set when socket() fails */
        size_t header_bytes;
        /* body bytes this wake-up may still take (LOOP_READ_BUDGET); when they ran out, the
         * attempt's timer unpauses the transfer */
        size_t curl_budget;
        /* an http hop */
        int fd;
        uint32_t events; /* registered on the loop (0: not yet) */
        const struct addr_list *addrs;
        struct addr_list *own_addrs; /* a redirect to another port */
        unsigned next_addr;
        const char *request; /* spec->request or own_request */
        char *own_request;
        size_t request_len, sent;
        struct http_resp resp;
        /* the body read */
        bool body_capped;
        size_t body_len;
        char body[]; /* max_body + 1 bytes with expect_body, else 1 */
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
        free(spec->request);
        free(spec->removed);
        curl_slist_free_all(spec->curl_headers);
        free(spec);
}

/* Host of u for getaddrinfo: without the brackets of an IPv6 literal. */
static int resolve_url_host(const struct url_parts *u, struct addr_list *ret)
{
        char host[256];
        size_t n = strlen(u->host);

        if (u->host[0] == '[' && n >= 2) {
                snprintf(host, sizeof(host), "%.*s", (int) (n - 2), u->host + 1);
                return host_resolve(host, (uint16_t) u->port, false, ret);
        }
        return host_resolve(u->host, (uint16_t) u->port, false, ret);
}

static int http_parse(cJSON *obj, const char *path, void **ret_spec, char **ret_target, char **reterr)
{
        struct http_spec *spec;
        struct status_range ranges[MAX_STATUS_RANGES];
        struct url_parts u = { 0 };
        char *lines = NULL;
        const char *url = NULL, *method = "GET", *expect_status = "200-399", *expect_body = NULL;
        const cJSON *headers, *h;
        uint64_t max_body = HTTP_MAX_BODY_DEFAULT;
        bool tls_verify = false;
        int r, n_ranges;

        if ((r = cfg_string(obj, "url", path, true, &url, reterr)) < 0 ||
            (r = cfg_string(obj, "method", path, false, &method, reterr)) < 0 ||
            (r = cfg_string(obj, "expect_status", path, false, &expect_status, reterr)) < 0 ||
            (r = cfg_string(obj, "expect_body", path, false, &expect_body, reterr)) < 0 ||
            (r = cfg_uint(obj, "max_body", path, 1, 64u << 20, &max_body, reterr)) < 0 ||
            (r = cfg_bool(obj, "tls_verify", path, &tls_verify, reterr)) < 0)
                return r;
        if (strncasecmp(url, "http://", 7) != 0 && strncasecmp(url, "https://", 8) != 0)
                return cfg_error(reterr, path, "url", "\"%s\" must be an http:// or https:// URL", url);
        r = url_split(NULL, url, &u);
        if (r == -EINVAL)
                return cfg_error(reterr, path, "url", "\"%s\" is not a valid URL", url);
        if (r < 0)
                return r;
        if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
                url_parts_free(&u);
                return cfg_error(reterr, path, "method", "\"%s\" is not GET or HEAD", method);
        }
        n_ranges = parse_status_ranges(expect_status, ranges);
        if (n_ranges < 0) {
                url_parts_free(&u);
                return cfg_error(reterr, path, "expect_status",
                                 "\"%s\" is not a status list (e.g. \"200-399\", \"200,204\")", expect_status);
        }

        spec = calloc(1, sizeof(*spec) + (size_t) n_ranges * sizeof(ranges[0]));
        if (!spec) {
                url_parts_free(&u);
                return -ENOMEM;
        }
        spec->n_ranges = (size_t) n_ranges;
        memcpy(spec->ranges, ranges, (size_t) n_ranges * sizeof(ranges[0]));
        spec->head = strcmp(method, "HEAD") == 0;
        spec->max_body = max_body;
        spec->tls_verify = tls_verify;
        r = -ENOMEM;
        spec->url = strdup(url);
        lines = strdup("");
        if (!spec->url || !lines || (expect_body && !(spec->expect_body = strdup(expect_body))))
                goto fail;

        headers = cJSON_GetObjectItemCaseSensitive(obj, "headers");
        if (headers && !cJSON_IsObject(headers)) {
                r = cfg_error(reterr, path, "headers", "must be an object of strings");
                goto fail;
        }
        /* kubelet's defaults, unless the user set (or emptied) them */
        if ((!headers_have(headers, "User-Agent") &&
             (r = add_header(spec, &lines, "User-Agent", "probed/" PROBED_VERSION)) < 0) ||
            (!headers_have(headers, "Accept") && (r = add_header(spec, &lines, "Accept", "*/*")) < 0) ||
            (!headers_have(headers, "Connection") && (r = add_header(spec, &lines, "Connection", "close")) < 0))
                goto fail;
        cJSON_ArrayForEach(h, headers)
        {
                if (!cJSON_IsString(h) || !cfg_token_valid(h->string) || !cfg_header_value_valid(h->valuestring)) {
                        char *hp = strdup_printf("%s.headers", path);
                        r = hp ? cfg_error(reterr, hp, h->string, "must be a valid header with a string value")
                               : -ENOMEM;
                        free(hp);
                        goto fail;
                }
                if ((r = add_header(spec, &lines, h->string, h->valuestring)) < 0)
                        goto fail;
        }
        if (!u.https) {
                spec->native = true;
                spec->port = u.port;
                r = resolve_url_host(&u, &spec->addrs);
                if (r < 0) {
                        r = cfg_error(reterr, path, "url", "cannot resolve host %s", u.host);
                        goto fail;
                }
        }
        r = -ENOMEM;
        spec->request = request_build(spec, &u, lines, strlen(lines), &spec->request_len);
        if (!spec->request)
                goto fail;
        spec->lines_off = spec->request_len - strlen(lines) - 2;
        free(lines);
        lines = NULL;
        if (!spec->native && !(spec->curl_headers = curl_headers(spec, &r)) && r < 0)
                goto fail;

        /* normalize for --check-config and reload comparison */
        if ((!cJSON_HasObjectItem(obj, "method") && !cJSON_AddStringToObject(obj, "method", method)) ||
            (!cJSON_HasObjectItem(obj, "expect_status") &&
             !cJSON_AddStringToObject(obj, "expect_status", expect_status)) ||
            (!cJSON_HasObjectItem(obj, "max_body") && !cJSON_AddNumberToObject(obj, "max_body", (double) max_body)) ||
            (!cJSON_HasObjectItem(obj, "tls_verify") && !cJSON_AddBoolToObject(obj, "tls_verify", tls_verify))) {
                r = -ENOMEM;
                goto fail;
        }
        *ret_target = strdup(url);
        if (!*ret_target) {
                r = -ENOMEM;
                goto fail;
        }
        url_parts_free(&u);
        *ret_spec = spec;
        return 0;
fail:
        url_parts_free(&u);
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

        if (h->spec->expect_body)
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

static void client_close(struct http_attempt *h)
{
        probe_close(h->a, &h->fd);
        h->events = 0;
}

/* Frees what the current hop holds: its connection (either kind), parser and request.
 * Its registrations are released already (hop_release, or the attempt's end). */
static void hop_free(struct http_attempt *h)
{
        probe_curl_free(h->easy);
        h->easy = NULL;
        curl_slist_free_all(h->headers);
        h->headers = NULL;
        if (h->fd >= 0)
                (void) close(h->fd);
        h->fd = -1;
        h->events = 0;
        http_resp_free(&h->resp);
        free(h->own_request);
        free(h->own_addrs);
        h->own_request = NULL;
        h->own_addrs = NULL;
}

/* Ends the current hop before a redirect's: its registrations, then what it holds. */
static void hop_release(struct http_attempt *h)
{
        attempt_timer_disarm(h->a);
        attempt_curl_remove(h->a, h->easy);
        attempt_io_del(h->a, h->fd);
        hop_free(h);
}

static void judge(struct http_attempt *h, long code, const char *location);

/* ---- probed's client (http://) ----------------------------------------------------- */

static attempt_io_fn client_on_io;

static int client_watch(struct http_attempt *h, uint32_t events)
{
        int r;

        if (h->events == events)
                return 0;
        r = h->events ? attempt_io_mod(h->a, h->fd, events) : attempt_io_add(h->a, h->fd, events, client_on_io);
        if (r == 0)
                h->events = events;
        return r;
}

static void client_fail(struct http_attempt *h, int err)
{
        char msg[96];

        probe_strerror(err, msg, sizeof(msg));
        attempt_end(h->a, OUTCOME_FAILURE, "%s", msg);
}

static int client_connect_next(struct http_attempt *h, int err);

/* Sends what is left of the request; then waits for the answer. Returns -errno when
 * probed could not go on (the caller ends the attempt as an error), else 0. */
static int client_send(struct http_attempt *h)
{
        ssize_t n = send(h->fd, h->request + h->sent, h->request_len - h->sent, MSG_NOSIGNAL);

        if (n < 0) {
                if (errno == EAGAIN || errno == EWOULDBLOCK)
                        return client_watch(h, EPOLLOUT); /* still connecting, or a full buffer */
                if (h->sent == 0)                         /* refused, unreachable: the next address may answer */
                        return client_connect_next(h, errno);
                client_fail(h, errno);
                return 0;
        }
        h->sent += (size_t) n;
        return client_watch(h, h->sent < h->request_len ? EPOLLOUT : EPOLLIN);
}

/* Connects to the host's next address (localhost: ::1, then 127.0.0.1) and sends the
 * request; err: why the previous address failed (0 at first). When the last one fails
 * for want of probed's own fds, memory or ports, returns -errno (an error outcome). */
static int client_connect_next(struct http_attempt *h, int err)
{
        int fd;

        client_close(h);
        fd = probe_connect_next(h->addrs, &h->next_addr, err);
        if (fd >= 0) {
                h->fd = fd;
                return client_send(h);
        }
        if (probe_errno_is_local(-fd))
                return fd;
        client_fail(h, -fd);
        return 0;
}

static void client_end(struct http_attempt *h, int rc)
{
        if (rc == HTTP_RESP_ERROR)
                attempt_end(h->a, h->resp.err == -ENOMEM ? OUTCOME_ERROR : OUTCOME_FAILURE, "%s", h->resp.error);
        else
                judge(h, (long) h->resp.status, h->resp.location);
}

static void client_read(struct http_attempt *h)
{
        char buf[READ_CHUNK];

        for (size_t budget = LOOP_READ_BUDGET; budget >= sizeof(buf); budget -= sizeof(buf)) {
                ssize_t n = recv(h->fd, buf, sizeof(buf), 0);
                int rc;

                if (n < 0) {
                        if (errno != EAGAIN && errno != EWOULDBLOCK)
                                client_fail(h, errno);
                        return;
                }
                rc = n == 0 ? http_resp_eof(&h->resp) : http_resp_feed(&h->resp, buf, (size_t) n, body_take, h);
                if (rc != HTTP_RESP_MORE) {
                        client_end(h, rc);
                        return;
                }
                if ((size_t) n < sizeof(buf))
                        return; /* drained: epoll tells when more comes */
        }
        /* budget spent: the socket stays registered, epoll brings us back */
}

static void client_on_io(struct attempt *a, int fd, uint32_t events)
{
        struct http_attempt *h = a->data;
        int r = 0;

        (void) fd;
        (void) events;
        if (h->sent < h->request_len)
                r = client_send(h);
        else
                client_read(h);
        if (r < 0)
                attempt_end(a, OUTCOME_ERROR, "cannot run attempt: %s", strerror(-r));
}

/* A hop of probed's client to u (the spec's own URL when u is NULL). */
static int client_start(struct http_attempt *h, const struct url_parts *u)
{
        const struct http_spec *spec = h->spec;

        h->addrs = &spec->addrs;
        h->request = spec->request;
        h->request_len = spec->request_len;
        if (u) {
                h->own_request = request_build(spec, u, spec->request + spec->lines_off,
                                               spec->request_len - spec->lines_off - 2, &h->request_len);
                if (!h->own_request)
                        return -ENOMEM;
                h->request = h->own_request;
                if (u->port != spec->port) {
                        h->own_addrs = malloc(sizeof(*h->own_addrs));
                        if (!h->own_addrs)
                                return -ENOMEM;
                        *h->own_addrs = spec->addrs;
                        addr_list_set_port(h->own_addrs, (uint16_t) u->port);
                        h->addrs = h->own_addrs;
                }
        }
        h->resp = (struct http_resp){ .no_body = spec->head, .head_max = HTTP_MAX_HEADER_BYTES };
        h->sent = 0;
        h->next_addr = 0;
        return client_connect_next(h, 0);
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

static int curl_start(struct http_attempt *h)
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
        h->easy = probe_curl_new(h->url ? h->url : h->spec->url, h->timeout_ms, h->spec->tls_verify, &h->socket_errno);
        if (!h->easy)
                return -ENOMEM;
        curl_easy_setopt(h->easy, CURLOPT_HTTPHEADER, headers);
        curl_easy_setopt(h->easy, CURLOPT_NOBODY, h->spec->head ? 1L : 0L);
        curl_easy_setopt(h->easy, CURLOPT_HEADERFUNCTION, curl_on_header);
        curl_easy_setopt(h->easy, CURLOPT_HEADERDATA, h);
        curl_easy_setopt(h->easy, CURLOPT_WRITEFUNCTION, curl_on_body);
        curl_easy_setopt(h->easy, CURLOPT_WRITEDATA, h);
        return attempt_curl_add(h->a, h->easy, curl_on_done);
}

/* ---- one attempt ------------------------------------------------------------------- */

/* Starts a hop: to the spec's URL (u NULL) or to a redirect's. */
static int hop_start(struct http_attempt *h, const struct url_parts *u)
{
        h->body_len = 0;
        h->body_capped = false;
        /* probed's client needs the addresses resolved at load: only an http:// spec
         * has them (an https:// spec redirected to http:// stays on libcurl) */
        if (!h->spec->native || (u && u->https))
                return curl_start(h);
        return client_start(h, u);
}

/* The response of a hop is complete (or its body capped): follow it or judge it. */
static void judge(struct http_attempt *h, long code, const char *location)
{
        struct attempt *a = h->a;
        const struct http_spec *spec = h->spec;
        struct url_parts u, orig;
        int r;

        if (code >= 300 && code < 400 && location && url_split(h->url ? h->url : spec->url, location, &u) == 0) {
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

        h = malloc(sizeof(*h) + (spec->expect_body ? spec->max_body + 1 : 1));
        if (!h)
                return -ENOMEM;
        memset(h, 0, sizeof(*h));
        h->a = a;
        h->spec = spec;
        h->timeout_ms = timeout_ms;
        h->fd = -1;
        a->data = h;
        return hop_start(h, NULL); /* on an error, the lifecycle calls http_cancel */
}

static const char *const http_keys[] = {
        "url", "method", "headers", "expect_status", "expect_body", "max_body", "tls_verify", NULL,
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
