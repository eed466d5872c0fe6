/* Fuzz target: the incremental HTTP/1.x response parser (include/httpresp.h).
 *
 * Input layout: byte 0 chooses the options (bit 0: no_body, a HEAD request; bits 1-3:
 * how the rest is split: pieces of varying size 1..40, or of 1, 2, 3, 7, 16, 64 or 512
 * bytes; bits 4-5: head_max 16384, 1024, 100 or 32; bits 6-7: the body callback never
 * stops (0, 1), or returns false once 1 or 17 body bytes came); the rest is the bytes
 * received, after which the peer closes the connection. The bytes are parsed twice, in
 * one feed and split into pieces (each in a buffer of its own size, after an empty
 * feed), then http_resp_eof unless a feed already gave a final result. Properties
 * (abort() on violation):
 *   - feeds return MORE, DONE, ENOUGH or ERROR, empty feeds MORE; once a feed or EOF gave
 *     anything but MORE, a further feed and EOF return the same, deliver nothing and
 *     leave r.error as it was;
 *   - r.error is set exactly with ERROR, and is a non-empty string;
 *   - DONE or ENOUGH: the status is 101 or 200..599 (never an interim 1xx);
 *   - a Location only with a 3xx status;
 *   - body pieces are non-empty, inside the buffer being fed, never after the callback
 *     returned false, and no more body bytes than input bytes in all; none at all for a
 *     HEAD request or a 101, 204 or 304;
 *   - splitting changes nothing: both runs give the same result, status, error,
 *     Location and body bytes (with a stop, the same leading bytes, at least as many as
 *     asked for).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "httpresp.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct sink {
        const char *piece; /* the buffer being fed */
        size_t piece_len;
        char *body; /* what was delivered, at most input-length bytes */
        size_t len, max, stop_after;
        unsigned calls;
        bool stopped;
};

struct outcome {
        int rc;
        unsigned status;
        const char *error;
        char *location; /* a copy */
        struct sink s;
};

static void fail(const char *what)
{
        fprintf(stderr, "fuzz_httpresp: %s\n", what);
        abort();
}

static bool take_body(const char *p, size_t n, void *data)
{
        struct sink *s = data;

        if (s->stopped)
                fail("body delivered after the callback returned false");
        if (n == 0)
                fail("an empty body piece");
        if (!s->piece || p < s->piece || n > s->piece_len || p > s->piece + (s->piece_len - n))
                fail("a body piece outside the buffer fed");
        if (n > s->max - s->len)
                fail("more body bytes than input bytes");
        memcpy(s->body + s->len, p, n);
        s->len += n;
        s->calls++;
        if (s->len >= s->stop_after) {
                s->stopped = true;
                return false;
        }
        return true;
}

/* Feeds a copy of in[0..n) in a buffer of exactly n bytes. */
static int feed(struct http_resp *r, const uint8_t *in, size_t n, struct sink *s)
{
        char *piece = malloc(n ? n : 1);
        int rc;

        if (!piece)
                abort();
        memcpy(piece, in, n);
        s->piece = piece;
        s->piece_len = n;
        rc = http_resp_feed(r, piece, n, take_body, s);
        s->piece = NULL;
        free(piece);
        if (rc != HTTP_RESP_MORE && rc != HTTP_RESP_DONE && rc != HTTP_RESP_ENOUGH && rc != HTTP_RESP_ERROR)
                fail("feed returned an unknown value");
        return rc;
}

static uint32_t next_rand(uint32_t *x)
{
        *x ^= *x << 13;
        *x ^= *x >> 17;
        *x ^= *x << 5;
        return *x;
}

