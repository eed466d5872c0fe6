/* websocket probe (README "Probe kinds"): the RFC 6455 opening handshake with a fresh key, a verified
 * 101, then (with `ping`, the default) a masked ping whose pong must echo its random
 * payload, then a masked close 1000 and an abortive close. The verdict never waits for
 * the server's close echo.
 *
 *   start --> libcurl connects (CONNECT_ONLY; TLS too for wss) --> done(result)
 *                                                                    |
 *     +--------------------------------------------------------------+
 *     v
 *   SEND_HANDSHAKE --> READ_HANDSHAKE --101 ok--> SEND_PING --> READ_PONG --echo--> close 1000,
 *        (EPOLLOUT)       (EPOLLIN, head       |   (EPOLLOUT)    (EPOLLIN, data    success
 *                          <= 16 KiB)          |                  frames skipped)
 *                                              +--ping false--> close 1000, success
 *   any error, a close frame or EOF --> failure with the reason as last_error
 *
 * With `send` and/or `expect` (a chat backend's round trip), the step after the pong (or
 * the handshake, without ping) is SEND_MESSAGE (one masked text frame), then
 * READ_MESSAGE: data frames are looked through until one holds expect (success), each
 * other one counting against max_skip. A frame is searched in what the input buffer
 * holds of it (its first HTTP_MAX_HEADER_BYTES, header included).
 *
 * Transport: libcurl with CURLOPT_CONNECT_ONLY through the multi interface, so ws and
 * wss share one path and DNS, connect and the TLS handshake are libcurl's (asynchronous).
 * Checked against Debian's libcurl 7.88: the transfer completes (CURLMSG_DONE) once
 * connected, and libcurl has by then dropped the socket from its watch list
 * (CURL_POLL_REMOVE), so the probe registers CURLINFO_ACTIVESOCKET with the loop itself
 * and drives curl_easy_send/curl_easy_recv from its own callbacks. The easy handle must
 * stay in the multi handle meanwhile: curl_multi_remove_handle closes a CONNECT_ONLY
 * connection (after which curl_easy_send fails), which is exactly what the attempt's end
 * wants (the lifecycle removes it, docs/design.md "The attempt lifecycle"). The
 * socket gets SO_LINGER 0 when it is created (probe_curl_new), so that close is abortive.
 * curl_easy_recv is called until CURLE_AGAIN before waiting for EPOLLIN again: TLS may
 * hold decrypted bytes that epoll cannot see.
 *
 * Limits: the response head may use HTTP_MAX_HEADER_BYTES; control frames are at most
 * 125 bytes; frames before the pong (data frames, the server's own pings) are skipped as
 * they stream, never buffered, and at most `max_skip` bytes of them (frame headers
 * included) are allowed: a frame that would go past it fails the attempt at once, from
 * its header, with "N bytes of data before the pong" (README "Probe kinds").
 *
 * Fairness (README "Design"): one wake-up reads at most LOOP_READ_BUDGET bytes, then the
 * handler returns to the loop. The fd stays registered (level-triggered), and a zero-delay
 * timer resumes the attempt too, since TLS may hold decrypted bytes epoll cannot see. */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>

#include "config.h"
#include "loop.h"
#include "probe.h"
#include "probe_curl.h"
#include "probe_tls.h"
#include "util.h"
#include "wsframe.h"

#define WS_CLOSE_NORMAL 1000

struct ws_spec {
        char *url;         /* as configured, for /status */
        char *curl_url;    /* the same with http(s)://, for libcurl */
        char *host;        /* Host header value: host[:port] as written */
        char *dns_host;    /* the URL's host without brackets, resolved at each attempt (README "Names") */
        uint16_t port;     /* the URL's port, or the scheme's */
        char *target;      /* request target: path[?query] */
        char *subprotocol; /* NULL: none asked */
        char *extra;       /* user headers as "Name: value\r\n" lines, or NULL */
        uint64_t max_skip; /* frame bytes allowed before the pong */
        bool ping;
        char *send, *expect;   /* one text message, and what an answer must contain; or NULL */
        char *waiting;         /* "message with \"<expect>\"": waiting_for and errors */
        struct probe_tls *tls; /* NULL: unverified, no TLS key */
};

