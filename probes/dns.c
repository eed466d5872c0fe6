/* dns probe: checks a dependency's name itself (README "Probe kinds"): success when `host`
 * resolves (A, AAAA, or both: `record`), and, with `expect`, when one of the expected
 * addresses is among the answer's.
 *
 *   start --> attempt_resolve(host, {family, server, no cache}) --addresses--> expect? --> success
 *                    |                                                           | none of them
 *                    +--> no such host, timeout, SERVFAIL: failure (attempt.c)   v
 *                                                                             failure
 *
 * Its queries bypass the cache (a fresh answer each attempt) and go to `server` alone when
 * it is set (DNS only, no /etc/hosts), else where every name goes (/etc/hosts, then
 * resolv.conf's servers or the config's `resolver`). The lookup's sockets are the
 * resolver's (daemon/resolver.c); the attempt holds no fd of its own. */
#include <arpa/inet.h>
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "probe.h"
#include "resolver.h"
#include "util.h"

#define DNS_EXPECT_MAX 16 /* addresses in `expect` */
#define DNS_HOST_MAX 253  /* a DNS name's length (RFC 1035 2.3.4, without the final dot) */
#define DNS_SERVER_MAX 64 /* "[v6]:port" */

struct dns_spec {
        struct resolver_query q;
        char server[DNS_SERVER_MAX];
        unsigned n_expect;
        union sockaddr_any expect[DNS_EXPECT_MAX];
        char host[];
};

static bool host_valid(const char *h)
{
        size_t n = strlen(h);

        if (n == 0 || n > DNS_HOST_MAX)
                return false;
        for (; *h; h++)
                if (!isalnum((unsigned char) *h) && !strchr(".-_:", *h))
                        return false;
        return true;
}

static bool same_address(const union sockaddr_any *a, const union sockaddr_any *b)
{
        if (a->sa.sa_family != b->sa.sa_family)
                return false;
        if (a->sa.sa_family == AF_INET)
                return a->in4.sin_addr.s_addr == b->in4.sin_addr.s_addr;
        return memcmp(&a->in6.sin6_addr, &b->in6.sin6_addr, sizeof(a->in6.sin6_addr)) == 0;
}

/* An answer's address (its port is 0: the address alone), as the rest of probed shows one. */
static const char *addr_text(const union sockaddr_any *a, char *buf, size_t n)
{
        const char *s = address_format(a, buf, n);

        return s ? s : "?";
}

/* `expect`: a list of literal addresses into spec->expect. */
static int dns_read_expect(cJSON *obj, const char *path, struct dns_spec *spec, char **reterr)
{
        const cJSON *list = cJSON_GetObjectItemCaseSensitive(obj, "expect"), *e;
        char key[32];

        if (!list)
                return 0;
        if (!cJSON_IsArray(list) || cJSON_GetArraySize(list) > DNS_EXPECT_MAX)
                return cfg_error_value(reterr, path, "expect", list, "is not a list of at most 16 addresses");
        cJSON_ArrayForEach(e, list)
        {
                socklen_t len;

                snprintf(key, sizeof(key), "expect[%u]", spec->n_expect);
                if (!cJSON_IsString(e) || !resolver_literal(e->valuestring, 0, &spec->expect[spec->n_expect], &len))
                        return cfg_error_value(reterr, path, key, e, "is not an IPv4 or IPv6 address");
                spec->n_expect++;
        }
        return 0;
}

