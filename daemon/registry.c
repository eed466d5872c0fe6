/* The registry of probe kinds: one `const struct probe_ops` per file in probes/. Adding a
 * kind is its file plus one line in PROBE_KINDS (docs/design.md, "Adding a kind"). */
#include <string.h>

#include "probe.h"
#include "registry.h"

/* One line per kind, in the order of the usage text and of the known-type list; every
 * line ends with a backslash, so that adding a kind touches no other line. */
#define PROBE_KINDS(KIND)                                                                                              \
        KIND(http)                                                                                                     \
        KIND(tcp)                                                                                                      \
        KIND(websocket)                                                                                                \
        KIND(grpc)                                                                                                     \
        KIND(exec)                                                                                                     \
        KIND(dns)                                                                                                      \
        /* end of PROBE_KINDS */

#define KIND_DECLARE(kind) extern const struct probe_ops kind##_probe_ops;
#define KIND_ENTRY(kind) &kind##_probe_ops,

PROBE_KINDS(KIND_DECLARE)

const struct probe_ops *const probe_kinds[] = { PROBE_KINDS(KIND_ENTRY) NULL };

const struct probe_ops *probe_ops_find(const char *type)
{
        if (!type)
                return NULL;
        for (const struct probe_ops *const *k = probe_kinds; *k; k++)
                if (strcmp((*k)->type, type) == 0)
                        return *k;
        return NULL;
}

const struct probe_ops *probe_ops_find_flag(const char *flag)
{
        if (!flag)
                return NULL;
        for (const struct probe_ops *const *k = probe_kinds; *k; k++)
                if (strcmp((*k)->flag.name, flag) == 0)
                        return *k;
        return NULL;
}
