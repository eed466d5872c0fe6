/* tcp probe: success when a connection to `address` is established within the
 * timeout (as kubelet's tcpSocket). No byte is sent; the socket is closed abortively.
 * With `send` and/or `expect` (README "Probe kinds"), the connection is then used for one
 * exchange: the send bytes are written, and the answer is read (at most EXPECT_READ_MAX
 * bytes, one read per wake-up) until it contains expect.
 *
 *   start: resolve (README "Names") -> socket(O_NONBLOCK) -> connect() --> wait EPOLLOUT
 *                                                         | error          | error
 *                                                         v                v
 *                               next address of the host, or failure   SO_ERROR == 0
 *                               when none is left                      --> success
 *
 * Host names are resolved when the attempt starts, on the loop (attempt_resolve): a
 * literal address at once, a name from the cache or c-ares; the attempt never blocks. */
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "config.h"
#include "expect.h"
#include "loop.h"
#include "probe.h"
#include "probe_net.h"
#include "util.h"

#define TCP_SEND_MAX 65536 /* bytes of `send` */

struct tcp_spec {
        char *send, *expect; /* decoded (may hold NULs), or NULL */
        size_t send_len, expect_len;
        uint16_t port;
        char host[]; /* without the brackets of an IPv6 literal */
};

struct tcp_attempt {
        const struct tcp_spec *spec;
        int fd;
        unsigned next; /* the address to try when this one fails */
        struct addr_list addrs;
        /* the exchange (send/expect), once connected */
        bool connected, reading; /* reading: send is out, EPOLLIN armed */
        size_t sent, in_len;
        char waiting[2 * EXPECT_SHOW_MAX + 16]; /* a->waiting_for: expect, and what came */
        char in[];                              /* EXPECT_READ_MAX bytes with expect */
};

static void tcp_free_spec(void *p)
{
        struct tcp_spec *spec = p;

        if (!spec)
                return;
        free(spec->send);
        free(spec->expect);
        free(spec);
}

/* Reads `send` or `expect` (escapes decoded) into *ret. */
static int tcp_read_bytes(cJSON *obj, const char *path, const char *key, char **ret, size_t *ret_len, char **reterr)
{
        const char *s = NULL, *why = "";
        size_t off = 0;
        int r;

        if ((r = cfg_string(obj, key, path, false, &s, reterr)) < 0 || !s)
                return r;
        r = escape_decode(s, ret, ret_len, &off, &why);
        if (r == -EINVAL)
                return cfg_error(reterr, path, key, "\"%s\": %s at byte %zu (escapes: \\r \\n \\t \\\\ \\xHH)", s, why,
                                 off);
        if (r < 0)
                return r;
        if (*ret_len == 0 || *ret_len > TCP_SEND_MAX)
                return cfg_error(reterr, path, key, "must be 1 to %d bytes", TCP_SEND_MAX);
        if (strcmp(key, "expect") == 0 && *ret_len > EXPECT_READ_MAX)
                return cfg_error(reterr, path, key, "must be at most %d bytes (what is read)", EXPECT_READ_MAX);
        return 0;
}

static int tcp_parse(cJSON *obj, const char *path, void **ret_spec, char **ret_target, char **reterr)
{
        struct tcp_spec *spec;
        const char *address = NULL;
        int r;

        r = cfg_string(obj, "address", path, true, &address, reterr);
        if (r < 0)
                return r;
        spec = calloc(1, sizeof(*spec) + strlen(address) + 1);
        if (!spec)
                return -ENOMEM;
        /* the syntax only: config loading does no DNS (README "Names") */
        if (address_split(address, false, spec->host, strlen(address) + 1, &spec->port) < 0) {
                free(spec);
                return cfg_error(reterr, path, "address", "\"%s\" is not HOST:PORT", address);
        }
        if ((r = tcp_read_bytes(obj, path, "send", &spec->send, &spec->send_len, reterr)) < 0 ||
            (r = tcp_read_bytes(obj, path, "expect", &spec->expect, &spec->expect_len, reterr)) < 0) {
                tcp_free_spec(spec);
                return r;
        }
        *ret_target = strdup(address);
        if (!*ret_target) {
                tcp_free_spec(spec);
                return -ENOMEM;
        }
        *ret_spec = spec;
        return 0;
}

