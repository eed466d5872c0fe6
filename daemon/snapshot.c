/* The status snapshot and its three renderers (README "HTTP endpoints").
 *
 * A snapshot is built by the loop thread, published, and from then on only read:
 * the status server's threads hold a reference while they render from it, so the
 * refcount is the only thing ever written after publication (atomic, release on the
 * way down so the last owner sees every write before it frees).
 *
 * The renderers are pure functions of the snapshot and write into one growable
 * buffer (struct buf, include/buf.h) instead of building a cJSON tree: with 10,000 probes the
 * /status document is several MB and a tree would cost one allocation per value.
 * The buffer latches out-of-memory and the renderer returns NULL at the end, so the
 * many append calls need no individual checks.
 *
 * JSON strings are escaped as the log lines are (include/json.h): bytes that are not
 * valid UTF-8 (exec output can hold anything) become U+FFFD, so /status is always valid
 * JSON; cJSON would pass such bytes through unchanged. Prometheus label values escape backslash, quote and
 * newline as the text format 0.0.4 requires.
 *
 * Verdict bodies (the non-verbose ones are what the platform's prober logs):
 *   200: "ok\n"
 *   503: "draining\n"                               readyz while draining
 *        "starting: <probe>: <reason>\n"            startup, or readyz before start
 *        "failing: <probe>: <reason>\n"             livez, readyz
 *   <reason> is last_error, or "no result yet" while it is empty. A bare "starting\n"
 *   or "failing\n" is the fallback when no probe explains the verdict.
 * Verbose (kube-apiserver style), one line per probe of the scope in config order:
 *   "[+]<probe> ok" | "[-]<probe> failed: <reason>" | "[-]<probe> pending: <reason>"
 *   then "[-]draining failed: shutting down" (readyz while draining)
 *   then "<startup|livez|readyz> check passed|failed".
 * Control characters in a reason become spaces so a reason is always one line.
 *
 * /status and /metrics come in two parts so that the status server renders the big
 * part once per snapshot and shares it among every request (README.md, "Status server
 * limits"): the body depends on the snapshot only, and a small head (/status: up to
 * uptime_seconds) or tail (/metrics: heartbeat age and process figures) is rendered per
 * request. render_status_json and render_metrics join the two. */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "json.h"
#include "snapshot.h"
#include "util.h"

/* Attempts that ended with outcome o: the per-outcome counters are the only count. */
static uint64_t view_outcome_count(const struct probe_view *v, enum outcome o)
{
        switch (o) {
        case OUTCOME_SUCCESS:
                return v->successes;
        case OUTCOME_FAILURE:
                return v->failures;
        case OUTCOME_TIMEOUT:
                return v->timeouts;
        case OUTCOME_CANCELLED:
                return v->cancellations;
        case OUTCOME_ERROR:
                return v->errors;
        default:
                return 0;
        }
}

void probe_view_set_address(struct probe_view *v, const union sockaddr_any *a)
{
        bool v6 = a->sa.sa_family == AF_INET6;

        v->last_family = (uint8_t) a->sa.sa_family;
        v->last_port = ntohs(v6 ? a->in6.sin6_port : a->in4.sin_port);
        memcpy(v->last_ip, v6 ? (const void *) &a->in6.sin6_addr : (const void *) &a->in4.sin_addr, v6 ? 16 : 4);
}

bool probe_view_address(const struct probe_view *v, union sockaddr_any *ret)
{
        memset(ret, 0, sizeof(*ret));
        if (v->last_family == AF_INET6) {
                ret->in6.sin6_family = AF_INET6;
                ret->in6.sin6_port = htons(v->last_port);
                memcpy(&ret->in6.sin6_addr, v->last_ip, 16);
        } else if (v->last_family == AF_INET) {
                ret->in4.sin_family = AF_INET;
                ret->in4.sin_port = htons(v->last_port);
                memcpy(&ret->in4.sin_addr, v->last_ip, 4);
        } else {
                return false;
        }
        return true;
}

struct probe_view *probe_view_new(void)
{
        struct probe_view *v = calloc(1, sizeof(*v));

        if (v)
                atomic_init(&v->refs, 1);
        return v;
}

struct probe_view *probe_view_ref(struct probe_view *v)
{
        if (v)
                atomic_fetch_add_explicit(&v->refs, 1, memory_order_relaxed);
        return v;
}

