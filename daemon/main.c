/* probed: command line (README "Command line"), then the daemon's life:
 * block signals -> libcurl init -> loop -> status server -> daemon -> loop_run ->
 * shutdown in one place (daemon_free cancels and removes every easy handle, then
 * curl_multi_cleanup inside loop_free while epoll is open, then MHD stop). */
#include <dirent.h>
#include <getopt.h>
#include <malloc.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>

#include "bounds.h"
#include "check_grpc.h"
#include "config.h"
#include "daemon.h"
#include "json.h"
#include "log.h"
#include "loop.h"
#include "probe.h"
#include "probe_curl.h"
#include "registry.h"
#include "server.h"
#include "util.h"

#define EXIT_USAGE 2

/* The synopsis' first line lists these, with each kind's flag from the registry between
 * them, wrapped at USAGE_COLUMNS. */
static const char *const usage_head[] = { "[-c FILE]", "[-l ADDR:PORT]" };
static const char *const usage_tail[] = { "[--log-level debug|info|warn|error]", "[--log-format json|text]" };
#define USAGE_COLUMNS 80
#define USAGE_INDENT "         "

static const char usage_text[] =
        "  probed --check-config [-c FILE] [probe flags]\n"
        "  probed check URL [--timeout DUR]\n"
        "  probed --help | --version\n"
        "\n"
        "Health-probe sidecar for Cloud Run and Knative: probes the main container and serves\n"
        "/startup, /livez, /readyz, /status and /metrics (default 0.0.0.0:8081).\n"
        "  -c FILE          config file (default $PROBED_CONFIG)\n"
        "  -l ADDR:PORT     listen address (default $PROBED_LISTEN, the config's listen, 0.0.0.0:8081)\n"
        "  --check-config   validate, print the effective config as JSON, exit 0 (2 on error)\n"
        "Signals: TERM/INT drain and exit, HUP reloads the config, USR1 logs the status.\n";

static void usage_item(const char *item, size_t *col)
{
        size_t len = strlen(item);

        if (*col + 1 + len > USAGE_COLUMNS) {
                fputs("\n" USAGE_INDENT, stdout);
                *col = strlen(USAGE_INDENT);
        } else {
                putchar(' ');
                (*col)++;
        }
        fputs(item, stdout);
        *col += len;
}

static void print_usage(void)
{
        size_t col = strlen("  probed");
        char item[128];

        fputs("Usage:\n  probed", stdout);
        for (size_t i = 0; i < ELEMENTSOF(usage_head); i++)
                usage_item(usage_head[i], &col);
        for (const struct probe_ops *const *k = probe_kinds; *k; k++) {
                (void) snprintf(item, sizeof(item), "[--%s %s]", (*k)->flag.name, (*k)->flag.arg);
                usage_item(item, &col);
        }
        for (size_t i = 0; i < ELEMENTSOF(usage_tail); i++)
                usage_item(usage_tail[i], &col);
        fputs("\n", stdout);
        fputs(usage_text, stdout);
}

/* getopt_long's table: -c, -l, one flag per kind of the registry (OPT_KIND + its index),
 * then the rest. malloc'd, NULL on ENOMEM. */
enum {
        OPT_LOG_LEVEL = 256,
        OPT_LOG_FORMAT,
        OPT_CHECK_CONFIG,
        OPT_HELP,
        OPT_VERSION,
        OPT_KIND, /* + the kind's index in probe_kinds */
};

static struct option *options_new(void)
{
        static const struct option head[] = {
                { "config", required_argument, NULL, 'c' },
                { "listen", required_argument, NULL, 'l' },
        };
        static const struct option tail[] = {
                { "log-level", required_argument, NULL, OPT_LOG_LEVEL },
                { "log-format", required_argument, NULL, OPT_LOG_FORMAT },
                { "check-config", no_argument, NULL, OPT_CHECK_CONFIG },
                { "help", no_argument, NULL, OPT_HELP },
                { "version", no_argument, NULL, OPT_VERSION },
                {},
        };
        size_t n_kinds = 0, n = 0;
        struct option *o;

        while (probe_kinds[n_kinds])
                n_kinds++;
        o = calloc(ELEMENTSOF(head) + n_kinds + ELEMENTSOF(tail), sizeof(*o));
        if (!o)
                return NULL;
        for (size_t i = 0; i < ELEMENTSOF(head); i++)
                o[n++] = head[i];
        for (size_t i = 0; i < n_kinds; i++)
                o[n++] = (struct option){ probe_kinds[i]->flag.name, required_argument, NULL, OPT_KIND + (int) i };
        for (size_t i = 0; i < ELEMENTSOF(tail); i++)
                o[n++] = tail[i];
        return o;
}

