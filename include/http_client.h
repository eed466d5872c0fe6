/* probed's own HTTP/1.1 client, as a stream client over one attempt (docs/design.md,
 * "The attempt lifecycle"): nothing in it knows about a probe's checks or redirects.
 *
 *   stream_client_start --> connect to addrs[next] (next address on refusal, probe_net.h)
 *        --> send the prebuilt request (EPOLLOUT while some is left)
 *        --> read (EPOLLIN): at most LOOP_READ_BUDGET bytes per wake-up, each read handed
 *            to feed, the peer's close as a read of 0 bytes, until feed says it is done
 *
 * A connection that fails (refused, reset, every address tried) ends the attempt as a
 * failure naming the errno; a shortage of probed's own fds, memory or ports is returned
 * as -errno (an error outcome: README "Probe kinds"). Sockets close with SO_LINGER 0.
 *
 * http_client is the stream client with the HTTP/1.x response parser (httpresp.h) as its
 * feed: body bytes go to the user's body callback (which caps them), and done reports the
 * parsed response. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "httpresp.h"
#include "probe.h"
#include "util.h"

struct stream_client;

/* n bytes read, or the peer closed the connection (n == 0). Returns true to read on, false
 * when the user is done with the answer (after n == 0 it must be done): nothing more is read
 * in this wake-up, and the user ends the attempt or releases the connection. */
typedef bool stream_feed_fn(struct stream_client *c, const char *buf, size_t n);

struct stream_client {
        /* set by the user before stream_client_start */
        struct attempt *a;
        const struct addr_list *addrs; /* borrowed for the connection's life */
        const char *request;           /* borrowed too */
        size_t request_len;
        stream_feed_fn *feed;
        /* the user's fd callback (the attempt's state is the user's): it calls
         * stream_client_on_io on this client */
        attempt_io_fn *on_io;
        /* the client's own */
        int fd;          /* -1: none */
        uint32_t events; /* registered on the attempt (0: not yet) */
        unsigned next_addr;
        size_t sent;
};

/* Connects to the first address that takes a connection and sends the request. Returns
 * 0 (going on, or the attempt ended as a failure) or -errno (probed's own shortage). */
int stream_client_start(struct stream_client *c);
/* An event on c->fd: sends what is left of the request, or reads. */
void stream_client_on_io(struct stream_client *c);
/* Deregisters and closes the connection (while the attempt runs). */
void stream_client_close(struct stream_client *c);
/* Closes the connection without deregistering (its registration is released already). */
void stream_client_free(struct stream_client *c);

struct http_client;
/* The response ended (HTTP_RESP_DONE), or the body callback asked to stop
 * (HTTP_RESP_ENOUGH): c->resp has its status and Location; or HTTP_RESP_ERROR: c->resp.error
 * and c->resp.err (-ENOMEM: probed's own) say why. */
typedef void http_client_done_fn(struct http_client *c, int rc);

struct http_client {
        struct stream_client s; /* its feed is the response parser */
        struct http_resp resp;
        http_body_fn body; /* set by the user: body bytes, false to stop reading */
        http_client_done_fn *done;
        void *data; /* the body callback's */
};

/* Starts a request (HEAD: no body expected) on c->s (a, addrs, request, on_io set). As
 * stream_client_start. */
int http_client_start(struct http_client *c, bool head);
/* Frees the connection (as stream_client_free) and the parser's state. */
void http_client_free(struct http_client *c);
