/* target: a small configurable HTTP/1.1 server that integration tests probe.
 *
 * Design: one thread, one epoll set, non-blocking sockets, no library beyond libc.
 * Each connection reads one request head (bounded by HEAD_MAX), decides what to do
 * from the request path, and then either writes an answer and closes (every answer
 * honours HTTP/1.1 keep-alive unless the client sent `Connection: close`, so that
 * tests can see whether a client reuses connections), waits for a timer
 * (/delay), holds the connection open (/hang) or closes it (/close, /reset).
 * Timers are a per-connection deadline; epoll_wait's timeout is the earliest one
 * (a linear scan: tests open few connections). Large bodies (/body/N) are streamed
 * from a constant buffer, never allocated. SIGTERM/SIGINT arrive through a signalfd
 * and end the loop with exit status 0.
 *
 *   accept -> READ --(head complete)--> route --+--> WRITE --(done)--> close / READ
 *                                               +--> DELAY --(timer)--> WRITE
 *                                               +--> HANG (until the peer closes)
 *                                               +--> close (FIN) / reset (RST)
 *
 * CLI: target [--port N] [--addr A] (IPv4 or IPv6); prints "PORT <n>\n" on stdout once bound.
 * Paths: see the docstring of tests/integration/harness.py, or route(). */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define HEAD_MAX 16384     /* request line + headers accepted */
#define TEXT_MAX 4096      /* body= / to= / health body bytes kept */
#define STREAM_CHUNK 65536 /* bytes of 'x' written per send() for /body/N */

enum conn_state {
        CONN_READ,
        CONN_DELAY,
        CONN_HANG,
        CONN_WRITE,
};

struct conn {
        struct conn *next;
        int fd;
        enum conn_state state;
        char in[HEAD_MAX + 1];
        size_t in_len;
        bool head_only;      /* HEAD: headers only */
        bool keep_alive;     /* HTTP/1.1 without Connection: close: read another request */
        size_t head_len;     /* bytes of in[] taken by the current request head */
        int64_t deadline_ms; /* CONN_DELAY: when to answer */
        int delay_code;
        char *out; /* head (+ small body) to write */
        size_t out_len, out_off;
        uint64_t stream_left; /* 'x' bytes still to stream after out */
};

static struct conn *conns;
static int epfd = -1;
static unsigned long long n_requests, n_connections, n_open, max_open;
static int health_code = 200;
static char health_body[TEXT_MAX + 1] = "ok\n";
static char stream_buf[STREAM_CHUNK];

