/* HTTP/1.x response parser: see include/httpresp.h. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "httpresp.h"
#include "util.h"

enum { ST_HEAD, ST_LENGTH, ST_CHUNKED, ST_UNTIL_EOF, ST_DONE, ST_ENOUGH, ST_ERROR };
enum { CH_SIZE0, CH_SIZE, CH_EXT, CH_DATA, CH_DATA_CR, CH_DATA_LF, CH_TRAILER };

#define CONTENT_LENGTH_MAX (UINT64_C(1) << 62)
#define CHUNK_SIZE_MAX (UINT64_C(1) << 56)

static int fail_errno(struct http_resp *r, int err, const char *why)
{
        r->err = err;
        r->state = ST_ERROR;
        r->error = why;
        return HTTP_RESP_ERROR;
}

static int fail(struct http_resp *r, const char *why)
{
        return fail_errno(r, -EPROTO, why);
}

/* Index just past the blank line ending a head in p[from..n), or 0 when none yet. */
static size_t head_end(const char *p, size_t n, size_t from)
{
        for (const char *lf = memchr(p + from, '\n', n - from); lf;
             lf = memchr(lf + 1, '\n', n - (size_t) (lf + 1 - p))) {
                size_t i = (size_t) (lf - p) + 1;
                if (i < n && p[i] == '\n')
                        return i + 1;
                if (i + 1 < n && p[i] == '\r' && p[i + 1] == '\n')
                        return i + 2;
                if (i == n)
                        break;
        }
        return 0;
}

int http_status_line(const char *p, size_t len)
{
        if (len < 12 || memcmp(p, "HTTP/1.", 7) != 0 || p[7] < '0' || p[7] > '9' || p[8] != ' ' || p[9] < '1' ||
            p[9] > '5' || p[10] < '0' || p[10] > '9' || p[11] < '0' || p[11] > '9' || (len > 12 && p[12] != ' '))
                return -1;
        return (p[9] - '0') * 100 + (p[10] - '0') * 10 + (p[11] - '0');
}

bool http_header_split(const char *line, size_t len, size_t *ret_name_len, const char **ret_value,
                       size_t *ret_value_len)
{
        const char *colon = memchr(line, ':', len), *v, *eol = line + len;

        if (!colon)
                return false;
        for (v = colon + 1; v < eol && (*v == ' ' || *v == '\t'); v++)
                ;
        while (eol > v && (eol[-1] == ' ' || eol[-1] == '\t'))
                eol--;
        *ret_name_len = (size_t) (colon - line);
        *ret_value = v;
        *ret_value_len = (size_t) (eol - v);
        return true;
}

static bool name_is(const char *name, size_t len, const char *want)
{
        return len == strlen(want) && strncasecmp(name, want, len) == 0;
}

enum { TE_NONE, TE_CHUNKED, TE_OTHER };

static int header(struct http_resp *r, const char *name, size_t nlen, const char *v, size_t vlen, int *te,
                  int64_t *length)
{
        if (name_is(name, nlen, "content-length")) {
                uint64_t n = 0;
                if (vlen == 0)
                        return fail(r, "malformed Content-Length");
                for (size_t i = 0; i < vlen; i++) {
                        if (v[i] < '0' || v[i] > '9' || n > CONTENT_LENGTH_MAX / 10)
                                return fail(r, "malformed Content-Length");
                        n = n * 10 + (uint64_t) (v[i] - '0');
                }
                if (*length >= 0 && (uint64_t) *length != n)
                        return fail(r, "malformed Content-Length");
                *length = (int64_t) n;
        } else if (name_is(name, nlen, "transfer-encoding")) {
                /* chunked when it is the last coding applied; another coding: the body
                 * lasts until the connection closes, whatever Content-Length says */
                const char *last = v;
                for (size_t i = 0; i < vlen; i++)
                        if (v[i] == ',')
                                last = v + i + 1;
                while (last < v + vlen && (*last == ' ' || *last == '\t'))
                        last++;
                *te = name_is(last, (size_t) (v + vlen - last), "chunked") ? TE_CHUNKED : TE_OTHER;
        } else if (name_is(name, nlen, "location") && r->status >= 300 && r->status < 400) {
                free(r->location);
                r->location = strndup(v, vlen);
                if (!r->location)
                        return fail_errno(r, -ENOMEM, "out of memory");
        }
        return 0;
}

