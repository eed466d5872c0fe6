/* The config loader: JSON text plus probe flags -> a validated struct config (README
 * "Config file", "Command line").
 *
 * Pipeline, in this order, so that every error names the JSON path the user wrote:
 *   1. cJSON parse (with length; trailing garbage rejected); a syntax error reports
 *      line and column.
 *   2. ${VAR} / ${VAR:-default} expansion of every string value in the tree, before any
 *      validation (daemon/config_env.c).
 *   3. Validation top-down. Unknown keys and duplicate keys are errors at every level.
 *      Each probe is rebuilt as an "effective" JSON object (name, type, canonical
 *      scopes, every timing key with durations normalized by duration_format, then the
 *      kind's own keys), which ops->parse validates and may complete with its defaults.
 *      That object is what --check-config prints and, with its keys sorted, what a
 *      reload compares (probe_digest).
 *   4. Probe flags become the same kind of JSON object (daemon/config_flags.c) and go
 *      through the same probe validation, with the flag ("--tcp app=x") as their path.
 *
 * Error strings: "config: <path>: <why>" for the file, "<flag>: <key>: <why>" for flags
 * (cfg_error tells them apart by the leading "--"). Nothing here logs: errors come back
 * to the caller (docs/design.md).
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <openssl/sha.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bounds.h"
#include "buf.h"
#include "config.h"
#include "config_env.h"
#include "config_flags.h"
#include "config_get.h"
#include "nametable.h"
#include "probe.h"
#include "registry.h"
#include "util.h"

#define DEFAULT_LISTEN "0.0.0.0:8081"
#define DEFAULT_CONFIG_TEXT                                                                                            \
        "{\"probes\":[{\"name\":\"app\",\"type\":\"tcp\","                                                             \
        "\"address\":\"127.0.0.1:${PROBED_TARGET_PORT:-8080}\"}]}"
#define STRINGIFY_(x) #x
#define STRINGIFY(x) STRINGIFY_(x)

static const char *const scope_names[] = { "startup", "liveness", "readiness" };
static const unsigned scope_flags[] = { SCOPE_STARTUP, SCOPE_LIVENESS, SCOPE_READINESS };

static const char *const top_keys[] = {
        "listen",     "resolver", "log_level", "details", "drain",  "stall_threshold",
        "fresh_wait", "watchdog", "defaults",  "backoff", "probes", NULL,
};
static const char *const timing_keys[] = {
        "period", "timeout", "initial_delay", "startup_period", "success_threshold", "failure_threshold", NULL,
};
static const char *const backoff_keys[] = { "initial", "max", NULL };
static const char *const probe_common_keys[] = { "name", "type", "scopes", NULL };

/* ---- small validators ----------------------------------------------------------- */

static bool name_valid(const char *s)
{
        size_t n = strlen(s);

        if (n < 1 || n > MAX_NAME_LEN)
                return false;
        for (const char *p = s; *p; p++)
                if (!isalnum((unsigned char) *p) && !strchr("_.-", *p))
                        return false;
        return true;
}

/* ---- timing --------------------------------------------------------------------- */

static int cfg_timing(const cJSON *obj, const char *path, struct timing *t, char **reterr)
{
        uint64_t st = t->success_threshold, ft = t->failure_threshold;
        int r;

        if ((r = cfg_duration(obj, "period", path, true, &t->period_ms, reterr)) < 0 ||
            (r = cfg_duration(obj, "timeout", path, true, &t->timeout_ms, reterr)) < 0 ||
            (r = cfg_duration(obj, "initial_delay", path, false, &t->initial_delay_ms, reterr)) < 0 ||
            (r = cfg_duration(obj, "startup_period", path, true, &t->startup_period_ms, reterr)) < 0 ||
            (r = cfg_uint(obj, "success_threshold", path, 1, UINT_MAX, &st, reterr)) < 0 ||
            (r = cfg_uint(obj, "failure_threshold", path, 1, UINT_MAX, &ft, reterr)) < 0)
                return r;
        t->success_threshold = (unsigned) st;
        t->failure_threshold = (unsigned) ft;
        return 0;
}