struct probe_view *probe_view_unref(struct probe_view *v)
{
        if (v && atomic_fetch_sub_explicit(&v->refs, 1, memory_order_acq_rel) == 1) {
                free(v->target);
                free(v->output);
                free(v);
        }
        return NULL;
}

static void snapshot_free(struct snapshot *s)
{
        for (size_t i = 0; i < s->n_probes; i++)
                probe_view_unref(s->probes[i]);
        free(s->probes);
        free(s);
}

struct snapshot *snapshot_new(size_t n_probes, bool with_views)
{
        struct snapshot *s;

        s = calloc(1, sizeof(*s));
        if (!s)
                return NULL;
        atomic_init(&s->refs, 1);
        if (n_probes > 0) {
                s->probes = calloc(n_probes, sizeof(*s->probes));
                if (!s->probes) {
                        free(s);
                        return NULL;
                }
        }
        s->n_probes = n_probes;
        for (size_t i = 0; with_views && i < n_probes; i++)
                if (!(s->probes[i] = probe_view_new())) {
                        snapshot_free(s);
                        return NULL;
                }
        return s;
}

struct snapshot *snapshot_ref(struct snapshot *s)
{
        if (s)
                atomic_fetch_add_explicit(&s->refs, 1, memory_order_relaxed);
        return s;
}

struct snapshot *snapshot_unref(struct snapshot *s)
{
        if (!s)
                return NULL;
        /* acq_rel: the thread that frees sees every other holder's reads as done */
        if (atomic_fetch_sub_explicit(&s->refs, 1, memory_order_acq_rel) == 1)
                snapshot_free(s);
        return NULL;
}

const char *snapshot_status(const struct snapshot *s)
{
        if (s->draining)
                return "draining";
        if (!s->started)
                return "starting";
        if (s->live && s->ready)
                return "ok";
        return "failing";
}

/* ---- verdicts ------------------------------------------------------------------ */

static const char *scope_check_name(unsigned scope)
{
        switch (scope) {
        case SCOPE_STARTUP:
                return "startup";
        case SCOPE_LIVENESS:
                return "livez";
        default:
                return "readyz";
        }
}

/* A reason on one line: control characters (a multi-line error) become spaces. */
static void buf_put_reason(struct buf *b, const char *err)
{
        if (!err || !*err) {
                buf_puts(b, "no result yet");
                return;
        }
        for (const unsigned char *c = (const unsigned char *) err; *c; c++)
                buf_putc(b, *c < 0x20 || *c == 0x7f ? ' ' : (char) *c);
}

/* The first probe of that scope whose health is not good enough: healthy == 0, or with
 * unknown_counts also healthy == -1. NULL when none. */
static const struct probe_view *first_bad(const struct snapshot *s, unsigned scope, bool unknown_counts)
{
        for (size_t i = 0; i < s->n_probes; i++) {
                const struct probe_view *v = s->probes[i];

                if (!(v->scopes & scope))
                        continue;
                if (v->healthy == 0 || (unknown_counts && v->healthy != 1))
                        return v;
        }
        return NULL;
}

static void verdict_reason(struct buf *b, const struct snapshot *s, unsigned scope)
{
        const struct probe_view *v;
        const char *word;

        if (scope == SCOPE_READINESS && s->draining) {
                buf_puts(b, "draining\n");
                return;
        }
        if (scope == SCOPE_STARTUP || (scope == SCOPE_READINESS && !s->started)) {
                word = "starting";
                v = first_bad(s, SCOPE_STARTUP, true);
        } else {
                word = "failing";
                v = first_bad(s, scope, scope == SCOPE_READINESS);
        }
        buf_puts(b, word);
        if (v) {
                buf_printf(b, ": %s: ", v->name);
                buf_put_reason(b, v->last_error);
        }
        buf_putc(b, '\n');
}

static void verdict_verbose(struct buf *b, const struct snapshot *s, unsigned scope, bool pass)
{
        for (size_t i = 0; i < s->n_probes; i++) {
                const struct probe_view *v = s->probes[i];

                if (!(v->scopes & scope))
                        continue;
                if (v->healthy == 1) {
                        buf_printf(b, "[+]%s ok\n", v->name);
                        continue;
                }
                buf_printf(b, "[-]%s %s: ", v->name, v->healthy == 0 ? "failed" : "pending");
                buf_put_reason(b, v->last_error);
                buf_putc(b, '\n');
        }
        if (scope == SCOPE_READINESS && s->draining)
                buf_puts(b, "[-]draining failed: shutting down\n");
        buf_printf(b, "%s check %s\n", scope_check_name(scope), pass ? "passed" : "failed");
}

