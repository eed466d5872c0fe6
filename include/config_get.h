/* The getters API of the config (daemon/config_get.c): what the loader (daemon/config.c)
 * and each kind's parse function (probes/<kind>.c) call to read one key of a JSON
 * object, with every error naming its JSON path (README "Config file").
 *
 * obj is a JSON object, path its JSON path ("probes[2]", "" for the top level, or a
 * probe flag "--tcp app=x"). Each getter returns 0 when the key is absent (ret
 * untouched) or valid (ret set), and -EINVAL with *reterr = "config: <path>.<key>: <why>"
 * otherwise ("<flag>: <key>: <why>" for a flag). "required" makes absence an error
 * ("is required"). Strings are borrowed from obj. Nothing here logs. */
#pragma once
#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stdint.h>

#define DURATION_HINT "is not a duration (e.g. \"500ms\", \"2s\")"

int cfg_string(const cJSON *obj, const char *key, const char *path, bool required, const char **ret, char **reterr);
int cfg_bool(const cJSON *obj, const char *key, const char *path, bool *ret, char **reterr);
int cfg_uint(const cJSON *obj, const char *key, const char *path, uint64_t min, uint64_t max, uint64_t *ret,
             char **reterr);
/* A duration string ("500ms"); positive: 0 is an error. */
int cfg_duration(const cJSON *obj, const char *key, const char *path, bool positive, uint64_t *ret_ms, char **reterr);
/* An object's keys must be in one of the NULL-terminated lists (any may be NULL), each at
 * most once (cJSON keeps duplicates; the second would be silently ignored). */
int cfg_check_keys(const cJSON *obj, const char *path, const char *const *a, const char *const *b, const char *const *c,
                   char **reterr);

/* An RFC 9110 token: a header name the user configures (http, websocket), a
 * subprotocol. A header value must be free of control bytes (tab allowed), so that it
 * cannot split the request. */
bool cfg_token_valid(const char *name);
bool cfg_header_value_valid(const char *value);

/* Sets *reterr to "config: <path>[.<key>]: <formatted>" and returns -EINVAL
 * (-ENOMEM if even that failed). key may be NULL. */
int cfg_error(char **reterr, const char *path, const char *key, const char *fmt, ...)
        __attribute__((format(printf, 4, 5)));
/* The same with "<value as the user wrote it, cut> <why>", e.g. `"5x" is not a duration`. */
int cfg_error_value(char **reterr, const char *path, const char *key, const cJSON *v, const char *why);
/* Makes sure a failure always comes back with a message (kinds may return -ENOMEM
 * without one): returns r (-EINVAL when r >= 0). */
int cfg_fail(int r, char **reterr);
