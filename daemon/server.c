/* The status server.
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
 * /status and /metrics (megabytes with 10,000 probes) are rendered once per published
 * snapshot, on the first request, into a refcounted `struct doc` that every request
 * sending it shares. Rendering takes tens of ms, so it happens on a render thread of
 * ours while the request is suspended (MHD_suspend_connection; the render thread
 * resumes it): MHD's threads never wait for a render, nor do the /livez requests they
 * serve. A request's response is a callback that streams a small
 * per-request part (the /status head with uptime, the /metrics tail with the process
 * figures and the heartbeat's age) joined to the shared body. What bodies are alive,
 * mostly held by slow readers, is counted in bytes: past SERVER_DOC_BUDGET a request
 * reuses the latest rendered body instead of rendering another (README.md, "Status
 * server limits").
 *
 * Accepting happens on a thread of ours (the listen socket is ours; each connection is
 * handed over with MHD_add_connection), so a busy or stuck event loop never stops the
 * server from accepting, which the watchdog needs. Out of fds (EMFILE) it stops
 * accepting for SERVER_ACCEPT_PAUSE_MS rather than retrying in a busy loop.
 *
 * Connections are counted here (MHD_OPTION_NOTIFY_CONNECTION), and libmicrohttpd's own
 * limit is set above anything we admit: 0.9.75 leaves a mutex locked when a connection
 * arrives at its limit and never serves again. At SERVER_CONNECTION_LIMIT each new
 * connection sheds the oldest one without a complete request: shutdown() on its socket,
 * from under conn_lock, which MHD's CLOSED notification also takes before MHD closes the
 * fd (so the fd is still MHD's when we shut it down); MHD then sees the end of the
 * stream and closes it in its own thread. Past SERVER_CONNECTION_HARD_LIMIT a new
 * connection is closed at once.
 *
 * The loop's heartbeat (include/heartbeat.h): the verdict endpoints, /status and
 * /metrics first wait (at most fresh_wait) until the loop has caught up with the
 * request's arrival, so answers after a freeze reflect the present; when nothing froze
 * that costs two atomic reads. A loop behind by the watchdog that makes no progress in
 * SERVER_WATCHDOG_GRACE_MS is stuck: the verdicts answer 503 (docs/design.md,
 * "Freshness and the watchdog").
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
#include <inttypes.h>
#include <microhttpd.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "bounds.h"
#include "heartbeat.h"
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

enum doc_kind {
        DOC_STATUS,
        DOC_METRICS,
        _DOC_MAX,
};

/* A rendered /status or /metrics body, shared by every request that sends it. */
struct doc {
        atomic_int refs;
        struct server *srv;
        enum doc_kind kind;
        struct snapshot *snap; /* the body's snapshot: the /status head comes from it too */
        char *text;
        size_t len;
};

struct published {
        atomic_int refs;
        struct snapshot *snap;
        struct MHD_Response *verdict[ROUTE_READYZ + 1];
        unsigned verdict_status[ROUTE_READYZ + 1];
        pthread_mutex_t render_lock; /* one render per body */
        struct doc *doc[_DOC_MAX];   /* guarded by render_lock; NULL until first asked */
};

/* One connection MHD serves (its socket context). */
struct conn {
        struct conn *prev, *next; /* srv->conns, oldest first; guarded by conn_lock */
        bool linked;              /* in srv->conns (shed ones are not); guarded by conn_lock */
        int fd;                   /* MHD's: only shut down, under conn_lock, never closed here */
        atomic_bool busy;         /* a complete request is being answered: never shed */
        uint64_t arrival_ns;      /* the request's arrival; MHD's thread of the connection only */
        bool suspended;           /* waiting for the render thread */
        struct doc *doc;          /* what the render thread rendered for it (a reference) */
};

/* A body to render for a suspended connection. */
struct job {
        struct job *next;
        struct MHD_Connection *c;
        struct conn *k;
        struct published *p; /* a reference */
        enum doc_kind kind;
};

