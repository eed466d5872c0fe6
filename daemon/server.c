/* The status server: start and stop, publishing, routing and the request handler
 * (docs/design.md, "Where each concern lives"; README.md, "HTTP endpoints").
 *
 * libmicrohttpd runs its own epoll thread pool (SERVER_THREADS), so serving is isolated
 * from probe load. How state is shared with the loop thread: the loop builds an
 * immutable `struct snapshot` and hands it to server_publish(), which also builds the
 * three plain verdict responses for it once (MHD responses are refcounted and may be
 * queued any number of times). Under `lock` we only swap or copy two pointers and take
 * references: a handler takes a reference to the current `struct published` and
 * answers from it with the lock released; the last reference frees it. Nothing a
 * handler reads is ever written after publication.
 *
 * Elsewhere: the accept thread, probed's connection limit and shedding in
 * daemon/server_conn.c; the shared /status and /metrics documents and their streaming
 * in daemon/server_docs.c; the freshness wait and the watchdog in daemon/server_fresh.c;
 * what they share in include/server_int.h.
 *
 * Stopping never waits on MHD's threads for more than SERVER_STOP_WAIT_MS: a helper
 * thread stops them, and if it does not finish in time we leave without it, leaking on
 * purpose what they may still use, except the loop's heartbeat (it goes with the loop):
 * threads count themselves in and out of it, and none enters once stopping is set.
 *
 * Limits are set explicitly (MHD's defaults are 1020 connections and no timeout):
 * connection limits, idle timeout and a per-connection memory pool that bounds the
 * request line and headers (an oversized request gets 414/431 or a closed connection). */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "bounds.h"
#include "log.h"
#include "loop.h"
#include "server.h"
#include "server_int.h"
#include "util.h"

static const struct {
        const char *path;
        enum route route;
} routes[] = {
        { "/startup", ROUTE_STARTUP },     { "/health/startup", ROUTE_STARTUP }, { "/livez", ROUTE_LIVEZ },
        { "/health", ROUTE_LIVEZ },        { "/healthz", ROUTE_LIVEZ },          { "/readyz", ROUTE_READYZ },
        { "/health/ready", ROUTE_READYZ }, { "/status", ROUTE_STATUS },          { "/metrics", ROUTE_METRICS },
};

const unsigned route_scope[ROUTE_READYZ + 1] = {
        [ROUTE_STARTUP] = SCOPE_STARTUP,
        [ROUTE_LIVEZ] = SCOPE_LIVENESS,
        [ROUTE_READYZ] = SCOPE_READINESS,
};

#define CT_TEXT "text/plain; charset=utf-8"

struct published *published_unref(struct published *p)
{
        if (!p || atomic_fetch_sub(&p->refs, 1) != 1)
                return NULL;
        for (size_t i = 0; i < ELEMENTSOF(p->verdict); i++)
                if (p->verdict[i])
                        MHD_destroy_response(p->verdict[i]);
        for (size_t i = 0; i < ELEMENTSOF(p->doc); i++)
                doc_unref(p->doc[i]);
        pthread_mutex_destroy(&p->render_lock);
        snapshot_unref(p->snap);
        free(p);
        return NULL;
}

struct published *server_current(struct server *srv)
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
        pthread_mutex_init(&p->render_lock, NULL);
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
        server_grpc_published(srv); /* Watch calls follow it */
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

/* The path of an origin-form or absolute-form request target ("http://h:p/livez",
 * what proxies and `curl -x` send); MHD has already split off the query. */
static const char *request_path(const char *url)
{
        const char *slash;

        if (strncasecmp(url, "http://", 7) == 0)
                url += 7;
        else if (strncasecmp(url, "https://", 8) == 0)
                url += 8;
        else
                return url;
        slash = strchr(url, '/');
        return slash ? slash : "/";
}

/* The route of an origin-form or absolute-form request target, _ROUTE_INVALID for an
 * unknown path. */
enum route route_of(const char *url)
{
        enum route route = _ROUTE_INVALID;

