/* Unit tests for daemon/config.c: the embedded default, a full config, one case per
 * error kind (exact message, naming the JSON path), ${VAR} expansion, probe flags,
 * probe_config_equal, config_to_json round trips, config_read_file and the cfg_*
 * helpers. Kinds other than http and tcp may not be built yet: their cases check
 * probe_ops_find() and print a "skipped" note instead of passing silently. */
#include <check.h>
#include <cjson/cJSON.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bounds.h"
#include "config.h"
#include "probe.h"
#include "registry.h"
#include "util.h"

/* ---- helpers -------------------------------------------------------------------- */

static struct config *load_flags_ok(const char *text, const struct probe_flag *flags, size_t n)
{
        struct config *c = NULL;
        char *err = NULL;
        int r = config_load(text, flags, n, &c, &err);

        ck_assert_msg(r == 0, "config_load failed (%d): %s", r, err ? err : "(no message)");
        ck_assert_ptr_null(err);
        ck_assert_ptr_nonnull(c);
        return c;
}

static struct config *load_ok(const char *text)
{
        return load_flags_ok(text, NULL, 0);
}

static void expect_flags_error(const char *text, const struct probe_flag *flags, size_t n, const char *want)
{
        struct config *c = (struct config *) 0x1;
        char *err = NULL;
        int r = config_load(text, flags, n, &c, &err);

        ck_assert_msg(r == -EINVAL, "want -EINVAL, got %d (%s) for %s", r, err ? err : "no message",
                      text ? text : "(no text)");
        ck_assert_ptr_eq(c, (struct config *) 0x1); /* ret_config untouched on failure */
        ck_assert_ptr_nonnull(err);
        ck_assert_str_eq(err, want);
        free(err);
}

static void expect_error(const char *text, const char *want)
{
        expect_flags_error(text, NULL, 0, want);
}

static bool kind_or_skip(const char *type, const char *test)
{
        if (probe_ops_find(type))
                return true;
        printf("NOTE: %s skipped: probe kind \"%s\" is not built yet\n", test, type);
        fflush(stdout);
        return false;
}

static const char *pj_str(const struct probe_config *p, const char *key)
{
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(p->json, key);

        ck_assert_msg(cJSON_IsString(v), "%s.%s is not a string", p->name, key);
        return v->valuestring;
}

static void assert_default_timing(const struct timing *t)
{
        ck_assert_uint_eq(t->period_ms, 10000);
        ck_assert_uint_eq(t->timeout_ms, 1000);
        ck_assert_uint_eq(t->initial_delay_ms, 0);
        ck_assert_uint_eq(t->startup_period_ms, 100);
        ck_assert_uint_eq(t->success_threshold, 1);
        ck_assert_uint_eq(t->failure_threshold, 3);
}

/* Two texts as effective configs: equal after config_to_json. */
static bool configs_equal(const struct config *a, const struct config *b)
{
        cJSON *ja = config_to_json(a), *jb = config_to_json(b);
        bool eq;

        ck_assert_ptr_nonnull(ja);
        ck_assert_ptr_nonnull(jb);
        eq = cJSON_Compare(ja, jb, true);
        cJSON_Delete(ja);
        cJSON_Delete(jb);
        return eq;
}

#define TCP(name) "{\"name\":\"" name "\",\"type\":\"tcp\",\"address\":\"127.0.0.1:8080\"}"

/* ---- default and full configs --------------------------------------------------- */

START_TEST(test_embedded_default)
{
        struct config *c;

        ck_assert_int_eq(unsetenv("PROBED_TARGET_PORT"), 0);
        c = load_flags_ok(NULL, NULL, 0);
        ck_assert_str_eq(c->listen, "0.0.0.0:8081");
        ck_assert_int_eq(c->log_level, LOG_LEVEL_INFO);
        ck_assert(!c->log_level_set);
        ck_assert_uint_eq(c->drain_ms, 0);
        ck_assert_uint_eq(c->stall_threshold_ms, 500);
        assert_default_timing(&c->defaults);
        ck_assert_uint_eq(c->backoff_initial_ms, 1000);
        ck_assert_uint_eq(c->backoff_max_ms, 300000);
        ck_assert_uint_eq(c->n_probes, 1);
        ck_assert_str_eq(c->probes[0].name, "app");
        ck_assert_ptr_eq(c->probes[0].ops, probe_ops_find("tcp"));
        ck_assert_uint_eq(c->probes[0].scopes, SCOPE_ALL);
        assert_default_timing(&c->probes[0].timing);
        ck_assert_str_eq(c->probes[0].target, "127.0.0.1:8080");
        ck_assert_str_eq(pj_str(&c->probes[0], "address"), "127.0.0.1:8080");
        config_free(c);

        ck_assert_int_eq(setenv("PROBED_TARGET_PORT", "9191", 1), 0);
        c = load_flags_ok(NULL, NULL, 0);
        ck_assert_str_eq(c->probes[0].target, "127.0.0.1:9191");
        config_free(c);
}
END_TEST

START_TEST(test_empty_object)
{
        struct config *c = load_ok("{}");

        ck_assert_uint_eq(c->n_probes, 0); /* a file without probes has none: no default */
        ck_assert_str_eq(c->listen, "0.0.0.0:8081");
        config_free(c);
        c = load_ok(" \n{\"probes\": []}\n\n");
        ck_assert_uint_eq(c->n_probes, 0);
        config_free(c);
}
END_TEST

static const char full_http_tcp[] =
        "{\n"
        "  \"listen\": \"127.0.0.1:9000\",\n"
        "  \"log_level\": \"debug\",\n"
        "  \"drain\": \"2s\",\n"
        "  \"stall_threshold\": \"750ms\",\n"
        "  \"defaults\": {\"period\": \"20s\", \"timeout\": \"2s\", \"initial_delay\": \"1s\",\n"
        "               \"startup_period\": \"200ms\", \"success_threshold\": 2, \"failure_threshold\": 4},\n"
        "  \"backoff\": {\"initial\": \"500ms\", \"max\": \"1m\"},\n"
        "  \"probes\": [\n"
        "    {\"name\": \"api\", \"type\": \"http\", \"url\": \"http://127.0.0.1:8080/health\",\n"
        "     \"scopes\": [\"startup\", \"liveness\", \"readiness\"], \"period\": \"5s\",\n"
        "     \"headers\": {\"X-Probe\": \"1\"}, \"expect_status\": \"200,204\"},\n"
        "    {\"name\": \"port\", \"type\": \"tcp\", \"address\": \"127.0.0.1:8080\", \"scopes\": [\"startup\"]}\n"
        "  ]\n"
        "}\n";