static int json_add_duration(cJSON *obj, const char *key, uint64_t ms)
{
        char buf[64];

        duration_format(ms, buf, sizeof(buf));
        return cJSON_AddStringToObject(obj, key, buf) ? 0 : -ENOMEM;
}

static int json_add_timing(cJSON *obj, const struct timing *t)
{
        if (json_add_duration(obj, "period", t->period_ms) < 0 ||
            json_add_duration(obj, "timeout", t->timeout_ms) < 0 ||
            json_add_duration(obj, "initial_delay", t->initial_delay_ms) < 0 ||
            json_add_duration(obj, "startup_period", t->startup_period_ms) < 0 ||
            !cJSON_AddNumberToObject(obj, "success_threshold", t->success_threshold) ||
            !cJSON_AddNumberToObject(obj, "failure_threshold", t->failure_threshold))
                return -ENOMEM;
        return 0;
}

/* ---- probes --------------------------------------------------------------------- */

struct load {
        struct config *cfg;
        struct name_table names; /* probe names so far -> their index */
        size_t n_file;           /* probes from the file come first */
        const struct probe_flag *flags;
        bool lean; /* keep digests only, not each probe's json */
};

/* The path under which probe i was given: "probes[i]" or its flag. malloc'd. */
static char *load_probe_path(const struct load *ld, size_t i)
{
        if (i < ld->n_file)
                return strdup_printf("probes[%zu]", i);
        return strdup_printf("--%s %s", ld->flags[i - ld->n_file].kind, ld->flags[i - ld->n_file].arg);
}

static const char *load_probe_name(const void *ctx, size_t idx)
{
        const struct load *ld = ctx;

        return ld->cfg->probes[idx].name;
}

/* "<type> is not a known type (http, tcp, ...)": the kinds of the registry. */
static int cfg_type_error(char **reterr, const char *path, const cJSON *type)
{
        char why[256] = "is not a known type (";
        size_t len = strlen(why);

        for (const struct probe_ops *const *k = probe_kinds; *k; k++) {
                int n = snprintf(why + len, sizeof(why) - len, "%s%s", k == probe_kinds ? "" : ", ", (*k)->type);

                if (n < 0 || (size_t) n >= sizeof(why) - len)
                        return -ENOMEM; /* never with the kinds there are */
                len += (size_t) n;
        }
        if (len + 2 > sizeof(why))
                return -ENOMEM;
        memcpy(why + len, ")", 2);
        return cfg_error_value(reterr, path, "type", type, why);
}

static int cfg_scopes(const cJSON *obj, const char *path, unsigned *ret, char **reterr)
{
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, "scopes");
        unsigned scopes = 0;
        size_t i = 0;
        const cJSON *s;

        if (!v) {
                *ret = SCOPE_ALL;
                return 0;
        }
        if (!cJSON_IsArray(v))
                return cfg_error_value(reterr, path, "scopes", v,
                                       "is not an array of \"startup\", \"liveness\", \"readiness\"");
        cJSON_ArrayForEach(s, v)
        {
                char key[32];
                size_t k;

                (void) snprintf(key, sizeof(key), "scopes[%zu]", i++);
                for (k = 0; k < ELEMENTSOF(scope_names); k++)
                        if (cJSON_IsString(s) && strcmp(s->valuestring, scope_names[k]) == 0)
                                break;
                if (k == ELEMENTSOF(scope_names))
                        return cfg_error_value(reterr, path, key, s, "is not a scope (startup, liveness, readiness)");
                if (scopes & scope_flags[k])
                        return cfg_error_value(reterr, path, key, s, "is listed twice");
                scopes |= scope_flags[k];
        }
        if (!scopes)
                return cfg_error(reterr, path, "scopes", "must not be empty");
        *ret = scopes;
        return 0;
}

