/* The probe lifecycle (SPEC 4).
 *
 * Each probe is a small coroutine stepped by the loop:
 *
 *     WAITING --timer--> RUNNING --attempt_end(success|failure|timeout)--> WAITING
 *        ^                  |  \--attempt_end(error)--> BACKOFF --timer--> RUNNING
 *        |                  |
 *        +--(stall: re-run at once)    shutdown: any state --> STOPPED
 *
 * attempt_end() is the only place an attempt's outcome is recorded: it does nothing
 * unless the attempt is RUNNING, releases the kind's handles first (ops->cancel), then
 * updates counters and health (never for a cancellation), logs transitions and
 * schedules the next run (never once shutdown began). Cancellation (shutdown, reload,
 * stall) is attempt_end(OUTCOME_CANCELLED): it cannot be mistaken for a failure.
 *
 * Aggregates are kept as counts updated on each health transition, so an attempt costs
 * O(1) even with 10,000 probes; the snapshot for the status server is rebuilt when a
 * verdict or a probe's health changes, and at most every SNAPSHOT_STATS_INTERVAL_MS for
 * counters alone. */
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "daemon.h"
#include "heartbeat.h"
#include "log.h"
#include "nametable.h"
#include "probe.h"
#include "util.h"

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

static const double duration_bounds[N_DURATION_BUCKETS] = DURATION_BUCKETS;

static void probe_run(struct probe *p);

/* The probe's view, made its own before it is written: a view that a snapshot holds
 * (refs > 1) is immutable, so it is copied first. Only the loop thread makes snapshots,
 * so refs == 1 cannot change under us. NULL when out of memory: the caller then drops
 * that piece of bookkeeping (the lifecycle itself goes on). */
static struct probe_view *probe_mut(struct probe *p)
{
        struct probe_view *v = p->v, *c;

        p->d->dirty_stats = true;
        if (atomic_load_explicit(&v->refs, memory_order_acquire) == 1)
                return v;
        c = probe_view_new();
        if (!c)
                return NULL;
        memcpy((char *) c + sizeof(c->refs), (const char *) v + sizeof(v->refs), sizeof(*c) - sizeof(c->refs));
        c->target = strdup(v->target);
        c->output = v->output ? strdup(v->output) : NULL;
        if (!c->target || (v->output && !c->output)) {
                free(c->output);
                c->output = NULL;
                probe_view_unref(c);
                return NULL;
        }
        probe_view_unref(v);
        p->v = c;
        return c;
}

static void probe_set_state(struct probe *p, enum probe_state state)
{
        struct probe_view *v = probe_mut(p);

        p->state = state;
        if (v)
                v->state = state;
}

/* ---- aggregates ------------------------------------------------------------------ */

static void aggregates_recount(struct daemon *d)
{
        d->startup_pending = d->live_bad = d->ready_bad = 0;
        for (size_t i = 0; i < d->n_probes; i++) {
                const struct probe *p = d->probes[i];
                unsigned s = p->cfg->scopes;
                if ((s & SCOPE_STARTUP) && !p->ever_healthy)
                        d->startup_pending++;
                if ((s & SCOPE_LIVENESS) && p->healthy == 0)
                        d->live_bad++;
                if ((s & SCOPE_READINESS) && p->healthy != 1)
                        d->ready_bad++;
        }
}

static void daemon_check_started(struct daemon *d)
{
        if (d->started || d->startup_pending > 0)
                return;
        d->started = true; /* latched: never goes back */
        d->dirty_verdict = true;
        (void) malloc_trim(0); /* the startup burst (startup_period) is over: give memory back */
        log_kv(LOG_LEVEL_INFO, "Startup complete", "event", "started", NULL);
}

/* Health transition of one probe: the only place counts change incrementally. */
static void probe_set_health(struct probe *p, int healthy)
{
        struct daemon *d = p->d;
        unsigned s = p->cfg->scopes;

        struct probe_view *v;

        if (p->healthy == healthy)
                return;
        if (s & SCOPE_LIVENESS)
                d->live_bad += (healthy == 0) - (p->healthy == 0);
        if (s & SCOPE_READINESS)
                d->ready_bad += (healthy != 1) - (p->healthy != 1);
        p->healthy = healthy;
        if ((v = probe_mut(p))) {
                v->healthy = healthy;
                v->last_change_wall_ns = wall_ns();
        }
        d->dirty_verdict = true;
        if (healthy == 1) {
                if (!p->ever_healthy && (s & SCOPE_STARTUP))
                        d->startup_pending--;
                p->ever_healthy = true;
                log_kv(LOG_LEVEL_INFO, "Probe is healthy", "event", "healthy", "probe", p->cfg->name, "type",
                       p->cfg->ops->type, "outcome", outcome_to_string(p->v->last_outcome), NULL);
                daemon_check_started(d);
        } else {
                log_kv(LOG_LEVEL_WARNING, "Probe is unhealthy", "event", "unhealthy", "probe", p->cfg->name, "type",
                       p->cfg->ops->type, "outcome", outcome_to_string(p->v->last_outcome), "error", p->v->last_error,
                       NULL);
        }
}