START_TEST(test_full_http_tcp)
{
        struct config *c = load_ok(full_http_tcp);
        const struct probe_config *api, *port;

        ck_assert_str_eq(c->listen, "127.0.0.1:9000");
        ck_assert_int_eq(c->log_level, LOG_LEVEL_DEBUG);
        ck_assert(c->log_level_set);
        ck_assert_uint_eq(c->drain_ms, 2000);
        ck_assert_uint_eq(c->stall_threshold_ms, 750);
        ck_assert_uint_eq(c->defaults.period_ms, 20000);
        ck_assert_uint_eq(c->defaults.timeout_ms, 2000);
        ck_assert_uint_eq(c->defaults.initial_delay_ms, 1000);
        ck_assert_uint_eq(c->defaults.startup_period_ms, 200);
        ck_assert_uint_eq(c->defaults.success_threshold, 2);
        ck_assert_uint_eq(c->defaults.failure_threshold, 4);
        ck_assert_uint_eq(c->backoff_initial_ms, 500);
        ck_assert_uint_eq(c->backoff_max_ms, 60000);
        ck_assert_uint_eq(c->n_probes, 2);

        api = config_find_probe(c, "api");
        port = config_find_probe(c, "port");
        ck_assert_ptr_eq(api, &c->probes[0]);
        ck_assert_ptr_eq(port, &c->probes[1]);
        ck_assert_ptr_null(config_find_probe(c, "nope"));
        ck_assert_ptr_null(config_find_probe(c, "API"));

        ck_assert_ptr_eq(api->ops, probe_ops_find("http"));
        ck_assert_uint_eq(api->scopes, SCOPE_ALL);
        ck_assert_uint_eq(api->timing.period_ms, 5000);  /* own */
        ck_assert_uint_eq(api->timing.timeout_ms, 2000); /* from defaults */
        ck_assert_uint_eq(api->timing.success_threshold, 2);
        ck_assert_uint_eq(api->timing.failure_threshold, 4);
        ck_assert_ptr_nonnull(api->target);
        ck_assert_ptr_nonnull(strstr(api->target, "127.0.0.1:8080"));
        ck_assert_str_eq(pj_str(api, "name"), "api");
        ck_assert_str_eq(pj_str(api, "type"), "http");
        ck_assert_str_eq(pj_str(api, "period"), "5s");
        ck_assert_str_eq(pj_str(api, "timeout"), "2s");
        ck_assert_str_eq(pj_str(api, "initial_delay"), "1s");
        ck_assert_str_eq(pj_str(api, "startup_period"), "200ms");
        ck_assert_str_eq(pj_str(api, "url"), "http://127.0.0.1:8080/health");
        ck_assert_str_eq(pj_str(api, "expect_status"), "200,204");

        ck_assert_ptr_eq(port->ops, probe_ops_find("tcp"));
        ck_assert_uint_eq(port->scopes, SCOPE_STARTUP);
        ck_assert_uint_eq(port->timing.period_ms, 20000);
        ck_assert_str_eq(port->target, "127.0.0.1:8080");
        {
                const cJSON *sc = cJSON_GetObjectItemCaseSensitive(port->json, "scopes");

                ck_assert_int_eq(cJSON_GetArraySize(sc), 1);
                ck_assert_str_eq(cJSON_GetArrayItem(sc, 0)->valuestring, "startup");
                ck_assert_double_eq(cJSON_GetObjectItemCaseSensitive(port->json, "failure_threshold")->valuedouble, 4);
        }
        config_free(c);
}
END_TEST

static const char spec_example[] =
        "{\n"
        "  \"listen\": \"0.0.0.0:8081\",\n"
        "  \"log_level\": \"info\",\n"
        "  \"drain\": \"0s\",\n"
        "  \"stall_threshold\": \"500ms\",\n"
        "  \"defaults\": {\"period\": \"10s\", \"timeout\": \"1s\", \"initial_delay\": \"0s\",\n"
        "               \"startup_period\": \"100ms\", \"success_threshold\": 1, \"failure_threshold\": 3},\n"
        "  \"backoff\": {\"initial\": \"1s\", \"max\": \"300s\"},\n"
        "  \"probes\": [\n"
        "    {\"name\": \"api\", \"type\": \"http\", \"url\": \"http://127.0.0.1:8080/health\",\n"
        "     \"scopes\": [\"startup\", \"liveness\", \"readiness\"], \"period\": \"5s\"},\n"
        "    {\"name\": \"port\", \"type\": \"tcp\", \"address\": \"127.0.0.1:8080\", \"scopes\": [\"startup\"]},\n"
        "    {\"name\": \"chat\", \"type\": \"websocket\", \"url\": \"ws://127.0.0.1:8080/ws\"},\n"
        "    {\"name\": \"rpc\", \"type\": \"grpc\", \"address\": \"127.0.0.1:50051\", \"service\": \"\"},\n"
        "    {\"name\": \"disk\", \"type\": \"exec\", \"command\": [\"/bin/test\", \"-w\", \"/tmp\"]}\n"
        "  ]\n"
        "}\n";

START_TEST(test_spec_example_all_kinds)
{
        struct config *c, *c2;
        cJSON *j;
        char *text;

        if (!kind_or_skip("websocket", "test_spec_example_all_kinds") ||
            !kind_or_skip("grpc", "test_spec_example_all_kinds") ||
            !kind_or_skip("exec", "test_spec_example_all_kinds"))
                return;
        c = load_ok(spec_example);
        ck_assert_uint_eq(c->n_probes, 5);
        ck_assert_ptr_eq(config_find_probe(c, "chat")->ops, probe_ops_find("websocket"));
        ck_assert_ptr_eq(config_find_probe(c, "rpc")->ops, probe_ops_find("grpc"));
        ck_assert_ptr_eq(config_find_probe(c, "disk")->ops, probe_ops_find("exec"));
        {
                const cJSON *cmd = cJSON_GetObjectItemCaseSensitive(config_find_probe(c, "disk")->json, "command");

                ck_assert_int_eq(cJSON_GetArraySize(cmd), 3);
                ck_assert_str_eq(cJSON_GetArrayItem(cmd, 2)->valuestring, "/tmp");
        }
        /* and its effective form loads back to the same thing */
        j = config_to_json(c);
        text = cJSON_Print(j);
        c2 = load_ok(text);
        ck_assert(configs_equal(c, c2));
        for (size_t i = 0; i < c->n_probes; i++)
                ck_assert(probe_config_equal(&c->probes[i], &c2->probes[i]));
        free(text);
        cJSON_Delete(j);
        config_free(c2);
        config_free(c);
}
END_TEST

/* ---- errors: one per kind, exact text ------------------------------------------ */

