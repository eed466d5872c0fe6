/* The status server's shared /status and /metrics documents (docs/design.md, "Where each
 * concern lives"; README.md, "Status server limits").
 *
 * This file owns `struct doc` (its refcount and the byte budget of the bodies alive),
 * the render thread and each request's streaming of a shared body joined to its own
 * small part. /status and /metrics (megabytes with 10,000 probes) are rendered once per
 * published snapshot, on the first request, into a refcounted `struct doc` that every
 * request sending it shares. Rendering takes tens of ms, so it happens on a render
 * thread of ours while the request is suspended (MHD_suspend_connection; the render
 * thread resumes it): MHD's threads never wait for a render, nor do the /livez requests
 * they serve. A request's response is a callback that streams a small per-request part
 * (the /status head with uptime, the /metrics tail with the process figures and the
 * heartbeat's age) joined to the shared body. What bodies are alive, mostly held by
 * slow readers, is counted in bytes: past SERVER_DOC_BUDGET a request reuses the latest
 * rendered body instead of rendering another (README.md, "Status server limits"). */
#include <microhttpd.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bounds.h"
#include "heartbeat.h"
#include "server_int.h"
#include "util.h"

#define CT_JSON "application/json"
#define CT_METRICS "text/plain; version=0.0.4; charset=utf-8"

/* A body to render for a suspended connection. */
struct job {
        struct job *next;
        struct MHD_Connection *c;
        struct conn *k;
        struct published *p; /* a reference */
        enum doc_kind kind;
};

struct doc *doc_unref(struct doc *d)
{
        struct server *srv;

        if (!d || atomic_fetch_sub(&d->refs, 1) != 1)
                return NULL;
        srv = d->srv;
        pthread_mutex_lock(&srv->doc_lock);
        srv->doc_bytes -= d->len;
        if (srv->latest[d->kind] == d)
                srv->latest[d->kind] = NULL;
        pthread_mutex_unlock(&srv->doc_lock);
        free(d->text);
        snapshot_unref(d->snap);
        free(d);
        return NULL;
}

/* A reference unless the doc is on its way out (refs reached 0: never revived). */
static bool doc_tryref(struct doc *d)
{
        int n = atomic_load(&d->refs);

        while (n > 0)
                if (atomic_compare_exchange_weak(&d->refs, &n, n + 1))
                        return true;
        return false;
}

/* The body of kind for p without rendering: p's own, or the latest rendered one (maybe
 * of an older snapshot) while bodies alive exceed SERVER_DOC_BUDGET. Called with
 * p->render_lock held. A reference, or NULL: it must be rendered. */
static struct doc *server_doc_ready(struct server *srv, struct published *p, enum doc_kind kind)
{
        struct doc *d = p->doc[kind], *latest;

        if (d) {
                atomic_fetch_add(&d->refs, 1);
                return d;
        }
        pthread_mutex_lock(&srv->doc_lock);
        latest = srv->latest[kind];
        /* a new body about the size of the latest one would not fit: share the latest */
        if (latest && srv->doc_bytes + latest->len > SERVER_DOC_BUDGET && doc_tryref(latest))
                d = latest;
        pthread_mutex_unlock(&srv->doc_lock);
        return d;
}

/* server_doc_ready for an MHD thread, which must never wait for a render: NULL (to be
 * rendered) while p's body is being rendered. */
static struct doc *server_doc_lookup(struct server *srv, struct published *p, enum doc_kind kind)
{
        struct doc *d;

        if (pthread_mutex_trylock(&p->render_lock) != 0)
                return NULL;
        d = server_doc_ready(srv, p, kind);
        pthread_mutex_unlock(&p->render_lock);
        return d;
}

/* The body of kind for p, rendered unless server_doc_ready has one (on the render
 * thread: rendering 10,000 probes takes tens of ms, which must not hold up an MHD
 * thread and the /livez requests it serves). A reference; NULL on ENOMEM. */