/* ---- scheduling ---------------------------------------------------------------------- */

static uint64_t probe_period_ms(const struct probe *p)
{
        if ((p->cfg->scopes & SCOPE_STARTUP) && !p->d->started)
                return p->cfg->timing.startup_period_ms;
        return p->cfg->timing.period_ms;
}

static void probe_on_timer(struct loop *l, void *data)
{
        struct probe *p = data;

        (void) l;
        if (p->d->draining)
                return;
        if (p->state == PROBE_BACKOFF) {
                struct probe_view *v = probe_mut(p);
                if (v)
                        v->restarts++;
        }
        probe_run(p);
}

/* After an attempt that ended (not cancelled): when does the next one start? */
static void probe_schedule(struct probe *p, enum outcome o)
{
        struct daemon *d = p->d;
        uint64_t now = now_ns(), next;

        if (d->draining) {
                probe_set_state(p, PROBE_STOPPED);
                return;
        }
        if (o == OUTCOME_ERROR) {
                uint64_t initial = d->cfg->backoff_initial_ms, max = d->cfg->backoff_max_ms;
                char buf[32];
                p->backoff_ms = p->backoff_ms ? (p->backoff_ms * 2 > max ? max : p->backoff_ms * 2) : initial;
                probe_set_state(p, PROBE_BACKOFF);
                duration_format(p->backoff_ms, buf, sizeof(buf));
                log_kv(LOG_LEVEL_WARNING, "Probe could not run, backing off", "event", "backoff", "probe", p->cfg->name,
                       "error", p->v->last_error, "backoff", buf, NULL);
                loop_timer_arm(d->loop, &p->timer, now + p->backoff_ms * NSEC_PER_MSEC);
                return;
        }
        p->backoff_ms = 0; /* a completed attempt resets the backoff */
        probe_set_state(p, PROBE_WAITING);
        /* attempts never overlap: next at previous start + period, or at once */
        next = p->attempt.start_ns + probe_period_ms(p) * NSEC_PER_MSEC;
        loop_timer_arm(d->loop, &p->timer, next > now ? next : now);
}

static void attempt_on_deadline(struct loop *l, void *data)
{
        struct attempt *a = data;
        char buf[32];

        (void) l;
        duration_format(a->probe->cfg->timing.timeout_ms, buf, sizeof(buf));
        attempt_end(a, OUTCOME_TIMEOUT, "timeout: no %s within %s", a->waiting_for ? a->waiting_for : "answer", buf);
}

/* ---- the slot queue: at most MAX_INFLIGHT_ATTEMPTS attempts in flight ----------------- *
 * and within the descriptors left to probes (daemon_set_fd_budget, README "Design"): a due
 * probe without a slot waits its turn in a FIFO, with no outcome. */

static unsigned probe_fds(const struct probe *p)
{
        return p->cfg->ops->fds_per_attempt ? p->cfg->ops->fds_per_attempt : 1;
}

static bool slot_free(const struct daemon *d, const struct probe *p)
{
        return d->running < MAX_INFLIGHT_ATTEMPTS &&
               (d->fd_budget == 0 || d->fds_in_flight + probe_fds(p) <= d->fd_budget);
}

/* The attempt of p no longer holds its slot. */
static void slot_release(struct probe *p)
{
        p->d->running--;
        p->d->fds_in_flight -= p->fds_held;
        p->fds_held = 0;
}

void daemon_set_fd_budget(struct daemon *d, size_t fds)
{
        d->fd_budget = fds;
}

static void queue_remove(struct probe *p)
{
        struct daemon *d = p->d;

        if (!p->queued)
                return;
        *(p->q_prev ? &p->q_prev->q_next : &d->q_head) = p->q_next;
        *(p->q_next ? &p->q_next->q_prev : &d->q_tail) = p->q_prev;
        p->q_prev = p->q_next = NULL;
        p->queued = false;
}