static const struct {
        const char *text;
        const char *err;
} errors[] = {
        /* JSON syntax */
        { "{\"listen\": }", "config: invalid JSON at line 1, column 12" },
        { "{\n  \"drain\": \"1s\",\n  \"probes\" []\n}", "config: invalid JSON at line 3, column 12" },
        { "{} x", "config: invalid JSON at line 1, column 4" },
        { "", "config: invalid JSON at line 1, column 1" },
        { "[]", "config: the top level is not a JSON object" },
        /* unknown and duplicate keys, every level */
        { "{\"lisen\": \"0.0.0.0:1\"}", "config: lisen: unknown key" },
        { "{\"defaults\": {\"perod\": \"1s\"}}", "config: defaults.perod: unknown key" },
        { "{\"backoff\": {\"inital\": \"1s\"}}", "config: backoff.inital: unknown key" },
        { "{\"probes\": [" TCP("a") ", {\"name\": \"b\", \"type\": \"tcp\", \"address\": \"127.0.0.1:1\","
                                    " \"perod\": \"1s\"}]}",
          "config: probes[1].perod: unknown key" },
        { "{\"probes\": [{\"name\": \"b\", \"type\": \"tcp\", \"address\": \"127.0.0.1:1\", \"url\": \"x\"}]}",
          "config: probes[0].url: unknown key" }, /* another kind's key */
        { "{\"drain\": \"1s\", \"drain\": \"2s\"}", "config: drain: duplicate key" },
        { "{\"probes\": [{\"name\": \"a\", \"type\": \"tcp\", \"address\": \"127.0.0.1:1\", \"period\": \"1s\","
          " \"period\": \"2s\"}]}",
          "config: probes[0].period: duplicate key" },
        /* durations */
        { "{\"probes\": [" TCP("a") ", {\"name\": \"b\", \"type\": \"tcp\", \"address\": \"127.0.0.1:1\","
                                    " \"timeout\": \"5x\"}]}",
          "config: probes[1].timeout: \"5x\" is not a duration (e.g. \"500ms\", \"2s\")" },
        { "{\"probes\": [" TCP("a") ", {\"name\": \"b\", \"type\": \"tcp\", \"address\": \"127.0.0.1:1\","
                                    " \"timeout\": 5}]}",
          "config: probes[1].timeout: 5 is not a duration (e.g. \"500ms\", \"2s\")" },
        { "{\"defaults\": {\"period\": \"5\"}}",
          "config: defaults.period: \"5\" is not a duration (e.g. \"500ms\", \"2s\")" },
        { "{\"drain\": \"-1s\"}", "config: drain: \"-1s\" is not a duration (e.g. \"500ms\", \"2s\")" },
        { "{\"drain\": null}", "config: drain: null is not a duration (e.g. \"500ms\", \"2s\")" },
        { "{\"defaults\": {\"timeout\": \"99999999999h\"}}", "config: defaults.timeout: \"99999999999h\" is too long" },
        { "{\"defaults\": {\"period\": \"0s\"}}", "config: defaults.period: must be greater than 0" },
        { "{\"defaults\": {\"timeout\": \"0ms\"}}", "config: defaults.timeout: must be greater than 0" },
        { "{\"defaults\": {\"startup_period\": \"0s\"}}", "config: defaults.startup_period: must be greater than 0" },
        { "{\"stall_threshold\": \"0s\"}", "config: stall_threshold: must be greater than 0" },
        { "{\"backoff\": {\"initial\": \"0s\"}}", "config: backoff.initial: must be greater than 0" },
        { "{\"probes\": [{\"name\": \"a\", \"type\": \"tcp\", \"address\": \"127.0.0.1:1\", \"period\": \"0s\"}]}",
          "config: probes[0].period: must be greater than 0" },
        /* thresholds */
        { "{\"defaults\": {\"failure_threshold\": 0}}",
          "config: defaults.failure_threshold: 0 is out of range (1..4294967295)" },
        { "{\"defaults\": {\"success_threshold\": -2}}",
          "config: defaults.success_threshold: -2 is out of range (1..4294967295)" },
        { "{\"defaults\": {\"failure_threshold\": 1.5}}", "config: defaults.failure_threshold: 1.5 is not an integer" },
        { "{\"defaults\": {\"failure_threshold\": \"3\"}}",
          "config: defaults.failure_threshold: \"3\" is not an integer" },
        { "{\"defaults\": {\"failure_threshold\": 4294967296}}",
          "config: defaults.failure_threshold: 4294967296 is out of range (1..4294967295)" },
        { "{\"probes\": [{\"name\": \"a\", \"type\": \"tcp\", \"address\": \"127.0.0.1:1\", \"success_threshold\": "
          "0}]}",
          "config: probes[0].success_threshold: 0 is out of range (1..4294967295)" },
        { "{\"probes\": [{\"name\": \"a\", \"type\": \"tcp\", \"address\": \"127.0.0.1:1\", \"success_threshold\": "
          "true}]}",
          "config: probes[0].success_threshold: true is not an integer" },
        /* names */
        { "{\"probes\": [" TCP("a") ", " TCP("b") ", " TCP("a") "]}",
          "config: probes[2].name: \"a\" is already used by probes[0]" },
        { "{\"probes\": [" TCP("a b") "]}",
          "config: probes[0].name: \"a b\" is not a valid name (1 to 64 of A-Z a-z 0-9 _ . -)" },
        { "{\"probes\": [" TCP("a/b") "]}",
          "config: probes[0].name: \"a/b\" is not a valid name (1 to 64 of A-Z a-z 0-9 _ . -)" },
        { "{\"probes\": [" TCP("") "]}",
          "config: probes[0].name: \"\" is not a valid name (1 to 64 of A-Z a-z 0-9 _ . -)" },
        { "{\"probes\": [" TCP("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa") "]}",
          "config: probes[0].name: \"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\" "
          "is not a valid name (1 to 64 of A-Z a-z 0-9 _ . -)" },
        { "{\"probes\": [{\"type\": \"tcp\", \"address\": \"127.0.0.1:1\"}]}", "config: probes[0].name: is required" },
        { "{\"probes\": [{\"name\": 7, \"type\": \"tcp\"}]}", "config: probes[0].name: 7 is not a string" },
        /* types */
        { "{\"probes\": [{\"name\": \"a\", \"address\": \"127.0.0.1:1\"}]}", "config: probes[0].type: is required" },
        /* scopes */
        { "{\"probes\": [{\"name\": \"a\", \"type\": \"tcp\", \"address\": \"127.0.0.1:1\","
          " \"scopes\": [\"startup\", \"live\"]}]}",
          "config: probes[0].scopes[1]: \"live\" is not a scope (startup, liveness, readiness)" },
        { "{\"probes\": [{\"name\": \"a\", \"type\": \"tcp\", \"address\": \"127.0.0.1:1\","
          " \"scopes\": [\"startup\", \"startup\"]}]}",
          "config: probes[0].scopes[1]: \"startup\" is listed twice" },
        { "{\"probes\": [{\"name\": \"a\", \"type\": \"tcp\", \"address\": \"127.0.0.1:1\", \"scopes\": []}]}",
          "config: probes[0].scopes: must not be empty" },
        { "{\"probes\": [{\"name\": \"a\", \"type\": \"tcp\", \"address\": \"127.0.0.1:1\", \"scopes\": \"startup\"}]}",
          "config: probes[0].scopes: \"startup\" is not an array of \"startup\", \"liveness\", \"readiness\"" },
        /* backoff, listen, log_level, structure */
        { "{\"backoff\": {\"initial\": \"2s\", \"max\": \"1s\"}}",
          "config: backoff.max: \"1s\" is less than backoff.initial \"2s\"" },
        { "{\"backoff\": {\"initial\": \"10m\"}}", "config: backoff.max: \"5m\" is less than backoff.initial \"10m\"" },
        { "{\"listen\": \"0.0.0.0\"}",
          "config: listen: \"0.0.0.0\" is not ADDR:PORT (e.g. \"0.0.0.0:8081\", \"[::]:8081\")" },
        { "{\"listen\": \"0.0.0.0:65536\"}",
          "config: listen: \"0.0.0.0:65536\" is not ADDR:PORT (e.g. \"0.0.0.0:8081\", \"[::]:8081\")" },
        { "{\"listen\": \"::1:80\"}",
          "config: listen: \"::1:80\" is not ADDR:PORT (e.g. \"0.0.0.0:8081\", \"[::]:8081\")" },
        { "{\"resolver\": \"dns.internal:53\"}",
          "config: resolver: \"dns.internal:53\" is not ADDR:PORT[,ADDR:PORT...] with IP addresses (e.g. "
          "\"10.0.0.2:53\")" },
        { "{\"resolver\": \"10.0.0.2\"}",
          "config: resolver: \"10.0.0.2\" is not ADDR:PORT[,ADDR:PORT...] with IP addresses (e.g. \"10.0.0.2:53\")" },
        { "{\"resolver\": \"10.0.0.2:53,\"}",
          "config: resolver: \"10.0.0.2:53,\" is not ADDR:PORT[,ADDR:PORT...] with IP addresses (e.g. "
          "\"10.0.0.2:53\")" },
        { "{\"listen\": \"1.2.3.4:-1\"}",
          "config: listen: \"1.2.3.4:-1\" is not ADDR:PORT (e.g. \"0.0.0.0:8081\", \"[::]:8081\")" },
        { "{\"listen\": 8081}", "config: listen: 8081 is not a string" },
        { "{\"log_level\": \"verbose\"}",
          "config: log_level: \"verbose\" is not a log level (debug, info, warn, error)" },
        { "{\"defaults\": []}", "config: defaults: [] is not an object" },
        { "{\"probes\": {}}", "config: probes: {} is not an array" },
        { "{\"probes\": [5]}", "config: probes[0]: 5 is not an object" },
        /* a kind's own validation still names the path */
        { "{\"probes\": [{\"name\": \"a\", \"type\": \"tcp\", \"address\": \"nohost\"}]}",
          "config: probes[0].address: \"nohost\" is not HOST:PORT" },
        { "{\"probes\": [{\"name\": \"a\", \"type\": \"tcp\"}]}", "config: probes[0].address: is required" },
        { "{\"probes\": [{\"name\": \"a\", \"type\": \"http\", \"url\": \"http://127.0.0.1/\", \"method\": \"POST\"}]}",
          "config: probes[0].method: \"POST\" is not GET or HEAD" },
        /* dns */
        { "{\"probes\": [{\"name\": \"a\", \"type\": \"dns\"}]}", "config: probes[0].host: is required" },
        { "{\"probes\": [{\"name\": \"a\", \"type\": \"dns\", \"host\": \"db\", \"record\": \"MX\"}]}",
          "config: probes[0].record: \"MX\" is not A, AAAA or both" },
        { "{\"probes\": [{\"name\": \"a\", \"type\": \"dns\", \"host\": \"db\", \"server\": \"ns1:53\"}]}",
          "config: probes[0].server: \"ns1:53\" is not ADDR:PORT with an IP address (e.g. \"10.0.0.2:53\")" },
        { "{\"probes\": [{\"name\": \"a\", \"type\": \"dns\", \"host\": \"db\", \"expect\": [\"10.0.0.1\", \"x\"]}]}",
          "config: probes[0].expect[1]: \"x\" is not an IPv4 or IPv6 address" },
        { "{\"probes\": [{\"name\": \"a\", \"type\": \"dns\", \"host\": \"a b\"}]}",
          "config: probes[0].host: \"a b\" is not a host name" },
        /* ${VAR} syntax */
        { "{\"probes\": [{\"name\": \"a\", \"type\": \"tcp\", \"address\": \"127.0.0.1:${X\"}]}",
          "config: probes[0].address: has \"${\" without a closing \"}\" (use ${VAR} or ${VAR:-default})" },
        { "{\"probes\": [{\"name\": \"a\", \"type\": \"http\", \"url\": \"http://127.0.0.1/\","
          " \"headers\": {\"X-A\": \"${1X}\"}}]}",
          "config: probes[0].headers.X-A: has a malformed \"${...}\" (use ${VAR} or ${VAR:-default})" },
        { "{\"listen\": \"${}\"}", "config: listen: has a malformed \"${...}\" (use ${VAR} or ${VAR:-default})" },
        { "{\"defaults\": {\"period\": \"${A-5s}\"}}",
          "config: defaults.period: has a malformed \"${...}\" (use ${VAR} or ${VAR:-default})" },
};