/* "probed: " and the formatted text as one line on stderr, valid UTF-8 whatever bytes
 * the arguments hold (a URL, a config value): invalid sequences and control bytes as
 * include/json.h escapes them, quotes and backslashes as they are (README "Logs"). */
static void __attribute__((format(printf, 1, 2))) print_error(const char *fmt, ...)
{
        char *text = NULL;
        va_list ap;

        va_start(ap, fmt);
        if (vasprintf(&text, fmt, ap) < 0)
                text = NULL;
        va_end(ap);
        fputs("probed: ", stderr);
        for (const char *s = text ? text : "out of memory"; *s;) {
                size_t n = json_plain_len(s);
                char esc[JSON_ESCAPE_MAX];

                fwrite(s, 1, n, stderr);
                s += n;
                if (*s == '"' || *s == '\\')
                        fputc(*s++, stderr);
                else if (*s)
                        fwrite(esc, 1, json_escape_byte((unsigned char) *s++, esc), stderr);
        }
        fputc('\n', stderr);
        free(text);
}

static int usage_error(const char *fmt, const char *arg)
{
        char *msg = strdup_printf(fmt, arg);

        print_error("%s (see probed --help)", msg ? msg : "out of memory");
        free(msg);
        return EXIT_USAGE;
}

/* Why `probed check` cannot use url (a usage error, README "Command line"), or NULL:
 * libcurl's URL parser says so (no host, a port past 65535, ...), or the scheme is not
 * http(s). A URL without a scheme is http, as libcurl guesses. */
static const char *check_url_problem(const char *url)
{
        CURLU *u = curl_url();
        CURLUcode uc;
        char *scheme = NULL;
        const char *why = NULL;

        if (!u)
                return NULL; /* out of memory: the transfer will say so */
        uc = curl_url_set(u, CURLUPART_URL, url, CURLU_GUESS_SCHEME);
        if (uc != CURLUE_OK)
                why = curl_url_strerror(uc);
        else if (curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) == CURLUE_OK && strcasecmp(scheme, "http") != 0 &&
                 strcasecmp(scheme, "https") != 0)
                why = "not an http:// or https:// URL";
        curl_free(scheme);
        curl_url_cleanup(u);
        return why;
}

/* The response head `probed check` takes: at most HTTP_MAX_HEADER_BYTES, as a probe.
 * data counts the bytes so far. */
static size_t check_on_header(char *buf, size_t size, size_t n, void *data)
{
        size_t *bytes = data;

        (void) buf;
        *bytes += size * n;
        return *bytes > HTTP_MAX_HEADER_BYTES ? 0 : size * n;
}

