/* Probe internals, shared only by daemon/ and probes/ (docs/design.md).
 *
 * A probe is a coroutine stepped by the loop: WAITING -> RUNNING -> (WAITING |
 * BACKOFF | STOPPED). It owns at most one attempt at a time (attempts of one probe
 * never overlap, as in kubelet). Every attempt ends through attempt_end(), exactly
 * once: it is a no-op unless the attempt is RUNNING, and it records the outcome (never
 * for CANCELLED) and schedules.
 *
 * An attempt owns its resources (docs/design.md, "The attempt lifecycle"): a kind
 * registers every fd it watches, its timer and its libcurl handle through the
 * attempt_io_*, attempt_timer_* and attempt_curl_* functions below, and the lifecycle
 * delivers their events only to the attempt generation that registered them, so a kind's
 * callback never asks whether the attempt is still its own. attempt_end() called from a
 * kind's callback (or from start) only records the outcome: once that callback returned,
 * the lifecycle releases every registration (fds out of epoll, the timer disarmed, the
 * curl handle out of the multi) and then calls ops->cancel, so the kind's state stays
 * valid until its callback returns. Called from anywhere else (deadline, shutdown,
 * reload), it releases at once. cancel then closes fds, frees curl handles and kills and
 * reaps children: it never deregisters anything.
 *
 * A probe kind is one file, probes/<kind>.c, exporting one `const struct probe_ops`,
 * plus one line in the registry (daemon/registry.c). Everything else about a kind (the
 * known-type list of config errors, the command-line flag, its getopt entry and usage
 * text) is derived from the registry (docs/design.md, "Adding a kind"):
 *   type, keys its "type" value and its own config keys
 *   flag       its command-line flag (--<name> <arg>) and the config JSON it stands for
 *   parse      validate and normalize its config keys (fills defaults into obj)
 *   start      begin one attempt without blocking; finish later with attempt_end()
 *   cancel     free the attempt's kind state (a->data); called only by the lifecycle,
 *              after the attempt's registrations were released
 *   free_spec  free what parse returned */
#pragma once
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <curl/curl.h>

#include "bounds.h"

struct loop;
struct probe;
struct attempt;
struct attempt_res;
struct attempt_ending;

enum outcome {
        OUTCOME_SUCCESS,
        OUTCOME_FAILURE,
        OUTCOME_TIMEOUT,
        OUTCOME_CANCELLED,
        OUTCOME_ERROR,
        _OUTCOME_MAX,
        _OUTCOME_INVALID = -EINVAL,
};
const char *outcome_to_string(enum outcome o); /* "success", ...; NULL when invalid */

/* A probe's state in its coroutine (above); shown in /status. */
enum probe_state {
        PROBE_WAITING,
        PROBE_RUNNING,
        PROBE_BACKOFF,
        PROBE_STOPPED,
        _PROBE_STATE_MAX,
        _PROBE_STATE_INVALID = -EINVAL,
};
const char *probe_state_to_string(enum probe_state s); /* "waiting", ...; NULL when invalid */

enum attempt_state {
        ATTEMPT_IDLE,    /* no attempt in flight */
        ATTEMPT_RUNNING, /* kind owns handles in a->data */
        ATTEMPT_ENDING,  /* attempt_end was called: its resources are being released */
};

/* A kind's callbacks for what its attempt registered (below). */
typedef void attempt_io_fn(struct attempt *a, int fd, uint32_t events);
typedef void attempt_timer_fn(struct attempt *a);
typedef void attempt_curl_fn(struct attempt *a, CURL *easy, CURLcode result);
struct addr_list;
struct resolver_query;
union sockaddr_any;
/* The addresses of a name, its port set in each: borrowed for the call. */
typedef void attempt_resolve_fn(struct attempt *a, const struct addr_list *addrs);

#define ATTEMPT_MAX_IO 2 /* fds one attempt watches at once (exec: its pipe and pidfd) */

struct attempt {
        struct probe *probe; /* owner (back-pointer) */
        struct loop *loop;   /* borrowed for the attempt's life */
        uint64_t id;         /* generation, +1 per attempt */
        enum attempt_state state;
        uint64_t start_ns;
        void *data;              /* kind state; set by start, freed by cancel */
        const char *waiting_for; /* static text set by the kind: what the attempt waits for
                                     * now ("pong"), for the timeout reason; NULL: "answer" */
        char *output;            /* exec output (malloc'd, output_len bytes, any of them NUL,
                                     * then a NUL) or NULL; set only through attempt_set_output */
        size_t output_len;
        /* the lifecycle's: what the attempt registered (allocated while it runs, so that
         * 10,000 idle probes do not carry it), and the dispatch a kind's callback runs in */
        struct attempt_res *res;
        struct attempt_ending *ending;
};

/* A kind's command-line flag, `--<name> NAME=VALUE`: one probe in all three scopes with
 * default timings (README "Command line"). */
struct probe_flag_ops {
        const char *name; /* long option name: "ws" for --ws */
        const char *arg;  /* its argument's syntax, for the usage text and errors: "NAME=URL" */
        /* Adds the kind's keys for VALUE (what follows "NAME=", never empty) to obj, which
         * already holds "name" and "type". Returns 0 or -ENOMEM. */
        int (*to_json)(cJSON *obj, const char *value);
};

