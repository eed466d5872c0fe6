/* exec probe (README "Probe kinds"): runs `command` (an argv, no shell) and succeeds
 * iff it exits with status 0. stdout and stderr share one pipe; the first
 * EXEC_OUTPUT_MAX bytes are kept for /status, the rest is read and dropped so that a
 * chatty child never blocks on a full pipe.
 *
 *   start: pipe + posix_spawnp (own process group, stdin /dev/null, stdout+stderr -> pipe,
 *          every other descriptor closed, signal mask and dispositions reset) + pidfd_open
 *            |-- spawn fails: ENOENT, EACCES, ... --> failure "exec: No such file or directory"
 *            v
 *   [loop] pipe readable  --> keep / drop output
 *          pidfd readable --> drain pipe, SIGKILL what is left of the group, reap
 *                             --> success (exit 0) | failure "exit status 3" / "killed by signal 9"
 *   cancel (timeout, shutdown, reload, stall) --> SIGKILL the group, reap now or hand the
 *                                                 pidfd to the reaper
 *
 * No zombie, no orphan, no blocking: the whole group is killed with kill(-pgid, SIGKILL)
 * while the leader is not reaped yet, so its pid (= the pgid) cannot have been reused.
 * After SIGKILL the leader usually is not dead yet, and waiting for it could block the
 * loop without bound (a child in uninterruptible sleep on a hung filesystem is a classic
 * exec-probe failure), so cancel tries one waitpid(WNOHANG) and otherwise leaves the
 * pidfd registered in the loop on a small module-owned reaper list; its callback reaps
 * the child as soon as it is gone. A child that leaves the group (setsid, setpgid)
 * escapes the kill, as with kubelet. Without pidfd_open (ENOSYS: Linux < 5.3, or
 * valgrind 3.19, which does not know the syscall) the same happens on a timer: the
 * child is looked at every EXEC_POLL_MS with waitid(WNOWAIT), which does not reap it.
 *
 * Background processes a command leaves behind (`sh -c "x &"`) are killed too when the
 * leader exits: a probe running every few seconds must not pile up processes. */
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "config.h"
#include "loop.h"
#include "probe.h"
#include "util.h"

#define EXEC_POLL_MS 10 /* how often a child is looked at when pidfd_open is missing (valgrind 3.19, Linux < 5.3) */

extern char **environ;

struct exec_spec {
        char **argv; /* NULL-terminated, owned */
        size_t argc;
};

struct exec_attempt {
        struct attempt *a;
        pid_t pid;         /* the leader (= pgid), or -1 once reaped */
        int pidfd;         /* registered with the attempt, or -1 (then the attempt's timer
                            * looks at the child every EXEC_POLL_MS) */
        int out_fd;        /* pipe read end, registered with the attempt, or -1 */
        bool start_failed; /* the attempt could not run: no output for /status */
        size_t out_len;
        char out[EXEC_OUTPUT_MAX];
        struct reaper *spare; /* allocated up front, so that handing a killed child to the
                               * reaper cannot fail (and the loop never waits for it) */
};

/* A killed child not reaped yet: owned by the list below, freed when reaped. */
struct reaper {
        struct reaper *prev, *next;
        struct loop *loop;
        pid_t pid;
        int pidfd; /* -1: no pidfd, poll is used */
        struct timer poll;
};

static struct reaper *reapers; /* keeps them reachable (LeakSanitizer) until reaped */

/* ---- config ------------------------------------------------------------------------ */

static void exec_free_spec(void *p)
{
        struct exec_spec *spec = p;

        if (!spec)
                return;
        for (size_t i = 0; i < spec->argc; i++)
                free(spec->argv[i]);
        free(spec->argv);
        free(spec);
}

static int exec_parse(cJSON *obj, const char *path, void **ret_spec, char **ret_target, char **reterr)
{
        const cJSON *cmd = cJSON_GetObjectItemCaseSensitive(obj, "command"), *arg;
        struct exec_spec *spec;
        size_t n, tlen = 0, i = 0;
        char *target;

        if (!cmd)
                return cfg_error(reterr, path, "command", "is required");
        n = (size_t) cJSON_GetArraySize(cmd);
        if (!cJSON_IsArray(cmd) || n == 0)
                return cfg_error(reterr, path, "command",
                                 "must be a non-empty array of strings (argv, no shell), e.g. [\"/bin/true\"]");
        cJSON_ArrayForEach(arg, cmd)
        {
                const char *why = NULL;

                if (!cJSON_IsString(arg) || !arg->valuestring)
                        why = "is not a string";
                else if (i == 0 && !*arg->valuestring)
                        why = "must not be empty";
                if (why) {
                        char *ap = strdup_printf("%s.command[%zu]", path, i);
                        int r = ap ? cfg_error(reterr, ap, NULL, "%s", why) : -ENOMEM;

                        free(ap);
                        return r;
                }
                tlen += strlen(arg->valuestring) + 1;
                i++;
        }
        spec = calloc(1, sizeof(*spec));
        if (!spec)
                return -ENOMEM;
        spec->argv = calloc(n + 1, sizeof(char *));
        target = malloc(tlen);
        if (!spec->argv || !target)
                goto oom;
        target[0] = '\0';
        cJSON_ArrayForEach(arg, cmd)
        {
                spec->argv[spec->argc] = strdup(arg->valuestring);
                if (!spec->argv[spec->argc])
                        goto oom;
                spec->argc++;
                if (spec->argc > 1)
                        strcat(target, " ");
                strcat(target, arg->valuestring);
        }
        *ret_spec = spec;
        *ret_target = target;
        return 0;
oom:
        free(target);
        exec_free_spec(spec);
        return -ENOMEM;
}