START_TEST(test_errors)
{
        expect_error(errors[_i].text, errors[_i].err);
}
END_TEST

START_TEST(test_unknown_type)
{
        char want[256] = "config: probes[0].type: \"htp\" is not a known type (";
        const char *kinds[] = { "http", "tcp", "websocket", "grpc", "exec", "dns" };
        bool first = true;

        for (size_t i = 0; i < ELEMENTSOF(kinds); i++)
                if (probe_ops_find(kinds[i])) {
                        if (!first)
                                strcat(want, ", ");
                        strcat(want, kinds[i]);
                        first = false;
                }
        strcat(want, ")");
        ck_assert_ptr_nonnull(strstr(want, "(http, tcp"));
        expect_error("{\"probes\": [{\"name\": \"a\", \"type\": \"htp\"}]}", want);
}
END_TEST

START_TEST(test_valid_listen)
{
        /* a name is no config error: config loading does no DNS (README "Names") */
        const char *ok[] = {
                "0.0.0.0:8081",           "127.0.0.1:0", "[::]:8081", "[::1]:65535", "localhost:80", "example.com:80",
                "no-such-host.invalid:80"
        };

        for (size_t i = 0; i < ELEMENTSOF(ok); i++) {
                char text[128];
                struct config *c;

                snprintf(text, sizeof(text), "{\"listen\": \"%s\"}", ok[i]);
                c = load_ok(text);
                ck_assert_str_eq(c->listen, ok[i]);
                config_free(c);
        }
}
END_TEST

START_TEST(test_log_levels)
{
        const char *names[] = { "debug", "info", "warn", "warning", "error" };
        const enum log_level want[] = { LOG_LEVEL_DEBUG, LOG_LEVEL_INFO, LOG_LEVEL_WARNING, LOG_LEVEL_WARNING,
                                        LOG_LEVEL_ERROR };

        for (size_t i = 0; i < ELEMENTSOF(names); i++) {
                char text[64];
                struct config *c;

                snprintf(text, sizeof(text), "{\"log_level\": \"%s\"}", names[i]);
                c = load_ok(text);
                ck_assert_int_eq(c->log_level, want[i]);
                ck_assert(c->log_level_set);
                config_free(c);
        }
}
END_TEST