static void queue_push(struct probe *p)
{
        struct daemon *d = p->d;

        if (p->queued)
                return;
        p->q_prev = d->q_tail;
        p->q_next = NULL;
        *(d->q_tail ? &d->q_tail->q_next : &d->q_head) = p;
        d->q_tail = p;
        p->queued = true;
}

/* Started from a timer, not from attempt_end, so that attempts ending at once (a refused
 * connect) cannot recurse through the whole queue. */
static void slot_on_timer(struct loop *l, void *data)
{
        struct daemon *d = data;

        (void) l;
        while (d->q_head && slot_free(d, d->q_head) && !d->draining)
                probe_run(d->q_head);
}

static void probe_run(struct probe *p)
{
        struct daemon *d = p->d;
        struct attempt *a = &p->attempt;
        int r;

        if (d->draining || a->state != ATTEMPT_IDLE)
                return;
        loop_timer_disarm(d->loop, &p->timer);
        if (!slot_free(d, p) || (d->q_head && d->q_head != p)) {
                queue_push(p); /* bounded: thousands of sockets and handles at once cost memory */
                return;        /* and first come, first served: a 1-fd kind cannot starve exec */
        }
        queue_remove(p);
        d->running++;
        p->fds_held = probe_fds(p);
        d->fds_in_flight += p->fds_held;
        probe_set_state(p, PROBE_RUNNING); /* /status shows the attempt running */
        a->id = ++d->next_attempt_id;
        a->state = ATTEMPT_RUNNING;
        a->start_ns = now_ns();
        a->data = NULL;
        a->waiting_for = NULL;
        loop_set_inflight(d->loop, true);
        loop_timer_arm(d->loop, &p->deadline, a->start_ns + p->cfg->timing.timeout_ms * NSEC_PER_MSEC);
        r = p->cfg->ops->start(a, p->cfg->spec, p->cfg->timing.timeout_ms);
        if (r < 0) /* a no-op when the kind already ended it */
                attempt_end(a, OUTCOME_ERROR, "cannot run attempt: %s", strerror(-r));
}

/* ---- the one place an attempt ends --------------------------------------------------- */

static void probe_record(struct probe *p, enum outcome o, const char *reason, uint64_t dur_ns)
{
        double secs = (double) dur_ns / NSEC_PER_SEC;
        struct probe_view *v = probe_mut(p);

        if (log_enabled(LOG_LEVEL_DEBUG)) {
                char ms[24];
                snprintf(ms, sizeof(ms), "%llu", (unsigned long long) (dur_ns / NSEC_PER_MSEC));
                log_kv(LOG_LEVEL_DEBUG, "Attempt ended", "event", "attempt", "probe", p->cfg->name, "outcome",
                       outcome_to_string(o), "duration_ms", ms, "error", o == OUTCOME_SUCCESS ? NULL : reason, NULL);
        }
        if (!v)
                return; /* out of memory: this attempt goes unrecorded */
        v->attempts++;
        v->last_outcome = o;
        v->last_attempt_wall_ns = wall_ns();
        v->last_duration_ms = dur_ns / NSEC_PER_MSEC;
        switch (o) {
        case OUTCOME_CANCELLED:
                v->cancellations++; /* no threshold and no health change, ever */
                return;
        case OUTCOME_ERROR:
                v->errors++; /* the target's health is unchanged */
                snprintf(v->last_error, sizeof(v->last_error), "%s", reason);
                return;
        default:
                break;
        }
        v->duration_count++;
        v->duration_sum_s += secs;
        for (size_t i = 0; i < N_DURATION_BUCKETS; i++)
                if (secs <= duration_bounds[i])
                        v->duration_bucket[i]++;
        if (o == OUTCOME_SUCCESS) {
                v->successes++;
                v->last_success = 1;
                v->last_error[0] = '\0';
                v->consecutive_successes++;
                v->consecutive_failures = 0;
                if (v->consecutive_successes >= p->cfg->timing.success_threshold)
                        probe_set_health(p, 1);
        } else {
                if (o == OUTCOME_TIMEOUT)
                        v->timeouts++;
                else
                        v->failures++;
                v->last_success = 0;
                snprintf(v->last_error, sizeof(v->last_error), "%s", reason);
                v->consecutive_failures++;
                v->consecutive_successes = 0;
                if (v->consecutive_failures >= p->cfg->timing.failure_threshold)
                        probe_set_health(p, 0);
        }
}

