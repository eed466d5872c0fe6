/* The status server's connections (docs/design.md, "Where each concern lives";
 * README.md, "Status server limits").
 *
 * This file owns the accept thread, probed's own connection limit, the tracking of
 * every connection MHD serves and the shedding of the oldest idle one.
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
 * stream and closes it in its own thread.
 *
 * "A complete request" is also one MHD has not read yet: its head waiting in the socket
 * (a peek, only at the limits); such a connection is never shed. Shed connections count
 * until MHD has closed them, so clients that reopen each shed connection at once keep
 * the server at SERVER_CONNECTION_HARD_LIMIT while MHD catches up, and the platform's
 * /livez must not be turned away for that (README.md, "Status server limits"): past the
 * hard limit a new connection is admitted only with a complete request (at most
 * SERVER_REQUEST_RESERVE more). One whose request has not arrived yet is held here, up
 * to SERVER_HOLD_MAX of them (the one held longest makes room), until its request comes
 * or SERVER_HOLD_MS pass; then it is closed.
 *
 * One port, two protocols (README.md, "gRPC health"): before an admitted connection is
 * handed over, its first bytes are peeked at (MSG_PEEK, nothing consumed). The HTTP/2
 * connection preface (24 bytes) sends it to daemon/server_grpc.c, any byte that differs
 * from the preface to MHD. One that has sent nothing yet, or only the start of the
 * preface, waits here ("sniffing": an edge-triggered epoll set of ours, so a slow
 * client never holds up the accept thread) until its bytes decide, for at most
 * SERVER_CONNECTION_TIMEOUT_S (MHD's idle timeout), and is closed then. Sniffing and
 * gRPC connections are in the connection list and count like MHD's: the limit, the
 * shedding of the oldest idle one (a gRPC connection is idle while no stream is open)
 * and the hold past the hard limit apply to all alike. */
#include <errno.h>
#include <microhttpd.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "bounds.h"
#include "log.h"
#include "server_int.h"
#include "util.h"

/* Does fd (MHD's or not admitted yet) have a complete request head waiting, unread? */
static bool conn_has_request(int fd)
{
        char buf[SERVER_REQUEST_PEEK + 1];
        ssize_t n = recv(fd, buf, SERVER_REQUEST_PEEK, MSG_PEEK | MSG_DONTWAIT);

        if (n <= 0)
                return false;
        buf[n] = '\0';
        return strstr(buf, "\r\n\r\n") || strstr(buf, "\n\n");
}

/* The connection's own state (its socket context), NULL if it had no memory for it. */
struct conn *conn_of(struct MHD_Connection *c)
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

static void conn_untrack_locked(struct server *srv, struct conn *k)
{
        if (k && k->linked)
                conn_unlink(srv, k);
        else if (k)
                srv->n_shed--; /* shed: unlinked when it was shut down */
        srv->n_conns--;
}

void server_conn_untrack(struct server *srv, struct conn *k)
{
        pthread_mutex_lock(&srv->conn_lock);
        conn_untrack_locked(srv, k);
        pthread_mutex_unlock(&srv->conn_lock);
        free(k);
}

/* MHD's thread of the connection: started (after our accept thread counted it) and
 * closed (before MHD closes its fd). */
void server_notify_connection(void *cls, struct MHD_Connection *c, void **socket_context,
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
        conn_untrack_locked(srv, k);
        pthread_mutex_unlock(&srv->conn_lock);
        /* A body the render thread left for it when MHD closed it before calling the
         * handler again (client gone, or shutdown: MHD resumes and closes every
         * connection once the render thread is joined). Never a suspended connection:
         * MHD closes none, so the render thread is done with k. */
        if (k)
                doc_unref(k->doc);
        free(k);
        *socket_context = NULL;
}

/* A request answered in full (or abandoned): the connection is idle again. It keeps
 * its place (connection age): no lock on the path of every request. */
void server_completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode toe)
{
        struct conn *k = conn_of(c);

        (void) cls;
        (void) con_cls;
        (void) toe;
        if (k)
                atomic_store_explicit(&k->busy, false, memory_order_relaxed);
}

/* ---- one port, two protocols ---------------------------------------------------------- */

#define H2_PREFACE "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
#define H2_PREFACE_LEN 24

enum proto {
        PROTO_WAIT,  /* nothing yet, or the start of the preface */
        PROTO_HTTP1, /* a byte that is not the preface's */
        PROTO_H2,    /* the whole preface */
        PROTO_GONE,  /* closed or failed before a byte */
};

