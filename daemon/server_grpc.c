/* The status server's gRPC health service (README.md, "gRPC health"; docs/design.md,
 * "gRPC health on the status port").
 *
 * A connection the accept thread found opening with the HTTP/2 connection preface (h2c
 * with prior knowledge, as the kubelet's and Cloud Run's gRPC probes send it) is handed
 * here, to one of SERVER_GRPC_THREADS threads of ours, each an epoll loop over its
 * connections. nghttp2 does HTTP/2 (framing, HPACK, flow control, the preface check and
 * its flood protections); this file is the service on top:
 *
 *   HEADERS ... END_STREAM --> POST /grpc.health.v1.Health/Check, application/grpc?
 *     |                          yes: the body's HealthCheckRequest (grpcwire) -->
 *     |                               ""/liveness live, startup started, readiness ready,
 *     |                               a probe's name that probe healthy
 *     |                               --> 200, SERVING|NOT_SERVING, trailers grpc-status 0
 *     |                               other names --> Trailers-Only grpc-status 5 NOT_FOUND
 *     |                          other gRPC calls (Watch included) --> grpc-status 12
 *     +--> GET/HEAD of a verdict path (/livez ...): the HTTP/1.1 answer's status and body
 *          anything else --> 404
 *
 * Answers come from the same published snapshot as the HTTP endpoints, after the same
 * freshness wait, and the watchdog's "stuck" turns every answer into NOT_SERVING (503
 * for the plain GETs).
 *
 * Bounds, as on the HTTP side: every connection is a `struct conn` in the server's list
 * (server_conn.c counts it toward the connection limit and may shed it while no stream
 * is open, by shutting its socket down: we see the end of the stream and close it,
 * untracking it first under conn_lock, as MHD does); SERVER_GRPC_MAX_STREAMS
 * concurrent streams (SETTINGS_MAX_CONCURRENT_STREAMS, enforced by nghttp2); request
 * headers and bodies capped per stream and buffered bodies per connection; a
 * connection with no HEADERS or DATA for SERVER_CONNECTION_TIMEOUT_S is closed (PINGs
 * do not keep it); at most SERVER_GRPC_READ_BUDGET bytes read per connection per
 * wake-up; while a peer does not read our answers we stop reading its requests. A bad
 * preface or bad frames: nghttp2 reports them, we send its GOAWAY if we can and close. */
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <nghttp2/nghttp2.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "bounds.h"
#include "grpcwire.h"
#include "server_int.h"
#include "util.h"

#define GRPC_CHECK_PATH "/grpc.health.v1.Health/Check"
#define GRPC_WATCH_PATH "/grpc.health.v1.Health/Watch"
#define GRPC_WATCH_TICK_MS 1000 /* watchers re-evaluated this often (the watchdog), besides each publication */
#define GRPC_CT "application/grpc"
#define GRPC_EPOLL_BATCH 64

enum grpc_svc {
        SVC_OVERALL,
        SVC_LIVENESS,
        SVC_STARTUP,
        SVC_READINESS,
        SVC_PROBE,
        SVC_OTHER,
        _SVC_MAX,
};

enum grpc_res {
        RES_SERVING,
        RES_NOT_SERVING,
        RES_NOT_FOUND,
        RES_UNIMPLEMENTED,
        RES_ERROR,
        _RES_MAX,
};

static const char *const svc_label[_SVC_MAX] = {
        [SVC_OVERALL] = "overall",     [SVC_LIVENESS] = "liveness", [SVC_STARTUP] = "startup",
        [SVC_READINESS] = "readiness", [SVC_PROBE] = "probe",       [SVC_OTHER] = "other",
};
static const char *const res_label[_RES_MAX] = {
        [RES_SERVING] = "SERVING",     [RES_NOT_SERVING] = "NOT_SERVING",
        [RES_NOT_FOUND] = "NOT_FOUND", [RES_UNIMPLEMENTED] = "UNIMPLEMENTED",
        [RES_ERROR] = "error",
};

struct h2conn;

/* One thread serving gRPC connections. */
struct grpc_worker {
        struct grpc_state *g;
        pthread_t thread;
        bool started;
        int ep, wake_fd;
        pthread_mutex_t lock;
        struct h2conn *incoming;    /* guarded by lock: handed over, not seen yet */
        struct h2conn *head, *tail; /* the thread's: least recently active first */
        unsigned n_watch;           /* the thread's: Watch streams open on its connections */
        uint64_t watch_tick_ns;     /* the thread's: when watchers are re-evaluated next */
};

struct grpc_state {
        struct server *srv;
        struct grpc_worker w[SERVER_GRPC_THREADS];
        atomic_uint next;     /* round robin */
        atomic_uint watchers; /* Watch streams open, all threads */
        _Atomic uint64_t count[_SVC_MAX][_RES_MAX];
};

struct h2stream {
        int32_t id;
        bool post, grpc, head, get;
        enum route route; /* a verdict path, or _ROUTE_INVALID */
        bool check, watch_call, other_grpc;
        /* a Watch in progress: its service, the last status queued, the message being
         * sent (msg_pos of msg_len) and the next one when it changed meanwhile */
        bool watch;
        uint8_t *name;
        size_t name_len;
        uint64_t queued, next_status;
        bool msg_pending, has_next;
        uint8_t msg[GRPCWIRE_RESPONSE_MAX];
        size_t msg_len, msg_pos;
        size_t header_bytes;
        uint8_t *body; /* malloc'd, body_cap bytes (at most SERVER_GRPC_MAX_REQUEST) */
        size_t body_len, body_cap;
        bool too_large;
        /* the answer's body (a HealthCheckResponse or a verdict text) and trailers */
        char *out;
        size_t out_len, out_pos;
        bool trailers;
        char status_s[8];
        struct h2conn *c;
        struct h2stream *prev, *next; /* c->streams */
};