struct server {
        struct MHD_Daemon *mhd;
        struct heartbeat *hb; /* the loop's; NULL: no freshness wait, no watchdog */
        int listen_fd, stop_fd;
        pthread_t acceptor;
        bool acceptor_started;
        atomic_bool stopping;

        pthread_mutex_t lock;
        struct published *current; /* guarded by lock */
        struct MHD_Response *not_found, *not_allowed, *unavailable, *forbidden;

        pthread_mutex_t conn_lock;
        struct conn *conns_head, *conns_tail; /* guarded by conn_lock */
        unsigned n_conns;                     /* admitted and not closed yet, shed ones included */
        unsigned n_shed;                      /* shut down by us, not closed by MHD yet */

        pthread_mutex_t doc_lock;
        size_t doc_bytes;              /* guarded by doc_lock: bytes of every doc alive */
        struct doc *latest[_DOC_MAX];  /* guarded by doc_lock: last rendered, NULL once freed */

        pthread_t renderer; /* renders bodies while their requests are suspended */
        bool renderer_started;
        pthread_mutex_t job_lock;
        pthread_cond_t job_cond;
        struct job *jobs_head, *jobs_tail; /* guarded by job_lock */
        bool jobs_stop;                    /* guarded by job_lock */

        /* threads using hb right now, one counter per thread (its own cache line): a
         * server_free that gave up on MHD's threads waits for them to leave the loop's
         * memory before the loop is freed */
        struct {
                _Alignas(64) atomic_uint n;
        } hb_users[SERVER_THREADS + 2];
        atomic_uint hb_users_next;

        atomic_bool stuck;             /* in a watchdog episode (logged once) */
        _Atomic uint64_t stuck_done;   /* the heartbeat's done_ns when the episode began */
};

static struct doc *doc_unref(struct doc *d)
{
        struct server *srv;

        if (!d || atomic_fetch_sub(&d->refs, 1) != 1)
                return NULL;
        srv = d->srv;
        pthread_mutex_lock(&srv->doc_lock);
        srv->doc_bytes -= d->len;
        if (srv->latest[d->kind] == d)
                srv->latest[d->kind] = NULL;
        pthread_mutex_unlock(&srv->doc_lock);
        free(d->text);
        snapshot_unref(d->snap);
        free(d);
        return NULL;
}

/* A reference unless the doc is on its way out (refs reached 0: never revived). */
static bool doc_tryref(struct doc *d)
{
        int n = atomic_load(&d->refs);

        while (n > 0)
                if (atomic_compare_exchange_weak(&d->refs, &n, n + 1))
                        return true;
        return false;
}

static struct published *published_unref(struct published *p)
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

/* The body of kind for p without rendering: p's own, or the latest rendered one (maybe
 * of an older snapshot) while bodies alive exceed SERVER_DOC_BUDGET. Called with
 * p->render_lock held. A reference, or NULL: it must be rendered. */
static struct doc *server_doc_ready(struct server *srv, struct published *p, enum doc_kind kind)
{
        struct doc *d = p->doc[kind], *latest;

        if (d) {
                atomic_fetch_add(&d->refs, 1);
                return d;
        }
        pthread_mutex_lock(&srv->doc_lock);
        latest = srv->latest[kind];
        /* a new body about the size of the latest one would not fit: share the latest */
        if (latest && srv->doc_bytes + latest->len > SERVER_DOC_BUDGET && doc_tryref(latest))
                d = latest;
        pthread_mutex_unlock(&srv->doc_lock);
        return d;
}

/* server_doc_ready for an MHD thread, which must never wait for a render: NULL (to be
 * rendered) while p's body is being rendered. */
static struct doc *server_doc_lookup(struct server *srv, struct published *p, enum doc_kind kind)
{
        struct doc *d;

