/* The status server (README, "HTTP endpoints"): libmicrohttpd on its own epoll thread pool, answering
 * only from the latest published snapshot, never waiting on a probe. */
#pragma once
#include <stdint.h>

#include "snapshot.h"

struct server;

struct loop;

/* Binds listen ("ADDR:PORT", "[V6]:PORT"; port 0 picks one) and starts serving:
 * connections are accepted on a thread of the server's and served by MHD's threads;
 * answers wait for loop's heartbeat (loop borrowed, may be NULL; free the server before
 * the loop). Signals must already be blocked (the threads inherit the
 * mask). On failure returns NULL with *reterr (malloc'd) saying what failed.
 * *ret_port: the bound port. */
struct server *server_new(const char *listen, struct loop *loop, uint16_t *ret_port, char **reterr);
/* Replaces the snapshot answers come from; takes over the caller's reference. */
void server_publish(struct server *srv, struct snapshot *s);
/* Stops accepting and the threads, and frees everything. NULL-safe. Never takes much
 * more than SERVER_STOP_WAIT_MS: threads that do not stop by then are left running and
 * what they use is leaked on purpose (the process is about to exit). */
struct server *server_free(struct server *srv);