static int64_t now_ms(void)
{
        struct timespec ts;

        (void) clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static const char *reason_of(int code)
{
        switch (code) {
        case 200:
                return "OK";
        case 201:
                return "Created";
        case 204:
                return "No Content";
        case 301:
                return "Moved Permanently";
        case 302:
                return "Found";
        case 304:
                return "Not Modified";
        case 307:
                return "Temporary Redirect";
        case 400:
                return "Bad Request";
        case 404:
                return "Not Found";
        case 405:
                return "Method Not Allowed";
        case 431:
                return "Request Header Fields Too Large";
        case 500:
                return "Internal Server Error";
        case 502:
                return "Bad Gateway";
        case 503:
                return "Service Unavailable";
        default:
                return "Status";
        }
}

static void conn_close(struct conn *c, bool reset)
{
        struct conn **pp;

        if (reset) {
                struct linger lg = { .l_onoff = 1, .l_linger = 0 };
                (void) setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
        }
        (void) epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
        (void) close(c->fd);
        n_open--;
        for (pp = &conns; *pp; pp = &(*pp)->next)
                if (*pp == c) {
                        *pp = c->next;
                        break;
                }
        free(c->out);
        free(c);
}

static void conn_watch(struct conn *c, uint32_t events)
{
        struct epoll_event ev = { .events = events, .data.ptr = c };

        (void) epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
}

/* Decodes %XX and '+' in place. */
static void url_decode(char *s)
{
        char *w = s;

        for (; *s; s++) {
                if (*s == '%' && isxdigit((unsigned char) s[1]) && isxdigit((unsigned char) s[2])) {
                        char hex[3] = { s[1], s[2], 0 };
                        *w++ = (char) strtol(hex, NULL, 16);
                        s += 2;
                } else if (*s == '+') {
                        *w++ = ' ';
                } else {
                        *w++ = *s;
                }
        }
        *w = 0;
}

/* Copies the decoded value of query parameter `key` into ret (size TEXT_MAX+1).
 * Returns true when present. */
static bool query_get(const char *query, const char *key, char *ret)
{
        size_t klen = strlen(key);
        const char *p = query;

        while (p && *p) {
                const char *end = strchr(p, '&');
                size_t len = end ? (size_t) (end - p) : strlen(p);

                if (len > klen && strncmp(p, key, klen) == 0 && p[klen] == '=') {
                        size_t vlen = len - klen - 1;
                        if (vlen > TEXT_MAX)
                                vlen = TEXT_MAX;
                        memcpy(ret, p + klen + 1, vlen);
                        ret[vlen] = 0;
                        url_decode(ret);
                        return true;
                }
                p = end ? end + 1 : NULL;
        }
        return false;
}

/* Queues an answer; body may be NULL when stream_len bytes of 'x' follow instead. */
static void conn_answer(struct conn *c, int code, const char *location, const char *body, size_t body_len,
                        uint64_t stream_len)
{
        bool no_body = (code >= 100 && code < 200) || code == 204 || code == 304;
        uint64_t clen = body ? body_len : stream_len;
        char head[TEXT_MAX + 512];
        int n;

        if (no_body)
                c->keep_alive = false;
        if (no_body)
                n = snprintf(head, sizeof(head), "HTTP/1.1 %d %s\r\n%s%s%sConnection: close\r\n\r\n", code,
                             reason_of(code), location ? "Location: " : "", location ? location : "",
                             location ? "\r\n" : "");
        else
                n = snprintf(head, sizeof(head),
                             "HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\nContent-Length: %llu\r\n"
                             "%s%s%sConnection: %s\r\n\r\n",
                             code, reason_of(code), (unsigned long long) clen, location ? "Location: " : "",
                             location ? location : "", location ? "\r\n" : "", c->keep_alive ? "keep-alive" : "close");
        if (n < 0 || (size_t) n >= sizeof(head))
                n = snprintf(head, sizeof(head),
                             "HTTP/1.1 500 Internal Server Error\r\n"
                             "Content-Length: 0\r\nConnection: close\r\n\r\n");
        size_t blen = (!no_body && !c->head_only && body) ? body_len : 0;
        c->out = malloc((size_t) n + blen);
        if (!c->out) {
                conn_close(c, true);
                return;
        }
        memcpy(c->out, head, (size_t) n);
        if (blen)
                memcpy(c->out + n, body, blen);
        c->out_len = (size_t) n + blen;
        c->out_off = 0;
        c->stream_left = (!no_body && !c->head_only && !body) ? stream_len : 0;
        c->state = CONN_WRITE;
        conn_watch(c, EPOLLOUT);
}

static void conn_answer_text(struct conn *c, int code, const char *location, const char *text)
{
        conn_answer(c, code, location, text, strlen(text), 0);
}

/* A 200 carrying text, framed as mode says: "chunked" (3-byte chunks with an extension,
 * then a trailer), "eof" (no length: the close ends the body) or "continue" (a 100
 * Continue head first). The connection closes afterwards. */
static void conn_answer_framed(struct conn *c, const char *mode, const char *text)
{
        size_t len = strlen(text), cap = len * 5 + 256, n = 0;
        char *out = malloc(cap);

        if (!out) {
                conn_close(c, true);
                return;
        }
        c->keep_alive = false;
        if (strcmp(mode, "chunked") == 0) {
                n += (size_t) snprintf(out + n, cap - n, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
                for (size_t i = 0; i < len; i += 3) {
                        int k = len - i < 3 ? (int) (len - i) : 3;
                        n += (size_t) snprintf(out + n, cap - n, "%X;ext=1\r\n%.*s\r\n", (unsigned) k, k, text + i);
                }
                n += (size_t) snprintf(out + n, cap - n, "0\r\nX-Trailer: yes\r\n\r\n");
        } else if (strcmp(mode, "eof") == 0) {
                n += (size_t) snprintf(out + n, cap - n, "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n%s", text);
        } else if (strcmp(mode, "continue") == 0) {
                n += (size_t) snprintf(out + n, cap - n,
                                       "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: %zu\r\n"
                                       "Connection: close\r\n\r\n%s",
                                       len, text);
        } else {
                free(out);
                conn_answer_text(c, 400, NULL, "bad framing\n");
                return;
        }
        c->out = out;
        c->out_len = n;
        c->out_off = 0;
        c->stream_left = 0;
        c->state = CONN_WRITE;
        conn_watch(c, EPOLLOUT);
}

static int parse_code(const char *s, const char **ret_end)
{
        char *end;
        long v;

        errno = 0;
        v = strtol(s, &end, 10);
        if (errno || end == s || v < 100 || v > 999)
                return -1;
        if (ret_end)
                *ret_end = end;
        return (int) v;
}

/* Called once the request head is complete: decides what the connection does. */
static void route(struct conn *c)
{
        char method[16], target[HEAD_MAX + 1], text[TEXT_MAX + 1];
        char *path, *query, *line_end, saved;

        n_requests++;
        c->head_len = (size_t) (strstr(c->in, "\r\n\r\n") - c->in) + 4;
        line_end = strstr(c->in, "\r\n");
        /* Look at this request's head only, not at pipelined bytes after it. */
        saved = c->in[c->head_len];
        c->in[c->head_len] = 0;
        c->keep_alive = line_end - c->in >= 8 && strncmp(line_end - 8, "HTTP/1.1", 8) == 0 &&
                        !strcasestr(c->in, "\r\nConnection: close\r\n");
        if (sscanf(c->in, "%15s %16384s", method, target) != 2) {
                c->in[c->head_len] = saved;
                conn_answer_text(c, 400, NULL, "bad request\n");
                return;
        }
        c->in[c->head_len] = saved;
        c->head_only = strcmp(method, "HEAD") == 0;
        path = target;
        /* Absolute-form request targets (via a proxy) keep only the path. */
        if (strncmp(path, "http://", 7) == 0) {
                char *slash = strchr(path + 7, '/');
                path = slash ? slash : (char *) "/";
        }
        query = strchr(path, '?');
        if (query)
                *query++ = 0;
        else
                query = (char *) "";

        if (strncmp(path, "/status/", 8) == 0) {
                int code = parse_code(path + 8, NULL);
                char dflt[32];
                if (code < 0) {
                        conn_answer_text(c, 400, NULL, "bad status code\n");
                        return;
                }
                static char location[TEXT_MAX + 1];
                bool has_location = query_get(query, "location", location); /* may be empty */
                if (!query_get(query, "body", text)) {
                        snprintf(dflt, sizeof(dflt), "code %d\n", code);
                        strcpy(text, dflt);
                }
                conn_answer_text(c, code, has_location ? location : NULL, text);
        } else if (strcmp(path, "/health") == 0 || strcmp(path, "/healthz") == 0) {
                conn_answer_text(c, health_code, NULL, health_body);
        } else if (strcmp(path, "/control/health") == 0) {
                if (query_get(query, "status", text)) {
                        int code = parse_code(text, NULL);
                        if (code < 0) {
                                conn_answer_text(c, 400, NULL, "bad status code\n");
                                return;
                        }
                        health_code = code;
                }
                if (query_get(query, "body", text))
                        strcpy(health_body, text);
                conn_answer_text(c, 200, NULL, "set\n");
        } else if (strncmp(path, "/delay/", 7) == 0) {
                char *end;
                long ms = strtol(path + 7, &end, 10);
                int code = 200;
                if (ms < 0 || end == path + 7 || (*end && *end != '/') ||
                    (*end == '/' && (code = parse_code(end + 1, NULL)) < 0)) {
                        conn_answer_text(c, 400, NULL, "bad delay\n");
                        return;
                }
                c->deadline_ms = now_ms() + ms;
                c->delay_code = code;
                c->state = CONN_DELAY;
        } else if (strcmp(path, "/hang") == 0) {
                c->state = CONN_HANG;
        } else if (strcmp(path, "/close") == 0) {
                conn_close(c, false);
        } else if (strcmp(path, "/reset") == 0) {
                conn_close(c, true);
        } else if (strncmp(path, "/redirect/", 10) == 0) {
                char *end;
                long n = strtol(path + 10, &end, 10);
                char loc[64];
                if (end == path + 10 || *end || n < 0) {
                        conn_answer_text(c, 400, NULL, "bad redirect count\n");
                } else if (query_get(query, "to", text)) {
                        conn_answer_text(c, 302, text, "redirect\n");
                } else if (n == 0) {
                        conn_answer_text(c, 200, NULL, "landed\n");
                } else {
                        snprintf(loc, sizeof(loc), "/redirect/%ld", n - 1);
                        conn_answer_text(c, 302, loc, "redirect\n");
                }
        } else if (strncmp(path, "/framed/", 8) == 0) {
                if (!query_get(query, "body", text))
                        strcpy(text, "framed\n");
                conn_answer_framed(c, path + 8, text);
        } else if (strcmp(path, "/loop") == 0) {
                conn_answer_text(c, 302, "/loop", "loop\n");
        } else if (strncmp(path, "/body/", 6) == 0) {
                char *end;
                unsigned long long n = strtoull(path + 6, &end, 10);
                if (end == path + 6 || *end)
                        conn_answer_text(c, 400, NULL, "bad body size\n");
                else
                        conn_answer(c, 200, NULL, NULL, 0, n);
        } else if (strcmp(path, "/echo") == 0) {
                /* The head without its final empty line. */
                size_t len = strstr(c->in, "\r\n\r\n") - c->in + 2;
                conn_answer(c, 200, NULL, c->in, len, 0);
        } else if (strncmp(path, "/only/", 6) == 0) {
                if (strcmp(path + 6, method) == 0)
                        conn_answer_text(c, 200, NULL, "method ok\n");
                else
                        conn_answer_text(c, 405, NULL, "wrong method\n");
        } else if (strncmp(path, "/absent/", 8) == 0) {
                /* 200 when the request has no header of that name, else 417. */
                char needle[128];
                snprintf(needle, sizeof(needle), "\r\n%.100s:", path + 8);
                saved = c->in[c->head_len];
                c->in[c->head_len] = 0;
                bool present = strcasestr(c->in, needle) != NULL;
                c->in[c->head_len] = saved;
                conn_answer_text(c, present ? 417 : 200, NULL, present ? "present\n" : "absent\n");
        } else if (strcmp(path, "/stats") == 0) {
                /* open includes this connection; max_open is since start or ?reset */
                if (strcmp(query, "reset") == 0)
                        max_open = n_open;
                snprintf(text, sizeof(text), "open=%llu max_open=%llu\n", n_open, max_open);
                conn_answer_text(c, 200, NULL, text);
        } else if (strcmp(path, "/count") == 0) {
                snprintf(text, sizeof(text), "requests=%llu connections=%llu\n", n_requests, n_connections);
                conn_answer_text(c, 200, NULL, text);
        } else {
                conn_answer_text(c, 404, NULL, "not found\n");
        }
}

static void conn_on_read(struct conn *c)
{
        for (;;) {
                char discard[4096];
                char *buf = c->state == CONN_READ ? c->in + c->in_len : discard;
                size_t room = c->state == CONN_READ ? HEAD_MAX - c->in_len : sizeof(discard);
                ssize_t n = recv(c->fd, buf, room, 0);

                if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
                        conn_close(c, false);
                        return;
                }
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return;
                }
                if (c->state != CONN_READ)
                        continue;
                c->in_len += (size_t) n;
                c->in[c->in_len] = 0;
                if (strstr(c->in, "\r\n\r\n")) {
                        route(c);
                        return;
                }
                if (c->in_len >= HEAD_MAX) {
                        c->keep_alive = false;
                        conn_answer_text(c, 431, NULL, "request head too large\n");
                        return;
                }
        }
}

