/* An immutable, refcounted picture of the daemon's state (daemon/snapshot.c): what the
 * status server answers from (README "HTTP endpoints"), built by the loop thread and read by the server's threads.
 * Once published a snapshot is never modified; readers hold a reference
 * (snapshot_ref/snapshot_unref, atomic) for as long as they render from it.
 * The render_* functions are pure: snapshot in, text out. */
#pragma once
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "probe.h"
#include "util.h"

/* Histogram buckets of probed_probe_duration_seconds, upper bounds in seconds. */
#define DURATION_BUCKETS                                                                                               \
        {                                                                                                              \
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10                                                \
        }
#define N_DURATION_BUCKETS 11

/* One probe as seen in a snapshot: plain values, no pointers into live state.
 * Immutable once published and refcounted, so that consecutive snapshots share the views
 * of probes that did not change (10,000 probes cost one copy, not one per snapshot). */
struct probe_view {
        atomic_int refs;
        char name[MAX_NAME_LEN + 1];
        /* last_address (probe_view_set_address), in the holes of the layout: a view is
         * kept per probe, 10,000 of them */
        uint8_t last_family; /* AF_INET, AF_INET6, or 0: none */
        uint16_t last_port;
        const char *type; /* static string ("http") */
        char *target;     /* owned by the snapshot */
        unsigned scopes;  /* enum scope flags */
        enum probe_state state;
        int healthy; /* -1 unknown, 0 unhealthy, 1 healthy */
        unsigned consecutive_successes;
        unsigned consecutive_failures;
        uint64_t attempts, successes, failures, timeouts, cancellations, errors, restarts;
        enum outcome last_outcome;  /* _OUTCOME_INVALID before the first attempt ends */
        int last_success;           /* -1 none yet; 1/0 for the last completed attempt */
        char last_error[ERROR_MAX]; /* "" when none */
        uint64_t last_duration_ms;
        uint64_t last_attempt_wall_ns; /* 0: never */
        uint64_t last_change_wall_ns;  /* 0: never (health never changed) */
        char *output;                  /* owned; exec output, NULL for other kinds: output_len
                                        * bytes (NUL among them too), then a NUL */
        size_t output_len;
        /* completed attempts (success/failure/timeout) by duration */
        uint64_t duration_bucket[N_DURATION_BUCKETS]; /* cumulative counts: le bound */
        uint64_t duration_count;
        double duration_sum_s;
        uint8_t last_ip[16]; /* last_address: 4 or 16 bytes of it */
};

struct snapshot {
        atomic_int refs;
        bool started, live, ready, draining;
        bool details_loopback;  /* /status and ?verbose only for loopback clients */
        uint64_t start_mono_ns; /* daemon start, CLOCK_MONOTONIC (uptime) */
        uint64_t stalls;
        uint64_t loop_busy; /* late wake-ups caused by the loop's own work (not stalls) */
        uint64_t reloads_ok, reloads_failed;
        size_t n_probes;
        struct probe_view **probes; /* owned array of references, config order */
};

/* refs = 1; with_views: n zeroed views, else n NULL slots the caller fills with
 * references. NULL on ENOMEM. */
struct snapshot *snapshot_new(size_t n_probes, bool with_views);
struct snapshot *snapshot_ref(struct snapshot *s);
struct snapshot *snapshot_unref(struct snapshot *s); /* frees at 0; NULL-safe; returns NULL */

struct probe_view *probe_view_new(void); /* refs = 1, zeroed; NULL on ENOMEM */
/* last_address: what the last attempt connected to or tried (README "HTTP endpoints"). */
void probe_view_set_address(struct probe_view *v, const union sockaddr_any *a);
/* The view's last_address into *ret; false when it has none. */
bool probe_view_address(const struct probe_view *v, union sockaddr_any *ret);
struct probe_view *probe_view_ref(struct probe_view *v);
struct probe_view *probe_view_unref(struct probe_view *v); /* frees at 0; NULL-safe; returns NULL */

/* "starting" | "ok" | "failing" | "draining" */
const char *snapshot_status(const struct snapshot *s);

/* The verdict endpoints (/startup, /livez, /readyz), for one scope
 * (SCOPE_STARTUP, SCOPE_LIVENESS or SCOPE_READINESS). Non-verbose: "ok\n" or one
 * reason line ("failing: api: connection refused\n", "draining\n", "starting\n").
 * Verbose: one line per probe of that scope ("[+]api ok", "[-]chat failed: <err>")
 * then "startup check passed" / "livez check failed" ... *ret_status is 200 or 503.
 * Returns a malloc'd string, NULL on ENOMEM. */
char *render_verdict(const struct snapshot *s, unsigned scope, bool verbose, int *ret_status);
/* /status JSON (README "HTTP endpoints"). now_mono_ns for uptime. malloc'd, NULL on ENOMEM. */
char *render_status_json(const struct snapshot *s, uint64_t now_mono_ns);
/* /metrics, Prometheus text format 0.0.4; passes `promtool check metrics`.
 * rss_bytes and cpu_seconds are the process figures. malloc'd, NULL on ENOMEM. */
char *render_metrics(const struct snapshot *s, uint64_t rss_bytes, double cpu_seconds);

/* The same documents in two parts: a body that depends on the snapshot only (rendered
 * once, shared by every request) and a small per-request part of at most
 * RENDER_PART_MAX bytes written into out (NUL-terminated; returns its length).
 * /status = head + body; /metrics = body + tail. Bodies: malloc'd, *ret_len their
 * length, NULL on ENOMEM. */
#define RENDER_PART_MAX 1024
size_t render_status_head(const struct snapshot *s, uint64_t now_mono_ns, char *out, size_t size);
char *render_status_body(const struct snapshot *s, size_t *ret_len);
char *render_metrics_body(const struct snapshot *s, size_t *ret_len);
size_t render_metrics_tail(uint64_t rss_bytes, double cpu_seconds, double heartbeat_age_s, char *out, size_t size);
