/* The event loop (see include/loop.h): epoll for fds, one timerfd armed (absolute,
 * CLOCK_MONOTONIC) to the earliest timer of a binary min-heap, signalfd, and libcurl's
 * multi socket interface on top of the same fds and heap.
 *
 * Each fd registration gets a generation number carried in the epoll data next to the
 * fd; an event whose generation no longer matches (the fd was removed, perhaps closed
 * and reused, by an earlier callback of the same batch) is dropped. That is what lets a
 * callback end an attempt and close other attempts' fds safely.
 *
 * Frozen, stalled or busy (docs/design.md, "Stalls and busy wake-ups"): twice per
 * iteration (after epoll_wait, after the I/O callbacks) the loop compares the wall time
 * that passed since the previous check with the CPU its thread got meanwhile
 * (CLOCK_THREAD_CPUTIME_ID) and the time it meant to sleep. Wall time with neither CPU
 * nor a planned sleep is frozen time (a frozen or throttled process): hooks.frozen moves
 * the deadlines of attempts in flight later by it, and past stall_threshold it is a
 * stall. A wake-up later than stall_threshold during which the thread ran is the loop's
 * own work: hooks.busy, which cancels nothing. Both run before any timer of the
 * iteration, so a deadline never fires on frozen time.
 *
 * The heartbeat (include/heartbeat.h) is published for the status server's threads:
 * asleep until an instant while in epoll_wait, and the start of every iteration whose
 * events have been processed and published. */
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "bounds.h"
#include "heartbeat.h"
#include "log.h"
#include "loop.h"
#include "util.h"

#define MAX_EVENTS 256
#define NO_DEADLINE UINT64_MAX

struct io_slot {
        loop_io_fn *fn;
        void *data;
        uint32_t gen;
        bool used;
};

struct loop {
        int epfd, tfd, sfd;
        struct io_slot *slots; /* indexed by fd */
        size_t n_slots;
        uint32_t next_gen;
        struct timer **heap;
        size_t heap_len, heap_cap;
        CURLM *multi;
        struct timer curl_timer;
        struct loop_hooks hooks;
        uint64_t stall_threshold_ns;
        uint64_t armed_ns; /* what the timerfd is armed to (NO_DEADLINE: disarmed) */
        bool inflight;     /* attempts are in flight: wake at least every threshold/divisor */
        bool exiting;
        bool busy_run;              /* inside a run of busy wake-ups (logged once per run) */
        uint64_t mark_ns, mark_cpu; /* the last accounting point: wall and thread CPU */
        struct heartbeat hb;
        bool hb_ready;
};

/* ---- timers --------------------------------------------------------------------- */

void timer_init(struct timer *t, loop_timer_fn *fn, void *data)
{
        *t = (struct timer){ .heap_idx = (size_t) -1, .fn = fn, .data = data };
}

static void heap_set(struct loop *l, size_t i, struct timer *t)
{
        l->heap[i] = t;
        t->heap_idx = i;
}

static void heap_up(struct loop *l, size_t i)
{
        struct timer *t = l->heap[i];

        while (i > 0) {
                size_t p = (i - 1) / 2;
                if (l->heap[p]->when_ns <= t->when_ns)
                        break;
                heap_set(l, i, l->heap[p]);
                i = p;
        }
        heap_set(l, i, t);
}

static void heap_down(struct loop *l, size_t i)
{
        struct timer *t = l->heap[i];

        for (;;) {
                size_t c = 2 * i + 1;
                if (c >= l->heap_len)
                        break;
                if (c + 1 < l->heap_len && l->heap[c + 1]->when_ns < l->heap[c]->when_ns)
                        c++;
                if (t->when_ns <= l->heap[c]->when_ns)
                        break;
                heap_set(l, i, l->heap[c]);
                i = c;
        }
        heap_set(l, i, t);
}

void loop_timer_disarm(struct loop *l, struct timer *t)
{
        size_t i = t->heap_idx;

        if (i == (size_t) -1)
                return;
        t->heap_idx = (size_t) -1;
        l->heap_len--;
        if (i == l->heap_len)
                return;
        struct timer *moved = l->heap[l->heap_len];
        heap_set(l, i, moved);
        heap_up(l, i);
        heap_down(l, moved->heap_idx);
}