        url = request_path(url);
        for (size_t i = 0; i < ELEMENTSOF(routes); i++)
                if (strcmp(url, routes[i].path) == 0)
                        route = routes[i].route;
        return route;
}

/* A verdict: the response built at publication, or with ?verbose (when details may be
 * shown) one rendered for this request. */
static enum MHD_Result answer_verdict(struct MHD_Connection *c, struct published *p, enum route route, bool details)
{
        bool verbose = false;
        int status = 503;
        char *body;

        if (details)
                MHD_get_connection_values(c, MHD_GET_ARGUMENT_KIND, find_verbose, &verbose);
        if (!verbose)
                return MHD_queue_response(c, p->verdict_status[route], p->verdict[route]);
        body = render_verdict(p->snap, route_scope[route], true, &status);
        return queue_owned(c, (unsigned) status, body, CT_TEXT);
}

/* A routed GET or HEAD, answered from the latest published snapshot. */
static enum MHD_Result answer_route(struct server *srv, struct MHD_Connection *c, struct conn *k, enum route route)
{
        struct published *p = server_current(srv);
        enum MHD_Result ret;
        bool details;

        if (!p)
                return MHD_queue_response(c, MHD_HTTP_SERVICE_UNAVAILABLE, srv->unavailable);
        details = !p->snap->details_loopback || client_is_loopback(c);
        switch (route) {
        case ROUTE_STARTUP:
        case ROUTE_LIVEZ:
        case ROUTE_READYZ:
                ret = answer_verdict(c, p, route, details);
                break;
        case ROUTE_STATUS:
                if (!details) {
                        ret = MHD_queue_response(c, MHD_HTTP_FORBIDDEN, srv->forbidden);
                        break;
                }
                ret = answer_doc(srv, c, k, p, DOC_STATUS);
                break;
        case ROUTE_METRICS:
                ret = answer_doc(srv, c, k, p, DOC_METRICS);
                break;
        default:
                ret = MHD_NO;
        }
        published_unref(p);
        return ret;
}

