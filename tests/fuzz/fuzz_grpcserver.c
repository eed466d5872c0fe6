/* Fuzz target: the status server's gRPC request path (daemon/server_grpc.c), without a
 * socket: the input, after the HTTP/2 client preface, is what a client sent on a
 * connection; it goes through nghttp2 and the health service, which answer from a
 * snapshot with two probes (one healthy, one not: every answer kind is reachable) and
 * whose output is discarded. Properties: no crash, no leak, no sanitizer report, and
 * server_grpc_feed returns 0 or one of nghttp2's (negative) errors.
 *
 * Seeds (tests/fuzz/corpus/grpcserver/): Checks for "", liveness, readiness, a probe's
 * name and an unknown name, Watch, an h2c GET /livez, several streams on one
 * connection, an oversized request. */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server.h"
#include "server_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define PREFACE "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

static struct server *fake_server(void)
{
        struct server *srv = calloc(1, sizeof(*srv));
        struct snapshot *s = snapshot_new(2, true);

        if (!srv || !s)
                abort();
        pthread_mutex_init(&srv->lock, NULL);
        s->started = s->live = true;
        snprintf(s->probes[0]->name, sizeof(s->probes[0]->name), "app");
        s->probes[0]->healthy = 1;
        snprintf(s->probes[1]->name, sizeof(s->probes[1]->name), "db");
        s->probes[1]->healthy = 0;
        for (int i = 0; i < 2; i++) {
                s->probes[i]->type = "tcp";
                s->probes[i]->scopes = SCOPE_ALL;
        }
        server_publish(srv, s); /* takes s over */
        return srv;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        struct server *srv = fake_server();
        uint8_t *buf = malloc(sizeof(PREFACE) - 1 + size);
        int r;

        if (!buf)
                abort();
        memcpy(buf, PREFACE, sizeof(PREFACE) - 1);
        if (size)
                memcpy(buf + sizeof(PREFACE) - 1, data, size);
        r = server_grpc_feed(srv, buf, sizeof(PREFACE) - 1 + size);
        if (r > 0) {
                fprintf(stderr, "fuzz_grpcserver: server_grpc_feed returned %d\n", r);
                abort();
        }
        free(buf);
        published_unref(srv->current);
        pthread_mutex_destroy(&srv->lock);
        free(srv);
        return 0;
}