struct h2conn {
        struct h2conn *prev, *next, *next_incoming;
        struct grpc_worker *w; /* NULL: fed by server_grpc_feed, output discarded */
        struct grpc_state *g;
        struct conn *k;
        int fd;
        nghttp2_session *session;
        struct h2stream *streams; /* open ones: nghttp2_session_del does not close them */
        unsigned n_streams;
        unsigned n_watch;   /* of which Watch streams (they do not make it busy) */
        size_t body_bytes;  /* request body bytes buffered by all its streams */
        uint64_t active_ns; /* the last HEADERS or DATA, or stream close */
        bool blocked;       /* a send would block: EPOLLOUT, reads stopped */
        uint8_t *out;       /* what nghttp2 produced and the socket has not taken yet */
        size_t out_len, out_cap;
};

static void stream_free(struct h2stream *s)
{
        struct h2conn *c = s->c;

        if (s->watch) {
                c->n_watch--;
                if (c->w)
                        c->w->n_watch--;
                atomic_fetch_sub(&c->g->watchers, 1);
        }
        free(s->name);
        c->body_bytes -= s->body_cap;
        if (s->prev)
                s->prev->next = s->next;
        else
                c->streams = s->next;
        if (s->next)
                s->next->prev = s->prev;
        free(s->body);
        free(s->out);
        free(s);
}

/* ---- answers ------------------------------------------------------------------------ */

static void count(struct grpc_state *g, enum grpc_svc svc, enum grpc_res res)
{
        atomic_fetch_add_explicit(&g->count[svc][res], 1, memory_order_relaxed);
}

static ssize_t out_read(nghttp2_session *session, int32_t id, uint8_t *buf, size_t length, uint32_t *data_flags,
                        nghttp2_data_source *source, void *user)
{
        struct h2stream *s = source->ptr;
        size_t n = s->out_len - s->out_pos;

        (void) user;
        if (n > length)
                n = length;
        memcpy(buf, s->out + s->out_pos, n);
        s->out_pos += n;
        if (s->out_pos == s->out_len) {
                *data_flags |= NGHTTP2_DATA_FLAG_EOF;
                if (s->trailers) {
                        nghttp2_nv t[] = { { (uint8_t *) "grpc-status", (uint8_t *) s->status_s, 11,
                                             strlen(s->status_s), NGHTTP2_NV_FLAG_NONE } };
                        *data_flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
                        if (nghttp2_submit_trailer(session, id, t, 1) != 0)
                                return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
                }
        }
        return (ssize_t) n;
}

#define NV(n, v)                                                                                                       \
        {                                                                                                              \
                (uint8_t *) (n), (uint8_t *) (v), sizeof(n) - 1, strlen(v), NGHTTP2_NV_FLAG_NONE                       \
        }

/* A Trailers-Only answer: one HEADERS frame with grpc-status (not 0) and END_STREAM. */
static int answer_grpc_error(nghttp2_session *session, struct h2stream *s, int code, const char *msg)
{
        nghttp2_nv nv[] = { NV(":status", "200"), NV("content-type", GRPC_CT), NV("grpc-status", s->status_s),
                            NV("grpc-message", msg) };

        snprintf(s->status_s, sizeof(s->status_s), "%d", code);
        nv[2].valuelen = strlen(s->status_s);
        return nghttp2_submit_response(session, s->id, nv, ELEMENTSOF(nv), NULL);
}

/* A Check's answer: the HealthCheckResponse, then trailers grpc-status 0. */
static int answer_serving(nghttp2_session *session, struct h2stream *s, bool serving)
{
        nghttp2_nv nv[] = { NV(":status", "200"), NV("content-type", GRPC_CT) };
        nghttp2_data_provider prd = { .source.ptr = s, .read_callback = out_read };
        uint8_t msg[GRPCWIRE_RESPONSE_MAX];

        s->out_len = grpcwire_response_encode(serving ? GRPC_SERVING_SERVING : GRPC_SERVING_NOT_SERVING, msg);
        s->out = malloc(s->out_len);
        if (!s->out)
                return NGHTTP2_ERR_NOMEM;
        memcpy(s->out, msg, s->out_len);
        s->trailers = true;
        strcpy(s->status_s, "0");
        return nghttp2_submit_response(session, s->id, nv, ELEMENTSOF(nv), &prd);
}

/* A plain HTTP/2 answer: status and a text body (owned, may be NULL for none). */
static int answer_http(nghttp2_session *session, struct h2stream *s, unsigned status, char *body, bool allow)
{
        nghttp2_nv nv[] = { NV(":status", s->status_s), NV("content-type", "text/plain; charset=utf-8"),
                            NV("cache-control", "no-store"), NV("allow", "GET, HEAD") };
        nghttp2_data_provider prd = { .source.ptr = s, .read_callback = out_read };

        snprintf(s->status_s, sizeof(s->status_s), "%u", status);
        nv[0].valuelen = strlen(s->status_s);
        s->out = body;
        s->out_len = body && !s->head ? strlen(body) : 0;
        return nghttp2_submit_response(session, s->id, nv, ELEMENTSOF(nv) - !allow, s->out_len ? &prd : NULL);
}