/* The probe's name: valid and not used before. */
static int load_probe_name_check(struct load *ld, size_t idx, const cJSON *obj, const char *path, char **reterr)
{
        struct probe_config *pc = &ld->cfg->probes[idx];
        const char *name = NULL;
        char *other_path;
        size_t other;
        int r;

        if ((r = cfg_string(obj, "name", path, true, &name, reterr)) < 0)
                return r;
        if (!name_valid(name))
                return cfg_error_value(reterr, path, "name", cJSON_GetObjectItemCaseSensitive(obj, "name"),
                                       "is not a valid name (1 to " STRINGIFY(MAX_NAME_LEN) " of A-Z a-z 0-9 _ . -)");
        pc->name = strdup(name);
        if (!pc->name)
                return -ENOMEM;
        if (name_table_add(&ld->names, idx, &other) != -EEXIST)
                return 0;
        other_path = load_probe_path(ld, other);
        if (!other_path)
                return -ENOMEM;
        r = cfg_error(reterr, path, "name", "\"%s\" is already used by %s", name, other_path);
        free(other_path);
        return r;
}

/* The effective object of pc, as --check-config prints it: fixed keys first (canonical
 * scopes, every timing key), then the kind's keys of obj as written. NULL on ENOMEM. */
static cJSON *probe_effective(const struct probe_config *pc, const cJSON *obj)
{
        cJSON *eff = cJSON_CreateObject(), *arr;

        if (!eff || !cJSON_AddStringToObject(eff, "name", pc->name) ||
            !cJSON_AddStringToObject(eff, "type", pc->ops->type) || !(arr = cJSON_AddArrayToObject(eff, "scopes")))
                goto fail;
        for (size_t k = 0; k < ELEMENTSOF(scope_names); k++) {
                cJSON *s;

                if (!(pc->scopes & scope_flags[k]))
                        continue;
                s = cJSON_CreateString(scope_names[k]);
                if (!s || !cJSON_AddItemToArray(arr, s)) {
                        cJSON_Delete(s);
                        goto fail;
                }
        }
        if (json_add_timing(eff, &pc->timing) < 0)
                goto fail;
        for (const cJSON *c = obj->child; c; c = c->next) {
                bool kind_key = false;
                cJSON *dup;

                for (const char *const *k = pc->ops->keys; k && *k && !kind_key; k++)
                        kind_key = strcmp(*k, c->string) == 0;
                if (!kind_key)
                        continue;
                dup = cJSON_Duplicate(c, true);
                if (!dup || !cJSON_AddItemToObject(eff, c->string, dup)) {
                        cJSON_Delete(dup);
                        goto fail;
                }
        }
        return eff;
fail:
        cJSON_Delete(eff);
        return NULL;
}

/* Sorts the keys of every object in the tree under node (array elements keep their
 * order): the canonical form a reload compares, so that keys reordered by hand or by a
 * tool (jq, a template) and defaults spelled out in another place are no change. Keys
 * are unique (duplicates are config errors); a few dozen at most: insertion sort. */
static void json_sort_keys(cJSON *node)
{
        cJSON *sorted = NULL, *next, *prev = NULL;

        for (cJSON *c = node->child; c; c = c->next)
                json_sort_keys(c);
        if (!cJSON_IsObject(node))
                return;
        for (cJSON *c = node->child; c; c = next) {
                cJSON **at = &sorted;

                next = c->next;
                while (*at && strcmp((*at)->string, c->string) <= 0)
                        at = &(*at)->next;
                c->next = *at;
                *at = c;
        }
        for (cJSON *c = sorted; c; c = c->next) {
                c->prev = prev;
                prev = c;
        }
        if (sorted)
                sorted->prev = prev; /* cJSON: the first item's prev is the last one */
        node->child = sorted;
}

/* The digest of the effective object eff with its keys sorted (json_sort_keys), what
 * probe_config_equal compares. When eff is kept (--check-config prints it in its own
 * order), a copy is sorted. */
static int probe_digest(cJSON *eff, bool keep, unsigned char digest[32])
{
        cJSON *c = keep ? cJSON_Duplicate(eff, true) : eff;
        char *canon;

        if (!c)
                return -ENOMEM;
        json_sort_keys(c);
        canon = cJSON_PrintUnformatted(c);
        if (c != eff)
                cJSON_Delete(c);
        if (!canon)
                return -ENOMEM;
        SHA256((const unsigned char *) canon, strlen(canon), digest);
        free(canon);
        return 0;
}

