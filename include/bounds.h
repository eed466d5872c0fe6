/* Every limit probed enforces, in one place (STYLE 21). */
#pragma once

#define PROBED_VERSION "0.1.0"

#define MAX_PROBES 10000            /* probes in one config */
#define MAX_NAME_LEN 64             /* probe name bytes: [A-Za-z0-9_.-]{1,64} */
#define MAX_CONFIG_BYTES (4u << 20) /* config file size */
#define ERROR_MAX 160               /* last_error bytes, NUL included */
#define ADDR_LIST_MAX 2             /* addresses kept per target host (localhost: ::1, 127.0.0.1) */
#define HTTP_MAX_BODY_DEFAULT 10240 /* bytes of body read, as kubelet */
#define HTTP_MAX_REDIRECTS 10       /* a chain reaching this many fails, as kubelet */
#define HTTP_MAX_HEADER_BYTES 16384 /* response header bytes a probe accepts */
#define EXEC_OUTPUT_MAX 1024        /* stdout+stderr bytes kept in /status */
#define CURL_BUFFER_BYTES 4096      /* libcurl receive buffer per handle */
#define CURL_POOL_MAX 64            /* idle libcurl easy handles kept for reuse */
#define GRPC_MAX_REPLY_BYTES 4096   /* gRPC health reply body bytes read (one tiny message) */
#define WS_MAX_SKIP_DEFAULT 65536   /* websocket: frame bytes before the pong (max_skip), then failure */
#define LOOP_READ_BUDGET 65536      /* bytes one read handler takes per wake-up; then back to the loop */
#define LOG_LINE_MAX 8192           /* one log line, truncated beyond */

#define SERVER_CONNECTION_LIMIT 4096  /* status server connections: thousands of idle ones must not lock out probes */
#define SERVER_PER_IP_LIMIT 0         /* 0: unlimited per IP (the platform probes from one IP) */
#define SERVER_CONNECTION_TIMEOUT_S 5 /* idle connection closed after this */
#define SERVER_MEMORY_LIMIT 8192      /* per-connection buffer: bounds request line + headers */
#define SERVER_THREADS 2              /* MHD epoll thread pool size */
#define SERVER_LISTEN_BACKLOG                                                                                          \
        4096                   /* accept queue: a burst of connects must not drop the platform's SYN (1 s retransmit) */
#define SERVER_ACCEPT_BATCH 64 /* accepts per wake-up of the listen socket */
#define SERVER_ACCEPT_PAUSE_MS 100 /* out of fds: stop accepting this long */
#define SERVER_LOG_BURST 5         /* status server log lines per second, more are counted */

#define SNAPSHOT_STATS_INTERVAL_MS 100 /* counters-only changes are published at most this often */
#define MAX_INFLIGHT_ATTEMPTS 1024     /* attempts in flight at once, at most; more wait for a slot */
/* Descriptors probes never take (README "Design"): the status server must accept
 * /livez while probes hold all theirs; the platform's probes, a scraper and a person's
 * curl at once, each connection 1 fd, plus a reload's config file, with room to spare.
 * The rest of RLIMIT_NOFILE, after what is open at start, is shared by the attempts in
 * flight, each counting its kind's fds_per_attempt. */
#define SERVER_FD_RESERVE 32
#define FIRST_ATTEMPT_STAGGER_US 100   /* first attempts of probes starting together: this far apart */
#define STALL_WAKE_DIVISOR 4           /* wake every stall_threshold/4 while attempts run */
#define CHECK_DEFAULT_TIMEOUT_MS 1000  /* probed check URL */
#define NOFILE_WANTED 65536            /* soft RLIMIT_NOFILE raised towards this (hard limit permitting) */
