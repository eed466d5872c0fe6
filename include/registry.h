/* The registry of probe kinds (daemon/registry.c): every kind, in the order of the
 * usage text and of the known-type list. */
#pragma once

struct probe_ops;

/* NULL-terminated. */
extern const struct probe_ops *const probe_kinds[];
/* The kind with that type ("websocket"), or NULL when unknown. */
const struct probe_ops *probe_ops_find(const char *type);
/* The kind whose flag has that long option name ("ws"), or NULL. */
const struct probe_ops *probe_ops_find_flag(const char *flag);
