/* Unit tests of the probe lifecycle (daemon/daemon.c) on a real loop, with a probe kind
 * whose attempts end when the test says so: thresholds, aggregates, the five outcomes,
 * cancel racing completion in both orders, backoff, shutdown (also during backoff) and a
 * real stall (the test process is frozen with SIGSTOP by a child, then resumed). */
#include <check.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bounds.h"
#include "daemon.h"
#include "log.h"
#include "loop.h"
#include "loop_step.h"
#include "probe.h"
#include "util.h"

static int marker;
static struct attempt *running; /* the attempt the manual kind holds, or NULL */
static int starts, start_calls, cancels, start_rc;
static uint64_t drain_ms;
static size_t n_probes = 1; /* probes start_daemon makes, all alike */
static struct snapshot *latest;

static int manual_start(struct attempt *a, const void *spec, uint64_t timeout_ms)
{
        (void) spec;
        (void) timeout_ms;
        start_calls++;
        if (start_rc)
                return start_rc;
        ck_assert_ptr_null(a->data);
        a->data = &marker;
        running = a;
        starts++;
        return 0;
}

static void manual_cancel(struct attempt *a)
{
        ck_assert_ptr_eq(a->data, &marker); /* released exactly once, never after free */
        a->data = NULL;
        running = NULL;
        cancels++;
}

static void manual_free_spec(void *spec)
{
        free(spec);
}

static const struct probe_ops manual_ops = {
        .type = "manual",
        .start = manual_start,
        .cancel = manual_cancel,
        .free_spec = manual_free_spec,
};

/* A kind whose attempt reads a pipe it wrote to: the fd callback ends the attempt, then
 * still uses its state (valid until the callback returns); the pipe stays readable, so a
 * registration that outlived its attempt would be called again. */
struct pipe_state {
        int fds[2];
        bool ended_in_callback;
};
static int pipe_calls, pipe_cancels, pipe_cancels_unread;

static void pipe_on_io(struct attempt *a, int fd, uint32_t events)
{
        struct pipe_state *ps = a->data;

        (void) fd;
        (void) events;
        pipe_calls++;
        attempt_end(a, OUTCOME_SUCCESS, "read");
        ck_assert_ptr_eq(a->data, ps); /* released only once the callback returned */
        ps->ended_in_callback = true;
}

static int pipe_start(struct attempt *a, const void *spec, uint64_t timeout_ms)
{
        struct pipe_state *ps = calloc(1, sizeof(*ps));

        (void) spec;
        (void) timeout_ms;
        ck_assert_ptr_nonnull(ps);
        ck_assert_int_eq(pipe(ps->fds), 0);
        ck_assert_int_eq(write(ps->fds[1], "x", 1), 1);
        a->data = ps;
        starts++;
        return attempt_io_add(a, ps->fds[0], EPOLLIN, pipe_on_io);
}

static void pipe_cancel(struct attempt *a)
{
        struct pipe_state *ps = a->data;

        /* an attempt in flight when the test stops the loop is cancelled at teardown,
         * before its callback ran: counted apart */
        if (ps->ended_in_callback)
                pipe_cancels++;
        else
                pipe_cancels_unread++;
        close(ps->fds[0]);
        close(ps->fds[1]);
        free(ps);
        a->data = NULL;
}

static const struct probe_ops pipe_ops = {
        .type = "pipe",
        .start = pipe_start,
        .cancel = pipe_cancel,
        .free_spec = manual_free_spec,
};
static const struct probe_ops *kind_ops = &manual_ops;

static struct loop *loop;
static struct daemon *daemon_;

static void on_publish(struct snapshot *s, void *data)
{
        (void) data;
        snapshot_unref(latest);
        latest = s;
}

static const int sigs[] = { SIGTERM, SIGINT, SIGHUP, SIGUSR1 };

static void setup(void)
{
        sigset_t mask;

        sigemptyset(&mask);
        for (size_t i = 0; i < ELEMENTSOF(sigs); i++)
                sigaddset(&mask, sigs[i]);
        sigprocmask(SIG_BLOCK, &mask, NULL);
        log_setup(LOG_LEVEL_ERROR, LOG_FORMAT_JSON); /* keep test output readable */
        curl_global_init(CURL_GLOBAL_DEFAULT);
        loop = loop_new(sigs, ELEMENTSOF(sigs), NULL);
        ck_assert_ptr_nonnull(loop);
        running = NULL;
        starts = start_calls = cancels = start_rc = 0;
        drain_ms = 0;
        n_probes = 1;
        latest = NULL;
        kind_ops = &manual_ops;
        pipe_calls = pipe_cancels = pipe_cancels_unread = 0;
}

