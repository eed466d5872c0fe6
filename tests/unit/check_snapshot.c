/* Unit tests for daemon/snapshot.c: the refcounted snapshot and its renderers.
 * Snapshots are built by hand (snapshot_new + filled views), as the loop would, and
 * every renderer is checked on exact text: verdict bodies per scope and situation,
 * /status parsed back with cJSON (types, nulls, escaping of arbitrary bytes), and
 * /metrics line by line plus a real `promtool check metrics` run. */
#include <check.h>
#include <cjson/cJSON.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "snapshot.h"
#include "util.h"

#define PROMTOOL "/usr/bin/promtool"

/* A view as the loop fills it before any attempt ended. */
static void view_init(struct probe_view *v, const char *name, const char *type, const char *target, unsigned scopes)
{
        snprintf(v->name, sizeof(v->name), "%s", name);
        v->type = type;
        v->target = target ? strdup(target) : NULL;
        ck_assert(!target || v->target);
        v->scopes = scopes;
        v->state = PROBE_WAITING;
        v->healthy = -1;
        v->last_outcome = _OUTCOME_INVALID;
        v->last_success = -1;
}

static void view_fail(struct probe_view *v, const char *err)
{
        v->healthy = 0;
        snprintf(v->last_error, sizeof(v->last_error), "%s", err);
}

/* Two probes: "api" in all scopes and "port" in startup only. */
static struct snapshot *two_probes(void)
{
        struct snapshot *s = snapshot_new(2, true);

        ck_assert_ptr_nonnull(s);
        view_init(s->probes[0], "api", "http", "http://127.0.0.1:8080/health", SCOPE_ALL);
        view_init(s->probes[1], "port", "tcp", "127.0.0.1:8080", SCOPE_STARTUP);
        return s;
}

static void set_flags(struct snapshot *s, bool started, bool live, bool ready, bool draining)
{
        s->started = started;
        s->live = live;
        s->ready = ready;
        s->draining = draining;
}

static void expect_verdict(const struct snapshot *s, unsigned scope, bool verbose, int status, const char *body)
{
        int got = 0;
        char *r = render_verdict(s, scope, verbose, &got);

        ck_assert_ptr_nonnull(r);
        ck_assert_str_eq(r, body);
        ck_assert_int_eq(got, status);
        free(r);
}

/* ---- enums ------------------------------------------------------------------- */

START_TEST(test_to_string)
{
        ck_assert_str_eq(outcome_to_string(OUTCOME_SUCCESS), "success");
        ck_assert_str_eq(outcome_to_string(OUTCOME_FAILURE), "failure");
        ck_assert_str_eq(outcome_to_string(OUTCOME_TIMEOUT), "timeout");
        ck_assert_str_eq(outcome_to_string(OUTCOME_CANCELLED), "cancelled");
        ck_assert_str_eq(outcome_to_string(OUTCOME_ERROR), "error");
        ck_assert_ptr_null(outcome_to_string(_OUTCOME_MAX));
        ck_assert_ptr_null(outcome_to_string(_OUTCOME_INVALID));
        ck_assert_str_eq(probe_state_to_string(PROBE_WAITING), "waiting");
        ck_assert_str_eq(probe_state_to_string(PROBE_RUNNING), "running");
        ck_assert_str_eq(probe_state_to_string(PROBE_BACKOFF), "backoff");
        ck_assert_str_eq(probe_state_to_string(PROBE_STOPPED), "stopped");
        ck_assert_ptr_null(probe_state_to_string(_PROBE_STATE_MAX));
        ck_assert_ptr_null(probe_state_to_string(_PROBE_STATE_INVALID));
}
END_TEST

START_TEST(test_status_word)
{
        struct snapshot *s = snapshot_new(0, true);

        ck_assert_ptr_nonnull(s);
        set_flags(s, false, true, false, false);
        ck_assert_str_eq(snapshot_status(s), "starting");
        set_flags(s, true, true, true, false);
        ck_assert_str_eq(snapshot_status(s), "ok");
        set_flags(s, true, false, false, false);
        ck_assert_str_eq(snapshot_status(s), "failing");
        set_flags(s, true, true, false, false);
        ck_assert_str_eq(snapshot_status(s), "failing");
        set_flags(s, true, true, false, true);
        ck_assert_str_eq(snapshot_status(s), "draining");
        set_flags(s, false, true, false, true);
        ck_assert_str_eq(snapshot_status(s), "draining");
        snapshot_unref(s);
}
END_TEST

/* ---- refcount ---------------------------------------------------------------- */

START_TEST(test_refcount)
{
        struct snapshot *s = two_probes();

        s->probes[0]->output = strdup("some output");
        ck_assert_ptr_nonnull(s->probes[0]->output);
        ck_assert_int_eq(atomic_load(&s->refs), 1);
        ck_assert_ptr_eq(snapshot_ref(s), s);
        ck_assert_ptr_eq(snapshot_ref(s), s);
        ck_assert_int_eq(atomic_load(&s->refs), 3);
        ck_assert_ptr_null(snapshot_unref(s));
        ck_assert_ptr_null(snapshot_unref(s));
        /* still alive: ASan would flag these reads after a premature free */
        ck_assert_int_eq(atomic_load(&s->refs), 1);
        ck_assert_str_eq(s->probes[0]->target, "http://127.0.0.1:8080/health");
        ck_assert_str_eq(s->probes[0]->output, "some output");
        /* final unref frees views, strings and array: LeakSanitizer proves it */
        ck_assert_ptr_null(snapshot_unref(s));
        ck_assert_ptr_null(snapshot_unref(NULL));
        ck_assert_ptr_null(snapshot_ref(NULL));
}
END_TEST