/* What fd's first bytes say (peeked: MHD or nghttp2 reads them again). */
static enum proto conn_proto(int fd)
{
        char buf[H2_PREFACE_LEN];
        ssize_t n = recv(fd, buf, sizeof(buf), MSG_PEEK | MSG_DONTWAIT);

        if (n < 0)
                return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? PROTO_WAIT : PROTO_GONE;
        if (n == 0)
                return PROTO_GONE;
        if (memcmp(buf, H2_PREFACE, (size_t) n) != 0)
                return PROTO_HTTP1;
        return n == H2_PREFACE_LEN ? PROTO_H2 : PROTO_WAIT;
}

/* A connection whose first bytes have not decided yet (the accept thread's). */
struct sniff {
        struct sniff *prev, *next; /* srv->sniff_head, oldest first */
        struct conn *k;            /* in the connection list; k->fd */
        uint64_t until_ns;
        socklen_t len;
        struct sockaddr_storage sa;
};

/* A tracked connection of ours (sniffing or gRPC), appended to the list; NULL on ENOMEM. */
static struct conn *conn_track_new(struct server *srv, int fd)
{
        struct conn *k = calloc(1, sizeof(*k));

        if (!k)
                return NULL;
        k->fd = fd;
        atomic_init(&k->busy, false);
        pthread_mutex_lock(&srv->conn_lock);
        conn_append(srv, k);
        pthread_mutex_unlock(&srv->conn_lock);
        return k;
}

/* k leaves the list but its connection stays counted (MHD tracks it anew); false when
 * it was shed meanwhile (then it is counted out: close its fd). Frees k. */
static bool conn_release(struct server *srv, struct conn *k)
{
        bool shed;

        pthread_mutex_lock(&srv->conn_lock);
        shed = !k->linked;
        if (shed)
                conn_untrack_locked(srv, k);
        else
                conn_unlink(srv, k);
        pthread_mutex_unlock(&srv->conn_lock);
        free(k);
        return !shed;
}

static void server_uncount(struct server *srv)
{
        pthread_mutex_lock(&srv->conn_lock);
        srv->n_conns--;
        pthread_mutex_unlock(&srv->conn_lock);
}

/* Hands c (admitted: counted) to MHD. k: its tracking while it was sniffing, or NULL. */
static void server_to_mhd(struct server *srv, int c, struct sockaddr_storage *sa, socklen_t len, struct conn *k)
{
        if (k && !conn_release(srv, k)) {
                (void) close(c);
                return;
        }
        /* MHD owns c from here, and closes it itself when it cannot take it. */
        if (MHD_add_connection(srv->mhd, c, (struct sockaddr *) sa, len) != MHD_YES)
                server_uncount(srv);
}

/* Hands c (admitted, tracked as k, or k NULL) to the gRPC threads. */
static void server_to_grpc(struct server *srv, int c, struct conn *k)
{
        if (!k && !(k = conn_track_new(srv, c))) {
                server_uncount(srv);
                (void) close(c);
                return;
        }
        if (!server_grpc_add(srv, c, k)) {
                server_conn_untrack(srv, k);
                (void) close(c);
        }
}

static void sniff_unlink(struct server *srv, struct sniff *s)
{
        if (s->prev)
                s->prev->next = s->next;
        else
                srv->sniff_head = s->next;
        if (s->next)
                s->next->prev = s->prev;
        else
                srv->sniff_tail = s->prev;
        (void) epoll_ctl(srv->sniff_ep, EPOLL_CTL_DEL, s->k->fd, NULL);
}

/* Starts sniffing c (admitted); false when it cannot (c is still the caller's). */
static bool sniff_add(struct server *srv, int c, struct sockaddr_storage *sa, socklen_t len)
{
        struct sniff *s = calloc(1, sizeof(*s));
        struct epoll_event ev = { .events = EPOLLIN | EPOLLRDHUP | EPOLLET };

        if (!s || !(s->k = conn_track_new(srv, c))) {
                free(s);
                return false;
        }
        ev.data.ptr = s;
        if (epoll_ctl(srv->sniff_ep, EPOLL_CTL_ADD, c, &ev) < 0) {
                (void) conn_release(srv, s->k); /* still counted: the caller hands c on */
                free(s);
                return false;
        }
        s->until_ns = now_ns() + SERVER_CONNECTION_TIMEOUT_S * NSEC_PER_SEC;
        s->len = len;
        memcpy(&s->sa, sa, sizeof(*sa));
        s->prev = srv->sniff_tail;
        if (srv->sniff_tail)
                srv->sniff_tail->next = s;
        else
                srv->sniff_head = s;
        srv->sniff_tail = s;
        return true;
}