char *render_verdict(const struct snapshot *s, unsigned scope, bool verbose, int *ret_status)
{
        struct buf b = { 0 };
        bool pass;
        char *r;

        switch (scope) {
        case SCOPE_STARTUP:
                pass = s->started;
                break;
        case SCOPE_LIVENESS:
                pass = s->live;
                break;
        default:
                scope = SCOPE_READINESS;
                pass = s->ready;
                break;
        }

        if (verbose)
                verdict_verbose(&b, s, scope, pass);
        else if (pass)
                buf_puts(&b, "ok\n");
        else
                verdict_reason(&b, s, scope);

        r = buf_steal(&b);
        if (r)
                *ret_status = pass ? 200 : 503;
        return r;
}

/* ---- /status ------------------------------------------------------------------- */

/* A JSON string (quotes included) of the len bytes at s, which s[len] == '\0' ends: a
 * NUL among them is "\u0000", the rest escaped as include/json.h says. NULL is written
 * as null. */
static void json_string_len(struct buf *b, const char *s, size_t len)
{
        const char *end;

        if (!s) {
                buf_puts(b, "null");
                return;
        }
        end = s + len;
        buf_putc(b, '"');
        while (s < end) {
                size_t n = json_plain_len(s);
                char esc[JSON_ESCAPE_MAX];

                buf_add(b, s, n);
                s += n;
                if (s < end)
                        buf_add(b, esc, json_escape_byte((unsigned char) *s++, esc));
        }
        buf_putc(b, '"');
}

static void json_string(struct buf *b, const char *s)
{
        json_string_len(b, s, s ? strlen(s) : 0);
}

static void json_key(struct buf *b, const char *key)
{
        /* keys are ours: plain ASCII, nothing to escape */
        buf_putc(b, '"');
        buf_puts(b, key);
        buf_add(b, "\":", 2);
}

static void json_u64(struct buf *b, const char *key, uint64_t v)
{
        json_key(b, key);
        buf_u64(b, v);
}

static void json_time(struct buf *b, const char *key, uint64_t wall)
{
        char t[64];

        json_key(b, key);
        if (wall == 0) {
                buf_puts(b, "null");
                return;
        }
        format_rfc3339(wall, t, sizeof(t));
        json_string(b, t);
}

static void json_probe(struct buf *b, const struct probe_view *v)
{
        static const struct {
                unsigned flag;
                const char *name;
        } scopes[] = {
                { SCOPE_STARTUP, "startup" },
                { SCOPE_LIVENESS, "liveness" },
                { SCOPE_READINESS, "readiness" },
        };
        bool ended = (int) v->last_outcome >= 0 && v->last_outcome < _OUTCOME_MAX;
        bool first = true;
        char addr[64];
        union sockaddr_any la;

        buf_putc(b, '{');
        json_key(b, "name");
        json_string(b, v->name);
        buf_putc(b, ',');
        json_key(b, "type");
        json_string(b, v->type);
        buf_putc(b, ',');
        json_key(b, "target");
        json_string(b, v->target);
        buf_putc(b, ',');
        json_key(b, "scopes");
        buf_putc(b, '[');
        for (size_t i = 0; i < ELEMENTSOF(scopes); i++) {
                if (!(v->scopes & scopes[i].flag))
                        continue;
                buf_printf(b, "%s\"%s\"", first ? "" : ",", scopes[i].name);
                first = false;
        }
        buf_puts(b, "],");
        json_key(b, "state");
        json_string(b, probe_state_to_string(v->state));
        buf_putc(b, ',');
        json_key(b, "healthy");
        buf_puts(b, v->healthy == 1 ? "true," : v->healthy == 0 ? "false," : "null,");
        json_u64(b, "consecutive_successes", v->consecutive_successes);
        buf_putc(b, ',');
        json_u64(b, "consecutive_failures", v->consecutive_failures);
        buf_putc(b, ',');
        const struct {
                const char *key;
                uint64_t value;
        } counters[] = {
                { "attempts", v->attempts }, { "successes", v->successes },         { "failures", v->failures },
                { "timeouts", v->timeouts }, { "cancellations", v->cancellations }, { "errors", v->errors },
                { "restarts", v->restarts },
        };
        for (size_t i = 0; i < sizeof(counters) / sizeof(counters[0]); i++) {
                json_u64(b, counters[i].key, counters[i].value);
                buf_putc(b, ',');
        }
        json_key(b, "last_outcome");
        json_string(b, ended ? outcome_to_string(v->last_outcome) : NULL);
        buf_putc(b, ',');
        json_key(b, "last_error");
        json_string(b, v->last_error[0] ? v->last_error : NULL);
        buf_putc(b, ',');
        if (ended)
                json_u64(b, "last_duration_ms", v->last_duration_ms);
        else
                buf_puts(b, "\"last_duration_ms\":null");
        buf_putc(b, ',');
        json_time(b, "last_attempt", v->last_attempt_wall_ns);
        buf_putc(b, ',');
        json_time(b, "last_change", v->last_change_wall_ns);
        buf_putc(b, ',');
        json_key(b, "output");
        json_string_len(b, v->output, v->output_len);
        buf_putc(b, ',');
        json_key(b, "last_address");
        json_string(b, probe_view_address(v, &la) ? address_format(&la, addr, sizeof(addr)) : NULL);
        buf_putc(b, '}');
}