static struct doc *server_doc(struct server *srv, struct published *p, enum doc_kind kind)
{
        struct doc *d;
        size_t len = 0;
        char *text;

        pthread_mutex_lock(&p->render_lock);
        d = server_doc_ready(srv, p, kind);
        if (d) {
                pthread_mutex_unlock(&p->render_lock);
                return d;
        }

        text = kind == DOC_STATUS ? render_status_body(p->snap, &len) : render_metrics_body(p->snap, &len);
        d = text ? calloc(1, sizeof(*d)) : NULL;
        if (!d) {
                free(text);
                pthread_mutex_unlock(&p->render_lock);
                return NULL;
        }
        atomic_init(&d->refs, 2); /* p's and the caller's */
        d->srv = srv;
        d->kind = kind;
        d->snap = snapshot_ref(p->snap);
        d->text = text;
        d->len = len;
        pthread_mutex_lock(&srv->doc_lock);
        srv->doc_bytes += len;
        srv->latest[kind] = d;
        pthread_mutex_unlock(&srv->doc_lock);
        p->doc[kind] = d;
        pthread_mutex_unlock(&p->render_lock);
        return d;
}

/* One request's /status or /metrics: its own small part joined to a shared body
 * (/status: part then body; /metrics: body then part). */
struct reply {
        struct doc *doc;
        bool part_first;
        size_t part_len;
        char part[RENDER_PART_MAX + SERVER_GRPC_METRICS_MAX];
};

static ssize_t reply_read(void *cls, uint64_t pos, char *buf, size_t max)
{
        struct reply *r = cls;
        const char *seg[2] = { r->doc->text, r->part };
        size_t seg_len[2] = { r->doc->len, r->part_len }, n = 0;

        if (r->part_first) {
                seg[0] = r->part, seg_len[0] = r->part_len;
                seg[1] = r->doc->text, seg_len[1] = r->doc->len;
        }
        for (int i = 0; i < 2 && n < max; i++) {
                size_t k;
                if (pos >= seg_len[i]) {
                        pos -= seg_len[i];
                        continue;
                }
                k = seg_len[i] - (size_t) pos;
                if (k > max - n)
                        k = max - n;
                memcpy(buf + n, seg[i] + pos, k);
                n += k;
                pos = 0;
        }
        return n ? (ssize_t) n : MHD_CONTENT_READER_END_OF_STREAM;
}

static void reply_free(void *cls)
{
        struct reply *r = cls;

        doc_unref(r->doc);
        free(r);
}

/* Queues r (taken over) as a 200 response. */
static enum MHD_Result queue_reply(struct MHD_Connection *c, struct reply *r, const char *ctype)
{
        struct MHD_Response *resp = MHD_create_response_from_callback((uint64_t) r->part_len + r->doc->len,
                                                                      SERVER_REPLY_BLOCK, reply_read, r, reply_free);
        enum MHD_Result ret;

        if (!resp) {
                reply_free(r);
                return MHD_NO;
        }
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
        ret = MHD_queue_response(c, MHD_HTTP_OK, resp);
        MHD_destroy_response(resp);
        return ret;
}

static void process_figures(uint64_t *ret_rss, double *ret_cpu)
{
        struct timespec ts;
        unsigned long size = 0, resident = 0;
        FILE *f = fopen("/proc/self/statm", "re");

        if (f) {
                if (fscanf(f, "%lu %lu", &size, &resident) != 2)
                        resident = 0;
                fclose(f);
        }
        *ret_rss = (uint64_t) resident * (uint64_t) sysconf(_SC_PAGESIZE);
        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
        *ret_cpu = (double) ts.tv_sec + (double) ts.tv_nsec / 1e9;
}

/* Queues d (taken over) with this request's own part: the /status head from d's
 * snapshot, the /metrics tail with the process figures and the heartbeat's age. */
enum MHD_Result queue_doc(struct server *srv, struct MHD_Connection *c, struct doc *d)
{
        struct reply *r = malloc(sizeof(*r));