static void conn_on_write(struct conn *c)
{
        for (;;) {
                const char *buf;
                size_t len;
                ssize_t n;

                if (c->out_off < c->out_len) {
                        buf = c->out + c->out_off;
                        len = c->out_len - c->out_off;
                } else if (c->stream_left > 0) {
                        buf = stream_buf;
                        len = c->stream_left < STREAM_CHUNK ? (size_t) c->stream_left : STREAM_CHUNK;
                } else if (c->keep_alive) {
                        /* Done: wait for the next request on this connection, keeping
                         * any pipelined bytes already read. */
                        memmove(c->in, c->in + c->head_len, c->in_len - c->head_len);
                        c->in_len -= c->head_len;
                        c->in[c->in_len] = 0;
                        free(c->out);
                        c->out = NULL;
                        c->out_len = c->out_off = 0;
                        c->state = CONN_READ;
                        conn_watch(c, EPOLLIN);
                        if (strstr(c->in, "\r\n\r\n"))
                                route(c);
                        return;
                } else {
                        /* Done; nothing is left unread, so close() sends a FIN. */
                        conn_close(c, false);
                        return;
                }
                n = send(c->fd, buf, len, MSG_NOSIGNAL);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        if (errno != EAGAIN)
                                conn_close(c, false);
                        return;
                }
                if (c->out_off < c->out_len)
                        c->out_off += (size_t) n;
                else
                        c->stream_left -= (uint64_t) n;
        }
}

