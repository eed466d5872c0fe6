/* Names resolved on the loop; see include/resolver.h and docs/design.md, "Names".
 *
 *   resolver_lookup(host) --literal--> the address, at once
 *        |--cached, fresh--> the cached answer (or "no such host"), at once
 *        |--a query for host in flight--> the waiter joins it
 *        +--> ares_getaddrinfo on the channel --(/etc/hosts: c-ares answers at once)--+
 *                  | sockets on epoll (sock_state_cb), its timeout on one loop timer  |
 *                  v                                                                  v
 *             host_cb (inside ares_process_fd): the answer kept, the lookup queued
 *                  --> after ares_process_fd returned: the cache entry filled, each
 *                      waiter unlinked then called (it may look up again), lookup freed
 *
 * A channel is the default one (resolv.conf's servers, or the config's `resolver`), or one
 * per `server` of a dns probe (DNS only, no /etc/hosts). A channel replaced by a reload is
 * retired: destroyed once its queries are over. */
#include <ares.h>
#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "bounds.h"
#include "loop.h"
#include "resolver.h"
#include "util.h"

struct resolver;
struct entry;

struct channel {
        struct channel *next; /* in r->servers or r->retired */
        struct resolver *r;
        ares_channel ares;
        struct timer t; /* c-ares's next timeout */
        int sock_errno; /* of the last socket() that failed (EMFILE tells an error from a failure) */
        size_t lookups; /* in flight */
        char *server;   /* a dns probe's "ADDR:PORT"; NULL for the default channel */
};

struct lookup {
        struct resolver *r;
        struct channel *ch;
        struct entry *e; /* the cache entry it fills; NULL: an uncached query */
        struct resolver_wait *waiters;
        struct lookup *done_next;
        bool sync; /* inside ares_getaddrinfo: resolver_lookup takes the answer itself */
        bool done;
        int status;
        const char *reason;
        unsigned ttl;
        struct addr_list addrs;
};

struct entry {
        struct entry *next;  /* hash chain */
        uint64_t expires_ns; /* 0: nothing cached */
        int status;          /* 0, or -ENOENT cached */
        struct addr_list addrs;
        struct lookup *pending;
        char host[];
};

struct resolver {
        struct loop *l;
        struct channel *main;
        struct channel *servers; /* dns probes' own */
        size_t n_servers;
        struct channel *retired;
        struct entry **buckets;
        size_t mask, n_entries, sweep_at;
        struct lookup *done_head, **done_tail;
        bool destroying;
        struct addr_list scratch; /* a literal, or an uncached answer given at once */
};

static void channel_rearm(struct channel *ch);

/* ---- c-ares on the loop -------------------------------------------------------------- */

static void channel_on_io(struct loop *l, int fd, uint32_t events, void *data);

/* c-ares tells which sockets it wants watched; only bookkeeping here (no c-ares call). */
static void channel_sock_state(void *data, ares_socket_t fd, int readable, int writable)
{
        struct channel *ch = data;

        if (!readable && !writable) {
                loop_io_del(ch->r->l, fd);
                return;
        }
        /* loop_io_add replaces an existing registration of fd */
        (void) loop_io_add(ch->r->l, fd, (readable ? EPOLLIN : 0) | (writable ? EPOLLOUT : 0), channel_on_io, ch);
}

/* The socket functions c-ares uses: its own, plus close-on-exec (exec probes' children
 * inherit nothing) and the errno of a socket() that failed. */
static ares_socket_t sock_open(int af, int type, int protocol, void *data)
{
        struct channel *ch = data;
        int fd = socket(af, type | SOCK_CLOEXEC, protocol);

        if (fd < 0)
                ch->sock_errno = errno;
        return fd;
}

static int sock_close(ares_socket_t fd, void *data)
{
        (void) data;
        return close(fd);
}