void attempt_end(struct attempt *a, enum outcome o, const char *fmt, ...)
{
        struct probe *p = a->probe;
        char reason[ERROR_MAX];
        va_list ap;

        if (a->state != ATTEMPT_RUNNING)
                return; /* already ended: a completion racing a cancel, or the reverse */
        a->state = ATTEMPT_ENDING;
        /* format first: the arguments may point into the kind state that cancel frees */
        va_start(ap, fmt);
        vsnprintf(reason, sizeof(reason), fmt, ap);
        va_end(ap);
        /* A failure of an attempt in flight across a stall may be the freeze's doing (the
         * peer gave up on a frozen client): cancelled, and re-run once at once; the re-run
         * counts whatever it gets (README, "Freezes and CPU throttling"). */
        bool rerun = o == OUTCOME_FAILURE && p->froze && !p->rerun && !p->d->draining;
        if (rerun)
                o = OUTCOME_CANCELLED;
        p->rerun = rerun;
        p->froze = false;
        loop_timer_disarm(a->loop, &p->deadline);
        slot_release(p);
        loop_set_inflight(a->loop, p->d->running > 0);
        if (p->d->q_head && !timer_armed(&p->d->slot_timer))
                loop_timer_arm(a->loop, &p->d->slot_timer, now_ns());
        if (a->data)
                p->cfg->ops->cancel(a);
        if (a->output && o != OUTCOME_CANCELLED) {
                struct probe_view *v = probe_mut(p);
                if (v) {
                        free(v->output);
                        v->output = a->output;
                        a->output = NULL;
                }
        }
        free(a->output);
        a->output = NULL;
        /* the attempt's duration is awake time, as its timeout */
        uint64_t dur = now_ns() - a->start_ns;
        probe_record(p, o, reason, dur > p->frozen_ns ? dur - p->frozen_ns : 0);
        p->frozen_ns = 0;
        a->state = ATTEMPT_IDLE;
        if (o != OUTCOME_CANCELLED) {
                probe_schedule(p, o);
        } else {
                probe_set_state(p, PROBE_WAITING); /* the canceller decides what comes next */
                if (rerun) /* from a timer: the kind's callback is still on the stack */
                        loop_timer_arm(a->loop, &p->timer, now_ns());
        }
}

void attempt_set_output(struct attempt *a, const char *buf, size_t len)
{
        char *o;

        if (len > EXEC_OUTPUT_MAX)
                len = EXEC_OUTPUT_MAX;
        o = malloc(len + 1);
        if (!o)
                return; /* output is informative only */
        memcpy(o, buf, len);
        o[len] = '\0';
        free(a->output);
        a->output = o;
}

/* ---- probes --------------------------------------------------------------------------- */

static struct probe *probe_new(struct daemon *d, const struct probe_config *cfg)
{
        struct probe *p = calloc(1, sizeof(*p));

        if (!p)
                return NULL;
        p->d = d;
        p->cfg = cfg;
        p->v = probe_view_new();
        if (!p->v || !(p->v->target = strdup(cfg->target))) {
                probe_view_unref(p->v);
                free(p);
                return NULL;
        }
        snprintf(p->v->name, sizeof(p->v->name), "%s", cfg->name);
        p->v->type = cfg->ops->type;
        p->v->scopes = cfg->scopes;
        p->v->state = p->state = PROBE_WAITING;
        p->v->healthy = p->healthy = -1;
        p->v->last_outcome = _OUTCOME_INVALID;
        p->v->last_success = -1;
        p->attempt.probe = p;
        p->attempt.loop = d->loop;
        timer_init(&p->timer, probe_on_timer, p);
        timer_init(&p->deadline, attempt_on_deadline, &p->attempt);
        return p;
}

/* Cancels the running attempt, if any, and stops scheduling the probe. */
static void probe_stop(struct probe *p)
{
        attempt_end(&p->attempt, OUTCOME_CANCELLED, "cancelled");
        loop_timer_disarm(p->d->loop, &p->timer);
        queue_remove(p);
        probe_set_state(p, PROBE_STOPPED);
}

static struct probe *probe_free(struct probe *p)
{
        if (!p)
                return NULL;
        probe_stop(p);
        loop_timer_disarm(p->d->loop, &p->deadline);
        probe_view_unref(p->v);
        free(p);
        return NULL;
}

/* Schedules the first attempt of the i-th of n probes starting together: after its
 * initial_delay, staggered FIRST_ATTEMPT_STAGGER_US apart but within one period, so that
 * 10,000 probes do not open 10,000 sockets in the same instant (HAProxy spreads its
 * checks the same way), while a handful start at once. */
