/* Unit tests for probes/httpresp.c, the incremental HTTP/1.x response parser. Every
 * response is fed in one call, split in two at every position, byte by byte (with empty
 * feeds in between) and in pieces of 2, 3, 7 and 64 bytes, each piece in a buffer of
 * its own size (so ASan sees a read past it); all of these must give the same result,
 * status, Location, error and body bytes. After a result other than MORE, one more feed
 * and http_resp_eof must return the same result and deliver nothing.
 *
 * Covered: status lines (1.0/1.1, no reason, bare LF, malformed, HTTP/2), Content-Length
 * bodies (exact, extra bytes ignored, 0, duplicates, malformed, huge), chunked bodies
 * (extensions, trailers, hex case, bare LF, malformed framing, "gzip, chunked"), bodies
 * until EOF, EOF everywhere, interim 1xx responses, 101/204/304/HEAD, Location, the
 * head_max budget (exact, one byte over, in pieces, shared with 1xx heads) and the body
 * callback asking to stop. */
#include <check.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "httpresp.h"

#define HEAD_MAX 16384 /* as the http probe sets it (HTTP_MAX_HEADER_BYTES) */
#define IN(lit) .in = lit, .len = sizeof(lit) - 1
#define BODY(lit) .body = lit, .body_len = sizeof(lit) - 1

#define TOO_LARGE "response headers too large"
#define CLOSED "connection closed before the response ended"
#define EMPTY "empty reply from server"
#define BAD_STATUS "malformed status line"
#define BAD_LENGTH "malformed Content-Length"
#define BAD_CHUNKED "malformed chunked body"

/* The body bytes delivered, in order. */
struct sink {
        char *buf;
        size_t len, cap;
        size_t stop_after; /* return false once this many bytes arrived */
        unsigned calls;
        bool stopped;
};

static bool sink_body(const char *p, size_t n, void *data)
{
        struct sink *s = data;

        ck_assert_msg(!s->stopped, "body bytes delivered after the callback returned false");
        ck_assert_msg(n > 0, "an empty body piece");
        if (s->len + n > s->cap) {
                size_t cap = s->cap ? s->cap : 64;
                char *b;

                while (cap < s->len + n)
                        cap *= 2;
                b = realloc(s->buf, cap);
                ck_assert_ptr_nonnull(b);
                s->buf = b;
                s->cap = cap;
        }
        memcpy(s->buf + s->len, p, n);
        s->len += n;
        s->calls++;
        if (s->len >= s->stop_after) {
                s->stopped = true;
                return false;
        }
        return true;
}

/* What feeding a response must give. */
struct expect {
        /* settings */
        bool no_body;      /* a HEAD request */
        size_t head_max;   /* 0: HEAD_MAX */
        bool eof;          /* the peer closes after the last byte */
        size_t stop_after; /* the callback returns false after this many bytes (0: never) */
        /* results */
        int rc;
        unsigned status;      /* 0: not checked */
        const char *body;     /* the body bytes delivered (all of them unless ENOUGH) */
        size_t body_len;      /* with body */
        const char *error;    /* r.error with HTTP_RESP_ERROR */
        const char *location; /* NULL: r.location must be NULL */
};

static const char *rc_name(int rc)
{
        switch (rc) {
        case HTTP_RESP_MORE:
                return "MORE";
        case HTTP_RESP_DONE:
                return "DONE";
        case HTTP_RESP_ENOUGH:
                return "ENOUGH";
        case HTTP_RESP_ERROR:
                return "ERROR";
        default:
                return "?";
        }
}

/* Feeds a copy of in[off..off+n) in a buffer of exactly n bytes. */
static int feed_piece(struct http_resp *r, const char *in, size_t n, struct sink *s)
{
        char *piece = malloc(n ? n : 1);
        int rc;

        ck_assert_ptr_nonnull(piece);
        memcpy(piece, in, n);
        rc = http_resp_feed(r, piece, n, sink_body, s);
        free(piece);
        return rc;
}

/* One run: in[0..cut) first, then the rest in pieces of step bytes (0: one piece); with
 * empties, an empty feed before each piece. Asserts the outcome against e. */
static void run_one(const char *in, size_t len, size_t cut, size_t step, bool empties, const struct expect *e,
                    const char *mode)
{
        struct http_resp r = { .no_body = e->no_body, .head_max = e->head_max ? e->head_max : HEAD_MAX };
        struct sink s = { .stop_after = e->stop_after ? e->stop_after : SIZE_MAX };
        const char *err;
        size_t off = 0;
        unsigned calls;
        int rc = HTTP_RESP_MORE;

        while (rc == HTTP_RESP_MORE && off < len) {
                size_t n = off < cut ? cut - off : step ? step : len - off;

                if (n > len - off)
                        n = len - off;
                if (empties) {
                        rc = feed_piece(&r, in + off, 0, &s);
                        ck_assert_msg(rc == HTTP_RESP_MORE, "%s: an empty feed at %zu gave %s", mode, off, rc_name(rc));
                }
                rc = feed_piece(&r, in + off, n, &s);
                ck_assert_msg(rc >= HTTP_RESP_ERROR && rc <= HTTP_RESP_ENOUGH, "%s: feed returned %d", mode, rc);
                off += n;
        }
        if (rc == HTTP_RESP_MORE && e->eof)
                rc = http_resp_eof(&r);

        ck_assert_msg(rc == e->rc, "%s: got %s (%s), want %s", mode, rc_name(rc), r.error ? r.error : "no error",
                      rc_name(e->rc));
        if (rc == HTTP_RESP_ERROR) {
                ck_assert_msg(r.error != NULL, "%s: ERROR without a reason", mode);
                if (e->error)
                        ck_assert_msg(strcmp(r.error, e->error) == 0, "%s: error \"%s\", want \"%s\"", mode, r.error,
                                      e->error);
        } else {
                ck_assert_msg(r.error == NULL, "%s: error \"%s\" without ERROR", mode, r.error);
        }
        if (e->status)
                ck_assert_msg(r.status == e->status, "%s: status %u, want %u", mode, r.status, e->status);
        if (e->location)
                ck_assert_msg(r.location && strcmp(r.location, e->location) == 0, "%s: location \"%s\", want \"%s\"",
                              mode, r.location ? r.location : "(null)", e->location);
        else
                ck_assert_msg(r.location == NULL, "%s: location \"%s\", want none", mode, r.location);
        if (rc == HTTP_RESP_ENOUGH) {
                /* the callback may have had more than it asked for in its last piece */
                ck_assert_msg(s.len >= s.stop_after && s.len <= e->body_len, "%s: %zu body bytes before stopping", mode,
                              s.len);
                ck_assert_msg(memcmp(s.buf, e->body, s.len) == 0, "%s: body bytes differ", mode);
        } else {
                ck_assert_msg(s.len == e->body_len, "%s: %zu body bytes, want %zu", mode, s.len, e->body_len);
                ck_assert_msg(s.len == 0 || memcmp(s.buf, e->body, s.len) == 0, "%s: body bytes differ", mode);
                ck_assert_msg(s.len > 0 || s.calls == 0, "%s: callback called with no body", mode);
        }

        if (rc != HTTP_RESP_MORE) {
                /* a final result sticks: more bytes and EOF change nothing */
                static const char more[] = "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx";

                calls = s.calls;
                err = r.error;
                ck_assert_msg(feed_piece(&r, more, sizeof(more) - 1, &s) == rc, "%s: a feed after %s changed it", mode,
                              rc_name(rc));
                ck_assert_msg(http_resp_eof(&r) == rc, "%s: EOF after %s changed it", mode, rc_name(rc));
                ck_assert_msg(feed_piece(&r, more, sizeof(more) - 1, &s) == rc, "%s: a feed after EOF after %s", mode,
                              rc_name(rc));
                ck_assert_msg(s.calls == calls, "%s: body delivered after %s", mode, rc_name(rc));
                ck_assert_msg(r.error == err, "%s: error changed after %s", mode, rc_name(rc));
        }
        http_resp_free(&r);
        http_resp_free(&r); /* idempotent */
        free(s.buf);
}

