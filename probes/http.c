/* http probe, as kubelet's httpGet (SPEC 3): one request on a fresh connection,
 * success when the status is in expect_status and the body read (at most max_body
 * bytes; more is not read and is not an error) contains expect_body.
 *
 *   start --> add easy handle --> [libcurl drives it on the loop] --> done(result)
 *                  ^                                                   |
 *                  |  3xx to the same host (port ignored), < 10 hops   |
 *                  +---------------------------------------------------+
 *                     otherwise: judge status + body -> attempt_end
 *
 * Redirects are followed by hand (libcurl cannot express kubelet's rule): same host
 * followed with the same headers (Host override kept), another host not followed and
 * judged by its 3xx status, a chain reaching HTTP_MAX_REDIRECTS is a failure. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "config.h"
#include "loop.h"
#include "probe.h"
#include "probe_curl.h"
#include "util.h"

#define MAX_STATUS_RANGES 16

struct status_range {
        unsigned lo, hi;
};

struct http_spec {
        char *url;
        bool head;
        struct curl_slist *headers; /* user headers + defaults, as curl takes them */
        struct status_range ranges[MAX_STATUS_RANGES];
        size_t n_ranges;
        char *expect_body; /* NULL: any body */
        size_t max_body;
        bool tls_verify;
};

struct http_attempt {
        struct loop_curl lc;
        struct attempt *a;
        const struct http_spec *spec;
        CURL *easy;
        char *url; /* current URL (changes on redirects) */
        uint64_t timeout_ms;
        int socket_errno; /* set when socket() fails */
        unsigned redirects;
        size_t header_bytes;
        bool body_capped;
        size_t body_len;
        char body[]; /* max_body + 1 bytes with expect_body, else 1 */
};

static int parse_status_ranges(const char *s, struct http_spec *spec)
{
        const char *p = s;

        spec->n_ranges = 0;
        for (;;) {
                char *end;
                unsigned long lo, hi;

                if (spec->n_ranges == MAX_STATUS_RANGES)
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
                spec->ranges[spec->n_ranges++] = (struct status_range){ (unsigned) lo, (unsigned) hi };
                if (*p == '\0')
                        return 0;
                if (*p != ',')
                        return -EINVAL;
                p++;
        }
}

static bool header_name_valid(const char *name)
{
        if (!*name)
                return false;
        for (const char *c = name; *c; c++)
                if (*c <= ' ' || *c == ':' || *c == 127)
                        return false;
        return true;
}

static bool headers_have(const cJSON *headers, const char *name)
{
        const cJSON *h;

        cJSON_ArrayForEach(h, headers) if (strcasecmp(h->string, name) == 0) return true;
        return false;
}

static int append_header(struct curl_slist **list, const char *name, const char *value)
{
        struct curl_slist *n;
        /* "Name:" removes a header curl would add; a non-empty value sets it. */
        char *line = strdup_printf("%s:%s%s", name, *value ? " " : "", value);

        if (!line)
                return -ENOMEM;
        n = curl_slist_append(*list, line);
        free(line);
        if (!n)
                return -ENOMEM;
        *list = n;
        return 0;
}

static void http_free_spec(void *p)
{
        struct http_spec *spec = p;

        if (!spec)
                return;
        free(spec->url);
        free(spec->expect_body);
        curl_slist_free_all(spec->headers);
        free(spec);
}