/* Validates one probe object (from the file or built from a flag) into probes[idx]. */
static int load_probe(struct load *ld, size_t idx, const cJSON *obj, const char *path, char **reterr)
{
        struct probe_config *pc = &ld->cfg->probes[idx];
        const char *type = NULL;
        cJSON *eff;
        int r;

        if (!cJSON_IsObject(obj))
                return cfg_error_value(reterr, path, NULL, obj, "is not an object");
        if ((r = load_probe_name_check(ld, idx, obj, path, reterr)) < 0 ||
            (r = cfg_string(obj, "type", path, true, &type, reterr)) < 0)
                return r;
        pc->ops = probe_ops_find(type);
        if (!pc->ops)
                return cfg_type_error(reterr, path, cJSON_GetObjectItemCaseSensitive(obj, "type"));
        pc->timing = ld->cfg->defaults;
        if ((r = cfg_check_keys(obj, path, probe_common_keys, timing_keys, pc->ops->keys, reterr)) < 0 ||
            (r = cfg_scopes(obj, path, &pc->scopes, reterr)) < 0 ||
            (r = cfg_timing(obj, path, &pc->timing, reterr)) < 0)
                return r;

        eff = probe_effective(pc, obj);
        if (!eff)
                return -ENOMEM;
        r = pc->ops->parse(eff, path, &pc->spec, &pc->target, reterr);
        if (r >= 0)
                r = probe_digest(eff, !ld->lean, pc->digest);
        if (r < 0) {
                cJSON_Delete(eff);
                return r;
        }
        if (ld->lean)
                cJSON_Delete(eff); /* freed at once, while it is the newest allocation: no heap holes */
        else
                pc->json = eff;
        return 0;
}

/* ---- load ----------------------------------------------------------------------- */

static int json_syntax_error(const char *text, size_t len, const char *at, char **reterr)
{
        size_t pos = at && at >= text && at <= text + len ? (size_t) (at - text) : 0;
        size_t line = 1, col = 1;

        for (size_t i = 0; i < pos; i++) {
                if (text[i] == '\n') {
                        line++;
                        col = 1;
                } else {
                        col++;
                }
        }
        return cfg_error(reterr, NULL, NULL, "invalid JSON at line %zu, column %zu", line, col);
}

/* listen, log_level, details and the top-level durations. */
static int load_settings(struct config *c, const cJSON *root, char **reterr)
{
        const char *s = NULL;
        int r;

        if ((r = cfg_string(root, "listen", "", false, &s, reterr)) < 0)
                return r;
        if (s && !config_listen_valid(s))
                return cfg_error_value(reterr, "", "listen", cJSON_GetObjectItemCaseSensitive(root, "listen"),
                                       LISTEN_HINT);
        c->listen = strdup(s ? s : DEFAULT_LISTEN);
        if (!c->listen)
                return -ENOMEM;

        s = NULL;
        if ((r = cfg_string(root, "resolver", "", false, &s, reterr)) < 0)
                return r;
        if (s && !*s)
                s = NULL; /* "": resolv.conf's servers, as when absent */
        if (s && !dns_servers_valid(s))
                return cfg_error_value(reterr, "", "resolver", cJSON_GetObjectItemCaseSensitive(root, "resolver"),
                                       "is not ADDR:PORT[,ADDR:PORT...] with IP addresses (e.g. \"10.0.0.2:53\")");
        if (s && !(c->resolver = strdup(s)))
                return -ENOMEM;

        s = NULL;
        if ((r = cfg_string(root, "log_level", "", false, &s, reterr)) < 0)
                return r;
        if (s) {
                enum log_level l = log_level_from_string(s);

                if (l < 0)
                        return cfg_error_value(reterr, "", "log_level",
                                               cJSON_GetObjectItemCaseSensitive(root, "log_level"),
                                               "is not a log level (debug, info, warn, error)");
                c->log_level = l;
                c->log_level_set = true;
        }

        s = NULL;
        if ((r = cfg_string(root, "details", "", false, &s, reterr)) < 0)
                return r;
        if (s && strcmp(s, "all") != 0 && strcmp(s, "loopback") != 0)
                return cfg_error_value(reterr, "", "details", cJSON_GetObjectItemCaseSensitive(root, "details"),
                                       "is not \"all\" or \"loopback\"");
        c->details_loopback = s && strcmp(s, "loopback") == 0;

        if ((r = cfg_duration(root, "drain", "", false, &c->drain_ms, reterr)) < 0 ||
            (r = cfg_duration(root, "stall_threshold", "", true, &c->stall_threshold_ms, reterr)) < 0 ||
            (r = cfg_duration(root, "fresh_wait", "", false, &c->fresh_wait_ms, reterr)) < 0 ||
            (r = cfg_duration(root, "watchdog", "", true, &c->watchdog_ms, reterr)) < 0)
                return r;
        return 0;
}