/* The service a Check names, and whether it is SERVING in p (p NULL: not yet
 * published, nothing is). -1: unknown. */
static int service_state(const struct published *p, const uint8_t *name, size_t len, enum grpc_svc *ret_svc)
{
        static const struct {
                const char *name;
                enum grpc_svc svc;
        } fixed[] = { { "", SVC_OVERALL },
                      { "liveness", SVC_LIVENESS },
                      { "startup", SVC_STARTUP },
                      { "readiness", SVC_READINESS } };
        const struct snapshot *snap = p ? p->snap : NULL;

        for (size_t i = 0; i < ELEMENTSOF(fixed); i++)
                if (strlen(fixed[i].name) == len && memcmp(fixed[i].name, name, len) == 0) {
                        *ret_svc = fixed[i].svc;
                        if (!snap)
                                return 0;
                        return fixed[i].svc == SVC_STARTUP     ? snap->started
                               : fixed[i].svc == SVC_READINESS ? snap->ready
                                                               : snap->live;
                }
        *ret_svc = SVC_OTHER;
        if (!snap || len > MAX_NAME_LEN)
                return -1;
        for (size_t i = 0; i < snap->n_probes; i++) {
                const struct probe_view *v = snap->probes[i];
                if (strlen(v->name) == len && memcmp(v->name, name, len) == 0) {
                        *ret_svc = SVC_PROBE;
                        return v->healthy == 1;
                }
        }
        return -1;
}

/* The loop's freshness wait and the watchdog (server_fresh.c); true: stuck. */
static bool fresh_stuck(struct grpc_state *g, uint64_t arrival, uint64_t *ret_behind)
{
        return server_fresh_stuck_at(g->srv, arrival, true, ret_behind);
}

static int answer_check(nghttp2_session *session, struct h2conn *c, struct h2stream *s, uint64_t arrival)
{
        const uint8_t *name;
        size_t len;
        const char *why;
        enum grpc_svc svc;
        struct published *p;
        uint64_t behind = 0;
        bool stuck;
        int state;

        if (s->too_large) {
                count(c->g, SVC_OTHER, RES_ERROR);
                return answer_grpc_error(session, s, 8, "request too large"); /* RESOURCE_EXHAUSTED */
        }
        if (grpcwire_request_decode(s->body, s->body_len, SERVER_GRPC_MAX_REQUEST, &name, &len, &why) < 0) {
                count(c->g, SVC_OTHER, RES_ERROR);
                return answer_grpc_error(session, s, 13, why); /* INTERNAL: cannot parse, as grpc-go */
        }
        stuck = fresh_stuck(c->g, arrival, &behind);
        p = server_current(c->g->srv);
        state = service_state(p, name, len, &svc);
        published_unref(p);
        if (state < 0) {
                count(c->g, SVC_OTHER, RES_NOT_FOUND);
                return answer_grpc_error(session, s, 5, "unknown service"); /* NOT_FOUND */
        }
        if (stuck)
                state = 0; /* the watchdog: a stuck loop is serving nothing */
        count(c->g, svc, state == 1 ? RES_SERVING : RES_NOT_SERVING);
        return answer_serving(session, s, state == 1);
}

/* A plain (not gRPC) HTTP/2 request: a verdict path answers as over HTTP/1.1. */
static int answer_plain(nghttp2_session *session, struct h2conn *c, struct h2stream *s, uint64_t arrival)
{
        struct published *p;
        uint64_t behind = 0;
        int status = 503;
        char *body;

        if (s->route == _ROUTE_INVALID || s->route > ROUTE_READYZ)
                return answer_http(session, s, 404, strdup("not found\n"), false);
        if (!s->get && !s->head)
                return answer_http(session, s, 405, strdup("method not allowed\n"), true);
        if (fresh_stuck(c->g, arrival, &behind))
                return answer_http(session, s, 503,
                                   strdup_printf("probed: event loop stuck for %" PRIu64 "s\n",
                                                 (uint64_t) (behind / NSEC_PER_SEC)),
                                   false);
        p = server_current(c->g->srv);
        if (!p)
                return answer_http(session, s, 503, strdup("starting\n"), false);
        body = render_verdict(p->snap, route_scope[s->route], false, &status);
        published_unref(p);
        return answer_http(session, s, (unsigned) status, body, false);
}

/* ---- Watch ---------------------------------------------------------------------------- */

/* Is the loop stuck, for watchers (no request to wait on: behind by the watchdog and
 * its grace)? */
static bool watch_stuck(struct grpc_state *g)
{
        struct heartbeat *h = server_hb_enter(g->srv);
        uint64_t wd, behind;

        if (!h)
                return false;
        wd = atomic_load(&h->watchdog_ns);
        behind = heartbeat_behind(h, now_ns());
        server_hb_leave(g->srv);
        return wd && behind >= wd + SERVER_WATCHDOG_GRACE_MS * NSEC_PER_MSEC;
}

/* What a Watch of s's service says in p: SERVING, NOT_SERVING, or SERVICE_UNKNOWN for a
 * name that is no service (the protocol keeps such a stream open: a reload may add the
 * probe). */
static uint64_t watch_status(const struct published *p, const struct h2stream *s, bool stuck, enum grpc_svc *ret_svc)
{
        int state = service_state(p, s->name, s->name_len, ret_svc);

        if (state < 0)
                return GRPC_SERVING_SERVICE_UNKNOWN;
        return state == 1 && !stuck ? GRPC_SERVING_SERVING : GRPC_SERVING_NOT_SERVING;
}