/* `probed check URL`: one request, exit 0 on 2xx/3xx; no redirects, no proxy. */
static int cmd_check(int argc, char **argv)
{
        const char *url = NULL;
        uint64_t timeout_ms = CHECK_DEFAULT_TIMEOUT_MS;
        CURL *e;
        CURLcode rc;
        long code = 0;

        for (int i = 2; i < argc; i++) {
                if (strcmp(argv[i], "--timeout") == 0 && i + 1 < argc) {
                        if (duration_parse(argv[++i], &timeout_ms) < 0 || timeout_ms == 0)
                                return usage_error(
                                        "check: --timeout: \"%s\" is not a duration (e.g. \"500ms\", \"2s\")", argv[i]);
                } else if (!url && argv[i][0] != '-') {
                        url = argv[i];
                } else {
                        return usage_error("check: unexpected argument \"%s\"", argv[i]);
                }
        }
        if (!url)
                return usage_error("check: missing URL%s", "");
        if (strncasecmp(url, "grpc://", 7) == 0) {
                char why[ERROR_MAX];
                int r = check_grpc(url, timeout_ms, why, sizeof(why));

                if (r == EXIT_USAGE)
                        print_error("check: \"%s\" %s (see probed --help)", url, why);
                else if (r != 0)
                        print_error("check %s: %s", url, why);
                return r;
        }
        if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
                print_error("cannot initialize libcurl");
                return 1;
        }
        const char *why = check_url_problem(url);
        if (why) {
                print_error("check: \"%s\": %s (see probed --help)", url, why);
                curl_global_cleanup();
                return EXIT_USAGE;
        }
        e = probe_curl_new(url, NULL);
        if (!e) {
                print_error("check %s: out of memory", url);
                curl_global_cleanup();
                return 1;
        }
        size_t head_bytes = 0;
        curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long) timeout_ms);
        curl_easy_setopt(e, CURLOPT_NOBODY, 0L);
        curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, NULL);
        curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, check_on_header);
        curl_easy_setopt(e, CURLOPT_HEADERDATA, &head_bytes);
        FILE *devnull = fopen("/dev/null", "we");
        if (devnull)
                curl_easy_setopt(e, CURLOPT_WRITEDATA, devnull);
        rc = curl_easy_perform(e);
        if (rc == CURLE_OK)
                curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &code);
        else if (rc == CURLE_WRITE_ERROR && head_bytes > HTTP_MAX_HEADER_BYTES)
                print_error("check %s: response headers too large", url); /* the http probe's words */
        else {
                char err[ERROR_MAX];
                (void) probe_curl_error(e, rc, 0, err, sizeof(err));
                if (rc == CURLE_URL_MALFORMAT || rc == CURLE_UNSUPPORTED_PROTOCOL) /* check_url_problem let it by */
                        print_error("check: \"%s\": %s (see probed --help)", url, err);
                else
                        print_error("check %s: %s", url, err);
        }
        probe_curl_free(e);
        if (devnull)
                fclose(devnull);
        probe_curl_pool_drain();
        curl_global_cleanup();
        if (rc == CURLE_OK && !(code >= 200 && code < 400))
                print_error("check %s: status %ld", url, code);
        if (rc == CURLE_URL_MALFORMAT || rc == CURLE_UNSUPPORTED_PROTOCOL)
                return EXIT_USAGE;
        return rc == CURLE_OK && code >= 200 && code < 400 ? 0 : 1;
}

/* Probes and status connections both need fds: raise the soft limit towards
 * NOFILE_WANTED, as far as the hard limit allows. */
static void raise_nofile_limit(void)
{
        struct rlimit rl;

        if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur >= NOFILE_WANTED)
                return;
        rl.rlim_cur = rl.rlim_max < NOFILE_WANTED ? rl.rlim_max : NOFILE_WANTED;
        (void) setrlimit(RLIMIT_NOFILE, &rl);
}

/* Descriptors left to the attempts in flight (README "Design"): the soft RLIMIT_NOFILE,
 * less what is open now (the loop, the status server and its threads, libcurl's multi)
 * and SERVER_FD_RESERVE, which probes never take. *ret_max_inflight: how many attempts
 * of cfg's costliest kind fit at once (at most MAX_INFLIGHT_ATTEMPTS), for the log. */
static size_t probe_fd_budget(const struct config *cfg, size_t *ret_max_inflight)
{
        DIR *dir = opendir("/proc/self/fd");
        size_t open_fds = 64, budget = 0, worst = 1; /* without /proc: a generous guess */
        struct rlimit rl;

        if (dir) {
                open_fds = 0;
                for (struct dirent *e; (e = readdir(dir));)
                        open_fds += e->d_name[0] != '.';
                (void) closedir(dir);
                open_fds -= open_fds > 0; /* the directory's own fd */
        }
        for (size_t i = 0; i < cfg->n_probes; i++)
                if (cfg->probes[i].ops->fds_per_attempt > worst)
                        worst = cfg->probes[i].ops->fds_per_attempt;
        if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur > open_fds + SERVER_FD_RESERVE)
                budget = rl.rlim_cur - open_fds - SERVER_FD_RESERVE;
        if (budget < worst)
                budget = worst; /* one attempt at a time, into the reserve, rather than none */
        *ret_max_inflight = budget / worst < MAX_INFLIGHT_ATTEMPTS ? budget / worst : MAX_INFLIGHT_ATTEMPTS;
        return budget;
}

static void publish_to_server(struct snapshot *s, void *data)
{
        server_publish(data, s);
}

/* What the command line asked for. */
struct cli {
        const char *config_path; /* -c, else $PROBED_CONFIG; NULL: none */
        const char *listen;      /* -l, else $PROBED_LISTEN; NULL or "": the config's */
        enum log_level level;
        bool level_given; /* --log-level wins over the config's log_level */
        enum log_format format;
        bool check_config;
        struct probe_flag *flags; /* malloc'd, n_flags used */
        size_t n_flags;
};

#define CONTINUE (-1) /* a step's result when main goes on to the next */

