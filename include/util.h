/* Small helpers shared by every module: clocks, durations, errno. */
#pragma once
#include <errno.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "bounds.h"

#define NSEC_PER_MSEC 1000000ULL
#define NSEC_PER_SEC 1000000000ULL
#define ELEMENTSOF(x) (sizeof(x) / sizeof((x)[0]))

/* CLOCK_MONOTONIC in ns: every deadline uses it (docs/design.md, "Time"). */
uint64_t now_ns(void);
/* CLOCK_THREAD_CPUTIME_ID in ns: the CPU the calling thread got; against now_ns() it
 * tells a frozen loop from a busy one (docs/design.md, "Stalls and busy wake-ups"). */
uint64_t thread_cpu_ns(void);
/* CLOCK_REALTIME in ns: only for timestamps shown to people. */
uint64_t wall_ns(void);
/* "2026-11-28T21:28:12.123Z" into buf (at least 32 bytes). */
void format_rfc3339(uint64_t wall, char *buf, size_t n);

/* Parses "500ms", "2s", "1m30s", "1h" (integer + unit, combinable) into ms.
 * Returns 0, or -EINVAL for bare numbers, negatives, unknown units, empty input
 * and -ERANGE on overflow. Never writes ret_ms on failure. */
int duration_parse(const char *s, uint64_t *ret_ms);
/* Formats ms back as the shortest duration string ("1m30s", "500ms", "0s"). */
void duration_format(uint64_t ms, char *buf, size_t n);

/* -errno, never 0 (for libc calls that return -1 and set errno). */
static inline int negative_errno(void)
{
        return errno > 0 ? -errno : -EIO;
}

/* 0-15 for a hex digit, else -1: chunk sizes, percent-encoding. */
static inline int hexval(char c)
{
        if (c >= '0' && c <= '9')
                return c - '0';
        c = (char) (c | 0x20);
        return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* FNV-1a of a string: spreads probe names over open-addressing tables. */
size_t str_hash(const char *s);

/* malloc'd printf; NULL on ENOMEM. */
char *strdup_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Addresses of one host, in getaddrinfo's order (e.g. ::1 then 127.0.0.1 for
 * localhost): a target is tried in turn until one accepts. Not sockaddr_storage:
 * 28 bytes instead of 128 each, times 10,000 probes. */
union sockaddr_any {
        struct sockaddr sa;
        struct sockaddr_in in4;
        struct sockaddr_in6 in6;
};
struct addr_list {
        union sockaddr_any a[ADDR_LIST_MAX];
        socklen_t len[ADDR_LIST_MAX];
        unsigned n;
};

/* Resolves "HOST:PORT" or "[V6]:PORT". Host names go through getaddrinfo, a blocking call:
 * only for the status server's listen address, when it starts (never on the loop, never
 * while loading config: README "Names"). passive: an address to listen on (port
 * 0 allowed); otherwise a target (port 1..65535). Returns 0, -EINVAL when s is not
 * HOST:PORT, or -ENOENT when the host does not resolve. */
int address_resolve(const char *s, bool passive, struct addr_list *ret);
/* Only the syntax check and split of address_resolve (no lookup): host without
 * brackets into host[host_size]. 0 or -EINVAL. */
int address_split(const char *s, bool passive, char *host, size_t host_size, uint16_t *ret_port);
/* address_resolve for a host ("127.0.0.1", "::1" without brackets, "localhost") and a port. */
int host_resolve(const char *host, uint16_t port, bool passive, struct addr_list *ret);
/* "ADDR:PORT[,ADDR:PORT...]" with literal IPv4 or [IPv6] addresses: DNS servers (the
 * config's `resolver`, a dns probe's `server`). */
bool dns_servers_valid(const char *s);
/* "10.0.0.1:80", "[::1]:80" (port 0: the address alone) into buf (at least 64 bytes);
 * NULL when a holds no address (family 0). */
const char *address_format(const union sockaddr_any *a, char *buf, size_t n);
/* Sets the port of every address of l. */
void addr_list_set_port(struct addr_list *l, uint16_t port);