/* The "defaults" and "backoff" objects. */
static int load_defaults_backoff(struct config *c, const cJSON *root, char **reterr)
{
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, "defaults");
        int r;

        if (v) {
                if (!cJSON_IsObject(v))
                        return cfg_error_value(reterr, "", "defaults", v, "is not an object");
                if ((r = cfg_check_keys(v, "defaults", timing_keys, NULL, NULL, reterr)) < 0 ||
                    (r = cfg_timing(v, "defaults", &c->defaults, reterr)) < 0)
                        return r;
        }

        v = cJSON_GetObjectItemCaseSensitive(root, "backoff");
        if (v) {
                if (!cJSON_IsObject(v))
                        return cfg_error_value(reterr, "", "backoff", v, "is not an object");
                if ((r = cfg_check_keys(v, "backoff", backoff_keys, NULL, NULL, reterr)) < 0 ||
                    (r = cfg_duration(v, "initial", "backoff", true, &c->backoff_initial_ms, reterr)) < 0 ||
                    (r = cfg_duration(v, "max", "backoff", true, &c->backoff_max_ms, reterr)) < 0)
                        return r;
        }
        if (c->backoff_max_ms < c->backoff_initial_ms) {
                char mx[64], in[64];

                duration_format(c->backoff_max_ms, mx, sizeof(mx));
                duration_format(c->backoff_initial_ms, in, sizeof(in));
                return cfg_error(reterr, "backoff", "max", "\"%s\" is less than backoff.initial \"%s\"", mx, in);
        }
        return 0;
}

/* The file's probes, then the flags' (their paths: "probes[i]", then the flag). */
static int load_probes(struct load *ld, const cJSON *root, const struct probe_flag *flags, size_t n_flags,
                       char **reterr)
{
        struct config *c = ld->cfg;
        const cJSON *v, *probes = cJSON_GetObjectItemCaseSensitive(root, "probes");
        size_t n_file = 0, n_total, i = 0;
        int r;

        if (probes && !cJSON_IsArray(probes))
                return cfg_error_value(reterr, "", "probes", probes, "is not an array");
        for (v = probes ? probes->child : NULL; v; v = v->next)
                n_file++;
        n_total = n_file + n_flags;
        if (n_total > MAX_PROBES)
                return cfg_error(reterr, "", "probes", "more than %d probes (file and flags together)", MAX_PROBES);
        ld->n_file = n_file;
        ld->flags = flags;
        if (n_total == 0)
                return 0;

        c->probes = calloc(n_total, sizeof(*c->probes));
        if (name_table_init(&ld->names, n_total, load_probe_name, ld) < 0 || !c->probes)
                return -ENOMEM;

        for (v = probes ? probes->child : NULL; v; v = v->next, i++) {
                char ppath[32];

                (void) snprintf(ppath, sizeof(ppath), "probes[%zu]", i);
                c->n_probes = i + 1; /* config_free frees a half-filled entry */
                if ((r = load_probe(ld, i, v, ppath, reterr)) < 0)
                        return r;
        }
        for (size_t f = 0; f < n_flags; f++, i++) {
                char *fpath = load_probe_path(ld, i);
                cJSON *obj = NULL;

                if (!fpath)
                        return -ENOMEM;
                c->n_probes = i + 1;
                r = config_flag_to_json(&flags[f], fpath, &obj, reterr);
                if (r >= 0)
                        r = load_probe(ld, i, obj, fpath, reterr);
                cJSON_Delete(obj);
                free(fpath);
                if (r < 0)
                        return r;
        }
        return 0;
}