enum ws_step {
        WS_CONNECTING,
        WS_SEND_HANDSHAKE,
        WS_READ_HANDSHAKE,
        WS_SEND_PING,
        WS_READ_PONG,
        WS_SEND_MESSAGE,
        WS_READ_MESSAGE,
};

struct ws_attempt {
        struct attempt *a;
        const struct ws_spec *spec;
        CURL *easy;
        struct curl_slist *pin; /* the host's addresses for libcurl (probe_curl_pin) */
        int socket_errno;       /* set when socket() fails */
        int fd;                 /* registered with the attempt, or -1 */
        uint32_t events;        /* what fd is registered for */
        enum ws_step step;
        char key[WSFRAME_KEY_SIZE];
        uint8_t nonce[16];
        size_t nonce_len;
        uint8_t *out; /* bytes still to send (malloc'd) */
        size_t out_len, out_off;
        uint64_t skip;    /* data frame payload bytes still to discard */
        uint64_t skipped; /* frame bytes before the pong so far (max_skip) */
        bool early_match; /* expect without send: a message before the pong held it */
        /* bytes this wake-up may still read (LOOP_READ_BUDGET); when they ran out, the
         * attempt's timer resumes on the next wake-up */
        size_t budget;
        size_t in_len;
        uint8_t in[HTTP_MAX_HEADER_BYTES];
};

/* ---- config ------------------------------------------------------------------------ */

static void *ws_free_spec_impl(struct ws_spec *spec)
{
        if (!spec)
                return NULL;
        free(spec->url);
        free(spec->curl_url);
        free(spec->host);
        free(spec->dns_host);
        free(spec->target);
        free(spec->subprotocol);
        free(spec->extra);
        free(spec->send);
        free(spec->expect);
        free(spec->waiting);
        probe_tls_free(spec->tls);
        free(spec);
        return NULL;
}

static void ws_free_spec(void *spec)
{
        ws_free_spec_impl(spec);
}

/* Headers the handshake itself sets: a user value would break or fake it. */
static bool is_reserved_header(const char *name)
{
        static const char *const reserved[] = {
                "Upgrade",
                "Connection",
                "Sec-WebSocket-Key",
                "Sec-WebSocket-Version",
                "Sec-WebSocket-Protocol",
                "Sec-WebSocket-Extensions",
                "Content-Length",
                "Transfer-Encoding",
        };

        for (size_t i = 0; i < ELEMENTSOF(reserved); i++)
                if (strcasecmp(name, reserved[i]) == 0)
                        return true;
        return false;
}

static int parse_headers(const cJSON *obj, const char *path, struct ws_spec *spec, char **reterr)
{
        const cJSON *headers = cJSON_GetObjectItemCaseSensitive(obj, "headers"), *h;
        char *hp = NULL, *extra = NULL;
        size_t len = 0;
        int r = 0;

        if (!headers)
                return 0;
        if (!cJSON_IsObject(headers))
                return cfg_error(reterr, path, "headers", "is not an object of \"Name\": \"value\"");
        hp = strdup_printf("%s.headers", path);
        if (!hp)
                return -ENOMEM;
        cJSON_ArrayForEach(h, headers)
        {
                const char *why = NULL;
                size_t add;
                char *n;

                if (!cfg_token_valid(h->string))
                        why = "is not a valid header name";
                else if (!cJSON_IsString(h) || !cfg_header_value_valid(h->valuestring))
                        why = "must be a string without control characters";
                else if (is_reserved_header(h->string))
                        why = "is set by the websocket handshake (use subprotocol for Sec-WebSocket-Protocol)";
                else if (strcasecmp(h->string, "Host") == 0 && !*h->valuestring)
                        why = "must not be empty";
                if (why) {
                        r = cfg_error(reterr, hp, h->string, "%s", why);
                        goto out;
                }
                add = strlen(h->string) + 2 + strlen(h->valuestring) + 2;
                n = realloc(extra, len + add + 1);
                if (!n) {
                        r = -ENOMEM;
                        goto out;
                }
                extra = n;
                snprintf(extra + len, add + 1, "%s: %s\r\n", h->string, h->valuestring);
                len += add;
        }
        spec->extra = extra;
        extra = NULL;
out:
        free(extra);
        free(hp);
        return r;
}