void loop_timer_arm(struct loop *l, struct timer *t, uint64_t when_ns)
{
        loop_timer_disarm(l, t);
        if (l->heap_len == l->heap_cap) {
                size_t cap = l->heap_cap ? l->heap_cap * 2 : 64;
                struct timer **h = realloc(l->heap, cap * sizeof(*h));
                if (!h) {
                        /* Cannot happen in practice (a few bytes); losing a timer would
                         * silently stop a probe, so treat it as fatal. */
                        log_kv(LOG_LEVEL_ERROR, "Failed to grow the timer heap: out of memory", NULL);
                        abort();
                }
                l->heap = h;
                l->heap_cap = cap;
        }
        t->when_ns = when_ns;
        heap_set(l, l->heap_len++, t);
        heap_up(l, t->heap_idx);
}

static void timers_run(struct loop *l)
{
        uint64_t now = now_ns();

        while (l->heap_len > 0 && l->heap[0]->when_ns <= now) {
                struct timer *t = l->heap[0];
                loop_timer_disarm(l, t);
                t->fn(l, t->data);
        }
}

/* ---- fds ---------------------------------------------------------------------- */

static int slots_reserve(struct loop *l, int fd)
{
        size_t n;
        struct io_slot *s;

        if ((size_t) fd < l->n_slots)
                return 0;
        n = l->n_slots ? l->n_slots : 64;
        while (n <= (size_t) fd)
                n *= 2;
        s = realloc(l->slots, n * sizeof(*s));
        if (!s)
                return -ENOMEM;
        memset(s + l->n_slots, 0, (n - l->n_slots) * sizeof(*s));
        l->slots = s;
        l->n_slots = n;
        return 0;
}

int loop_io_add(struct loop *l, int fd, uint32_t events, loop_io_fn *fn, void *data)
{
        struct epoll_event ev = { .events = events };
        struct io_slot *s;
        int r;

        if (fd < 0)
                return -EBADF;
        r = slots_reserve(l, fd);
        if (r < 0)
                return r;
        s = &l->slots[fd];
        ev.data.u64 = ((uint64_t) (l->next_gen + 1) << 32) | (uint32_t) fd;
        if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
                if (errno != EEXIST || epoll_ctl(l->epfd, EPOLL_CTL_MOD, fd, &ev) < 0)
                        return negative_errno();
        }
        /* the generation is the registration's only once epoll holds it */
        s->gen = ++l->next_gen;
        s->fn = fn;
        s->data = data;
        s->used = true;
        return 0;
}

int loop_io_mod(struct loop *l, int fd, uint32_t events)
{
        struct epoll_event ev = { .events = events };

        if (fd < 0 || (size_t) fd >= l->n_slots || !l->slots[fd].used)
                return -ENOENT;
        ev.data.u64 = ((uint64_t) l->slots[fd].gen << 32) | (uint32_t) fd;
        return epoll_ctl(l->epfd, EPOLL_CTL_MOD, fd, &ev) < 0 ? negative_errno() : 0;
}

void loop_io_del(struct loop *l, int fd)
{
        if (fd < 0 || (size_t) fd >= l->n_slots || !l->slots[fd].used)
                return;
        (void) epoll_ctl(l->epfd, EPOLL_CTL_DEL, fd, NULL);
        l->slots[fd].used = false;
        l->slots[fd].gen = ++l->next_gen; /* stale events of this batch are dropped */
}

/* ---- libcurl glue ----------------------------------------------------------------- */

static void curl_drain(struct loop *l)
{
        CURLMsg *m;
        int left;

        while ((m = curl_multi_info_read(l->multi, &left))) {
                CURL *easy = m->easy_handle; /* copy before the message dies */
                CURLcode rc = m->data.result;
                struct loop_curl *lc = NULL;

                if (m->msg != CURLMSG_DONE)
                        continue;
                if (curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **) &lc) != CURLE_OK || !lc)
                        continue;
                lc->fn(l, easy, rc, lc->data);
        }
}

static void curl_action(struct loop *l, curl_socket_t fd, int flags)
{
        int running;

        (void) curl_multi_socket_action(l->multi, fd, flags, &running);
        curl_drain(l);
}

