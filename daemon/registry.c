/* The registry of probe kinds: one `const struct probe_ops` per file in probes/. */
#include <string.h>

#include "probe.h"
#include "util.h"

extern const struct probe_ops http_probe_ops;
extern const struct probe_ops tcp_probe_ops;
extern const struct probe_ops websocket_probe_ops;
extern const struct probe_ops grpc_probe_ops;
extern const struct probe_ops exec_probe_ops;

const struct probe_ops *probe_ops_find(const char *type)
{
        const struct probe_ops *const kinds[] = {
                &http_probe_ops, &tcp_probe_ops, &websocket_probe_ops, &grpc_probe_ops, &exec_probe_ops,
        };

        if (!type)
                return NULL;
        for (size_t i = 0; i < ELEMENTSOF(kinds); i++)
                if (strcmp(kinds[i]->type, type) == 0)
                        return kinds[i];
        return NULL;
}