static void teardown(void)
{
        daemon_ = daemon_free(daemon_);
        latest = snapshot_unref(latest);
        loop = loop_free(loop);
        curl_global_cleanup();
}

/* One probe of the manual kind with these thresholds and scopes. */
static void start_daemon(unsigned scopes, unsigned succ, unsigned fail, uint64_t timeout_ms)
{
        struct config *c = calloc(1, sizeof(*c));

        ck_assert_ptr_nonnull(c);
        c->listen = strdup("127.0.0.1:0");
        c->stall_threshold_ms = 300;
        c->drain_ms = drain_ms;
        c->backoff_initial_ms = 20;
        c->backoff_max_ms = 80;
        c->n_probes = n_probes;
        c->probes = calloc(n_probes, sizeof(*c->probes));
        for (size_t i = 0; i < n_probes; i++)
                c->probes[i] = (struct probe_config){
                        .name = strdup_printf("p%zu", i),
                        .ops = kind_ops,
                        .scopes = scopes,
                        .timing = { .period_ms = 10,
                                    .timeout_ms = timeout_ms,
                                    .startup_period_ms = 10,
                                    .success_threshold = succ,
                                    .failure_threshold = fail },
                        .target = strdup("manual"),
                };
        daemon_ = daemon_new(loop, c, &(struct daemon_options){ .publish = on_publish });
        ck_assert_ptr_nonnull(daemon_);
        daemon_start(daemon_);
}

static long freeze_pending_ms; /* freeze_ms: a freeze the next tick starts */
static pid_t freeze_child = -1;
static pid_t freezer_fork(long ms);

static void freeze_tick(void)
{
        if (freeze_pending_ms > 0) {
                freeze_child = freezer_fork(freeze_pending_ms);
                freeze_pending_ms = 0;
        }
}

/* Steps the loop until pred() holds; fails the test after 5 s. */
static void run_until(bool (*pred)(void))
{
        loop_run_until(loop, pred, freeze_tick);
}

static bool attempt_running(void)
{
        return running != NULL;
}

/* Ends the running attempt with o and waits for the next one to start. */
static void step(enum outcome o)
{
        run_until(attempt_running);
        attempt_end(running, o, "step");
}

static const struct probe_view *view(void)
{
        return latest->probes[0];
}

/* Waits until the published snapshot shows `n` ended attempts. */
static uint64_t want_attempts;
static bool attempts_published(void)
{
        return latest && latest->probes[0]->attempts >= want_attempts;
}
static void sync_attempts(uint64_t n)
{
        want_attempts = n;
        run_until(attempts_published);
}

START_TEST(test_success_threshold)
{
        start_daemon(SCOPE_ALL, 2, 3, 1000);
        step(OUTCOME_SUCCESS);
        sync_attempts(1);
        ck_assert_int_eq(view()->healthy, -1);
        ck_assert(!latest->started);
        ck_assert(latest->live); /* live until started */
        step(OUTCOME_SUCCESS);
        sync_attempts(2);
        ck_assert_int_eq(view()->healthy, 1);
        ck_assert(latest->started && latest->live && latest->ready);
        ck_assert_uint_eq(view()->consecutive_successes, 2);
}
END_TEST

START_TEST(test_failure_threshold_and_latch)
{
        start_daemon(SCOPE_ALL, 1, 3, 1000);
        step(OUTCOME_SUCCESS);
        step(OUTCOME_FAILURE);
        step(OUTCOME_FAILURE);
        sync_attempts(3);
        ck_assert_int_eq(view()->healthy, 1); /* 2 failures < threshold 3 */
        step(OUTCOME_FAILURE);
        sync_attempts(4);
        ck_assert_int_eq(view()->healthy, 0);
        ck_assert(latest->started); /* latched */
        ck_assert(!latest->live);
        ck_assert(!latest->ready);
        ck_assert_uint_eq(view()->failures, 3);
        ck_assert_str_eq(view()->last_error, "step");
        step(OUTCOME_SUCCESS);
        sync_attempts(5);
        ck_assert_int_eq(view()->healthy, 1);
        ck_assert(latest->live && latest->ready);
}
END_TEST