START_TEST(test_refcount_empty)
{
        struct snapshot *s = snapshot_new(0, true);

        ck_assert_ptr_nonnull(s);
        ck_assert_uint_eq(s->n_probes, 0);
        ck_assert_int_eq(atomic_load(&s->refs), 1);
        snapshot_unref(s);
}
END_TEST

static void *ref_unref_many(void *arg)
{
        struct snapshot *s = arg;

        for (int i = 0; i < 100000; i++) {
                snapshot_ref(s);
                snapshot_unref(s);
        }
        return NULL;
}

START_TEST(test_refcount_threads)
{
        struct snapshot *s = two_probes();
        pthread_t t[4];

        for (size_t i = 0; i < ELEMENTSOF(t); i++)
                ck_assert_int_eq(pthread_create(&t[i], NULL, ref_unref_many, s), 0);
        for (size_t i = 0; i < ELEMENTSOF(t); i++)
                ck_assert_int_eq(pthread_join(t[i], NULL), 0);
        ck_assert_int_eq(atomic_load(&s->refs), 1);
        snapshot_unref(s);
}
END_TEST

/* ---- verdicts ---------------------------------------------------------------- */

START_TEST(test_verdict_starting)
{
        struct snapshot *s = two_probes();

        set_flags(s, false, true, false, false);
        view_fail(s->probes[1], "connection refused");

        expect_verdict(s, SCOPE_STARTUP, false, 503, "starting: api: no result yet\n");
        expect_verdict(s, SCOPE_LIVENESS, false, 200, "ok\n");
        expect_verdict(s, SCOPE_READINESS, false, 503, "starting: api: no result yet\n");
        expect_verdict(s, SCOPE_STARTUP, true, 503,
                       "[-]api pending: no result yet\n"
                       "[-]port failed: connection refused\n"
                       "startup check failed\n");
        expect_verdict(s, SCOPE_LIVENESS, true, 200,
                       "[-]api pending: no result yet\n"
                       "livez check passed\n");
        expect_verdict(s, SCOPE_READINESS, true, 503,
                       "[-]api pending: no result yet\n"
                       "readyz check failed\n");

        /* api became healthy: port is now what startup waits for */
        s->probes[0]->healthy = 1;
        expect_verdict(s, SCOPE_STARTUP, false, 503, "starting: port: connection refused\n");
        expect_verdict(s, SCOPE_READINESS, false, 503, "starting: port: connection refused\n");
        expect_verdict(s, SCOPE_STARTUP, true, 503,
                       "[+]api ok\n"
                       "[-]port failed: connection refused\n"
                       "startup check failed\n");

        /* flags say not started but every startup probe is healthy (latch not yet set) */
        s->probes[1]->healthy = 1;
        expect_verdict(s, SCOPE_STARTUP, false, 503, "starting\n");
        snapshot_unref(s);
}
END_TEST

START_TEST(test_verdict_ok)
{
        struct snapshot *s = two_probes();

        set_flags(s, true, true, true, false);
        s->probes[0]->healthy = 1;
        s->probes[1]->healthy = 1;
        expect_verdict(s, SCOPE_STARTUP, false, 200, "ok\n");
        expect_verdict(s, SCOPE_LIVENESS, false, 200, "ok\n");
        expect_verdict(s, SCOPE_READINESS, false, 200, "ok\n");
        expect_verdict(s, SCOPE_STARTUP, true, 200, "[+]api ok\n[+]port ok\nstartup check passed\n");
        expect_verdict(s, SCOPE_LIVENESS, true, 200, "[+]api ok\nlivez check passed\n");
        expect_verdict(s, SCOPE_READINESS, true, 200, "[+]api ok\nreadyz check passed\n");
        snapshot_unref(s);
}
END_TEST

START_TEST(test_verdict_failing)
{
        struct snapshot *s = snapshot_new(3, true);

        ck_assert_ptr_nonnull(s);
        view_init(s->probes[0], "port", "tcp", "127.0.0.1:8080", SCOPE_ALL);
        view_init(s->probes[1], "api", "http", "http://127.0.0.1:8080/", SCOPE_ALL);
        view_init(s->probes[2], "chat", "websocket", "ws://127.0.0.1:8080/ws", SCOPE_ALL);
        s->probes[0]->healthy = 1;
        view_fail(s->probes[1], "connection refused");
        view_fail(s->probes[2], "handshake: status 503");
        set_flags(s, true, false, false, false);

        /* started is latched: startup stays 200 whatever the probes say now */
        expect_verdict(s, SCOPE_STARTUP, false, 200, "ok\n");
        expect_verdict(s, SCOPE_LIVENESS, false, 503, "failing: api: connection refused\n");
        expect_verdict(s, SCOPE_READINESS, false, 503, "failing: api: connection refused\n");
        expect_verdict(s, SCOPE_LIVENESS, true, 503,
                       "[+]port ok\n"
                       "[-]api failed: connection refused\n"
                       "[-]chat failed: handshake: status 503\n"
                       "livez check failed\n");
        expect_verdict(s, SCOPE_STARTUP, true, 200,
                       "[+]port ok\n"
                       "[-]api failed: connection refused\n"
                       "[-]chat failed: handshake: status 503\n"
                       "startup check passed\n");
        expect_verdict(s, SCOPE_READINESS, true, 503,
                       "[+]port ok\n"
                       "[-]api failed: connection refused\n"
                       "[-]chat failed: handshake: status 503\n"
                       "readyz check failed\n");
        snapshot_unref(s);
}
END_TEST