/* The head of /status: everything up to "uptime_seconds", the one per-request value.
 * A few hundred bytes at most (RENDER_PART_MAX). */
size_t render_status_head(const struct snapshot *s, uint64_t now_mono_ns, char *out, size_t size)
{
        uint64_t uptime = now_mono_ns > s->start_mono_ns ? now_mono_ns - s->start_mono_ns : 0;
        int n;

        /* every string here is ours (version, status word): nothing to escape */
        n = snprintf(out, size,
                     "{\"version\":\"%s\",\"status\":\"%s\",\"started\":%s,\"live\":%s,\"ready\":%s,"
                     "\"draining\":%s,\"uptime_seconds\":%" PRIu64 ",",
                     PROBED_VERSION, snapshot_status(s), s->started ? "true" : "false", s->live ? "true" : "false",
                     s->ready ? "true" : "false", s->draining ? "true" : "false", (uint64_t) (uptime / NSEC_PER_SEC));
        if (n < 0)
                n = 0;
        return (size_t) n < size ? (size_t) n : size - 1;
}

char *render_status_body(const struct snapshot *s, size_t *ret_len)
{
        struct buf b = { 0 };
        char *text;

        json_u64(&b, "stalls", s->stalls);
        buf_putc(&b, ',');
        json_u64(&b, "reloads", s->reloads_ok);
        buf_puts(&b, ",\"probes\":[");
        for (size_t i = 0; i < s->n_probes; i++) {
                if (i > 0)
                        buf_putc(&b, ',');
                json_probe(&b, s->probes[i]);
        }
        buf_puts(&b, "]}");
        text = buf_steal(&b);
        if (ret_len)
                *ret_len = text ? b.len : 0;
        return text;
}

/* a then b as one malloc'd string (NULL when either is missing or out of memory) */
static char *join_parts(const char *a, size_t al, const char *b, size_t bl)
{
        char *text = a && b ? malloc(al + bl + 1) : NULL;

        if (text) {
                memcpy(text, a, al);
                memcpy(text + al, b, bl);
                text[al + bl] = '\0';
        }
        return text;
}

char *render_status_json(const struct snapshot *s, uint64_t now_mono_ns)
{
        char head[RENDER_PART_MAX];
        size_t hl = render_status_head(s, now_mono_ns, head, sizeof(head)), bl = 0;
        char *body = render_status_body(s, &bl), *text = join_parts(head, hl, body, bl);

        free(body);
        return text;
}

/* ---- /metrics ------------------------------------------------------------------ */