START_TEST(test_too_many_probes)
{
        /* MAX_PROBES from the file is fine (and fast: names are hashed), one more flag is not */
        size_t cap = (size_t) MAX_PROBES * 80 + 64, len = 0;
        char *text = malloc(cap);
        struct config *c;
        const struct probe_flag extra = { "tcp", "extra=127.0.0.1:1" };

        ck_assert_ptr_nonnull(text);
        len += (size_t) snprintf(text + len, cap - len, "{\"probes\": [");
        for (int i = 0; i < MAX_PROBES; i++)
                len += (size_t) snprintf(text + len, cap - len,
                                         "%s{\"name\":\"p%d\",\"type\":\"tcp\",\"address\":\"127.0.0.1:%d\"}",
                                         i ? "," : "", i, 1 + i % 60000);
        snprintf(text + len, cap - len, "]}");
        c = load_ok(text);
        ck_assert_uint_eq(c->n_probes, MAX_PROBES);
        ck_assert_str_eq(config_find_probe(c, "p9999")->target, "127.0.0.1:10000");
        config_free(c);
        expect_flags_error(text, &extra, 1, "config: probes: more than 10000 probes (file and flags together)");
        free(text);
}
END_TEST

/* ---- ${VAR} expansion ----------------------------------------------------------- */

START_TEST(test_env_expansion)
{
        struct config *c;

        ck_assert_int_eq(setenv("PT_LISTEN", "127.0.0.1:9999", 1), 0);
        ck_assert_int_eq(setenv("PT_PORT", "7171", 1), 0);
        ck_assert_int_eq(setenv("PT_EMPTY", "", 1), 0);
        ck_assert_int_eq(setenv("PT_PERIOD", "3s", 1), 0);
        ck_assert_int_eq(unsetenv("PT_UNSET"), 0);
        c = load_ok(
                "{\"listen\": \"${PT_LISTEN}\", \"drain\": \"${PT_UNSET:-1s}\","
                " \"defaults\": {\"period\": \"${PT_PERIOD}\"},"
                " \"probes\": ["
                "  {\"name\": \"a${PT_UNSET}\", \"type\": \"tcp\", \"address\": \"127.0.0.1:${PT_PORT:-1}\"},"
                "  {\"name\": \"b\", \"type\": \"tcp\", \"address\": \"127.0.0.1:${PT_UNSET:-2}\"},"
                "  {\"name\": \"c\", \"type\": \"tcp\", \"address\": \"127.0.0.1:${PT_EMPTY:-3}\"},"
                "  {\"name\": \"d\", \"type\": \"http\", \"url\": \"http://127.0.0.1:${PT_PORT}${PT_EMPTY}/$PT_PORT\"}"
                "]}");
        ck_assert_str_eq(c->listen, "127.0.0.1:9999");
        ck_assert_uint_eq(c->drain_ms, 1000);
        ck_assert_uint_eq(c->defaults.period_ms, 3000);
        ck_assert_ptr_nonnull(config_find_probe(c, "a")); /* unset ${VAR} is "" */
        ck_assert_str_eq(config_find_probe(c, "a")->target, "127.0.0.1:7171");
        ck_assert_str_eq(config_find_probe(c, "b")->target, "127.0.0.1:2");
        ck_assert_str_eq(config_find_probe(c, "c")->target, "127.0.0.1:3"); /* :- also when empty */
        ck_assert_str_eq(pj_str(config_find_probe(c, "d"), "url"),
                         "http://127.0.0.1:7171/$PT_PORT"); /* $VAR is literal */
        config_free(c);

        /* an unset variable can still make a field invalid: the field's own error */
        expect_error("{\"probes\": [{\"name\": \"${PT_UNSET}\", \"type\": \"tcp\", \"address\": \"127.0.0.1:1\"}]}",
                     "config: probes[0].name: \"\" is not a valid name (1 to 64 of A-Z a-z 0-9 _ . -)");
        /* keys are never expanded */
        expect_error("{\"${PT_PORT}\": 1}", "config: ${PT_PORT}: unknown key");
}
END_TEST

START_TEST(test_env_headers)
{
        struct config *c;
        const cJSON *h;

        ck_assert_int_eq(setenv("PT_TOKEN", "s3cr\"et", 1), 0);
        c = load_ok(
                "{\"probes\": [{\"name\": \"api\", \"type\": \"http\", \"url\": "
                "\"http://127.0.0.1:${PT_NOPE:-8080}/h\","
                " \"headers\": {\"Authorization\": \"Bearer ${PT_TOKEN}\", \"X-Default\": \"${PT_NOPE:-d e f}\"}}]}");
        h = cJSON_GetObjectItemCaseSensitive(c->probes[0].json, "headers");
        ck_assert_ptr_nonnull(h);
        ck_assert_str_eq(cJSON_GetObjectItemCaseSensitive(h, "Authorization")->valuestring, "Bearer s3cr\"et");
        ck_assert_str_eq(cJSON_GetObjectItemCaseSensitive(h, "X-Default")->valuestring, "d e f");
        ck_assert_str_eq(pj_str(&c->probes[0], "url"), "http://127.0.0.1:8080/h");
        config_free(c);
}
END_TEST

START_TEST(test_env_exec_argv)
{
        struct config *c;
        const cJSON *cmd;

        if (!kind_or_skip("exec", "test_env_exec_argv"))
                return;
        ck_assert_int_eq(setenv("PT_DIR", "/tmp", 1), 0);
        c = load_ok("{\"probes\": [{\"name\": \"disk\", \"type\": \"exec\","
                    " \"command\": [\"/bin/test\", \"-w\", \"${PT_DIR}\", \"${PT_NOPE:-x y}\"]}]}");
        cmd = cJSON_GetObjectItemCaseSensitive(c->probes[0].json, "command");
        ck_assert_int_eq(cJSON_GetArraySize(cmd), 4);
        ck_assert_str_eq(cJSON_GetArrayItem(cmd, 2)->valuestring, "/tmp");
        ck_assert_str_eq(cJSON_GetArrayItem(cmd, 3)->valuestring, "x y"); /* one argv element */
        config_free(c);
        expect_error(
                "{\"probes\": [{\"name\": \"disk\", \"type\": \"exec\", \"command\": [\"/bin/true\", \"${X\"]}]}",
                "config: probes[0].command[1]: has \"${\" without a closing \"}\" (use ${VAR} or ${VAR:-default})");
}
END_TEST

/* ---- probe flags ---------------------------------------------------------------- */

START_TEST(test_flags_http_tcp)
{
        const struct probe_flag flags[] = {
                { "tcp", "db=127.0.0.1:5432" },
                { "http", "web=http://127.0.0.1:8080/healthz" },
        };
        struct config *c = load_flags_ok(NULL, flags, ELEMENTSOF(flags));
        const struct probe_config *db, *web;

        ck_assert_uint_eq(c->n_probes, 2); /* flags only: no embedded default */
        db = &c->probes[0];
        web = &c->probes[1];
        ck_assert_str_eq(db->name, "db");
        ck_assert_ptr_eq(db->ops, probe_ops_find("tcp"));
        ck_assert_str_eq(db->target, "127.0.0.1:5432");
        ck_assert_str_eq(pj_str(db, "address"), "127.0.0.1:5432");
        ck_assert_uint_eq(db->scopes, SCOPE_ALL);
        assert_default_timing(&db->timing);
        ck_assert_str_eq(web->name, "web");
        ck_assert_ptr_eq(web->ops, probe_ops_find("http"));
        ck_assert_str_eq(pj_str(web, "url"), "http://127.0.0.1:8080/healthz");
        config_free(c);

        /* after the file's probes, with the file's defaults */
        c = load_flags_ok("{\"defaults\": {\"period\": \"2s\"}, \"probes\": [" TCP("file") "]}", flags, 2);
        ck_assert_uint_eq(c->n_probes, 3);
        ck_assert_str_eq(c->probes[0].name, "file");
        ck_assert_str_eq(c->probes[1].name, "db");
        ck_assert_str_eq(c->probes[2].name, "web");
        ck_assert_uint_eq(c->probes[2].timing.period_ms, 2000);
        config_free(c);
}
END_TEST

