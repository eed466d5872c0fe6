/* One growable text buffer (daemon/buf.c) for everything that builds a string of
 * unknown length: /status and /metrics (daemon/snapshot.c), ${VAR} expansion
 * (daemon/config_env.c). It latches out-of-memory: the many appends need no checks,
 * and buf_steal says at the end whether all of them succeeded. The text is always
 * NUL-terminated once anything was added. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

struct buf {
        char *p; /* malloc'd, NULL while empty */
        size_t len, cap;
        bool oom; /* an allocation failed: every later append is dropped */
};

/* Room for extra more bytes (and the NUL); false after any allocation failure. */
bool buf_grow(struct buf *b, size_t extra);
static inline bool buf_reserve(struct buf *b, size_t extra)
{
        return (!b->oom && extra < b->cap - b->len) || buf_grow(b, extra);
}

static inline void buf_add(struct buf *b, const char *s, size_t n)
{
        if (!buf_reserve(b, n))
                return;
        memcpy(b->p + b->len, s, n);
        b->len += n;
        b->p[b->len] = '\0';
}

static inline void buf_puts(struct buf *b, const char *s)
{
        buf_add(b, s, strlen(s));
}

static inline void buf_putc(struct buf *b, char c)
{
        buf_add(b, &c, 1);
}

/* Decimal without printf: /metrics of 10,000 probes is 200,000 numbers. */
void buf_u64(struct buf *b, uint64_t v);
void buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Hands the text over to the caller (malloc'd, "" when nothing was added), or frees it
 * and returns NULL after any allocation failure. */
char *buf_steal(struct buf *b);