START_TEST(test_verdict_unknown)
{
        struct snapshot *s = snapshot_new(2, true);

        /* after startup, a readiness-only probe without a verdict yet */
        ck_assert_ptr_nonnull(s);
        view_init(s->probes[0], "api", "http", "http://127.0.0.1:8080/", SCOPE_ALL);
        view_init(s->probes[1], "rpc", "grpc", "127.0.0.1:50051", SCOPE_READINESS);
        s->probes[0]->healthy = 1;
        set_flags(s, true, true, false, false);
        expect_verdict(s, SCOPE_LIVENESS, false, 200, "ok\n");
        expect_verdict(s, SCOPE_READINESS, false, 503, "failing: rpc: no result yet\n");
        expect_verdict(s, SCOPE_READINESS, true, 503,
                       "[+]api ok\n"
                       "[-]rpc pending: no result yet\n"
                       "readyz check failed\n");

        /* unknown but with an error already (failures below the threshold) */
        snprintf(s->probes[1]->last_error, sizeof(s->probes[1]->last_error), "timed out after 1s");
        expect_verdict(s, SCOPE_READINESS, false, 503, "failing: rpc: timed out after 1s\n");
        expect_verdict(s, SCOPE_READINESS, true, 503,
                       "[+]api ok\n"
                       "[-]rpc pending: timed out after 1s\n"
                       "readyz check failed\n");

        /* a liveness probe that is unknown does not make livez fail */
        s->probes[0]->healthy = -1;
        expect_verdict(s, SCOPE_LIVENESS, false, 200, "ok\n");
        snapshot_unref(s);
}
END_TEST

START_TEST(test_verdict_draining)
{
        struct snapshot *s = two_probes();

        s->probes[0]->healthy = 1;
        s->probes[1]->healthy = 1;
        set_flags(s, true, true, false, true);
        expect_verdict(s, SCOPE_READINESS, false, 503, "draining\n");
        expect_verdict(s, SCOPE_READINESS, true, 503,
                       "[+]api ok\n"
                       "[-]draining failed: shutting down\n"
                       "readyz check failed\n");
        expect_verdict(s, SCOPE_LIVENESS, false, 200, "ok\n");
        expect_verdict(s, SCOPE_STARTUP, false, 200, "ok\n");
        expect_verdict(s, SCOPE_LIVENESS, true, 200, "[+]api ok\nlivez check passed\n");

        /* draining wins over a failing probe and over not started */
        view_fail(s->probes[0], "connection refused");
        expect_verdict(s, SCOPE_READINESS, false, 503, "draining\n");
        s->started = false;
        expect_verdict(s, SCOPE_READINESS, false, 503, "draining\n");
        snapshot_unref(s);
}
END_TEST

START_TEST(test_verdict_no_probes)
{
        struct snapshot *s = snapshot_new(0, true);

        ck_assert_ptr_nonnull(s);
        set_flags(s, true, true, true, false);
        expect_verdict(s, SCOPE_STARTUP, false, 200, "ok\n");
        expect_verdict(s, SCOPE_LIVENESS, false, 200, "ok\n");
        expect_verdict(s, SCOPE_READINESS, false, 200, "ok\n");
        expect_verdict(s, SCOPE_STARTUP, true, 200, "startup check passed\n");
        expect_verdict(s, SCOPE_LIVENESS, true, 200, "livez check passed\n");
        expect_verdict(s, SCOPE_READINESS, true, 200, "readyz check passed\n");
        snapshot_unref(s);
}
END_TEST

START_TEST(test_verdict_scope_without_probes)
{
        struct snapshot *s = snapshot_new(1, true);

        /* only a startup probe: liveness and readiness have nothing to wait for */
        ck_assert_ptr_nonnull(s);
        view_init(s->probes[0], "port", "tcp", "127.0.0.1:8080", SCOPE_STARTUP);
        view_fail(s->probes[0], "connection refused");
        set_flags(s, true, true, true, false);
        expect_verdict(s, SCOPE_LIVENESS, false, 200, "ok\n");
        expect_verdict(s, SCOPE_LIVENESS, true, 200, "livez check passed\n");
        expect_verdict(s, SCOPE_READINESS, true, 200, "readyz check passed\n");
        snapshot_unref(s);
}
END_TEST