/* A sniffing connection's bytes changed (or it expired, or the server stops: gone):
 * handed on once they decide, closed when it left or was shed. */
static void sniff_step(struct server *srv, struct sniff *s, bool gone)
{
        int fd = s->k->fd;
        /* shed meanwhile: closed whatever came, never handed on */
        enum proto p = gone || !s->k->linked ? PROTO_GONE : conn_proto(fd);

        if (p == PROTO_WAIT)
                return;
        sniff_unlink(srv, s);
        if (p == PROTO_HTTP1)
                server_to_mhd(srv, fd, &s->sa, s->len, s->k);
        else if (p == PROTO_H2)
                server_to_grpc(srv, fd, s->k);
        else {
                server_conn_untrack(srv, s->k);
                (void) close(fd);
        }
        free(s);
}

/* The sniffing connections whose bytes changed, then those past their time. */
static void sniff_serve(struct server *srv, bool readable)
{
        struct epoll_event evs[SERVER_ACCEPT_BATCH];
        int n = readable ? epoll_wait(srv->sniff_ep, evs, SERVER_ACCEPT_BATCH, 0) : 0;
        uint64_t now = now_ns();

        for (int i = 0; i < n; i++)
                sniff_step(srv, evs[i].data.ptr, false);
        while (srv->sniff_head && srv->sniff_head->until_ns <= now)
                sniff_step(srv, srv->sniff_head, true);
}

/* Hands an admitted connection on by its first bytes. */
static void server_dispatch(struct server *srv, int c, struct sockaddr_storage *sa, socklen_t len)
{
        switch (conn_proto(c)) {
        case PROTO_H2:
                server_to_grpc(srv, c, NULL);
                break;
        case PROTO_WAIT:
                if (!sniff_add(srv, c, sa, len))
                        server_to_mhd(srv, c, sa, len, NULL); /* no memory to wait: MHD takes it */
                break;
        case PROTO_HTTP1:
                server_to_mhd(srv, c, sa, len, NULL);
                break;
        case PROTO_GONE:
                server_uncount(srv);
                (void) close(c);
                break;
        }
}

/* Admits one accepted connection: at the limit the oldest idle one is shed first; past
 * the hard limit c is admitted only if it has sent a complete request (within
 * SERVER_REQUEST_RESERVE). Otherwise c (still ours) is closed, or with may_hold left to
 * the caller to hold: false then. */