/* Queues status for s unless it is what s said last; true if queued. */
static bool watch_queue(struct h2stream *s, uint64_t status)
{
        if (status == (s->has_next ? s->next_status : s->queued))
                return false;
        if (s->msg_pending && s->msg_pos > 0) { /* half sent: the next one after it */
                s->next_status = status;
                s->has_next = true;
                return true;
        }
        s->queued = status;
        s->msg_len = grpcwire_response_encode(status, s->msg);
        s->msg_pos = 0;
        s->msg_pending = true;
        return true;
}

/* A Watch stream's DATA: the message queued, else deferred until one is. */
static ssize_t watch_read(nghttp2_session *session, int32_t id, uint8_t *buf, size_t length, uint32_t *data_flags,
                          nghttp2_data_source *source, void *user)
{
        struct h2stream *s = source->ptr;
        size_t n;

        (void) session;
        (void) id;
        (void) data_flags;
        (void) user;
        if (!s->msg_pending)
                return NGHTTP2_ERR_DEFERRED;
        n = s->msg_len - s->msg_pos;
        if (n > length)
                n = length;
        memcpy(buf, s->msg + s->msg_pos, n);
        s->msg_pos += n;
        if (s->msg_pos == s->msg_len) {
                s->msg_pending = false;
                if (s->has_next) {
                        s->has_next = false;
                        (void) watch_queue(s, s->next_status);
                }
        }
        return (ssize_t) n;
}

/* A Watch: the first status at once (after the freshness wait), then one message each
 * time it changes (server_grpc_published, and every GRPC_WATCH_TICK_MS for the
 * watchdog); the stream stays open. */
static int answer_watch(nghttp2_session *session, struct h2conn *c, struct h2stream *s, uint64_t arrival)
{
        nghttp2_nv nv[] = { NV(":status", "200"), NV("content-type", GRPC_CT) };
        nghttp2_data_provider prd = { .source.ptr = s, .read_callback = watch_read };
        const uint8_t *name;
        const char *why;
        enum grpc_svc svc;
        struct published *p;
        uint64_t behind = 0, status;
        bool stuck;

        if (s->too_large) {
                count(c->g, SVC_OTHER, RES_ERROR);
                return answer_grpc_error(session, s, 8, "request too large"); /* RESOURCE_EXHAUSTED */
        }
        if (grpcwire_request_decode(s->body, s->body_len, SERVER_GRPC_MAX_REQUEST, &name, &s->name_len, &why) < 0) {
                count(c->g, SVC_OTHER, RES_ERROR);
                return answer_grpc_error(session, s, 13, why);
        }
        if (atomic_fetch_add(&c->g->watchers, 1) >= SERVER_GRPC_MAX_WATCHES) {
                atomic_fetch_sub(&c->g->watchers, 1);
                count(c->g, SVC_OTHER, RES_ERROR);
                return answer_grpc_error(session, s, 8, "too many Watch calls"); /* RESOURCE_EXHAUSTED */
        }
        s->watch = true; /* counted: stream_free uncounts it */
        c->n_watch++;
        if (c->w)
                c->w->n_watch++;
        if (c->k)
                atomic_store(&c->k->busy, c->n_streams > c->n_watch);
        s->name = malloc(s->name_len + 1);
        if (!s->name)
                return NGHTTP2_ERR_NOMEM;
        memcpy(s->name, name, s->name_len);
        s->name[s->name_len] = 0;
        stuck = fresh_stuck(c->g, arrival, &behind);
        p = server_current(c->g->srv);
        status = watch_status(p, s, stuck, &svc);
        published_unref(p);
        count(c->g, svc,
              status == GRPC_SERVING_SERVING       ? RES_SERVING
              : status == GRPC_SERVING_NOT_SERVING ? RES_NOT_SERVING
                                                   : RES_NOT_FOUND);
        s->queued = UINT64_MAX;
        (void) watch_queue(s, status);
        return nghttp2_submit_response(session, s->id, nv, ELEMENTSOF(nv), &prd);
}

static bool h2conn_flush_or_close(struct h2conn *c);

/* Re-evaluates every Watch on w's connections and sends what changed. */
static void watch_update(struct grpc_worker *w)
{
        struct published *p;
        bool stuck;

        w->watch_tick_ns = now_ns() + GRPC_WATCH_TICK_MS * NSEC_PER_MSEC;
        if (!w->n_watch)
                return;
        stuck = watch_stuck(w->g);
        p = server_current(w->g->srv);
        for (struct h2conn *c = w->head, *next; c; c = next) {
                bool queued = false;
                next = c->next;
                if (!c->n_watch)
                        continue;
                for (struct h2stream *s = c->streams; s; s = s->next) {
                        enum grpc_svc svc;
                        if (s->watch && watch_queue(s, watch_status(p, s, stuck, &svc))) {
                                (void) nghttp2_session_resume_data(c->session, s->id);
                                queued = true;
                        }
                }
                if (queued)
                        (void) h2conn_flush_or_close(c);
        }
        published_unref(p);
}

static int answer(nghttp2_session *session, struct h2conn *c, struct h2stream *s)
{
        uint64_t arrival = now_ns();

        if (s->check)
                return answer_check(session, c, s, arrival);
        if (s->watch_call)
                return answer_watch(session, c, s, arrival);
        if (s->other_grpc) {
                count(c->g, SVC_OTHER, RES_UNIMPLEMENTED);
                return answer_grpc_error(session, s, 12, "grpc.health.v1.Health has Check and Watch only");
        }
        return answer_plain(session, c, s, arrival);
}

