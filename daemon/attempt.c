/* What an attempt holds (include/probe.h; docs/design.md, "The attempt lifecycle"): the
 * fds, the timer and the libcurl handle a kind registers on its attempt, each stamped
 * with the attempt's generation (a->id). Each event goes through a dispatch: delivered
 * only to the generation that registered it, and an attempt_end inside the kind's
 * callback only records the outcome, finished by the lifecycle (daemon.c,
 * attempt_finish: resources released, ops->cancel, outcome recorded) once the callback
 * returned. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "lifecycle.h"
#include "resolver.h"
#include "util.h"

/* The registrations of one attempt, each stamped with the generation (a->id) that made
 * it: taken when the attempt starts, given back to d->res_free once they are released
 * (as many blocks as attempts were ever in flight at once, no allocation per attempt). */
struct attempt_res {
        struct attempt_res *next_free; /* in d->res_free */
        struct {
                int fd; /* -1: free */
                uint64_t id;
                attempt_io_fn *fn;
        } io[ATTEMPT_MAX_IO];
        struct {
                struct timer t;
                uint64_t id;
                attempt_timer_fn *fn;
        } timer;
        struct {
                struct loop_curl lc;
                CURL *easy; /* NULL: free */
                uint64_t id;
                attempt_curl_fn *fn;
        } curl;
        struct {
                struct resolver_wait w; /* first: the wait leads back to its block */
                struct attempt *a;
                uint64_t id;
                attempt_resolve_fn *fn;
                const char *host; /* borrowed from the kind's spec */
                uint16_t port;
                const char *waiting_for; /* the kind's, back once the answer came */
        } dns;
        union sockaddr_any addr; /* attempt_set_address; family 0: none */
};

struct attempt_ending {
        bool outer; /* this dispatch finishes the attempt (not nested in another) */
        bool ended;
        enum outcome o;
        char reason[ERROR_MAX];
};

/* false: the event is not the running attempt's (an earlier generation, or it ended). */
static bool dispatch_begin(struct attempt *a, uint64_t id, struct attempt_ending *e)
{
        if (a->state != ATTEMPT_RUNNING || id != a->id)
                return false;
        e->ended = false;
        e->outer = !a->ending;
        if (e->outer)
                a->ending = e;
        return true;
}

static void dispatch_end(struct attempt *a, struct attempt_ending *e)
{
        if (!e->outer)
                return;
        a->ending = NULL;
        if (e->ended)
                attempt_finish(a, e->o, e->reason);
}

/* The index of fd's registration in a, or -1. */
static int attempt_io_find(const struct attempt *a, int fd)
{
        for (int i = 0; a->res && fd >= 0 && i < ATTEMPT_MAX_IO; i++)
                if (a->res->io[i].fd == fd)
                        return i;
        return -1;
}

static void attempt_on_io(struct loop *l, int fd, uint32_t events, void *data)
{
        struct attempt *a = data;
        struct attempt_ending e;
        int i = attempt_io_find(a, fd);

        (void) l;
        if (i < 0 || !dispatch_begin(a, a->res->io[i].id, &e))
                return;
        a->res->io[i].fn(a, fd, events);
        dispatch_end(a, &e);
}

static void attempt_on_timer(struct loop *l, void *data)
{
        struct attempt *a = data;
        struct attempt_ending e;

        (void) l;
        if (!dispatch_begin(a, a->res->timer.id, &e))
                return;
        a->res->timer.fn(a);
        dispatch_end(a, &e);
}

static void attempt_on_curl(struct loop *l, CURL *easy, CURLcode rc, void *data)
{
        struct attempt *a = data;
        struct attempt_ending e;

        (void) l;
        char *ip = NULL;
        long port = 0;
        union sockaddr_any addr;
        socklen_t len;

        if (a->res->curl.easy != easy || !dispatch_begin(a, a->res->curl.id, &e))
                return;
        /* the address libcurl used, whatever the kind (a failed connect may not have one) */
        if (curl_easy_getinfo(easy, CURLINFO_PRIMARY_IP, &ip) == CURLE_OK && ip && *ip &&
            curl_easy_getinfo(easy, CURLINFO_PRIMARY_PORT, &port) == CURLE_OK &&
            resolver_literal(ip, (uint16_t) port, &addr, &len))
                attempt_set_address(a, &addr);
        a->res->curl.fn(a, easy, rc);
        dispatch_end(a, &e);
}

