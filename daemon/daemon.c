/* The probe lifecycle (README, "Lifecycle"; docs/design.md, "The attempt lifecycle").
 *
 * Each probe is a small coroutine stepped by the loop:
 *
 *     WAITING --timer--> RUNNING --attempt_end(success|failure|timeout)--> WAITING
 *        ^                  |  \--attempt_end(error)--> BACKOFF --timer--> RUNNING
 *        |                  |
 *        +--(failure across a stall: cancelled, re-run once)   shutdown: any --> STOPPED
 *
 * attempt_end() is the only place an attempt's outcome is recorded: it does nothing
 * unless the attempt is RUNNING, releases what the attempt registered and the kind's
 * state first (ops->cancel), then updates counters and health (never for a
 * cancellation), logs transitions and schedules the next run (never once shutdown
 * began). Called from a kind's callback, all of that waits until the callback returned
 * (the dispatch in attempt.c, which also holds what an attempt registers; the rest of
 * attempt_end is attempt_finish here). Cancellation (shutdown, reload) is
 * attempt_end(OUTCOME_CANCELLED): it cannot be mistaken for a failure. Frozen time
 * (hooks.frozen) moves the deadlines of attempts in flight: timeouts count awake time.
 *
 * Aggregates are kept as counts updated on each health transition, so an attempt costs
 * O(1) even with 10,000 probes. Reload lives in reload.c, snapshots in publish.c. */
#include <malloc.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "heartbeat.h"
#include "lifecycle.h"
#include "log.h"
#include "probe.h"
#include "resolver.h"
#include "util.h"

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
        c->output = v->output ? malloc(v->output_len + 1) : NULL;
        if (c->output) /* output_len bytes, NUL among them too, and the NUL after them */
                memcpy(c->output, v->output, v->output_len + 1);
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

void aggregates_recount(struct daemon *d)
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

void daemon_check_started(struct daemon *d)
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
        r = attempt_begin(a, p->cfg->ops, p->cfg->spec, p->cfg->timing.timeout_ms);
        if (r < 0) /* a no-op when the kind already ended it; releases what start left */
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

/* The rest of attempt_end (daemon/attempt.c): resources and kind state released, outcome
 * recorded, next attempt scheduled. a->state is ATTEMPT_ENDING. */
void attempt_finish(struct attempt *a, enum outcome o, const char *reason)
{
        struct probe *p = a->probe;

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
        union sockaddr_any addr;
        if (attempt_address(a, &addr)) { /* /status last_address: kept before the registrations go */
                struct probe_view *v = probe_mut(p);
                if (v)
                        probe_view_set_address(v, &addr);
        }
        attempt_release(a);
        if (a->data)
                p->cfg->ops->cancel(a);
        if (a->output && o != OUTCOME_CANCELLED) {
                struct probe_view *v = probe_mut(p);
                if (v) {
                        free(v->output);
                        v->output = a->output;
                        v->output_len = a->output_len;
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
                if (rerun)                         /* from a timer: attempt_end's caller is still on the stack */
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
        a->output_len = len;
}

/* ---- probes --------------------------------------------------------------------------- */

struct probe *probe_new(struct daemon *d, const struct probe_config *cfg)
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

struct probe *probe_free(struct probe *p)
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
void probe_begin(struct probe *p, size_t i, size_t n)
{
        uint64_t spread = (uint64_t) i * FIRST_ATTEMPT_STAGGER_US * 1000, cap = probe_period_ms(p) * NSEC_PER_MSEC;

        if (n > 0 && spread > cap * i / n)
                spread = cap * i / n;
        loop_timer_arm(p->d->loop, &p->timer, now_ns() + p->cfg->timing.initial_delay_ms * NSEC_PER_MSEC + spread);
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
        /* stops once every attempt in flight is seen: a freeze costs O(probes) only
         * while many attempts run */
        for (size_t i = 0; i < d->n_probes && n < d->running; i++) {
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
        log_kv(LOG_LEVEL_WARNING, "Loop stalled (CPU throttled or instance frozen), deadlines moved", "event", "stall",
               "late", late, "in_flight", count, NULL);
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
                if (d->probes[i]->attempt.state == ATTEMPT_RUNNING && &d->probes[i]->attempt == culprit)
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

/* A reload that changed `resolver`: the new servers, the cache emptied. */
static void daemon_apply_resolver(struct daemon *d)
{
        const char *want = d->cfg->resolver;
        char *copy;
        int r;

        if ((!want && !d->resolver_servers) || (want && d->resolver_servers && strcmp(want, d->resolver_servers) == 0))
                return;
        copy = want ? strdup(want) : NULL;
        r = want && !copy ? -ENOMEM : resolver_set_servers(d->resolver, want);
        if (r < 0) {
                free(copy);
                log_kv(LOG_LEVEL_WARNING, "Failed to apply the resolver setting, ignoring", "event", "reload",
                       "resolver", want, "error", strerror(-r), NULL);
                return;
        }
        free(d->resolver_servers);
        d->resolver_servers = copy;
}

void daemon_apply_settings(struct daemon *d)
{
        if (d->resolver)
                daemon_apply_resolver(d);
        loop_set_stall_threshold(d->loop, d->cfg->stall_threshold_ms * NSEC_PER_MSEC);
        heartbeat_set_policy(loop_heartbeat(d->loop), d->cfg->fresh_wait_ms * NSEC_PER_MSEC,
                             d->cfg->watchdog_ms * NSEC_PER_MSEC);
        if (!d->opts.log_level_locked && d->cfg->log_level_set)
                log_setup(d->cfg->log_level, _LOG_FORMAT_INVALID);
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
        if (reload_init(d) < 0)
                return daemon_free(d);
        if (cfg->resolver && !(d->resolver_servers = strdup(cfg->resolver)))
                return daemon_free(d);
        d->resolver = resolver_new(l, cfg->resolver, NULL);
        if (!d->resolver)
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
        reload_stop(d);
        for (size_t i = 0; i < d->n_probes; i++)
                d->probes[i] = probe_free(d->probes[i]);
        free(d->probes);
        attempt_res_drain(d);
        d->resolver = resolver_free(d->resolver); /* no attempt waits on it any more */
        free(d->resolver_servers);
        loop_timer_disarm(d->loop, &d->publish_timer);
        loop_timer_disarm(d->loop, &d->drain_timer);
        loop_timer_disarm(d->loop, &d->slot_timer);
        config_free(d->cfg);
        free(d);
        return NULL;
}