/* Every way of splitting in[0..len) gives e. */
static void expect_all(const char *in, size_t len, const struct expect *e)
{
        static const size_t steps[] = { 2, 3, 7, 64 };
        char mode[64];

        run_one(in, len, 0, 0, false, e, "in one piece");
        for (size_t cut = 1; cut < len; cut++) {
                (void) snprintf(mode, sizeof(mode), "split at %zu of %zu", cut, len);
                run_one(in, len, cut, 0, false, e, mode);
        }
        run_one(in, len, 0, 1, true, e, "byte by byte");
        for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
                (void) snprintf(mode, sizeof(mode), "in pieces of %zu", steps[i]);
                run_one(in, len, 0, steps[i], false, e, mode);
        }
}

struct tcase {
        const char *in;
        size_t len;
        struct expect e;
};

#define RUN_TABLE(table)                                                                                               \
        do {                                                                                                           \
                const struct tcase *c = &(table)[_i];                                                                  \
                expect_all(c->in, c->len, &c->e);                                                                      \
        } while (0)
#define N(table) (sizeof(table) / sizeof((table)[0]))

/* ---- status lines ---------------------------------------------------------------- */

static const struct tcase status_cases[] = {
        { IN("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"),
          { .rc = HTTP_RESP_DONE, .status = 200, BODY("hello") } },
        { IN("HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\nhello"),
          { .rc = HTTP_RESP_DONE, .status = 200, BODY("hello") } },
        { IN("HTTP/1.0 404 Not Found\r\nServer: x\r\n\r\ngone"),
          { .eof = true, .rc = HTTP_RESP_DONE, .status = 404, BODY("gone") } },
        /* no reason phrase, with and without the space */
        { IN("HTTP/1.1 503\r\nContent-Length: 2\r\n\r\nno"), { .rc = HTTP_RESP_DONE, .status = 503, BODY("no") } },
        { IN("HTTP/1.1 200 \r\nContent-Length: 2\r\n\r\nok"), { .rc = HTTP_RESP_DONE, .status = 200, BODY("ok") } },
        /* bare LF line endings, and a mix */
        { IN("HTTP/1.1 200\nContent-Length: 2\n\nok"), { .rc = HTTP_RESP_DONE, .status = 200, BODY("ok") } },
        { IN("HTTP/1.1 200 OK\nContent-Length: 3\nX: y\n\nabc"), { .rc = HTTP_RESP_DONE, .status = 200, BODY("abc") } },
        { IN("HTTP/1.1 200 OK\r\nContent-Length: 3\n\r\nabc"), { .rc = HTTP_RESP_DONE, .status = 200, BODY("abc") } },
        { IN("HTTP/1.1 599 Custom\r\nContent-Length: 0\r\n\r\n"), { .rc = HTTP_RESP_DONE, .status = 599 } },
        { IN("HTTP/1.1 418 I'm a teapot\r\nContent-Length: 1\r\n\r\n!"),
          { .rc = HTTP_RESP_DONE, .status = 418, BODY("!") } },
        /* a header line without a colon is ignored */
        { IN("HTTP/1.1 200 OK\r\nnonsense\r\nContent-Length: 2\r\n\r\nok"),
          { .rc = HTTP_RESP_DONE, .status = 200, BODY("ok") } },
};

START_TEST(test_status)
{
        RUN_TABLE(status_cases);
}
END_TEST