static void probe_begin(struct probe *p, size_t i, size_t n)
{
        uint64_t spread = (uint64_t) i * FIRST_ATTEMPT_STAGGER_US * 1000, cap = probe_period_ms(p) * NSEC_PER_MSEC;

        if (n > 0 && spread > cap * i / n)
                spread = cap * i / n;
        loop_timer_arm(p->d->loop, &p->timer, now_ns() + p->cfg->timing.initial_delay_ms * NSEC_PER_MSEC + spread);
}

/* ---- snapshots ------------------------------------------------------------------------ */

/* Takes a reference to every probe's view: from now on they are immutable (probe_mut
 * copies before the next write). */
static struct snapshot *daemon_snapshot(struct daemon *d)
{
        struct snapshot *s = snapshot_new(d->n_probes, false);

        if (!s)
                return NULL;
        s->started = d->started;
        s->live = !d->started || d->live_bad == 0;
        s->ready = d->started && !d->draining && d->ready_bad == 0;
        s->draining = d->draining;
        s->details_loopback = d->cfg->details_loopback;
        s->start_mono_ns = d->start_mono_ns;
        s->stalls = d->stalls;
        s->loop_busy = d->loop_busy;
        s->reloads_ok = d->reloads_ok;
        s->reloads_failed = d->reloads_failed;
        for (size_t i = 0; i < d->n_probes; i++)
                s->probes[i] = probe_view_ref(d->probes[i]->v);
        return s;
}

static void daemon_publish(struct daemon *d)
{
        struct snapshot *s = daemon_snapshot(d);

        if (!s)
                return; /* out of memory: keep serving the previous snapshot, retry later */
        d->dirty_verdict = d->dirty_stats = false;
        d->last_publish_ns = now_ns();
        d->opts.publish(s, d->opts.publish_data);
}

static void publish_on_timer(struct loop *l, void *data)
{
        (void) l;
        (void) data; /* the iteration hook that follows publishes */
}

static void daemon_on_iteration(struct loop *l, void *data)
{
        struct daemon *d = data;
        uint64_t due = d->last_publish_ns + SNAPSHOT_STATS_INTERVAL_MS * NSEC_PER_MSEC;

        if (d->dirty_verdict || (d->dirty_stats && now_ns() >= due))
                daemon_publish(d);
        else if (d->dirty_stats && !timer_armed(&d->publish_timer))
                loop_timer_arm(l, &d->publish_timer, due);
}

/* ---- events: stall, shutdown, reload, status dump --------------------------------------- */

/* Wall time without CPU (a frozen or throttled instance) is not the targets' time: the
 * deadlines of attempts in flight move later by it, so a timeout counts awake time and
 * an attempt keeps its connection (docs/design.md, "Stalls and busy wake-ups"). */
static void daemon_on_frozen(struct loop *l, uint64_t frozen_ns, bool stall, void *data)
{
        struct daemon *d = data;
        size_t n = 0;

        if (d->draining)
                return; /* shutdown already cancelled everything */
        for (size_t i = 0; i < d->n_probes; i++) {
                struct probe *p = d->probes[i];
                if (p->attempt.state != ATTEMPT_RUNNING)
                        continue;
                loop_timer_arm(l, &p->deadline, p->deadline.when_ns + frozen_ns);
                p->frozen_ns += frozen_ns;
                p->froze |= stall;
                n++;
        }
        if (!stall)
                return;
        d->stalls++;
        d->dirty_stats = true;
        char late[32], count[24];
        duration_format(frozen_ns / NSEC_PER_MSEC, late, sizeof(late));
        snprintf(count, sizeof(count), "%zu", n);
        log_kv(LOG_LEVEL_WARNING, "Loop stalled (CPU throttled or instance frozen), deadlines moved", "event",
               "stall", "late", late, "in_flight", count, NULL);
}

/* The loop was late through its own work: nothing is cancelled, the run is logged once
 * with the probe whose handler held the loop, where the loop knows it. */
static void daemon_on_busy(struct loop *l, uint64_t late_ns, const void *culprit, void *data)
{
        struct daemon *d = data;
        const char *name = NULL;
        char late[32];

        (void) l;
        d->loop_busy++;
        d->dirty_stats = true;
        for (size_t i = 0; culprit && i < d->n_probes && !name; i++)
                if (d->probes[i]->attempt.state == ATTEMPT_RUNNING && d->probes[i]->attempt.data == culprit)
                        name = d->probes[i]->cfg->name;
        duration_format(late_ns / NSEC_PER_MSEC, late, sizeof(late));
        log_kv(LOG_LEVEL_WARNING, "Loop busy (late through its own work), nothing cancelled", "event", "loop_busy",
               "late", late, "probe", name, NULL);
}

