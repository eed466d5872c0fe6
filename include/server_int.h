/* The status server's internals, shared by its four files and nothing else (see
 * docs/design.md, "Where each concern lives"):
 * daemon/server.c (start and stop, publishing, routing, the request handler),
 * daemon/server_conn.c (the accept thread, probed's connection limit, connection
 * tracking and shedding), daemon/server_docs.c (the shared /status and /metrics
 * documents: render thread, refcounts, byte budget, per-request streaming) and
 * daemon/server_fresh.c (the freshness wait and the watchdog) and daemon/server_grpc.c
 * (gRPC health over HTTP/2 on the same port). */
#pragma once
#include <errno.h>
#include <microhttpd.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bounds.h"
#include "heartbeat.h"
#include "snapshot.h"

enum route {
        ROUTE_STARTUP,
        ROUTE_LIVEZ,
        ROUTE_READYZ,
        ROUTE_STATUS,
        ROUTE_METRICS,
        _ROUTE_MAX,
        _ROUTE_INVALID = -EINVAL,
};

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

struct job;
struct grpc_state;
struct sniff;

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

        /* server_conn.c */
        pthread_mutex_t conn_lock;
        struct conn *conns_head, *conns_tail; /* guarded by conn_lock */
        unsigned n_conns;                     /* admitted and not closed yet, shed ones included */
        unsigned n_shed;                      /* shut down by us, not closed by MHD yet */

        /* server_docs.c */
        pthread_mutex_t doc_lock;
        size_t doc_bytes;             /* guarded by doc_lock: bytes of every doc alive */
        struct doc *latest[_DOC_MAX]; /* guarded by doc_lock: last rendered, NULL once freed */

        pthread_t renderer; /* renders bodies while their requests are suspended */
        bool renderer_started;
        pthread_mutex_t job_lock;
        pthread_cond_t job_cond;
        struct job *jobs_head, *jobs_tail; /* guarded by job_lock */
        bool jobs_stop;                    /* guarded by job_lock */

        /* server_fresh.c: threads using hb right now, one counter per thread (its own
         * cache line): a server_free that gave up on MHD's threads waits for them to leave
         * the loop's memory before the loop is freed */
        struct {
                _Alignas(64) atomic_uint n;
        } hb_users[SERVER_THREADS + 2];
        atomic_uint hb_users_next;

        struct grpc_state *grpc;               /* server_grpc.c: its threads and counters */
        int sniff_ep;                          /* server_conn.c: the accept thread's connections not classified yet */
        struct sniff *sniff_head, *sniff_tail; /* ... oldest first; the accept thread's only */

        atomic_bool stuck;           /* in a watchdog episode (logged once) */
        _Atomic uint64_t stuck_done; /* the heartbeat's done_ns when the episode began */
};

/* server.c */
struct published *published_unref(struct published *p);
/* The latest published state (a reference; NULL before the first). */
struct published *server_current(struct server *srv);
/* The route of a request target's path, _ROUTE_INVALID for an unknown one. */
enum route route_of(const char *url);
extern const unsigned route_scope[ROUTE_READYZ + 1]; /* each verdict's enum scope */

/* server_conn.c */
void *server_accept_main(void *data);
void server_notify_connection(void *cls, struct MHD_Connection *c, void **socket_context,
                              enum MHD_ConnectionNotificationCode code);
void server_completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode toe);
struct conn *conn_of(struct MHD_Connection *c);
/* A connection served outside MHD (gRPC) leaves the connection list and count, under
 * conn_lock, before its fd is closed; frees k. */
void server_conn_untrack(struct server *srv, struct conn *k);

/* server_docs.c */
struct doc *doc_unref(struct doc *d);
enum MHD_Result queue_doc(struct server *srv, struct MHD_Connection *c, struct doc *d);
enum MHD_Result answer_doc(struct server *srv, struct MHD_Connection *c, struct conn *k, struct published *p,
                           enum doc_kind kind);
void *server_render_main(void *data);
void server_render_stop(struct server *srv);

/* server_fresh.c */
struct heartbeat *server_hb_enter(struct server *srv);
void server_hb_leave(struct server *srv);
bool server_fresh_stuck(struct server *srv, struct conn *k, enum route route, uint64_t *ret_behind);
bool server_fresh_stuck_at(struct server *srv, uint64_t arrival, bool verdict, uint64_t *ret_behind);
void server_hb_wait_unused(struct server *srv);

/* server_grpc.c: gRPC health on the status port */
int server_grpc_start(struct server *srv); /* its threads; -errno */
/* Serves fd (counted, and tracked as k) on a gRPC thread; false: not taken (fd and k
 * are still the caller's). */
bool server_grpc_add(struct server *srv, int fd, struct conn *k);
/* A new snapshot was published (the loop thread): wakes the threads with Watch calls. */
void server_grpc_published(struct server *srv);
void server_grpc_stop(struct server *srv); /* joins its threads (stopping and stop_fd set) */
void server_grpc_free(struct server *srv); /* closes its connections; once stopped */
/* The probed_grpc_health_requests_total family, at most size bytes (NUL-terminated,
 * whole lines); returns its length. */
size_t server_grpc_metrics(struct server *srv, char *out, size_t size);
/* The request path without a socket (tests/fuzz/fuzz_grpcserver.c): data fed to a fresh
 * server session, answered from srv's current snapshot, the output discarded. 0, or
 * nghttp2's error. */
int server_grpc_feed(struct server *srv, const uint8_t *data, size_t len);
