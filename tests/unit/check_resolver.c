/* Unit tests of the resolver (daemon/resolver.c) on a real loop, against a DNS server
 * played by the test itself: a UDP socket on 127.0.0.1 that reads c-ares's real queries
 * and answers them (or not) when the test says so. The TTL floor and cap, the cache
 * serving a second lookup without a query, a refresh after expiry shared by two waiters,
 * "no such host" kept 1 s, and a waiter cancelled while its query is in flight; then the
 * same through the lifecycle: an attempt whose lookup outlives it (its timeout) is never
 * called back, and the next attempt takes the answer from the cache. */
#include <arpa/inet.h>
#include <check.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "config.h"
#include "daemon.h"
#include "log.h"
#include "loop.h"
#include "loop_step.h"
#include "probe.h"
#include "resolver.h"
#include "snapshot.h"
#include "util.h"

static struct loop *loop;
static struct resolver *res;
static int srv = -1;     /* the test's DNS server */
static char servers[64]; /* its "127.0.0.1:PORT" */

struct waiter {
        struct resolver_wait w; /* first */
        int calls;
        int status;
        char addr[INET6_ADDRSTRLEN];
};

static void waiter_fn(struct resolver_wait *w, const struct resolver_result *r)
{
        struct waiter *x = (struct waiter *) w;

        x->calls++;
        x->status = r->status;
        x->addr[0] = '\0';
        if (r->status == 0 && r->addrs->n > 0 && r->addrs->a[0].sa.sa_family == AF_INET)
                inet_ntop(AF_INET, &r->addrs->a[0].in4.sin_addr, x->addr, sizeof(x->addr));
}

static void setup(void)
{
        struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        socklen_t len = sizeof(a);

        log_setup(LOG_LEVEL_ERROR, LOG_FORMAT_JSON);
        loop = loop_new(NULL, 0, NULL);
        ck_assert_ptr_nonnull(loop);
        srv = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        ck_assert_int_ge(srv, 0);
        ck_assert_int_eq(bind(srv, (struct sockaddr *) &a, sizeof(a)), 0);
        ck_assert_int_eq(getsockname(srv, (struct sockaddr *) &a, &len), 0);
        snprintf(servers, sizeof(servers), "127.0.0.1:%u", (unsigned) ntohs(a.sin_port));
        res = resolver_new(loop, servers, NULL);
        ck_assert_ptr_nonnull(res);
}

static void teardown(void)
{
        res = resolver_free(res);
        loop = loop_free(loop);
        close(srv);
}

/* ---- the test's DNS server ---------------------------------------------------------- */

struct query {
        uint8_t buf[512];
        size_t len, qend; /* the end of the question */
        uint16_t qtype;
        struct sockaddr_in from;
};

/* The next query, within ms; false when none came. */
static bool srv_recv(struct query *q, int ms)
{
        struct pollfd p = { .fd = srv, .events = POLLIN };
        socklen_t fl = sizeof(q->from);
        ssize_t n;
        size_t i = 12;

        if (poll(&p, 1, ms) != 1)
                return false;
        n = recvfrom(srv, q->buf, sizeof(q->buf), 0, (struct sockaddr *) &q->from, &fl);
        ck_assert_int_gt(n, 12);
        q->len = (size_t) n;
        while (i < q->len && q->buf[i])
                i += q->buf[i] + 1u;
        ck_assert_uint_le(i + 5, q->len);
        q->qtype = (uint16_t) (q->buf[i + 1] << 8 | q->buf[i + 2]);
        q->qend = i + 5;
        return true;
}

/* Answers q: rcode (0, or 3 NXDOMAIN); an A query with addr (when not NULL) and ttl, an
 * AAAA query with no record (NODATA). */
static void srv_answer(const struct query *q, int rcode, const char *addr, uint32_t ttl)
{
        uint8_t out[600];
        size_t n = q->qend;
        bool answer = rcode == 0 && addr && q->qtype == 1;

        memcpy(out, q->buf, q->qend);
        out[2] = 0x81; /* QR, RD */
        out[3] = (uint8_t) (0x80 | rcode);
        out[6] = 0;
        out[7] = answer ? 1 : 0;
        out[8] = out[9] = out[10] = out[11] = 0;
        if (answer) {
                const uint8_t rr[] = { 0xc0,
                                       0x0c,
                                       0,
                                       1,
                                       0,
                                       1,
                                       (uint8_t) (ttl >> 24),
                                       (uint8_t) (ttl >> 16),
                                       (uint8_t) (ttl >> 8),
                                       (uint8_t) ttl,
                                       0,
                                       4 };
                memcpy(out + n, rr, sizeof(rr));
                n += sizeof(rr);
                ck_assert_int_eq(inet_pton(AF_INET, addr, out + n), 1);
                n += 4;
        }
        ck_assert_int_eq(sendto(srv, out, n, 0, (const struct sockaddr *) &q->from, sizeof(q->from)), (ssize_t) n);
}

