/* Socket helpers for the probe kinds; see include/probe_net.h. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "probe.h"
#include "probe_net.h"

int probe_connect(const union sockaddr_any *a, socklen_t len)
{
        const struct linger lg = { .l_onoff = 1, .l_linger = 0 };
        int fd = socket(a->sa.sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), r;

        if (fd < 0)
                return negative_errno();
        (void) setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
        if (connect(fd, &a->sa, len) == 0 || errno == EINPROGRESS)
                return fd;
        r = negative_errno();
        (void) close(fd);
        return r;
}

int probe_connect_next(struct attempt *a, const struct addr_list *l, unsigned *next, int err)
{
        while (*next < l->n) {
                unsigned i = (*next)++;
                int fd = probe_connect(&l->a[i], l->len[i]);

                attempt_set_address(a, &l->a[i]);
                if (fd >= 0)
                        return fd;
                err = -fd;
        }
        return -err;
}

void probe_close(struct attempt *a, int *fd)
{
        if (*fd < 0)
                return;
        attempt_io_del(a, *fd);
        (void) close(*fd);
        *fd = -1;
}

bool probe_errno_is_local(int err)
{
        return err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM || err == EADDRNOTAVAIL;
}

void probe_strerror(int err, char *buf, size_t n)
{
        if (n == 0)
                return;
        snprintf(buf, n, "%s", strerror(err));
        /* "Connection refused" -> "connection refused", but an acronym keeps its case */
        if (n > 1 && !isupper((unsigned char) buf[1]))
                buf[0] = (char) tolower((unsigned char) buf[0]);
}