static bool server_admit(struct server *srv, int c, struct sockaddr_storage *sa, socklen_t len, bool may_hold)
{
        bool admit;

        pthread_mutex_lock(&srv->conn_lock);
        if (srv->n_conns - srv->n_shed >= SERVER_CONNECTION_LIMIT) {
                struct conn *k = srv->conns_head;
                while (k && (atomic_load(&k->busy) || conn_has_request(k->fd)))
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
        admit = srv->n_conns < SERVER_CONNECTION_HARD_LIMIT ||
                (srv->n_conns < SERVER_CONNECTION_HARD_LIMIT + SERVER_REQUEST_RESERVE && conn_has_request(c));
        if (admit)
                srv->n_conns++;
        pthread_mutex_unlock(&srv->conn_lock);
        if (!admit) {
                if (may_hold)
                        return false;
                (void) close(c);
                return true;
        }
        server_dispatch(srv, c, sa, len);
        return true;
}

/* A connection accepted past the hard limit without a complete request yet, held by the
 * accept thread: admitted once its request arrives, closed after SERVER_HOLD_MS. */
struct held {
        int fd;
        socklen_t len;
        uint64_t until_ns;
        struct sockaddr_storage sa;
};

/* The held connections after a poll (pfd[i] is held[i]'s): one that became readable is
 * admitted with a complete request and closed otherwise (a partial head, or the client
 * left); one past its time is closed. Returns how many are still held. */
static unsigned server_held_serve(struct server *srv, struct held *held, const struct pollfd *pfd, unsigned n,
                                  uint64_t now)
{
        unsigned kept = 0;

        for (unsigned i = 0; i < n; i++) {
                if (pfd[i].revents && conn_has_request(held[i].fd))
                        (void) server_admit(srv, held[i].fd, &held[i].sa, held[i].len, false);
                else if (pfd[i].revents || now >= held[i].until_ns)
                        (void) close(held[i].fd);
                else
                        held[kept++] = held[i];
        }
        return kept;
}

/* Holds c; when all SERVER_HOLD_MAX are held, the one held longest is closed for it. */
static unsigned server_hold(struct held *held, unsigned n, int c, struct sockaddr_storage *sa, socklen_t len)
{
        unsigned slot = n;

        if (n == SERVER_HOLD_MAX) {
                slot = 0;
                for (unsigned i = 1; i < n; i++)
                        if (held[i].until_ns < held[slot].until_ns)
                                slot = i;
                (void) close(held[slot].fd);
        }
        held[slot] = (struct held){ .fd = c, .len = len, .until_ns = now_ns() + SERVER_HOLD_MS * NSEC_PER_MSEC };
        memcpy(&held[slot].sa, sa, sizeof(*sa));
        return slot == n ? n + 1 : n;
}

/* The accept thread: the listen socket, the stop eventfd and the held connections; out
 * of fds it stops looking at the listen socket for SERVER_ACCEPT_PAUSE_MS (one log line
 * per run). */
void *server_accept_main(void *data)
{
        struct server *srv = data;
        struct pollfd pfd[3 + SERVER_HOLD_MAX];
        struct held held[SERVER_HOLD_MAX];
        unsigned n_held = 0;
        uint64_t paused_until = 0;
        bool paused_logged = false;

        while (!atomic_load(&srv->stopping)) {
                uint64_t now = now_ns(), wake = now < paused_until ? paused_until : UINT64_MAX;
                int timeout = -1, n;

                pfd[0] = (struct pollfd){ .fd = srv->stop_fd, .events = POLLIN };
                pfd[1] = (struct pollfd){ .fd = now < paused_until ? -1 : srv->listen_fd, .events = POLLIN };
                pfd[2] = (struct pollfd){ .fd = srv->sniff_ep, .events = POLLIN };
                if (srv->sniff_head && srv->sniff_head->until_ns < wake)
                        wake = srv->sniff_head->until_ns;
                for (unsigned i = 0; i < n_held; i++) {
                        pfd[3 + i] = (struct pollfd){ .fd = held[i].fd, .events = POLLIN };
                        if (held[i].until_ns < wake)
                                wake = held[i].until_ns;
                }
                if (wake != UINT64_MAX)
                        timeout = wake > now ? (int) ((wake - now + NSEC_PER_MSEC - 1) / NSEC_PER_MSEC) : 0;
                n = poll(pfd, 3 + n_held, timeout);
                if (n < 0 && errno != EINTR)
                        (void) poll(NULL, 0, SERVER_ACCEPT_PAUSE_MS); /* cannot happen; never spin */
                if (pfd[0].revents)
                        continue;
                sniff_serve(srv, n > 0 && pfd[2].revents);
                n_held = server_held_serve(srv, held, pfd + 3, n_held, now_ns());
                if (n <= 0 || !pfd[1].revents)
                        continue;
                for (int i = 0; i < SERVER_ACCEPT_BATCH; i++) {
                        struct sockaddr_storage sa;
                        socklen_t len = sizeof(sa);
                        int c = accept4(srv->listen_fd, (struct sockaddr *) &sa, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);

                        if (c < 0) {
                                if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                                        if (!paused_logged)
                                                log_kv(LOG_LEVEL_WARNING,
                                                       "Failed to accept a status connection, pausing accepts", "event",
                                                       "http", "error", strerror(errno), NULL);
                                        paused_logged = true;
                                        paused_until = now_ns() + SERVER_ACCEPT_PAUSE_MS * NSEC_PER_MSEC;
                                }
                                break; /* EAGAIN: all accepted; ECONNABORTED etc.: the client left */
                        }
                        paused_logged = false;
                        if (!server_admit(srv, c, &sa, len, true))
                                n_held = server_hold(held, n_held, c, &sa, len);
                }
        }
        for (unsigned i = 0; i < n_held; i++)
                (void) close(held[i].fd);
        while (srv->sniff_head)
                sniff_step(srv, srv->sniff_head, true);
        return NULL;
}
