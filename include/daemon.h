/* The probe lifecycle (README, "Lifecycle"): scheduling, attempts, thresholds, aggregates, and the
 * events that cancel attempts (shutdown, reload, stall). Runs on the loop thread only;
 * what other threads see is the snapshot it publishes. */
#pragma once
#include <stdbool.h>
#include <stddef.h>

#include "config.h"
#include "loop.h"
#include "snapshot.h"

struct daemon;

/* Called on the loop thread with a new snapshot; the callee takes over the reference. */
typedef void daemon_publish_fn(struct snapshot *s, void *data);

struct daemon_options {
        const char *config_path;        /* borrowed; NULL: reload re-applies flags only */
        const struct probe_flag *flags; /* borrowed for the daemon's life */
        size_t n_flags;
        bool log_level_locked; /* --log-level given: config's log_level ignored */
        daemon_publish_fn *publish;
        void *publish_data;
};

/* Takes ownership of cfg (also on failure). Sets the loop's hooks. NULL on ENOMEM. */
struct daemon *daemon_new(struct loop *l, struct config *cfg, const struct daemon_options *opts);
/* Descriptors the attempts in flight may hold at once, each counting its kind's
 * fds_per_attempt; due probes beyond it wait their turn. 0 (the default): no limit
 * but MAX_INFLIGHT_ATTEMPTS. */
void daemon_set_fd_budget(struct daemon *d, size_t fds);
/* Schedules every probe and publishes the first snapshot. */
void daemon_start(struct daemon *d);
/* Cancels whatever is in flight and frees everything (probes, config). NULL-safe. */
struct daemon *daemon_free(struct daemon *d);
