/* ${VAR} expansion of the config (daemon/config_env.c; rules in README "Config file"). */
#pragma once
#include <cjson/cJSON.h>

/* Expands ${VAR} and ${VAR:-default} in every string value below root, in place.
 * 0, -ENOMEM, or -EINVAL with *reterr naming the value's JSON path. */
int config_expand(cJSON *root, char **reterr);