static void on_accept(int lfd)
{
        for (;;) {
                int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                struct conn *c;
                struct epoll_event ev;

                if (fd < 0)
                        return;
                c = calloc(1, sizeof(*c));
                if (!c) {
                        (void) close(fd);
                        continue;
                }
                n_connections++;
                if (++n_open > max_open)
                        max_open = n_open;
                c->fd = fd;
                c->state = CONN_READ;
                ev.events = EPOLLIN;
                ev.data.ptr = c;
                if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
                        (void) close(fd);
                        free(c);
                        continue;
                }
                c->next = conns;
                conns = c;
        }
}

static int next_timeout(void)
{
        int64_t now = now_ms(), best = -1;

        for (struct conn *c = conns; c; c = c->next)
                if (c->state == CONN_DELAY) {
                        int64_t left = c->deadline_ms > now ? c->deadline_ms - now : 0;
                        if (best < 0 || left < best)
                                best = left;
                }
        return best > 1000000 ? 1000000 : (int) best;
}

static void fire_timers(void)
{
        int64_t now = now_ms();
        bool again = true;

        /* conn_answer may close a connection (ENOMEM): rescan after each answer. */
        while (again) {
                again = false;
                for (struct conn *c = conns; c; c = c->next)
                        if (c->state == CONN_DELAY && c->deadline_ms <= now) {
                                char body[32];
                                snprintf(body, sizeof(body), "delayed %d\n", c->delay_code);
                                conn_answer_text(c, c->delay_code, NULL, body);
                                again = true;
                                break;
                        }
        }
}