static int dns_parse(cJSON *obj, const char *path, void **ret_spec, char **ret_target, char **reterr)
{
        const char *host = NULL, *record = "both", *server = "";
        struct dns_spec *spec;
        int r;

        if ((r = cfg_string(obj, "host", path, true, &host, reterr)) < 0 ||
            (r = cfg_string(obj, "record", path, false, &record, reterr)) < 0 ||
            (r = cfg_string(obj, "server", path, false, &server, reterr)) < 0)
                return r;
        if (!host_valid(host))
                return cfg_error(reterr, path, "host", "\"%s\" is not a host name", host);
        if (strcmp(record, "A") != 0 && strcmp(record, "AAAA") != 0 && strcmp(record, "both") != 0)
                return cfg_error(reterr, path, "record", "\"%s\" is not A, AAAA or both", record);
        if (*server && (strlen(server) >= DNS_SERVER_MAX || strchr(server, ',') || !dns_servers_valid(server)))
                return cfg_error(reterr, path, "server",
                                 "\"%s\" is not ADDR:PORT with an IP address (e.g. \"10.0.0.2:53\")", server);
        spec = calloc(1, sizeof(*spec) + strlen(host) + 1);
        if (!spec)
                return -ENOMEM;
        strcpy(spec->host, host);
        strcpy(spec->server, server);
        spec->q = (struct resolver_query){
                .family = record[0] == 'b'           ? AF_UNSPEC
                          : strcmp(record, "A") == 0 ? AF_INET
                                                     : AF_INET6,
                .server = *server ? spec->server : NULL,
                .no_cache = true,
        };
        if ((r = dns_read_expect(obj, path, spec, reterr)) < 0) {
                free(spec);
                return r;
        }
        /* the defaults, for --check-config and reload comparison */
        if ((!cJSON_HasObjectItem(obj, "record") && !cJSON_AddStringToObject(obj, "record", record)) ||
            (!cJSON_HasObjectItem(obj, "server") && !cJSON_AddStringToObject(obj, "server", server)) ||
            (!cJSON_HasObjectItem(obj, "expect") && !cJSON_AddArrayToObject(obj, "expect")) ||
            !(*ret_target = strdup(host))) {
                free(spec);
                return -ENOMEM;
        }
        *ret_spec = spec;
        return 0;
}

static void dns_free_spec(void *spec)
{
        free(spec);
}

static void dns_on_resolved(struct attempt *a, const struct addr_list *addrs)
{
        const struct dns_spec *spec = a->data;
        char got[ERROR_MAX - 48] = "", one[64]; /* address_format's size */
        size_t off = 0;

        for (unsigned i = 0; i < addrs->n; i++)
                for (unsigned j = 0; j < spec->n_expect; j++)
                        if (same_address(&addrs->a[i], &spec->expect[j])) {
                                attempt_set_address(a, &addrs->a[i]); /* last_address: the one expected */
                                attempt_end(a, OUTCOME_SUCCESS, "answered %s",
                                            addr_text(&addrs->a[i], one, sizeof(one)));
                                return;
                        }
        for (unsigned i = 0; i < addrs->n && off < sizeof(got); i++) {
                off += (size_t) snprintf(got + off, sizeof(got) - off, "%s%s", i ? ", " : "",
                                         addr_text(&addrs->a[i], one, sizeof(one)));
        }
        if (spec->n_expect == 0)
                attempt_end(a, OUTCOME_SUCCESS, "answered %s", got);
        else
                attempt_end(a, OUTCOME_FAILURE, "dns: %s: answered %s, none expected", spec->host, got);
}

static int dns_start(struct attempt *a, const void *specp, uint64_t timeout_ms)
{
        const struct dns_spec *spec = specp;

        (void) timeout_ms;       /* the lifecycle's deadline is the timeout */
        a->data = (void *) spec; /* no state of its own: the lookup is the attempt's registration */
        return attempt_resolve(a, spec->host, 0, &spec->q, dns_on_resolved);
}

static void dns_cancel(struct attempt *a)
{
        a->data = NULL;
}

static const char *const dns_keys[] = { "host", "record", "server", "expect", NULL };

static int dns_flag_to_json(cJSON *obj, const char *value)
{
        return cJSON_AddStringToObject(obj, "host", value) ? 0 : -ENOMEM;
}

const struct probe_ops dns_probe_ops = {
        .type = "dns",
        .keys = dns_keys,
        .fds_per_attempt = 1, /* the resolver's socket for a `server` of its own (UDP, or TCP after truncation) */
        .flag = { .name = "dns", .arg = "NAME=HOST", .to_json = dns_flag_to_json },
        .parse = dns_parse,
        .free_spec = dns_free_spec,
        .start = dns_start,
        .cancel = dns_cancel,
};