static int http_parse(cJSON *obj, const char *path, void **ret_spec, char **ret_target, char **reterr)
{
        struct http_spec *spec;
        const char *url = NULL, *method = "GET", *expect_status = "200-399", *expect_body = NULL;
        const cJSON *headers, *h;
        uint64_t max_body = HTTP_MAX_BODY_DEFAULT;
        bool tls_verify = false;
        int r;

        if ((r = cfg_string(obj, "url", path, true, &url, reterr)) < 0 ||
            (r = cfg_string(obj, "method", path, false, &method, reterr)) < 0 ||
            (r = cfg_string(obj, "expect_status", path, false, &expect_status, reterr)) < 0 ||
            (r = cfg_string(obj, "expect_body", path, false, &expect_body, reterr)) < 0 ||
            (r = cfg_uint(obj, "max_body", path, 1, 64u << 20, &max_body, reterr)) < 0 ||
            (r = cfg_bool(obj, "tls_verify", path, &tls_verify, reterr)) < 0)
                return r;
        if (strncasecmp(url, "http://", 7) != 0 && strncasecmp(url, "https://", 8) != 0)
                return cfg_error(reterr, path, "url", "\"%s\" must be an http:// or https:// URL", url);
        if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
                return cfg_error(reterr, path, "method", "\"%s\" is not GET or HEAD", method);

        spec = calloc(1, sizeof(*spec));
        if (!spec)
                return -ENOMEM;
        if (parse_status_ranges(expect_status, spec) < 0) {
                r = cfg_error(reterr, path, "expect_status",
                              "\"%s\" is not a status list (e.g. \"200-399\", \"200,204\")", expect_status);
                goto fail;
        }
        spec->head = strcmp(method, "HEAD") == 0;
        spec->max_body = max_body;
        spec->tls_verify = tls_verify;
        r = -ENOMEM;
        spec->url = strdup(url);
        if (!spec->url || (expect_body && !(spec->expect_body = strdup(expect_body))))
                goto fail;

        headers = cJSON_GetObjectItemCaseSensitive(obj, "headers");
        if (headers && !cJSON_IsObject(headers)) {
                r = cfg_error(reterr, path, "headers", "must be an object of strings");
                goto fail;
        }
        cJSON_ArrayForEach(h, headers)
        {
                if (!cJSON_IsString(h) || !header_name_valid(h->string) || strpbrk(h->valuestring, "\r\n")) {
                        char *hp = strdup_printf("%s.headers", path);
                        r = hp ? cfg_error(reterr, hp, h->string, "must be a valid header with a string value")
                               : -ENOMEM;
                        free(hp);
                        goto fail;
                }
                if ((r = append_header(&spec->headers, h->string, h->valuestring)) < 0)
                        goto fail;
        }
        /* kubelet's defaults, unless the user set (or emptied) them */
        if ((!headers_have(headers, "Accept") && (r = append_header(&spec->headers, "Accept", "*/*")) < 0) ||
            (!headers_have(headers, "Connection") && (r = append_header(&spec->headers, "Connection", "close")) < 0))
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
        *ret_spec = spec;
        return 0;
fail:
        http_free_spec(spec);
        return r;
}

static size_t http_on_header(char *buf, size_t size, size_t n, void *data)
{
        struct http_attempt *h = data;

        (void) buf;
        h->header_bytes += size * n;
        return h->header_bytes > HTTP_MAX_HEADER_BYTES ? 0 : size * n;
}

static size_t http_on_body(char *buf, size_t size, size_t n, void *data)
{
        struct http_attempt *h = data;
        size_t len = size * n, room = h->spec->max_body - h->body_len;

        if (!h->spec->expect_body) { /* nothing to search: count, keep nothing */
                h->body_len += len > room ? room : len;
                h->body_capped = len > room;
                return len > room ? 0 : len;
        }
        if (len > room) {
                /* The cap is reached: keep what fits, stop reading (not an error). */
                memcpy(h->body + h->body_len, buf, room);
                h->body_len += room;
                h->body_capped = true;
                return 0;
        }
        memcpy(h->body + h->body_len, buf, len);
        h->body_len += len;
        return len;
}

static bool status_expected(const struct http_spec *spec, long code)
{
        for (size_t i = 0; i < spec->n_ranges; i++)
                if (code >= spec->ranges[i].lo && code <= spec->ranges[i].hi)
                        return true;
        return false;
}

/* Configures h->easy for h->url and adds it to the loop. */
static int http_send(struct http_attempt *h)
{
        h->body_len = 0;
        h->header_bytes = 0;
        h->body_capped = false;
        h->easy = probe_curl_new(h->url, h->timeout_ms, h->spec->tls_verify, &h->socket_errno);
        if (!h->easy)
                return -ENOMEM;
        curl_easy_setopt(h->easy, CURLOPT_HTTPHEADER, h->spec->headers);
        curl_easy_setopt(h->easy, CURLOPT_NOBODY, h->spec->head ? 1L : 0L);
        curl_easy_setopt(h->easy, CURLOPT_HEADERFUNCTION, http_on_header);
        curl_easy_setopt(h->easy, CURLOPT_HEADERDATA, h);
        curl_easy_setopt(h->easy, CURLOPT_WRITEFUNCTION, http_on_body);
        curl_easy_setopt(h->easy, CURLOPT_WRITEDATA, h);
        curl_easy_setopt(h->easy, CURLOPT_ACCEPT_ENCODING, NULL);
        return loop_curl_add(h->a->loop, h->easy, &h->lc);
}

