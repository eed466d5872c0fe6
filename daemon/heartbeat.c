/* The loop's heartbeat (include/heartbeat.h). Readers are the status server's threads;
 * the only writer is the loop thread. Waiters park on a condition variable that the loop
 * broadcasts only while someone waits, so the loop pays one atomic load per iteration. */
#include <time.h>

#include "bounds.h"
#include "heartbeat.h"
#include "util.h"

void heartbeat_init(struct heartbeat *h)
{
        pthread_condattr_t ca;

        atomic_init(&h->done_ns, now_ns());
        atomic_init(&h->asleep_until, 0);
        atomic_init(&h->fresh_wait_ns, 300 * NSEC_PER_MSEC);
        atomic_init(&h->watchdog_ns, 10 * NSEC_PER_SEC);
        atomic_init(&h->waiters, 0);
        pthread_mutex_init(&h->lock, NULL);
        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        pthread_cond_init(&h->cond, &ca);
        pthread_condattr_destroy(&ca);
}

void heartbeat_destroy(struct heartbeat *h)
{
        pthread_cond_destroy(&h->cond);
        pthread_mutex_destroy(&h->lock);
}

void heartbeat_set_policy(struct heartbeat *h, uint64_t fresh_wait_ns, uint64_t watchdog_ns)
{
        atomic_store(&h->fresh_wait_ns, fresh_wait_ns);
        atomic_store(&h->watchdog_ns, watchdog_ns);
}

static void heartbeat_signal(struct heartbeat *h)
{
        if (atomic_load_explicit(&h->waiters, memory_order_acquire) == 0)
                return;
        pthread_mutex_lock(&h->lock);
        pthread_cond_broadcast(&h->cond);
        pthread_mutex_unlock(&h->lock);
}

void heartbeat_sleep(struct heartbeat *h, uint64_t until_ns)
{
        atomic_store_explicit(&h->asleep_until, until_ns ? until_ns : 1, memory_order_release);
}

void heartbeat_awake(struct heartbeat *h)
{
        atomic_store_explicit(&h->asleep_until, 0, memory_order_release);
}

void heartbeat_beat(struct heartbeat *h, uint64_t done_ns)
{
        atomic_store_explicit(&h->done_ns, done_ns, memory_order_release);
        heartbeat_signal(h);
}

uint64_t heartbeat_behind(struct heartbeat *h, uint64_t t)
{
        uint64_t until = atomic_load_explicit(&h->asleep_until, memory_order_acquire);
        uint64_t done = atomic_load_explicit(&h->done_ns, memory_order_acquire);
        uint64_t ref = until > done ? until : done, slack = HEARTBEAT_SLACK_MS * NSEC_PER_MSEC;

        /* asleep: current until its wake-up instant; awake: as of its last finished
         * iteration's start */
        if (ref == UINT64_MAX || t <= ref + slack)
                return 0;
        return t - ref;
}

bool heartbeat_wait(struct heartbeat *h, uint64_t t, uint64_t max_wait_ns)
{
        uint64_t end = now_ns() + max_wait_ns;
        bool current;

        if (heartbeat_behind(h, t) == 0)
                return true;
        atomic_fetch_add_explicit(&h->waiters, 1, memory_order_acq_rel);
        pthread_mutex_lock(&h->lock);
        while (!(current = heartbeat_behind(h, t) == 0)) {
                /* wake at least every HEARTBEAT_POLL_MS: a wake-up instant in the future
                 * (the loop went to sleep) makes it current without a beat */
                uint64_t now = now_ns(), w = now + HEARTBEAT_POLL_MS * NSEC_PER_MSEC;
                struct timespec ts;
                if (now >= end)
                        break;
                if (w > end)
                        w = end;
                ts.tv_sec = (time_t) (w / NSEC_PER_SEC);
                ts.tv_nsec = (long) (w % NSEC_PER_SEC);
                (void) pthread_cond_timedwait(&h->cond, &h->lock, &ts);
        }
        pthread_mutex_unlock(&h->lock);
        atomic_fetch_sub_explicit(&h->waiters, 1, memory_order_acq_rel);
        return current;
}