/* ---- reaper ------------------------------------------------------------------------ */

static void reaper_free(struct reaper *r)
{
        if (r->pidfd >= 0) {
                loop_io_del(r->loop, r->pidfd);
                (void) close(r->pidfd);
        }
        loop_timer_disarm(r->loop, &r->poll);
        if (r->prev)
                r->prev->next = r->next;
        else
                reapers = r->next;
        if (r->next)
                r->next->prev = r->prev;
        free(r);
}

static void reaper_try(struct reaper *r)
{
        if (waitpid(r->pid, NULL, WNOHANG) == 0) {
                if (r->pidfd < 0) /* no pidfd: look again soon */
                        loop_timer_arm(r->loop, &r->poll, now_ns() + EXEC_POLL_MS * NSEC_PER_MSEC);
                return; /* not gone yet: the pidfd stays armed */
        }
        reaper_free(r); /* reaped, or ECHILD: someone else did */
}

static void reaper_on_exit(struct loop *l, int fd, uint32_t events, void *data)
{
        (void) l;
        (void) fd;
        (void) events;
        reaper_try(data);
}

static void reaper_on_poll(struct loop *l, void *data)
{
        (void) l;
        reaper_try(data);
}

/* Takes over pid (and pidfd, -1 when there is none) of a killed child the loop will
 * reap, with r allocated by the caller beforehand: it cannot fail. A pidfd the loop
 * cannot watch is closed and the child polled instead. */
static void reaper_add(struct loop *l, pid_t pid, int pidfd, struct reaper *r)
{
        *r = (struct reaper){ .loop = l, .pid = pid, .pidfd = pidfd, .next = reapers };
        timer_init(&r->poll, reaper_on_poll, r);
        if (pidfd >= 0 && loop_io_add(l, pidfd, EPOLLIN, reaper_on_exit, r) < 0) {
                (void) close(pidfd);
                r->pidfd = -1;
        }
        if (r->pidfd < 0)
                loop_timer_arm(l, &r->poll, now_ns() + EXEC_POLL_MS * NSEC_PER_MSEC);
        if (reapers)
                reapers->prev = r;
        reapers = r;
}

/* ---- attempt ----------------------------------------------------------------------- */

/* Reads what the pipe holds now (at most LOOP_READ_BUDGET bytes a wake-up, README
 * "Design"; the pipe stays registered and level-triggered epoll comes back), keeping the
 * first EXEC_OUTPUT_MAX. Closes the pipe at EOF. */
static void exec_read_output(struct exec_attempt *x)
{
        char drop[4096];
        size_t total = 0;

        while (x->out_fd >= 0 && total < LOOP_READ_BUDGET) {
                size_t room = sizeof(x->out) - x->out_len;
                char *dst = room > 0 ? x->out + x->out_len : drop;
                ssize_t n = read(x->out_fd, dst, room > 0 ? room : sizeof(drop));

                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0 && errno == EAGAIN)
                        return;
                if (n <= 0) { /* EOF, or an error: nothing more will come */
                        attempt_io_del(x->a, x->out_fd);
                        (void) close(x->out_fd);
                        x->out_fd = -1;
                        return;
                }
                if (room > 0)
                        x->out_len += (size_t) n;
                total += (size_t) n;
        }
}

static void exec_on_output(struct attempt *a, int fd, uint32_t events)
{
        (void) fd;
        (void) events;
        exec_read_output(a->data);
}

/* Kills the group and reaps the leader if it is already gone; otherwise hands it to the
 * reaper. Leaves x->pid == -1 and x->pidfd == -1. From cancel: the pidfd is no longer
 * registered with the attempt, the reaper may take it. */