struct probe_ops {
        const char *type;        /* "http", "tcp", ... */
        const char *const *keys; /* kind-specific config keys, NULL-terminated */
        struct probe_flag_ops flag;
        /* obj: the probe's JSON object (may be modified to add defaults); path: its JSON
         * path. On success *ret_spec (owned by caller, freed with free_spec) and
         * *ret_target (malloc'd display string) are set. Errors as config.h cfg_*. */
        int (*parse)(cJSON *obj, const char *path, void **ret_spec, char **ret_target, char **reterr);
        void (*free_spec)(void *spec);
        /* Begin an attempt: set a->data and register I/O through attempt_io_add, ... Returns
         * 0 (the attempt runs, or already ended itself through attempt_end), or a negative
         * errno when the daemon could not run it: the lifecycle then ends it as
         * OUTCOME_ERROR, releasing what was registered and calling cancel if a->data is set. */
        int (*start)(struct attempt *a, const void *spec, uint64_t timeout_ms);
        /* Free a->data (close fds, free curl handles, kill+reap children) and set it to
         * NULL. Everything the attempt registered is released already: cancel deregisters
         * nothing. Produces no outcome. Called once per attempt with a->data set, by the
         * lifecycle only. */
        void (*cancel)(struct attempt *a);
        /* Descriptors one attempt may hold at once, counted honestly (sockets, pipes,
         * pidfds): the daemon shares RLIMIT_NOFILE, less SERVER_FD_RESERVE, among the
         * attempts in flight by this count (README "Design"). */
        unsigned fds_per_attempt;
};

/* ---- the lifecycle's side (daemon/daemon.c), called by the kinds ---- */

/* Ends the attempt with one outcome; the reason (printf) becomes last_error for
 * failure/timeout/error. No-op unless a->state == ATTEMPT_RUNNING. From a kind's
 * callback (or start), a->data stays valid until that callback returns, and the
 * registrations until then too (their events are no longer delivered). */
void attempt_end(struct attempt *a, enum outcome o, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Keeps exec output for /status (truncated to EXEC_OUTPUT_MAX), whatever bytes it holds. */
void attempt_set_output(struct attempt *a, const char *buf, size_t len);

/* What an attempt holds, registered so that the lifecycle delivers each event to the
 * generation that registered it and releases it all when the attempt ends (top of the
 * file). Safe to call after attempt_end within the same callback: released with the rest.
 *
 * fds: at most ATTEMPT_MAX_IO at once; events are EPOLLIN/EPOLLOUT, EPOLLERR/EPOLLHUP are
 * always reported. Returns 0, -ENOSPC (no free slot: a bug of the kind) or a negative errno
 * from the loop. An fd is deregistered (attempt_io_del, or probe_close) before the kind
 * closes it during the attempt; attempt_io_del of an fd not registered does nothing. */
int attempt_io_add(struct attempt *a, int fd, uint32_t events, attempt_io_fn *fn);
int attempt_io_mod(struct attempt *a, int fd, uint32_t events); /* -ENOENT: not registered */
void attempt_io_del(struct attempt *a, int fd);
/* One timer per attempt: arms (or re-arms) it to fire fn at when_ns (CLOCK_MONOTONIC). */
void attempt_timer_arm(struct attempt *a, attempt_timer_fn *fn, uint64_t when_ns);
void attempt_timer_disarm(struct attempt *a); /* idempotent */
/* One libcurl easy handle per attempt in the loop's multi; fn gets its completion,
 * outside every libcurl callback. Never call these from inside a libcurl callback.
 * attempt_curl_remove of a handle the attempt does not hold does nothing. Freeing the
 * handle (probe_curl_free) stays the kind's. */
int attempt_curl_add(struct attempt *a, CURL *easy, attempt_curl_fn *fn);
void attempt_curl_remove(struct attempt *a, CURL *easy);
/* One lookup per attempt (README "Names"; include/resolver.h): resolves host (a name, or a
 * literal address without brackets; borrowed until fn is called or the attempt ends) and
 * calls fn with its addresses, port set, at once when the answer is known (a literal, the
 * cache, /etc/hosts) or from the loop later. A name that does not resolve ends the attempt
 * here, the same way for every kind: failure "dns: HOST: no such host" (or the resolver's
 * reason: a timeout, SERVFAIL), error when probed lacked memory or descriptors; fn is then
 * not called. While it waits, a->waiting_for reads "DNS answer". A new lookup replaces one
 * in flight; the attempt's end abandons it (the query goes on for the cache). q: NULL for
 * both families through the cache. Returns 0, or -ENOSPC when the attempt is not running. */
int attempt_resolve(struct attempt *a, const char *host, uint16_t port, const struct resolver_query *q,
                    attempt_resolve_fn *fn);
/* The address the attempt connects to, or tries (copied): /status's last_address once the
 * attempt ended (README "HTTP endpoints"). A lookup's answer sets its first address, each
 * connect the address it tries (probe_connect_next), a libcurl completion the address
 * libcurl used; the last one set wins. */
void attempt_set_address(struct attempt *a, const union sockaddr_any *addr);