/* Reads the A and AAAA queries of one lookup and answers both. */
static void srv_serve(int rcode, const char *addr, uint32_t ttl)
{
        struct query q;

        for (int i = 0; i < 2; i++) {
                ck_assert_msg(srv_recv(&q, 2000), "no query came");
                srv_answer(&q, rcode, addr, ttl);
        }
}

/* ---- stepping the loop --------------------------------------------------------------- */

static void run_until(bool (*pred)(void))
{
        loop_run_until(loop, pred, NULL);
}

static struct waiter w1, w2;
static bool w1_called(void)
{
        return w1.calls > 0;
}
static bool both_called(void)
{
        return w1.calls > 0 && w2.calls > 0;
}
static bool db_cached(void)
{
        return resolver_cached_until(res, "db.test") > now_ns();
}

static bool other_cached(void)
{
        return resolver_cached_until(res, "other.test") > now_ns();
}

static int lookup(struct waiter *w, const char *host, struct resolver_result *r)
{
        memset(w, 0, sizeof(*w));
        w->w.fn = waiter_fn;
        return resolver_lookup(res, host, NULL, &w->w, r);
}

/* ---- tests ----------------------------------------------------------------------------- */

START_TEST(test_ttl_clamp)
{
        ck_assert_uint_eq(resolver_ttl_clamp(-5), 1);
        ck_assert_uint_eq(resolver_ttl_clamp(0), 1);
        ck_assert_uint_eq(resolver_ttl_clamp(1), 1);
        ck_assert_uint_eq(resolver_ttl_clamp(30), 30);
        ck_assert_uint_eq(resolver_ttl_clamp(60), 60);
        ck_assert_uint_eq(resolver_ttl_clamp(86400), 60);
}
END_TEST

START_TEST(test_literal_skips_dns)
{
        struct resolver_result r;
        struct query q;

        ck_assert_int_eq(lookup(&w1, "127.0.0.1", &r), 1);
        ck_assert_int_eq(r.status, 0);
        ck_assert_uint_eq(r.addrs->n, 1);
        ck_assert_int_eq(lookup(&w1, "::1", &r), 1);
        ck_assert_int_eq(r.addrs->a[0].sa.sa_family, AF_INET6);
        ck_assert(!srv_recv(&q, 50));
}
END_TEST

/* TTL 0 is kept 1 s: a second lookup within it asks nothing; after it, a new query. */
START_TEST(test_ttl_floor)
{
        struct resolver_result r;
        struct query q;
        uint64_t until;

        ck_assert_int_eq(lookup(&w1, "db.test", &r), 0);
        srv_serve(0, "10.0.0.1", 0);
        run_until(w1_called);
        ck_assert_int_eq(w1.status, 0);
        ck_assert_str_eq(w1.addr, "10.0.0.1");
        until = resolver_cached_until(res, "db.test");
        ck_assert_uint_gt(until, now_ns() + 500 * NSEC_PER_MSEC);
        ck_assert_uint_le(until, now_ns() + NSEC_PER_SEC);
        ck_assert_int_eq(lookup(&w2, "db.test", &r), 1); /* from the cache */
        ck_assert_int_eq(r.status, 0);
        ck_assert(!srv_recv(&q, 50));
        while (now_ns() < until)
                usleep(10000);
        ck_assert_int_eq(lookup(&w2, "db.test", &r), 0); /* expired: asked again */
        ck_assert(srv_recv(&q, 2000));
}
END_TEST

START_TEST(test_ttl_cap)
{
        struct resolver_result r;
        uint64_t until;

        ck_assert_int_eq(lookup(&w1, "db.test", &r), 0);
        srv_serve(0, "10.0.0.1", 86400);
        run_until(w1_called);
        until = resolver_cached_until(res, "db.test");
        ck_assert_uint_le(until, now_ns() + 60 * NSEC_PER_SEC);
        ck_assert_uint_gt(until, now_ns() + 59 * NSEC_PER_SEC);
}
END_TEST