static void exec_kill(struct exec_attempt *x)
{
        if (x->pid <= 0)
                return;
        /* the leader is not reaped yet, so pgid x->pid still names our group */
        (void) kill(-x->pid, SIGKILL);
        if (waitpid(x->pid, NULL, WNOHANG) == 0) {
                reaper_add(x->a->loop, x->pid, x->pidfd, x->spare);
                x->spare = NULL;
                x->pidfd = -1;
                x->pid = -1;
                return;
        }
        if (x->pidfd >= 0)
                (void) close(x->pidfd);
        x->pidfd = -1;
        x->pid = -1;
}

static void exec_attempt_free(struct exec_attempt *x)
{
        free(x->spare);
        free(x);
}

static void exec_cancel(struct attempt *a)
{
        struct exec_attempt *x = a->data;

        if (x->out_fd >= 0 && !x->start_failed)
                exec_read_output(x); /* what a timed-out command printed is worth showing */
        exec_kill(x);
        if (x->out_fd >= 0)
                (void) close(x->out_fd);
        if (!x->start_failed)
                attempt_set_output(a, x->out, x->out_len);
        exec_attempt_free(x);
        a->data = NULL;
}

/* Ends the attempt if the leader has exited (it is not reaped before the group is
 * killed, so that its pid still names the group). */
static attempt_timer_fn exec_on_poll;

static void exec_check_exit(struct exec_attempt *x)
{
        struct attempt *a = x->a;
        siginfo_t si = { 0 };
        int status = 0;
        pid_t p;

        if (waitid(P_PID, (id_t) x->pid, &si, WEXITED | WNOHANG | WNOWAIT) == 0 && si.si_pid == 0) {
                if (x->pidfd < 0) /* no pidfd: look again soon */
                        attempt_timer_arm(a, exec_on_poll, now_ns() + EXEC_POLL_MS * NSEC_PER_MSEC);
                return; /* still running */
        }
        if (x->out_fd >= 0)
                exec_read_output(x);   /* everything the leader wrote is in the pipe by now */
        (void) kill(-x->pid, SIGKILL); /* leftovers of the group; the zombie leader pins the pgid */
        p = waitpid(x->pid, &status, WNOHANG);
        attempt_io_del(a, x->pidfd); /* no longer watched for the leader's exit */
        attempt_timer_disarm(a);
        if (x->pidfd >= 0)
                (void) close(x->pidfd);
        x->pidfd = -1;
        x->pid = -1;
        if (p <= 0)
                attempt_end(a, OUTCOME_FAILURE, "exit status unavailable");
        else if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
                attempt_end(a, OUTCOME_SUCCESS, "exit status 0");
        else if (WIFEXITED(status))
                attempt_end(a, OUTCOME_FAILURE, "exit status %d", WEXITSTATUS(status));
        else if (WIFSIGNALED(status))
                attempt_end(a, OUTCOME_FAILURE, "killed by signal %d", WTERMSIG(status));
        else
                attempt_end(a, OUTCOME_FAILURE, "exit status unavailable");
}

static void exec_on_exit(struct attempt *a, int fd, uint32_t events)
{
        (void) fd;
        (void) events;
        exec_check_exit(a->data);
}

static void exec_on_poll(struct attempt *a)
{
        exec_check_exit(a->data);
}

/* Errors of posix_spawnp that are about the command, not about probed: the probe fails. */
static bool spawn_error_is_command(int err)
{
        switch (err) {
        case ENOENT:
        case EACCES:
        case ENOEXEC:
        case ENOTDIR:
        case ELOOP:
        case ENAMETOOLONG:
        case EISDIR:
        case ETXTBSY:
        case EPERM:
                return true;
        default:
                return false;
        }
}

static int exec_spawn(const struct exec_spec *spec, int out_w, pid_t *ret_pid)
{
        posix_spawn_file_actions_t fa;
        posix_spawnattr_t attr;
        sigset_t none, all;
        int r;

        r = posix_spawn_file_actions_init(&fa);
        if (r != 0)
                return -r;
        r = posix_spawnattr_init(&attr);
        if (r != 0) {
                posix_spawn_file_actions_destroy(&fa);
                return -r;
        }
        /* probed blocks the signals it reads through signalfd and ignores SIGPIPE: the
         * command must start with a clean mask and default dispositions */
        sigemptyset(&none);
        sigfillset(&all);
        sigdelset(&all, SIGKILL);
        sigdelset(&all, SIGSTOP);
        if ((r = posix_spawn_file_actions_addopen(&fa, STDIN_FILENO, "/dev/null", O_RDONLY, 0)) != 0 ||
            (r = posix_spawn_file_actions_adddup2(&fa, out_w, STDOUT_FILENO)) != 0 ||
            (r = posix_spawn_file_actions_adddup2(&fa, out_w, STDERR_FILENO)) != 0 ||
            /* nothing else: not a descriptor of probed's (libraries open some without
             * close-on-exec) stays open in the command or what it leaves running */
            (r = posix_spawn_file_actions_addclosefrom_np(&fa, STDERR_FILENO + 1)) != 0 ||
            (r = posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK |
                                                         POSIX_SPAWN_SETSIGDEF)) != 0 ||
            (r = posix_spawnattr_setpgroup(&attr, 0)) != 0 || (r = posix_spawnattr_setsigmask(&attr, &none)) != 0 ||
            (r = posix_spawnattr_setsigdefault(&attr, &all)) != 0)
                goto out;
        /* glibc reports a failed exec (missing file, no permission) as the return value */
        r = posix_spawnp(ret_pid, spec->argv[0], &fa, &attr, spec->argv, environ);