/* The answer for the attempt's lookup: fn with the addresses, or the attempt ended the
 * one way every kind fails a name (README "Names"). Inside a dispatch. */
static void attempt_resolved(struct attempt *a, const struct resolver_result *res)
{
        struct addr_list addrs;

        if (res->status < 0) {
                attempt_end(a, resolver_errno_local(-res->status) ? OUTCOME_ERROR : OUTCOME_FAILURE, "dns: %s: %s",
                            a->res->dns.host, res->reason);
                return;
        }
        addrs = *res->addrs;
        addr_list_set_port(&addrs, a->res->dns.port);
        attempt_set_address(a, &addrs.a[0]);
        a->res->dns.fn(a, &addrs);
}

static void attempt_on_resolved(struct resolver_wait *w, const struct resolver_result *res)
{
        struct attempt *a = ((struct attempt_res *) ((char *) w - offsetof(struct attempt_res, dns.w)))->dns.a;
        struct attempt_ending e;

        if (!dispatch_begin(a, a->res->dns.id, &e))
                return;
        a->waiting_for = a->res->dns.waiting_for;
        attempt_resolved(a, res);
        dispatch_end(a, &e);
}

int attempt_resolve(struct attempt *a, const char *host, uint16_t port, const struct resolver_query *q,
                    attempt_resolve_fn *fn)
{
        struct resolver_result res;

        if (!a->res)
                return -ENOSPC;
        resolver_wait_cancel(&a->res->dns.w);
        a->res->dns.a = a;
        a->res->dns.id = a->id;
        a->res->dns.fn = fn;
        a->res->dns.host = host;
        a->res->dns.port = port;
        a->res->dns.w.fn = attempt_on_resolved;
        if (resolver_lookup(a->probe->d->resolver, host, q, &a->res->dns.w, &res) == 0) {
                a->res->dns.waiting_for = a->waiting_for;
                a->waiting_for = "DNS answer";
                return 0;
        }
        attempt_resolved(a, &res); /* known now: the caller is a dispatch (start or a callback) */
        return 0;
}

static struct attempt_res *attempt_res_new(struct attempt *a)
{
        struct daemon *d = a->probe->d;
        struct attempt_res *r = d->res_free;

        if (r)
                d->res_free = r->next_free;
        else if (!(r = malloc(sizeof(*r))))
                return NULL;
        for (size_t i = 0; i < ATTEMPT_MAX_IO; i++)
                r->io[i].fd = -1;
        timer_init(&r->timer.t, attempt_on_timer, a);
        r->curl.lc = (struct loop_curl){ .fn = attempt_on_curl, .data = a };
        r->curl.easy = NULL;
        r->dns.w = (struct resolver_wait){ .fn = attempt_on_resolved };
        r->addr.sa.sa_family = AF_UNSPEC;
        return r;
}

int attempt_io_add(struct attempt *a, int fd, uint32_t events, attempt_io_fn *fn)
{
        int i = 0, r;

        if (!a->res)
                return -ENOSPC; /* not running */
        while (i < ATTEMPT_MAX_IO && a->res->io[i].fd >= 0)
                i++;
        if (i == ATTEMPT_MAX_IO)
                return -ENOSPC;
        r = loop_io_add(a->loop, fd, events, attempt_on_io, a);
        if (r < 0)
                return r;
        a->res->io[i].fd = fd;
        a->res->io[i].id = a->id;
        a->res->io[i].fn = fn;
        return 0;
}