START_TEST(test_verdict_one_line)
{
        struct snapshot *s = two_probes();

        /* an error with line breaks and control bytes still gives one line */
        set_flags(s, true, false, false, false);
        view_fail(s->probes[0], "bad\nbody\r\x01x");
        expect_verdict(s, SCOPE_LIVENESS, false, 503, "failing: api: bad body  x\n");
        expect_verdict(s, SCOPE_LIVENESS, true, 503,
                       "[-]api failed: bad body  x\n"
                       "livez check failed\n");

        /* unhealthy without an error text, and flags no probe explains */
        view_fail(s->probes[0], "");
        expect_verdict(s, SCOPE_LIVENESS, false, 503, "failing: api: no result yet\n");
        s->probes[0]->healthy = 1;
        expect_verdict(s, SCOPE_LIVENESS, false, 503, "failing\n");
        snapshot_unref(s);
}
END_TEST

/* ---- /status ------------------------------------------------------------------- */

static bool utf8_valid(const char *s)
{
        const unsigned char *p = (const unsigned char *) s;

        while (*p) {
                unsigned cp;
                int n;

                if (*p < 0x80) {
                        p++;
                        continue;
                }
                if (*p >= 0xc2 && *p <= 0xdf)
                        n = 1, cp = *p & 0x1f;
                else if (*p >= 0xe0 && *p <= 0xef)
                        n = 2, cp = *p & 0x0f;
                else if (*p >= 0xf0 && *p <= 0xf4)
                        n = 3, cp = *p & 0x07;
                else
                        return false;
                p++;
                for (int i = 0; i < n; i++, p++) {
                        if ((*p & 0xc0) != 0x80)
                                return false;
                        cp = cp << 6 | (*p & 0x3f);
                }
                if ((n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) || cp > 0x10ffff ||
                    (cp >= 0xd800 && cp <= 0xdfff))
                        return false;
        }
        return true;
}

static cJSON *get(const cJSON *obj, const char *key)
{
        cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);

        ck_assert_msg(v != NULL, "missing key %s", key);
        return v;
}

static void expect_number(const cJSON *obj, const char *key, double want)
{
        cJSON *v = get(obj, key);

        ck_assert_msg(cJSON_IsNumber(v), "%s is not a number", key);
        ck_assert_double_eq(v->valuedouble, want);
}

static void expect_string(const cJSON *obj, const char *key, const char *want)
{
        cJSON *v = get(obj, key);

        ck_assert_msg(cJSON_IsString(v), "%s is not a string", key);
        ck_assert_str_eq(v->valuestring, want);
}

static void expect_null(const cJSON *obj, const char *key)
{
        ck_assert_msg(cJSON_IsNull(get(obj, key)), "%s is not null", key);
}

static void expect_bool(const cJSON *obj, const char *key, bool want)
{
        cJSON *v = get(obj, key);

        ck_assert_msg(cJSON_IsBool(v), "%s is not a bool", key);
        ck_assert_int_eq(cJSON_IsTrue(v), want);
}

static cJSON *status_parse(const struct snapshot *s, uint64_t now)
{
        char *text = render_status_json(s, now);
        cJSON *j;

        ck_assert_ptr_nonnull(text);
        ck_assert_msg(utf8_valid(text), "not valid UTF-8: %s", text);
        for (const char *c = text; *c; c++)
                ck_assert_msg((unsigned char) *c >= 0x20, "raw control byte in %s", text);
        j = cJSON_Parse(text);
        ck_assert_msg(j != NULL, "invalid JSON: %s", text);
        ck_assert(cJSON_IsObject(j));
        free(text);
        return j;
}

static const char *const probe_keys[] = {
        "name",
        "type",
        "target",
        "scopes",
        "state",
        "healthy",
        "consecutive_successes",
        "consecutive_failures",
        "attempts",
        "successes",
        "failures",
        "timeouts",
        "cancellations",
        "errors",
        "restarts",
        "last_outcome",
        "last_error",
        "last_duration_ms",
        "last_attempt",
        "last_change",
        "output",
        "last_address",
};