out:
        posix_spawnattr_destroy(&attr);
        posix_spawn_file_actions_destroy(&fa);
        return -r;
}

static int exec_start(struct attempt *a, const void *specp, uint64_t timeout_ms)
{
        const struct exec_spec *spec = specp;
        struct exec_attempt *x;
        int fds[2] = { -1, -1 }, r;
        pid_t pid = -1;

        (void) timeout_ms; /* the lifecycle's deadline ends the attempt, cancel kills */
        x = calloc(1, sizeof(*x));
        if (!x || !(x->spare = malloc(sizeof(*x->spare)))) {
                free(x);
                return -ENOMEM;
        }
        x->a = a;
        x->pid = -1;
        x->pidfd = -1;
        x->out_fd = -1;
        if (pipe2(fds, O_CLOEXEC) < 0) {
                r = negative_errno();
                exec_attempt_free(x);
                return r;
        }
        if (fcntl(fds[0], F_SETFL, O_NONBLOCK) < 0) { /* only our end: the child's stays blocking */
                r = negative_errno();
                goto fail_pipe;
        }
        r = exec_spawn(spec, fds[1], &pid);
        (void) close(fds[1]);
        fds[1] = -1;
        if (r < 0 && spawn_error_is_command(-r)) {
                (void) close(fds[0]);
                a->data = x;
                attempt_end(a, OUTCOME_FAILURE, "exec: %s", strerror(-r));
                return 0;
        }
        if (r < 0)
                goto fail_pipe;
        x->pid = pid;
        x->out_fd = fds[0];
        a->data = x; /* from here on, an error return has the lifecycle call exec_cancel */
        x->pidfd = (int) syscall(SYS_pidfd_open, pid, 0);
        if (x->pidfd < 0 && errno != ENOSYS) {
                r = negative_errno();
                goto fail;
        }
        if (x->pidfd >= 0) {
                r = attempt_io_add(a, x->pidfd, EPOLLIN, exec_on_exit);
                if (r < 0) {
                        (void) close(x->pidfd);
                        x->pidfd = -1;
                        goto fail;
                }
        } else
                attempt_timer_arm(a, exec_on_poll, now_ns() + EXEC_POLL_MS * NSEC_PER_MSEC);
        r = attempt_io_add(a, x->out_fd, EPOLLIN, exec_on_output);
        if (r < 0)
                goto fail;
        return 0;
fail:
        x->start_failed = true;
        return r;
fail_pipe:
        (void) close(fds[0]);
        if (fds[1] >= 0)
                (void) close(fds[1]);
        exec_attempt_free(x);
        return r;
}

static const char *const exec_keys[] = { "command", NULL };

/* --exec NAME=CMD: argv split on spaces, no shell, no quoting; empty pieces dropped. */
static int exec_flag_to_json(cJSON *obj, const char *value)
{
        cJSON *argv = cJSON_AddArrayToObject(obj, "command");

        if (!argv)
                return -ENOMEM;
        for (const char *p = value; *p;) {
                size_t n = strcspn(p, " ");

                if (n > 0) {
                        char *piece = strndup(p, n);
                        cJSON *s = piece ? cJSON_CreateString(piece) : NULL;

                        free(piece);
                        if (!s || !cJSON_AddItemToArray(argv, s)) {
                                cJSON_Delete(s);
                                return -ENOMEM;
                        }
                }
                p += n;
                p += strspn(p, " ");
        }
        return 0;
}

const struct probe_ops exec_probe_ops = {
        .type = "exec",
        .keys = exec_keys,
        /* the pipe (both ends while spawning, then its read end) and the pidfd; a pidfd
         * handed to the reaper outlives the attempt until the child is reaped */
        .fds_per_attempt = 3,
        .flag = { .name = "exec", .arg = "NAME=CMD", .to_json = exec_flag_to_json },
        .parse = exec_parse,
        .free_spec = exec_free_spec,
        .start = exec_start,
        .cancel = exec_cancel,
};