        if (pthread_mutex_trylock(&p->render_lock) != 0)
                return NULL;
        d = server_doc_ready(srv, p, kind);
        pthread_mutex_unlock(&p->render_lock);
        return d;
}

/* The body of kind for p, rendered unless server_doc_ready has one (on the render
 * thread: rendering 10,000 probes takes tens of ms, which must not hold up an MHD
 * thread and the /livez requests it serves). A reference; NULL on ENOMEM. */
static struct doc *server_doc(struct server *srv, struct published *p, enum doc_kind kind)
{
        struct doc *d;
        size_t len = 0;
        char *text;

        pthread_mutex_lock(&p->render_lock);
        d = server_doc_ready(srv, p, kind);
        if (d) {
                pthread_mutex_unlock(&p->render_lock);
                return d;
        }

        text = kind == DOC_STATUS ? render_status_body(p->snap, &len) : render_metrics_body(p->snap, &len);
        d = text ? calloc(1, sizeof(*d)) : NULL;
        if (!d) {
                free(text);
                pthread_mutex_unlock(&p->render_lock);
                return NULL;
        }
        atomic_init(&d->refs, 2); /* p's and the caller's */
        d->srv = srv;
        d->kind = kind;
        d->snap = snapshot_ref(p->snap);
        d->text = text;
        d->len = len;
        pthread_mutex_lock(&srv->doc_lock);
        srv->doc_bytes += len;
        srv->latest[kind] = d;
        pthread_mutex_unlock(&srv->doc_lock);
        p->doc[kind] = d;
        pthread_mutex_unlock(&p->render_lock);
        return d;
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
}

/* One request's /status or /metrics: its own small part joined to a shared body
 * (/status: part then body; /metrics: body then part). */
struct reply {
        struct doc *doc;
        bool part_first;
        size_t part_len;
        char part[RENDER_PART_MAX];
};

static ssize_t reply_read(void *cls, uint64_t pos, char *buf, size_t max)
{
        struct reply *r = cls;
        const char *seg[2] = { r->doc->text, r->part };
        size_t seg_len[2] = { r->doc->len, r->part_len }, n = 0;

        if (r->part_first) {
                seg[0] = r->part, seg_len[0] = r->part_len;
                seg[1] = r->doc->text, seg_len[1] = r->doc->len;
        }
        for (int i = 0; i < 2 && n < max; i++) {
                size_t k;
                if (pos >= seg_len[i]) {
                        pos -= seg_len[i];
                        continue;
                }
                k = seg_len[i] - (size_t) pos;
                if (k > max - n)
                        k = max - n;
                memcpy(buf + n, seg[i] + pos, k);
                n += k;
                pos = 0;
        }
        return n ? (ssize_t) n : MHD_CONTENT_READER_END_OF_STREAM;
}

static void reply_free(void *cls)
{
        struct reply *r = cls;

        doc_unref(r->doc);
        free(r);
}

/* Queues r (taken over) as a 200 response. */
static enum MHD_Result queue_reply(struct MHD_Connection *c, struct reply *r, const char *ctype)
{
        struct MHD_Response *resp = MHD_create_response_from_callback(
                (uint64_t) r->part_len + r->doc->len, SERVER_REPLY_BLOCK, reply_read, r, reply_free);
        enum MHD_Result ret;

        if (!resp) {
                reply_free(r);
                return MHD_NO;
        }
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
        ret = MHD_queue_response(c, MHD_HTTP_OK, resp);
        MHD_destroy_response(resp);
        return ret;
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

/* The calling thread's counter of hb users (MHD's threads and the render thread have
 * one each; any more share the last). */
static atomic_uint *server_hb_counter(struct server *srv)
{
        static _Thread_local struct server *owner;
        static _Thread_local atomic_uint *counter;

        if (owner != srv) {
                unsigned i = atomic_fetch_add(&srv->hb_users_next, 1);
                counter = &srv->hb_users[i < ELEMENTSOF(srv->hb_users) ? i : ELEMENTSOF(srv->hb_users) - 1].n;
                owner = srv;
        }
        return counter;
}

/* The heartbeat, unless there is none or the server is stopping; pair with
 * server_hb_leave. */
static struct heartbeat *server_hb_enter(struct server *srv)
{
        atomic_uint *n;