/* Splits url (ws:// or wss://) into what libcurl and the handshake need. */
static int parse_url(const char *url, const char *path, struct ws_spec *spec, char **reterr)
{
        CURLU *u = NULL;
        char *host = NULL, *port = NULL, *upath = NULL, *query = NULL, *frag = NULL;
        const char *rest;
        bool tls;
        int r;

        if (strncasecmp(url, "ws://", 5) == 0) {
                tls = false;
                rest = url + 5;
        } else if (strncasecmp(url, "wss://", 6) == 0) {
                tls = true;
                rest = url + 6;
        } else
                return cfg_error(reterr, path, "url", "\"%s\" must be ws:// or wss://", url);
        spec->curl_url = strdup_printf("%s://%s", tls ? "https" : "http", rest);
        u = curl_url();
        if (!spec->curl_url || !u) {
                r = -ENOMEM;
                goto out;
        }
        if (curl_url_set(u, CURLUPART_URL, spec->curl_url, 0) != CURLUE_OK ||
            curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK || !*host) {
                r = cfg_error(reterr, path, "url", "\"%s\" is not a valid URL", url);
                goto out;
        }
        if (curl_url_get(u, CURLUPART_FRAGMENT, &frag, 0) == CURLUE_OK) {
                r = cfg_error(reterr, path, "url", "\"%s\" must not have a #fragment (RFC 6455 3)", url);
                goto out;
        }
        (void) curl_url_get(u, CURLUPART_PORT, &port, 0);   /* absent: the scheme's */
        (void) curl_url_get(u, CURLUPART_QUERY, &query, 0); /* absent: none */
        if (curl_url_get(u, CURLUPART_PATH, &upath, 0) != CURLUE_OK) {
                r = -ENOMEM;
                goto out;
        }
        spec->host = port ? strdup_printf("%s:%s", host, port) : strdup(host);
        spec->port = (uint16_t) (port ? atoi(port) : tls ? 443 : 80);
        spec->dns_host = host[0] == '[' ? strndup(host + 1, strlen(host) - 2) : strdup(host);
        if (!spec->dns_host) {
                r = -ENOMEM;
                goto out;
        }
        spec->target = strdup_printf("%s%s%s", *upath ? upath : "/", query ? "?" : "", query ? query : "");
        r = spec->host && spec->target ? 0 : -ENOMEM;
out:
        curl_free(host);
        curl_free(port);
        curl_free(upath);
        curl_free(query);
        curl_free(frag);
        curl_url_cleanup(u);
        return r;
}

/* send and expect (README "Probe kinds"): plain text, no escapes. */
static int parse_message(const cJSON *obj, const char *path, struct ws_spec *spec, char **reterr)
{
        const char *send = NULL, *expect = NULL;
        int r;

        if ((r = cfg_string(obj, "send", path, false, &send, reterr)) < 0 ||
            (r = cfg_string(obj, "expect", path, false, &expect, reterr)) < 0)
                return r;
        if (expect && !*expect)
                return cfg_error(reterr, path, "expect", "must not be empty");
        if ((send && !(spec->send = strdup(send))) || (expect && !(spec->expect = strdup(expect))) ||
            (expect &&
             !(spec->waiting = strdup_printf("message with \"%.48s%s\"", expect, strlen(expect) > 48 ? "..." : ""))))
                return -ENOMEM;
        return 0;
}

/* With server_name, the handshake's Host names it too (as libcurl's does for https). */
static int host_for_server_name(struct ws_spec *spec)
{
        const char *colon = strrchr(spec->host, ':'), *bracket = strrchr(spec->host, ']');
        char *h;

        if (!spec->tls || !spec->tls->server_name)
                return 0;
        h = strdup_printf("%s%s", spec->tls->server_name, colon && (!bracket || colon > bracket) ? colon : "");
        if (!h)
                return -ENOMEM;
        free(spec->host);
        spec->host = h;
        return 0;
}

