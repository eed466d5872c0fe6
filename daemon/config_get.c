/* The config's getters (include/config_get.h): one key of a JSON object at a time,
 * every error naming its JSON path; shared by the loader (daemon/config.c) and the
 * kinds' parse functions. */
#include <ctype.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config_get.h"
#include "util.h"

#define REPR_MAX 80 /* bytes of a bad value quoted back in an error */

/* ---- errors --------------------------------------------------------------------- */

static int cfg_verror(char **reterr, const char *path, const char *key, const char *fmt, va_list ap)
{
        char *msg = NULL, *full;
        const char *p = path ? path : "";

        if (vasprintf(&msg, fmt, ap) < 0)
                return -ENOMEM;
        if (strncmp(p, "--", 2) == 0) /* a probe flag: "--tcp app=x: address: ..." */
                full = key ? strdup_printf("%s: %s: %s", p, key, msg) : strdup_printf("%s: %s", p, msg);
        else if (*p && key)
                full = strdup_printf("config: %s.%s: %s", p, key, msg);
        else if (*p || key)
                full = strdup_printf("config: %s: %s", *p ? p : key, msg);
        else
                full = strdup_printf("config: %s", msg);
        free(msg);
        if (!full)
                return -ENOMEM;
        if (reterr)
                *reterr = full;
        else
                free(full);
        return -EINVAL;
}

int cfg_error(char **reterr, const char *path, const char *key, const char *fmt, ...)
{
        va_list ap;
        int r;

        va_start(ap, fmt);
        r = cfg_verror(reterr, path, key, fmt, ap);
        va_end(ap);
        return r;
}

int cfg_fail(int r, char **reterr)
{
        if (r >= 0)
                r = -EINVAL;
        if (reterr && !*reterr)
                *reterr = strdup(r == -ENOMEM ? "config: out of memory" : "config: invalid configuration");
        return r;
}

/* The JSON value as the user wrote it, cut to REPR_MAX bytes: for error messages. */
static char *json_repr(const cJSON *v)
{
        char *s = cJSON_PrintUnformatted(v);
        size_t cut = REPR_MAX - 3;

        if (!s || strlen(s) <= REPR_MAX)
                return s;
        /* never inside a UTF-8 sequence: the message ends up in a JSON log line */
        while (cut > 0 && ((unsigned char) s[cut] & 0xC0) == 0x80)
                cut--;
        memcpy(s + cut, "...", 4);
        return s;
}

int cfg_error_value(char **reterr, const char *path, const char *key, const cJSON *v, const char *why)
{
        char *repr = json_repr(v);
        int r;

        if (!repr)
                return -ENOMEM;
        r = cfg_error(reterr, path, key, "%s %s", repr, why);
        free(repr);
        return r;
}

/* ---- typed getters -------------------------------------------------------------- */

int cfg_string(const cJSON *obj, const char *key, const char *path, bool required, const char **ret, char **reterr)
{
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);

        if (!v)
                return required ? cfg_error(reterr, path, key, "is required") : 0;
        if (!cJSON_IsString(v) || !v->valuestring)
                return cfg_error_value(reterr, path, key, v, "is not a string");
        *ret = v->valuestring;
        return 0;
}

bool cfg_token_valid(const char *s)
{
        if (!*s)
                return false;
        for (; *s; s++)
                if (!isalnum((unsigned char) *s) && !strchr("!#$%&'*+-.^_`|~", *s))
                        return false;
        return true;
}

bool cfg_header_value_valid(const char *s)
{
        for (; *s; s++)
                if (((unsigned char) *s < 0x20 && *s != '\t') || *s == 0x7F)
                        return false;
        return true;
}

int cfg_bool(const cJSON *obj, const char *key, const char *path, bool *ret, char **reterr)
{
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);

        if (!v)
                return 0;
        if (!cJSON_IsBool(v))
                return cfg_error_value(reterr, path, key, v, "is not true or false");
        *ret = cJSON_IsTrue(v);
        return 0;
}

int cfg_uint(const cJSON *obj, const char *key, const char *path, uint64_t min, uint64_t max, uint64_t *ret,
             char **reterr)
{
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
        double d;
        char *repr;
        int r;

        if (!v)
                return 0;
        if (!cJSON_IsNumber(v))
                return cfg_error_value(reterr, path, key, v, "is not an integer");
        d = v->valuedouble;
        if (!isfinite(d) || d != floor(d))
                return cfg_error_value(reterr, path, key, v, "is not an integer");
        /* 2^64 as a double: UINT64_MAX itself rounds up to it. */
        if (d < 0 || d >= 18446744073709551616.0 || (uint64_t) d < min || (uint64_t) d > max) {
                repr = json_repr(v);
                if (!repr)
                        return -ENOMEM;
                r = cfg_error(reterr, path, key, "%s is out of range (%llu..%llu)", repr, (unsigned long long) min,
                              (unsigned long long) max);
                free(repr);
                return r;
        }
        *ret = (uint64_t) d;
        return 0;
}

int cfg_duration(const cJSON *obj, const char *key, const char *path, bool positive, uint64_t *ret_ms, char **reterr)
{
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
        uint64_t ms;
        int r;

        if (!v)
                return 0;
        if (!cJSON_IsString(v) || !v->valuestring)
                return cfg_error_value(reterr, path, key, v, DURATION_HINT);
        r = duration_parse(v->valuestring, &ms);
        if (r == -ERANGE)
                return cfg_error_value(reterr, path, key, v, "is too long");
        if (r < 0)
                return cfg_error_value(reterr, path, key, v, DURATION_HINT);
        if (positive && ms == 0)
                return cfg_error(reterr, path, key, "must be greater than 0");
        *ret_ms = ms;
        return 0;
}

int cfg_check_keys(const cJSON *obj, const char *path, const char *const *a, const char *const *b, const char *const *c,
                   char **reterr)
{
        const char *const *lists[] = { a, b, c };

        for (const cJSON *o = obj->child; o; o = o->next) {
                bool known = false;

                for (size_t l = 0; l < ELEMENTSOF(lists) && !known; l++)
                        for (const char *const *k = lists[l]; k && *k && !known; k++)
                                known = strcmp(*k, o->string) == 0;
                if (!known)
                        return cfg_error(reterr, path, o->string, "unknown key");
                for (const cJSON *d = obj->child; d != o; d = d->next)
                        if (strcmp(d->string, o->string) == 0)
                                return cfg_error(reterr, path, o->string, "duplicate key");
        }
        return 0;
}