int attempt_io_mod(struct attempt *a, int fd, uint32_t events)
{
        return attempt_io_find(a, fd) >= 0 ? loop_io_mod(a->loop, fd, events) : -ENOENT;
}

void attempt_io_del(struct attempt *a, int fd)
{
        int i = attempt_io_find(a, fd);

        if (i < 0)
                return;
        loop_io_del(a->loop, fd);
        a->res->io[i].fd = -1;
}

void attempt_timer_arm(struct attempt *a, attempt_timer_fn *fn, uint64_t when_ns)
{
        if (!a->res)
                return; /* not running: nothing to arm it for */
        a->res->timer.fn = fn;
        a->res->timer.id = a->id;
        loop_timer_arm(a->loop, &a->res->timer.t, when_ns);
}

void attempt_timer_disarm(struct attempt *a)
{
        if (a->res)
                loop_timer_disarm(a->loop, &a->res->timer.t);
}

int attempt_curl_add(struct attempt *a, CURL *easy, attempt_curl_fn *fn)
{
        int r;

        if (!a->res || a->res->curl.easy)
                return -ENOSPC;
        a->res->curl.easy = easy;
        a->res->curl.id = a->id;
        a->res->curl.fn = fn;
        r = loop_curl_add(a->loop, easy, &a->res->curl.lc);
        if (r < 0)
                a->res->curl.easy = NULL;
        return r;
}

void attempt_curl_remove(struct attempt *a, CURL *easy)
{
        if (!easy || !a->res || a->res->curl.easy != easy)
                return;
        loop_curl_remove(a->loop, easy);
        a->res->curl.easy = NULL;
}

/* Everything the attempt registered: fds out of epoll (before cancel closes them), the
 * timer disarmed, the curl handle out of the multi; the block goes back to d->res_free. */
void attempt_release(struct attempt *a)
{
        if (!a->res)
                return;
        for (size_t i = 0; i < ATTEMPT_MAX_IO; i++)
                attempt_io_del(a, a->res->io[i].fd);
        attempt_timer_disarm(a);
        attempt_curl_remove(a, a->res->curl.easy);
        resolver_wait_cancel(&a->res->dns.w); /* the query goes on for the cache, without us */
        a->res->next_free = a->probe->d->res_free;
        a->probe->d->res_free = a->res;
        a->res = NULL;
}

void attempt_set_address(struct attempt *a, const union sockaddr_any *addr)
{
        if (a->res)
                a->res->addr = *addr;
}

bool attempt_address(const struct attempt *a, union sockaddr_any *ret)
{
        if (!a->res || a->res->addr.sa.sa_family == AF_UNSPEC)
                return false;
        *ret = a->res->addr;
        return true;
}

void attempt_res_drain(struct daemon *d)
{
        while (d->res_free) {
                struct attempt_res *r = d->res_free;
                d->res_free = r->next_free;
                free(r);
        }
}

int attempt_begin(struct attempt *a, const struct probe_ops *ops, const void *spec, uint64_t timeout_ms)
{
        struct attempt_ending e;
        int r;

        a->res = attempt_res_new(a);
        if (!a->res)
                return -ENOMEM;
        dispatch_begin(a, a->id, &e);
        r = ops->start(a, spec, timeout_ms);
        dispatch_end(a, &e);
        return r;
}

void attempt_end(struct attempt *a, enum outcome o, const char *fmt, ...)
{
        struct attempt_ending now, *e = a->ending ? a->ending : &now;
        va_list ap;

        if (a->state != ATTEMPT_RUNNING)
                return; /* already ended: a completion racing a cancel, or the reverse */
        a->state = ATTEMPT_ENDING;
        /* format first: the arguments may point into the kind state that cancel frees */
        va_start(ap, fmt);
        vsnprintf(e->reason, sizeof(e->reason), fmt, ap);
        va_end(ap);
        e->o = o;
        e->ended = true;
        if (e == &now) /* not from a kind's callback: at once */
                attempt_finish(a, o, e->reason);
}