static int ws_parse(cJSON *obj, const char *path, void **ret_spec, char **ret_target, char **reterr)
{
        struct ws_spec *spec;
        const char *url = NULL, *subprotocol = NULL;
        uint64_t max_skip = WS_MAX_SKIP_DEFAULT;
        bool ping = true;
        int r;

        spec = calloc(1, sizeof(*spec));
        if (!spec)
                return -ENOMEM;
        if ((r = cfg_string(obj, "url", path, true, &url, reterr)) < 0 ||
            (r = cfg_string(obj, "subprotocol", path, false, &subprotocol, reterr)) < 0 ||
            (r = cfg_bool(obj, "ping", path, &ping, reterr)) < 0 ||
            (r = cfg_uint(obj, "max_skip", path, 0, 1u << 30, &max_skip, reterr)) < 0)
                goto fail;
        if (subprotocol && !cfg_token_valid(subprotocol)) {
                r = cfg_error(reterr, path, "subprotocol", "\"%s\" must be one token (e.g. \"chat\")", subprotocol);
                goto fail;
        }
        if ((r = parse_url(url, path, spec, reterr)) < 0 || (r = parse_headers(obj, path, spec, reterr)) < 0 ||
            (r = parse_message(obj, path, spec, reterr)) < 0 ||
            (r = probe_tls_parse(obj, path, strncasecmp(spec->curl_url, "https", 5) == 0, spec->curl_url, &spec->tls,
                                 reterr)) < 0 ||
            (r = host_for_server_name(spec)) < 0)
                goto fail;
        spec->ping = ping;
        spec->max_skip = max_skip;
        spec->url = strdup(url);
        spec->subprotocol = subprotocol ? strdup(subprotocol) : NULL;
        *ret_target = strdup(url);
        if (!spec->url || (subprotocol && !spec->subprotocol) || !*ret_target ||
            (!cJSON_HasObjectItem(obj, "ping") && !cJSON_AddBoolToObject(obj, "ping", ping)) ||
            (!cJSON_HasObjectItem(obj, "max_skip") && !cJSON_AddNumberToObject(obj, "max_skip", (double) max_skip))) {
                free(*ret_target);
                *ret_target = NULL;
                r = -ENOMEM;
                goto fail;
        }
        *ret_spec = spec;
        return 0;
fail:
        ws_free_spec_impl(spec);
        return r;
}

/* ---- attempt ----------------------------------------------------------------------- */

/* Its registrations are released already: removing the handle from the multi closed the
 * CONNECT_ONLY connection (SO_LINGER 0: abortive). */
static void ws_cancel(struct attempt *a)
{
        struct ws_attempt *w = a->data;

        probe_curl_free(w->easy);
        curl_slist_free_all(w->pin);
        free(w->out);
        free(w);
        a->data = NULL;
        a->waiting_for = NULL;
}

static void ws_watch(struct ws_attempt *w, uint32_t events)
{
        if (w->events != events && attempt_io_mod(w->a, w->fd, events) == 0)
                w->events = events;
}

/* Queues one masked frame for sending. 0 or negative errno. */
static int ws_queue_frame(struct ws_attempt *w, uint8_t opcode, const void *payload, size_t len)
{
        uint8_t mask[4];
        size_t n = 0;
        int r;

        r = wsframe_random(mask, sizeof(mask));
        if (r < 0)
                return r;
        free(w->out);
        w->out = malloc(len + WSFRAME_HEADER_MAX);
        if (!w->out)
                return -ENOMEM;
        r = wsframe_encode(opcode, payload, len, mask, w->out, len + WSFRAME_HEADER_MAX, &n);
        if (r < 0)
                return r;
        w->out_len = n;
        w->out_off = 0;
        return 0;
}

/* Sends what is queued. true: all sent; false: the socket is full (EPOLLOUT armed), or
 * the attempt ended. */
