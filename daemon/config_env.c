/* ${VAR} and ${VAR:-default} expansion of every string value of the config's JSON tree
 * (README "Config file"), before any validation, so that durations, addresses, header
 * values and exec argv can all come from the environment. Keys are never expanded.
 * Rules, as in sh:
 *   ${VAR}          the value of VAR; an unset VAR expands to "" (not an error: the
 *                   field's own validation reports an empty value if it matters)
 *   ${VAR:-default} default when VAR is unset *or empty*; default is literal up to the
 *                   first '}' (no nesting)
 * VAR is [A-Za-z_][A-Za-z0-9_]*. "${" without "}" or with a bad name is an error. A lone
 * '$' or "$VAR" is kept as written; there is no escape for a literal "${". */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "config_env.h"
#include "config_get.h"

#define EXPAND_PATH_MAX 512 /* JSON path buffer while expanding; longer paths are cut */

static bool var_start_char(char c)
{
        return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_';
}

static bool var_char(char c)
{
        return var_start_char(c) || (c >= '0' && c <= '9');
}

/* Expands s. *ret is NULL when s has no "${" (nothing to change), else malloc'd.
 * -EINVAL with *ret_why (static) on a malformed reference. */
static int expand_string(const char *s, char **ret, const char **ret_why)
{
        struct buf b = { 0 };
        const char *p = s, *ref;

        *ret = NULL;
        if (!strstr(s, "${"))
                return 0;

        while ((ref = strstr(p, "${"))) {
                const char *name = ref + 2, *n = name, *close, *value, *def = NULL;
                size_t def_len = 0;
                char var[256];

                buf_add(&b, p, (size_t) (ref - p));
                close = strchr(name, '}');
                if (!close) {
                        *ret_why = "has \"${\" without a closing \"}\" (use ${VAR} or ${VAR:-default})";
                        free(b.p);
                        return -EINVAL;
                }
                if (var_start_char(*n))
                        for (n++; var_char(*n); n++)
                                ;
                if (n == name || (size_t) (n - name) >= sizeof(var) || (n != close && strncmp(n, ":-", 2) != 0)) {
                        *ret_why = "has a malformed \"${...}\" (use ${VAR} or ${VAR:-default})";
                        free(b.p);
                        return -EINVAL;
                }
                if (n != close) {
                        def = n + 2;
                        def_len = (size_t) (close - def);
                }
                memcpy(var, name, (size_t) (n - name));
                var[n - name] = '\0';
                value = getenv(var);
                if (def && (!value || !*value))
                        buf_add(&b, def, def_len);
                else if (value)
                        buf_puts(&b, value);
                p = close + 1;
        }
        buf_puts(&b, p);
        *ret = buf_steal(&b);
        return *ret ? 0 : -ENOMEM;
}

/* Walks the tree; path is a buffer of EXPAND_PATH_MAX bytes holding node's JSON path. */
static int expand_tree(cJSON *node, char *path, char **reterr)
{
        size_t base = strlen(path);
        size_t i = 0;
        int r = 0;

        if (cJSON_IsString(node) && node->valuestring) {
                const char *why = NULL;
                char *s;

                r = expand_string(node->valuestring, &s, &why);
                if (r == -EINVAL)
                        return cfg_error(reterr, path, NULL, "%s", why);
                if (r < 0)
                        return r;
                if (s && !cJSON_SetValuestring(node, s))
                        r = -ENOMEM;
                free(s);
                return r;
        }
        for (cJSON *c = node->child; c; c = c->next, i++) {
                if (cJSON_IsObject(node))
                        (void) snprintf(path + base, EXPAND_PATH_MAX - base, "%s%s", base ? "." : "", c->string);
                else
                        (void) snprintf(path + base, EXPAND_PATH_MAX - base, "[%zu]", i);
                r = expand_tree(c, path, reterr);
                path[base] = '\0';
                if (r < 0)
                        return r;
        }
        return 0;
}

int config_expand(cJSON *root, char **reterr)
{
        char path[EXPAND_PATH_MAX] = "";

        return expand_tree(root, path, reterr);
}