static const struct {
        struct probe_flag flag;
        const char *err;
} flag_errors[] = {
        { { "tcp", "app=nohost" }, "--tcp app=nohost: address: \"nohost\" is not HOST:PORT" },
        { { "tcp", "app" }, "--tcp app: expected NAME=HOST:PORT" },
        { { "tcp", "=127.0.0.1:1" }, "--tcp =127.0.0.1:1: expected NAME=HOST:PORT" },
        { { "http", "web=" }, "--http web=: expected NAME=URL" },
        { { "grpc", "rpc" }, "--grpc rpc: expected NAME=HOST:PORT[/SERVICE]" },
        { { "exec", "x" }, "--exec x: expected NAME=CMD" },
        { { "dns", "db" }, "--dns db: expected NAME=HOST" },
        { { "ws", "x" }, "--ws x: expected NAME=URL" },
        { { "http", "a/b=http://127.0.0.1/" },
          "--http a/b=http://127.0.0.1/: name: \"a/b\" is not a valid name (1 to 64 of A-Z a-z 0-9 _ . -)" },
        { { "http", "web=ftp://127.0.0.1/" },
          "--http web=ftp://127.0.0.1/: url: \"ftp://127.0.0.1/\" must be an http:// or https:// URL" },
        { { "tcp", "file=127.0.0.1:2" }, "--tcp file=127.0.0.1:2: name: \"file\" is already used by probes[0]" },
        { { "udp", "x=1" }, "--udp x=1: unknown probe flag" },
};

START_TEST(test_flag_errors)
{
        expect_flags_error("{\"probes\": [" TCP("file") "]}", &flag_errors[_i].flag, 1, flag_errors[_i].err);
}
END_TEST

START_TEST(test_flag_duplicate_between_flags)
{
        const struct probe_flag flags[] = {
                { "tcp", "a=127.0.0.1:1" },
                { "http", "a=http://127.0.0.1/" },
        };

        expect_flags_error(NULL, flags, 2,
                           "--http a=http://127.0.0.1/: name: \"a\" is already used by --tcp a=127.0.0.1:1");
}
END_TEST

START_TEST(test_flag_ws)
{
        const struct probe_flag f = { "ws", "chat=ws://127.0.0.1:8080/ws" };
        struct config *c;

        if (!kind_or_skip("websocket", "test_flag_ws"))
                return;
        c = load_flags_ok(NULL, &f, 1);
        ck_assert_str_eq(pj_str(&c->probes[0], "type"), "websocket");
        ck_assert_ptr_eq(c->probes[0].ops, probe_ops_find("websocket"));
        ck_assert_str_eq(pj_str(&c->probes[0], "url"), "ws://127.0.0.1:8080/ws");
        config_free(c);
}
END_TEST

START_TEST(test_flag_grpc)
{
        const struct probe_flag f[] = {
                { "grpc", "rpc=127.0.0.1:50051/my.pkg.Svc" },
                { "grpc", "all=127.0.0.1:50052" },
        };
        struct config *c;

        if (!kind_or_skip("grpc", "test_flag_grpc"))
                return;
        c = load_flags_ok(NULL, f, 2);
        ck_assert_str_eq(pj_str(&c->probes[0], "address"), "127.0.0.1:50051");
        ck_assert_str_eq(pj_str(&c->probes[0], "service"), "my.pkg.Svc");
        ck_assert_str_eq(pj_str(&c->probes[1], "address"), "127.0.0.1:50052");
        ck_assert_str_eq(pj_str(&c->probes[1], "service"), "");
        config_free(c);
}
END_TEST

START_TEST(test_flag_exec)
{
        const struct probe_flag f = { "exec", "disk=/bin/test  -w /tmp " };
        struct config *c;
        const cJSON *cmd;

        if (!kind_or_skip("exec", "test_flag_exec"))
                return;
        c = load_flags_ok(NULL, &f, 1);
        cmd = cJSON_GetObjectItemCaseSensitive(c->probes[0].json, "command");
        ck_assert_int_eq(cJSON_GetArraySize(cmd), 3); /* empty pieces dropped */
        ck_assert_str_eq(cJSON_GetArrayItem(cmd, 0)->valuestring, "/bin/test");
        ck_assert_str_eq(cJSON_GetArrayItem(cmd, 1)->valuestring, "-w");
        ck_assert_str_eq(cJSON_GetArrayItem(cmd, 2)->valuestring, "/tmp");
        config_free(c);
}
END_TEST

/* ---- equality and round trips --------------------------------------------------- */

