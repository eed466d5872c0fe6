/* Socket helpers shared by the probe kinds that open their own connections (tcp, and
 * http's own client). */
#pragma once
#include <stdbool.h>
#include <stddef.h>

#include "util.h"

/* A non-blocking, close-on-exec TCP socket to a, with SO_LINGER 0 (an abortive close:
 * probed never holds TIME_WAIT, SPEC 3), and connect() started. Returns the fd
 * (connected or still connecting: the first EPOLLOUT tells), or -errno when socket()
 * or connect() failed at once (nothing is left open). */
int probe_connect(const union sockaddr_any *a, socklen_t len);

/* Is err a shortage of probed's own resources (the attempt could not run)?
 * EMFILE, ENFILE, ENOBUFS, ENOMEM, and EADDRNOTAVAIL (no ephemeral port left). */
bool probe_errno_is_local(int err);

/* strerror(err) with a lower-case first letter, into buf ("connection refused"). */
void probe_strerror(int err, char *buf, size_t n);
