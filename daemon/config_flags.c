/* Probe flags (README "Command line"): `--<kind flag> NAME=VALUE` becomes the JSON
 * object of one probe, which then goes through the same validation as the file's
 * probes. The kind's own keys come from its flag.to_json (probes/<kind>.c). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "config_flags.h"
#include "config_get.h"
#include "probe.h"
#include "registry.h"

int config_flag_to_json(const struct probe_flag *f, const char *path, cJSON **ret, char **reterr)
{
        const struct probe_ops *ops = probe_ops_find_flag(f->kind);
        const char *eq;
        cJSON *obj = NULL;
        char *name = NULL;
        int r;

        if (!ops)
                return cfg_error(reterr, path, NULL, "unknown probe flag");
        eq = f->arg ? strchr(f->arg, '=') : NULL;
        if (!eq || eq == f->arg || !eq[1])
                return cfg_error(reterr, path, NULL, "expected %s", ops->flag.arg);

        r = -ENOMEM;
        name = strndup(f->arg, (size_t) (eq - f->arg));
        obj = cJSON_CreateObject();
        if (!name || !obj || !cJSON_AddStringToObject(obj, "name", name) ||
            !cJSON_AddStringToObject(obj, "type", ops->type))
                goto fail;
        if ((r = ops->flag.to_json(obj, eq + 1)) < 0)
                goto fail;
        *ret = obj;
        obj = NULL;
fail:
        cJSON_Delete(obj);
        free(name);
        return r;
}