static void drain_on_timer(struct loop *l, void *data)
{
        (void) data;
        loop_exit(l);
}

static void daemon_shutdown(struct daemon *d, int signo)
{
        if (d->draining) {
                log_kv(LOG_LEVEL_INFO, "Second signal, exiting now", "event", "shutdown", "signal", sigabbrev_np(signo),
                       NULL);
                loop_exit(d->loop);
                return;
        }
        d->draining = true; /* from here on nothing is scheduled or restarted */
        d->dirty_verdict = true;
        for (size_t i = 0; i < d->n_probes; i++)
                probe_stop(d->probes[i]);
        char drain[32];
        duration_format(d->cfg->drain_ms, drain, sizeof(drain));
        log_kv(LOG_LEVEL_INFO, "Draining", "event", "draining", "signal", sigabbrev_np(signo), "drain", drain, NULL);
        daemon_publish(d);
        loop_timer_arm(d->loop, &d->drain_timer, now_ns() + d->cfg->drain_ms * NSEC_PER_MSEC);
}

static int daemon_load(struct daemon *d, struct config **ret, char **reterr)
{
        char *text = NULL;
        int r;

        if (d->opts.config_path) {
                r = config_read_file(d->opts.config_path, &text, reterr);
                if (r < 0)
                        return r;
        }
        r = config_load_lean(text, d->opts.flags, d->opts.n_flags, ret, reterr);
        free(text);
        return r;
}

static void daemon_apply_settings(struct daemon *d)
{
        loop_set_stall_threshold(d->loop, d->cfg->stall_threshold_ms * NSEC_PER_MSEC);
        heartbeat_set_policy(loop_heartbeat(d->loop), d->cfg->fresh_wait_ms * NSEC_PER_MSEC,
                             d->cfg->watchdog_ms * NSEC_PER_MSEC);
        if (!d->opts.log_level_locked && d->cfg->log_level_set)
                log_setup(d->cfg->log_level, _LOG_FORMAT_INVALID);
}

/* A running probe's name for the reload's name table; NULL once it moved to the new config. */
static const char *running_probe_name(const void *ctx, size_t j)
{
        const struct daemon *d = ctx;

        return d->probes[j] ? d->probes[j]->cfg->name : NULL;
}

static void daemon_reload_failed(struct daemon *d, const char *err)
{
        d->reloads_failed++;
        d->dirty_verdict = true; /* publish at once: /metrics counts it */
        log_kv(LOG_LEVEL_ERROR, "Failed to reload config, keeping the running one", "event", "reload_failed", "error",
               err, NULL);
}

