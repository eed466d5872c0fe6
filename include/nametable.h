/* An index of names (daemon/nametable.c): open addressing over str_hash, so that 10,000
 * probes looked up by name stay linear, for the config's unique-name check and for a
 * reload's matching of new probes to running ones. It stores indexes into the caller's
 * array and asks name_of for an index's name; NULL (an entry gone since) never matches. */
#pragma once
#include <stdbool.h>
#include <stddef.h>

struct name_table {
        size_t *slots; /* index + 1; 0: empty */
        size_t mask;
        const char *(*name_of)(const void *ctx, size_t idx);
        const void *ctx;
};

/* Room for n names. 0 or -ENOMEM. */
int name_table_init(struct name_table *t, size_t n, const char *(*name_of)(const void *ctx, size_t idx),
                    const void *ctx);
void name_table_free(struct name_table *t);
/* The index stored under name, in *ret_idx; false when there is none. */
bool name_table_find(const struct name_table *t, const char *name, size_t *ret_idx);
/* Adds idx under its name: 0, or -EEXIST with *ret_other when the name is there already.
 * At most the n of name_table_init entries. */
int name_table_add(struct name_table *t, size_t idx, size_t *ret_other);