static attempt_io_fn tcp_on_io;

/* Connects to the next address of the host; an address that fails passes to the one
 * after (localhost: ::1, then 127.0.0.1). Ends the attempt when it is decided; returns
 * -errno when probed itself could not run it (the last address failed for want of
 * fds, memory or ports; nothing held then), else 0. */
static int tcp_connect_next(struct attempt *a, struct tcp_attempt *t, int err)
{
        char msg[96];
        int fd = probe_connect_next(a, &t->addrs, &t->next, err), r;

        if (fd >= 0) {
                t->fd = fd;
                r = attempt_io_add(a, fd, EPOLLOUT, tcp_on_io);
                if (r < 0)
                        probe_close(a, &t->fd);
                return r < 0 ? r : 0;
        }
        if (probe_errno_is_local(-fd))
                return fd;
        probe_strerror(-fd, msg, sizeof(msg));
        attempt_end(a, OUTCOME_FAILURE, "connect: %s", msg);
        return 0;
}

static void tcp_exchange(struct attempt *a, struct tcp_attempt *t);

static void tcp_on_io(struct attempt *a, int fd, uint32_t events)
{
        struct tcp_attempt *t = a->data;
        int err = 0;
        socklen_t len = sizeof(err);

        (void) events;
        if (t->connected) {
                tcp_exchange(a, t);
                return;
        }
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
                err = errno;
        if (err == 0 && (t->spec->send || t->spec->expect)) {
                t->connected = true;
                tcp_exchange(a, t);
                return;
        }
        if (err == 0) {
                attempt_end(a, OUTCOME_SUCCESS, "connected");
                return;
        }
        probe_close(a, &t->fd);
        err = tcp_connect_next(a, t, err);
        if (err < 0)
                attempt_end(a, OUTCOME_ERROR, "cannot run attempt: %s", strerror(-err));
}

/* What a->waiting_for says at a timeout: expect, and what came so far. */
static void tcp_set_waiting(struct attempt *a, struct tcp_attempt *t)
{
        char want[EXPECT_SHOW_MAX + 4], got[EXPECT_SHOW_MAX + 4];

        escape_show(t->spec->expect, t->spec->expect_len, want, sizeof(want));
        escape_show(t->in, t->in_len, got, sizeof(got));
        if (t->in_len > 0)
                snprintf(t->waiting, sizeof(t->waiting), "\"%s\" in \"%s\"", want, got);
        else
                snprintf(t->waiting, sizeof(t->waiting), "\"%s\"", want);
        a->waiting_for = t->waiting;
}

/* One read of the answer (at most EXPECT_READ_MAX in all, so well within
 * LOOP_READ_BUDGET per wake-up), then a look for expect. */
static void tcp_read_answer(struct attempt *a, struct tcp_attempt *t)
{
        const struct tcp_spec *spec = t->spec;
        char want[EXPECT_SHOW_MAX + 4], got[EXPECT_SHOW_MAX + 4], msg[96];
        ssize_t n = recv(t->fd, t->in + t->in_len, EXPECT_READ_MAX - t->in_len, MSG_DONTWAIT);

        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
                return;
        if (n < 0) {
                probe_strerror(errno, msg, sizeof(msg));
                attempt_end(a, OUTCOME_FAILURE, "recv: %s", msg);
                return;
        }
        t->in_len += (size_t) n;
        if (memmem(t->in, t->in_len, spec->expect, spec->expect_len)) {
                attempt_end(a, OUTCOME_SUCCESS, "expect matched");
                return;
        }
        tcp_set_waiting(a, t);
        if (n > 0 && t->in_len < EXPECT_READ_MAX)
                return;
        escape_show(spec->expect, spec->expect_len, want, sizeof(want));
        escape_show(t->in, t->in_len, got, sizeof(got));
        if (n == 0 && t->in_len == 0)
                attempt_end(a, OUTCOME_FAILURE, "expect \"%s\": connection closed before any answer", want);
        else if (n == 0)
                attempt_end(a, OUTCOME_FAILURE, "expect \"%s\": connection closed, got \"%s\"", want, got);
        else
                attempt_end(a, OUTCOME_FAILURE, "expect \"%s\": not in the first %d bytes \"%s\"", want,
                            EXPECT_READ_MAX, got);
}

