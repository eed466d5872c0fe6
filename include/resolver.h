/* Names resolved on the loop (daemon/resolver.c; docs/design.md, "Names"): one c-ares
 * channel whose sockets are on the loop's epoll and whose timeouts are on its timer heap,
 * ares_getaddrinfo (/etc/hosts, then the servers of resolv.conf or of the config's
 * `resolver`), and a cache of answers kept for their TTL, floored at RESOLVER_TTL_MIN_S and
 * capped at RESOLVER_TTL_MAX_S. Literal addresses never reach c-ares. Lookups of one name by
 * several callers at once share one query.
 *
 * A caller waits through a struct resolver_wait it embeds (an attempt's registration,
 * daemon/attempt.c): resolver_wait_cancel unlinks it, after which it is never called, and
 * the query it waited for goes on for the cache. Results are delivered outside every
 * c-ares callback, after ares_process_fd returned (docs/design.md, "Names"), so a callback
 * may start another lookup or end its attempt. Loop thread only. */
#pragma once
#include <stdbool.h>
#include <stdint.h>

#include "util.h"

struct loop;
struct resolver;
struct resolver_wait;

/* The outcome of a lookup: 0 with addrs (at least one, ports 0), or a negative errno with
 * a reason for people:
 *   -ENOENT     no such host, or no address of the asked family ("no such host")
 *   -ETIMEDOUT  no answer from the servers
 *   -EIO        SERVFAIL, refused, a bad answer ... (the reason says which)
 *   -ENOMEM, -EMFILE, -ENFILE, -EBUSY  probed's own shortage (resolver_errno_local: an error
 *               outcome, README "Names") */
struct resolver_result {
        int status;
        const char *reason; /* static text; "" on success */
        const struct addr_list *addrs;
};

/* Whether a failed lookup's errno is probed's own shortage (memory, descriptors, its cap
 * of DNS server channels: EBUSY), an error rather than the name's failure. */
bool resolver_errno_local(int err);

/* Borrowed result: valid during the call only. */
typedef void resolver_fn(struct resolver_wait *w, const struct resolver_result *res);

struct resolver_wait {
        resolver_fn *fn; /* set by the caller */
        /* the resolver's: the lookup waited for (NULL: none) and the list of its waiters */
        struct resolver_wait *next, **pprev;
};

/* What to ask: AF_UNSPEC (both, the default), AF_INET or AF_INET6; server: "ADDR:PORT"
 * (NULL: the channel's), asked alone and without /etc/hosts; no_cache: a fresh query,
 * answered to this caller alone (the dns kind). */
struct resolver_query {
        int family;
        const char *server;
        bool no_cache;
};

/* servers: "ADDR:PORT[,ADDR:PORT...]" overriding resolv.conf's nameservers, or NULL.
 * NULL on failure with *ret_errno (negative). */
struct resolver *resolver_new(struct loop *l, const char *servers, int *ret_errno);
/* Drops every query in flight (no waiter may be linked any more) and the cache. NULL-safe. */
struct resolver *resolver_free(struct resolver *r);
/* Replaces the servers (NULL: resolv.conf's again) and empties the cache: a reload whose
 * `resolver` changed. 0 or a negative errno (the old servers stay). */
int resolver_set_servers(struct resolver *r, const char *servers);

/* Looks host up. Returns 1 with *ret (borrowed until the next call into the resolver)
 * when the answer is known now (a literal, a cached answer or failure, /etc/hosts), 0 when
 * w is linked to a query in flight (w->fn is called once, later, unless cancelled), or a
 * negative errno when no query could be started (*ret set too). q may be NULL. */
int resolver_lookup(struct resolver *r, const char *host, const struct resolver_query *q, struct resolver_wait *w,
                    struct resolver_result *ret);
/* w no longer waits: never called from now on. Idempotent; nothing when it waits for nothing. */
void resolver_wait_cancel(struct resolver_wait *w);

/* The TTL an answer is kept for, in seconds: ttl floored and capped. */
unsigned resolver_ttl_clamp(int ttl);
/* For tests: the CLOCK_MONOTONIC instant the cached answer for host expires; 0 when none
 * is cached (or a query for it is in flight without one). */
uint64_t resolver_cached_until(const struct resolver *r, const char *host);
/* Parses a literal IPv4 or IPv6 address (no brackets) with port into a; false when host is
 * no literal. */
bool resolver_literal(const char *host, uint16_t port, union sockaddr_any *a, socklen_t *ret_len);