static int load_top(struct load *ld, cJSON *root, const struct probe_flag *flags, size_t n_flags, char **reterr)
{
        int r;

        if (!cJSON_IsObject(root))
                return cfg_error(reterr, NULL, NULL, "the top level is not a JSON object");
        if ((r = config_expand(root, reterr)) < 0 || (r = cfg_check_keys(root, "", top_keys, NULL, NULL, reterr)) < 0 ||
            (r = load_settings(ld->cfg, root, reterr)) < 0 || (r = load_defaults_backoff(ld->cfg, root, reterr)) < 0)
                return r;
        return load_probes(ld, root, flags, n_flags, reterr);
}

static int config_load_impl(const char *text, const struct probe_flag *flags, size_t n_flags, bool lean,
                            struct config **ret_config, char **reterr)
{
        struct load ld = { .lean = lean };
        struct config *c;
        cJSON *root = NULL;
        const char *end = NULL;
        size_t len;
        int r;

        if (reterr)
                *reterr = NULL;
        if (!text && n_flags == 0)
                text = DEFAULT_CONFIG_TEXT;

        c = calloc(1, sizeof(*c));
        if (!c)
                return cfg_fail(-ENOMEM, reterr);
        ld.cfg = c;
        c->log_level = LOG_LEVEL_INFO;
        c->drain_ms = 0;
        c->stall_threshold_ms = 500;
        c->fresh_wait_ms = 300;
        c->watchdog_ms = 10000;
        c->defaults = (struct timing){
                .period_ms = 10000,
                .timeout_ms = 1000,
                .initial_delay_ms = 0,
                .startup_period_ms = 100,
                .success_threshold = 1,
                .failure_threshold = 3,
        };
        c->backoff_initial_ms = 1000;
        c->backoff_max_ms = 300000;

        if (text) {
                len = strlen(text);
                root = cJSON_ParseWithLengthOpts(text, len, &end, false);
                if (!root) {
                        r = json_syntax_error(text, len, end, reterr);
                        goto fail;
                }
                /* cJSON stops after the value: anything but whitespace after it is an error. */
                end += strspn(end, " \t\r\n");
                if (*end) {
                        r = json_syntax_error(text, len, end, reterr);
                        goto fail;
                }
        } else {
                root = cJSON_CreateObject();
                if (!root) {
                        r = -ENOMEM;
                        goto fail;
                }
        }

        r = load_top(&ld, root, flags, n_flags, reterr);
        if (r < 0)
                goto fail;
        cJSON_Delete(root);
        name_table_free(&ld.names);
        *ret_config = c;
        return 0;
fail:
        cJSON_Delete(root);
        name_table_free(&ld.names);
        config_free(c);
        return cfg_fail(r, reterr);
}

int config_read_file(const char *path, char **ret_text, char **reterr)
{
        struct buf b = { 0 };
        int fd, r;

        if (reterr)
                *reterr = NULL;
        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0) {
                r = negative_errno();
                goto fail_errno;
        }
        for (;;) {
                size_t room;
                ssize_t n;

                if (!buf_reserve(&b, 4096)) {
                        r = -ENOMEM;
                        goto fail_errno;
                }
                /* one byte past the limit tells "too large" from "exactly at it" */
                room = b.cap - 1 - b.len;
                if (room > MAX_CONFIG_BYTES + 1 - b.len)
                        room = MAX_CONFIG_BYTES + 1 - b.len;
                n = read(fd, b.p + b.len, room);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        r = negative_errno();
                        goto fail_errno;
                }
                if (n == 0)
                        break;
                b.len += (size_t) n;
                if (b.len > MAX_CONFIG_BYTES) {
                        r = -EFBIG;
                        if (reterr)
                                *reterr = strdup_printf("config: %s: larger than %u bytes", path, MAX_CONFIG_BYTES);
                        goto fail;
                }
        }
        b.p[b.len] = '\0';
        if (memchr(b.p, '\0', b.len)) {
                r = -EINVAL;
                if (reterr)
                        *reterr = strdup_printf("config: %s: contains a NUL byte", path);
                goto fail;
        }
        (void) close(fd);
        *ret_text = b.p;
        return 0;