static void curl_on_io(struct loop *l, int fd, uint32_t events, void *data)
{
        int flags = 0;

        (void) data;
        if (events & EPOLLIN)
                flags |= CURL_CSELECT_IN;
        if (events & EPOLLOUT)
                flags |= CURL_CSELECT_OUT;
        if (events & (EPOLLERR | EPOLLHUP))
                flags |= CURL_CSELECT_ERR;
        curl_action(l, fd, flags);
}

static void curl_on_timer(struct loop *l, void *data)
{
        (void) data;
        curl_action(l, CURL_SOCKET_TIMEOUT, 0);
}

/* libcurl callback: only bookkeeping here, never a libcurl call (docs/design.md, "Architecture"). */
static int curl_socket_cb(CURL *easy, curl_socket_t s, int what, void *clientp, void *socketp)
{
        struct loop *l = clientp;
        uint32_t ev = 0;

        (void) easy;
        (void) socketp;
        if (what == CURL_POLL_REMOVE) {
                loop_io_del(l, s);
                return 0;
        }
        if (what & CURL_POLL_IN)
                ev |= EPOLLIN;
        if (what & CURL_POLL_OUT)
                ev |= EPOLLOUT;
        if ((size_t) s < l->n_slots && l->slots[s].used && l->slots[s].fn == curl_on_io)
                return loop_io_mod(l, s, ev) < 0 ? -1 : 0;
        return loop_io_add(l, s, ev, curl_on_io, NULL) < 0 ? -1 : 0;
}

static int curl_timer_cb(CURLM *multi, long timeout_ms, void *clientp)
{
        struct loop *l = clientp;

        (void) multi;
        if (timeout_ms < 0)
                loop_timer_disarm(l, &l->curl_timer);
        else
                loop_timer_arm(l, &l->curl_timer, now_ns() + (uint64_t) timeout_ms * NSEC_PER_MSEC);
        return 0;
}

int loop_curl_add(struct loop *l, CURL *easy, struct loop_curl *lc)
{
        CURLMcode mc;

        curl_easy_setopt(easy, CURLOPT_PRIVATE, lc);
        mc = curl_multi_add_handle(l->multi, easy);
        if (mc == CURLM_OK)
                return 0;
        return mc == CURLM_OUT_OF_MEMORY ? -ENOMEM : -EIO;
}

void loop_curl_remove(struct loop *l, CURL *easy)
{
        (void) curl_multi_remove_handle(l->multi, easy);
}

/* ---- the loop ----------------------------------------------------------------------- */

#ifdef PROBED_TEST_HOOKS
/* Test build only (tests/integration, make's probed-hooks binary): SIGUSR2 makes the loop
 * thread spin for $PROBED_TEST_SPIN_MS (default 3000), a stuck or busy loop on demand. */
static void test_spin(void)
{
        const char *e = getenv("PROBED_TEST_SPIN_MS");
        uint64_t end = now_ns() + (e ? strtoull(e, NULL, 10) : 3000) * NSEC_PER_MSEC;

        while (now_ns() < end)
                ;
}
#endif

static void signal_on_io(struct loop *l, int fd, uint32_t events, void *data)
{
        struct signalfd_siginfo si;

        (void) events;
        (void) data;
        while (read(fd, &si, sizeof(si)) == (ssize_t) sizeof(si)) {
#ifdef PROBED_TEST_HOOKS
                if (si.ssi_signo == SIGUSR2) {
                        test_spin();
                        continue;
                }
#endif
                if (l->hooks.signal)
                        l->hooks.signal(l, (int) si.ssi_signo, l->hooks.data);
        }
}

static void timerfd_on_io(struct loop *l, int fd, uint32_t events, void *data)
{
        uint64_t n;

        (void) l;
        (void) events;
        (void) data;
        /* A stale expiry may leave it unreadable (EAGAIN): harmless, timers run anyway. */
        (void) read(fd, &n, sizeof(n));
}

struct loop *loop_new(const int *signals, size_t n_signals, int *ret_errno)
{
        struct loop *l = calloc(1, sizeof(*l));
        sigset_t mask;
        int r = -ENOMEM;

