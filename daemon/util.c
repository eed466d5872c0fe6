/* Small shared helpers: clocks, RFC 3339 timestamps, durations, printf to malloc.
 *
 * Durations are what the config file and `probed check --timeout` accept: one or more
 * "<integer><unit>" pairs with units h, m, s, ms. Design choices:
 *  - units must come in strictly decreasing order, each at most once ("1h2m3s500ms",
 *    "1m30s"; not "30s1m", not "1s1s"): a config that says "1s1m" is almost certainly
 *    a typo, and this keeps duration_format() the one canonical spelling.
 *  - the integer is ASCII digits only: no sign, no fraction, no spaces, no exponent.
 *  - "overflow" (-ERANGE) means the total does not fit in uint64 *nanoseconds*, so any
 *    caller may convert a parsed duration to ns (every deadline is in ns) without
 *    checking again. That still allows about 584 years.
 */
#include <arpa/inet.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "util.h"

#define DURATION_MAX_MS (UINT64_MAX / NSEC_PER_MSEC)

static uint64_t clock_ns(clockid_t id)
{
        struct timespec ts;

        /* Cannot fail for these clocks on Linux; a zero timespec is the fallback. */
        if (clock_gettime(id, &ts) < 0)
                return 0;
        return (uint64_t) ts.tv_sec * NSEC_PER_SEC + (uint64_t) ts.tv_nsec;
}

uint64_t now_ns(void)
{
        return clock_ns(CLOCK_MONOTONIC);
}

uint64_t thread_cpu_ns(void)
{
        return clock_ns(CLOCK_THREAD_CPUTIME_ID);
}

uint64_t wall_ns(void)
{
        return clock_ns(CLOCK_REALTIME);
}

void format_rfc3339(uint64_t wall, char *buf, size_t n)
{
        time_t secs = (time_t) (wall / NSEC_PER_SEC);
        unsigned ms = (unsigned) ((wall % NSEC_PER_SEC) / NSEC_PER_MSEC);
        struct tm tm;
        char date[24];

        if (n == 0)
                return;
        if (!gmtime_r(&secs, &tm) || strftime(date, sizeof(date), "%Y-%m-%dT%H:%M:%S", &tm) == 0) {
                buf[0] = '\0';
                return;
        }
        (void) snprintf(buf, n, "%s.%03uZ", date, ms);
}

/* Units from the largest down; the index order is what "decreasing" means. */
static const struct {
        const char *name;
        uint64_t ms;
} duration_units[] = {
        { "h", 3600000 },
        { "m", 60000 },
        { "s", 1000 },
        { "ms", 1 },
};

/* The unit at *p: "ms" must be tried before "m". Returns its index, or -1. */
static int duration_unit_at(const char *p, size_t *ret_len)
{
        if (p[0] == 'm' && p[1] == 's') {
                *ret_len = 2;
                return 3;
        }
        for (int i = 0; i < 3; i++)
                if (p[0] == duration_units[i].name[0]) {
                        *ret_len = 1;
                        return i;
                }
        return -1;
}

int duration_parse(const char *s, uint64_t *ret_ms)
{
        uint64_t total = 0;
        int last_unit = -1;
        bool overflow = false;
        const char *p = s;

        if (!s || !*s)
                return -EINVAL;

        while (*p) {
                uint64_t v = 0;
                size_t ulen;
                int u;

                if (*p < '0' || *p > '9')
                        return -EINVAL;
                for (; *p >= '0' && *p <= '9'; p++) {
                        unsigned d = (unsigned) (*p - '0');

                        /* Keep scanning after an overflow so "5x" style errors still win. */
                        if (v > (UINT64_MAX - d) / 10)
                                overflow = true;
                        else
                                v = v * 10 + d;
                }
                u = duration_unit_at(p, &ulen);
                if (u < 0 || u <= last_unit)
                        return -EINVAL;
                last_unit = u;
                p += ulen;

                if (!overflow) {
                        if (v > DURATION_MAX_MS / duration_units[u].ms)
                                overflow = true;
                        else if (total > DURATION_MAX_MS - v * duration_units[u].ms)
                                overflow = true;
                        else
                                total += v * duration_units[u].ms;
                }
        }
        if (overflow)
                return -ERANGE;

        *ret_ms = total;
        return 0;
}

void duration_format(uint64_t ms, char *buf, size_t n)
{
        size_t off = 0;

        if (n == 0)
                return;
        buf[0] = '\0';
        if (ms == 0) {
                (void) snprintf(buf, n, "0s");
                return;
        }
        for (size_t i = 0; i < ELEMENTSOF(duration_units); i++) {
                uint64_t v = ms / duration_units[i].ms;
                int r;

                if (v == 0)
                        continue;
                ms -= v * duration_units[i].ms;
                r = snprintf(buf + off, n - off, "%llu%s", (unsigned long long) v, duration_units[i].name);
                if (r < 0 || (size_t) r >= n - off)
                        return; /* truncated: snprintf already NUL-terminated it */
                off += (size_t) r;
        }
}

