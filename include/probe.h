/* Probe internals, shared only by daemon/ and probes/ (docs/design.md).
 *
 * A probe is a coroutine stepped by the loop: WAITING -> RUNNING -> (WAITING |
 * BACKOFF | STOPPED). It owns at most one attempt at a time (attempts of one probe
 * never overlap, as in kubelet). Every attempt ends through attempt_end(), exactly
 * once: it is a no-op unless the attempt is RUNNING, it calls ops->cancel to release
 * the kind's handles, then records the outcome (never for CANCELLED) and schedules.
 *
 * A probe kind is one file, probes/<kind>.c, exporting one `const struct probe_ops`,
 * plus one line in the registry (daemon/registry.c). Everything else about a kind (the
 * known-type list of config errors, the command-line flag, its getopt entry and usage
 * text) is derived from the registry (docs/design.md, "Adding a kind"):
 *   type, keys its "type" value and its own config keys
 *   flag       its command-line flag (--<name> <arg>) and the config JSON it stands for
 *   parse      validate and normalize its config keys (fills defaults into obj)
 *   start      begin one attempt without blocking; finish later with attempt_end()
 *   cancel     release the attempt's kind state (a->data); called only by attempt_end
 *   free_spec  free what parse returned */
#pragma once
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "bounds.h"

struct loop;
struct probe;

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
        ATTEMPT_ENDING,  /* inside attempt_end: handles being released */
};

struct attempt {
        struct probe *probe; /* owner (back-pointer) */
        struct loop *loop;   /* borrowed for the attempt's life */
        uint64_t id;         /* generation, +1 per attempt */
        enum attempt_state state;
        uint64_t start_ns;
        void *data;              /* kind state; set by start, freed by cancel */
        const char *waiting_for; /* static text set by the kind: what the attempt waits for
                                     * now ("pong"), for the timeout reason; NULL: "answer" */
        char *output;            /* exec output (malloc'd, NUL-terminated) or NULL; set
                                     * only through attempt_set_output */
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
        /* Begin an attempt: set a->data and arm I/O on a->loop. Returns 0 (the attempt runs,
         * or already ended itself through attempt_end), or a negative errno when the daemon
         * could not run it (the caller ends it as OUTCOME_ERROR; nothing may be left held). */
        int (*start)(struct attempt *a, const void *spec, uint64_t timeout_ms);
        /* Release a->data (close fds, remove curl handles, kill+reap children) and set it
         * to NULL. Produces no outcome. Called once per started attempt, by attempt_end. */
        void (*cancel)(struct attempt *a);
        /* Descriptors one attempt may hold at once, counted honestly (sockets, pipes,
         * pidfds): the daemon shares RLIMIT_NOFILE, less SERVER_FD_RESERVE, among the
         * attempts in flight by this count (README "Design"). */
        unsigned fds_per_attempt;
};

/* ---- the lifecycle's side (daemon/daemon.c), called by the kinds ---- */

/* Ends the attempt with one outcome; the reason (printf) becomes last_error for
 * failure/timeout/error. No-op unless a->state == ATTEMPT_RUNNING. After it returns,
 * a->data is gone: callers touch nothing of the attempt's kind state afterwards. */
void attempt_end(struct attempt *a, enum outcome o, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Keeps exec output for /status (truncated to EXEC_OUTPUT_MAX). */
void attempt_set_output(struct attempt *a, const char *buf, size_t len);
