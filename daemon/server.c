/* The status server.
 *
 * libmicrohttpd runs its own epoll thread pool (SERVER_THREADS), so serving is isolated
 * from probe load. How state is shared with the loop thread: the loop builds an
 * immutable `struct snapshot` and hands it to server_publish(), which also builds the
 * three plain verdict responses for it once (MHD responses are refcounted and may be
 * queued any number of times). Under `lock` we only swap or copy two pointers and take
 * references: a handler takes a reference to the current `struct published` and
 * renders from it with the lock released; the last reference frees it. Nothing a
 * handler reads is ever written after publication.
 *
 * Accepting happens on the event loop (the listen socket is ours; each connection is
 * handed over with MHD_add_connection): out of fds (EMFILE) MHD would retry accept()
 * in a busy loop, while we stop watching the socket for SERVER_ACCEPT_PAUSE_MS instead.
 *
 * Limits are set explicitly (MHD's defaults are 1020 connections and no timeout):
 * connection limit, idle timeout and a per-connection memory pool that bounds the
 * request line and headers (an oversized request gets 414/431 or a closed connection). */
#include <arpa/inet.h>
#include <microhttpd.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "bounds.h"
#include "log.h"
#include "loop.h"
#include "server.h"
#include "util.h"

enum route {
        ROUTE_STARTUP,
        ROUTE_LIVEZ,
        ROUTE_READYZ,
        ROUTE_STATUS,
        ROUTE_METRICS,
        _ROUTE_MAX,
        _ROUTE_INVALID = -EINVAL,
};

static const struct {
        const char *path;
        enum route route;
} routes[] = {
        { "/startup", ROUTE_STARTUP },     { "/health/startup", ROUTE_STARTUP }, { "/livez", ROUTE_LIVEZ },
        { "/health", ROUTE_LIVEZ },        { "/healthz", ROUTE_LIVEZ },          { "/readyz", ROUTE_READYZ },
        { "/health/ready", ROUTE_READYZ }, { "/status", ROUTE_STATUS },          { "/metrics", ROUTE_METRICS },
};

static const unsigned route_scope[] = {
        [ROUTE_STARTUP] = SCOPE_STARTUP,
        [ROUTE_LIVEZ] = SCOPE_LIVENESS,
        [ROUTE_READYZ] = SCOPE_READINESS,
};

#define CT_TEXT "text/plain; charset=utf-8"
#define CT_JSON "application/json"
#define CT_METRICS "text/plain; version=0.0.4; charset=utf-8"

struct published {
        atomic_int refs;
        struct snapshot *snap;
        struct MHD_Response *verdict[ROUTE_READYZ + 1];
        unsigned verdict_status[ROUTE_READYZ + 1];
};

struct server {
        struct MHD_Daemon *mhd;
        struct loop *loop;
        int listen_fd;
        bool paused_logged; /* one log line per run of EMFILE pauses */
        struct timer resume;
        pthread_mutex_t lock;
        struct published *current; /* guarded by lock */
        struct MHD_Response *not_found, *not_allowed, *unavailable, *forbidden;
};

static struct published *published_unref(struct published *p)
{
        if (!p || atomic_fetch_sub(&p->refs, 1) != 1)
                return NULL;
        for (size_t i = 0; i < ELEMENTSOF(p->verdict); i++)
                if (p->verdict[i])
                        MHD_destroy_response(p->verdict[i]);
        snapshot_unref(p->snap);
        free(p);
        return NULL;
}

static struct published *server_current(struct server *srv)
{
        struct published *p;

        pthread_mutex_lock(&srv->lock);
        p = srv->current;
        if (p)
                atomic_fetch_add(&p->refs, 1);
        pthread_mutex_unlock(&srv->lock);
        return p;
}

/* A response with our common headers. body is copied (MUST_FREE when owned). */
static struct MHD_Response *response_new(char *body, size_t len, bool owned, const char *ctype)
{
        struct MHD_Response *r =
                MHD_create_response_from_buffer(len, body, owned ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_MUST_COPY);

        if (!r) {
                if (owned)
                        free(body);
                return NULL;
        }
        MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
        MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
        return r;
}