/* The exchange once connected: write send (as the socket takes it), then read for expect. */
static void tcp_exchange(struct attempt *a, struct tcp_attempt *t)
{
        const struct tcp_spec *spec = t->spec;
        char msg[96];

        while (t->sent < spec->send_len) {
                ssize_t n = send(t->fd, spec->send + t->sent, spec->send_len - t->sent, MSG_NOSIGNAL | MSG_DONTWAIT);
                if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
                        a->waiting_for = "room to send";
                        return; /* still registered for EPOLLOUT */
                }
                if (n < 0) {
                        probe_strerror(errno, msg, sizeof(msg));
                        attempt_end(a, OUTCOME_FAILURE, "send: %s", msg);
                        return;
                }
                t->sent += (size_t) n;
        }
        if (!spec->expect) {
                attempt_end(a, OUTCOME_SUCCESS, "sent");
                return;
        }
        if (!t->reading) {
                int r = attempt_io_mod(a, t->fd, EPOLLIN);
                if (r < 0) {
                        attempt_end(a, OUTCOME_ERROR, "watch socket: %s", strerror(-r));
                        return;
                }
                t->reading = true;
                tcp_set_waiting(a, t);
                return; /* the answer comes with EPOLLIN */
        }
        tcp_read_answer(a, t);
}

static void tcp_cancel(struct attempt *a)
{
        struct tcp_attempt *t = a->data;

        if (t->fd >= 0)
                (void) close(t->fd);
        free(t);
        a->data = NULL;
}

static void tcp_on_resolved(struct attempt *a, const struct addr_list *addrs)
{
        struct tcp_attempt *t = a->data;
        int err;

        t->addrs = *addrs;
        err = tcp_connect_next(a, t, 0);
        if (err < 0)
                attempt_end(a, OUTCOME_ERROR, "cannot run attempt: %s", strerror(-err));
}

static int tcp_start(struct attempt *a, const void *specp, uint64_t timeout_ms)
{
        struct tcp_attempt *t;

        (void) timeout_ms;
        t = calloc(1, sizeof(*t) + (((const struct tcp_spec *) specp)->expect ? EXPECT_READ_MAX : 0));
        if (!t)
                return -ENOMEM;
        t->spec = specp;
        t->fd = -1;
        a->data = t; /* on an error, the lifecycle calls tcp_cancel */
        return attempt_resolve(a, t->spec->host, t->spec->port, NULL, tcp_on_resolved);
}
static const char *const tcp_keys[] = { "address", "send", "expect", NULL };

static int tcp_flag_to_json(cJSON *obj, const char *value)
{
        return cJSON_AddStringToObject(obj, "address", value) ? 0 : -ENOMEM;
}

const struct probe_ops tcp_probe_ops = {
        .type = "tcp",
        .keys = tcp_keys,
        .fds_per_attempt = 1, /* one socket; addresses are tried in turn */
        .flag = { .name = "tcp", .arg = "NAME=HOST:PORT", .to_json = tcp_flag_to_json },
        .parse = tcp_parse,
        .free_spec = tcp_free_spec,
        .start = tcp_start,
        .cancel = tcp_cancel,
};