START_TEST(test_status_fields)
{
        struct snapshot *s = snapshot_new(3, true);
        char when[64], changed[64];
        cJSON *j, *probes, *p, *sc;
        struct probe_view *v;
        int n;

        ck_assert_ptr_nonnull(s);
        set_flags(s, true, false, false, false);
        s->start_mono_ns = 1000 * NSEC_PER_SEC;
        s->stalls = 2;
        s->reloads_ok = 3;
        s->reloads_failed = 4;
        view_init(s->probes[0], "fresh", "tcp", "127.0.0.1:8080", SCOPE_READINESS);
        view_init(s->probes[1], "api", "http", "http://127.0.0.1:8080/health", SCOPE_ALL);
        view_init(s->probes[2], "disk", "exec", "/bin/test -w /tmp", SCOPE_STARTUP | SCOPE_LIVENESS);

        v = s->probes[1];
        v->state = PROBE_RUNNING;
        v->healthy = 0;
        v->consecutive_successes = 0;
        v->consecutive_failures = 3;
        v->attempts = 10;
        v->successes = 6;
        v->failures = 2;
        v->timeouts = 1;
        v->cancellations = 1;
        v->errors = 0;
        v->restarts = 5;
        v->last_outcome = OUTCOME_TIMEOUT;
        v->last_success = 0;
        snprintf(v->last_error, sizeof(v->last_error), "timed out after 1s");
        v->last_duration_ms = 1001;
        v->last_attempt_wall_ns = UINT64_C(1795555692123000000);
        v->last_change_wall_ns = UINT64_C(1795555600000000000);
        {
                union sockaddr_any a = { .in6 = { .sin6_family = AF_INET6, .sin6_port = htons(8080) } };
                a.in6.sin6_addr.s6_addr[15] = 1;
                probe_view_set_address(v, &a);
        }

        v = s->probes[2];
        v->state = PROBE_BACKOFF;
        v->healthy = 1;
        v->last_outcome = OUTCOME_SUCCESS;
        v->last_duration_ms = 0;
        v->last_attempt_wall_ns = UINT64_C(1795555692123000000);
        v->output = strdup("");
        ck_assert_ptr_nonnull(v->output);

        j = status_parse(s, 1012 * NSEC_PER_SEC + NSEC_PER_SEC / 2);
        expect_string(j, "version", PROBED_VERSION);
        expect_string(j, "status", "failing");
        expect_bool(j, "started", true);
        expect_bool(j, "live", false);
        expect_bool(j, "ready", false);
        expect_bool(j, "draining", false);
        expect_number(j, "uptime_seconds", 12);
        expect_number(j, "stalls", 2);
        expect_number(j, "reloads", 3);
        ck_assert_int_eq(cJSON_GetArraySize(j), 10);
        probes = get(j, "probes");
        ck_assert(cJSON_IsArray(probes));
        ck_assert_int_eq(cJSON_GetArraySize(probes), 3);
        cJSON_ArrayForEach(p, probes)
        {
                ck_assert_int_eq(cJSON_GetArraySize(p), (int) ELEMENTSOF(probe_keys));
                for (size_t k = 0; k < ELEMENTSOF(probe_keys); k++)
                        get(p, probe_keys[k]);
        }

        /* before any attempt: the null cases */
        p = cJSON_GetArrayItem(probes, 0);
        expect_string(p, "name", "fresh");
        expect_string(p, "type", "tcp");
        expect_string(p, "target", "127.0.0.1:8080");
        sc = get(p, "scopes");
        ck_assert_int_eq(cJSON_GetArraySize(sc), 1);
        ck_assert_str_eq(cJSON_GetArrayItem(sc, 0)->valuestring, "readiness");
        expect_string(p, "state", "waiting");
        expect_null(p, "healthy");
        for (size_t k = 6; k <= 14; k++)
                expect_number(p, probe_keys[k], 0);
        expect_null(p, "last_outcome");
        expect_null(p, "last_error");
        expect_null(p, "last_duration_ms");
        expect_null(p, "last_attempt");
        expect_null(p, "last_change");
        expect_null(p, "output");
        expect_null(p, "last_address"); /* before any attempt */

        p = cJSON_GetArrayItem(probes, 1);
        expect_string(p, "name", "api");
        expect_string(p, "type", "http");
        expect_string(p, "target", "http://127.0.0.1:8080/health");
        sc = get(p, "scopes");
        ck_assert(cJSON_IsArray(sc));
        ck_assert_int_eq(cJSON_GetArraySize(sc), 3);
        ck_assert_str_eq(cJSON_GetArrayItem(sc, 0)->valuestring, "startup");
        ck_assert_str_eq(cJSON_GetArrayItem(sc, 1)->valuestring, "liveness");
        ck_assert_str_eq(cJSON_GetArrayItem(sc, 2)->valuestring, "readiness");
        expect_string(p, "state", "running");
        expect_bool(p, "healthy", false);
        expect_number(p, "consecutive_successes", 0);
        expect_number(p, "consecutive_failures", 3);
        expect_number(p, "attempts", 10);
        expect_number(p, "successes", 6);
        expect_number(p, "failures", 2);
        expect_number(p, "timeouts", 1);
        expect_number(p, "cancellations", 1);
        expect_number(p, "errors", 0);
        expect_number(p, "restarts", 5);
        expect_string(p, "last_outcome", "timeout");
        expect_string(p, "last_error", "timed out after 1s");
        expect_number(p, "last_duration_ms", 1001);
        format_rfc3339(UINT64_C(1795555692123000000), when, sizeof(when));
        format_rfc3339(UINT64_C(1795555600000000000), changed, sizeof(changed));
        ck_assert_str_eq(when, "2026-11-24T21:28:12.123Z");
        expect_string(p, "last_attempt", when);
        expect_string(p, "last_change", changed);
        expect_null(p, "output");
        expect_string(p, "last_address", "[::1]:8080");

        p = cJSON_GetArrayItem(probes, 2);
        sc = get(p, "scopes");
        ck_assert_int_eq(cJSON_GetArraySize(sc), 2);
        ck_assert_str_eq(cJSON_GetArrayItem(sc, 0)->valuestring, "startup");
        ck_assert_str_eq(cJSON_GetArrayItem(sc, 1)->valuestring, "liveness");
        expect_string(p, "state", "backoff");
        expect_bool(p, "healthy", true);
        expect_string(p, "last_outcome", "success");
        expect_null(p, "last_error");
        expect_number(p, "last_duration_ms", 0);
        expect_string(p, "last_attempt", when);
        expect_null(p, "last_change");
        expect_string(p, "output", "");
        expect_null(p, "last_address"); /* exec */
        cJSON_Delete(j);

        /* status words and the other booleans */
        set_flags(s, false, true, false, false);
        j = status_parse(s, 0);
        expect_string(j, "status", "starting");
        expect_bool(j, "started", false);
        expect_bool(j, "live", true);
        expect_number(j, "uptime_seconds", 0); /* clock before start: no wrap-around */
        cJSON_Delete(j);
        set_flags(s, true, true, true, false);
        j = status_parse(s, 1000 * NSEC_PER_SEC);
        expect_string(j, "status", "ok");
        expect_bool(j, "ready", true);
        expect_number(j, "uptime_seconds", 0);
        cJSON_Delete(j);
        set_flags(s, true, true, false, true);
        j = status_parse(s, 4600 * NSEC_PER_SEC);
        expect_string(j, "status", "draining");
        expect_bool(j, "draining", true);
        expect_number(j, "uptime_seconds", 3600);
        n = cJSON_GetArraySize(get(j, "probes"));
        ck_assert_int_eq(n, 3);
        cJSON_Delete(j);
        snapshot_unref(s);
}
END_TEST