START_TEST(test_readiness_only_probe_does_not_affect_live)
{
        start_daemon(SCOPE_READINESS, 1, 1, 1000);
        run_until(attempt_running);
        ck_assert_ptr_nonnull(latest);
        ck_assert(latest->started); /* no startup-scope probe: started at once */
        ck_assert(!latest->ready);  /* unknown is not ready */
        step(OUTCOME_FAILURE);
        sync_attempts(1);
        ck_assert(latest->live);
        ck_assert(!latest->ready);
}
END_TEST

START_TEST(test_timeout_counts_as_failure_not_in_failures)
{
        start_daemon(SCOPE_ALL, 1, 1, 30);
        run_until(attempt_running);
        sync_attempts(1); /* the deadline ends it */
        ck_assert_uint_eq(view()->timeouts, 1);
        ck_assert_uint_eq(view()->failures, 0);
        ck_assert_int_eq(view()->healthy, 0);
        ck_assert_int_eq(view()->last_outcome, OUTCOME_TIMEOUT);
        ck_assert_int_eq(cancels, 1);
}
END_TEST

START_TEST(test_cancel_then_completion_is_one_cancelled)
{
        start_daemon(SCOPE_ALL, 1, 1, 1000);
        run_until(attempt_running);
        struct attempt *a = running;
        attempt_end(a, OUTCOME_CANCELLED, "cancelled");
        attempt_end(a, OUTCOME_SUCCESS, "late completion"); /* must be ignored */
        attempt_end(a, OUTCOME_FAILURE, "late failure");    /* must be ignored */
        ck_assert_int_eq(cancels, 1);
        sync_attempts(1);
        ck_assert_uint_eq(view()->cancellations, 1);
        ck_assert_uint_eq(view()->successes + view()->failures, 0);
        ck_assert_int_eq(view()->healthy, -1);
}
END_TEST

START_TEST(test_completion_then_cancel_is_one_success)
{
        start_daemon(SCOPE_ALL, 1, 1, 1000);
        run_until(attempt_running);
        struct attempt *a = running;
        uint64_t id = a->id;
        attempt_end(a, OUTCOME_SUCCESS, "ok");
        attempt_end(a, OUTCOME_CANCELLED, "too late");
        ck_assert_int_eq(cancels, 1);
        sync_attempts(1);
        ck_assert_uint_eq(view()->successes, 1);
        ck_assert_uint_eq(view()->cancellations, 0);
        ck_assert_int_eq(view()->healthy, 1);
        run_until(attempt_running); /* the next attempt is a new generation */
        ck_assert_uint_gt(running->id, id);
}
END_TEST

START_TEST(test_cancelled_never_touches_health)
{
        start_daemon(SCOPE_ALL, 1, 1, 1000);
        step(OUTCOME_SUCCESS);
        sync_attempts(1);
        /* a cancelled attempt: counted as a cancellation only */
        run_until(attempt_running);
        attempt_end(running, OUTCOME_CANCELLED, "cancelled");
        ck_assert_int_eq(cancels, 2);
        sync_attempts(2);
        ck_assert_uint_eq(view()->cancellations, 1);
        ck_assert_uint_eq(view()->successes, 1);
        ck_assert_uint_eq(view()->failures + view()->timeouts, 0);
        ck_assert_uint_eq(view()->consecutive_successes, 1);
        ck_assert_int_eq(view()->healthy, 1);
}
END_TEST

static bool restarted_twice(void)
{
        return latest && latest->probes[0]->restarts >= 2;
}

START_TEST(test_error_backs_off_and_keeps_health)
{
        start_daemon(SCOPE_ALL, 1, 1, 1000);
        step(OUTCOME_SUCCESS);
        sync_attempts(1);
        start_rc = -EMFILE;
        run_until(restarted_twice);
        ck_assert_uint_ge(view()->errors, 2);
        ck_assert_int_eq(view()->healthy, 1); /* the target's health is untouched */
        ck_assert_uint_eq(view()->failures, 0);
        ck_assert_msg(strstr(view()->last_error, "Too many open files"), "last_error: %s", view()->last_error);
        start_rc = 0;
        step(OUTCOME_SUCCESS);
        ck_assert_int_eq(view()->healthy, 1);
}
END_TEST