/* Parses one complete head p[0..n). 0: an interim response (another head follows);
 * 1: the final response's head; HTTP_RESP_ERROR. */
static int parse_head(struct http_resp *r, const char *p, size_t n)
{
        const char *end = p + n, *line = p;
        int te = TE_NONE;
        int64_t length = -1;

        r->heads_len += n;
        for (; line < end;) { /* the head ends with a blank line: every line has its LF */
                const char *lf = memchr(line, '\n', (size_t) (end - line)), *eol = lf, *v;
                size_t nlen, vlen;
                int status;

                if (eol > line && eol[-1] == '\r')
                        eol--;
                if (line == p) {
                        if ((status = http_status_line(p, (size_t) (eol - p))) < 0)
                                return fail(r, "malformed status line");
                        r->status = (unsigned) status;
                        free(r->location);
                        r->location = NULL;
                } else if (http_header_split(line, (size_t) (eol - line), &nlen, &v, &vlen) &&
                           header(r, line, nlen, v, vlen, &te, &length) < 0) {
                        return HTTP_RESP_ERROR;
                }
                line = lf + 1;
        }
        if (r->status < 200 && r->status != 101)
                return 0;
        if (r->no_body || r->status == 101 || r->status == 204 || r->status == 304)
                r->state = ST_DONE;
        else if (te == TE_CHUNKED) {
                r->state = ST_CHUNKED;
                r->chunk_state = CH_SIZE0;
        } else if (te == TE_OTHER)
                r->state = ST_UNTIL_EOF;
        else if (length == 0)
                r->state = ST_DONE;
        else if (length > 0) {
                r->state = ST_LENGTH;
                r->remaining = (uint64_t) length;
        } else
                r->state = ST_UNTIL_EOF;
        return 1;
}

/* Takes head bytes from buf; *used: how many were part of the head. Returns
 * HTTP_RESP_MORE when all of buf was (a partial head kept), else as parse_head. */
static int head_feed(struct http_resp *r, const char *buf, size_t len, size_t *used)
{
        size_t allowed = r->head_max > r->heads_len ? r->head_max - r->heads_len : 0, e, old = r->head_len, take;

        if (old == 0 && (e = head_end(buf, len < allowed ? len : allowed, 0)) > 0) {
                *used = e; /* the whole head is in buf: parsed in place */
                return parse_head(r, buf, e);
        }
        take = len;
        if (old + take > allowed)
                take = allowed > old ? allowed - old : 0;
        if (take == 0) /* no end so far, and nothing more fits */
                return fail(r, "response headers too large");
        if (old + take > r->head_cap) {
                size_t cap = r->head_cap ? r->head_cap : 1024;
                char *h;
                while (cap < old + take)
                        cap *= 2;
                if (cap > allowed)
                        cap = allowed;
                h = realloc(r->head, cap);
                if (!h)
                        return fail_errno(r, -ENOMEM, "out of memory");
                r->head = h;
                r->head_cap = cap;
        }
        memcpy(r->head + old, buf, take);
        r->head_len += take;
        e = head_end(r->head, r->head_len, old > 2 ? old - 2 : 0);
        if (e == 0) {
                *used = len;
                return take < len ? fail(r, "response headers too large") : HTTP_RESP_MORE;
        }
        *used = e - old;
        r->head_len = 0;
        return parse_head(r, r->head, e);
}

static int body(struct http_resp *r, const char *p, size_t n, http_body_fn fn, void *data)
{
        if (n > 0 && fn && !fn(p, n, data)) {
                r->state = ST_ENOUGH;
                return HTTP_RESP_ENOUGH;
        }
        return HTTP_RESP_MORE;
}