        if (!l)
                goto fail;
        l->epfd = l->tfd = l->sfd = -1;
        timer_init(&l->curl_timer, curl_on_timer, NULL);
        l->epfd = epoll_create1(EPOLL_CLOEXEC);
        l->tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
        sigemptyset(&mask);
        for (size_t i = 0; i < n_signals; i++)
                sigaddset(&mask, signals[i]);
#ifdef PROBED_TEST_HOOKS
        sigaddset(&mask, SIGUSR2);
        (void) pthread_sigmask(SIG_BLOCK, &mask, NULL);
#endif
        l->sfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
        if (l->epfd < 0 || l->tfd < 0 || l->sfd < 0) {
                r = negative_errno();
                goto fail;
        }
        if ((r = loop_io_add(l, l->tfd, EPOLLIN, timerfd_on_io, NULL)) < 0 ||
            (r = loop_io_add(l, l->sfd, EPOLLIN, signal_on_io, NULL)) < 0)
                goto fail;
        r = -ENOMEM;
        l->multi = curl_multi_init();
        if (!l->multi)
                goto fail;
        curl_multi_setopt(l->multi, CURLMOPT_SOCKETFUNCTION, curl_socket_cb);
        curl_multi_setopt(l->multi, CURLMOPT_SOCKETDATA, l);
        curl_multi_setopt(l->multi, CURLMOPT_TIMERFUNCTION, curl_timer_cb);
        curl_multi_setopt(l->multi, CURLMOPT_TIMERDATA, l);
        l->stall_threshold_ns = 500 * NSEC_PER_MSEC;
        l->armed_ns = NO_DEADLINE;
        heartbeat_init(&l->hb);
        l->hb_ready = true;
        return l;
fail:
        if (ret_errno)
                *ret_errno = r;
        loop_free(l);
        return NULL;
}

struct loop *loop_free(struct loop *l)
{
        if (!l)
                return NULL;
        /* curl_multi_cleanup may call the socket callback: epoll must still be open. */
        if (l->multi)
                curl_multi_cleanup(l->multi);
        if (l->sfd >= 0)
                (void) close(l->sfd);
        if (l->tfd >= 0)
                (void) close(l->tfd);
        if (l->epfd >= 0)
                (void) close(l->epfd);
        if (l->hb_ready)
                heartbeat_destroy(&l->hb);
        free(l->slots);
        free(l->heap);
        free(l);
        return NULL;
}

void loop_set_hooks(struct loop *l, const struct loop_hooks *hooks)
{
        l->hooks = *hooks;
}

void loop_set_stall_threshold(struct loop *l, uint64_t threshold_ns)
{
        l->stall_threshold_ns = threshold_ns;
}

void loop_set_inflight(struct loop *l, bool inflight)
{
        l->inflight = inflight;
}

struct heartbeat *loop_heartbeat(struct loop *l)
{
        return &l->hb;
}

void loop_exit(struct loop *l)
{
        l->exiting = true;
}

/* Arms the timerfd for the next wake-up and returns that instant (NO_DEADLINE: none). */
static uint64_t loop_arm_wake(struct loop *l)
{
        uint64_t wake = l->heap_len ? l->heap[0]->when_ns : NO_DEADLINE, now = now_ns();
        struct itimerspec its = { 0 };

        if (l->inflight && l->stall_threshold_ns > 0) {
                uint64_t cap = now + l->stall_threshold_ns / STALL_WAKE_DIVISOR;
                if (cap < wake)
                        wake = cap;
        }
        /* Already armed to wake us no later than needed: spare the syscall (waking a
         * little early is harmless; this runs at every iteration). */
        if (l->armed_ns > now && l->armed_ns <= wake)
                return l->armed_ns;
        if (wake != NO_DEADLINE) {
                uint64_t w = wake ? wake : 1; /* 0 would disarm */
                its.it_value.tv_sec = (time_t) (w / NSEC_PER_SEC);
                its.it_value.tv_nsec = (long) (w % NSEC_PER_SEC);
        }
        (void) timerfd_settime(l->tfd, TFD_TIMER_ABSTIME, &its, NULL);
        l->armed_ns = wake;
        return wake;
}

/* Accounts the span since the last accounting point; late: how far past the instant it
 * planned to be here the loop is (0: on time); slept: how much of the span it meant to
 * sleep (epoll_wait until its wake-up instant). Wall time with neither CPU nor a planned
 * sleep was frozen: hooks.frozen moves deadlines by it. Frozen past the threshold, with
 * the thread on the CPU for under STALL_MAX_CPU_PERCENT of the span, is a stall (signals that arrived meanwhile come first, so a
 * SIGTERM queued then stops everything before a deadline moves). Late past the
 * threshold otherwise is busy (hooks.busy, once per run of busy points). */