static void usage(void)
{
        fprintf(stderr, "usage: target [--port N] [--addr 127.0.0.1 | ::1]\n");
        exit(2);
}

int main(int argc, char **argv)
{
        const char *addr = "127.0.0.1";
        int port = 0, lfd, sfd, one = 1;
        union {
                struct sockaddr sa;
                struct sockaddr_in in4;
                struct sockaddr_in6 in6;
        } sa = { 0 };
        socklen_t salen;
        struct epoll_event ev;
        sigset_t mask;
        bool running = true;

        for (int i = 1; i < argc; i++) {
                if (strcmp(argv[i], "--port") == 0 && i + 1 < argc)
                        port = atoi(argv[++i]);
                else if (strcmp(argv[i], "--addr") == 0 && i + 1 < argc)
                        addr = argv[++i];
                else
                        usage();
        }
        memset(stream_buf, 'x', sizeof(stream_buf));
        (void) signal(SIGPIPE, SIG_IGN);
        sigemptyset(&mask);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGINT);
        (void) sigprocmask(SIG_BLOCK, &mask, NULL);
        sfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);

        if (inet_pton(AF_INET, addr, &sa.in4.sin_addr) == 1) {
                sa.in4.sin_family = AF_INET;
                sa.in4.sin_port = htons((uint16_t) port);
                salen = sizeof(sa.in4);
        } else if (inet_pton(AF_INET6, addr, &sa.in6.sin6_addr) == 1) {
                sa.in6.sin6_family = AF_INET6;
                sa.in6.sin6_port = htons((uint16_t) port);
                salen = sizeof(sa.in6);
        } else
                usage();
        lfd = socket(sa.sa.sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (lfd < 0 || sfd < 0)
                return perror("target: socket"), 1;
        (void) setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (bind(lfd, &sa.sa, salen) < 0 || listen(lfd, 1024) < 0 || getsockname(lfd, &sa.sa, &salen) < 0)
                return perror("target: bind"), 1;
        epfd = epoll_create1(EPOLL_CLOEXEC);
        if (epfd < 0)
                return perror("target: epoll"), 1;
        ev.events = EPOLLIN;
        ev.data.ptr = &lfd;
        (void) epoll_ctl(epfd, EPOLL_CTL_ADD, lfd, &ev);
        ev.data.ptr = &sfd;
        (void) epoll_ctl(epfd, EPOLL_CTL_ADD, sfd, &ev);
        printf("PORT %d\n", ntohs(sa.sa.sa_family == AF_INET6 ? sa.in6.sin6_port : sa.in4.sin_port));
        fflush(stdout);

        while (running) {
                struct epoll_event evs[64];
                int n = epoll_wait(epfd, evs, 64, next_timeout());

                if (n < 0 && errno != EINTR)
                        return perror("target: epoll_wait"), 1;
                for (int i = 0; i < n; i++) {
                        void *p = evs[i].data.ptr;
                        if (p == &lfd) {
                                on_accept(lfd);
                        } else if (p == &sfd) {
                                running = false;
                        } else {
                                struct conn *c = p;
                                /* A connection closed earlier in this batch is gone:
                                 * only step connections still listed. */
                                bool live = false;
                                for (struct conn *q = conns; q; q = q->next)
                                        if (q == c) {
                                                live = true;
                                                break;
                                        }
                                if (!live)
                                        continue;
                                if (c->state == CONN_WRITE)
                                        conn_on_write(c);
                                else
                                        conn_on_read(c);
                        }
                }
                fire_timers();
        }
        while (conns)
                conn_close(conns, false);
        (void) close(lfd);
        (void) close(sfd);
        (void) close(epfd);
        return 0;
}