static int sock_connect(ares_socket_t fd, const struct sockaddr *sa, ares_socklen_t len, void *data)
{
        (void) data;
        return connect(fd, sa, len);
}

static ares_ssize_t sock_recvfrom(ares_socket_t fd, void *buf, size_t n, int flags, struct sockaddr *from,
                                  ares_socklen_t *from_len, void *data)
{
        (void) data;
        return recvfrom(fd, buf, n, flags, from, from_len);
}

static ares_ssize_t sock_sendv(ares_socket_t fd, const struct iovec *iov, int n, void *data)
{
        (void) data;
        return writev(fd, iov, n);
}

static const struct ares_socket_functions sock_funcs = {
        .asocket = sock_open,
        .aclose = sock_close,
        .aconnect = sock_connect,
        .arecvfrom = sock_recvfrom,
        .asendv = sock_sendv,
};

static void resolver_deliver(struct resolver *r);

static void channel_on_io(struct loop *l, int fd, uint32_t events, void *data)
{
        struct channel *ch = data;
        struct resolver *r = ch->r;

        (void) l;
        ares_process_fd(ch->ares, events & (EPOLLIN | EPOLLERR | EPOLLHUP) ? fd : ARES_SOCKET_BAD,
                        events & EPOLLOUT ? fd : ARES_SOCKET_BAD);
        channel_rearm(ch);
        resolver_deliver(r); /* may destroy ch (retired and idle) */
}