START_TEST(test_probe_config_equal)
{
        struct config *a = load_ok(full_http_tcp), *b = load_ok(full_http_tcp), *c;

        for (size_t i = 0; i < a->n_probes; i++)
                ck_assert(probe_config_equal(&a->probes[i], &b->probes[i]));
        ck_assert(!probe_config_equal(&a->probes[0], &b->probes[1]));

        /* a changed timeout */
        c = load_ok("{\"probes\": [{\"name\": \"port\", \"type\": \"tcp\", \"address\": \"127.0.0.1:8080\","
                    " \"scopes\": [\"startup\"], \"period\": \"20s\", \"timeout\": \"3s\", \"initial_delay\": \"1s\","
                    " \"startup_period\": \"200ms\", \"success_threshold\": 2, \"failure_threshold\": 4}]}");
        ck_assert(!probe_config_equal(config_find_probe(a, "port"), &c->probes[0]));
        config_free(c);

        /* the same probe spelled differently: explicit defaults, other order, 20000ms */
        c = load_ok("{\"probes\": [{\"scopes\": [\"startup\"], \"address\": \"127.0.0.1:8080\", \"type\": \"tcp\","
                    " \"name\": \"port\", \"period\": \"20000ms\", \"timeout\": \"2s\", \"initial_delay\": \"1s\","
                    " \"startup_period\": \"200ms\", \"success_threshold\": 2, \"failure_threshold\": 4}]}");
        ck_assert(probe_config_equal(config_find_probe(a, "port"), &c->probes[0]));
        config_free(c);

        /* a changed kind key */
        c = load_ok("{\"defaults\": {\"period\": \"20s\", \"timeout\": \"2s\", \"initial_delay\": \"1s\","
                    " \"startup_period\": \"200ms\", \"success_threshold\": 2, \"failure_threshold\": 4},"
                    " \"probes\": [{\"name\": \"port\", \"type\": \"tcp\", \"address\": \"127.0.0.1:8081\","
                    " \"scopes\": [\"startup\"]}]}");
        ck_assert(!probe_config_equal(config_find_probe(a, "port"), &c->probes[0]));
        config_free(c);

        /* scopes in another order are the same; other scopes are not */
        c = load_ok("{\"probes\": [{\"name\": \"x\", \"type\": \"tcp\", \"address\": \"127.0.0.1:1\","
                    " \"scopes\": [\"readiness\", \"startup\"]}]}");
        {
                struct config *d =
                        load_ok("{\"probes\": [{\"name\": \"x\", \"type\": \"tcp\", \"address\": \"127.0.0.1:1\","
                                " \"scopes\": [\"startup\", \"readiness\"]}]}");
                struct config *e =
                        load_ok("{\"probes\": [{\"name\": \"x\", \"type\": \"tcp\", \"address\": \"127.0.0.1:1\","
                                " \"scopes\": [\"startup\"]}]}");

                ck_assert(probe_config_equal(&c->probes[0], &d->probes[0]));
                ck_assert(!probe_config_equal(&c->probes[0], &e->probes[0]));
                config_free(d);
                config_free(e);
        }
        config_free(c);

        /* keys in any order at every level (headers too) and spelled-out defaults are the
         * same, loaded lean (as a reload does) or not; another header value is not */
        c = load_ok("{\"probes\": [{\"name\": \"h\", \"type\": \"http\", \"url\": \"http://127.0.0.1:1/\","
                    " \"headers\": {\"A\": \"1\", \"B\": \"2\"}}]}");
        {
                static const char same[] =
                        "{\"probes\": [{\"method\": \"GET\", \"headers\": {\"B\": \"2\", \"A\": \"1\"},"
                        " \"max_body\": 10240, \"url\": \"http://127.0.0.1:1/\", \"type\": \"http\", \"name\": "
                        "\"h\"}]}";
                struct config *d = load_ok(same), *l = NULL,
                              *e = load_ok("{\"probes\": [{\"name\": \"h\", \"type\": \"http\", \"url\":"
                                           " \"http://127.0.0.1:1/\", \"headers\": {\"A\": \"1\", \"B\": \"3\"}}]}");
                char *err = NULL;

                ck_assert_int_eq(config_load_lean(same, NULL, 0, &l, &err), 0);
                ck_assert(probe_config_equal(&c->probes[0], &d->probes[0]));
                ck_assert(probe_config_equal(&c->probes[0], &l->probes[0]));
                ck_assert(!probe_config_equal(&c->probes[0], &e->probes[0]));
                config_free(d);
                config_free(l);
                config_free(e);
        }
        config_free(c);
        config_free(a);
        config_free(b);
}
END_TEST

START_TEST(test_to_json_round_trip)
{
        struct config *a = load_ok(full_http_tcp), *b;
        cJSON *j = config_to_json(a);
        char *text;

        ck_assert_ptr_nonnull(j);
        ck_assert_str_eq(cJSON_GetObjectItemCaseSensitive(j, "listen")->valuestring, "127.0.0.1:9000");
        ck_assert_str_eq(cJSON_GetObjectItemCaseSensitive(j, "log_level")->valuestring, "debug");
        ck_assert_str_eq(cJSON_GetObjectItemCaseSensitive(j, "drain")->valuestring, "2s");
        ck_assert_str_eq(cJSON_GetObjectItemCaseSensitive(j, "stall_threshold")->valuestring, "750ms");
        ck_assert_str_eq(
                cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(j, "backoff"), "max")->valuestring,
                "1m");
        ck_assert_str_eq(
                cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(j, "defaults"), "startup_period")
                        ->valuestring,
                "200ms");
        ck_assert_int_eq(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(j, "probes")), 2);

        text = cJSON_Print(j);
        ck_assert_ptr_nonnull(text);
        b = load_ok(text);
        ck_assert(configs_equal(a, b));
        for (size_t i = 0; i < a->n_probes; i++)
                ck_assert(probe_config_equal(&a->probes[i], &b->probes[i]));
        free(text);
        cJSON_Delete(j);
        config_free(b);
        config_free(a);

        /* the embedded default, too */
        a = load_flags_ok(NULL, NULL, 0);
        j = config_to_json(a);
        text = cJSON_PrintUnformatted(j);
        b = load_ok(text);
        ck_assert(configs_equal(a, b));
        free(text);
        cJSON_Delete(j);
        config_free(b);
        config_free(a);
}
END_TEST

/* ---- files ---------------------------------------------------------------------- */

static char *write_temp(const char *data, size_t len)
{
        char *path = strdup("/tmp/check_config_XXXXXX");
        int fd;

        ck_assert_ptr_nonnull(path);
        fd = mkstemp(path);
        ck_assert_int_ge(fd, 0);
        ck_assert_int_eq(write(fd, data, len), (ssize_t) len);
        ck_assert_int_eq(close(fd), 0);
        return path;
}

START_TEST(test_read_file)
{
        char *path = write_temp(full_http_tcp, strlen(full_http_tcp)), *text = NULL, *err = NULL;
        struct config *c;

        ck_assert_int_eq(config_read_file(path, &text, &err), 0);
        ck_assert_ptr_null(err);
        ck_assert_str_eq(text, full_http_tcp);
        c = load_ok(text);
        ck_assert_uint_eq(c->n_probes, 2);
        config_free(c);
        free(text);
        unlink(path);
        free(path);
}
END_TEST

START_TEST(test_read_file_errors)
{
        char *text = (char *) 0x1, *err = NULL, *path, *big, want[256];

        ck_assert_int_eq(config_read_file("/nonexistent/probed.json", &text, &err), -ENOENT);
        ck_assert_str_eq(err, "config: /nonexistent/probed.json: No such file or directory");
        ck_assert_ptr_eq(text, (char *) 0x1);
        free(err);

        ck_assert_int_eq(config_read_file("/tmp", &text, &err), -EISDIR);
        ck_assert_str_eq(err, "config: /tmp: Is a directory");
        free(err);

        path = write_temp("{\"a\":\0}", 7);
        ck_assert_int_eq(config_read_file(path, &text, &err), -EINVAL);
        snprintf(want, sizeof(want), "config: %s: contains a NUL byte", path);
        ck_assert_str_eq(err, want);
        free(err);
        unlink(path);
        free(path);

        /* exactly at the limit is fine; one byte more is not */
        big = malloc(MAX_CONFIG_BYTES + 1);
        ck_assert_ptr_nonnull(big);
        memset(big, ' ', MAX_CONFIG_BYTES + 1);
        big[0] = '{';
        big[MAX_CONFIG_BYTES - 1] = '}';
        path = write_temp(big, MAX_CONFIG_BYTES);
        ck_assert_int_eq(config_read_file(path, &text, &err), 0);
        ck_assert_uint_eq(strlen(text), MAX_CONFIG_BYTES);
        free(text);
        unlink(path);
        free(path);
        path = write_temp(big, MAX_CONFIG_BYTES + 1);
        text = (char *) 0x1;
        ck_assert_int_eq(config_read_file(path, &text, &err), -EFBIG);
        snprintf(want, sizeof(want), "config: %s: larger than %u bytes", path, MAX_CONFIG_BYTES);
        ck_assert_str_eq(err, want);
        ck_assert_ptr_eq(text, (char *) 0x1);
        free(err);
        unlink(path);
        free(path);
        free(big);
}
END_TEST

