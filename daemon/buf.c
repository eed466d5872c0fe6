/* The growable text buffer: see include/buf.h. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "buf.h"

bool buf_grow(struct buf *b, size_t extra)
{
        size_t want, cap;
        char *p;

        if (b->oom)
                return false;
        if (extra >= SIZE_MAX / 2 - b->len) {
                b->oom = true;
                return false;
        }
        want = b->len + extra + 1; /* + NUL */
        if (want <= b->cap)
                return true;
        cap = b->cap ? b->cap : 256;
        while (cap < want)
                cap *= 2;
        p = realloc(b->p, cap);
        if (!p) {
                b->oom = true;
                return false;
        }
        b->p = p;
        b->cap = cap;
        return true;
}

void buf_u64(struct buf *b, uint64_t v)
{
        char d[20];
        size_t n = sizeof(d);

        do {
                d[--n] = (char) ('0' + v % 10);
                v /= 10;
        } while (v > 0);
        buf_add(b, d + n, sizeof(d) - n);
}

void buf_printf(struct buf *b, const char *fmt, ...)
{
        /* a first try in what is free; a second one with room for all of it */
        for (size_t room = 64;;) {
                va_list ap;
                int n;

                if (!buf_reserve(b, room))
                        return;
                va_start(ap, fmt);
                n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
                va_end(ap);
                if (n < 0) {
                        b->oom = true;
                        return;
                }
                if ((size_t) n < b->cap - b->len) {
                        b->len += (size_t) n;
                        return;
                }
                room = (size_t) n;
        }
}

char *buf_steal(struct buf *b)
{
        if (!b->oom && !b->p)
                buf_reserve(b, 0);
        if (b->oom) {
                free(b->p);
                b->p = NULL;
                return NULL;
        }
        b->p[b->len] = '\0';
        return b->p;
}