void server_publish(struct server *srv, struct snapshot *s)
{
        struct published *p = calloc(1, sizeof(*p)), *old;

        if (!p) {
                snapshot_unref(s);
                return;
        }
        atomic_init(&p->refs, 1);
        p->snap = s;
        for (int i = 0; i <= ROUTE_READYZ; i++) {
                int status = 503;
                char *body = render_verdict(s, route_scope[i], false, &status);
                if (!body || !(p->verdict[i] = response_new(body, strlen(body), true, CT_TEXT))) {
                        published_unref(p);
                        return; /* out of memory: keep answering from the previous one */
                }
                p->verdict_status[i] = (unsigned) status;
        }
        pthread_mutex_lock(&srv->lock);
        old = srv->current;
        srv->current = p;
        pthread_mutex_unlock(&srv->lock);
        published_unref(old);
}

static enum MHD_Result find_verbose(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
        bool *found = cls;

        (void) kind;
        (void) value;
        if (strcmp(key, "verbose") == 0) {
                *found = true;
                return MHD_NO; /* stop iterating */
        }
        return MHD_YES;
}

static void process_figures(uint64_t *ret_rss, double *ret_cpu)
{
        struct timespec ts;
        unsigned long size = 0, resident = 0;
        FILE *f = fopen("/proc/self/statm", "re");

        if (f) {
                if (fscanf(f, "%lu %lu", &size, &resident) != 2)
                        resident = 0;
                fclose(f);
        }
        *ret_rss = (uint64_t) resident * (uint64_t) sysconf(_SC_PAGESIZE);
        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
        *ret_cpu = (double) ts.tv_sec + (double) ts.tv_nsec / 1e9;
}

/* Is the client on this host? ("details": "loopback" hides /status and ?verbose from
 * everyone else: they reveal internal URLs and error texts.) */
static bool client_is_loopback(struct MHD_Connection *c)
{
        const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
        const struct sockaddr *sa = ci ? ci->client_addr : NULL;

        if (!sa)
                return false;
        if (sa->sa_family == AF_INET)
                return (ntohl(((const struct sockaddr_in *) sa)->sin_addr.s_addr) >> 24) == 127;
        if (sa->sa_family == AF_INET6) {
                const struct in6_addr *a = &((const struct sockaddr_in6 *) sa)->sin6_addr;
                return IN6_IS_ADDR_LOOPBACK(a) || (IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127);
        }
        return false;
}

static enum MHD_Result queue_owned(struct MHD_Connection *c, unsigned status, char *body, const char *ctype)
{
        struct MHD_Response *r;
        enum MHD_Result ret;

        if (!body)
                return MHD_NO; /* out of memory: close the connection */
        r = response_new(body, strlen(body), true, ctype);
        if (!r)
                return MHD_NO;
        ret = MHD_queue_response(c, status, r);
        MHD_destroy_response(r);
        return ret;
}

static enum MHD_Result server_handle(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                     const char *version, const char *upload_data, size_t *upload_data_size,
                                     void **con_cls)
{
        struct server *srv = cls;
        enum route route = _ROUTE_INVALID;
        struct published *p;
        enum MHD_Result ret;
        bool verbose = false;

        static int headers_seen; /* only its address is used, as a marker */

        (void) version;
        (void) upload_data;
        if (!*con_cls) {
                /* First call: headers only. Answering now would be an "early response",
                 * after which MHD 0.9.75 closes the connection: no keep-alive. */
                *con_cls = &headers_seen;
                return MHD_YES;
        }
        if (*upload_data_size) {
                *upload_data_size = 0; /* we take no body: discard it */
                return MHD_YES;
        }
        for (size_t i = 0; i < ELEMENTSOF(routes); i++)
                if (strcmp(url, routes[i].path) == 0)
                        route = routes[i].route;
        if (route == _ROUTE_INVALID)
                return MHD_queue_response(c, MHD_HTTP_NOT_FOUND, srv->not_found);
        if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 && strcmp(method, MHD_HTTP_METHOD_HEAD) != 0)
                return MHD_queue_response(c, MHD_HTTP_METHOD_NOT_ALLOWED, srv->not_allowed);
        p = server_current(srv);
        if (!p)
                return MHD_queue_response(c, MHD_HTTP_SERVICE_UNAVAILABLE, srv->unavailable);
        bool details = !p->snap->details_loopback || client_is_loopback(c);
        switch (route) {
        case ROUTE_STARTUP:
        case ROUTE_LIVEZ:
        case ROUTE_READYZ:
                if (details)
                        MHD_get_connection_values(c, MHD_GET_ARGUMENT_KIND, find_verbose, &verbose);
                if (!verbose) {
                        ret = MHD_queue_response(c, p->verdict_status[route], p->verdict[route]);
                } else {
                        int status = 503;
                        char *body = render_verdict(p->snap, route_scope[route], true, &status);
                        ret = queue_owned(c, (unsigned) status, body, CT_TEXT);
                }
                break;
        case ROUTE_STATUS:
                if (details)
                        ret = queue_owned(c, MHD_HTTP_OK, render_status_json(p->snap, now_ns()), CT_JSON);
                else
                        ret = MHD_queue_response(c, MHD_HTTP_FORBIDDEN, srv->forbidden);
                break;
        case ROUTE_METRICS: {
                uint64_t rss;
                double cpu;
                process_figures(&rss, &cpu);
                ret = queue_owned(c, MHD_HTTP_OK, render_metrics(p->snap, rss, cpu), CT_METRICS);
                break;
        }
        default:
                ret = MHD_NO;
        }
        published_unref(p);
        return ret;
}