/* Applies a loaded config on the loop: O(n) in the probes, no I/O. */
static void daemon_reload_apply(struct daemon *d, struct config *nc)
{
        struct config *old = d->cfg;
        struct probe **np;
        size_t kept = 0, changed = 0, added = 0, removed = 0;

        np = calloc(nc->n_probes ? nc->n_probes : 1, sizeof(*np));
        if (!np) {
                daemon_reload_failed(d, "out of memory");
                config_free(nc);
                return;
        }
        /* Match by name (a hash of the running probes' names: 10,000 probes must not cost
         * 10^8 compares on the loop): unchanged probes keep their state and counters
         * (their config entry, spec included, moves into the new config, since an attempt
         * in flight points at it); changed ones restart fresh; removed ones are cancelled. */
        struct name_table names;
        bool *changed_cfg = calloc(d->n_probes ? d->n_probes : 1, sizeof(*changed_cfg)); /* same name, another config */
        if (name_table_init(&names, d->n_probes, running_probe_name, d) < 0 || !changed_cfg) {
                name_table_free(&names);
                free(changed_cfg);
                free(np);
                daemon_reload_failed(d, "out of memory");
                config_free(nc);
                return;
        }
        for (size_t j = 0, other; j < d->n_probes; j++)
                (void) name_table_add(&names, j, &other); /* names are unique */
        for (size_t i = 0; i < nc->n_probes; i++) {
                struct probe_config *npc = &nc->probes[i];
                size_t j;
                if (!name_table_find(&names, npc->name, &j))
                        continue; /* a new probe */
                if (!probe_config_equal(d->probes[j]->cfg, npc)) {
                        changed_cfg[j] = true;
                        continue;
                }
                struct probe *p = d->probes[j];
                struct probe_config *opc = (struct probe_config *) p->cfg, tmp = *npc;
                *npc = *opc;
                *opc = tmp;
                p->cfg = npc;
                np[i] = p;
                kept++;
                d->probes[j] = NULL; /* moved (names are unique: never looked up again) */
        }
        for (size_t j = 0; j < d->n_probes; j++) {
                if (!d->probes[j])
                        continue;
                if (changed_cfg[j])
                        changed++;
                else
                        removed++;
                d->probes[j] = probe_free(d->probes[j]);
        }
        name_table_free(&names);
        free(changed_cfg);
        free(d->probes);
        d->probes = np;
        d->n_probes = nc->n_probes;
        d->cfg = nc;
        for (size_t i = 0; i < nc->n_probes; i++) {
                if (np[i])
                        continue;
                np[i] = probe_new(d, &nc->probes[i]);
                if (!np[i]) {
                        /* Out of memory mid-apply: drop the probe and say so loudly. */
                        log_kv(LOG_LEVEL_ERROR, "Failed to create probe: out of memory", "probe", nc->probes[i].name,
                               NULL);
                        continue;
                }
                probe_begin(np[i], added, nc->n_probes);
                added++;
        }
        /* compact out any probe that could not be created */
        size_t n = 0;
        for (size_t i = 0; i < d->n_probes; i++)
                if (np[i])
                        np[n++] = np[i];
        d->n_probes = n;
        added -= changed;
        if (strcmp(old->listen, nc->listen) != 0)
                log_kv(LOG_LEVEL_WARNING, "The listen address changed; it takes effect on restart, ignoring", "event",
                       "reload", "listen", nc->listen, NULL);
        config_free(old);
        (void) malloc_trim(0); /* give the parser's freed memory back */
        daemon_apply_settings(d);
        aggregates_recount(d);
        daemon_check_started(d);
        d->reloads_ok++;
        d->dirty_verdict = true;
        char k[24], c[24], a[24], r[24];
        snprintf(k, sizeof(k), "%zu", kept);
        snprintf(c, sizeof(c), "%zu", changed);
        snprintf(a, sizeof(a), "%zu", added);
        snprintf(r, sizeof(r), "%zu", removed);
        log_kv(LOG_LEVEL_INFO, "Config reloaded", "event", "reload", "kept", k, "changed", c, "added", a, "removed", r,
               NULL);
}

/* The reload thread: reads and parses the file, touches nothing of d but reload and
 * the immutable options. */
static void *reload_worker(void *data)
{
        struct daemon *d = data;
        uint64_t one = 1;

        d->reload.r = daemon_load(d, &d->reload.nc, &d->reload.err);
        if (write(d->reload.efd, &one, sizeof(one)) < 0) {
                /* an eventfd write of 1 cannot fail short of overflow: nothing to do */
        }
        return NULL;
}

/* Waits for the reload thread (it has finished, or is about to) and takes its result. */
static void reload_join(struct daemon *d, struct config **ret_nc, char **ret_err)
{
        (void) pthread_join(d->reload.thread, NULL);
        d->reload.running = false;
        *ret_nc = d->reload.nc;
        *ret_err = d->reload.err;
        if (d->reload.r < 0 && !*ret_err)
                *ret_err = strdup_printf("%s", strerror(-d->reload.r));
        d->reload.nc = NULL;
        d->reload.err = NULL;
}

static void daemon_reload(struct daemon *d)
{
        int r;

        if (d->draining)
                return;
        if (d->reload.running) {
                d->reload.again = true; /* the file may have changed since it was read */
                return;
        }
        d->reload.r = 0;
        r = pthread_create(&d->reload.thread, NULL, reload_worker, d);
        if (r != 0) {
                daemon_reload_failed(d, strerror(r));
                return;
        }
        d->reload.running = true;
}

static void reload_on_done(struct loop *l, int fd, uint32_t events, void *data)
{
        struct daemon *d = data;
        struct config *nc;
        char *err;
        uint64_t n;

        (void) l;
        (void) events;
        if (read(fd, &n, sizeof(n)) < 0 || !d->reload.running)
                return;
        reload_join(d, &nc, &err);
        if (d->draining) {
                config_free(nc); /* shutdown began meanwhile: nothing is applied */
        } else if (!nc) {
                daemon_reload_failed(d, err ? err : "out of memory");
        } else {
                daemon_reload_apply(d, nc);
        }
        free(err);
        if (d->reload.again) {
                d->reload.again = false;
                daemon_reload(d);
        }
}