/* ---- nghttp2 callbacks ---------------------------------------------------------------- */

static int on_begin_headers(nghttp2_session *session, const nghttp2_frame *frame, void *user)
{
        struct h2conn *c = user;
        struct h2stream *s;

        if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST)
                return 0;
        s = calloc(1, sizeof(*s));
        if (!s)
                return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE; /* the stream is reset */
        s->id = frame->hd.stream_id;
        s->route = _ROUTE_INVALID;
        s->c = c;
        if (nghttp2_session_set_stream_user_data(session, s->id, s) != 0) {
                free(s);
                return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
        }
        s->next = c->streams;
        if (c->streams)
                c->streams->prev = s;
        c->streams = s;
        c->n_streams++;
        if (c->k)
                atomic_store(&c->k->busy, true); /* a stream open: never shed */
        c->active_ns = now_ns();
        return 0;
}

static bool header_is(const uint8_t *v, size_t len, const char *want)
{
        return len == strlen(want) && memcmp(v, want, len) == 0;
}

static int on_header(nghttp2_session *session, const nghttp2_frame *frame, const uint8_t *name, size_t namelen,
                     const uint8_t *value, size_t valuelen, uint8_t flags, void *user)
{
        struct h2stream *s = nghttp2_session_get_stream_user_data(session, frame->hd.stream_id);

        (void) flags;
        (void) user;
        if (!s)
                return 0;                           /* trailers of a request, or a stream we gave up */
        s->header_bytes += namelen + valuelen + 32; /* as SETTINGS_MAX_HEADER_LIST_SIZE counts */
        if (s->header_bytes > SERVER_GRPC_MAX_HEADERS)
                return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
        if (header_is(name, namelen, ":method")) {
                s->post = header_is(value, valuelen, "POST");
                s->get = header_is(value, valuelen, "GET");
                s->head = header_is(value, valuelen, "HEAD");
        } else if (header_is(name, namelen, ":path")) {
                char path[64];
                const uint8_t *q = memchr(value, '?', valuelen);
                size_t n = q ? (size_t) (q - value) : valuelen;
                s->check = header_is(value, valuelen, GRPC_CHECK_PATH);
                s->watch_call = header_is(value, valuelen, GRPC_WATCH_PATH);
                if (n < sizeof(path)) {
                        memcpy(path, value, n);
                        path[n] = '\0';
                        s->route = route_of(path);
                }
        } else if (header_is(name, namelen, "content-type")) {
                /* application/grpc, application/grpc+proto, application/grpc;... */
                s->grpc =
                        valuelen >= strlen(GRPC_CT) && memcmp(value, GRPC_CT, strlen(GRPC_CT)) == 0 &&
                        (valuelen == strlen(GRPC_CT) || value[strlen(GRPC_CT)] == '+' || value[strlen(GRPC_CT)] == ';');
        }
        (void) frame;
        return 0;
}

static int on_data_chunk(nghttp2_session *session, uint8_t flags, int32_t id, const uint8_t *data, size_t len,
                         void *user)
{
        struct h2conn *c = user;
        struct h2stream *s = nghttp2_session_get_stream_user_data(session, id);

        (void) flags;
        c->active_ns = now_ns();
        if (!s || s->too_large)
                return 0;
        if (len > SERVER_GRPC_MAX_REQUEST - s->body_len) {
                s->too_large = true; /* answered RESOURCE_EXHAUSTED at its end */
                return 0;
        }
        if (s->body_len + len > s->body_cap) {
                size_t cap = s->body_cap ? s->body_cap : 64;
                uint8_t *b;
                while (cap < s->body_len + len)
                        cap *= 2;
                if (cap > SERVER_GRPC_MAX_REQUEST)
                        cap = SERVER_GRPC_MAX_REQUEST;
                if (c->body_bytes + cap - s->body_cap > SERVER_GRPC_CONN_BYTES)
                        return NGHTTP2_ERR_CALLBACK_FAILURE; /* the connection is closed */
                b = realloc(s->body, cap);
                if (!b)
                        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
                c->body_bytes += cap - s->body_cap;
                s->body = b;
                s->body_cap = cap;
        }
        memcpy(s->body + s->body_len, data, len);
        s->body_len += len;
        return 0;
}

static int on_frame_recv(nghttp2_session *session, const nghttp2_frame *frame, void *user)
{
        struct h2conn *c = user;
        struct h2stream *s;

        if (frame->hd.type != NGHTTP2_HEADERS && frame->hd.type != NGHTTP2_DATA)
                return 0;
        c->active_ns = now_ns();
        if (!(frame->hd.flags & NGHTTP2_FLAG_END_STREAM))
                return 0;
        s = nghttp2_session_get_stream_user_data(session, frame->hd.stream_id);
        if (!s || s->out || s->status_s[0])
                return 0;
        if (!(s->post && s->grpc))
                s->check = s->watch_call = false; /* not a gRPC call: a plain request, 404 */
        else if (!s->check && !s->watch_call)
                s->other_grpc = true;
        if (answer(session, c, s) != 0)
                return nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, s->id, NGHTTP2_INTERNAL_ERROR) == 0
                               ? 0
                               : NGHTTP2_ERR_CALLBACK_FAILURE;
        return 0;
}