static void http_release_easy(struct http_attempt *h)
{
        if (!h->easy)
                return;
        loop_curl_remove(h->a->loop, h->easy);
        probe_curl_free(h->easy);
        h->easy = NULL;
}

/* Same host as the original URL (port ignored, as kubelet)? */
static bool same_host(const char *a, const char *b)
{
        CURLU *ua = curl_url(), *ub = curl_url();
        char *ha = NULL, *hb = NULL;
        bool same = false;

        if (ua && ub && curl_url_set(ua, CURLUPART_URL, a, 0) == CURLUE_OK &&
            curl_url_set(ub, CURLUPART_URL, b, 0) == CURLUE_OK &&
            curl_url_get(ua, CURLUPART_HOST, &ha, 0) == CURLUE_OK &&
            curl_url_get(ub, CURLUPART_HOST, &hb, 0) == CURLUE_OK)
                same = strcasecmp(ha, hb) == 0;
        curl_free(ha);
        curl_free(hb);
        curl_url_cleanup(ua);
        curl_url_cleanup(ub);
        return same;
}

static void http_on_done(struct loop *l, CURL *easy, CURLcode rc, void *data)
{
        struct attempt *a = data;
        struct http_attempt *h = a->data;
        long code = 0;
        char *location = NULL;
        char err[ERROR_MAX];
        int r;

        (void) l;
        /* A completion can only matter for the attempt that owns this very handle. */
        if (a->state != ATTEMPT_RUNNING || !h || h->easy != easy)
                return;
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
        if (code >= 300 && code < 400 && curl_easy_getinfo(easy, CURLINFO_REDIRECT_URL, &location) == CURLE_OK &&
            location && same_host(h->spec->url, location)) {
                char *next;

                if (++h->redirects >= HTTP_MAX_REDIRECTS) {
                        attempt_end(a, OUTCOME_FAILURE, "stopped after %d redirects", HTTP_MAX_REDIRECTS);
                        return;
                }
                next = strdup(location); /* location dies with the handle */
                if (!next) {
                        attempt_end(a, OUTCOME_ERROR, "out of memory");
                        return;
                }
                http_release_easy(h);
                free(h->url);
                h->url = next;
                r = http_send(h);
                if (r < 0)
                        attempt_end(a, OUTCOME_ERROR, "follow redirect: %s", strerror(-r));
                return;
        }
        if (!status_expected(h->spec, code)) {
                attempt_end(a, OUTCOME_FAILURE, "status %ld", code);
                return;
        }
        if (h->spec->expect_body && !memmem(h->body, h->body_len, h->spec->expect_body, strlen(h->spec->expect_body))) {
                attempt_end(a, OUTCOME_FAILURE, "status %ld, body does not contain expect_body", code);
                return;
        }
        attempt_end(a, OUTCOME_SUCCESS, "status %ld", code);
}

static void http_cancel(struct attempt *a)
{
        struct http_attempt *h = a->data;

        if (!h)
                return;
        http_release_easy(h);
        free(h->url);
        free(h);
        a->data = NULL;
}

static int http_start(struct attempt *a, const void *specp, uint64_t timeout_ms)
{
        const struct http_spec *spec = specp;
        struct http_attempt *h;
        int r;

        h = calloc(1, sizeof(*h) + (spec->expect_body ? spec->max_body + 1 : 1));
        if (!h)
                return -ENOMEM;
        h->a = a;
        h->spec = spec;
        h->timeout_ms = timeout_ms;
        h->lc = (struct loop_curl){ .fn = http_on_done, .data = a };
        h->url = strdup(spec->url);
        if (!h->url) {
                free(h);
                return -ENOMEM;
        }
        a->data = h;
        r = http_send(h);
        if (r < 0) {
                http_cancel(a);
                return r;
        }
        return 0;
}

static const char *const http_keys[] = {
        "url", "method", "headers", "expect_status", "expect_body", "max_body", "tls_verify", NULL,
};

const struct probe_ops http_probe_ops = {
        .type = "http",
        .keys = http_keys,
        .parse = http_parse,
        .free_spec = http_free_spec,
        .start = http_start,
        .cancel = http_cancel,
};