/* SIGUSR1: the full /status, in as many lines as it takes to keep each line under
 * LOG_LINE_MAX (each line is a /status document holding a slice of the probes). */
static void daemon_log_status(struct daemon *d)
{
        struct snapshot *s = daemon_snapshot(d), part;
        size_t i = 0, k, fit = SIZE_MAX; /* probes that fitted in the previous line */

        if (!s)
                return;
        memcpy(&part, s, sizeof(part)); /* a borrowed view: only read by render_status_json */
        do {
                char *json = NULL;
                /* start from what fitted last time (times 2), not from every probe left:
                 * 10,000 probes must cost O(n log n), not O(n^2), on the loop */
                k = s->n_probes - i;
                if (fit < k / 2)
                        k = fit * 2;
                for (;; k = (k + 1) / 2) {
                        part.probes = s->probes + i;
                        part.n_probes = k;
                        free(json);
                        json = render_status_json(&part, now_ns());
                        if (!json || strlen(json) < LOG_LINE_MAX / 2 || k <= 1) /* escaping may double it */
                                break;
                }
                if (!json)
                        break;
                log_kv(LOG_LEVEL_INFO, "Status", "event", "status", "status", json, NULL);
                free(json);
                i += k;
                fit = k;
        } while (i < s->n_probes);
        snapshot_unref(s);
}

static void daemon_on_signal(struct loop *l, int signo, void *data)
{
        struct daemon *d = data;

        (void) l;
        switch (signo) {
        case SIGTERM:
        case SIGINT:
                daemon_shutdown(d, signo);
                break;
        case SIGHUP:
                daemon_reload(d);
                break;
        case SIGUSR1:
                daemon_log_status(d);
                break;
        default:
                break;
        }
}

/* ---- construction ---------------------------------------------------------------------- */

struct daemon *daemon_new(struct loop *l, struct config *cfg, const struct daemon_options *opts)
{
        struct daemon *d = calloc(1, sizeof(*d));
        struct loop_hooks hooks = {
                .signal = daemon_on_signal,
                .frozen = daemon_on_frozen,
                .busy = daemon_on_busy,
                .iteration = daemon_on_iteration,
        };

        if (!d) {
                config_free(cfg);
                return NULL;
        }
        d->loop = l;
        d->cfg = cfg;
        d->opts = *opts;
        d->start_mono_ns = now_ns();
        timer_init(&d->publish_timer, publish_on_timer, d);
        timer_init(&d->drain_timer, drain_on_timer, d);
        timer_init(&d->slot_timer, slot_on_timer, d);
        d->reload.efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        if (d->reload.efd < 0 || loop_io_add(l, d->reload.efd, EPOLLIN, reload_on_done, d) < 0)
                return daemon_free(d);
        d->probes = calloc(cfg->n_probes ? cfg->n_probes : 1, sizeof(*d->probes));
        if (!d->probes)
                return daemon_free(d);
        for (size_t i = 0; i < cfg->n_probes; i++) {
                d->probes[i] = probe_new(d, &cfg->probes[i]);
                if (!d->probes[i])
                        return daemon_free(d);
                d->n_probes++;
        }
        hooks.data = d;
        loop_set_hooks(l, &hooks);
        daemon_apply_settings(d);
        return d;
}

void daemon_start(struct daemon *d)
{
        for (size_t i = 0; i < d->n_probes; i++)
                probe_begin(d->probes[i], i, d->n_probes);
        aggregates_recount(d);
        daemon_check_started(d);
        daemon_publish(d);
}

struct daemon *daemon_free(struct daemon *d)
{
        if (!d)
                return NULL;
        d->draining = true;                                 /* nothing may schedule while we tear down */
        loop_set_hooks(d->loop, &(struct loop_hooks){ 0 }); /* the loop outlives d */
        if (d->reload.running) { /* a reload in progress: its file read ends soon */
                struct config *nc;
                char *err;
                reload_join(d, &nc, &err);
                config_free(nc);
                free(err);
        }
        if (d->reload.efd > 0) {
                loop_io_del(d->loop, d->reload.efd);
                (void) close(d->reload.efd);
        }
        for (size_t i = 0; i < d->n_probes; i++)
                d->probes[i] = probe_free(d->probes[i]);
        free(d->probes);
        loop_timer_disarm(d->loop, &d->publish_timer);
        loop_timer_disarm(d->loop, &d->drain_timer);
        loop_timer_disarm(d->loop, &d->slot_timer);
        config_free(d->cfg);
        free(d);
        return NULL;
}
