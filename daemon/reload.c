/* SIGHUP reload (README, "Signals"): the file is read and parsed on a thread of its own
 * (10,000 probes, names resolved at load, take far longer than a loop iteration may), and
 * the loop applies the result by probe name when the thread's eventfd says it is done:
 * unchanged probes keep their state (their config entry moves into the new config, since
 * an attempt in flight points at it), changed ones restart fresh, removed ones are
 * cancelled, new ones start. A SIGHUP during a reload runs one more after it. */
#include <malloc.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "lifecycle.h"
#include "log.h"
#include "nametable.h"
#include "util.h"

static int daemon_load(struct daemon *d, struct config **ret, char **reterr)
{
        char *text = NULL;
        int r;

        if (d->opts.config_path) {
                r = config_read_file(d->opts.config_path, &text, reterr);
                if (r < 0)
                        return r;
        }
        r = config_load_lean(text, d->opts.flags, d->opts.n_flags, ret, reterr);
        free(text);
        return r;
}

/* A running probe's name for the reload's name table; NULL once it moved to the new config. */
static const char *running_probe_name(const void *ctx, size_t j)
{
        const struct daemon *d = ctx;

        return d->probes[j] ? d->probes[j]->cfg->name : NULL;
}

static void daemon_reload_failed(struct daemon *d, const char *err)
{
        d->reloads_failed++;
        d->dirty_verdict = true; /* publish at once: /metrics counts it */
        log_kv(LOG_LEVEL_ERROR, "Failed to reload config, keeping the running one", "event", "reload_failed", "error",
               err, NULL);
}

/* Applies a loaded config on the loop: O(n) in the probes, no I/O. */
struct reload_counts {
        size_t kept, changed, added, removed;
};

/* Moves each unchanged probe into np at its new index (its config entry, spec included,
 * swaps into the new config, since an attempt in flight points at it) and marks the
 * running probes whose name remains with another config. Names are matched through a
 * hash table: 10,000 probes must not cost 10^8 compares on the loop. */
static int reload_match(struct daemon *d, struct config *nc, struct probe **np, bool *changed_cfg,
                        struct reload_counts *n)
{
        struct name_table names;

        if (name_table_init(&names, d->n_probes, running_probe_name, d) < 0) {
                name_table_free(&names);
                return -ENOMEM;
        }
        for (size_t j = 0, other; j < d->n_probes; j++)
                (void) name_table_add(&names, j, &other); /* names are unique */
        for (size_t i = 0, j; i < nc->n_probes; i++) {
                struct probe_config *npc = &nc->probes[i];
                if (!name_table_find(&names, npc->name, &j))
                        continue; /* a new probe */
                if (!probe_config_equal(d->probes[j]->cfg, npc)) {
                        changed_cfg[j] = true;
                        continue;
                }
                struct probe *p = d->probes[j];
                struct probe_config *opc = (struct probe_config *) p->cfg, tmp = *npc;
                *npc = *opc;
                *opc = tmp;
                p->cfg = npc;
                np[i] = p;
                n->kept++;
                d->probes[j] = NULL; /* moved (names are unique: never looked up again) */
        }
        name_table_free(&names);
        return 0;
}

/* Creates and begins the probes np does not hold yet (new and changed ones), then
 * compacts out any that could not be created. */
static void reload_start_new(struct daemon *d, struct config *nc, struct probe **np, struct reload_counts *n)
{
        size_t k = 0;

        for (size_t i = 0; i < nc->n_probes; i++) {
                if (np[i])
                        continue;
                np[i] = probe_new(d, &nc->probes[i]);
                if (!np[i]) {
                        /* Out of memory mid-apply: drop the probe and say so loudly. */
                        log_kv(LOG_LEVEL_ERROR, "Failed to create probe: out of memory", "probe", nc->probes[i].name,
                               NULL);
                        continue;
                }
                probe_begin(np[i], n->added, nc->n_probes);
                n->added++;
        }
        for (size_t i = 0; i < nc->n_probes; i++)
                if (np[i])
                        np[k++] = np[i];
        d->n_probes = k;
        n->added -= n->changed; /* a changed probe restarted is not an added one */
}

/* Applies a loaded config on the loop: O(n) in the probes, no I/O. Unchanged probes keep
 * their state and counters; changed ones restart fresh; removed ones are cancelled. */