static bool draining(void)
{
        return latest && latest->draining;
}

START_TEST(test_sigterm_cancels_and_nothing_restarts)
{
        start_daemon(SCOPE_ALL, 1, 1, 60000);
        run_until(attempt_running);
        kill(getpid(), SIGTERM);
        ck_assert_int_eq(loop_run(loop), 0); /* drain 0: exits by itself */
        ck_assert_ptr_null(running);
        ck_assert_int_eq(cancels, 1);
        ck_assert(draining());
        ck_assert(!latest->ready);
        ck_assert_uint_eq(view()->cancellations, 1);
        ck_assert_int_eq(view()->state, PROBE_STOPPED);
        ck_assert_int_eq(starts, 1);
}
END_TEST

static bool in_backoff(void)
{
        return latest && latest->probes[0]->state == PROBE_BACKOFF;
}

START_TEST(test_sigterm_during_backoff)
{
        drain_ms = 300; /* the loop keeps running past several backoff periods */
        start_daemon(SCOPE_ALL, 1, 1, 1000);
        start_rc = -ENOMEM;
        run_until(in_backoff);
        kill(getpid(), SIGTERM);
        int calls = start_calls;
        ck_assert_int_eq(loop_run(loop), 0);
        ck_assert_int_eq(start_calls, calls); /* no restart after shutdown began */
        ck_assert_int_eq(view()->state, PROBE_STOPPED);
}
END_TEST

static bool stalled(void)
{
        return latest && latest->stalls > 0 && running;
}

/* Freezes this process for ms: SIGSTOP from a child, SIGCONT after ms. */
static pid_t freezer_fork(long ms)
{
        pid_t parent = getpid(), child = fork();

        ck_assert_int_ge(child, 0);
        if (child == 0) {
                struct timespec freeze = { ms / 1000, (ms % 1000) * 1000000L };
                kill(parent, SIGSTOP);
                nanosleep(&freeze, NULL); /* the freeze being simulated */
                kill(parent, SIGCONT);
                _exit(0);
        }
        return child;
}

/* Freezes this process for ms while the loop runs (the child is forked from the
 * stepper's first tick: a stop before loop_run would be no stall of the loop's) and
 * runs the loop until the stall is published. */
static void freeze_ms(long ms)
{
        freeze_pending_ms = ms;
        run_until(stalled);
        ck_assert_int_gt(freeze_child, 0);
        waitpid(freeze_child, NULL, 0);
        freeze_child = -1;
}

/* A freeze longer than the attempt's timeout: the attempt keeps running (its deadline
 * moved by the frozen span), nothing is cancelled, re-run or timed out. */
START_TEST(test_stall_moves_deadline)
{
        start_daemon(SCOPE_ALL, 1, 1, 600);
        step(OUTCOME_SUCCESS);
        run_until(attempt_running);
        int starts_before = starts;
        struct attempt *a = running;
        freeze_ms(1000);
        ck_assert_uint_ge(latest->stalls, 1);
        ck_assert_ptr_eq(running, a); /* the same attempt, still in flight */
        ck_assert_int_eq(starts, starts_before);
        attempt_end(running, OUTCOME_SUCCESS, "answer read after the thaw");
        sync_attempts(2);
        ck_assert_uint_eq(view()->cancellations + view()->failures + view()->timeouts, 0);
        ck_assert_int_eq(view()->healthy, 1);
}
END_TEST

/* A failure of an attempt in flight across a stall is cancelled and re-run once; the
 * re-run's failure counts. */
START_TEST(test_failure_across_stall_reruns_once)
{
        start_daemon(SCOPE_ALL, 1, 1, 5000);
        step(OUTCOME_SUCCESS);
        run_until(attempt_running);
        int starts_before = starts;
        freeze_ms(700);
        attempt_end(running, OUTCOME_FAILURE, "reset while frozen");
        run_until(attempt_running);
        ck_assert_int_eq(starts, starts_before + 1); /* re-run at once */
        sync_attempts(2);
        ck_assert_uint_eq(view()->cancellations, 1);
        ck_assert_uint_eq(view()->failures, 0);
        ck_assert_int_eq(view()->healthy, 1);
        attempt_end(running, OUTCOME_FAILURE, "refused");
        sync_attempts(3);
        ck_assert_uint_eq(view()->failures, 1);
        ck_assert_int_eq(view()->healthy, 0);
}
END_TEST

