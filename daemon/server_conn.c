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
 * stream and closes it in its own thread. Past SERVER_CONNECTION_HARD_LIMIT a new
 * connection is closed at once. */
#include <errno.h>
#include <microhttpd.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "bounds.h"
#include "log.h"
#include "server_int.h"

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
void *server_accept_main(void *data)
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
                                                       "Failed to accept a status connection, pausing accepts", "event",
                                                       "http", "error", strerror(errno), NULL);
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
