/* Publishing (docs/design.md): the lifecycle's state as immutable snapshots for the
 * status server, rebuilt when a verdict or a probe's health changes and at most every
 * SNAPSHOT_STATS_INTERVAL_MS for counters alone; and the SIGUSR1 dump of the full status
 * to the log. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lifecycle.h"
#include "log.h"
#include "util.h"

/* ---- snapshots ------------------------------------------------------------------------ */

/* Takes a reference to every probe's view: from now on they are immutable (probe_mut
 * copies before the next write). */
struct snapshot *daemon_snapshot(struct daemon *d)
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

void daemon_publish(struct daemon *d)
{
        struct snapshot *s = daemon_snapshot(d);

        if (!s)
                return; /* out of memory: keep serving the previous snapshot, retry later */
        d->dirty_verdict = d->dirty_stats = false;
        d->last_publish_ns = now_ns();
        d->opts.publish(s, d->opts.publish_data);
}

void publish_on_timer(struct loop *l, void *data)
{
        (void) l;
        (void) data; /* the iteration hook that follows publishes */
}

void daemon_on_iteration(struct loop *l, void *data)
{
        struct daemon *d = data;
        uint64_t due = d->last_publish_ns + SNAPSHOT_STATS_INTERVAL_MS * NSEC_PER_MSEC;

        if (d->dirty_verdict || (d->dirty_stats && now_ns() >= due))
                daemon_publish(d);
        else if (d->dirty_stats && !timer_armed(&d->publish_timer))
                loop_timer_arm(l, &d->publish_timer, due);
}

/* SIGUSR1: the full /status, in as many lines as it takes to keep each line under
 * LOG_LINE_MAX (each line is a /status document holding a slice of the probes). */
void daemon_log_status(struct daemon *d)
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