static enum MHD_Result server_handle(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                     const char *version, const char *upload_data, size_t *upload_data_size,
                                     void **con_cls)
{
        struct server *srv = cls;
        struct conn *k = conn_of(c);
        enum route route;
        uint64_t behind = 0;

        static int headers_seen; /* only its address is used, as a marker */

        (void) version;
        (void) upload_data;
        if (!*con_cls) {
                /* First call: headers only. Answering now would be an "early response",
                 * after which MHD 0.9.75 closes the connection: no keep-alive. */
                *con_cls = &headers_seen;
                if (k) {
                        k->arrival_ns = now_ns();
                        atomic_store(&k->busy, true); /* a complete request: not shed */
                }
                return MHD_YES;
        }
        if (*upload_data_size) {
                *upload_data_size = 0; /* we take no body: discard it */
                return MHD_YES;
        }
        if (k && k->suspended) {
                /* resumed by the render thread: its body, or nothing when stopping */
                struct doc *d = k->doc;
                k->suspended = false;
                k->doc = NULL;
                return d ? queue_doc(srv, c, d) : MHD_NO;
        }
        route = route_of(url);
        if (route == _ROUTE_INVALID)
                return MHD_queue_response(c, MHD_HTTP_NOT_FOUND, srv->not_found);
        if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 && strcmp(method, MHD_HTTP_METHOD_HEAD) != 0)
                return MHD_queue_response(c, MHD_HTTP_METHOD_NOT_ALLOWED, srv->not_allowed);
        if (server_fresh_stuck(srv, k, route, &behind)) {
                char *body = strdup_printf("probed: event loop stuck for %" PRIu64 "s\n",
                                           (uint64_t) (behind / NSEC_PER_SEC));
                return queue_owned(c, MHD_HTTP_SERVICE_UNAVAILABLE, body, CT_TEXT);
        }
        return answer_route(srv, c, k, route);
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

        /* resolved now, when the server starts (blocking, before the loop runs): config
         * loading does no DNS (README "Names") */
        if (address_resolve(listen_s, true, &addrs) < 0) {
                *reterr = strdup_printf("listen: cannot resolve \"%s\"", listen_s);
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

struct server *server_new(const char *listen_s, struct loop *loop, uint16_t *ret_port, char **reterr)
{
        static const char not_found[] = "not found\n", not_allowed[] = "method not allowed\n",
                          unavailable[] = "starting\n",
                          forbidden[] = "/status is only served to loopback clients (\"details\": \"loopback\")\n";
        struct server *srv = calloc(1, sizeof(*srv));
        uint16_t port = 0;

        if (!srv)
                return NULL;
        srv->listen_fd = srv->stop_fd = -1;
        srv->sniff_ep = -1;
        srv->hb = loop ? loop_heartbeat(loop) : NULL;
        pthread_mutex_init(&srv->lock, NULL);
        pthread_mutex_init(&srv->conn_lock, NULL);
        pthread_mutex_init(&srv->doc_lock, NULL);
        pthread_mutex_init(&srv->job_lock, NULL);
        pthread_cond_init(&srv->job_cond, NULL);
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
        srv->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (srv->stop_fd < 0) {
                *reterr = strdup_printf("cannot start the status server: %s", strerror(errno));
                return server_free(srv);
        }
        /* MHD_USE_TURBO: optimistic reads, no shutdown() before close: about 10% more
         * /livez requests/s (make bench), which is where nginx is the reference. */
        srv->mhd = MHD_start_daemon(
                MHD_USE_EPOLL_INTERNAL_THREAD | MHD_USE_ERROR_LOG | MHD_USE_ITC | MHD_USE_NO_LISTEN_SOCKET |
                        MHD_USE_TURBO | MHD_ALLOW_SUSPEND_RESUME,
                0, NULL, NULL, server_handle, srv, MHD_OPTION_EXTERNAL_LOGGER, server_log, NULL,
                MHD_OPTION_NOTIFY_CONNECTION, server_notify_connection, srv, MHD_OPTION_NOTIFY_COMPLETED,
                server_completed, srv, MHD_OPTION_THREAD_POOL_SIZE, (unsigned) SERVER_THREADS,
                MHD_OPTION_CONNECTION_LIMIT, (unsigned) SERVER_MHD_CONNECTION_LIMIT, MHD_OPTION_PER_IP_CONNECTION_LIMIT,
                (unsigned) SERVER_PER_IP_LIMIT, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned) SERVER_CONNECTION_TIMEOUT_S,
                MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t) SERVER_MEMORY_LIMIT, MHD_OPTION_END);
        if (!srv->mhd) {
                *reterr = strdup_printf("cannot start the status server on %s", listen_s);
                return server_free(srv);
        }
        /* gRPC health on the same port (daemon/server_grpc.c): the accept thread classifies
         * connections by their first bytes */
        srv->sniff_ep = epoll_create1(EPOLL_CLOEXEC);
        if (srv->sniff_ep < 0 || server_grpc_start(srv) < 0) {
                *reterr = strdup_printf("cannot start the status server's gRPC threads on %s", listen_s);
                return server_free(srv);
        }
        if (pthread_create(&srv->acceptor, NULL, server_accept_main, srv) != 0) {
                *reterr = strdup_printf("cannot start the status server's accept thread on %s", listen_s);
                return server_free(srv);
        }
        srv->acceptor_started = true;
        if (pthread_create(&srv->renderer, NULL, server_render_main, srv) == 0)
                srv->renderer_started = true; /* else bodies are rendered on MHD's threads */
        *ret_port = port;
        return srv;
}

/* Stopping MHD's threads, on a thread of its own so that server_free can give up on it. */
struct stopper {
        struct server *srv;
        pthread_mutex_t lock;
        pthread_cond_t cond; /* CLOCK_MONOTONIC */
        bool done;
};