        if (!r) {
                doc_unref(d);
                return MHD_NO;
        }
        r->doc = d;
        if (d->kind == DOC_STATUS) {
                r->part_first = true;
                r->part_len = render_status_head(d->snap, now_ns(), r->part, sizeof(r->part));
                return queue_reply(c, r, CT_JSON);
        }
        struct heartbeat *h = server_hb_enter(srv);
        uint64_t rss, behind = h ? heartbeat_behind(h, now_ns()) : 0;
        if (h)
                server_hb_leave(srv);
        double cpu;
        process_figures(&rss, &cpu);
        r->part_first = false;
        r->part_len = render_metrics_tail(rss, cpu, (double) behind / 1e9, r->part, RENDER_PART_MAX);
        r->part_len += server_grpc_metrics(srv, r->part + r->part_len, sizeof(r->part) - r->part_len);
        return queue_reply(c, r, CT_METRICS);
}

/* /status or /metrics: a body ready to share is sent at once; one to render is
 * rendered on the render thread while the connection is suspended. */
enum MHD_Result answer_doc(struct server *srv, struct MHD_Connection *c, struct conn *k, struct published *p,
                           enum doc_kind kind)
{
        struct doc *d = server_doc_lookup(srv, p, kind);
        struct job *j;

        if (d)
                return queue_doc(srv, c, d);
        j = k && srv->renderer_started ? calloc(1, sizeof(*j)) : NULL;
        if (!j) {
                d = server_doc(srv, p, kind); /* no render thread to spare: render here */
                return d ? queue_doc(srv, c, d) : MHD_NO;
        }
        j->c = c;
        j->k = k;
        j->kind = kind;
        pthread_mutex_lock(&srv->job_lock);
        if (srv->jobs_stop) {
                /* stopping: nobody would resume it, and MHD must not stop with it
                 * suspended */
                pthread_mutex_unlock(&srv->job_lock);
                free(j);
                return MHD_NO;
        }
        atomic_fetch_add(&p->refs, 1);
        j->p = p;
        k->suspended = true;
        k->doc = NULL;
        MHD_suspend_connection(c); /* before the render thread can see the job and resume it */
        if (srv->jobs_tail)
                srv->jobs_tail->next = j;
        else
                srv->jobs_head = j;
        srv->jobs_tail = j;
        pthread_cond_signal(&srv->job_cond);
        pthread_mutex_unlock(&srv->job_lock);
        return MHD_YES;
}

/* The render thread: renders each job's body and resumes its connection; once stopping,
 * resumes the rest without one (MHD must not stop with a connection suspended). */
void *server_render_main(void *data)
{
        struct server *srv = data;

        pthread_mutex_lock(&srv->job_lock);
        for (;;) {
                struct job *j = srv->jobs_head;
                bool stop = srv->jobs_stop;
                if (!j) {
                        if (stop)
                                break;
                        pthread_cond_wait(&srv->job_cond, &srv->job_lock);
                        continue;
                }
                srv->jobs_head = j->next;
                if (!srv->jobs_head)
                        srv->jobs_tail = NULL;
                pthread_mutex_unlock(&srv->job_lock);
                if (!stop)
                        j->k->doc = server_doc(srv, j->p, j->kind);
                published_unref(j->p);
                MHD_resume_connection(j->c);
                free(j);
                pthread_mutex_lock(&srv->job_lock);
        }
        pthread_mutex_unlock(&srv->job_lock);
        return NULL;
}

/* Stops the render thread: it resumes the connections still waiting, without a body. */
void server_render_stop(struct server *srv)
{
        if (!srv->renderer_started)
                return;
        pthread_mutex_lock(&srv->job_lock);
        srv->jobs_stop = true;
        pthread_cond_signal(&srv->job_cond);
        pthread_mutex_unlock(&srv->job_lock);
        pthread_join(srv->renderer, NULL);
}
