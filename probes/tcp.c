/* tcp probe: success when a connection to `address` is established within the
 * timeout (as kubelet's tcpSocket). No byte is sent; the socket is closed abortively.
 *
 *   start: socket(O_NONBLOCK) -> connect() --EINPROGRESS--> wait EPOLLOUT
 *                                  |  0                      |  SO_ERROR == 0 -> success
 *                                  |  error -> failure       |  otherwise     -> failure
 *
 * Host names are resolved when the config loads (a sidecar probes localhost); the
 * attempt itself never blocks. */
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "config.h"
#include "loop.h"
#include "probe.h"
#include "probe_curl.h"
#include "util.h"

struct tcp_spec {
        union { /* not sockaddr_storage: 28 bytes instead of 128, times 10,000 probes */
                struct sockaddr sa;
                struct sockaddr_in in4;
                struct sockaddr_in6 in6;
        } addr;
        socklen_t addr_len;
};

struct tcp_attempt {
        int fd;
};

static int tcp_parse(cJSON *obj, const char *path, void **ret_spec, char **ret_target, char **reterr)
{
        struct tcp_spec *spec;
        const char *address = NULL;
        int r;

        r = cfg_string(obj, "address", path, true, &address, reterr);
        if (r < 0)
                return r;
        spec = calloc(1, sizeof(*spec));
        if (!spec)
                return -ENOMEM;
        struct sockaddr_storage ss;
        r = address_resolve(address, false, &ss, &spec->addr_len);
        if (r == 0 && spec->addr_len <= sizeof(spec->addr))
                memcpy(&spec->addr, &ss, spec->addr_len);
        else if (r == 0)
                r = -EINVAL;
        if (r == -EINVAL) {
                free(spec);
                return cfg_error(reterr, path, "address", "\"%s\" is not HOST:PORT", address);
        }
        if (r < 0) {
                free(spec);
                return cfg_error(reterr, path, "address", "cannot resolve \"%s\"", address);
        }
        *ret_target = strdup(address);
        if (!*ret_target) {
                free(spec);
                return -ENOMEM;
        }
        *ret_spec = spec;
        return 0;
}

static void tcp_free_spec(void *spec)
{
        free(spec);
}

static void tcp_fail(struct attempt *a, int err)
{
        char msg[96];

        probe_strerror(err, msg, sizeof(msg));
        attempt_end(a, OUTCOME_FAILURE, "connect: %s", msg);
}

static void tcp_on_io(struct loop *l, int fd, uint32_t events, void *data)
{
        struct attempt *a = data;
        int err = 0;
        socklen_t len = sizeof(err);

        (void) l;
        (void) events;
        if (a->state != ATTEMPT_RUNNING || !a->data || ((struct tcp_attempt *) a->data)->fd != fd)
                return;
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
                err = errno;
        if (err == 0)
                attempt_end(a, OUTCOME_SUCCESS, "connected");
        else
                tcp_fail(a, err);
}

static void tcp_cancel(struct attempt *a)
{
        struct tcp_attempt *t = a->data;
        const struct linger lg = { .l_onoff = 1, .l_linger = 0 };

        if (!t)
                return;
        if (t->fd >= 0) {
                loop_io_del(a->loop, t->fd);
                (void) setsockopt(t->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
                (void) close(t->fd);
        }
        free(t);
        a->data = NULL;
}

static int tcp_start(struct attempt *a, const void *specp, uint64_t timeout_ms)
{
        const struct tcp_spec *spec = specp;
        struct tcp_attempt *t;
        int r;

        (void) timeout_ms;
        t = calloc(1, sizeof(*t));
        if (!t)
                return -ENOMEM;
        t->fd = socket(spec->addr.sa.sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (t->fd < 0) {
                r = negative_errno();
                free(t);
                return r;
        }
        a->data = t;
        if (connect(t->fd, &spec->addr.sa, spec->addr_len) == 0) {
                attempt_end(a, OUTCOME_SUCCESS, "connected");
                return 0;
        }
        if (errno != EINPROGRESS) {
                r = errno;
                if (probe_errno_is_local(r) || r == EADDRNOTAVAIL)
                        goto error;
                tcp_fail(a, r);
                return 0;
        }
        r = loop_io_add(a->loop, t->fd, EPOLLOUT, tcp_on_io, a);
        if (r < 0) {
                r = -r;
                goto error;
        }
        return 0;
error:
        (void) close(t->fd);
        free(t);
        a->data = NULL;
        return -r;
}

static const char *const tcp_keys[] = { "address", NULL };

const struct probe_ops tcp_probe_ops = {
        .type = "tcp",
        .keys = tcp_keys,
        .parse = tcp_parse,
        .free_spec = tcp_free_spec,
        .start = tcp_start,
        .cancel = tcp_cancel,
};
