/* The loop's heartbeat: how far the event loop is behind the present, read by the
 * status server's threads without ever waiting on the loop when nothing froze
 * (docs/design.md, "Freshness and the watchdog").
 *
 * The loop thread writes: heartbeat_sleep() before epoll_wait with the instant it
 * asked to wake at, heartbeat_awake() when epoll_wait returns, heartbeat_beat() at the
 * end of each iteration with the instant that iteration began (every event that arrived
 * before it has been processed and published). Any thread reads heartbeat_behind().
 *
 * A loop asleep before its wake-up instant is current: nothing it would process has
 * happened (results arrive as fd events; a freeze shows as a late wake-up). */
#pragma once
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

struct heartbeat {
        _Atomic uint64_t done_ns;       /* CLOCK_MONOTONIC: events before it are processed */
        _Atomic uint64_t asleep_until;  /* in epoll_wait: its wake-up instant (UINT64_MAX: none); 0 awake */
        _Atomic uint64_t fresh_wait_ns; /* policy, set from the config ("fresh_wait") */
        _Atomic uint64_t watchdog_ns;   /* policy, set from the config ("watchdog") */
        atomic_uint waiters;            /* threads in heartbeat_wait: the loop signals only then */
        pthread_mutex_t lock;
        pthread_cond_t cond; /* CLOCK_MONOTONIC */
};

void heartbeat_init(struct heartbeat *h);
void heartbeat_destroy(struct heartbeat *h);
void heartbeat_set_policy(struct heartbeat *h, uint64_t fresh_wait_ns, uint64_t watchdog_ns);

/* loop thread */
void heartbeat_sleep(struct heartbeat *h, uint64_t until_ns);
void heartbeat_awake(struct heartbeat *h);
void heartbeat_beat(struct heartbeat *h, uint64_t done_ns);

/* any thread: how many ns the loop is behind instant t (0: it is current for t, within
 * HEARTBEAT_SLACK_MS). */
uint64_t heartbeat_behind(struct heartbeat *h, uint64_t t);
/* Waits until the loop is current for instant t or max_wait_ns passed; true if current. */
bool heartbeat_wait(struct heartbeat *h, uint64_t t, uint64_t max_wait_ns);