/* libmicrohttpd's messages as our log lines, at most SERVER_LOG_BURST a second: out of
 * fds it retries accept() and reports each EMFILE, which must not flood the log. */
static void server_log(void *cls, const char *fmt, va_list ap)
{
        static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
        static uint64_t window_start;
        static unsigned in_window, suppressed;
        uint64_t now = now_ns();
        unsigned dropped = 0;
        char msg[512];

        (void) cls;
        pthread_mutex_lock(&lock);
        if (now - window_start >= NSEC_PER_SEC) {
                window_start = now;
                in_window = 0;
                dropped = suppressed;
                suppressed = 0;
        }
        if (in_window >= SERVER_LOG_BURST) {
                suppressed++;
                pthread_mutex_unlock(&lock);
                return;
        }
        in_window++;
        pthread_mutex_unlock(&lock);
        if (dropped) {
                char n[16];
                snprintf(n, sizeof(n), "%u", dropped);
                log_kv(LOG_LEVEL_WARNING, "Status server messages suppressed", "event", "http", "suppressed", n, NULL);
        }
        vsnprintf(msg, sizeof(msg), fmt, ap);
        msg[strcspn(msg, "\n")] = '\0';
        log_kv(LOG_LEVEL_WARNING, "Status server", "event", "http", "error", msg, NULL);
}

static int listen_socket(const char *listen_s, uint16_t *ret_port, char **reterr)
{
        struct addr_list addrs;
        struct sockaddr_storage addr;
        socklen_t sl = sizeof(addr);
        int fd = -1, one = 1;

        if (address_resolve(listen_s, true, &addrs) < 0) {
                *reterr = strdup_printf("listen: \"%s\" is not ADDR:PORT", listen_s);
                return -EINVAL;
        }
        fd = socket(addrs.a[0].sa.sa_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0)
                goto fail;
        (void) setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (bind(fd, &addrs.a[0].sa, addrs.len[0]) < 0 || listen(fd, SERVER_LISTEN_BACKLOG) < 0 ||
            getsockname(fd, (struct sockaddr *) &addr, &sl) < 0)
                goto fail;
        *ret_port = ntohs(addr.ss_family == AF_INET6 ? ((struct sockaddr_in6 *) &addr)->sin6_port
                                                     : ((struct sockaddr_in *) &addr)->sin_port);
        return fd;
fail:
        *reterr = strdup_printf("cannot listen on %s: %s", listen_s, strerror(errno));
        if (fd >= 0)
                (void) close(fd);
        return -EIO;
}

static loop_io_fn server_on_accept;

static int server_watch(struct server *srv)
{
        return loop_io_add(srv->loop, srv->listen_fd, EPOLLIN, server_on_accept, srv);
}

static void server_on_resume(struct loop *l, void *data)
{
        struct server *srv = data;

        if (server_watch(srv) < 0) /* never deaf for good: try again after a pause */
                loop_timer_arm(l, &srv->resume, now_ns() + SERVER_ACCEPT_PAUSE_MS * NSEC_PER_MSEC);
}