/* Parses argv into cli. CONTINUE, or the exit status (--help, --version, usage error). */
static int parse_args(int argc, char **argv, struct cli *cli)
{
        struct option *options = options_new();
        int opt, ret = CONTINUE;

        cli->config_path = getenv("PROBED_CONFIG");
        cli->listen = getenv("PROBED_LISTEN");
        cli->level = LOG_LEVEL_INFO;
        cli->format = LOG_FORMAT_JSON;
        cli->flags = calloc((size_t) argc, sizeof(*cli->flags));
        if (!cli->flags || !options) {
                free(options);
                return 1;
        }
        if (cli->config_path && !*cli->config_path)
                cli->config_path = NULL;
        opterr = 0;
        while (ret == CONTINUE && (opt = getopt_long(argc, argv, ":c:l:", options, NULL)) != -1) {
                switch (opt) {
                case 'c':
                        cli->config_path = optarg;
                        break;
                case 'l':
                        cli->listen = optarg;
                        break;
                case OPT_LOG_LEVEL:
                        cli->level = log_level_from_string(optarg);
                        if ((int) cli->level < 0)
                                ret = usage_error("--log-level: \"%s\" is not debug, info, warn or error", optarg);
                        cli->level_given = true;
                        break;
                case OPT_LOG_FORMAT:
                        cli->format = log_format_from_string(optarg);
                        if ((int) cli->format < 0)
                                ret = usage_error("--log-format: \"%s\" is not json or text", optarg);
                        break;
                case OPT_CHECK_CONFIG:
                        cli->check_config = true;
                        break;
                case OPT_HELP:
                        print_usage();
                        ret = 0;
                        break;
                case OPT_VERSION:
                        printf("probed %s\n", PROBED_VERSION);
                        ret = 0;
                        break;
                case ':':
                        ret = usage_error("%s needs a value", argv[optind - 1]);
                        break;
                default:
                        if (opt >= OPT_KIND)
                                cli->flags[cli->n_flags++] =
                                        (struct probe_flag){ .kind = probe_kinds[opt - OPT_KIND]->flag.name,
                                                             .arg = optarg };
                        else
                                ret = usage_error("unknown option \"%s\"", argv[optind - 1]);
                        break;
                }
        }
        free(options);
        if (ret == CONTINUE && optind < argc)
                ret = usage_error("unexpected argument \"%s\"", argv[optind]);
        return ret;
}

/* Reads and validates the config (lean unless it is to be printed). CONTINUE with
 * *ret_cfg, or EXIT_USAGE after printing the error. */
static int load_config(const struct cli *cli, struct config **ret_cfg)
{
        char *text = NULL, *err = NULL;
        int r = 0;

        if (cli->config_path)
                r = config_read_file(cli->config_path, &text, &err);
        if (r >= 0)
                r = cli->check_config ? config_load(text, cli->flags, cli->n_flags, ret_cfg, &err)
                                      : config_load_lean(text, cli->flags, cli->n_flags, ret_cfg, &err);
        free(text); /* up to MAX_CONFIG_BYTES, no longer needed */
        if (r < 0)
                print_error("%s", err ? err : "out of memory");
        free(err);
        return r < 0 ? EXIT_USAGE : CONTINUE;
}

/* --check-config: the effective config as JSON on stdout. */
static int print_config(const struct config *cfg)
{
        cJSON *j = config_to_json(cfg);
        char *s = j ? cJSON_Print(j) : NULL;

        if (s)
                printf("%s\n", s);
        free(s);
        cJSON_Delete(j);
        return s ? 0 : 1;
}

/* Process settings, before any thread exists (libcurl's resolver, MHD's pool): they
 * inherit the signal mask. */
static void setup_process(const int *signals, size_t n_signals)
{
        sigset_t mask;

        raise_nofile_limit();
        /* One malloc arena: the status server's threads allocate little, and an arena each
         * would cost more memory than it saves in contention. */
        (void) mallopt(M_ARENA_MAX, 1);

        sigemptyset(&mask);
        for (size_t i = 0; i < n_signals; i++)
                sigaddset(&mask, signals[i]);
        pthread_sigmask(SIG_BLOCK, &mask, NULL);
        signal(SIGPIPE, SIG_IGN); /* CURLOPT_NOSIGNAL leaves SIGPIPE to us */
}