        if (!srv->hb)
                return NULL;
        n = server_hb_counter(srv);
        atomic_fetch_add(n, 1); /* before reading stopping: server_free sees one or the other */
        if (atomic_load(&srv->stopping)) {
                atomic_fetch_sub(n, 1);
                return NULL;
        }
        return srv->hb;
}

static void server_hb_leave(struct server *srv)
{
        atomic_fetch_sub(server_hb_counter(srv), 1);
}

/* Queues d (taken over) with this request's own part: the /status head from d's
 * snapshot, the /metrics tail with the process figures and the heartbeat's age. */
static enum MHD_Result queue_doc(struct server *srv, struct MHD_Connection *c, struct doc *d)
{
        struct reply *r = malloc(sizeof(*r));

        if (!r) {
                doc_unref(d);
                return MHD_NO;
        }
        r->doc = d;
        if (d->kind == DOC_STATUS) {
                r->part_first = true;
                r->part_len = render_status_head(d->snap, now_ns(), r->part, sizeof(r->part));
                return queue_reply(c, r, CT_JSON);
        }
        struct heartbeat *h = server_hb_enter(srv);
        uint64_t rss, behind = h ? heartbeat_behind(h, now_ns()) : 0;
        if (h)
                server_hb_leave(srv);
        double cpu;
        process_figures(&rss, &cpu);
        r->part_first = false;
        r->part_len = render_metrics_tail(rss, cpu, (double) behind / 1e9, r->part, sizeof(r->part));
        return queue_reply(c, r, CT_METRICS);
}

/* /status or /metrics: a body ready to share is sent at once; one to render is
 * rendered on the render thread while the connection is suspended. */
static enum MHD_Result answer_doc(struct server *srv, struct MHD_Connection *c, struct conn *k, struct published *p,
                                  enum doc_kind kind)
{
        struct doc *d = server_doc_lookup(srv, p, kind);
        struct job *j;

        if (d)
                return queue_doc(srv, c, d);
        j = k && srv->renderer_started ? calloc(1, sizeof(*j)) : NULL;
        if (!j) {
                d = server_doc(srv, p, kind); /* no render thread to spare: render here */
                return d ? queue_doc(srv, c, d) : MHD_NO;
        }
        j->c = c;
        j->k = k;
        j->kind = kind;
        pthread_mutex_lock(&srv->job_lock);
        if (srv->jobs_stop) {
                /* stopping: nobody would resume it, and MHD must not stop with it
                 * suspended */
                pthread_mutex_unlock(&srv->job_lock);
                free(j);
                return MHD_NO;
        }
        atomic_fetch_add(&p->refs, 1);
        j->p = p;
        k->suspended = true;
        k->doc = NULL;
        MHD_suspend_connection(c); /* before the render thread can see the job and resume it */
        if (srv->jobs_tail)
                srv->jobs_tail->next = j;
        else
                srv->jobs_head = j;
        srv->jobs_tail = j;
        pthread_cond_signal(&srv->job_cond);
        pthread_mutex_unlock(&srv->job_lock);
        return MHD_YES;
}

/* The render thread: renders each job's body and resumes its connection; once stopping,
 * resumes the rest without one (MHD must not stop with a connection suspended). */
static void *server_render_main(void *data)
{
        struct server *srv = data;

        pthread_mutex_lock(&srv->job_lock);
        for (;;) {
                struct job *j = srv->jobs_head;
                bool stop = srv->jobs_stop;
                if (!j) {
                        if (stop)
                                break;
                        pthread_cond_wait(&srv->job_cond, &srv->job_lock);
                        continue;
                }
                srv->jobs_head = j->next;
                if (!srv->jobs_head)
                        srv->jobs_tail = NULL;
                pthread_mutex_unlock(&srv->job_lock);
                if (!stop)
                        j->k->doc = server_doc(srv, j->p, j->kind);
                published_unref(j->p);
                MHD_resume_connection(j->c);
                free(j);
                pthread_mutex_lock(&srv->job_lock);
        }
        pthread_mutex_unlock(&srv->job_lock);
        return NULL;
}

/* The connection's own state (its socket context), NULL if it had no memory for it. */
static struct conn *conn_of(struct MHD_Connection *c)
{
        const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);