static void loop_account(struct loop *l, uint64_t late, uint64_t slept, const void *culprit)
{
        uint64_t now = now_ns(), cpu = thread_cpu_ns();
        uint64_t wall = now - l->mark_ns, ran = cpu - l->mark_cpu;
        uint64_t frozen = wall > ran + slept ? wall - ran - slept : 0;
        bool stall;

        l->mark_ns = now;
        l->mark_cpu = cpu;
        /* frozen for nearly all of the span: a loop busy on a contended or stolen CPU
         * (it ran for part of the span) is busy, not a stall */
        stall = l->stall_threshold_ns > 0 && frozen > l->stall_threshold_ns &&
                ran * 100 < (ran + frozen) * STALL_MAX_CPU_PERCENT;
        if (stall)
                signal_on_io(l, l->sfd, EPOLLIN, NULL);
        if (frozen >= FREEZE_SHIFT_MIN_US * 1000 && !l->exiting && l->hooks.frozen)
                l->hooks.frozen(l, frozen, stall, l->hooks.data);
        if (!stall && l->stall_threshold_ns > 0 && late > l->stall_threshold_ns) {
                if (!l->busy_run && l->hooks.busy)
                        l->hooks.busy(l, late, culprit, l->hooks.data);
                l->busy_run = true;
        } else if (late <= l->stall_threshold_ns) {
                l->busy_run = false;
        }
}

int loop_run(struct loop *l)
{
        struct epoll_event evs[MAX_EVENTS];

        l->mark_ns = now_ns();
        l->mark_cpu = thread_cpu_ns();
        while (!l->exiting) {
                uint64_t wake = loop_arm_wake(l), asleep = now_ns(), woke, until, slowest = 0;
                const void *culprit = NULL;
                int n;

                heartbeat_sleep(&l->hb, wake == NO_DEADLINE ? UINT64_MAX : wake);
                n = epoll_wait(l->epfd, evs, MAX_EVENTS, -1);
                heartbeat_awake(&l->hb);
                if (n < 0) {
                        /* A stopped process resumed by SIGCONT sees EINTR here (signal(7)) */
                        if (errno != EINTR)
                                return negative_errno();
                        n = 0;
                }
                woke = now_ns();
                /* asleep as planned until min(woke, wake); later than wake is lateness */
                until = wake < woke ? wake : woke;
                loop_account(l, wake != NO_DEADLINE && woke > wake ? woke - wake : 0,
                             until > asleep ? until - asleep : 0, NULL);
                for (int i = 0; i < n; i++) {
                        int fd = (int) (uint32_t) evs[i].data.u64;
                        uint32_t gen = (uint32_t) (evs[i].data.u64 >> 32);
                        struct io_slot *s;
                        void *data;
                        uint64_t t;

                        if ((size_t) fd >= l->n_slots)
                                continue;
                        s = &l->slots[fd];
                        if (!s->used || s->gen != gen)
                                continue; /* removed or reused during this batch */
                        data = s->data;   /* s moves if the callback adds an fd */
                        t = now_ns();
                        s->fn(l, fd, evs[i].events, data);
                        if ((t = now_ns() - t) > slowest) {
                                slowest = t;
                                culprit = data; /* whose handler held the loop longest */
                        }
                }
                /* the callbacks' span: past the earliest timer, or the wake-up it planned,
                 * is lateness (checked before a timer fires, or a deadline would end an
                 * attempt whose answer is waiting unread) */
                {
                        uint64_t now = now_ns(), due = l->heap_len > 0 ? l->heap[0]->when_ns : NO_DEADLINE;
                        if (wake < due)
                                due = wake;
                        loop_account(l, due < now ? now - due : 0, 0, culprit);
                }
                timers_run(l);
                if (l->hooks.iteration)
                        l->hooks.iteration(l, l->hooks.data);
                heartbeat_beat(&l->hb, woke);
        }
        l->exiting = false; /* loop_run may be called again (tests step the loop) */
        return 0;
}