static void server_on_accept(struct loop *l, int fd, uint32_t events, void *data)
{
        struct server *srv = data;

        (void) events;
        for (int i = 0; i < SERVER_ACCEPT_BATCH; i++) {
                struct sockaddr_storage sa;
                socklen_t len = sizeof(sa);
                int c = accept4(fd, (struct sockaddr *) &sa, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);

                if (c < 0) {
                        if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                                if (!srv->paused_logged)
                                        log_kv(LOG_LEVEL_WARNING,
                                               "Failed to accept a status connection, pausing accepts", "event", "http",
                                               "error", strerror(errno), NULL);
                                srv->paused_logged = true;
                                loop_io_del(l, fd);
                                loop_timer_arm(l, &srv->resume, now_ns() + SERVER_ACCEPT_PAUSE_MS * NSEC_PER_MSEC);
                        }
                        return; /* EAGAIN: all accepted; ECONNABORTED etc.: the client left */
                }
                srv->paused_logged = false;
                /* MHD owns c from here, and closes it itself when it cannot take it. */
                (void) MHD_add_connection(srv->mhd, c, (struct sockaddr *) &sa, len);
        }
}

struct server *server_new(const char *listen_s, struct loop *loop, uint16_t *ret_port, char **reterr)
{
        static const char not_found[] = "not found\n", not_allowed[] = "method not allowed\n",
                          unavailable[] = "starting\n",
                          forbidden[] = "/status is only served to loopback clients (\"details\": \"loopback\")\n";
        struct server *srv = calloc(1, sizeof(*srv));
        uint16_t port = 0;

        if (!srv)
                return NULL;
        srv->listen_fd = -1;
        srv->loop = loop;
        timer_init(&srv->resume, server_on_resume, srv);
        pthread_mutex_init(&srv->lock, NULL);
        srv->not_found = response_new((char *) not_found, sizeof(not_found) - 1, false, CT_TEXT);
        srv->not_allowed = response_new((char *) not_allowed, sizeof(not_allowed) - 1, false, CT_TEXT);
        srv->unavailable = response_new((char *) unavailable, sizeof(unavailable) - 1, false, CT_TEXT);
        srv->forbidden = response_new((char *) forbidden, sizeof(forbidden) - 1, false, CT_TEXT);
        if (!srv->not_found || !srv->not_allowed || !srv->unavailable || !srv->forbidden)
                return server_free(srv);
        MHD_add_response_header(srv->not_allowed, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
        srv->listen_fd = listen_socket(listen_s, &port, reterr);
        if (srv->listen_fd < 0)
                return server_free(srv);
        /* MHD_USE_TURBO: optimistic reads, no shutdown() before close: about 10% more
         * /livez requests/s (make bench), which is where nginx is the reference. */
        srv->mhd = MHD_start_daemon(MHD_USE_EPOLL_INTERNAL_THREAD | MHD_USE_ERROR_LOG | MHD_USE_ITC |
                                            MHD_USE_NO_LISTEN_SOCKET | MHD_USE_TURBO,
                                    0, NULL, NULL, server_handle, srv, MHD_OPTION_EXTERNAL_LOGGER, server_log, NULL,
                                    MHD_OPTION_THREAD_POOL_SIZE, (unsigned) SERVER_THREADS, MHD_OPTION_CONNECTION_LIMIT,
                                    (unsigned) SERVER_CONNECTION_LIMIT, MHD_OPTION_PER_IP_CONNECTION_LIMIT,
                                    (unsigned) SERVER_PER_IP_LIMIT, MHD_OPTION_CONNECTION_TIMEOUT,
                                    (unsigned) SERVER_CONNECTION_TIMEOUT_S, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
                                    (size_t) SERVER_MEMORY_LIMIT, MHD_OPTION_END);
        if (!srv->mhd) {
                *reterr = strdup_printf("cannot start the status server on %s", listen_s);
                return server_free(srv);
        }
        if (server_watch(srv) < 0) {
                *reterr = strdup_printf("cannot watch the status server socket on %s", listen_s);
                return server_free(srv);
        }
        *ret_port = port;
        return srv;
}

struct server *server_free(struct server *srv)
{
        if (!srv)
                return NULL;
        loop_timer_disarm(srv->loop, &srv->resume);
        loop_io_del(srv->loop, srv->listen_fd); /* nothing when it is not watched */
        if (srv->mhd)
                MHD_stop_daemon(srv->mhd); /* joins the threads */
        if (srv->listen_fd >= 0)
                (void) close(srv->listen_fd);
        published_unref(srv->current);
        if (srv->not_found)
                MHD_destroy_response(srv->not_found);
        if (srv->not_allowed)
                MHD_destroy_response(srv->not_allowed);
        if (srv->unavailable)
                MHD_destroy_response(srv->unavailable);
        if (srv->forbidden)
                MHD_destroy_response(srv->forbidden);
        pthread_mutex_destroy(&srv->lock);
        free(srv);
        return NULL;
}
