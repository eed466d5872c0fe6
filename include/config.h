/* The config loader (daemon/config.c): parsed from JSON plus probe flags (README "Config
 * file", "Command line"), validated, with every error naming its JSON path. Parsing never
 * logs: errors come back as a malloc'd "reterr" string such as
 *   config: probes[1].timeout: "5x" is not a duration (e.g. "500ms", "2s")
 * which main prints after "probed: ". */
#pragma once
#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config_get.h" /* the kinds' parse functions read their keys with it */
#include "log.h"

struct probe_ops;

enum scope {
        SCOPE_STARTUP = 1 << 0,
        SCOPE_LIVENESS = 1 << 1,
        SCOPE_READINESS = 1 << 2,
        SCOPE_ALL = SCOPE_STARTUP | SCOPE_LIVENESS | SCOPE_READINESS,
};

struct timing {
        uint64_t period_ms;
        uint64_t timeout_ms;
        uint64_t initial_delay_ms;
        uint64_t startup_period_ms;
        unsigned success_threshold;
        unsigned failure_threshold;
};

struct probe_config {
        char *name;                  /* owned */
        const struct probe_ops *ops; /* static */
        unsigned scopes;             /* enum scope flags */
        struct timing timing;        /* defaults applied */
        void *spec;                  /* owned: from ops->parse, freed by ops->free_spec */
        char *target;                /* owned: URL or address, for /status */
        cJSON *json;                 /* owned: the effective probe object (defaults filled in),
                                      * or NULL when loaded lean */
        unsigned char digest[32];    /* SHA-256 of json printed with the keys of every object
                                      * sorted: two probes with equal digests are the same
                                      * config, whatever order their keys were written in */
};

struct config {
        char *listen;             /* owned: "ADDR:PORT" */
        char *resolver;           /* owned: "ADDR:PORT[,...]" DNS servers instead of resolv.conf's, or NULL */
        enum log_level log_level; /* LOG_LEVEL_INFO unless set */
        bool log_level_set;       /* the file said log_level */
        bool details_loopback;    /* "details": "loopback": /status and ?verbose only for
                                       * loopback clients (they reveal URLs and errors) */
        uint64_t drain_ms;
        uint64_t stall_threshold_ms;
        uint64_t fresh_wait_ms; /* a request after a freeze waits this long for the loop to catch up */
        uint64_t watchdog_ms;   /* no loop progress this long: verdicts answer 503 */
        struct timing defaults;
        uint64_t backoff_initial_ms;
        uint64_t backoff_max_ms;
        size_t n_probes;
        struct probe_config *probes; /* owned array of n_probes */
};

/* A probe given on the command line: kind is "http", "tcp", "ws", "grpc" or "exec",
 * arg is what followed the flag ("NAME=URL", ...). Borrowed. */
struct probe_flag {
        const char *kind;
        const char *arg;
};

/* Builds a config from the JSON text of a file (NULL: no file) plus probe flags.
 * With no file and no flags, the embedded default (one tcp probe "app" to
 * 127.0.0.1:${PROBED_TARGET_PORT:-8080}). ${VAR} and ${VAR:-default} are expanded in
 * every string value. listen is taken from the file, else "0.0.0.0:8081" (main applies
 * -l and $PROBED_LISTEN over it). Returns 0 and a config the caller frees with
 * config_free, or -EINVAL/-ENOMEM with *reterr set (malloc'd, caller frees). */
int config_load(const char *text, const struct probe_flag *flags, size_t n_flags, struct config **ret_config,
                char **reterr);

/* The same, keeping of each probe only the digest of its effective json (pc->json is
 * NULL, config_to_json returns NULL): what the daemon runs with (about 2 KB less per
 * probe, and no heap holes left by freeing them later). */
int config_load_lean(const char *text, const struct probe_flag *flags, size_t n_flags, struct config **ret_config,
                     char **reterr);

/* Reads a whole file (at most MAX_CONFIG_BYTES) into a malloc'd NUL-terminated string.
 * Errors: "config: PATH: <strerror>" in *reterr. */
int config_read_file(const char *path, char **ret_text, char **reterr);

/* The effective config as JSON (defaults filled in), as --check-config prints it.
 * Caller owns the result (cJSON_Delete). NULL on ENOMEM or after config_compact. */
cJSON *config_to_json(const struct config *c);

struct config *config_free(struct config *c); /* NULL-safe, returns NULL */

/* A status server address: ADDR:PORT or [V6]:PORT, port 0 for a free one. The one check
 * of both the config's listen and -l / $PROBED_LISTEN; errors say LISTEN_HINT. */
#define LISTEN_HINT "is not ADDR:PORT (e.g. \"0.0.0.0:8081\", \"[::]:8081\")"
bool config_listen_valid(const char *addr); /* syntax only: config loading does no DNS */

/* The probe with that name, or NULL. Borrowed from c. */
const struct probe_config *config_find_probe(const struct config *c, const char *name);

/* True when both probes would probe the same way (reload keeps their state). */
bool probe_config_equal(const struct probe_config *a, const struct probe_config *b);