static const struct tcase bad_status_cases[] = {
        { IN("HTTP/1.1 20 OK\r\n\r\n"), { .rc = HTTP_RESP_ERROR, .error = BAD_STATUS } },
        { IN("HTTP/1.1 2000 OK\r\n\r\n"), { .rc = HTTP_RESP_ERROR, .error = BAD_STATUS } },
        { IN("HTTP/1.1 600 Nope\r\n\r\n"), { .rc = HTTP_RESP_ERROR, .error = BAD_STATUS } },
        { IN("HTTP/1.1 099 Nope\r\n\r\n"), { .rc = HTTP_RESP_ERROR, .error = BAD_STATUS } },
        { IN("HTTP/1.1 2x0 OK\r\n\r\n"), { .rc = HTTP_RESP_ERROR, .error = BAD_STATUS } },
        { IN("HTTP/1.1 200OK\r\n\r\n"), { .rc = HTTP_RESP_ERROR, .error = BAD_STATUS } },
        { IN("HTTP/1.1  200 OK\r\n\r\n"), { .rc = HTTP_RESP_ERROR, .error = BAD_STATUS } },
        { IN("http/1.1 200 OK\r\n\r\n"), { .rc = HTTP_RESP_ERROR, .error = BAD_STATUS } },
        { IN("HTTP/1.x 200 OK\r\n\r\n"), { .rc = HTTP_RESP_ERROR, .error = BAD_STATUS } },
        { IN(" HTTP/1.1 200 OK\r\n\r\n"), { .rc = HTTP_RESP_ERROR, .error = BAD_STATUS } },
        { IN("HTTP/1.1\r\n\r\n"), { .rc = HTTP_RESP_ERROR, .error = BAD_STATUS } },
        { IN("HTTP/2 200\r\n\r\n"), { .rc = HTTP_RESP_ERROR, .error = BAD_STATUS } },
        { IN("HTTP/2.0 200 OK\r\n\r\n"), { .rc = HTTP_RESP_ERROR, .error = BAD_STATUS } },
        { IN("ICY 200 OK\r\n\r\n"), { .rc = HTTP_RESP_ERROR, .error = BAD_STATUS } },
        { IN("<html>\n\n<body>"), { .rc = HTTP_RESP_ERROR, .error = BAD_STATUS } },
        { IN("\r\n\r\n"), { .rc = HTTP_RESP_ERROR, .error = BAD_STATUS } },
        { IN("\n\n"), { .rc = HTTP_RESP_ERROR, .error = BAD_STATUS } },
        /* the HTTP/2 connection preface */
        { IN("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), { .rc = HTTP_RESP_ERROR, .error = BAD_STATUS } },
        /* an h2-only server's binary SETTINGS + GOAWAY frames: no head ever ends */
        { IN("\x00\x00\x00\x04\x00\x00\x00\x00\x00"
             "\x00\x00\x08\x07\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01"),
          { .eof = true, .rc = HTTP_RESP_ERROR, .error = CLOSED } },
};

START_TEST(test_bad_status)
{
        RUN_TABLE(bad_status_cases);
}
END_TEST

/* ---- Content-Length ---------------------------------------------------------------- */

#define H200 "HTTP/1.1 200 OK\r\n"

static const struct tcase length_cases[] = {
        /* bytes after the body are not delivered */
        { IN(H200 "Content-Length: 5\r\n\r\nhelloEXTRA BYTES"),
          { .rc = HTTP_RESP_DONE, .status = 200, BODY("hello") } },
        { IN(H200 "Content-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx"),
          { .rc = HTTP_RESP_DONE, .status = 200, BODY("ok") } },
        /* 0: done at the end of the head, the callback never called */
        { IN(H200 "Content-Length: 0\r\n\r\n"), { .rc = HTTP_RESP_DONE, .status = 200 } },
        { IN(H200 "Content-Length: 0\r\n\r\ntrailing"), { .rc = HTTP_RESP_DONE, .status = 200 } },
        { IN(H200 "Content-Length: 000\r\n\r\n"), { .rc = HTTP_RESP_DONE, .status = 200 } },
        /* names are case-insensitive, values trimmed */
        { IN(H200 "content-LENGTH:\t 3 \t\r\n\r\nabc"), { .rc = HTTP_RESP_DONE, BODY("abc") } },
        /* the same value twice is fine */
        { IN(H200 "Content-Length: 3\r\nContent-Length: 3\r\n\r\nabc"), { .rc = HTTP_RESP_DONE, BODY("abc") } },
        /* the largest accepted value (2^62): a body that cannot end but by EOF */
        { IN(H200 "Content-Length: 4611686018427387904\r\n\r\nabc"),
          { .eof = true, .rc = HTTP_RESP_ERROR, BODY("abc"), .error = CLOSED } },
        /* MORE until all the bytes are there */
        { IN(H200 "Content-Length: 10\r\n\r\nhello"), { .rc = HTTP_RESP_MORE, BODY("hello") } },
        /* malformed or conflicting values */
        { IN(H200 "Content-Length: 3\r\nContent-Length: 4\r\n\r\nabcd"),
          { .rc = HTTP_RESP_ERROR, .error = BAD_LENGTH } },
        { IN(H200 "Content-Length: 4\r\nX: y\r\ncontent-length: 3\r\n\r\nabcd"),
          { .rc = HTTP_RESP_ERROR, .error = BAD_LENGTH } },
        { IN(H200 "Content-Length: abc\r\n\r\n"), { .rc = HTTP_RESP_ERROR, .error = BAD_LENGTH } },
        { IN(H200 "Content-Length: -1\r\n\r\n"), { .rc = HTTP_RESP_ERROR, .error = BAD_LENGTH } },
        { IN(H200 "Content-Length: +3\r\n\r\nabc"), { .rc = HTTP_RESP_ERROR, .error = BAD_LENGTH } },
        { IN(H200 "Content-Length: 3 4\r\n\r\nabc"), { .rc = HTTP_RESP_ERROR, .error = BAD_LENGTH } },
        { IN(H200 "Content-Length: 3,3\r\n\r\nabc"), { .rc = HTTP_RESP_ERROR, .error = BAD_LENGTH } },
        { IN(H200 "Content-Length: 0x10\r\n\r\n"), { .rc = HTTP_RESP_ERROR, .error = BAD_LENGTH } },
        { IN(H200 "Content-Length: 1e3\r\n\r\n"), { .rc = HTTP_RESP_ERROR, .error = BAD_LENGTH } },
        { IN(H200 "Content-Length:\r\n\r\n"), { .rc = HTTP_RESP_ERROR, .error = BAD_LENGTH } },
        { IN(H200 "Content-Length:   \r\n\r\n"), { .rc = HTTP_RESP_ERROR, .error = BAD_LENGTH } },
        { IN(H200 "Content-Length: 9999999999999999999\r\n\r\n"), { .rc = HTTP_RESP_ERROR, .error = BAD_LENGTH } },
        { IN(H200 "Content-Length: 100000000000000000000000\r\n\r\n"), { .rc = HTTP_RESP_ERROR, .error = BAD_LENGTH } },
};

START_TEST(test_length)
{
        RUN_TABLE(length_cases);
}
END_TEST

/* A 1000-byte body of every byte value (CR, LF and NUL included) arrives whole and in order. */
START_TEST(test_length_binary_body)
{
        char body[1000], in[1100];
        struct expect e = { .rc = HTTP_RESP_DONE, .status = 200, .body = body, .body_len = sizeof(body) };
        int n;

        for (size_t i = 0; i < sizeof(body); i++)
                body[i] = (char) (i * 31 + 7);
        n = snprintf(in, sizeof(in), H200 "Content-Length: %zu\r\n\r\n", sizeof(body));
        ck_assert_int_gt(n, 0);
        memcpy(in + n, body, sizeof(body));
        memcpy(in + n + sizeof(body), "XYZ", 3);
        expect_all(in, (size_t) n + sizeof(body) + 3, &e);
}
END_TEST

/* ---- chunked ----------------------------------------------------------------------- */

#define HCHUNKED H200 "Transfer-Encoding: chunked\r\n\r\n"

static const struct tcase chunked_cases[] = {
        { IN(HCHUNKED "5\r\nhello\r\n7\r\n, world\r\n0\r\n\r\n"),
          { .rc = HTTP_RESP_DONE, .status = 200, BODY("hello, world") } },
        /* extensions on data chunks and on the last chunk */
        { IN(HCHUNKED "5;a=b\r\nhello\r\n6 ; q=\"x\"\r\n world\r\n0;last\r\n\r\n"),
          { .rc = HTTP_RESP_DONE, BODY("hello world") } },
        /* trailers, then bytes after the end that are not delivered */
        { IN(HCHUNKED "3\r\nabc\r\n0\r\nX-Checksum: 1\r\nX-Other: 2\r\n\r\nGARBAGE"),
          { .rc = HTTP_RESP_DONE, BODY("abc") } },
        /* hex in both cases, leading zeros */
        { IN(HCHUNKED "A\r\n0123456789\r\n1F\r\nabcdefghijklmnopqrstuvwxyz01234\r\n0\r\n\r\n"),
          { .rc = HTTP_RESP_DONE, BODY("0123456789abcdefghijklmnopqrstuvwxyz01234") } },
        { IN(HCHUNKED "1f\r\nabcdefghijklmnopqrstuvwxyz01234\r\nbA\r\n0123456789abcdefghijklmnopqrstuvwxyz0123456789"
                      "abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrst"
                      "uvwxyz0123456789abcdefghijklmnopqrstuvwxyz012345\r\n0\r\n\r\n"),
          { .rc = HTTP_RESP_DONE,
            BODY("abcdefghijklmnopqrstuvwxyz01234"
                 "0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijkl"
                 "mnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz012345") } },
        { IN(HCHUNKED "0005\r\nhello\r\n0000\r\n\r\n"), { .rc = HTTP_RESP_DONE, BODY("hello") } },
        /* bare LF framing */
        { IN(H200 "Transfer-Encoding: chunked\n\n5\nhello\n0\n\n"), { .rc = HTTP_RESP_DONE, BODY("hello") } },
        /* chunk data holding CR LF and what looks like framing */
        { IN(HCHUNKED "7\r\n\r\n0\r\n\r\n\r\n0\r\n\r\n"), { .rc = HTTP_RESP_DONE, BODY("\r\n0\r\n\r\n") } },
        /* chunked when it is the last coding; the name is case-insensitive */
        { IN(H200 "Transfer-Encoding: gzip, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"),
          { .rc = HTTP_RESP_DONE, BODY("hello") } },
        { IN(H200 "Transfer-Encoding: gzip,chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"),
          { .rc = HTTP_RESP_DONE, BODY("hello") } },
        { IN(H200 "transfer-encoding: CHUNKED\r\n\r\n5\r\nhello\r\n0\r\n\r\n"),
          { .rc = HTTP_RESP_DONE, BODY("hello") } },
        { IN(H200 "Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"),
          { .rc = HTTP_RESP_DONE, BODY("hello") } },
        /* chunked is not the last coding: the body runs until EOF, framing and all */
        { IN(H200 "Transfer-Encoding: chunked, gzip\r\n\r\n5\r\nhello\r\n0\r\n\r\n"),
          { .eof = true, .rc = HTTP_RESP_DONE, BODY("5\r\nhello\r\n0\r\n\r\n") } },
        /* another last coding wins over Content-Length: the body runs until EOF */
        { IN(H200 "Content-Length: 2\r\nTransfer-Encoding: gzip\r\n\r\nhello"),
          { .eof = true, .rc = HTTP_RESP_DONE, BODY("hello") } },
        /* chunked wins over Content-Length */
        { IN(H200 "Content-Length: 100\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"),
          { .rc = HTTP_RESP_DONE, BODY("hello") } },
        /* an empty chunked body */
        { IN(HCHUNKED "0\r\n\r\n"), { .rc = HTTP_RESP_DONE } },
        /* MORE until the last chunk and the blank line */
        { IN(HCHUNKED "5\r\nhello\r\n0\r\n"), { .rc = HTTP_RESP_MORE, BODY("hello") } },
        /* malformed sizes */
        { IN(HCHUNKED "zz\r\nhello\r\n0\r\n\r\n"), { .rc = HTTP_RESP_ERROR, .error = BAD_CHUNKED } },
        { IN(HCHUNKED "\r\n5\r\nhello\r\n0\r\n\r\n"), { .rc = HTTP_RESP_ERROR, .error = BAD_CHUNKED } },
        { IN(HCHUNKED "-5\r\nhello\r\n0\r\n\r\n"), { .rc = HTTP_RESP_ERROR, .error = BAD_CHUNKED } },
        { IN(HCHUNKED " 5\r\nhello\r\n0\r\n\r\n"), { .rc = HTTP_RESP_ERROR, .error = BAD_CHUNKED } },
        { IN(HCHUNKED ";x\r\nhello\r\n0\r\n\r\n"), { .rc = HTTP_RESP_ERROR, .error = BAD_CHUNKED } },
        { IN(HCHUNKED "5\r\nhello\r\nG\r\n"), { .rc = HTTP_RESP_ERROR, BODY("hello"), .error = BAD_CHUNKED } },
        { IN(HCHUNKED "FFFFFFFFFFFFFFFFF\r\n"), { .rc = HTTP_RESP_ERROR, .error = BAD_CHUNKED } },
        /* no CRLF after the data */
        { IN(HCHUNKED "5\r\nhelloX\r\n0\r\n\r\n"), { .rc = HTTP_RESP_ERROR, BODY("hello"), .error = BAD_CHUNKED } },
        { IN(HCHUNKED "5\r\nhello\rX\n0\r\n\r\n"), { .rc = HTTP_RESP_ERROR, BODY("hello"), .error = BAD_CHUNKED } },
        { IN(HCHUNKED "5\r\nhello\r\r\n0\r\n\r\n"), { .rc = HTTP_RESP_ERROR, BODY("hello"), .error = BAD_CHUNKED } },
        /* more data than the size said */
        { IN(HCHUNKED "3\r\nhello\r\n0\r\n\r\n"), { .rc = HTTP_RESP_ERROR, BODY("hel"), .error = BAD_CHUNKED } },
};

START_TEST(test_chunked)
{
        RUN_TABLE(chunked_cases);
}
END_TEST

/* The 1000-byte body of test_length_binary_body in chunks of 1, 16, 255 (ff), 256 (100),
 * 300 (12C) and the rest, with sizes in mixed case. */
START_TEST(test_chunked_binary_body)
{
        static const size_t sizes[] = { 1, 16, 255, 256, 300, 172 };
        char body[1000], in[1400];
        struct expect e = { .rc = HTTP_RESP_DONE, .status = 200, .body = body, .body_len = sizeof(body) };
        size_t n = 0, at = 0;

        for (size_t i = 0; i < sizeof(body); i++)
                body[i] = (char) (i * 31 + 7);
        n = (size_t) snprintf(in, sizeof(in), "%s", HCHUNKED);
        for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
                n += (size_t) snprintf(in + n, sizeof(in) - n, i % 2 ? "%zX\r\n" : "%zx\r\n", sizes[i]);
                memcpy(in + n, body + at, sizes[i]);
                n += sizes[i];
                at += sizes[i];
                memcpy(in + n, "\r\n", 2);
                n += 2;
        }
        ck_assert_uint_eq(at, sizeof(body));
        memcpy(in + n, "0\r\n\r\n", 5);
        n += 5;
        ck_assert_uint_le(n, sizeof(in));
        expect_all(in, n, &e);
}
END_TEST

/* ---- EOF --------------------------------------------------------------------------- */

static const struct tcase eof_cases[] = {
        /* neither Content-Length nor chunked: the body ends with the connection */
        { IN(H200 "\r\nstreamed until close"), { .eof = true, .rc = HTTP_RESP_DONE, BODY("streamed until close") } },
        { IN(H200 "\r\nstreamed until close"), { .rc = HTTP_RESP_MORE, BODY("streamed until close") } },
        { IN(H200 "Server: x\r\n\r\n"), { .eof = true, .rc = HTTP_RESP_DONE, .status = 200 } },
        /* nothing at all */
        { "", 0, { .eof = true, .rc = HTTP_RESP_ERROR, .error = EMPTY } },
        /* in a head */
        { IN("H"), { .eof = true, .rc = HTTP_RESP_ERROR, .error = CLOSED } },
        { IN(H200 "Content-Le"), { .eof = true, .rc = HTTP_RESP_ERROR, .error = CLOSED } },
        { IN(H200), { .eof = true, .rc = HTTP_RESP_ERROR, .error = CLOSED } },
        { IN(H200 "Content-Length: 2\r\n\r"), { .eof = true, .rc = HTTP_RESP_ERROR, .error = CLOSED } },
        /* after an interim response only: not an empty reply */
        { IN("HTTP/1.1 100 Continue\r\n\r\n"), { .eof = true, .rc = HTTP_RESP_ERROR, .error = CLOSED } },
        /* in a Content-Length body */
        { IN(H200 "Content-Length: 10\r\n\r\n"), { .eof = true, .rc = HTTP_RESP_ERROR, .error = CLOSED } },
        { IN(H200 "Content-Length: 10\r\n\r\nhello"),
          { .eof = true, .rc = HTTP_RESP_ERROR, BODY("hello"), .error = CLOSED } },
        /* everywhere in a chunked body */
        { IN(HCHUNKED), { .eof = true, .rc = HTTP_RESP_ERROR, .error = CLOSED } },
        { IN(HCHUNKED "5"), { .eof = true, .rc = HTTP_RESP_ERROR, .error = CLOSED } },
        { IN(HCHUNKED "5;ext"), { .eof = true, .rc = HTTP_RESP_ERROR, .error = CLOSED } },
        { IN(HCHUNKED "5\r\nhel"), { .eof = true, .rc = HTTP_RESP_ERROR, BODY("hel"), .error = CLOSED } },
        { IN(HCHUNKED "5\r\nhello\r"), { .eof = true, .rc = HTTP_RESP_ERROR, BODY("hello"), .error = CLOSED } },
        { IN(HCHUNKED "5\r\nhello\r\n"), { .eof = true, .rc = HTTP_RESP_ERROR, BODY("hello"), .error = CLOSED } },
        { IN(HCHUNKED "5\r\nhello\r\n0\r\n"), { .eof = true, .rc = HTTP_RESP_ERROR, BODY("hello"), .error = CLOSED } },
        { IN(HCHUNKED "0\r\nX: y\r\n"), { .eof = true, .rc = HTTP_RESP_ERROR, .error = CLOSED } },
        /* EOF once done changes nothing */
        { IN(H200 "Content-Length: 2\r\n\r\nok"), { .eof = true, .rc = HTTP_RESP_DONE, BODY("ok") } },
};

START_TEST(test_eof)
{
        RUN_TABLE(eof_cases);
}
END_TEST

/* Every strict prefix of framed responses ends in ERROR on EOF: "empty reply" for none. */
START_TEST(test_eof_every_prefix)
{
        static const char *const full[] = {
                H200 "Content-Length: 5\r\n\r\nhello",
                HCHUNKED "5\r\nhello\r\n0\r\nX: y\r\n\r\n",
                "HTTP/1.1 100 Continue\r\n\r\n" H200 "Content-Length: 2\r\n\r\nok",
        };

        for (size_t f = 0; f < sizeof(full) / sizeof(full[0]); f++) {
                size_t len = strlen(full[f]);

                for (size_t k = 0; k < len; k++) {
                        struct http_resp r = { .head_max = HEAD_MAX };
                        struct sink s = { .stop_after = SIZE_MAX };

                        ck_assert_int_eq(feed_piece(&r, full[f], k, &s), HTTP_RESP_MORE);
                        ck_assert_int_eq(http_resp_eof(&r), HTTP_RESP_ERROR);
                        ck_assert_str_eq(r.error, k == 0 ? EMPTY : CLOSED);
                        ck_assert_int_eq(http_resp_eof(&r), HTTP_RESP_ERROR);
                        http_resp_free(&r);
                        free(s.buf);
                }
        }
}
END_TEST

/* ---- interim responses, and the ones without a body ---------------------------------- */

#define H100 "HTTP/1.1 100 Continue\r\n\r\n"

static const struct tcase interim_cases[] = {
        { IN(H100 H200 "Content-Length: 2\r\n\r\nok"), { .rc = HTTP_RESP_DONE, .status = 200, BODY("ok") } },
        { IN(H100), { .rc = HTTP_RESP_MORE } },
        { IN("HTTP/1.1 100 Continue\n\nHTTP/1.1 200 OK\nContent-Length: 2\n\nok"),
          { .rc = HTTP_RESP_DONE, .status = 200, BODY("ok") } },
        /* several, one with headers, then a chunked 200 */
        { IN(H100 "HTTP/1.1 102 Processing\r\n\r\n"
                  "HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n" HCHUNKED
                  "2\r\nok\r\n0\r\n\r\n"),
          { .rc = HTTP_RESP_DONE, .status = 200, BODY("ok") } },
        /* an interim response's Content-Length and Transfer-Encoding do not apply */
        { IN("HTTP/1.1 100 Continue\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n" H200
             "Content-Length: 2\r\n\r\nok"),
          { .rc = HTTP_RESP_DONE, .status = 200, BODY("ok") } },
        { IN("HTTP/1.1 100 Continue\r\nContent-Length: 5\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n"),
          { .rc = HTTP_RESP_DONE, .status = 204 } },
        /* a malformed head after an interim one */
        { IN(H100 "GARBAGE\r\n\r\n"), { .rc = HTTP_RESP_ERROR, .error = BAD_STATUS } },
        /* a HEAD request still waits for the final response */
        { IN(H100 H200 "Content-Length: 5\r\n\r\n"), { .no_body = true, .rc = HTTP_RESP_DONE, .status = 200 } },
};

START_TEST(test_interim)
{
        RUN_TABLE(interim_cases);
}
END_TEST

static const struct tcase no_body_cases[] = {
        /* the bytes after a 101 are the new protocol's, not a body */
        { IN("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n\x81\x05hello"),
          { .rc = HTTP_RESP_DONE, .status = 101 } },
        { IN("HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\nhello"), { .rc = HTTP_RESP_DONE, .status = 204 } },
        { IN("HTTP/1.1 204 No Content\r\n\r\n"), { .rc = HTTP_RESP_DONE, .status = 204 } },
        { IN("HTTP/1.1 304 Not Modified\r\nContent-Length: 100\r\nTransfer-Encoding: chunked\r\n\r\n"),
          { .rc = HTTP_RESP_DONE, .status = 304 } },
        /* HEAD: done at the end of the head, whatever it announces */
        { IN(H200 "Content-Length: 1234\r\n\r\n"), { .no_body = true, .rc = HTTP_RESP_DONE, .status = 200 } },
        { IN(H200 "Transfer-Encoding: chunked\r\n\r\n"), { .no_body = true, .rc = HTTP_RESP_DONE, .status = 200 } },
        { IN(H200 "\r\n"), { .no_body = true, .rc = HTTP_RESP_DONE, .status = 200 } },
        { IN("HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\n\r\nnot found"),
          { .no_body = true, .rc = HTTP_RESP_DONE, .status = 404 } },
        /* HEAD still checks the head */
        { IN(H200 "Content-Length: x\r\n\r\n"), { .no_body = true, .rc = HTTP_RESP_ERROR, .error = BAD_LENGTH } },
};

START_TEST(test_no_body)
{
        RUN_TABLE(no_body_cases);
}
END_TEST

/* ---- Location ------------------------------------------------------------------------ */

static const struct tcase location_cases[] = {
        { IN("HTTP/1.1 302 Found\r\nLocation: /next\r\nContent-Length: 0\r\n\r\n"),
          { .rc = HTTP_RESP_DONE, .status = 302, .location = "/next" } },
        { IN("HTTP/1.1 301 Moved\r\nlocation:   https://example.com/a b \t\r\n\r\n"),
          { .eof = true, .rc = HTTP_RESP_DONE, .status = 301, .location = "https://example.com/a b" } },
        { IN("HTTP/1.1 307 Temporary Redirect\r\nTransfer-Encoding: chunked\r\nLOCATION: /t\r\n\r\n"
             "4\r\nmove\r\n0\r\n\r\n"),
          { .rc = HTTP_RESP_DONE, .status = 307, BODY("move"), .location = "/t" } },
        { IN("HTTP/1.1 308 Permanent Redirect\nLocation: /p\n\n"),
          { .no_body = true, .rc = HTTP_RESP_DONE, .status = 308, .location = "/p" } },
        /* not for other statuses */
        { IN(H200 "Location: /nope\r\nContent-Length: 0\r\n\r\n"), { .rc = HTTP_RESP_DONE, .status = 200 } },
        { IN("HTTP/1.1 201 Created\r\nLocation: /new\r\nContent-Length: 0\r\n\r\n"),
          { .rc = HTTP_RESP_DONE, .status = 201 } },
        { IN("HTTP/1.1 404 Not Found\r\nLocation: /x\r\nContent-Length: 0\r\n\r\n"),
          { .rc = HTTP_RESP_DONE, .status = 404 } },
        { IN("HTTP/1.1 303 See Other\r\nContent-Length: 0\r\n\r\n"), { .rc = HTTP_RESP_DONE, .status = 303 } },
        /* the final response's, not an interim one's */
        { IN("HTTP/1.1 100 Continue\r\nLocation: /interim\r\n\r\nHTTP/1.1 302 Found\r\nLocation: /final\r\n"
             "Content-Length: 0\r\n\r\n"),
          { .rc = HTTP_RESP_DONE, .status = 302, .location = "/final" } },
        { IN("HTTP/1.1 103 Early Hints\r\nLocation: /interim\r\n\r\n" H200 "Content-Length: 0\r\n\r\n"),
          { .rc = HTTP_RESP_DONE, .status = 200 } },
        { IN("HTTP/1.1 100 Continue\r\nLocation: /interim\r\n\r\nHTTP/1.1 302 Found\r\nContent-Length: 0\r\n\r\n"),
          { .rc = HTTP_RESP_DONE, .status = 302 } },
        /* kept when the body then fails */
        { IN("HTTP/1.1 302 Found\r\nLocation: /l\r\nContent-Length: 5\r\n\r\nab"),
          { .eof = true, .rc = HTTP_RESP_ERROR, BODY("ab"), .error = CLOSED, .location = "/l" } },
};

START_TEST(test_location)
{
        RUN_TABLE(location_cases);
}
END_TEST

/* ---- head_max ------------------------------------------------------------------------ */

/* H200 + "Content-Length: 4" + an X-Pad header, head_len bytes in all, then "body" and
 * "tail". */
static size_t padded_response(char *out, size_t out_size, size_t head_len)
{
        static const char start[] = H200 "Content-Length: 4\r\nX-Pad: ";
        size_t pad = head_len - (sizeof(start) - 1) - 4; /* "\r\n\r\n" */

        ck_assert_uint_ge(head_len, sizeof(start) - 1 + 4);
        ck_assert_uint_le(head_len + 8, out_size);
        memcpy(out, start, sizeof(start) - 1);
        memset(out + sizeof(start) - 1, 'p', pad);
        memcpy(out + head_len - 4, "\r\n\r\nbodytail", 12);
        return head_len + 8;
}

START_TEST(test_head_max_exact)
{
        static const size_t heads[] = { 60, 200, 1023, 1024, 1025, 3000 };
        static char in[3100];

        for (size_t i = 0; i < sizeof(heads) / sizeof(heads[0]); i++) {
                size_t len = padded_response(in, sizeof(in), heads[i]);
                struct expect ok = { .head_max = heads[i], .rc = HTTP_RESP_DONE, .status = 200, BODY("body") };
                struct expect big = { .head_max = heads[i] - 1, .rc = HTTP_RESP_ERROR, .error = TOO_LARGE };
                struct expect roomy = { .head_max = heads[i] + 1, .rc = HTTP_RESP_DONE, BODY("body") };

                expect_all(in, len, &ok);
                expect_all(in, len, &big);
                expect_all(in, len, &roomy);
        }
}
END_TEST

/* A head that never ends: too large once more than head_max bytes came, closed before. */
START_TEST(test_head_max_no_end)
{
        char in[300];
        struct expect big = { .head_max = 100, .rc = HTTP_RESP_ERROR, .error = TOO_LARGE };
        struct expect at_max = { .head_max = 100, .eof = true, .rc = HTTP_RESP_ERROR, .error = CLOSED };
        struct expect under = { .head_max = 100, .rc = HTTP_RESP_MORE };

        memcpy(in, H200, sizeof(H200) - 1);
        for (size_t i = sizeof(H200) - 1; i < sizeof(in); i++)
                in[i] = i % 20 == 19 ? '\n' : 'h';
        expect_all(in, sizeof(in), &big);
        expect_all(in, 101, &big);
        expect_all(in, 100, &at_max);
        expect_all(in, 100, &under);
}
END_TEST

/* The budget covers the interim heads too. */
START_TEST(test_head_max_interim)
{
        static const size_t finals[] = { 60, 200, 1100 };
        static char in[1300];
        const size_t h100 = sizeof(H100) - 1;

        for (size_t i = 0; i < sizeof(finals) / sizeof(finals[0]); i++) {
                size_t len = h100 + padded_response(in + h100, sizeof(in) - h100, finals[i]);
                struct expect ok = { .head_max = h100 + finals[i], .rc = HTTP_RESP_DONE, .status = 200, BODY("body") };
                struct expect big = { .head_max = h100 + finals[i] - 1, .rc = HTTP_RESP_ERROR, .error = TOO_LARGE };

                memcpy(in, H100, h100);
                expect_all(in, len, &ok);
                expect_all(in, len, &big);
        }
}
END_TEST

/* An interim head that uses the whole budget, or more. */
START_TEST(test_head_max_interim_fills_budget)
{
        static const char in[] = H100 H200 "Content-Length: 2\r\n\r\nok";
        const size_t h100 = sizeof(H100) - 1;
        struct expect full = { .head_max = h100, .rc = HTTP_RESP_ERROR, .error = TOO_LARGE };
        struct expect over = { .head_max = h100 - 1, .rc = HTTP_RESP_ERROR, .error = TOO_LARGE };
        struct expect waits = { .head_max = h100, .rc = HTTP_RESP_MORE };

        expect_all(in, sizeof(in) - 1, &full);
        expect_all(in, sizeof(in) - 1, &over);
        expect_all(in, h100, &waits);
}
END_TEST

/* A large head (the partial-head buffer grows past its first size) and a larger budget. */
START_TEST(test_head_large)
{
        static char in[5100];
        size_t len = padded_response(in, sizeof(in), 5000);
        struct expect ok = { .rc = HTTP_RESP_DONE, .status = 200, BODY("body") };
        struct expect big = { .head_max = 4999, .rc = HTTP_RESP_ERROR, .error = TOO_LARGE };

        expect_all(in, len, &ok);
        expect_all(in, len, &big);
}
END_TEST

/* ---- the callback asking to stop ------------------------------------------------------ */

static const struct tcase enough_cases[] = {
        { IN(H200 "Content-Length: 11\r\n\r\nhello world"),
          { .stop_after = 1, .rc = HTTP_RESP_ENOUGH, .status = 200, BODY("hello world") } },
        { IN(H200 "Content-Length: 11\r\n\r\nhello world"),
          { .stop_after = 6, .rc = HTTP_RESP_ENOUGH, BODY("hello world") } },
        /* on the very last byte: still ENOUGH, the callback said so */
        { IN(H200 "Content-Length: 11\r\n\r\nhello world"),
          { .stop_after = 11, .rc = HTTP_RESP_ENOUGH, BODY("hello world") } },
        /* not reached: DONE */
        { IN(H200 "Content-Length: 11\r\n\r\nhello world"),
          { .stop_after = 12, .rc = HTTP_RESP_DONE, BODY("hello world") } },
        { IN(HCHUNKED "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"),
          { .stop_after = 3, .rc = HTTP_RESP_ENOUGH, BODY("hello world") } },
        { IN(HCHUNKED "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"),
          { .stop_after = 7, .rc = HTTP_RESP_ENOUGH, BODY("hello world") } },
        { IN(H200 "\r\nuntil the end"),
          { .stop_after = 2, .eof = true, .rc = HTTP_RESP_ENOUGH, BODY("until the end") } },
        { IN(H100 H200 "Content-Length: 2\r\n\r\nok"), { .stop_after = 1, .rc = HTTP_RESP_ENOUGH, BODY("ok") } },
        /* stopping before a framing error hides it */
        { IN(HCHUNKED "5\r\nhelloX"), { .stop_after = 5, .rc = HTTP_RESP_ENOUGH, BODY("hello") } },
};

START_TEST(test_enough)
{
        RUN_TABLE(enough_cases);
}
END_TEST

/* ---- the API itself -------------------------------------------------------------------- */

/* No callback: the body is skipped. */
START_TEST(test_no_callback)
{
        static const char in[] = HCHUNKED "5\r\nhello\r\n0\r\n\r\n";
        struct http_resp r = { .head_max = HEAD_MAX };

        ck_assert_int_eq(http_resp_feed(&r, in, sizeof(in) - 1, NULL, NULL), HTTP_RESP_DONE);
        ck_assert_uint_eq(r.status, 200);
        http_resp_free(&r);
}
END_TEST

/* Freed and zeroed, the same struct parses another response. */
START_TEST(test_reuse)
{
        static const char first[] = "HTTP/1.1 302 Found\r\nLocation: /a\r\nContent-Length: 3\r\n\r\nabc";
        static const char second[] = "HTTP/1.1 503 Busy\r\nContent-Length: 2\r\n\r\nno";
        struct http_resp r = { .head_max = HEAD_MAX };
        struct sink s = { .stop_after = SIZE_MAX };

        /* the first one split inside its head, so the partial-head buffer is used */
        ck_assert_int_eq(http_resp_feed(&r, first, 10, sink_body, &s), HTTP_RESP_MORE);
        ck_assert_int_eq(http_resp_feed(&r, first + 10, sizeof(first) - 11, sink_body, &s), HTTP_RESP_DONE);
        ck_assert_str_eq(r.location, "/a");
        http_resp_free(&r);
        ck_assert_ptr_null(r.location);
        r = (struct http_resp){ .head_max = HEAD_MAX };
        ck_assert_int_eq(http_resp_feed(&r, second, sizeof(second) - 1, sink_body, &s), HTTP_RESP_DONE);
        ck_assert_uint_eq(r.status, 503);
        ck_assert_ptr_null(r.location);
        ck_assert_uint_eq(s.len, 5);
        ck_assert_mem_eq(s.buf, "abcno", 5);
        http_resp_free(&r);
        free(s.buf);
}
END_TEST

/* The one status-line parser, shared with the websocket handshake (probes/wsframe.c):
 * the line comes without its line end. */
START_TEST(test_status_line)
{
        static const struct {
                const char *line;
                int want;
        } lines[] = {
                { "HTTP/1.1 200 OK", 200 },
                { "HTTP/1.0 101", 101 },
                { "HTTP/1.1 599 x", 599 },
                { "HTTP/1.1 101 Switching Protocols", 101 },
                { "HTTP/1.x 101 OK", -1 },
                { "HTTP/1.1 1010 x", -1 },
                { "HTTP/1.1 101\r", -1 },
                { "HTTP/1.1 10", -1 },
                { "HTTP/2 200", -1 },
                { "ICY 200 OK", -1 },
                { "", -1 },
        };

        for (size_t i = 0; i < N(lines); i++)
                ck_assert_msg(http_status_line(lines[i].line, strlen(lines[i].line)) == lines[i].want, "%s",
                              lines[i].line);
}
END_TEST

START_TEST(test_header_split)
{
        const char *line = "Upgrade: \t websocket \t", *v;
        size_t nlen, vlen;

        ck_assert(http_header_split(line, strlen(line), &nlen, &v, &vlen));
        ck_assert_uint_eq(nlen, strlen("Upgrade"));
        ck_assert_uint_eq(vlen, strlen("websocket"));
        ck_assert(strncmp(v, "websocket", vlen) == 0);
        ck_assert(http_header_split("X:", 2, &nlen, &v, &vlen) && nlen == 1 && vlen == 0);
        ck_assert(!http_header_split("no colon", 8, &nlen, &v, &vlen));
}
END_TEST

static Suite *httpresp_suite(void)
{
        Suite *s = suite_create("httpresp");
        TCase *tc;

        tc = tcase_create("status");
        tcase_set_timeout(tc, 20);
        tcase_add_loop_test(tc, test_status, 0, N(status_cases));
        tcase_add_loop_test(tc, test_bad_status, 0, N(bad_status_cases));
        tcase_add_test(tc, test_status_line);
        tcase_add_test(tc, test_header_split);
        suite_add_tcase(s, tc);

        tc = tcase_create("length");
        tcase_set_timeout(tc, 20);
        tcase_add_loop_test(tc, test_length, 0, N(length_cases));
        tcase_add_test(tc, test_length_binary_body);
        suite_add_tcase(s, tc);

        tc = tcase_create("chunked");
        tcase_set_timeout(tc, 20);
        tcase_add_loop_test(tc, test_chunked, 0, N(chunked_cases));
        tcase_add_test(tc, test_chunked_binary_body);
        suite_add_tcase(s, tc);

        tc = tcase_create("eof");
        tcase_set_timeout(tc, 20);
        tcase_add_loop_test(tc, test_eof, 0, N(eof_cases));
        tcase_add_test(tc, test_eof_every_prefix);
        suite_add_tcase(s, tc);

        tc = tcase_create("interim");
        tcase_set_timeout(tc, 20);
        tcase_add_loop_test(tc, test_interim, 0, N(interim_cases));
        tcase_add_loop_test(tc, test_no_body, 0, N(no_body_cases));
        tcase_add_loop_test(tc, test_location, 0, N(location_cases));
        suite_add_tcase(s, tc);

        tc = tcase_create("head_max");
        tcase_set_timeout(tc, 60);
        tcase_add_test(tc, test_head_max_exact);
        tcase_add_test(tc, test_head_max_no_end);
        tcase_add_test(tc, test_head_max_interim);
        tcase_add_test(tc, test_head_max_interim_fills_budget);
        tcase_add_test(tc, test_head_large);
        suite_add_tcase(s, tc);

        tc = tcase_create("api");
        tcase_set_timeout(tc, 20);
        tcase_add_loop_test(tc, test_enough, 0, N(enough_cases));
        tcase_add_test(tc, test_no_callback);
        tcase_add_test(tc, test_reuse);
        suite_add_tcase(s, tc);
        return s;
}

int main(void)
{
        SRunner *sr = srunner_create(httpresp_suite());
        int failed;

        srunner_run_all(sr, CK_NORMAL);
        failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