char *strdup_printf(const char *fmt, ...)
{
        va_list ap;
        char *s;
        int r;

        va_start(ap, fmt);
        r = vasprintf(&s, fmt, ap);
        va_end(ap);
        return r < 0 ? NULL : s;
}

size_t str_hash(const char *s)
{
        uint64_t h = 1469598103934665603ULL;

        for (; *s; s++)
                h = (h ^ (unsigned char) *s) * 1099511628211ULL;
        return (size_t) h;
}

int host_resolve(const char *host, uint16_t port, bool passive, struct addr_list *ret)
{
        struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV }, *res = NULL;
        char ps[8];

        if (passive)
                hints.ai_flags |= AI_PASSIVE;
        if (strchr(host, ':')) {
                hints.ai_family = AF_INET6;
                hints.ai_flags |= AI_NUMERICHOST;
        }
        snprintf(ps, sizeof(ps), "%u", (unsigned) port);
        if (getaddrinfo(host, ps, &hints, &res) != 0 || !res)
                return -ENOENT;
        ret->n = 0;
        for (struct addrinfo *ai = res; ai && ret->n < ADDR_LIST_MAX; ai = ai->ai_next) {
                if (ai->ai_addrlen > sizeof(ret->a[0]))
                        continue;
                memcpy(&ret->a[ret->n], ai->ai_addr, ai->ai_addrlen);
                ret->len[ret->n++] = ai->ai_addrlen;
        }
        freeaddrinfo(res);
        return ret->n > 0 ? 0 : -ENOENT;
}

int address_split(const char *s, bool passive, char *host, size_t host_size, uint16_t *ret_port)
{
        const char *port;
        size_t hl;
        char *end;
        long p;

        if (s[0] == '[') {
                const char *rb = strchr(s, ']');
                if (!rb || rb[1] != ':')
                        return -EINVAL;
                hl = (size_t) (rb - s - 1);
                if (hl >= host_size || !memchr(s + 1, ':', hl))
                        return -EINVAL;
                memcpy(host, s + 1, hl);
                port = rb + 2;
        } else {
                const char *colon = strrchr(s, ':');
                if (!colon || strchr(s, ':') != colon)
                        return -EINVAL;
                hl = (size_t) (colon - s);
                if (hl >= host_size)
                        return -EINVAL;
                memcpy(host, s, hl);
                port = colon + 1;
        }
        host[hl] = '\0';
        p = strtol(port, &end, 10);
        if (hl == 0 || !*port || *end || *port == '+' || *port == '-' || p < (passive ? 0 : 1) || p > 65535)
                return -EINVAL;
        *ret_port = (uint16_t) p;
        return 0;
}

int address_resolve(const char *s, bool passive, struct addr_list *ret)
{
        char host[256];
        uint16_t port;
        int r = address_split(s, passive, host, sizeof(host), &port);

        return r < 0 ? r : host_resolve(host, port, passive, ret);
}

bool dns_servers_valid(const char *s)
{
        for (;;) {
                const char *comma = strchr(s, ',');
                size_t n = comma ? (size_t) (comma - s) : strlen(s);
                char one[80], host[64];
                unsigned char buf[sizeof(struct in6_addr)];
                uint16_t port;

                if (n == 0 || n >= sizeof(one))
                        return false;
                memcpy(one, s, n);
                one[n] = '\0';
                if (address_split(one, false, host, sizeof(host), &port) < 0 ||
                    inet_pton(one[0] == '[' ? AF_INET6 : AF_INET, host, buf) != 1)
                        return false;
                if (!comma)
                        return true;
                s = comma + 1;
        }
}

const char *address_format(const union sockaddr_any *a, char *buf, size_t n)
{
        char ip[INET6_ADDRSTRLEN];
        bool v6 = a->sa.sa_family == AF_INET6;
        unsigned port = ntohs(v6 ? a->in6.sin6_port : a->in4.sin_port);

        if ((a->sa.sa_family != AF_INET && !v6) ||
            !inet_ntop(a->sa.sa_family, v6 ? (const void *) &a->in6.sin6_addr : (const void *) &a->in4.sin_addr, ip,
                       sizeof(ip)))
                return NULL;
        if (port == 0)
                snprintf(buf, n, "%s", ip);
        else
                snprintf(buf, n, v6 ? "[%s]:%u" : "%s:%u", ip, port);
        return buf;
}

void addr_list_set_port(struct addr_list *l, uint16_t port)
{
        for (unsigned i = 0; i < l->n; i++) {
                if (l->a[i].sa.sa_family == AF_INET6)
                        l->a[i].in6.sin6_port = htons(port);
                else
                        l->a[i].in4.sin_port = htons(port);
        }
}