static void channel_on_timer(struct loop *l, void *data)
{
        struct channel *ch = data;
        struct resolver *r = ch->r;

        (void) l;
        ares_process_fd(ch->ares, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
        channel_rearm(ch);
        resolver_deliver(r);
}

static void channel_rearm(struct channel *ch)
{
        struct timeval tv, *t = ares_timeout(ch->ares, NULL, &tv);

        if (!t) {
                loop_timer_disarm(ch->r->l, &ch->t);
                return;
        }
        loop_timer_arm(ch->r->l, &ch->t, now_ns() + (uint64_t) t->tv_sec * NSEC_PER_SEC + (uint64_t) t->tv_usec * 1000);
}

static struct channel *channel_free(struct channel *ch)
{
        if (!ch)
                return NULL;
        if (ch->ares)
                ares_destroy(ch->ares); /* its lookups' callbacks see r->destroying or free them */
        loop_timer_disarm(ch->r->l, &ch->t);
        free(ch->server);
        free(ch);
        return NULL;
}

/* servers: "ADDR:PORT,..." for ares_set_servers_ports_csv, or NULL (resolv.conf's). */
static int channel_new(struct resolver *r, const char *servers, bool dns_only, struct channel **ret)
{
        struct ares_options o = {
                .sock_state_cb = channel_sock_state,
                .timeout = RESOLVER_TRY_MS,
                .tries = RESOLVER_TRIES,
                .lookups = (char *) "b",
        };
        int mask = ARES_OPT_SOCK_STATE_CB | ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES | (dns_only ? ARES_OPT_LOOKUPS : 0);
        struct channel *ch = calloc(1, sizeof(*ch));
        int rc;

        if (!ch)
                return -ENOMEM;
        ch->r = r;
        timer_init(&ch->t, channel_on_timer, ch);
        o.sock_state_cb_data = ch;
        rc = ares_init_options(&ch->ares, &o, mask);
        if (rc != ARES_SUCCESS) {
                ch->ares = NULL;
                channel_free(ch);
                return rc == ARES_ENOMEM ? -ENOMEM : -EIO;
        }
        ares_set_socket_functions(ch->ares, &sock_funcs, ch);
        if (servers && ares_set_servers_ports_csv(ch->ares, servers) != ARES_SUCCESS) {
                channel_free(ch);
                return -EINVAL;
        }
        if (dns_only && !(ch->server = strdup(servers))) {
                channel_free(ch);
                return -ENOMEM;
        }
        *ret = ch;
        return 0;
}

/* A dns probe's channel for server, made when first asked. */
static int channel_for_server(struct resolver *r, const char *server, struct channel **ret)
{
        struct channel **pp;
        int rc;

        for (struct channel *ch = r->servers; ch; ch = ch->next)
                if (strcmp(ch->server, server) == 0) {
                        *ret = ch;
                        return 0;
                }
        /* bounded: idle channels of servers no probe asks any more go first */
        for (pp = &r->servers; *pp && r->n_servers >= RESOLVER_SERVER_CHANNELS_MAX;) {
                struct channel *ch = *pp;
                if (ch->lookups == 0) {
                        *pp = ch->next;
                        r->n_servers--;
                        channel_free(ch);
                } else {
                        pp = &ch->next;
                }
        }
        if (r->n_servers >= RESOLVER_SERVER_CHANNELS_MAX)
                return -EBUSY;
        rc = channel_new(r, server, true, ret);
        if (rc < 0)
                return rc;
        (*ret)->next = r->servers;
        r->servers = *ret;
        r->n_servers++;
        return 0;
}

/* ---- the cache ------------------------------------------------------------------------- */

unsigned resolver_ttl_clamp(int ttl)
{
        if (ttl < RESOLVER_TTL_MIN_S)
                return RESOLVER_TTL_MIN_S;
        return ttl > RESOLVER_TTL_MAX_S ? RESOLVER_TTL_MAX_S : (unsigned) ttl;
}

static struct entry **entry_slot(const struct resolver *r, const char *host)
{
        struct entry **pp = &r->buckets[str_hash(host) & r->mask];

        while (*pp && strcmp((*pp)->host, host) != 0)
                pp = &(*pp)->next;
        return pp;
}

/* Drops expired entries no query fills; then, past the limit, none is added. */
static void cache_sweep(struct resolver *r, uint64_t now)
{
        for (size_t i = 0; i <= r->mask; i++)
                for (struct entry **pp = &r->buckets[i]; *pp;) {
                        struct entry *e = *pp;
                        if (!e->pending && e->expires_ns <= now) {
                                *pp = e->next;
                                free(e);
                                r->n_entries--;
                        } else {
                                pp = &e->next;
                        }
                }
        r->sweep_at = 2 * r->n_entries + 64;
}

static int cache_grow(struct resolver *r)
{
        size_t n = 2 * (r->mask + 1);
        struct entry **b = calloc(n, sizeof(*b));

        if (!b)
                return -ENOMEM;
        for (size_t i = 0; i <= r->mask; i++)
                while (r->buckets[i]) {
                        struct entry *e = r->buckets[i];
                        r->buckets[i] = e->next;
                        e->next = b[str_hash(e->host) & (n - 1)];
                        b[str_hash(e->host) & (n - 1)] = e;
                }
        free(r->buckets);
        r->buckets = b;
        r->mask = n - 1;
        return 0;
}

/* The entry of host, made when there is none (NULL: out of memory, or the cache is full). */
static struct entry *cache_entry(struct resolver *r, const char *host, uint64_t now)
{
        struct entry **pp = entry_slot(r, host), *e;
        size_t len = strlen(host);

        if (*pp)
                return *pp;
        if (r->n_entries >= r->sweep_at) {
                cache_sweep(r, now);
                pp = entry_slot(r, host);
        }
        if (r->n_entries >= RESOLVER_CACHE_MAX)
                return NULL;
        if (r->n_entries >= r->mask + 1 && cache_grow(r) == 0)
                pp = entry_slot(r, host);
        e = calloc(1, sizeof(*e) + len + 1);
        if (!e)
                return NULL;
        memcpy(e->host, host, len + 1);
        *pp = e;
        r->n_entries++;
        return e;
}

uint64_t resolver_cached_until(const struct resolver *r, const char *host)
{
        const struct entry *e = *entry_slot(r, host);

        return e ? e->expires_ns : 0;
}

/* ---- lookups ---------------------------------------------------------------------------- */

bool resolver_literal(const char *host, uint16_t port, union sockaddr_any *a, socklen_t *ret_len)
{
        memset(a, 0, sizeof(*a));
        if (inet_pton(AF_INET, host, &a->in4.sin_addr) == 1) {
                a->in4.sin_family = AF_INET;
                a->in4.sin_port = htons(port);
                *ret_len = sizeof(a->in4);
                return true;
        }
        if (inet_pton(AF_INET6, host, &a->in6.sin6_addr) == 1) {
                a->in6.sin6_family = AF_INET6;
                a->in6.sin6_port = htons(port);
                *ret_len = sizeof(a->in6);
                return true;
        }
        return false;
}

bool resolver_errno_local(int err)
{
        return err == EMFILE || err == ENFILE || err == ENOMEM || err == ENOBUFS || err == EBUSY;
}

/* c-ares's answer for a lookup (inside ares_process_fd, or inside ares_getaddrinfo when
 * it knows at once): kept in the lookup, delivered by resolver_deliver. */
static void host_cb(void *arg, int status, int timeouts, struct ares_addrinfo *ai)
{
        struct lookup *lk = arg;
        struct resolver *r = lk->r;
        int ttl = RESOLVER_TTL_MAX_S;

        (void) timeouts;
        lk->status = -EIO;
        lk->reason = ares_strerror(status);
        switch (status) {
        case ARES_SUCCESS:
                for (struct ares_addrinfo_node *n = ai ? ai->nodes : NULL; n && lk->addrs.n < ADDR_LIST_MAX;
                     n = n->ai_next) {
                        unsigned i = lk->addrs.n;
                        bool dup = false;
                        if ((n->ai_family != AF_INET && n->ai_family != AF_INET6) ||
                            n->ai_addrlen > sizeof(lk->addrs.a[0]))
                                continue;
                        for (unsigned j = 0; j < i && !dup; j++)
                                dup = lk->addrs.len[j] == n->ai_addrlen &&
                                      memcmp(&lk->addrs.a[j], n->ai_addr, n->ai_addrlen) == 0;
                        if (dup)
                                continue;
                        memcpy(&lk->addrs.a[i], n->ai_addr, n->ai_addrlen);
                        lk->addrs.len[i] = n->ai_addrlen;
                        lk->addrs.n++;
                        if (n->ai_ttl < ttl)
                                ttl = n->ai_ttl;
                }
                lk->status = lk->addrs.n > 0 ? 0 : -ENOENT;
                lk->reason = lk->addrs.n > 0 ? "" : "no such host";
                lk->ttl = resolver_ttl_clamp(ttl);
                break;
        case ARES_ENOTFOUND:
        case ARES_ENODATA:
                lk->status = -ENOENT;
                lk->reason = "no such host";
                break;
        case ARES_ETIMEOUT:
                lk->status = -ETIMEDOUT;
                lk->reason = "no answer from the DNS server";
                break;
        case ARES_ESERVFAIL:
                lk->reason = "server failure (SERVFAIL)";
                break;
        case ARES_EREFUSED:
                lk->reason = "query refused";
                break;
        case ARES_ENOMEM:
                lk->status = -ENOMEM;
                lk->reason = "out of memory";
                break;
        case ARES_ECONNREFUSED:
                if (resolver_errno_local(lk->ch->sock_errno)) {
                        lk->status = -lk->ch->sock_errno;
                        lk->reason = lk->status == -ENOMEM || lk->status == -ENOBUFS ? "out of memory"
                                                                                     : "out of file descriptors";
                } else {
                        lk->reason = "cannot reach the DNS server";
                }
                lk->ch->sock_errno = 0;
                break;
        default:
                break;
        }
        if (ai)
                ares_freeaddrinfo(ai);
        lk->done = true;
        if (r->destroying || status == ARES_EDESTRUCTION) {
                /* resolver_free (or a retired channel going away): nobody waits any more */
                for (struct resolver_wait *w = lk->waiters; w; w = w->next)
                        w->pprev = NULL;
                if (lk->e)
                        lk->e->pending = NULL;
                lk->ch->lookups--;
                free(lk);
                return;
        }
        if (lk->sync)
                return; /* resolver_lookup answers at once */
        lk->done_next = NULL;
        *r->done_tail = lk;
        r->done_tail = &lk->done_next;
}

static void lookup_link(struct lookup *lk, struct resolver_wait *w)
{
        w->next = lk->waiters;
        if (w->next)
                w->next->pprev = &w->next;
        w->pprev = &lk->waiters;
        lk->waiters = w;
}

void resolver_wait_cancel(struct resolver_wait *w)
{
        if (!w->pprev)
                return;
        *w->pprev = w->next;
        if (w->next)
                w->next->pprev = w->pprev;
        w->next = NULL;
        w->pprev = NULL;
}

/* The answer of lk into its cache entry (and out of flight). */
static void lookup_settle(struct lookup *lk)
{
        struct entry *e = lk->e;
        uint64_t now = now_ns();

        lk->ch->lookups--;
        if (!e)
                return;
        e->pending = NULL;
        e->status = lk->status;
        if (lk->status == 0) {
                e->addrs = lk->addrs;
                e->expires_ns = now + (uint64_t) lk->ttl * NSEC_PER_SEC;
        } else if (lk->status == -ENOENT) {
                e->addrs.n = 0;
                e->expires_ns = now + RESOLVER_NEGATIVE_TTL_S * NSEC_PER_SEC;
        } else {
                e->expires_ns = 0; /* a timeout or SERVFAIL is not kept: the next attempt asks again */
        }
}

static void retired_sweep(struct resolver *r)
{
        for (struct channel **pp = &r->retired; *pp;) {
                struct channel *ch = *pp;
                if (ch->lookups == 0) {
                        *pp = ch->next;
                        channel_free(ch);
                } else {
                        pp = &ch->next;
                }
        }
}

/* Settles the lookups c-ares finished and calls their waiters: outside every c-ares
 * callback, so that a waiter may look up again (the entry is settled first). */
static void resolver_deliver(struct resolver *r)
{
        while (r->done_head) {
                struct lookup *lk = r->done_head;
                struct resolver_result res = { .status = lk->status, .reason = lk->reason, .addrs = &lk->addrs };

                r->done_head = lk->done_next;
                if (!r->done_head)
                        r->done_tail = &r->done_head;
                lookup_settle(lk);
                while (lk->waiters) {
                        struct resolver_wait *w = lk->waiters;
                        resolver_wait_cancel(w);
                        w->fn(w, &res);
                }
                free(lk);
        }
        if (r->retired)
                retired_sweep(r);
}

static void result_set(struct resolver_result *ret, int status, const char *reason, const struct addr_list *addrs)
{
        *ret = (struct resolver_result){ .status = status, .reason = reason, .addrs = addrs };
}

int resolver_lookup(struct resolver *r, const char *host, const struct resolver_query *q, struct resolver_wait *w,
                    struct resolver_result *ret)
{
        static const struct resolver_query dflt = { .family = AF_UNSPEC };
        struct ares_addrinfo_hints hints = { .ai_socktype = SOCK_STREAM };
        struct channel *ch = r->main;
        struct entry *e = NULL;
        struct lookup *lk;
        uint64_t now = now_ns();
        int rc;

        if (!q)
                q = &dflt;
        resolver_wait_cancel(w);
        if (resolver_literal(host, 0, &r->scratch.a[0], &r->scratch.len[0])) {
                r->scratch.n = 1;
                result_set(ret, 0, "", &r->scratch);
                return 1;
        }
        if (q->server) {
                rc = channel_for_server(r, q->server, &ch);
                if (rc < 0) {
                        result_set(ret, rc,
                                   rc == -ENOMEM  ? "out of memory"
                                   : rc == -EBUSY ? "too many DNS servers in use at once"
                                                  : "cannot use the DNS server",
                                   NULL);
                        return rc;
                }
        }
        if (!q->no_cache && !q->server && q->family == AF_UNSPEC && (e = cache_entry(r, host, now))) {
                if (e->expires_ns > now) {
                        result_set(ret, e->status, e->status == 0 ? "" : "no such host", &e->addrs);
                        return 1;
                }
                if (e->pending) {
                        lookup_link(e->pending, w);
                        return 0;
                }
        }
        lk = calloc(1, sizeof(*lk));
        if (!lk) {
                result_set(ret, -ENOMEM, "out of memory", NULL);
                return -ENOMEM;
        }
        lk->r = r;
        lk->ch = ch;
        lk->e = e;
        lk->sync = true;
        ch->lookups++;
        if (e)
                e->pending = lk;
        hints.ai_family = q->family;
        ares_getaddrinfo(ch->ares, host, NULL, &hints, host_cb, lk);
        lk->sync = false;
        if (lk->done) { /* c-ares knew at once (/etc/hosts, or an error) */
                lookup_settle(lk);
                r->scratch = lk->addrs;
                result_set(ret, lk->status, lk->reason, &r->scratch);
                free(lk);
                return 1;
        }
        lookup_link(lk, w);
        channel_rearm(ch);
        return 0;
}

/* ---- the resolver ----------------------------------------------------------------------- */

int resolver_set_servers(struct resolver *r, const char *servers)
{
        struct channel *ch;
        int rc = channel_new(r, servers, false, &ch);

        if (rc < 0)
                return rc;
        if (r->main) {
                r->main->next = r->retired; /* its queries finish, then it goes */
                r->retired = r->main;
        }
        r->main = ch;
        for (size_t i = 0; i <= r->mask; i++)
                for (struct entry *e = r->buckets[i]; e; e = e->next) {
                        if (e->pending) { /* the old servers' answer reaches its waiters, not the cache */
                                e->pending->e = NULL;
                                e->pending = NULL;
                        }
                        e->expires_ns = 0;
                }
        retired_sweep(r);
        return 0;
}

struct resolver *resolver_new(struct loop *l, const char *servers, int *ret_errno)
{
        struct resolver *r = calloc(1, sizeof(*r));
        int rc = -ENOMEM;

        if (!r)
                goto fail;
        r->l = l;
        r->done_tail = &r->done_head;
        r->mask = 63;
        r->sweep_at = 64;
        r->buckets = calloc(r->mask + 1, sizeof(*r->buckets));
        if (!r->buckets || (rc = resolver_set_servers(r, servers)) < 0)
                goto fail;
        return r;
fail:
        resolver_free(r);
        if (ret_errno)
                *ret_errno = rc;
        return NULL;
}

struct resolver *resolver_free(struct resolver *r)
{
        if (!r)
                return NULL;
        r->destroying = true;
        r->main = channel_free(r->main);
        while (r->servers) {
                struct channel *ch = r->servers;
                r->servers = ch->next;
                channel_free(ch);
        }
        while (r->retired) {
                struct channel *ch = r->retired;
                r->retired = ch->next;
                channel_free(ch);
        }
        while (r->done_head) { /* none: delivered after every ares_process_fd */
                struct lookup *lk = r->done_head;
                r->done_head = lk->done_next;
                free(lk);
        }
        for (size_t i = 0; r->buckets && i <= r->mask; i++)
                while (r->buckets[i]) {
                        struct entry *e = r->buckets[i];
                        r->buckets[i] = e->next;
                        free(e);
                }
        free(r->buckets);
        free(r);
        return NULL;
}