static void prom_family(struct buf *b, const char *name, const char *type, const char *help)
{
        buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* A label value, quotes included, escaped as text format 0.0.4 requires. */
static void prom_label_value(struct buf *b, const char *s)
{
        const char *run = s ? s : "";
        const char *p = run;

        buf_putc(b, '"');
        for (; *p; p++) {
                const char *esc = NULL;

                if (*p == '\\')
                        esc = "\\\\";
                else if (*p == '"')
                        esc = "\\\"";
                else if (*p == '\n')
                        esc = "\\n";
                if (!esc)
                        continue;
                buf_add(b, run, (size_t) (p - run));
                buf_puts(b, esc);
                run = p + 1;
        }
        buf_add(b, run, (size_t) (p - run));
        buf_putc(b, '"');
}

/* Each probe's label pair, `probe="..",type=".."`, escaped once per render (not once
 * per line: a probe has 20 lines). One allocation holds them all. */
struct prom_labels {
        char *text;
        size_t *off; /* n + 1 offsets into text */
};

static void prom_labels_free(struct prom_labels *l)
{
        free(l->text);
        free(l->off);
}

static int prom_labels_build(struct prom_labels *l, const struct snapshot *s)
{
        struct buf b = { 0 };

        l->off = calloc(s->n_probes + 1, sizeof(*l->off));
        if (!l->off)
                return -ENOMEM;
        for (size_t i = 0; i < s->n_probes; i++) {
                l->off[i] = b.len;
                buf_puts(&b, "probe=");
                prom_label_value(&b, s->probes[i]->name);
                buf_puts(&b, ",type=");
                prom_label_value(&b, s->probes[i]->type);
        }
        l->off[s->n_probes] = b.len;
        l->text = buf_steal(&b);
        return l->text ? 0 : -ENOMEM;
}

/* `name{probe="..",type=".."` without the closing brace, so callers can add labels. */
static void prom_open(struct buf *b, const char *name, const struct prom_labels *l, size_t i)
{
        buf_puts(b, name);
        buf_putc(b, '{');
        buf_add(b, l->text + l->off[i], l->off[i + 1] - l->off[i]);
}

/* `<tail><value>\n`, e.g. tail "} " closes the labels opened by prom_open. */
static void prom_value(struct buf *b, const char *tail, uint64_t v)
{
        buf_puts(b, tail);
        buf_u64(b, v);
        buf_putc(b, '\n');
}

/* A per-probe 0/1 gauge read from the int at `field` of each view; -1 (unknown) is
 * left out. */
static void prom_probe01(struct buf *b, const struct prom_labels *l, const struct snapshot *s, const char *name,
                         const char *help, size_t field)
{
        prom_family(b, name, "gauge", help);
        for (size_t i = 0; i < s->n_probes; i++) {
                int v = *(const int *) ((const char *) s->probes[i] + field);

                if (v != 0 && v != 1)
                        continue;
                prom_open(b, name, l, i);
                prom_value(b, "} ", (uint64_t) v);
        }
}

static void prom_gauge01(struct buf *b, const char *name, const char *help, bool v)
{
        prom_family(b, name, "gauge", help);
        buf_puts(b, name);
        buf_puts(b, v ? " 1\n" : " 0\n");
}

char *render_metrics_body(const struct snapshot *s, size_t *ret_len)
{
        static const double bounds[N_DURATION_BUCKETS] = DURATION_BUCKETS;
        char le[N_DURATION_BUCKETS][32];
        struct prom_labels l = { 0 };
        struct buf b = { 0 };
        char *text;

        for (size_t k = 0; k < N_DURATION_BUCKETS; k++)
                (void) snprintf(le[k], sizeof(le[k]), ",le=\"%g\"} ", bounds[k]);
        if (prom_labels_build(&l, s) < 0) {
                prom_labels_free(&l);
                return NULL;
        }

        prom_gauge01(&b, "probed_started", "1 once every startup-scope probe has been healthy.", s->started);
        prom_gauge01(&b, "probed_live", "1 while no liveness-scope probe is unhealthy.", s->live);
        prom_gauge01(&b, "probed_ready", "1 while started, not draining and every readiness probe is healthy.",
                     s->ready);
        prom_gauge01(&b, "probed_draining", "1 once shutdown has begun.", s->draining);

        prom_probe01(&b, &l, s, "probed_probe_healthy", "Probe health: 1 healthy, 0 unhealthy, absent while unknown.",
                     offsetof(struct probe_view, healthy));
        prom_probe01(&b, &l, s, "probed_probe_success",
                     "1 if the last completed attempt of the probe succeeded, else 0.",
                     offsetof(struct probe_view, last_success));

        prom_family(&b, "probed_probe_duration_seconds", "histogram",
                    "Duration of completed probe attempts (success, failure, timeout).");
        for (size_t i = 0; i < s->n_probes; i++) {
                const struct probe_view *v = s->probes[i];

                for (size_t k = 0; k < N_DURATION_BUCKETS; k++) {
                        prom_open(&b, "probed_probe_duration_seconds_bucket", &l, i);
                        prom_value(&b, le[k], v->duration_bucket[k]);
                }
                prom_open(&b, "probed_probe_duration_seconds_bucket", &l, i);
                prom_value(&b, ",le=\"+Inf\"} ", v->duration_count);
                prom_open(&b, "probed_probe_duration_seconds_sum", &l, i);
                buf_printf(&b, "} %.15g\n", v->duration_sum_s);
                prom_open(&b, "probed_probe_duration_seconds_count", &l, i);
                prom_value(&b, "} ", v->duration_count);
        }

        prom_family(&b, "probed_probe_attempts_total", "counter", "Probe attempts by outcome.");
        for (size_t i = 0; i < s->n_probes; i++) {
                for (int o = 0; o < _OUTCOME_MAX; o++) {
                        prom_open(&b, "probed_probe_attempts_total", &l, i);
                        buf_puts(&b, ",outcome=\"");
                        buf_puts(&b, outcome_to_string(o));
                        prom_value(&b, "\"} ", view_outcome_count(s->probes[i], o));
                }
        }

        prom_family(&b, "probed_probe_restarts_total", "counter", "Times the probe came back from backoff.");
        for (size_t i = 0; i < s->n_probes; i++) {
                prom_open(&b, "probed_probe_restarts_total", &l, i);
                prom_value(&b, "} ", s->probes[i]->restarts);
        }

        prom_family(&b, "probed_stalls_total", "counter",
                    "Loop stalls (CPU throttling, a frozen instance) that re-ran attempts.");
        prom_value(&b, "probed_stalls_total ", s->stalls);

        prom_family(&b, "probed_config_reloads_total", "counter", "Config reloads by result.");
        prom_value(&b, "probed_config_reloads_total{result=\"success\"} ", s->reloads_ok);
        prom_value(&b, "probed_config_reloads_total{result=\"failure\"} ", s->reloads_failed);

        prom_family(&b, "probed_loop_busy_total", "counter",
                    "Late wake-ups of the event loop caused by its own work (not stalls).");
        prom_value(&b, "probed_loop_busy_total ", s->loop_busy);

        prom_labels_free(&l);
        text = buf_steal(&b);
        if (ret_len)
                *ret_len = text ? b.len : 0;
        return text;
}

/* The per-request end of /metrics: the heartbeat's age and the process figures. */
size_t render_metrics_tail(uint64_t rss_bytes, double cpu_seconds, double heartbeat_age_s, char *out, size_t size)
{
        int n = snprintf(out, size,
                         "# HELP probed_loop_heartbeat_age_seconds How far the event loop is behind the present "
                         "(0 while current).\n# TYPE probed_loop_heartbeat_age_seconds gauge\n"
                         "probed_loop_heartbeat_age_seconds %.9g\n"
                         "# HELP process_resident_memory_bytes Resident memory size in bytes.\n"
                         "# TYPE process_resident_memory_bytes gauge\n"
                         "process_resident_memory_bytes %" PRIu64 "\n"
                         "# HELP process_cpu_seconds_total Total user and system CPU time spent in seconds.\n"
                         "# TYPE process_cpu_seconds_total counter\n"
                         "process_cpu_seconds_total %.15g\n",
                         heartbeat_age_s, (uint64_t) rss_bytes, cpu_seconds);

        if (n < 0)
                n = 0;
        return (size_t) n < size ? (size_t) n : size - 1;
}

char *render_metrics(const struct snapshot *s, uint64_t rss_bytes, double cpu_seconds)
{
        char tail[RENDER_PART_MAX];
        size_t tl = render_metrics_tail(rss_bytes, cpu_seconds, 0, tail, sizeof(tail)), bl = 0;
        char *body = render_metrics_body(s, &bl), *text = join_parts(body, bl, tail, tl);

        free(body);
        return text;
}
