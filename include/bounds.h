/* Every limit probed enforces, in one place (docs/design.md, "Bounds"). */
#pragma once

#define PROBED_VERSION "0.1.0"

#define MAX_PROBES 10000            /* probes in one config */
#define MAX_NAME_LEN 64             /* probe name bytes: [A-Za-z0-9_.-]{1,64} */
#define MAX_CONFIG_BYTES (4u << 20) /* config file size */
#define ERROR_MAX 160               /* last_error bytes, NUL included */
#define ADDR_LIST_MAX 8             /* addresses of one name tried in turn (an answer keeps its first 8) */
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

/* Status server connections (README.md, "Status server limits"). probed counts them
 * itself and never lets libmicrohttpd reach its own limit: 0.9.75 leaves a mutex locked
 * when a connection arrives at it (new_connection_process_ in daemon.c) and the server
 * is wedged for good. The platform needs a handful of connections; 1024 idle ones cost
 * at most 8 MiB of MHD pools (SERVER_MEMORY_LIMIT each), and every connection past the
 * limit sheds the oldest idle one (no complete request yet), so a flood of idle or
 * slowloris connections cannot lock the platform out. */
#define SERVER_CONNECTION_LIMIT 1024 /* at it, each new connection sheds the oldest idle one */
#define SERVER_CONNECTION_HARD_LIMIT                                                                                   \
        2048 /* open ones, busy and being shed included: past it a new one needs a complete request */
#define SERVER_MHD_CONNECTION_LIMIT                                                                                    \
        (SERVER_THREADS * (SERVER_CONNECTION_HARD_LIMIT + SERVER_REQUEST_RESERVE +                                     \
                           64))       /* MHD's own, never reached: any one worker may get them all */
#define SERVER_REQUEST_RESERVE 64     /* past the hard limit, connections with a complete request still admitted */
#define SERVER_REQUEST_PEEK 1024      /* bytes of an unread request head looked at for its end */
#define SERVER_HOLD_MAX 128           /* past the hard limit, new connections held until their request comes */
#define SERVER_HOLD_MS 100            /* ... for at most this long, then closed */
#define SERVER_PER_IP_LIMIT 0         /* 0: unlimited per IP (the platform probes from one IP) */
#define SERVER_CONNECTION_TIMEOUT_S 5 /* idle connection closed after this */
#define SERVER_MEMORY_LIMIT 8192      /* per-connection buffer: bounds request line + headers */
#define SERVER_THREADS 2              /* MHD epoll thread pool size */
#define SERVER_LISTEN_BACKLOG                                                                                          \
        4096                   /* accept queue: a burst of connects must not drop the platform's SYN (1 s retransmit) */
#define SERVER_ACCEPT_BATCH 64 /* accepts between two looks at the stop signal */
#define SERVER_ACCEPT_PAUSE_MS 100 /* out of fds: stop accepting this long */
/* Bytes of /status and /metrics bodies alive, each shared by its readers: past it a
 * request reuses the latest rendered body instead of rendering one (10,000 probes:
 * 15.8 + 4.6 MB fit once, a second /metrics does not). */
#define SERVER_DOC_BUDGET (24u << 20)
#define SERVER_REPLY_BLOCK 8192       /* per-request buffer MHD fills from a shared body */
#define SERVER_STOP_WAIT_MS 50        /* shutdown waits this long for MHD's threads, then exits without them */
#define SERVER_HB_LEAVE_WAIT_MS 40    /* ... then this long for them to leave the loop's heartbeat (one wait slice) */
#define SERVER_WATCHDOG_GRACE_MS 1000 /* a loop behind by the watchdog gets this long to catch up before 503 */
#define SERVER_WAIT_SLICE_MS 20       /* a request waiting for the loop re-checks for shutdown this often */
/* gRPC health on the status port (README.md, "gRPC health"): connections count toward
 * SERVER_CONNECTION_LIMIT like HTTP ones and close after SERVER_CONNECTION_TIMEOUT_S
 * without a request. A health call is one small message, so the per-stream caps are
 * tight: 2112 connections x SERVER_GRPC_CONN_BYTES bound what request bodies hold. */
#define SERVER_GRPC_THREADS 2         /* threads serving HTTP/2 connections, as MHD's pool */
#define SERVER_GRPC_MAX_STREAMS 32    /* concurrent streams per connection (SETTINGS_MAX_CONCURRENT_STREAMS) */
#define SERVER_GRPC_MAX_HEADERS 8192  /* request header bytes per stream, as SERVER_MEMORY_LIMIT */
#define SERVER_GRPC_MAX_REQUEST 512   /* request body bytes per stream: a longer name matches nothing */
#define SERVER_GRPC_CONN_BYTES 4096   /* request body bytes buffered per connection, all streams */
#define SERVER_GRPC_READ_BUDGET 65536 /* bytes read from one connection per wake-up */
#define SERVER_GRPC_MAX_WATCHES 64    /* Watch calls open at once, all connections */
#define SERVER_GRPC_METRICS_MAX 4096  /* the gRPC counters' part of /metrics */
#define SERVER_LOG_BURST 5            /* status server log lines per second, more are counted */

#define SNAPSHOT_STATS_INTERVAL_MS 100 /* counters-only changes are published at most this often */
#define MAX_INFLIGHT_ATTEMPTS 1024     /* attempts in flight at once, at most; more wait for a slot */
/* Descriptors probes never take (README "Design"): the status server must accept
 * /livez while probes hold all theirs; the platform's probes, a scraper and a person's
 * curl at once, each connection 1 fd, plus a reload's config file, with room to spare.
 * The rest of RLIMIT_NOFILE, after what is open at start, is shared by the attempts in
 * flight, each counting its kind's fds_per_attempt. */
#define SERVER_FD_RESERVE 32
#define FIRST_ATTEMPT_STAGGER_US 100  /* first attempts of probes starting together: this far apart */
#define HEARTBEAT_SLACK_MS 20         /* a loop this close to the present counts as current */
#define HEARTBEAT_POLL_MS 5           /* a waiting server thread re-checks the heartbeat this often */
#define FREEZE_SHIFT_MIN_US 1000      /* no-CPU lateness below this is not moved out of deadlines */
#define STALL_MAX_CPU_PERCENT 25      /* a late span is a stall only if the loop ran under this share of it */
#define STALL_WAKE_DIVISOR 4          /* wake every stall_threshold/4 while attempts run */
#define CHECK_DEFAULT_TIMEOUT_MS 1000 /* probed check URL */
#define NOFILE_WANTED 65536           /* soft RLIMIT_NOFILE raised towards this (hard limit permitting) */

/* Names (README "Names"; docs/design.md, "Names"). */
#define RESOLVER_TTL_MIN_S 1                /* an answer is kept at least this long (TTL 0 included) */
#define RESOLVER_TTL_MAX_S 60               /* ... and at most this long, whatever its TTL */
#define RESOLVER_NEGATIVE_TTL_S 1           /* "no such host" kept this long: a missing name is no query storm */
#define RESOLVER_TRY_MS 1000                /* c-ares: wait per try for one server (then the next, or again) */
#define RESOLVER_TRIES 2                    /* c-ares: tries per server; then the lookup fails as a timeout */
#define RESOLVER_CACHE_MAX (2 * MAX_PROBES) /* names cached; past it (after dropping expired ones) not cached */
#define RESOLVER_SERVER_CHANNELS_MAX 32     /* dns probes' distinct `server`s with a channel open at once */