static void *server_stop_main(void *data)
{
        struct stopper *st = data;
        struct server *srv = st->srv;

        if (srv->acceptor_started)
                pthread_join(srv->acceptor, NULL);
        server_grpc_stop(srv);
        server_render_stop(srv);
        if (srv->mhd)
                MHD_stop_daemon(srv->mhd); /* joins the threads, closes the connections */
        pthread_mutex_lock(&st->lock);
        st->done = true;
        pthread_cond_signal(&st->cond);
        pthread_mutex_unlock(&st->lock);
        return NULL;
}

/* Stops the accept thread and MHD within SERVER_STOP_WAIT_MS; false if they did not
 * (then nothing they may still touch can be freed). */
static bool server_stop(struct server *srv)
{
        struct stopper *st;
        pthread_condattr_t ca;
        pthread_t t;
        uint64_t end;
        bool done;

        if (!srv->acceptor_started && !srv->renderer_started && !srv->mhd)
                return true;
        if (srv->stop_fd >= 0)
                (void) eventfd_write(srv->stop_fd, 1);
        st = calloc(1, sizeof(*st));
        if (!st) {
                struct stopper local = { .srv = srv };
                pthread_mutex_init(&local.lock, NULL);
                pthread_cond_init(&local.cond, NULL);
                server_stop_main(&local); /* no memory to spare: wait for it here */
                pthread_cond_destroy(&local.cond);
                pthread_mutex_destroy(&local.lock);
                return true;
        }
        st->srv = srv;
        pthread_mutex_init(&st->lock, NULL);
        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        pthread_cond_init(&st->cond, &ca);
        pthread_condattr_destroy(&ca);
        if (pthread_create(&t, NULL, server_stop_main, st) != 0) {
                server_stop_main(st); /* no thread to spare: wait for it here */
        } else {
                end = now_ns() + SERVER_STOP_WAIT_MS * NSEC_PER_MSEC;
                pthread_mutex_lock(&st->lock);
                while (!st->done) {
                        struct timespec ts = { .tv_sec = (time_t) (end / NSEC_PER_SEC),
                                               .tv_nsec = (long) (end % NSEC_PER_SEC) };
                        if (pthread_cond_timedwait(&st->cond, &st->lock, &ts) == ETIMEDOUT)
                                break;
                }
                done = st->done;
                pthread_mutex_unlock(&st->lock);
                if (!done) {
                        /* st and srv stay allocated: the thread may still use them */
                        pthread_detach(t);
                        log_kv(LOG_LEVEL_WARNING, "Status server threads did not stop in time, exiting without them",
                               "event", "shutdown", NULL);
                        return false;
                }
                pthread_join(t, NULL);
        }
        pthread_cond_destroy(&st->cond);
        pthread_mutex_destroy(&st->lock);
        free(st);
        return true;
}

struct server *server_free(struct server *srv)
{
        if (!srv)
                return NULL;
        atomic_store(&srv->stopping, true);
        if (!server_stop(srv)) {
                /* On purpose: their threads may still use all of it. But not the loop's
                 * heartbeat, which goes with the loop. */
                server_hb_wait_unused(srv);
                return NULL;
        }
        server_grpc_free(srv);
        if (srv->sniff_ep >= 0)
                (void) close(srv->sniff_ep);
        if (srv->listen_fd >= 0)
                (void) close(srv->listen_fd);
        if (srv->stop_fd >= 0)
                (void) close(srv->stop_fd);
        published_unref(srv->current);
        if (srv->not_found)
                MHD_destroy_response(srv->not_found);
        if (srv->not_allowed)
                MHD_destroy_response(srv->not_allowed);
        if (srv->unavailable)
                MHD_destroy_response(srv->unavailable);
        if (srv->forbidden)
                MHD_destroy_response(srv->forbidden);
        pthread_mutex_destroy(&srv->doc_lock);
        pthread_cond_destroy(&srv->job_cond);
        pthread_mutex_destroy(&srv->job_lock);
        pthread_mutex_destroy(&srv->conn_lock);
        pthread_mutex_destroy(&srv->lock);
        free(srv);
        return NULL;
}
