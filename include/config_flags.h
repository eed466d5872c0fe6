/* Probe flags -> config JSON (daemon/config_flags.c). */
#pragma once
#include <cjson/cJSON.h>

#include "config.h"

/* Builds the JSON object the probe flag f stands for (name, type and the kind's keys);
 * path is how errors name it ("--tcp app=x"). 0 with *ret (caller frees), -ENOMEM, or
 * -EINVAL with *reterr ("<path>: expected NAME=HOST:PORT", "unknown probe flag"). */
int config_flag_to_json(const struct probe_flag *f, const char *path, cJSON **ret, char **reterr);