START_TEST(test_status_empty)
{
        struct snapshot *s = snapshot_new(0, true);
        char *text;

        ck_assert_ptr_nonnull(s);
        set_flags(s, true, true, true, false);
        s->start_mono_ns = 5;
        text = render_status_json(s, 5);
        ck_assert_ptr_nonnull(text);
        ck_assert_str_eq(text, "{\"version\":\"" PROBED_VERSION "\",\"status\":\"ok\","
                               "\"started\":true,\"live\":true,\"ready\":true,"
                               "\"draining\":false,\"uptime_seconds\":0,\"stalls\":0,"
                               "\"reloads\":0,\"probes\":[]}");
        free(text);
        snapshot_unref(s);
}
END_TEST

START_TEST(test_status_escaping)
{
        static const char err[] = "say \"hi\" C:\\dir\x01\x1f\t\n\r\b\f end";
        static const char out[] = "ok \xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 |" /* valid: é € 😀 */
                                  "\xff|\xc3\x28|\xc0\xaf|\xed\xa0\x80|\xf4\x90\x80\x80|\x80|"
                                  "\x7f\x01|\xe2\x82"; /* truncated at the end */
        static const char out_want[] = "ok \xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 |"
                                       "\xef\xbf\xbd|\xef\xbf\xbd(|\xef\xbf\xbd\xef\xbf\xbd|"
                                       "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd|"
                                       "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd|\xef\xbf\xbd|"
                                       "\x7f\x01|\xef\xbf\xbd\xef\xbf\xbd";
        struct snapshot *s = snapshot_new(1, true);
        struct probe_view *v;
        char *text;
        cJSON *j, *p;

        ck_assert_ptr_nonnull(s);
        v = s->probes[0];
        view_init(v, "disk", "exec", "/bin/sh -c \"echo \xff\"", SCOPE_ALL);
        snprintf(v->last_error, sizeof(v->last_error), "%s", err);
        v->output = strdup(out);
        ck_assert_ptr_nonnull(v->output);
        v->output_len = strlen(out);

        text = render_status_json(s, 0);
        ck_assert_ptr_nonnull(text);
        ck_assert_ptr_nonnull(strstr(text, "\"last_error\":\"say \\\"hi\\\" C:\\\\dir\\u0001"
                                           "\\u001f\\t\\n\\r\\u0008\\u000c end\""));
        free(text);

        j = status_parse(s, 0);
        p = cJSON_GetArrayItem(get(j, "probes"), 0);
        expect_string(p, "last_error", err);
        expect_string(p, "output", out_want);
        expect_string(p, "target", "/bin/sh -c \"echo \xef\xbf\xbd\"");
        cJSON_Delete(j);

        /* output is output_len bytes, NUL among them: kept, as \u0000 */
        memcpy(v->output, "a\0b\0", 5);
        v->output_len = 4;
        text = render_status_json(s, 0);
        ck_assert_ptr_nonnull(text);
        ck_assert_ptr_nonnull(strstr(text, "\"output\":\"a\\u0000b\\u0000\""));
        free(text);
        snapshot_unref(s);
}
END_TEST

/* ---- /metrics ------------------------------------------------------------------ */

/* Three probes: "api" healthy with attempts, "rpc" unknown and never run, and one
 * whose name needs every label escape. */
static struct snapshot *metrics_snapshot(void)
{
        struct snapshot *s = snapshot_new(3, true);
        struct probe_view *v;

        ck_assert_ptr_nonnull(s);
        set_flags(s, true, true, false, false);
        s->stalls = 7;
        s->reloads_ok = 2;
        s->reloads_failed = 1;
        view_init(s->probes[0], "api", "http", "http://127.0.0.1:8080/", SCOPE_ALL);
        view_init(s->probes[1], "rpc", "grpc", "127.0.0.1:50051", SCOPE_READINESS);
        view_init(s->probes[2], "we\"ird\\na\nme", "tcp", "127.0.0.1:1", SCOPE_LIVENESS);

        v = s->probes[0];
        v->healthy = 1;
        v->last_success = 1;
        v->restarts = 4;
        for (size_t k = 0; k < N_DURATION_BUCKETS; k++)
                v->duration_bucket[k] = k < 3 ? 2 : 5;
        v->duration_count = 6;
        v->duration_sum_s = 12.5;
        v->successes = 5;
        v->timeouts = 1;
        v->cancellations = 3;