fail_errno:
        if (reterr)
                *reterr = strdup_printf("config: %s: %s", path, strerror(-r));
fail:
        if (fd >= 0)
                (void) close(fd);
        free(b.p);
        return r;
}

cJSON *config_to_json(const struct config *c)
{
        cJSON *root = cJSON_CreateObject(), *o, *arr;
        const char *level = log_level_to_string(c->log_level);

        if (!root || !cJSON_AddStringToObject(root, "listen", c->listen ? c->listen : DEFAULT_LISTEN) ||
            !cJSON_AddStringToObject(root, "resolver", c->resolver ? c->resolver : "") ||
            !cJSON_AddStringToObject(root, "log_level", level ? level : "info") ||
            !cJSON_AddStringToObject(root, "details", c->details_loopback ? "loopback" : "all") ||
            json_add_duration(root, "drain", c->drain_ms) < 0 ||
            json_add_duration(root, "stall_threshold", c->stall_threshold_ms) < 0 ||
            json_add_duration(root, "fresh_wait", c->fresh_wait_ms) < 0 ||
            json_add_duration(root, "watchdog", c->watchdog_ms) < 0)
                goto fail;
        o = cJSON_AddObjectToObject(root, "defaults");
        if (!o || json_add_timing(o, &c->defaults) < 0)
                goto fail;
        o = cJSON_AddObjectToObject(root, "backoff");
        if (!o || json_add_duration(o, "initial", c->backoff_initial_ms) < 0 ||
            json_add_duration(o, "max", c->backoff_max_ms) < 0)
                goto fail;
        arr = cJSON_AddArrayToObject(root, "probes");
        if (!arr)
                goto fail;
        for (size_t i = 0; i < c->n_probes; i++) {
                cJSON *p = c->probes[i].json ? cJSON_Duplicate(c->probes[i].json, true) : NULL;

                if (!p || !cJSON_AddItemToArray(arr, p)) {
                        cJSON_Delete(p);
                        goto fail;
                }
        }
        return root;
fail:
        cJSON_Delete(root);
        return NULL;
}

struct config *config_free(struct config *c)
{
        if (!c)
                return NULL;
        for (size_t i = 0; i < c->n_probes; i++) {
                struct probe_config *pc = &c->probes[i];

                if (pc->ops && pc->spec)
                        pc->ops->free_spec(pc->spec);
                free(pc->name);
                free(pc->target);
                cJSON_Delete(pc->json);
        }
        free(c->probes);
        free(c->listen);
        free(c->resolver);
        free(c);
        return NULL;
}

bool config_listen_valid(const char *addr)
{
        char host[256];
        uint16_t port;

        return address_split(addr, true, host, sizeof(host), &port) >= 0;
}

const struct probe_config *config_find_probe(const struct config *c, const char *name)
{
        if (!c || !name)
                return NULL;
        for (size_t i = 0; i < c->n_probes; i++)
                if (c->probes[i].name && strcmp(c->probes[i].name, name) == 0)
                        return &c->probes[i];
        return NULL;
}

bool probe_config_equal(const struct probe_config *a, const struct probe_config *b)
{
        if (!a || !b)
                return false;
        if (!a->name || !b->name || strcmp(a->name, b->name) != 0 || a->ops != b->ops)
                return false;
        return memcmp(a->digest, b->digest, sizeof(a->digest)) == 0;
}

int config_load(const char *text, const struct probe_flag *flags, size_t n_flags, struct config **ret_config,
                char **reterr)
{
        return config_load_impl(text, flags, n_flags, false, ret_config, reterr);
}

int config_load_lean(const char *text, const struct probe_flag *flags, size_t n_flags, struct config **ret_config,
                     char **reterr)
{
        return config_load_impl(text, flags, n_flags, true, ret_config, reterr);
}
