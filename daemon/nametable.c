/* The name index: see include/nametable.h. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "nametable.h"
#include "util.h"

int name_table_init(struct name_table *t, size_t n, const char *(*name_of)(const void *ctx, size_t idx),
                    const void *ctx)
{
        size_t mask = 15;

        while (mask < 2 * n) /* at most half full: probe sequences stay short */
                mask = mask * 2 + 1;
        *t = (struct name_table){ .mask = mask, .name_of = name_of, .ctx = ctx };
        t->slots = calloc(mask + 1, sizeof(*t->slots));
        return t->slots ? 0 : -ENOMEM;
}

void name_table_free(struct name_table *t)
{
        free(t->slots);
        t->slots = NULL;
}

/* The slot holding name, or the empty slot ending its probe sequence. */
static size_t *name_table_slot(const struct name_table *t, const char *name)
{
        for (size_t h = str_hash(name) & t->mask;; h = (h + 1) & t->mask) {
                const char *other;

                if (t->slots[h] == 0)
                        return &t->slots[h];
                other = t->name_of(t->ctx, t->slots[h] - 1);
                if (other && strcmp(other, name) == 0)
                        return &t->slots[h];
        }
}

bool name_table_find(const struct name_table *t, const char *name, size_t *ret_idx)
{
        size_t *s = name_table_slot(t, name);

        if (*s == 0)
                return false;
        *ret_idx = *s - 1;
        return true;
}

int name_table_add(struct name_table *t, size_t idx, size_t *ret_other)
{
        size_t *s = name_table_slot(t, t->name_of(t->ctx, idx));

        if (*s != 0) {
                *ret_other = *s - 1;
                return -EEXIST;
        }
        *s = idx + 1;
        return 0;
}