/* The "listening" line, with the descriptors left to probes; returns that budget. */
static size_t log_listening(const char *listen, uint16_t port, const struct config *cfg)
{
        char port_s[8], inflight_s[24], fds_s[24];
        size_t max_inflight, fd_budget = probe_fd_budget(cfg, &max_inflight);

        snprintf(port_s, sizeof(port_s), "%u", (unsigned) port);
        snprintf(inflight_s, sizeof(inflight_s), "%zu", max_inflight);
        snprintf(fds_s, sizeof(fds_s), "%zu", fd_budget);
        log_kv(LOG_LEVEL_INFO, "Status server listening", "event", "listening", "address", listen, "port", port_s,
               "version", PROBED_VERSION, "max_inflight", inflight_s, "probe_fds", fds_s, NULL);
        return fd_budget;
}

/* The daemon's life (see the top of this file); takes cfg over. The exit status. */
static int run(const struct cli *cli, struct config *cfg)
{
        static const int signals[] = { SIGTERM, SIGINT, SIGHUP, SIGUSR1 };
        const char *listen = cli->listen && *cli->listen ? cli->listen : cfg->listen;
        struct loop *loop = NULL;
        struct server *srv = NULL;
        struct daemon *d = NULL;
        char *err = NULL;
        uint16_t port = 0;
        size_t fd_budget;
        int r, ret = 1;

        if (listen != cfg->listen && !config_listen_valid(listen)) { /* the config checked its own */
                config_free(cfg);
                return usage_error("listen: \"%s\" " LISTEN_HINT, listen);
        }
        if (cli->level_given)
                log_setup(cli->level, cli->format);
        else if (cfg->log_level_set)
                log_setup(cfg->log_level, cli->format);

        setup_process(signals, ELEMENTSOF(signals));
        if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
                fprintf(stderr, "probed: cannot initialize libcurl\n");
                config_free(cfg);
                return 1;
        }
        if (!(curl_version_info(CURLVERSION_NOW)->features & CURL_VERSION_ASYNCHDNS)) {
                /* a blocking resolver would stall the one loop (libcurl-multi BLOCKING) */
                fprintf(stderr, "probed: libcurl lacks asynchronous DNS; refusing to run\n");
                goto out_curl;
        }
        loop = loop_new(signals, ELEMENTSOF(signals), &r);
        if (!loop) {
                fprintf(stderr, "probed: cannot create the event loop: %s\n", strerror(-r));
                goto out_curl;
        }
        srv = server_new(listen, loop, &port, &err);
        if (!srv) {
                print_error("%s", err ? err : "out of memory");
                goto out_curl;
        }
        fd_budget = log_listening(listen, port, cfg);
        d = daemon_new(loop, cfg,
                       &(struct daemon_options){
                               .config_path = cli->config_path,
                               .flags = cli->flags,
                               .n_flags = cli->n_flags,
                               .log_level_locked = cli->level_given,
                               .publish = publish_to_server,
                               .publish_data = srv,
                       });
        cfg = NULL; /* the daemon owns it now */
        if (!d) {
                fprintf(stderr, "probed: out of memory\n");
                goto out_curl;
        }
        daemon_set_fd_budget(d, fd_budget);
        daemon_start(d);
        r = loop_run(loop);
        if (r < 0)
                log_kv(LOG_LEVEL_ERROR, "Failed to run the event loop", "error", strerror(-r), NULL);
        ret = r < 0 ? 1 : 0;
        log_kv(LOG_LEVEL_INFO, "Exiting", "event", "shutdown", NULL);
out_curl:
        d = daemon_free(d);     /* cancels attempts: every easy handle removed and cleaned up */
        srv = server_free(srv); /* needs the loop (its listen socket is watched there) */
        loop = loop_free(loop); /* curl_multi_cleanup while epoll is open, then the loop's fds */
        probe_curl_pool_drain();
        curl_global_cleanup();
        config_free(cfg); /* when the daemon did not take it */
        free(err);
        return ret;
}

int main(int argc, char **argv)
{
        struct cli cli = { 0 };
        struct config *cfg = NULL;
        int ret;

        if (argc >= 2 && strcmp(argv[1], "check") == 0)
                return cmd_check(argc, argv);
        ret = parse_args(argc, argv, &cli);
        if (ret == CONTINUE) {
                log_setup(cli.level, cli.format);
                ret = load_config(&cli, &cfg);
        }
        if (ret == CONTINUE && cli.check_config)
                ret = print_config(cfg);
        else if (ret == CONTINUE) {
                ret = run(&cli, cfg);
                cfg = NULL; /* run took it */
        }
        config_free(cfg);
        free(cli.flags);
        return ret;
}