        v = s->probes[2];
        v->healthy = 0;
        v->last_success = 0;
        v->failures = 3;
        v->duration_count = 3;
        v->duration_sum_s = 0.003;
        for (size_t k = 0; k < N_DURATION_BUCKETS; k++)
                v->duration_bucket[k] = 3;
        return s;
}

static void expect_line(const char *text, const char *line)
{
        char *want = strdup_printf("\n%s\n", line);

        ck_assert_ptr_nonnull(want);
        ck_assert_msg(strstr(text, want) != NULL, "missing line %s in:\n%s", line, text);
        free(want);
}

static void expect_no(const char *text, const char *needle)
{
        ck_assert_msg(strstr(text, needle) == NULL, "unexpected %s in:\n%s", needle, text);
}

START_TEST(test_metrics_lines)
{
        static const char *const families[][2] = {
                { "probed_started", "gauge" },
                { "probed_live", "gauge" },
                { "probed_ready", "gauge" },
                { "probed_draining", "gauge" },
                { "probed_probe_healthy", "gauge" },
                { "probed_probe_success", "gauge" },
                { "probed_probe_duration_seconds", "histogram" },
                { "probed_probe_attempts_total", "counter" },
                { "probed_probe_restarts_total", "counter" },
                { "probed_stalls_total", "counter" },
                { "probed_config_reloads_total", "counter" },
                { "process_resident_memory_bytes", "gauge" },
                { "process_cpu_seconds_total", "counter" },
        };
        struct snapshot *s = metrics_snapshot();
        char *text = render_metrics(s, 1234567, 1.25);
        char line[128];

        ck_assert_ptr_nonnull(text);
        ck_assert(strncmp(text, "# HELP probed_started ", 22) == 0);
        ck_assert(text[strlen(text) - 1] == '\n');
        for (size_t i = 0; i < ELEMENTSOF(families); i++) {
                snprintf(line, sizeof(line), "# TYPE %s %s", families[i][0], families[i][1]);
                expect_line(text, line);
                /* "\n# HELP name ", or the same at the very start of the text */
                snprintf(line, sizeof(line), "\n# HELP %s ", families[i][0]);
                ck_assert_msg(strstr(text, line) != NULL || strncmp(text, line + 1, strlen(line + 1)) == 0,
                              "no HELP for %s", families[i][0]);
        }
        expect_line(text, "probed_started 1");
        expect_line(text, "probed_live 1");
        expect_line(text, "probed_ready 0");
        expect_line(text, "probed_draining 0");

        expect_line(text, "probed_probe_healthy{probe=\"api\",type=\"http\"} 1");
        expect_line(text, "probed_probe_healthy{probe=\"we\\\"ird\\\\na\\nme\",type=\"tcp\"} 0");
        expect_no(text, "probed_probe_healthy{probe=\"rpc\"");
        expect_line(text, "probed_probe_success{probe=\"api\",type=\"http\"} 1");
        expect_line(text, "probed_probe_success{probe=\"we\\\"ird\\\\na\\nme\",type=\"tcp\"} 0");
        expect_no(text, "probed_probe_success{probe=\"rpc\"");

        expect_line(text, "probed_probe_duration_seconds_bucket{probe=\"api\",type=\"http\",le=\"0.005\"} 2");
        expect_line(text, "probed_probe_duration_seconds_bucket{probe=\"api\",type=\"http\",le=\"0.025\"} 2");
        expect_line(text, "probed_probe_duration_seconds_bucket{probe=\"api\",type=\"http\",le=\"0.05\"} 5");
        expect_line(text, "probed_probe_duration_seconds_bucket{probe=\"api\",type=\"http\",le=\"1\"} 5");
        expect_line(text, "probed_probe_duration_seconds_bucket{probe=\"api\",type=\"http\",le=\"2.5\"} 5");
        expect_line(text, "probed_probe_duration_seconds_bucket{probe=\"api\",type=\"http\",le=\"10\"} 5");
        expect_line(text, "probed_probe_duration_seconds_bucket{probe=\"api\",type=\"http\",le=\"+Inf\"} 6");
        expect_line(text, "probed_probe_duration_seconds_sum{probe=\"api\",type=\"http\"} 12.5");
        expect_line(text, "probed_probe_duration_seconds_count{probe=\"api\",type=\"http\"} 6");
        expect_line(text, "probed_probe_duration_seconds_bucket{probe=\"rpc\",type=\"grpc\",le=\"+Inf\"} 0");
        expect_line(text, "probed_probe_duration_seconds_sum{probe=\"rpc\",type=\"grpc\"} 0");
        expect_line(text, "probed_probe_duration_seconds_count{probe=\"rpc\",type=\"grpc\"} 0");
        expect_line(text, "probed_probe_duration_seconds_sum{probe=\"we\\\"ird\\\\na\\nme\","
                          "type=\"tcp\"} 0.003");

        expect_line(text, "probed_probe_attempts_total{probe=\"api\",type=\"http\",outcome=\"success\"} 5");
        expect_line(text, "probed_probe_attempts_total{probe=\"api\",type=\"http\",outcome=\"failure\"} 0");
        expect_line(text, "probed_probe_attempts_total{probe=\"api\",type=\"http\",outcome=\"timeout\"} 1");
        expect_line(text, "probed_probe_attempts_total{probe=\"api\",type=\"http\",outcome=\"cancelled\"} 3");
        expect_line(text, "probed_probe_attempts_total{probe=\"api\",type=\"http\",outcome=\"error\"} 0");
        expect_line(text, "probed_probe_attempts_total{probe=\"rpc\",type=\"grpc\",outcome=\"error\"} 0");
        expect_line(text, "probed_probe_restarts_total{probe=\"api\",type=\"http\"} 4");
        expect_line(text, "probed_probe_restarts_total{probe=\"rpc\",type=\"grpc\"} 0");
        expect_line(text, "probed_stalls_total 7");
        expect_line(text, "probed_config_reloads_total{result=\"success\"} 2");
        expect_line(text, "probed_config_reloads_total{result=\"failure\"} 1");
        expect_line(text, "process_resident_memory_bytes 1234567");
        expect_line(text, "process_cpu_seconds_total 1.25");
        free(text);

        /* once it becomes unknown again (a reload restarted it) the line goes away */
        s->probes[0]->healthy = -1;
        s->draining = true;
        text = render_metrics(s, 0, 0);
        ck_assert_ptr_nonnull(text);
        expect_no(text, "probed_probe_healthy{probe=\"api\"");
        expect_line(text, "probed_draining 1");
        expect_line(text, "process_cpu_seconds_total 0");
        free(text);
        snapshot_unref(s);
}
END_TEST