static bool ws_flush(struct ws_attempt *w)
{
        char err[ERROR_MAX - 16];

        while (w->out_off < w->out_len) {
                size_t n = 0;
                CURLcode rc;

                rc = curl_easy_send(w->easy, w->out + w->out_off, w->out_len - w->out_off, &n);
                if (rc == CURLE_AGAIN) {
                        ws_watch(w, EPOLLOUT);
                        return false;
                }
                if (rc != CURLE_OK) {
                        (void) probe_curl_error(w->easy, rc, 0, err, sizeof(err));
                        attempt_end(w->a, OUTCOME_FAILURE, "send: %s", err);
                        return false;
                }
                w->out_off += n;
        }
        free(w->out);
        w->out = NULL;
        w->out_len = w->out_off = 0;
        return true;
}

static attempt_timer_fn ws_on_resume;

/* Reads what is available into w->in, within this wake-up's budget. true: got bytes;
 * false: nothing now (EPOLLIN armed; the resume timer too when the budget ran out), or
 * the attempt ended (EOF or error, reported as closed_msg / "recv: ..."). */
static bool ws_fill(struct ws_attempt *w, const char *closed_msg)
{
        char err[ERROR_MAX - 16];
        size_t n = 0, room = sizeof(w->in) - w->in_len;
        CURLcode rc;

        if (w->budget == 0) {
                ws_watch(w, EPOLLIN);
                attempt_timer_arm(w->a, ws_on_resume, now_ns());
                return false;
        }
        rc = curl_easy_recv(w->easy, w->in + w->in_len, room < w->budget ? room : w->budget, &n);
        if (rc == CURLE_AGAIN) {
                ws_watch(w, EPOLLIN);
                return false;
        }
        if (rc == CURLE_OK && n == 0) {
                attempt_end(w->a, OUTCOME_FAILURE, "%s", closed_msg);
                return false;
        }
        if (rc != CURLE_OK) {
                (void) probe_curl_error(w->easy, rc, 0, err, sizeof(err));
                attempt_end(w->a, OUTCOME_FAILURE, "recv: %s", err);
                return false;
        }
        w->in_len += n;
        w->budget -= n;
        return true;
}

static void ws_consume(struct ws_attempt *w, size_t n)
{
        memmove(w->in, w->in + n, w->in_len - n);
        w->in_len -= n;
}

/* Sends close 1000 once, without waiting for room or for the echo (README "Probe kinds":
 * the verdict does not depend on it), then ends the attempt as a success. */
static void ws_finish(struct ws_attempt *w, const char *what)
{
        const uint8_t code[2] = { WS_CLOSE_NORMAL >> 8, WS_CLOSE_NORMAL & 0xFF };
        size_t n;

        if (ws_queue_frame(w, WSFRAME_CLOSE, code, sizeof(code)) == 0)
                (void) curl_easy_send(w->easy, w->out, w->out_len, &n);
        attempt_end(w->a, OUTCOME_SUCCESS, "%s", what);
}

/* Counts a frame that is not the pong against max_skip. false: past it, the attempt
 * ended. */
static bool ws_count_skipped(struct ws_attempt *w, const struct wsframe *f)
{
        uint64_t n = f->header_len + f->payload_len; /* < 2^63 + 14: skipped + n cannot wrap */

        if (n > w->spec->max_skip - w->skipped) {
                attempt_end(w->a, OUTCOME_FAILURE, "%llu bytes of data before the %s (max_skip %llu)",
                            (unsigned long long) (w->skipped + n),
                            w->step == WS_READ_MESSAGE ? w->spec->waiting : "pong",
                            (unsigned long long) w->spec->max_skip);
                return false;
        }
        w->skipped += n;
        return true;
}

/* The pong came (or the handshake, without ping): with a message to exchange, queue it
 * (send) or wait for one (expect alone); else success. true: go on (ws_step's loop);
 * false: the attempt ended. */
static bool ws_after_pong(struct ws_attempt *w)
{
        int r;

        if ((!w->spec->send && !w->spec->expect) || w->early_match) {
                ws_finish(w, w->early_match ? "message received" : w->spec->ping ? "pong received" : "handshake ok");
                return false;
        }
        w->skipped = 0; /* max_skip anew: bytes before the expected message */
        if (!w->spec->send) {
                w->step = WS_READ_MESSAGE;
                w->a->waiting_for = w->spec->waiting;
                return true;
        }
        r = ws_queue_frame(w, WSFRAME_TEXT, w->spec->send, strlen(w->spec->send));
        if (r < 0) {
                attempt_end(w->a, OUTCOME_ERROR, "send: %s", strerror(-r));
                return false;
        }
        w->step = WS_SEND_MESSAGE;
        return true;
}