static int on_stream_close(nghttp2_session *session, int32_t id, uint32_t error_code, void *user)
{
        struct h2conn *c = user;
        struct h2stream *s = nghttp2_session_get_stream_user_data(session, id);

        (void) error_code;
        if (!s)
                return 0;
        (void) nghttp2_session_set_stream_user_data(session, id, NULL);
        stream_free(s);
        c->active_ns = now_ns();
        c->n_streams--;
        if (c->k)
                atomic_store(&c->k->busy, c->n_streams > c->n_watch); /* Watch streams leave it idle */
        return 0;
}

static nghttp2_session_callbacks *callbacks_new(void)
{
        nghttp2_session_callbacks *cb;

        if (nghttp2_session_callbacks_new(&cb) != 0)
                return NULL;
        nghttp2_session_callbacks_set_on_begin_headers_callback(cb, on_begin_headers);
        nghttp2_session_callbacks_set_on_header_callback(cb, on_header);
        nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, on_data_chunk);
        nghttp2_session_callbacks_set_on_frame_recv_callback(cb, on_frame_recv);
        nghttp2_session_callbacks_set_on_stream_close_callback(cb, on_stream_close);
        return cb;
}

/* A server session for c with our SETTINGS queued; NULL on ENOMEM. */
static nghttp2_session *session_new(struct h2conn *c)
{
        nghttp2_settings_entry iv[] = {
                { NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, SERVER_GRPC_MAX_STREAMS },
                { NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, SERVER_GRPC_MAX_HEADERS },
        };
        nghttp2_session_callbacks *cb = callbacks_new();
        nghttp2_session *session = NULL;

        if (!cb)
                return NULL;
        if (nghttp2_session_server_new(&session, cb, c) != 0)
                session = NULL;
        nghttp2_session_callbacks_del(cb);
        if (session && nghttp2_submit_settings(session, NGHTTP2_FLAG_NONE, iv, ELEMENTSOF(iv)) != 0) {
                nghttp2_session_del(session);
                session = NULL;
        }
        return session;
}

/* ---- connections ---------------------------------------------------------------------- */

static void conn_list_remove(struct grpc_worker *w, struct h2conn *c)
{
        if (c->prev)
                c->prev->next = c->next;
        else
                w->head = c->next;
        if (c->next)
                c->next->prev = c->prev;
        else
                w->tail = c->prev;
        c->prev = c->next = NULL;
}

static void conn_list_append(struct grpc_worker *w, struct h2conn *c)
{
        c->prev = w->tail;
        c->next = NULL;
        if (w->tail)
                w->tail->next = c;
        else
                w->head = c;
        w->tail = c;
}

/* Deletes c's session and the streams still open (nghttp2 calls no on_stream_close
 * then). */
static void h2conn_session_del(struct h2conn *c)
{
        nghttp2_session_del(c->session);
        c->session = NULL;
        while (c->streams)
                stream_free(c->streams);
}

/* Closes c: untracked (under conn_lock, before its fd closes) and freed. */
static void h2conn_close(struct h2conn *c)
{
        if (c->w) {
                conn_list_remove(c->w, c);
                (void) epoll_ctl(c->w->ep, EPOLL_CTL_DEL, c->fd, NULL);
        }
        if (c->session)
                h2conn_session_del(c);
        if (c->k)
                server_conn_untrack(c->g->srv, c->k);
        if (c->fd >= 0)
                (void) close(c->fd);
        free(c->out);
        free(c);
}

/* Sends what nghttp2 has queued, gathered into one write (small frames written one
 * by one would meet delayed ACKs), as far as the socket takes it; the rest waits in
 * c->out and c is blocked. Only what one bounded read produced is gathered: reads stop
 * while blocked. <0: close. */
static int h2conn_flush(struct h2conn *c)
{
        for (;;) {
                const uint8_t *data;
                ssize_t n = nghttp2_session_mem_send(c->session, &data);
                if (n < 0)
                        return -EIO;
                if (n == 0)
                        break;
                if (c->fd < 0)
                        continue; /* server_grpc_feed: discarded */
                if (c->out_len + (size_t) n > c->out_cap) {
                        size_t cap = c->out_cap ? c->out_cap : 512;
                        uint8_t *b;
                        while (cap < c->out_len + (size_t) n)
                                cap *= 2;
                        if (!(b = realloc(c->out, cap)))
                                return -ENOMEM;
                        c->out = b;
                        c->out_cap = cap;
                }
                memcpy(c->out + c->out_len, data, (size_t) n);
                c->out_len += (size_t) n;
        }
        while (c->out_len > 0) {
                ssize_t n = send(c->fd, c->out, c->out_len, MSG_NOSIGNAL | MSG_DONTWAIT);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
                        break;
                if (n <= 0)
                        return -EIO;
                memmove(c->out, c->out + n, c->out_len - (size_t) n);
                c->out_len -= (size_t) n;
        }
        c->blocked = c->out_len > 0;
        if (!c->blocked) { /* an idle connection holds no buffer of ours */
                free(c->out);
                c->out = NULL;
                c->out_cap = 0;
        }
        return 0;
}

/* Watches c for reading, or for writing while a send would block. */
static void h2conn_arm(struct h2conn *c)
{
        struct epoll_event ev = { .events = c->blocked ? EPOLLOUT : EPOLLIN, .data.ptr = c };

        (void) epoll_ctl(c->w->ep, EPOLL_CTL_MOD, c->fd, &ev);
}

/* Sends what c has queued (Watch messages), unless the peer is not reading (c blocked:
 * the queue stays in nghttp2, coalesced to one message per stream, until it reads).
 * false: closed. */