/* Runs promtool on text; returns its exit status. Its output goes to stderr, or
 * nowhere when quiet (a check that is expected to fail). */
static int promtool_check(const char *text, bool quiet)
{
        char path[] = "/tmp/check_snapshot_metrics_XXXXXX";
        char *cmd;
        FILE *f;
        int fd, r;

        fd = mkstemp(path);
        ck_assert_int_ge(fd, 0);
        f = fdopen(fd, "w");
        ck_assert_ptr_nonnull(f);
        ck_assert_int_eq(fputs(text, f) >= 0, 1);
        ck_assert_int_eq(fclose(f), 0);
        cmd = strdup_printf(PROMTOOL " check metrics < %s %s", path, quiet ? ">/dev/null 2>&1" : "1>&2");
        ck_assert_ptr_nonnull(cmd);
        r = system(cmd);
        free(cmd);
        (void) unlink(path);
        ck_assert_int_ne(r, -1);
        ck_assert(WIFEXITED(r));
        return WEXITSTATUS(r);
}

START_TEST(test_metrics_promtool)
{
        struct snapshot *s;
        char *text;

        if (access(PROMTOOL, X_OK) != 0) {
                printf("check_snapshot: %s not found, skipping the promtool check\n", PROMTOOL);
                return;
        }
        s = metrics_snapshot();
        text = render_metrics(s, 1234567, 1.25);
        ck_assert_ptr_nonnull(text);
        ck_assert_msg(promtool_check(text, false) == 0, "promtool rejected:\n%s", text);
        free(text);
        snapshot_unref(s);

        /* no probes at all: families without samples */
        s = snapshot_new(0, true);
        ck_assert_ptr_nonnull(s);
        text = render_metrics(s, 0, 0);
        ck_assert_ptr_nonnull(text);
        ck_assert_msg(promtool_check(text, false) == 0, "promtool rejected:\n%s", text);
        free(text);
        snapshot_unref(s);

        /* and the check itself can fail: a sample line without its family is rejected */
        ck_assert_int_ne(promtool_check("probed_x{a=\"b} 1\n", true), 0);
}
END_TEST

static Suite *snapshot_suite(void)
{
        Suite *s = suite_create("snapshot");
        TCase *tc;

        tc = tcase_create("basics");
        tcase_set_timeout(tc, 10);
        tcase_add_test(tc, test_to_string);
        tcase_add_test(tc, test_status_word);
        tcase_add_test(tc, test_refcount);
        tcase_add_test(tc, test_refcount_empty);
        tcase_add_test(tc, test_refcount_threads);
        suite_add_tcase(s, tc);

        tc = tcase_create("verdict");
        tcase_set_timeout(tc, 5);
        tcase_add_test(tc, test_verdict_starting);
        tcase_add_test(tc, test_verdict_ok);
        tcase_add_test(tc, test_verdict_failing);
        tcase_add_test(tc, test_verdict_unknown);
        tcase_add_test(tc, test_verdict_draining);
        tcase_add_test(tc, test_verdict_no_probes);
        tcase_add_test(tc, test_verdict_scope_without_probes);
        tcase_add_test(tc, test_verdict_one_line);
        suite_add_tcase(s, tc);

        tc = tcase_create("status_json");
        tcase_set_timeout(tc, 5);
        tcase_add_test(tc, test_status_fields);
        tcase_add_test(tc, test_status_empty);
        tcase_add_test(tc, test_status_escaping);
        suite_add_tcase(s, tc);

        tc = tcase_create("metrics");
        tcase_set_timeout(tc, 30);
        tcase_add_test(tc, test_metrics_lines);
        tcase_add_test(tc, test_metrics_promtool);
        suite_add_tcase(s, tc);
        return s;
}

int main(void)
{
        SRunner *sr = srunner_create(snapshot_suite());
        int failed;

        srunner_run_all(sr, CK_NORMAL);
        failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