/* The entry expires; two lookups while its refresh is in flight share one query (one A and
 * one AAAA at the server), and both get the new address, not the expired one. */
START_TEST(test_expiry_while_waiting)
{
        struct resolver_result r;
        struct query q;

        ck_assert_int_eq(lookup(&w1, "db.test", &r), 0);
        srv_serve(0, "10.0.0.1", 1);
        run_until(w1_called);
        while (db_cached())
                usleep(10000);
        ck_assert_int_eq(lookup(&w1, "db.test", &r), 0);
        ck_assert_int_eq(lookup(&w2, "db.test", &r), 0); /* joins the refresh */
        srv_serve(0, "10.0.0.2", 30);
        ck_assert(!srv_recv(&q, 50)); /* no second query */
        run_until(both_called);
        ck_assert_str_eq(w1.addr, "10.0.0.2");
        ck_assert_str_eq(w2.addr, "10.0.0.2");
        ck_assert_int_eq(w1.calls + w2.calls, 2);
}
END_TEST

START_TEST(test_no_such_host_kept_one_second)
{
        struct resolver_result r;
        struct query q;

        ck_assert_int_eq(lookup(&w1, "gone.test", &r), 0);
        srv_serve(3, NULL, 0);
        run_until(w1_called);
        ck_assert_int_eq(w1.status, -ENOENT);
        ck_assert_int_eq(lookup(&w2, "gone.test", &r), 1);
        ck_assert_int_eq(r.status, -ENOENT);
        ck_assert_str_eq(r.reason, "no such host");
        ck_assert(!srv_recv(&q, 50));
}
END_TEST

/* A waiter cancelled while its query is in flight is never called; the answer still
 * fills the cache, and the other waiter of the same query gets it. */
START_TEST(test_cancel_during_lookup)
{
        struct resolver_result r;

        ck_assert_int_eq(lookup(&w1, "db.test", &r), 0);
        ck_assert_int_eq(lookup(&w2, "db.test", &r), 0);
        resolver_wait_cancel(&w1.w);
        resolver_wait_cancel(&w1.w); /* idempotent */
        srv_serve(0, "10.0.0.3", 30);
        run_until(db_cached);
        ck_assert_int_eq(w1.calls, 0);
        ck_assert_int_eq(w2.calls, 1);
        ck_assert_str_eq(w2.addr, "10.0.0.3");
        /* the only waiter cancelled: the answer lands in the cache all the same */
        ck_assert_int_eq(lookup(&w1, "other.test", &r), 0);
        resolver_wait_cancel(&w1.w);
        {
                struct query q;
                for (int i = 0; i < 2; i++) {
                        ck_assert(srv_recv(&q, 2000));
                        srv_answer(&q, 0, "10.0.0.4", 30);
                }
        }
        run_until(other_cached);
        ck_assert_int_eq(w1.calls, 0);
        ck_assert_int_eq(lookup(&w2, "other.test", &r), 1);
        ck_assert_int_eq(r.status, 0);
}
END_TEST

/* Freed with a query in flight whose waiter was cancelled: nothing leaks, nothing runs. */
START_TEST(test_free_with_query_in_flight)
{
        struct resolver_result r;

        ck_assert_int_eq(lookup(&w1, "db.test", &r), 0);
        resolver_wait_cancel(&w1.w);
        res = resolver_free(res);
        ck_assert_int_eq(w1.calls, 0);
}
END_TEST

/* ---- through the lifecycle: a kind that resolves "db.test" ------------------------- */

static int marker, starts, cancels, resolved;
static struct snapshot *latest;

static void kind_on_resolved(struct attempt *a, const struct addr_list *addrs)
{
        ck_assert_ptr_eq(a->data, &marker); /* never after the attempt ended */
        ck_assert_uint_eq(addrs->n, 1);
        ck_assert_uint_eq(ntohs(addrs->a[0].in4.sin_port), 80); /* the port set */
        resolved++;
        attempt_end(a, OUTCOME_SUCCESS, "resolved");
}

static int kind_start(struct attempt *a, const void *spec, uint64_t timeout_ms)
{
        (void) spec;
        (void) timeout_ms;
        a->data = &marker;
        starts++;
        return attempt_resolve(a, "db.test", 80, NULL, kind_on_resolved);
}

