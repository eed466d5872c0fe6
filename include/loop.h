/* The one event loop: epoll + one timerfd (CLOCK_MONOTONIC) armed to the earliest
 * timer of a heap + signalfd + libcurl's multi socket interface. Opaque.
 *
 * Safety rules the loop guarantees to callers:
 * - An fd removed with loop_io_del (or whose number was reused) while events for it
 *   sit in the current epoll batch is never dispatched again: each registration
 *   carries a generation in the epoll data and stale events are dropped.
 * - curl completions are delivered by loop_curl_fn *outside* every libcurl callback,
 *   after curl_multi_socket_action returned, so the callee may remove and clean up
 *   its easy handle (docs/design.md, "Architecture").
 * - Timers are embedded in their owner; the owner disarms before freeing. */
#pragma once
#include <curl/curl.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct loop;

typedef void loop_io_fn(struct loop *l, int fd, uint32_t events, void *data);
typedef void loop_timer_fn(struct loop *l, void *data);
typedef void loop_curl_fn(struct loop *l, CURL *easy, CURLcode result, void *data);

struct timer {
        uint64_t when_ns; /* CLOCK_MONOTONIC */
        size_t heap_idx;  /* position in the heap; SIZE_MAX when not armed */
        loop_timer_fn *fn;
        void *data;
};

/* Completion binding for one easy handle; embedded in the caller's attempt state and
 * pointed to by CURLOPT_PRIVATE. */
struct loop_curl {
        loop_curl_fn *fn;
        void *data;
};

struct loop_hooks {
        void (*signal)(struct loop *l, int signo, void *data); /* from signalfd */
        /* frozen_ns of wall time passed without CPU (docs/design.md, "Stalls and busy
         * wake-ups"); stall: more than the stall threshold */
        void (*frozen)(struct loop *l, uint64_t frozen_ns, bool stall, void *data);
        /* the first of a run of wake-ups late_ns late through the loop's own work;
         * culprit: the data of the fd handler that ran longest, or NULL */
        void (*busy)(struct loop *l, uint64_t late_ns, const void *culprit, void *data);
        void (*iteration)(struct loop *l, void *data); /* end of every iteration */
        void *data;
};

/* Creates the loop. signals: the signals to read through signalfd (they must already be
 * blocked in every thread). NULL on failure, with *ret_errno set to a negative errno. */
struct loop *loop_new(const int *signals, size_t n_signals, int *ret_errno);
struct loop *loop_free(struct loop *l); /* NULL-safe; removes nothing it does not own */

void loop_set_hooks(struct loop *l, const struct loop_hooks *hooks);
/* Frozen time past threshold is a stall; a wake-up later than threshold through the
 * loop's own work is busy. While attempts are in flight the loop wakes at least every
 * threshold/STALL_WAKE_DIVISOR, so that any freeze longer than the threshold is seen. */
void loop_set_stall_threshold(struct loop *l, uint64_t threshold_ns);
void loop_set_inflight(struct loop *l, bool inflight);

/* The loop's heartbeat (include/heartbeat.h), for the status server's threads. */
struct heartbeat *loop_heartbeat(struct loop *l);

int loop_run(struct loop *l); /* until loop_exit; 0, or negative errno */
void loop_exit(struct loop *l);

/* fd watchers: events are EPOLLIN/EPOLLOUT; EPOLLERR/EPOLLHUP are always reported. */
int loop_io_add(struct loop *l, int fd, uint32_t events, loop_io_fn *fn, void *data);
int loop_io_mod(struct loop *l, int fd, uint32_t events);
void loop_io_del(struct loop *l, int fd);

void timer_init(struct timer *t, loop_timer_fn *fn, void *data);
void loop_timer_arm(struct loop *l, struct timer *t, uint64_t when_ns); /* re-arms if armed */
void loop_timer_disarm(struct loop *l, struct timer *t);                /* idempotent */
static inline bool timer_armed(const struct timer *t)
{
        return t->heap_idx != (size_t) -1;
}

/* libcurl glue. loop_curl_add sets CURLOPT_PRIVATE to lc; lc must live until
 * loop_curl_remove. Never call either from inside a libcurl callback. */
int loop_curl_add(struct loop *l, CURL *easy, struct loop_curl *lc);
void loop_curl_remove(struct loop *l, CURL *easy);