        return ci ? ci->socket_context : NULL;
}

static void conn_unlink(struct server *srv, struct conn *k)
{
        if (!k->linked)
                return;
        if (k->prev)
                k->prev->next = k->next;
        else
                srv->conns_head = k->next;
        if (k->next)
                k->next->prev = k->prev;
        else
                srv->conns_tail = k->prev;
        k->prev = k->next = NULL;
        k->linked = false;
}

static void conn_append(struct server *srv, struct conn *k)
{
        k->prev = srv->conns_tail;
        k->next = NULL;
        if (srv->conns_tail)
                srv->conns_tail->next = k;
        else
                srv->conns_head = k;
        srv->conns_tail = k;
        k->linked = true;
}

/* MHD's thread of the connection: started (after our accept thread counted it) and
 * closed (before MHD closes its fd). */
static void server_notify_connection(void *cls, struct MHD_Connection *c, void **socket_context,
                                     enum MHD_ConnectionNotificationCode code)
{
        struct server *srv = cls;
        struct conn *k = *socket_context;

        if (code == MHD_CONNECTION_NOTIFY_STARTED) {
                const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
                k = calloc(1, sizeof(*k));
                if (!k || !ci) {
                        free(k); /* counted, never shed; closed by the idle timeout */
                        return;
                }
                k->fd = ci->connect_fd;
                atomic_init(&k->busy, false);
                pthread_mutex_lock(&srv->conn_lock);
                conn_append(srv, k);
                pthread_mutex_unlock(&srv->conn_lock);
                *socket_context = k;
                return;
        }
        if (code != MHD_CONNECTION_NOTIFY_CLOSED)
                return;
        pthread_mutex_lock(&srv->conn_lock);
        if (k && k->linked)
                conn_unlink(srv, k);
        else if (k)
                srv->n_shed--; /* shed: unlinked when it was shut down */
        srv->n_conns--;
        pthread_mutex_unlock(&srv->conn_lock);
        free(k);
        *socket_context = NULL;
}

/* A request answered in full (or abandoned): the connection is idle again. It keeps
 * its place (connection age): no lock on the path of every request. */
static void server_completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode toe)
{
        struct conn *k = conn_of(c);

        (void) cls;
        (void) con_cls;
        (void) toe;
        if (k)
                atomic_store_explicit(&k->busy, false, memory_order_relaxed);
}

/* The loop is current again: ends a watchdog episode (written only then, so that
 * requests do not bounce the cache line). */
static void server_loop_alive(struct server *srv)
{
        if (atomic_load_explicit(&srv->stuck, memory_order_relaxed) && atomic_exchange(&srv->stuck, false))
                log_kv(LOG_LEVEL_INFO, "Event loop running again", "event", "watchdog_over", NULL);
}

/* Waits until the loop is current for instant t, at most max_ns; true if it is. One
 * atomic read when it already is; slices so that stopping is not held up. */