static bool h2conn_flush_or_close(struct h2conn *c)
{
        if (c->blocked)
                return true;
        if (h2conn_flush(c) < 0) {
                h2conn_close(c);
                return false;
        }
        if (c->blocked)
                h2conn_arm(c);
        return true;
}

/* c's socket is ready: one bounded read, fed to nghttp2, answers sent. false: closed. */
static bool h2conn_io(struct h2conn *c, uint32_t events)
{
        uint8_t buf[16384];
        size_t total = 0;
        bool was_blocked = c->blocked;
        uint64_t active = c->active_ns;

        if (c->blocked && (events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) && h2conn_flush(c) < 0)
                goto close;
        while (!c->blocked && total < SERVER_GRPC_READ_BUDGET) {
                ssize_t n = recv(c->fd, buf, sizeof(buf), MSG_DONTWAIT);
                if (n == 0)
                        goto close; /* the peer left, or we were shed */
                if (n < 0) {
                        if (errno == EAGAIN || errno == EWOULDBLOCK)
                                break;
                        if (errno == EINTR)
                                continue;
                        goto close;
                }
                total += (size_t) n;
                if (nghttp2_session_mem_recv(c->session, buf, (size_t) n) < 0)
                        goto bad;
                if (h2conn_flush(c) < 0)
                        goto close;
        }
        if (!nghttp2_session_want_read(c->session) && !nghttp2_session_want_write(c->session))
                goto close;
        if (c->blocked != was_blocked)
                h2conn_arm(c);
        if (c->active_ns != active && c->w->tail != c) { /* the list stays in active_ns order */
                conn_list_remove(c->w, c);
                conn_list_append(c->w, c);
        }
        return true;
bad:
        /* nghttp2 queued a GOAWAY for most errors: one try at sending it */
        (void) h2conn_flush(c);
close:
        h2conn_close(c);
        return false;
}

/* A connection handed over by the accept thread: its session, then its first bytes
 * (already waiting: the preface). */
static void h2conn_start(struct grpc_worker *w, struct h2conn *c)
{
        struct epoll_event ev = { .events = EPOLLIN, .data.ptr = c };

        int one = 1;

        (void) setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)); /* answers are one write each */
        c->session = session_new(c);
        if (!c->session || epoll_ctl(w->ep, EPOLL_CTL_ADD, c->fd, &ev) < 0) {
                c->w = NULL;
                h2conn_close(c);
                return;
        }
        c->active_ns = now_ns();
        conn_list_append(w, c);
        (void) h2conn_io(c, EPOLLIN);
}

/* Closes the connections idle for SERVER_CONNECTION_TIMEOUT_S (a GOAWAY first); the
 * epoll timeout until the next one would be. */
static int worker_expire(struct grpc_worker *w)
{
        uint64_t now = now_ns(), idle = SERVER_CONNECTION_TIMEOUT_S * NSEC_PER_SEC;

        while (w->head && now - w->head->active_ns >= idle) {
                struct h2conn *c = w->head;
                if (c->n_watch) { /* a Watch keeps it (it may still be shed while idle) */
                        c->active_ns = now;
                        conn_list_remove(w, c);
                        conn_list_append(w, c);
                        continue;
                }
                (void) nghttp2_session_terminate_session(c->session, NGHTTP2_NO_ERROR);
                (void) h2conn_flush(c);
                h2conn_close(c);
        }
        if (!w->head)
                return -1;
        return (int) ((w->head->active_ns + idle - now) / NSEC_PER_MSEC) + 1;
}

static void *worker_main(void *data)
{
        struct grpc_worker *w = data;
        struct server *srv = w->g->srv;
        struct epoll_event evs[GRPC_EPOLL_BATCH];

        while (!atomic_load(&srv->stopping)) {
                int timeout = worker_expire(w), n;
                if (w->n_watch) {
                        uint64_t now = now_ns();
                        int tick = w->watch_tick_ns > now
                                           ? (int) ((w->watch_tick_ns - now + NSEC_PER_MSEC - 1) / NSEC_PER_MSEC)
                                           : 0;
                        if (timeout < 0 || tick < timeout)
                                timeout = tick;
                }
                bool woken = false;
                n = epoll_wait(w->ep, evs, GRPC_EPOLL_BATCH, timeout);
                for (int i = 0; i < n; i++) {
                        if (evs[i].data.ptr == &w->wake_fd)
                                woken = true;
                        else if (evs[i].data.ptr && evs[i].data.ptr != &srv->stop_fd)
                                (void) h2conn_io(evs[i].data.ptr, evs[i].events);
                }
                /* only once the batch is done: starting connections and updating watches
                 * may close connections, whose later events in the batch would then
                 * point at freed memory */
                if (woken) {
                        struct h2conn *in;
                        eventfd_t v;
                        (void) eventfd_read(w->wake_fd, &v);
                        pthread_mutex_lock(&w->lock);
                        in = w->incoming;
                        w->incoming = NULL;
                        pthread_mutex_unlock(&w->lock);
                        while (in) {
                                struct h2conn *next = in->next_incoming;
                                h2conn_start(w, in);
                                in = next;
                        }
                }
                if (woken || (w->n_watch && now_ns() >= w->watch_tick_ns))
                        watch_update(w); /* also woken by each publication */
        }
        return NULL;
}

/* ---- the server's side ---------------------------------------------------------------- */