static bool three_pipe_attempts(void)
{
        return latest && latest->probes[0]->successes >= 3;
}

/* An attempt ended from its own fd callback: the kind's state lives until the callback
 * returns, then the lifecycle deregisters the fd and calls cancel once; the still
 * readable pipe is never delivered to the ended attempt. */
START_TEST(test_end_in_callback_releases_after_it)
{
        kind_ops = &pipe_ops;
        start_daemon(SCOPE_ALL, 1, 1, 1000);
        run_until(three_pipe_attempts);
        ck_assert_int_ge(pipe_calls, (int) latest->probes[0]->successes);
        ck_assert_int_le(pipe_calls, starts);       /* once per attempt, never after it ended */
        ck_assert_int_eq(pipe_cancels, pipe_calls); /* each released once, after its callback */
        ck_assert_int_eq(pipe_cancels_unread, 0);   /* none released before it */
        ck_assert_uint_eq(latest->probes[0]->failures + latest->probes[0]->cancellations, 0);
}
END_TEST

static bool all_slots_taken(void)
{
        return starts >= MAX_INFLIGHT_ATTEMPTS;
}

static int starts_then;
static bool one_more_started(void)
{
        return starts > starts_then;
}

START_TEST(test_inflight_attempts_bounded)
{
        n_probes = MAX_INFLIGHT_ATTEMPTS + 5; /* attempts that never end on their own */
        start_daemon(SCOPE_READINESS, 1, 1, 60000);
        run_until(all_slots_taken);
        ck_assert_int_eq(starts, MAX_INFLIGHT_ATTEMPTS);
        /* the loop keeps turning: nobody else starts while every slot is taken */
        drain_ms = 0;
        starts_then = starts;
        attempt_end(running, OUTCOME_SUCCESS, "ok"); /* frees one slot */
        run_until(one_more_started);
        ck_assert_int_eq(starts, MAX_INFLIGHT_ATTEMPTS + 1);
}
END_TEST

static Suite *daemon_suite(void)
{
        Suite *s = suite_create("daemon");
        TCase *tc = tcase_create("thresholds");

        tcase_add_checked_fixture(tc, setup, teardown);
        tcase_set_timeout(tc, 10);
        tcase_add_test(tc, test_success_threshold);
        tcase_add_test(tc, test_failure_threshold_and_latch);
        tcase_add_test(tc, test_readiness_only_probe_does_not_affect_live);
        tcase_add_test(tc, test_timeout_counts_as_failure_not_in_failures);
        suite_add_tcase(s, tc);

        tc = tcase_create("outcomes");
        tcase_add_checked_fixture(tc, setup, teardown);
        tcase_set_timeout(tc, 10);
        tcase_add_test(tc, test_cancel_then_completion_is_one_cancelled);
        tcase_add_test(tc, test_completion_then_cancel_is_one_success);
        tcase_add_test(tc, test_cancelled_never_touches_health);
        tcase_add_test(tc, test_error_backs_off_and_keeps_health);
        tcase_add_test(tc, test_inflight_attempts_bounded);
        tcase_add_test(tc, test_end_in_callback_releases_after_it);
        suite_add_tcase(s, tc);

        tc = tcase_create("events");
        tcase_add_checked_fixture(tc, setup, teardown);
        tcase_set_timeout(tc, 15);
        tcase_add_test(tc, test_sigterm_cancels_and_nothing_restarts);
        tcase_add_test(tc, test_sigterm_during_backoff);
        tcase_add_test(tc, test_stall_moves_deadline);
        tcase_add_test(tc, test_failure_across_stall_reruns_once);
        suite_add_tcase(s, tc);
        return s;
}

int main(void)
{
        SRunner *sr = srunner_create(daemon_suite());
        int failed;

        srunner_run_all(sr, CK_NORMAL);
        failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