/* ---- cfg_* helpers ---------------------------------------------------------------- */

START_TEST(test_cfg_helpers)
{
        cJSON *o = cJSON_Parse("{\"s\": \"str\", \"n\": 2.5, \"i\": 7, \"b\": true, \"neg\": -3, \"big\": 1e30}");
        const char *s = NULL;
        uint64_t u = 99;
        bool b = false;
        char *err = NULL;

        ck_assert_ptr_nonnull(o);
        ck_assert_int_eq(cfg_string(o, "s", "probes[0]", true, &s, &err), 0);
        ck_assert_str_eq(s, "str");
        s = NULL;
        ck_assert_int_eq(cfg_string(o, "absent", "probes[0]", false, &s, &err), 0);
        ck_assert_ptr_null(s);
        ck_assert_int_eq(cfg_string(o, "absent", "probes[0]", true, &s, &err), -EINVAL);
        ck_assert_str_eq(err, "config: probes[0].absent: is required");
        free(err);
        ck_assert_int_eq(cfg_string(o, "i", "probes[0]", true, &s, &err), -EINVAL);
        ck_assert_str_eq(err, "config: probes[0].i: 7 is not a string");
        free(err);

        ck_assert_int_eq(cfg_uint(o, "i", "probes[0]", 1, 10, &u, &err), 0);
        ck_assert_uint_eq(u, 7);
        ck_assert_int_eq(cfg_uint(o, "absent", "probes[0]", 1, 10, &u, &err), 0);
        ck_assert_uint_eq(u, 7);
        ck_assert_int_eq(cfg_uint(o, "n", "probes[0]", 1, 10, &u, &err), -EINVAL);
        ck_assert_str_eq(err, "config: probes[0].n: 2.5 is not an integer");
        free(err);
        ck_assert_int_eq(cfg_uint(o, "i", "probes[0]", 8, 10, &u, &err), -EINVAL);
        ck_assert_str_eq(err, "config: probes[0].i: 7 is out of range (8..10)");
        free(err);
        ck_assert_int_eq(cfg_uint(o, "neg", "probes[0]", 0, 10, &u, &err), -EINVAL);
        ck_assert_str_eq(err, "config: probes[0].neg: -3 is out of range (0..10)");
        free(err);
        ck_assert_int_eq(cfg_uint(o, "big", "probes[0]", 0, UINT64_MAX, &u, &err), -EINVAL);
        ck_assert_ptr_nonnull(strstr(err, "config: probes[0].big: "));
        ck_assert_ptr_nonnull(strstr(err, "is out of range"));
        free(err);
        ck_assert_int_eq(cfg_uint(o, "s", "probes[0]", 0, 10, &u, &err), -EINVAL);
        ck_assert_str_eq(err, "config: probes[0].s: \"str\" is not an integer");
        free(err);
        ck_assert_uint_eq(u, 7);

        ck_assert_int_eq(cfg_bool(o, "b", "probes[0]", &b, &err), 0);
        ck_assert(b);
        ck_assert_int_eq(cfg_bool(o, "i", "probes[0]", &b, &err), -EINVAL);
        ck_assert_str_eq(err, "config: probes[0].i: 7 is not true or false");
        free(err);

        /* paths: nested, top level, none, and probe flags */
        ck_assert_int_eq(cfg_error(&err, "probes[1].headers", "X-A", "bad %d", 1), -EINVAL);
        ck_assert_str_eq(err, "config: probes[1].headers.X-A: bad 1");
        free(err);
        ck_assert_int_eq(cfg_error(&err, "", "listen", "bad"), -EINVAL);
        ck_assert_str_eq(err, "config: listen: bad");
        free(err);
        ck_assert_int_eq(cfg_error(&err, "probes[3]", NULL, "bad"), -EINVAL);
        ck_assert_str_eq(err, "config: probes[3]: bad");
        free(err);
        ck_assert_int_eq(cfg_error(&err, NULL, NULL, "bad"), -EINVAL);
        ck_assert_str_eq(err, "config: bad");
        free(err);
        ck_assert_int_eq(cfg_error(&err, "--tcp app=nohost", "address", "bad"), -EINVAL);
        ck_assert_str_eq(err, "--tcp app=nohost: address: bad");
        free(err);
        ck_assert_int_eq(cfg_error(&err, "--tcp app", NULL, "bad"), -EINVAL);
        ck_assert_str_eq(err, "--tcp app: bad");
        free(err);
        cJSON_Delete(o);
}
END_TEST

START_TEST(test_free_null)
{
        ck_assert_ptr_null(config_free(NULL));
        ck_assert_ptr_null(config_find_probe(NULL, "x"));
}
END_TEST

static Suite *config_suite(void)
{
        Suite *s = suite_create("config");
        TCase *tc;

        tc = tcase_create("load");
        tcase_set_timeout(tc, 30);
        tcase_add_test(tc, test_embedded_default);
        tcase_add_test(tc, test_empty_object);
        tcase_add_test(tc, test_full_http_tcp);
        tcase_add_test(tc, test_spec_example_all_kinds);
        tcase_add_test(tc, test_valid_listen);
        tcase_add_test(tc, test_log_levels);
        tcase_add_test(tc, test_too_many_probes);
        tcase_add_test(tc, test_free_null);
        suite_add_tcase(s, tc);

        tc = tcase_create("errors");
        tcase_set_timeout(tc, 10);
        tcase_add_loop_test(tc, test_errors, 0, ELEMENTSOF(errors));
        tcase_add_test(tc, test_unknown_type);
        suite_add_tcase(s, tc);

        tc = tcase_create("env");
        tcase_set_timeout(tc, 10);
        tcase_add_test(tc, test_env_expansion);
        tcase_add_test(tc, test_env_headers);
        tcase_add_test(tc, test_env_exec_argv);
        suite_add_tcase(s, tc);

        tc = tcase_create("flags");
        tcase_set_timeout(tc, 10);
        tcase_add_test(tc, test_flags_http_tcp);
        tcase_add_loop_test(tc, test_flag_errors, 0, ELEMENTSOF(flag_errors));
        tcase_add_test(tc, test_flag_duplicate_between_flags);
        tcase_add_test(tc, test_flag_ws);
        tcase_add_test(tc, test_flag_grpc);
        tcase_add_test(tc, test_flag_exec);
        suite_add_tcase(s, tc);

        tc = tcase_create("equality");
        tcase_set_timeout(tc, 10);
        tcase_add_test(tc, test_probe_config_equal);
        tcase_add_test(tc, test_to_json_round_trip);
        suite_add_tcase(s, tc);

        tc = tcase_create("files");
        tcase_set_timeout(tc, 20);
        tcase_add_test(tc, test_read_file);
        tcase_add_test(tc, test_read_file_errors);
        tcase_add_test(tc, test_cfg_helpers);
        suite_add_tcase(s, tc);
        return s;
}

int main(void)
{
        SRunner *sr = srunner_create(config_suite());
        int failed;

        srunner_set_fork_status(sr, CK_FORK);
        srunner_run_all(sr, CK_NORMAL);
        failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
