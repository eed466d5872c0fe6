/* Socket helpers shared by the probe kinds that open their own connections (tcp, and
 * http's own client). */
#pragma once
#include <stdbool.h>
#include <stddef.h>

#include "util.h"

struct attempt;

/* A non-blocking, close-on-exec TCP socket to a, with SO_LINGER 0 (an abortive close:
 * probed never holds TIME_WAIT, README "Probe kinds"), and connect() started. Returns the fd
 * (connected or still connecting: the first EPOLLOUT tells), or -errno when socket()
 * or connect() failed at once (nothing is left open). */
int probe_connect(const union sockaddr_any *a, socklen_t len);

/* probe_connect to the addresses of l from *next on (advancing it), until one socket is
 * connecting: returns its fd. An address that fails passes to the next (localhost: ::1,
 * then 127.0.0.1). When none is left, returns -errno of the last failure (err: the
 * failure of the address before, 0 at first). Each address tried becomes the attempt's
 * last_address (attempt_set_address). */
int probe_connect_next(struct attempt *a, const struct addr_list *l, unsigned *next, int err);

/* Deregisters *fd from the attempt (when registered), closes it and sets it to -1;
 * nothing when it is < 0. */
void probe_close(struct attempt *a, int *fd);

/* Is err a shortage of probed's own resources (the attempt could not run)?
 * EMFILE, ENFILE, ENOBUFS, ENOMEM, and EADDRNOTAVAIL (no ephemeral port left). */
bool probe_errno_is_local(int err);

/* strerror(err) with a lower-case first letter, into buf ("connection refused"); a
 * first word in capitals (an acronym) is left as it is. */
void probe_strerror(int err, char *buf, size_t n);