int server_grpc_start(struct server *srv)
{
        struct grpc_state *g = calloc(1, sizeof(*g));

        if (!g)
                return -ENOMEM;
        g->srv = srv;
        srv->grpc = g;
        for (int i = 0; i < SERVER_GRPC_THREADS; i++) { /* what server_grpc_free expects of every worker */
                g->w[i].g = g;
                g->w[i].ep = g->w[i].wake_fd = -1;
                pthread_mutex_init(&g->w[i].lock, NULL);
        }
        for (int i = 0; i < SERVER_GRPC_THREADS; i++) {
                struct grpc_worker *w = &g->w[i];
                struct epoll_event wake = { .events = EPOLLIN, .data.ptr = &w->wake_fd },
                                   stop = { .events = EPOLLIN, .data.ptr = &srv->stop_fd };
                int r;
                w->ep = epoll_create1(EPOLL_CLOEXEC);
                w->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
                if (w->ep < 0 || w->wake_fd < 0 || epoll_ctl(w->ep, EPOLL_CTL_ADD, w->wake_fd, &wake) < 0 ||
                    epoll_ctl(w->ep, EPOLL_CTL_ADD, srv->stop_fd, &stop) < 0)
                        return -errno;
                r = pthread_create(&w->thread, NULL, worker_main, w); /* returns its error, errno untouched */
                if (r != 0)
                        return -r;
                w->started = true;
        }
        return 0;
}

bool server_grpc_add(struct server *srv, int fd, struct conn *k)
{
        struct grpc_state *g = srv->grpc;
        struct grpc_worker *w;
        struct h2conn *c;

        if (!g || !g->w[0].started)
                return false;
        w = &g->w[atomic_fetch_add(&g->next, 1) % SERVER_GRPC_THREADS];
        if (!w->started)
                w = &g->w[0];
        c = calloc(1, sizeof(*c));
        if (!c)
                return false;
        c->w = w;
        c->g = g;
        c->k = k;
        c->fd = fd;
        pthread_mutex_lock(&w->lock);
        c->next_incoming = w->incoming;
        w->incoming = c;
        pthread_mutex_unlock(&w->lock);
        (void) eventfd_write(w->wake_fd, 1);
        return true;
}

void server_grpc_published(struct server *srv)
{
        struct grpc_state *g = srv->grpc;

        if (!g || !atomic_load_explicit(&g->watchers, memory_order_relaxed))
                return;
        for (int i = 0; i < SERVER_GRPC_THREADS; i++)
                if (g->w[i].started)
                        (void) eventfd_write(g->w[i].wake_fd, 1);
}

void server_grpc_stop(struct server *srv)
{
        struct grpc_state *g = srv->grpc;

        if (!g)
                return;
        for (int i = 0; i < SERVER_GRPC_THREADS; i++)
                if (g->w[i].started)
                        pthread_join(g->w[i].thread, NULL);
}

void server_grpc_free(struct server *srv)
{
        struct grpc_state *g = srv->grpc;

        if (!g)
                return;
        for (int i = 0; i < SERVER_GRPC_THREADS; i++) {
                struct grpc_worker *w = &g->w[i];
                while (w->incoming) {
                        struct h2conn *c = w->incoming;
                        w->incoming = c->next_incoming;
                        c->w = NULL;
                        h2conn_close(c);
                }
                while (w->head) {
                        (void) nghttp2_session_terminate_session(w->head->session, NGHTTP2_NO_ERROR);
                        (void) h2conn_flush(w->head);
                        h2conn_close(w->head);
                }
                if (w->ep >= 0)
                        (void) close(w->ep);
                if (w->wake_fd >= 0)
                        (void) close(w->wake_fd);
                pthread_mutex_destroy(&w->lock);
        }
        free(g);
        srv->grpc = NULL;
}

size_t server_grpc_metrics(struct server *srv, char *out, size_t size)
{
        struct grpc_state *g = srv->grpc;
        size_t len = 0;
        int n;

        if (!g || size == 0)
                return 0;
        out[0] = '\0';
        n = snprintf(out, size,
                     "# HELP probed_grpc_health_requests_total gRPC health calls on the status port, by service "
                     "(overall, liveness, startup, readiness, probe: a probe's name, other) and result.\n"
                     "# TYPE probed_grpc_health_requests_total counter\n");
        if (n < 0 || (size_t) n >= size) {
                out[0] = '\0';
                return 0;
        }
        len = (size_t) n;
        for (int s = 0; s < _SVC_MAX; s++)
                for (int r = 0; r < _RES_MAX; r++) {
                        uint64_t v = atomic_load_explicit(&g->count[s][r], memory_order_relaxed);
                        /* the aggregates' two answers always, the rest once seen */
                        if (!v && !(s <= SVC_READINESS && r <= RES_NOT_SERVING))
                                continue;
                        n = snprintf(out + len, size - len,
                                     "probed_grpc_health_requests_total{service=\"%s\",result=\"%s\"} %" PRIu64 "\n",
                                     svc_label[s], res_label[r], v);
                        if (n < 0 || (size_t) n >= size - len) {
                                out[len] = '\0'; /* whole lines only (GRPC_METRICS_MAX fits them all) */
                                return len;
                        }
                        len += (size_t) n;
                }
        return len;
}

int server_grpc_feed(struct server *srv, const uint8_t *data, size_t len)
{
        struct grpc_state g = { .srv = srv };
        struct h2conn c = { .fd = -1, .g = &g };
        ssize_t n;

        c.session = session_new(&c);
        if (!c.session)
                return -ENOMEM;
        n = nghttp2_session_mem_recv(c.session, data, len);
        if (n >= 0)
                (void) h2conn_flush(&c);
        h2conn_session_del(&c);
        return n < 0 ? (int) n : 0;
}
