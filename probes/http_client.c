/* probed's own HTTP/1.1 client as a stream client over one attempt; see
 * include/http_client.h. A sidecar's probes are plain http to localhost, and this is their
 * cost: a few syscalls, no allocation beyond the attempt.
 *
 * Fairness (docs/design.md, "Stalls and busy wake-ups"): one wake-up reads at most
 * LOOP_READ_BUDGET bytes, then returns to the loop with the socket still registered
 * (level-triggered: the next iteration comes back to it); the user's feed bounds the
 * attempt as a whole (http_client: max_body through the body callback, and
 * HTTP_MAX_HEADER_BYTES). */
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "http_client.h"
#include "probe_net.h"

#define READ_CHUNK 4096 /* bytes per recv(), on the loop's stack */

static int client_watch(struct stream_client *c, uint32_t events)
{
        int r;

        if (c->events == events)
                return 0;
        r = c->events ? attempt_io_mod(c->a, c->fd, events) : attempt_io_add(c->a, c->fd, events, c->on_io);
        if (r == 0)
                c->events = events;
        return r;
}

static void client_fail(struct stream_client *c, int err)
{
        char msg[96];

        probe_strerror(err, msg, sizeof(msg));
        attempt_end(c->a, OUTCOME_FAILURE, "%s", msg);
}

void stream_client_close(struct stream_client *c)
{
        probe_close(c->a, &c->fd);
        c->events = 0;
}

void stream_client_free(struct stream_client *c)
{
        if (c->fd >= 0)
                (void) close(c->fd);
        c->fd = -1;
        c->events = 0;
}

static int client_connect_next(struct stream_client *c, int err);

/* Sends what is left of the request; then waits for the answer. Returns -errno when
 * probed could not go on (the caller ends the attempt as an error), else 0. */
static int client_send(struct stream_client *c)
{
        ssize_t n = send(c->fd, c->request + c->sent, c->request_len - c->sent, MSG_NOSIGNAL);

        if (n < 0) {
                if (errno == EAGAIN || errno == EWOULDBLOCK)
                        return client_watch(c, EPOLLOUT); /* still connecting, or a full buffer */
                if (c->sent == 0)                         /* refused, unreachable: the next address may answer */
                        return client_connect_next(c, errno);
                client_fail(c, errno);
                return 0;
        }
        c->sent += (size_t) n;
        return client_watch(c, c->sent < c->request_len ? EPOLLOUT : EPOLLIN);
}

/* Connects to the host's next address (localhost: ::1, then 127.0.0.1) and sends the
 * request; err: why the previous address failed (0 at first). When the last one fails
 * for want of probed's own fds, memory or ports, returns -errno (an error outcome). */
static int client_connect_next(struct stream_client *c, int err)
{
        int fd;

        stream_client_close(c);
        fd = probe_connect_next(c->a, c->addrs, &c->next_addr, err);
        if (fd >= 0) {
                c->fd = fd;
                return client_send(c);
        }
        if (probe_errno_is_local(-fd))
                return fd;
        client_fail(c, -fd);
        return 0;
}

static void client_read(struct stream_client *c)
{
        char buf[READ_CHUNK];

        for (size_t budget = LOOP_READ_BUDGET; budget >= sizeof(buf); budget -= sizeof(buf)) {
                ssize_t n = recv(c->fd, buf, sizeof(buf), 0);

                if (n < 0) {
                        if (errno != EAGAIN && errno != EWOULDBLOCK)
                                client_fail(c, errno);
                        return;
                }
                if (!c->feed(c, buf, (size_t) n))
                        return;
                if ((size_t) n < sizeof(buf))
                        return; /* drained: epoll tells when more comes */
        }
        /* budget spent: the socket stays registered, epoll brings us back */
}

void stream_client_on_io(struct stream_client *c)
{
        int r = 0;

        if (c->sent < c->request_len)
                r = client_send(c);
        else
                client_read(c);
        if (r < 0)
                attempt_end(c->a, OUTCOME_ERROR, "cannot run attempt: %s", strerror(-r));
}

int stream_client_start(struct stream_client *c)
{
        c->sent = 0;
        c->next_addr = 0;
        return client_connect_next(c, 0);
}

/* ---- HTTP/1.x on the stream: the response parser as the feed ------------------------ */

static bool http_feed(struct stream_client *s, const char *buf, size_t n)
{
        struct http_client *c = (struct http_client *) ((char *) s - offsetof(struct http_client, s));
        int rc = n == 0 ? http_resp_eof(&c->resp) : http_resp_feed(&c->resp, buf, n, c->body, c->data);

        if (rc == HTTP_RESP_MORE)
                return true;
        c->done(c, rc);
        return false;
}

int http_client_start(struct http_client *c, bool head)
{
        c->resp = (struct http_resp){ .no_body = head, .head_max = HTTP_MAX_HEADER_BYTES };
        c->s.feed = http_feed;
        return stream_client_start(&c->s);
}

void http_client_free(struct http_client *c)
{
        stream_client_free(&c->s);
        http_resp_free(&c->resp);
}
