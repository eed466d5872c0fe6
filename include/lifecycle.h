/* The lifecycle's internals, shared by its three files and nothing else:
 * daemon/daemon.c (probes, attempts, scheduling, events), daemon/reload.c (SIGHUP: the
 * file parsed on a thread, applied by name on the loop) and daemon/publish.c (snapshots
 * for the status server, the SIGUSR1 dump). See docs/design.md, "Where each concern
 * lives". Everything here runs on the loop thread, except reload.c's worker, which
 * touches only d->reload and the immutable d->opts. */
#pragma once
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "daemon.h"
#include "loop.h"
#include "probe.h"
#include "snapshot.h"

/* A probe's counters and last results live in its view (v), the very object snapshots
 * show: copy-on-write (probe_mut) instead of a copy per snapshot, so 10,000 probes hold
 * one set of numbers each. state and healthy are kept here too, for the lifecycle's own
 * decisions. */
struct probe {
        struct daemon *d;
        const struct probe_config *cfg; /* entry of d->cfg->probes */
        enum probe_state state;
        int healthy; /* -1 unknown, 0, 1 */
        bool ever_healthy;
        struct attempt attempt;
        struct timer timer;            /* next attempt, or end of backoff */
        struct timer deadline;         /* the running attempt's timeout */
        uint64_t backoff_ms;           /* 0: not backing off */
        bool froze;                    /* the running attempt was in flight across a stall */
        uint64_t frozen_ns;            /* wall time without CPU during the running attempt */
        bool rerun;                    /* this attempt re-runs one whose failure a stall may have caused */
        struct probe_view *v;          /* owned reference; snapshots take more */
        struct probe *q_prev, *q_next; /* in d's queue of probes waiting for a slot */
        bool queued;
        unsigned fds_held; /* the attempt in flight's fds_per_attempt, counted in d */
};

struct daemon {
        struct loop *loop;
        struct config *cfg;
        struct daemon_options opts;
        struct probe **probes; /* cfg order */
        size_t n_probes;
        uint64_t start_mono_ns;
        uint64_t next_attempt_id;
        bool started, draining;
        size_t startup_pending; /* startup-scope probes never healthy */
        size_t live_bad;        /* liveness-scope probes unhealthy */
        size_t ready_bad;       /* readiness-scope probes not healthy */
        uint64_t stalls, loop_busy, reloads_ok, reloads_failed;
        bool dirty_verdict, dirty_stats;
        uint64_t last_publish_ns;
        struct timer publish_timer;
        struct timer drain_timer;
        size_t running;                /* attempts in flight, at most MAX_INFLIGHT_ATTEMPTS */
        size_t fd_budget;              /* descriptors attempts may hold at once; 0: not limited */
        size_t fds_in_flight;          /* what the attempts in flight hold (fds_per_attempt) */
        struct probe *q_head, *q_tail; /* due probes waiting for a slot, FIFO */
        struct timer slot_timer;       /* starts queued probes once slots are free */
        struct attempt_res *res_free;  /* registration blocks of ended attempts, for the next */
        struct resolver *resolver;     /* names of every kind (README "Names") */
        char *resolver_servers;        /* the `resolver` it was made with (NULL: resolv.conf's) */
        /* SIGHUP: the file is read and parsed on a thread of its own (10,000 probes take
         * longer than a loop iteration may); the loop applies the result when the
         * thread's eventfd says it is done. */
        struct {
                pthread_t thread;
                int efd;           /* eventfd: the worker is done */
                bool running;      /* a worker exists (joined on completion or free) */
                bool again;        /* SIGHUP while it ran: one more reload after it */
                int r;             /* the worker's result: 0 or negative errno */
                struct config *nc; /* the worker's config, or NULL */
                char *err;         /* the worker's error text, or NULL */
        } reload;
};

/* daemon.c */
struct probe *probe_new(struct daemon *d, const struct probe_config *cfg);
struct probe *probe_free(struct probe *p); /* cancels what runs; NULL-safe */
/* Schedules the first attempt of the i-th of n probes starting together. */
void probe_begin(struct probe *p, size_t i, size_t n);
void aggregates_recount(struct daemon *d);
void daemon_check_started(struct daemon *d);
void daemon_apply_settings(struct daemon *d); /* stall threshold, freshness, log level */

/* attempt.c: what an attempt holds */
/* Takes the attempt's registration block and runs ops->start as a dispatch (an
 * attempt_end inside it finishes once start returned). start's result, or -ENOMEM. */
int attempt_begin(struct attempt *a, const struct probe_ops *ops, const void *spec, uint64_t timeout_ms);
void attempt_release(struct attempt *a);  /* every registration out, the block back to d->res_free */
void attempt_res_drain(struct daemon *d); /* frees d->res_free */
/* What attempt_set_address kept, into *ret; false when nothing was (call before release). */
bool attempt_address(const struct attempt *a, union sockaddr_any *ret);
/* daemon.c: the rest of attempt_end once no kind callback is on the stack */
void attempt_finish(struct attempt *a, enum outcome o, const char *reason);

/* reload.c */
int reload_init(struct daemon *d);    /* the worker's eventfd on the loop */
void reload_stop(struct daemon *d);   /* joins a worker in progress, closes the eventfd */
void daemon_reload(struct daemon *d); /* SIGHUP */

/* publish.c */
struct snapshot *daemon_snapshot(struct daemon *d);
void daemon_publish(struct daemon *d);
void publish_on_timer(struct loop *l, void *data);
void daemon_on_iteration(struct loop *l, void *data); /* publishes when due */
void daemon_log_status(struct daemon *d);             /* SIGUSR1 */