/* Does the data frame f hold expect? 1: yes, -1: no, 0: more of it must be buffered
 * first (it fits in w->in). */
static int ws_match_message(struct ws_attempt *w, const struct wsframe *f)
{
        size_t have = w->in_len - f->header_len, len = strlen(w->spec->expect);

        if (f->payload_len > have && w->in_len < sizeof(w->in))
                return 0; /* the rest of it fits: wait for it */
        return memmem(w->in + f->header_len, f->payload_len < have ? (size_t) f->payload_len : have, w->spec->expect,
                      len)
                       ? 1
                       : -1;
}

/* Looks through the frames buffered so far. true: more bytes are needed; false: the
 * attempt ended (the pong or the message came, or a failure), or (after the pong) the
 * step changed: ws_step goes on. */
static bool ws_scan_frames(struct ws_attempt *w)
{
        for (;;) {
                struct wsframe f;
                const char *why = "";
                int r;

                if (w->skip > 0) {
                        size_t n = w->skip < w->in_len ? (size_t) w->skip : w->in_len;

                        ws_consume(w, n);
                        w->skip -= n;
                        if (w->skip > 0)
                                return true;
                }
                r = wsframe_decode(w->in, w->in_len, false, INT64_MAX, &f, &why);
                if (r == 0)
                        return true;
                if (r < 0) {
                        attempt_end(w->a, OUTCOME_FAILURE, "bad frame from server: %s", why);
                        return false;
                }
                /* the expected message; without send, one that came before the pong counts */
                if (!(f.opcode & 0x8) && w->spec->expect &&
                    (w->step == WS_READ_MESSAGE || (!w->spec->send && !w->early_match))) {
                        int m = ws_match_message(w, &f);
                        if (m == 0)
                                return true;
                        if (m > 0 && w->step == WS_READ_MESSAGE) {
                                ws_finish(w, "message received");
                                return false;
                        }
                        w->early_match = m > 0;
                }
                if (!(f.opcode & 0x8)) { /* data: skipped as it streams, within max_skip */
                        if (!ws_count_skipped(w, &f))
                                return false;
                        ws_consume(w, f.header_len);
                        w->skip = f.payload_len;
                        continue;
                }
                if (w->in_len < f.header_len + f.payload_len)
                        return true; /* control frames are <= 125 bytes: they fit */
                if (f.opcode == WSFRAME_CLOSE) {
                        const uint8_t *p = w->in + f.header_len;

                        if (f.payload_len >= 2)
                                attempt_end(w->a, OUTCOME_FAILURE, "closed by server (code %u)",
                                            (unsigned) (p[0] << 8 | p[1]));
                        else
                                attempt_end(w->a, OUTCOME_FAILURE, "closed by server");
                        return false;
                }
                if (f.opcode == WSFRAME_PONG && w->step == WS_READ_PONG && f.payload_len == w->nonce_len &&
                    memcmp(w->in + f.header_len, w->nonce, w->nonce_len) == 0) {
                        ws_consume(w, f.header_len + (size_t) f.payload_len);
                        if (!ws_after_pong(w))
                                return false;
                        if (w->step != WS_READ_MESSAGE)
                                return true; /* SEND_MESSAGE: ws_step goes on */
                        continue;
                }
                /* a ping from the server or an unsolicited pong: ignored (we close soon) */
                if (!ws_count_skipped(w, &f))
                        return false;
                ws_consume(w, f.header_len + (size_t) f.payload_len);
        }
}

/* Reads the response head and checks it once complete; then queues the ping, or ends
 * the attempt without one. true: go on (bytes came, or the ping is queued); false:
 * waiting for bytes, or the attempt ended. */