static void kind_cancel(struct attempt *a)
{
        a->data = NULL;
        cancels++;
}

static void kind_free_spec(void *spec)
{
        (void) spec;
}

static const struct probe_ops kind_ops = {
        .type = "resolving",
        .start = kind_start,
        .cancel = kind_cancel,
        .free_spec = kind_free_spec,
};

static void on_publish(struct snapshot *snap, void *data)
{
        (void) data;
        snapshot_unref(latest);
        latest = snap;
}

static bool one_timeout(void)
{
        return latest && latest->probes[0]->timeouts >= 1;
}
static bool one_success(void)
{
        return latest && latest->probes[0]->successes >= 1;
}

/* The first attempt's lookup gets no answer within its 100 ms timeout: it ends as a
 * timeout, its wait released. The answer then arrives: it fills the cache and calls no
 * one. The second attempt resolves from the cache, at once. */
START_TEST(test_attempt_ends_during_its_lookup)
{
        struct config *c = calloc(1, sizeof(*c));
        struct daemon *d;
        struct query q[2];
        char addr[64];
        union sockaddr_any la;

        ck_assert_ptr_nonnull(c);
        c->listen = strdup("127.0.0.1:0");
        c->resolver = strdup(servers);
        c->stall_threshold_ms = 300;
        c->backoff_initial_ms = 20;
        c->backoff_max_ms = 80;
        c->n_probes = 1;
        c->probes = calloc(1, sizeof(*c->probes));
        c->probes[0] = (struct probe_config){
                .name = strdup("p"),
                .ops = &kind_ops,
                .scopes = SCOPE_ALL,
                .timing = { .period_ms = 400,
                            .timeout_ms = 100,
                            .startup_period_ms = 400,
                            .success_threshold = 1,
                            .failure_threshold = 3 },
                .target = strdup("db.test:80"),
        };
        starts = cancels = resolved = 0;
        latest = NULL;
        d = daemon_new(loop, c, &(struct daemon_options){ .publish = on_publish });
        ck_assert_ptr_nonnull(d);
        daemon_start(d);
        run_until(one_timeout);
        ck_assert_str_eq(latest->probes[0]->last_error, "timeout: no DNS answer within 100ms");
        ck_assert_int_eq(starts, 1);
        ck_assert_int_eq(cancels, 1);
        /* the first attempt's queries, answered late */
        for (int i = 0; i < 2; i++) {
                ck_assert(srv_recv(&q[i], 2000));
                srv_answer(&q[i], 0, "10.0.0.7", 30);
        }
        run_until(one_success); /* the second attempt, from the cache */
        ck_assert_int_eq(resolved, 1);
        ck_assert_int_eq(starts, 2);
        ck_assert_int_eq(cancels, 2);
        ck_assert(probe_view_address(latest->probes[0], &la));
        ck_assert_str_eq(address_format(&la, addr, sizeof(addr)), "10.0.0.7:80");
        ck_assert(!srv_recv(&q[0], 50)); /* no query for the second attempt */
        daemon_free(d);
        latest = snapshot_unref(latest);
}
END_TEST

static Suite *resolver_suite(void)
{
        Suite *s = suite_create("resolver");
        TCase *tc = tcase_create("cache");

        tcase_add_checked_fixture(tc, setup, teardown);
        tcase_set_timeout(tc, 10);
        tcase_add_test(tc, test_ttl_clamp);
        tcase_add_test(tc, test_literal_skips_dns);
        tcase_add_test(tc, test_ttl_floor);
        tcase_add_test(tc, test_ttl_cap);
        tcase_add_test(tc, test_expiry_while_waiting);
        tcase_add_test(tc, test_no_such_host_kept_one_second);
        tcase_add_test(tc, test_cancel_during_lookup);
        tcase_add_test(tc, test_free_with_query_in_flight);
        suite_add_tcase(s, tc);

        tc = tcase_create("attempt");
        tcase_add_checked_fixture(tc, setup, teardown);
        tcase_set_timeout(tc, 10);
        tcase_add_test(tc, test_attempt_ends_during_its_lookup);
        suite_add_tcase(s, tc);
        return s;
}

int main(void)
{
        SRunner *sr = srunner_create(resolver_suite());
        int failed;

        srunner_run_all(sr, CK_NORMAL);
        failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
