/* The status server's freshness wait and watchdog (docs/design.md, "Freshness and the
 * watchdog").
 *
 * This file owns the server's use of the loop's heartbeat (include/heartbeat.h): the
 * verdict endpoints, /status and /metrics first wait (at most fresh_wait) until the loop
 * has caught up with the request's arrival, so answers after a freeze reflect the
 * present; when nothing froze that costs two atomic reads. A loop behind by the
 * watchdog that makes no progress in SERVER_WATCHDOG_GRACE_MS is stuck: the verdicts
 * answer 503.
 *
 * The heartbeat goes with the loop, which may be freed while MHD's threads that
 * server_free gave up on still run: threads count themselves in and out of it
 * (hb_users), and none enters once stopping is set. */
#include <inttypes.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdio.h>

#include "bounds.h"
#include "heartbeat.h"
#include "log.h"
#include "server_int.h"
#include "util.h"

/* The calling thread's counter of hb users (MHD's threads and the render thread have
 * one each; any more share the last). */
static atomic_uint *server_hb_counter(struct server *srv)
{
        static _Thread_local struct server *owner;
        static _Thread_local atomic_uint *counter;

        if (owner != srv) {
                unsigned i = atomic_fetch_add(&srv->hb_users_next, 1);
                counter = &srv->hb_users[i < ELEMENTSOF(srv->hb_users) ? i : ELEMENTSOF(srv->hb_users) - 1].n;
                owner = srv;
        }
        return counter;
}

/* The heartbeat, unless there is none or the server is stopping; pair with
 * server_hb_leave. */
struct heartbeat *server_hb_enter(struct server *srv)
{
        atomic_uint *n;

        if (!srv->hb)
                return NULL;
        n = server_hb_counter(srv);
        atomic_fetch_add(n, 1); /* before reading stopping: server_free sees one or the other */
        if (atomic_load(&srv->stopping)) {
                atomic_fetch_sub(n, 1);
                return NULL;
        }
        return srv->hb;
}

void server_hb_leave(struct server *srv)
{
        atomic_fetch_sub(server_hb_counter(srv), 1);
}

/* The loop is current again: ends a watchdog episode (written only then, so that
 * requests do not bounce the cache line). */
static void server_loop_alive(struct server *srv)
{
        if (atomic_load_explicit(&srv->stuck, memory_order_relaxed) && atomic_exchange(&srv->stuck, false))
                log_kv(LOG_LEVEL_INFO, "Event loop running again", "event", "watchdog_over", NULL);
}

/* Waits until the loop is current for instant t, at most max_ns; true if it is. One
 * atomic read when it already is; slices so that stopping is not held up. */
static bool server_wait_current(struct server *srv, uint64_t t, uint64_t max_ns)
{
        uint64_t end;

        if (heartbeat_behind(srv->hb, t) == 0)
                return true;
        end = now_ns() + max_ns;
        for (;;) {
                uint64_t now, slice;
                if (heartbeat_behind(srv->hb, t) == 0)
                        return true;
                now = now_ns();
                if (now >= end || atomic_load(&srv->stopping))
                        return false;
                slice = end - now;
                if (slice > SERVER_WAIT_SLICE_MS * NSEC_PER_MSEC)
                        slice = SERVER_WAIT_SLICE_MS * NSEC_PER_MSEC;
                if (heartbeat_wait(srv->hb, t, slice))
                        return true;
        }
}

/* The watchdog: is the loop stuck (behind by the watchdog and no progress within the
 * grace)? *ret_behind: by how much. One ERROR line per episode. */
static bool server_loop_stuck(struct server *srv, uint64_t *ret_behind)
{
        struct heartbeat *h = srv->hb;
        uint64_t wd = atomic_load(&h->watchdog_ns), t = now_ns(), behind = heartbeat_behind(h, t), done;

        if (wd == 0 || behind < wd) {
                server_loop_alive(srv);
                return false;
        }
        done = atomic_load(&h->done_ns);
        /* Already known stuck and still no beat: answer at once. Otherwise give it the
         * grace: after a whole-process freeze the loop thaws with us and catches up. */
        if (!atomic_load(&srv->stuck) || done != atomic_load(&srv->stuck_done)) {
                if (server_wait_current(srv, t, SERVER_WATCHDOG_GRACE_MS * NSEC_PER_MSEC) ||
                    atomic_load(&h->done_ns) != done || atomic_load(&srv->stopping))
                        return false;
                behind = heartbeat_behind(h, now_ns());
                atomic_store(&srv->stuck_done, done);
                if (!atomic_exchange(&srv->stuck, true)) {
                        char n[24];
                        snprintf(n, sizeof(n), "%" PRIu64 "s", (uint64_t) (behind / NSEC_PER_SEC));
                        log_kv(LOG_LEVEL_ERROR, "Event loop stuck, liveness answers 503", "event", "watchdog", "behind",
                               n, NULL);
                }
        }
        *ret_behind = behind;
        return true;
}

/* Before a request is answered: waits (at most fresh_wait) until the loop is current
 * for the request's arrival, so that answers after a freeze reflect the present (two
 * atomic reads otherwise). For a verdict, true if the watchdog finds the loop stuck,
 * with *ret_behind: by how much. */
bool server_fresh_stuck(struct server *srv, struct conn *k, enum route route, uint64_t *ret_behind)
{
        return server_fresh_stuck_at(srv, k ? k->arrival_ns : now_ns(), route <= ROUTE_READYZ, ret_behind);
}

/* server_fresh_stuck for a request that arrived at instant arrival (gRPC's too). */
bool server_fresh_stuck_at(struct server *srv, uint64_t arrival, bool verdict, uint64_t *ret_behind)
{
        bool stuck = false;

        if (!server_hb_enter(srv))
                return false;
        if (server_wait_current(srv, arrival, atomic_load(&srv->hb->fresh_wait_ns)))
                server_loop_alive(srv); /* current: not stuck */
        else if (verdict)
                stuck = server_loop_stuck(srv, ret_behind);
        server_hb_leave(srv);
        return stuck;
}

/* Once server_free gave up on MHD's threads: waits (briefly) until no thread is inside
 * the loop's heartbeat, which goes with the loop; none enters any more. */
void server_hb_wait_unused(struct server *srv)
{
        uint64_t end = now_ns() + SERVER_HB_LEAVE_WAIT_MS * NSEC_PER_MSEC;

        for (size_t i = 0; i < ELEMENTSOF(srv->hb_users); i++)
                while (atomic_load(&srv->hb_users[i].n) && now_ns() < end)
                        (void) poll(NULL, 0, 1);
}