static bool ws_read_handshake(struct ws_attempt *w)
{
        char reason[ERROR_MAX];
        size_t end;
        int status, r;

        end = wsframe_response_end((const char *) w->in, w->in_len);
        if (end == 0) {
                if (w->in_len == sizeof(w->in)) {
                        attempt_end(w->a, OUTCOME_FAILURE, "handshake: response head exceeds %d bytes",
                                    HTTP_MAX_HEADER_BYTES);
                        return false;
                }
                return ws_fill(w, "connection closed during handshake");
        }
        if (wsframe_response_check((const char *) w->in, end, w->key, w->spec->subprotocol, &status, reason,
                                   sizeof(reason)) < 0) {
                attempt_end(w->a, OUTCOME_FAILURE, "%s", reason);
                return false;
        }
        ws_consume(w, end); /* what follows are frames */
        if (!w->spec->ping)
                return ws_after_pong(w);
        w->nonce_len = 8 + w->nonce[0] % 9; /* 8..16 bytes (nonce[0] is random) */
        r = wsframe_random(w->nonce, w->nonce_len);
        if (r == 0)
                r = ws_queue_frame(w, WSFRAME_PING, w->nonce, w->nonce_len);
        if (r < 0) {
                attempt_end(w->a, OUTCOME_ERROR, "ping: %s", strerror(-r));
                return false;
        }
        w->step = WS_SEND_PING;
        return true;
}

/* The step function: runs the attempt as far as the socket allows. Every path either
 * waits for an event (returns with fd armed) or ends the attempt. */
static void ws_step(struct ws_attempt *w)
{
        for (;;) {
                switch (w->step) {
                case WS_CONNECTING:
                        return;
                case WS_SEND_HANDSHAKE:
                case WS_SEND_PING:
                        if (!ws_flush(w))
                                return;
                        w->step = w->step == WS_SEND_HANDSHAKE ? WS_READ_HANDSHAKE : WS_READ_PONG;
                        w->a->waiting_for = w->step == WS_READ_PONG ? "pong" : "handshake response";
                        break;
                case WS_SEND_MESSAGE:
                        if (!ws_flush(w))
                                return;
                        if (!w->spec->expect) {
                                ws_finish(w, "message sent");
                                return;
                        }
                        w->step = WS_READ_MESSAGE;
                        w->a->waiting_for = w->spec->waiting;
                        ws_watch(w, EPOLLIN);
                        break;
                case WS_READ_HANDSHAKE:
                        if (!ws_read_handshake(w))
                                return;
                        break;
                case WS_READ_PONG:
                case WS_READ_MESSAGE:
                        if (!ws_scan_frames(w))
                                return;
                        if (w->step == WS_SEND_MESSAGE)
                                break;
                        if (!ws_fill(w, w->step == WS_READ_PONG ? "connection closed before pong"
                                                                : "connection closed before the expected message"))
                                return;
                        break;
                }
        }
}

static void ws_on_io(struct attempt *a, int fd, uint32_t events)
{
        struct ws_attempt *w = a->data;

        (void) fd;
        (void) events; /* errors and hangups surface through curl_easy_send/recv */
        attempt_timer_disarm(a);
        w->budget = LOOP_READ_BUDGET;
        ws_step(w);
}

/* The budget of the previous wake-up ran out: go on with a new one. */
static void ws_on_resume(struct attempt *a)
{
        struct ws_attempt *w = a->data;

        w->budget = LOOP_READ_BUDGET;
        ws_step(w);
}

static void ws_on_connected(struct attempt *a, CURL *easy, CURLcode rc)
{
        struct ws_attempt *w = a->data;
        char err[ERROR_MAX - 16];
        curl_socket_t fd = CURL_SOCKET_BAD;
        char *req = NULL;
        int r;

        if (rc != CURLE_OK) {
                enum outcome o = probe_curl_error(easy, rc, w->socket_errno, err, sizeof(err));
                attempt_end(a, o, "connect: %s", err);
                return;
        }
        if (curl_easy_getinfo(easy, CURLINFO_ACTIVESOCKET, &fd) != CURLE_OK || fd == CURL_SOCKET_BAD) {
                attempt_end(a, OUTCOME_FAILURE, "connect: no socket");
                return;
        }
        r = wsframe_request(w->spec->target, w->spec->host, w->key, w->spec->subprotocol, w->spec->extra, &req);
        if (r < 0) {
                attempt_end(a, OUTCOME_ERROR, "handshake: %s", strerror(-r));
                return;
        }
        w->out = (uint8_t *) req;
        w->out_len = strlen(req);
        w->out_off = 0;
        r = attempt_io_add(a, fd, EPOLLOUT, ws_on_io);
        if (r < 0) {
                attempt_end(a, OUTCOME_ERROR, "watch socket: %s", strerror(-r));
                return;
        }
        w->fd = fd;
        w->events = EPOLLOUT;
        w->step = WS_SEND_HANDSHAKE;
        a->waiting_for = "handshake response";
        w->budget = LOOP_READ_BUDGET;
        ws_step(w);
}

