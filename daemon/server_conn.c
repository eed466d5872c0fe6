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
 * or SERVER_HOLD_MS pass; then it is closed. */
#include <errno.h>
#include <microhttpd.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
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
        if (k && k->linked)
                conn_unlink(srv, k);
        else if (k)
                srv->n_shed--; /* shed: unlinked when it was shut down */
        srv->n_conns--;
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
        /* MHD owns c from here, and closes it itself when it cannot take it. */
        if (MHD_add_connection(srv->mhd, c, (struct sockaddr *) sa, len) != MHD_YES) {
                pthread_mutex_lock(&srv->conn_lock);
                srv->n_conns--;
                pthread_mutex_unlock(&srv->conn_lock);
        }
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
        struct pollfd pfd[2 + SERVER_HOLD_MAX];
        struct held held[SERVER_HOLD_MAX];
        unsigned n_held = 0;
        uint64_t paused_until = 0;
        bool paused_logged = false;

        while (!atomic_load(&srv->stopping)) {
                uint64_t now = now_ns(), wake = now < paused_until ? paused_until : UINT64_MAX;
                int timeout = -1, n;

                pfd[0] = (struct pollfd){ .fd = srv->stop_fd, .events = POLLIN };
                pfd[1] = (struct pollfd){ .fd = now < paused_until ? -1 : srv->listen_fd, .events = POLLIN };
                for (unsigned i = 0; i < n_held; i++) {
                        pfd[2 + i] = (struct pollfd){ .fd = held[i].fd, .events = POLLIN };
                        if (held[i].until_ns < wake)
                                wake = held[i].until_ns;
                }
                if (wake != UINT64_MAX)
                        timeout = wake > now ? (int) ((wake - now + NSEC_PER_MSEC - 1) / NSEC_PER_MSEC) : 0;
                n = poll(pfd, 2 + n_held, timeout);
                if (n < 0 && errno != EINTR)
                        (void) poll(NULL, 0, SERVER_ACCEPT_PAUSE_MS); /* cannot happen; never spin */
                if (pfd[0].revents)
                        continue;
                n_held = server_held_serve(srv, held, pfd + 2, n_held, now_ns());
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
        return NULL;
}