/* One run; step 0: all in one feed; SIZE_MAX: pieces of varying size. */
static void run(const uint8_t *in, size_t len, uint8_t opt, size_t step, struct outcome *o)
{
        static const size_t head_maxes[] = { 16384, 1024, 100, 32 };
        static const size_t stops[] = { SIZE_MAX, SIZE_MAX, 1, 17 };
        static const uint8_t after[] = "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx";
        struct http_resp r = { .no_body = opt & 1, .head_max = head_maxes[(opt >> 4) & 3] };
        uint32_t seed = (uint32_t) len * 2654435761u + opt + 1;
        size_t off = 0;
        int rc = HTTP_RESP_MORE;

        memset(o, 0, sizeof(*o));
        o->s.max = len;
        o->s.stop_after = stops[opt >> 6];
        o->s.body = malloc(len ? len : 1);
        if (!o->s.body)
                abort();

        while (rc == HTTP_RESP_MORE && off < len) {
                size_t n = step == 0 ? len : step == SIZE_MAX ? 1 + next_rand(&seed) % 40 : step;

                if (n > len - off)
                        n = len - off;
                if (step != 0 && feed(&r, in + off, 0, &o->s) != HTTP_RESP_MORE)
                        fail("an empty feed did not return MORE");
                rc = feed(&r, in + off, n, &o->s);
                off += n;
        }
        if (rc == HTTP_RESP_MORE)
                rc = http_resp_eof(&r);
        if (rc == HTTP_RESP_MORE)
                fail("EOF returned MORE");

        if ((rc == HTTP_RESP_ERROR) != (r.error != NULL))
                fail("error set without ERROR, or ERROR without error");
        if (r.error && !r.error[0])
                fail("empty error");
        if ((rc == HTTP_RESP_DONE || rc == HTTP_RESP_ENOUGH) && r.status != 101 && (r.status < 200 || r.status > 599))
                fail("a final result with a status that is not final");
        if (r.status != 0 && (r.status < 100 || r.status > 599))
                fail("status out of range");
        if (r.location && (r.status < 300 || r.status > 399))
                fail("Location kept for a status that is not 3xx");
        if ((r.no_body || r.status == 101 || r.status == 204 || r.status == 304) && o->s.len > 0)
                fail("body bytes for a response without a body");
        if (rc == HTTP_RESP_ENOUGH && (!o->s.stopped || o->s.len < o->s.stop_after))
                fail("ENOUGH without the callback asking for it");
        if (rc != HTTP_RESP_ENOUGH && o->s.stopped)
                fail("the callback asked to stop, and the parser went on");

        /* a final result sticks */
        {
                const char *err = r.error;
                unsigned calls = o->s.calls;

                if (feed(&r, after, sizeof(after) - 1, &o->s) != rc || http_resp_eof(&r) != rc ||
                    feed(&r, after, sizeof(after) - 1, &o->s) != rc)
                        fail("a final result changed");
                if (o->s.calls != calls || r.error != err)
                        fail("body or error changed after a final result");
        }

        o->rc = rc;
        o->status = r.status;
        o->error = r.error;
        if (r.location && !(o->location = strdup(r.location)))
                abort();
        http_resp_free(&r);
        if (r.location || r.head)
                fail("http_resp_free left pointers behind");
        http_resp_free(&r);
}

static void compare(const struct outcome *a, const struct outcome *b)
{
        if (a->rc != b->rc)
                fail("split input: another result");
        if (a->status != b->status)
                fail("split input: another status");
        if ((a->error == NULL) != (b->error == NULL) || (a->error && strcmp(a->error, b->error) != 0))
                fail("split input: another error");
        if ((a->location == NULL) != (b->location == NULL) || (a->location && strcmp(a->location, b->location) != 0))
                fail("split input: another Location");
        if (a->rc == HTTP_RESP_ENOUGH) {
                size_t n = a->s.len < b->s.len ? a->s.len : b->s.len;

                if (memcmp(a->s.body, b->s.body, n) != 0)
                        fail("split input: other body bytes before the stop");
        } else if (a->s.len != b->s.len || memcmp(a->s.body, b->s.body, a->s.len) != 0) {
                fail("split input: other body bytes");
        }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        static const size_t steps[] = { SIZE_MAX, 1, 2, 3, 7, 16, 64, 512 };
        struct outcome whole, split;
        uint8_t opt;

        if (size == 0)
                return 0;
        opt = data[0];
        run(data + 1, size - 1, opt, 0, &whole);
        run(data + 1, size - 1, opt, steps[(opt >> 1) & 7], &split);
        compare(&whole, &split);
        free(whole.location);
        free(whole.s.body);
        free(split.location);
        free(split.s.body);
        return 0;
}
