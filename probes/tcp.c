/* tcp probe: success when a connection to `address` is established within the
 * timeout (as kubelet's tcpSocket). No byte is sent; the socket is closed abortively.
 *
 *   start: socket(O_NONBLOCK) -> connect() --> wait EPOLLOUT --SO_ERROR == 0--> success
 *                                   | error          | error
 *                                   v                v
 *                       next address of the host, or failure when none is left
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
#include "probe_net.h"
#include "util.h"

struct tcp_spec {
        struct addr_list addrs;
};

struct tcp_attempt {
        const struct tcp_spec *spec;
        int fd;
        unsigned next; /* the address to try when this one fails */
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
        r = address_resolve(address, false, &spec->addrs);
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

static attempt_io_fn tcp_on_io;

/* Connects to the next address of the host; an address that fails passes to the one
 * after (localhost: ::1, then 127.0.0.1). Ends the attempt when it is decided; returns
 * -errno when probed itself could not run it (the last address failed for want of
 * fds, memory or ports; nothing held then), else 0. */
static int tcp_connect_next(struct attempt *a, struct tcp_attempt *t, int err)
{
        char msg[96];
        int fd = probe_connect_next(&t->spec->addrs, &t->next, err), r;

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

static void tcp_on_io(struct attempt *a, int fd, uint32_t events)
{
        struct tcp_attempt *t = a->data;
        int err = 0;
        socklen_t len = sizeof(err);

        (void) events;
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
                err = errno;
        if (err == 0) {
                attempt_end(a, OUTCOME_SUCCESS, "connected");
                return;
        }
        probe_close(a, &t->fd);
        err = tcp_connect_next(a, t, err);
        if (err < 0)
                attempt_end(a, OUTCOME_ERROR, "cannot run attempt: %s", strerror(-err));
}

static void tcp_cancel(struct attempt *a)
{
        struct tcp_attempt *t = a->data;

        if (t->fd >= 0)
                (void) close(t->fd);
        free(t);
        a->data = NULL;
}

static int tcp_start(struct attempt *a, const void *specp, uint64_t timeout_ms)
{
        struct tcp_attempt *t;

        (void) timeout_ms;
        t = calloc(1, sizeof(*t));
        if (!t)
                return -ENOMEM;
        t->spec = specp;
        t->fd = -1;
        a->data = t;
        return tcp_connect_next(a, t, 0); /* on an error, the lifecycle calls tcp_cancel */
}
static const char *const tcp_keys[] = { "address", NULL };

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