static attempt_resolve_fn ws_on_resolved;

static int ws_start(struct attempt *a, const void *specp, uint64_t timeout_ms)
{
        const struct ws_spec *spec = specp;
        struct ws_attempt *w;
        int r;

        (void) timeout_ms; /* the lifecycle's deadline is the timeout */
        w = calloc(1, sizeof(*w));
        if (!w)
                return -ENOMEM;
        w->a = a;
        w->spec = spec;
        w->fd = -1;
        w->step = WS_CONNECTING;
        a->data = w;                   /* from here on, an error return has the lifecycle call ws_cancel */
        a->waiting_for = "connection"; /* a timeout reads "timeout: no pong within 1s" */
        r = wsframe_key_new(w->key);
        if (r == 0)
                r = wsframe_random(w->nonce, 1); /* picks the ping payload length */
        if (r < 0)
                return r;
        return attempt_resolve(a, spec->dns_host, spec->port, NULL, ws_on_resolved);
}

/* The host's addresses are known: libcurl connects to them. */
static void ws_on_resolved(struct attempt *a, const struct addr_list *addrs)
{
        struct ws_attempt *w = a->data;
        int r = -ENOMEM;

        w->easy = probe_curl_new(w->spec->curl_url, &w->socket_errno);
        if (!w->easy || probe_tls_apply(w->easy, w->spec->tls, w->spec->curl_url) < 0 ||
            (r = probe_curl_pin(w->easy, w->spec->dns_host, addrs, &w->pin)) < 0) {
                attempt_end(a, OUTCOME_ERROR, "cannot run attempt: %s", strerror(-r));
                return;
        }
        /* the lifecycle's deadline decides (libcurl has no limit of its own), so a slow
         * connect is a timeout, not a failure */
        curl_easy_setopt(w->easy, CURLOPT_CONNECT_ONLY, 1L);
        /* FORBID_REUSE would close the connection as soon as it is made; a CONNECT_ONLY
         * connection is never handed to another transfer anyway, and FRESH_CONNECT stays */
        curl_easy_setopt(w->easy, CURLOPT_FORBID_REUSE, 0L);
        /* wss: offer only http/1.1 in ALPN, or an h2-capable front would pick h2 and the
         * HTTP/1.1 upgrade written over it would fail */
        curl_easy_setopt(w->easy, CURLOPT_HTTP_VERSION, (long) CURL_HTTP_VERSION_1_1);
        r = attempt_curl_add(a, w->easy, ws_on_connected);
        if (r < 0)
                attempt_end(a, OUTCOME_ERROR, "cannot run attempt: %s", strerror(-r));
}

static const char *const ws_keys[] = {
        "url", "headers", "subprotocol", "ping", "max_skip", "send", "expect", PROBE_TLS_KEYS, NULL,
};

static int ws_flag_to_json(cJSON *obj, const char *value)
{
        return cJSON_AddStringToObject(obj, "url", value) ? 0 : -ENOMEM;
}

const struct probe_ops websocket_probe_ops = {
        .type = "websocket",
        .keys = ws_keys,
        /* the socket libcurl connects; two at once while it races IPv6 and IPv4 (happy
         * eyeballs), or the threaded resolver's socketpair before that */
        .fds_per_attempt = 2,
        .flag = { .name = "ws", .arg = "NAME=URL", .to_json = ws_flag_to_json },
        .parse = ws_parse,
        .free_spec = ws_free_spec,
        .start = ws_start,
        .cancel = ws_cancel,
};