static void daemon_reload_apply(struct daemon *d, struct config *nc)
{
        struct config *old = d->cfg;
        struct reload_counts n = { 0 };
        struct probe **np = calloc(nc->n_probes ? nc->n_probes : 1, sizeof(*np));
        bool *changed_cfg = calloc(d->n_probes ? d->n_probes : 1, sizeof(*changed_cfg));

        if (!np || !changed_cfg || reload_match(d, nc, np, changed_cfg, &n) < 0) {
                free(np);
                free(changed_cfg);
                daemon_reload_failed(d, "out of memory");
                config_free(nc);
                return;
        }
        for (size_t j = 0; j < d->n_probes; j++) {
                if (!d->probes[j])
                        continue;
                if (changed_cfg[j])
                        n.changed++;
                else
                        n.removed++;
                d->probes[j] = probe_free(d->probes[j]);
        }
        free(changed_cfg);
        free(d->probes);
        d->probes = np;
        d->cfg = nc;
        reload_start_new(d, nc, np, &n);
        if (strcmp(old->listen, nc->listen) != 0)
                log_kv(LOG_LEVEL_WARNING, "The listen address changed; it takes effect on restart, ignoring", "event",
                       "reload", "listen", nc->listen, NULL);
        config_free(old);
        (void) malloc_trim(0); /* give the parser's freed memory back */
        daemon_apply_settings(d);
        aggregates_recount(d);
        daemon_check_started(d);
        d->reloads_ok++;
        d->dirty_verdict = true;
        char k[24], c[24], a[24], r[24];
        snprintf(k, sizeof(k), "%zu", n.kept);
        snprintf(c, sizeof(c), "%zu", n.changed);
        snprintf(a, sizeof(a), "%zu", n.added);
        snprintf(r, sizeof(r), "%zu", n.removed);
        log_kv(LOG_LEVEL_INFO, "Config reloaded", "event", "reload", "kept", k, "changed", c, "added", a, "removed", r,
               NULL);
}

/* The reload thread: reads and parses the file, touches nothing of d but reload and
 * the immutable options. */
static void *reload_worker(void *data)
{
        struct daemon *d = data;
        uint64_t one = 1;

        d->reload.r = daemon_load(d, &d->reload.nc, &d->reload.err);
        if (write(d->reload.efd, &one, sizeof(one)) < 0) {
                /* an eventfd write of 1 cannot fail short of overflow: nothing to do */
        }
        return NULL;
}

/* Waits for the reload thread (it has finished, or is about to) and takes its result. */
static void reload_join(struct daemon *d, struct config **ret_nc, char **ret_err)
{
        (void) pthread_join(d->reload.thread, NULL);
        d->reload.running = false;
        *ret_nc = d->reload.nc;
        *ret_err = d->reload.err;
        if (d->reload.r < 0 && !*ret_err)
                *ret_err = strdup_printf("%s", strerror(-d->reload.r));
        d->reload.nc = NULL;
        d->reload.err = NULL;
}

void daemon_reload(struct daemon *d)
{
        int r;

        if (d->draining)
                return;
        if (d->reload.running) {
                d->reload.again = true; /* the file may have changed since it was read */
                return;
        }
        d->reload.r = 0;
        r = pthread_create(&d->reload.thread, NULL, reload_worker, d);
        if (r != 0) {
                daemon_reload_failed(d, strerror(r));
                return;
        }
        d->reload.running = true;
}

static void reload_on_done(struct loop *l, int fd, uint32_t events, void *data)
{
        struct daemon *d = data;
        struct config *nc;
        char *err;
        uint64_t n;

        (void) l;
        (void) events;
        if (read(fd, &n, sizeof(n)) < 0 || !d->reload.running)
                return;
        reload_join(d, &nc, &err);
        if (d->draining) {
                config_free(nc); /* shutdown began meanwhile: nothing is applied */
        } else if (!nc) {
                daemon_reload_failed(d, err ? err : "out of memory");
        } else {
                daemon_reload_apply(d, nc);
        }
        free(err);
        if (d->reload.again) {
                d->reload.again = false;
                daemon_reload(d);
        }
}

int reload_init(struct daemon *d)
{
        d->reload.efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        if (d->reload.efd < 0)
                return negative_errno();
        return loop_io_add(d->loop, d->reload.efd, EPOLLIN, reload_on_done, d);
}

void reload_stop(struct daemon *d)
{
        if (d->reload.running) { /* a reload in progress: its file read ends soon */
                struct config *nc;
                char *err;
                reload_join(d, &nc, &err);
                config_free(nc);
                free(err);
        }
        if (d->reload.efd > 0) {
                loop_io_del(d->loop, d->reload.efd);
                (void) close(d->reload.efd);
        }
}