/* Chunked framing; *used: bytes consumed. */
static int chunked_feed(struct http_resp *r, const char *p, size_t n, size_t *used, http_body_fn fn, void *data)
{
        size_t i = 0;

        while (i < n) {
                char c = p[i];
                int h;

                switch (r->chunk_state) {
                case CH_SIZE0:
                case CH_SIZE:
                        h = hexval(c);
                        if (h >= 0) {
                                if (r->remaining > CHUNK_SIZE_MAX)
                                        return fail(r, "malformed chunked body");
                                r->remaining = r->remaining * 16 + (uint64_t) h;
                                r->chunk_state = CH_SIZE;
                                i++;
                                break;
                        }
                        if (r->chunk_state == CH_SIZE0)
                                return fail(r, "malformed chunked body");
                        r->chunk_state = CH_EXT;
                        /* fall through: this byte ends the size */
                        /* FALLTHROUGH */
                case CH_EXT:
                        i++;
                        if (c != '\n')
                                break;
                        if (r->remaining == 0) {
                                r->chunk_state = CH_TRAILER;
                                r->line_empty = true;
                        } else
                                r->chunk_state = CH_DATA;
                        break;
                case CH_DATA: {
                        size_t take = n - i < r->remaining ? n - i : (size_t) r->remaining;
                        int rc = body(r, p + i, take, fn, data);
                        i += take;
                        r->remaining -= take;
                        if (rc != HTTP_RESP_MORE) {
                                *used = i;
                                return rc;
                        }
                        if (r->remaining == 0)
                                r->chunk_state = CH_DATA_CR;
                        break;
                }
                case CH_DATA_CR:
                case CH_DATA_LF:
                        if (c == '\r' && r->chunk_state == CH_DATA_CR)
                                r->chunk_state = CH_DATA_LF;
                        else if (c == '\n')
                                r->chunk_state = CH_SIZE0;
                        else
                                return fail(r, "malformed chunked body");
                        i++;
                        break;
                case CH_TRAILER:
                        i++;
                        if (c == '\n') {
                                if (r->line_empty) {
                                        r->state = ST_DONE;
                                        *used = i;
                                        return HTTP_RESP_DONE;
                                }
                                r->line_empty = true;
                        } else if (c != '\r')
                                r->line_empty = false;
                        break;
                }
        }
        *used = n;
        return HTTP_RESP_MORE;
}

/* What every call returns once the response ended, or failed. */
static int ended(const struct http_resp *r)
{
        switch (r->state) {
        case ST_DONE:
                return HTTP_RESP_DONE;
        case ST_ENOUGH:
                return HTTP_RESP_ENOUGH;
        default:
                return HTTP_RESP_ERROR;
        }
}

int http_resp_feed(struct http_resp *r, const char *buf, size_t len, http_body_fn fn, void *data)
{
        size_t off = 0;

        for (;;) {
                size_t used = 0, take;
                int rc;

                switch (r->state) {
                case ST_HEAD:
                        if (off == len)
                                return HTTP_RESP_MORE;
                        rc = head_feed(r, buf + off, len - off, &used);
                        off += used;
                        if (rc < 0)
                                return rc;
                        break;
                case ST_LENGTH:
                        take = len - off < r->remaining ? len - off : (size_t) r->remaining;
                        rc = body(r, buf + off, take, fn, data);
                        off += take;
                        r->remaining -= take;
                        if (rc != HTTP_RESP_MORE)
                                return rc;
                        if (r->remaining == 0)
                                r->state = ST_DONE;
                        else
                                return HTTP_RESP_MORE;
                        break;
                case ST_CHUNKED:
                        rc = chunked_feed(r, buf + off, len - off, &used, fn, data);
                        off += used;
                        if (rc != HTTP_RESP_MORE || off == len)
                                return rc;
                        break;
                case ST_UNTIL_EOF:
                        rc = body(r, buf + off, len - off, fn, data);
                        return rc;
                default:
                        return ended(r);
                }
        }
}

int http_resp_eof(struct http_resp *r)
{
        switch (r->state) {
        case ST_HEAD:
                return fail(r, r->heads_len == 0 && r->head_len == 0 ? "empty reply from server"
                                                                     : "connection closed before the response ended");
        case ST_LENGTH:
        case ST_CHUNKED:
                return fail(r, "connection closed before the response ended");
        case ST_UNTIL_EOF:
                r->state = ST_DONE;
                return HTTP_RESP_DONE;
        default:
                return ended(r);
        }
}

void http_resp_free(struct http_resp *r)
{
        free(r->head);
        free(r->location);
        r->head = r->location = NULL;
        r->head_len = r->head_cap = 0;
}