static bool server_wait_current(struct server *srv, uint64_t t, uint64_t max_ns)
{
        uint64_t end;

        if (heartbeat_behind(srv->hb, t) == 0)
                return true;
        end = now_ns() + max_ns;
        for (;;) {
                uint64_t now, slice;
                if (heartbeat_behind(srv->hb, t) == 0)
                        return true;
                now = now_ns();
                if (now >= end || atomic_load(&srv->stopping))
                        return false;
                slice = end - now;
                if (slice > SERVER_WAIT_SLICE_MS * NSEC_PER_MSEC)
                        slice = SERVER_WAIT_SLICE_MS * NSEC_PER_MSEC;
                if (heartbeat_wait(srv->hb, t, slice))
                        return true;
        }
}

/* The watchdog: is the loop stuck (behind by the watchdog and no progress within the
 * grace)? *ret_behind: by how much. One ERROR line per episode. */
static bool server_loop_stuck(struct server *srv, uint64_t *ret_behind)
{
        struct heartbeat *h = srv->hb;
        uint64_t wd = atomic_load(&h->watchdog_ns), t = now_ns(), behind = heartbeat_behind(h, t), done;

        if (wd == 0 || behind < wd) {
                server_loop_alive(srv);
                return false;
        }
        done = atomic_load(&h->done_ns);
        /* Already known stuck and still no beat: answer at once. Otherwise give it the
         * grace: after a whole-process freeze the loop thaws with us and catches up. */
        if (!atomic_load(&srv->stuck) || done != atomic_load(&srv->stuck_done)) {
                if (server_wait_current(srv, t, SERVER_WATCHDOG_GRACE_MS * NSEC_PER_MSEC) ||
                    atomic_load(&h->done_ns) != done || atomic_load(&srv->stopping))
                        return false;
                behind = heartbeat_behind(h, now_ns());
                atomic_store(&srv->stuck_done, done);
                if (!atomic_exchange(&srv->stuck, true)) {
                        char n[24];
                        snprintf(n, sizeof(n), "%" PRIu64 "s", (uint64_t) (behind / NSEC_PER_SEC));
                        log_kv(LOG_LEVEL_ERROR, "Event loop stuck, liveness answers 503", "event", "watchdog",
                               "behind", n, NULL);
                }
        }
        *ret_behind = behind;
        return true;
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

static enum MHD_Result server_handle(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                     const char *version, const char *upload_data, size_t *upload_data_size,
                                     void **con_cls)
{
        struct server *srv = cls;
        enum route route = _ROUTE_INVALID;
        struct conn *k = conn_of(c);
        struct published *p;
        enum MHD_Result ret;
        bool verbose = false;
        uint64_t arrival;

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
        url = request_path(url);
        for (size_t i = 0; i < ELEMENTSOF(routes); i++)
                if (strcmp(url, routes[i].path) == 0)
                        route = routes[i].route;
        if (route == _ROUTE_INVALID)
                return MHD_queue_response(c, MHD_HTTP_NOT_FOUND, srv->not_found);
        if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 && strcmp(method, MHD_HTTP_METHOD_HEAD) != 0)
                return MHD_queue_response(c, MHD_HTTP_METHOD_NOT_ALLOWED, srv->not_allowed);
        if (server_hb_enter(srv)) {
                uint64_t behind = 0;
                bool stuck = false;
                arrival = k ? k->arrival_ns : now_ns();
                /* answers after a freeze reflect the present (two atomic reads otherwise) */
                if (server_wait_current(srv, arrival, atomic_load(&srv->hb->fresh_wait_ns)))
                        server_loop_alive(srv); /* current: not stuck */
                else if (route <= ROUTE_READYZ)
                        stuck = server_loop_stuck(srv, &behind);
                server_hb_leave(srv);
                if (stuck) {
                        char *body = strdup_printf("probed: event loop stuck for %" PRIu64 "s\n",
                                                   (uint64_t) (behind / NSEC_PER_SEC));
                        return queue_owned(c, MHD_HTTP_SERVICE_UNAVAILABLE, body, CT_TEXT);
                }
        }
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

/* Admits one accepted connection: at the limit the oldest idle one is shed first, past
 * the hard limit c is closed at once (it is still ours). */
static void server_admit(struct server *srv, int c, struct sockaddr_storage *sa, socklen_t len)
{
        bool admit;

        pthread_mutex_lock(&srv->conn_lock);
        if (srv->n_conns - srv->n_shed >= SERVER_CONNECTION_LIMIT) {
                struct conn *k = srv->conns_head;
                while (k && atomic_load(&k->busy))
                        k = k->next;
                if (k) {
                        /* MHD closes it in its own thread once it sees the end of the
                         * stream; the fd is MHD's until its CLOSED notification, which
                         * needs conn_lock */
                        (void) shutdown(k->fd, SHUT_RDWR);
                        conn_unlink(srv, k);
                        srv->n_shed++;
                }
        }
        admit = srv->n_conns < SERVER_CONNECTION_HARD_LIMIT;
        if (admit)
                srv->n_conns++;
        pthread_mutex_unlock(&srv->conn_lock);
        if (!admit) {
                (void) close(c);
                return;
        }
        /* MHD owns c from here, and closes it itself when it cannot take it. */
        if (MHD_add_connection(srv->mhd, c, (struct sockaddr *) sa, len) != MHD_YES) {
                pthread_mutex_lock(&srv->conn_lock);
                srv->n_conns--;
                pthread_mutex_unlock(&srv->conn_lock);
        }
}

/* The accept thread: the listen socket and the stop eventfd; out of fds it stops
 * looking at the listen socket for SERVER_ACCEPT_PAUSE_MS (one log line per run). */
static void *server_accept_main(void *data)
{
        struct server *srv = data;
        struct pollfd pfd[2] = { { .fd = srv->stop_fd, .events = POLLIN }, { .fd = srv->listen_fd, .events = POLLIN } };
        bool paused = false, paused_logged = false;

        while (!atomic_load(&srv->stopping)) {
                int n = poll(pfd, paused ? 1 : 2, paused ? SERVER_ACCEPT_PAUSE_MS : -1);

                if (n < 0 && errno != EINTR)
                        (void) poll(NULL, 0, SERVER_ACCEPT_PAUSE_MS); /* cannot happen; never spin */
                if (n <= 0 || pfd[0].revents) {
                        paused = false;
                        continue;
                }
                for (int i = 0; i < SERVER_ACCEPT_BATCH; i++) {
                        struct sockaddr_storage sa;
                        socklen_t len = sizeof(sa);
                        int c = accept4(srv->listen_fd, (struct sockaddr *) &sa, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);

                        if (c < 0) {
                                if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                                        if (!paused_logged)
                                                log_kv(LOG_LEVEL_WARNING,
                                                       "Failed to accept a status connection, pausing accepts",
                                                       "event", "http", "error", strerror(errno), NULL);
                                        paused_logged = paused = true;
                                }
                                break; /* EAGAIN: all accepted; ECONNABORTED etc.: the client left */
                        }
                        paused_logged = false;
                        server_admit(srv, c, &sa, len);
                }
        }
        return NULL;
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
        if (srv->renderer_started) {
                pthread_mutex_lock(&srv->job_lock);
                srv->jobs_stop = true;
                pthread_cond_signal(&srv->job_cond);
                pthread_mutex_unlock(&srv->job_lock);
                pthread_join(srv->renderer, NULL);
        }
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
                 * heartbeat, which goes with the loop: wait (briefly) until no thread is
                 * inside it; none enters any more. */
                uint64_t end = now_ns() + SERVER_HB_LEAVE_WAIT_MS * NSEC_PER_MSEC;
                for (size_t i = 0; i < ELEMENTSOF(srv->hb_users); i++)
                        while (atomic_load(&srv->hb_users[i].n) && now_ns() < end)
                                (void) poll(NULL, 0, 1);
                return NULL;
        }
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
