/* hostile: a TCP server that misbehaves on purpose, for tests/integration/test_hostile.py.
 *
 * Design: the main thread accepts; every connection gets its own detached thread with
 * blocking I/O, because each mode is a straight-line script (read the request head,
 * then write something bad) and a handful of connections is all a test opens. Writes
 * that fail (the probe gave up and closed) end the thread quietly: SIGPIPE is ignored.
 * Nothing is allocated per byte sent: streams come from a constant buffer.
 *
 * CLI: hostile [--port N] [--addr A] MODE; prints "PORT <n>\n" on stdout once bound.
 * Modes (each after reading the request head, at most HEAD_MAX bytes):
 *   body-forever     200, chunked body that never ends, written as fast as it drains
 *   body-huge        200 with Content-Length: 10^15, 'x' written as fast as it drains
 *   headers-forever  "HTTP/1.1 200 OK" then header lines that never end, fast
 *   trickle          a valid 200 "ok" response, one byte per second
 *   reset            200 head and half the body, then RST (SO_LINGER 0)
 *   ws-garbage       a correct 101 WebSocket handshake answer, then random bytes forever
 *   ws-huge-frame    a correct 101, then a binary frame header claiming 2^62 bytes and
 *                    'x' forever
 *   ws-101-trickle   a correct 101 sent one byte per second
 *   ws-stream        a correct 101, then binary frames of 16 KiB forever, as fast as
 *                    they drain (each frame ends: only max_skip stops the reader)
 *   ws-data-pong     a correct 101; once the client's ping came, 48 KiB of binary frames
 *                    (3 x 16 KiB, 49,164 bytes with their headers), then the pong
 *   silent           reads the request and never answers (keeps the connection)
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define HEAD_MAX 16384     /* request head bytes read before misbehaving */
#define STREAM_CHUNK 16384 /* bytes per write when flooding */
#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

enum mode {
        MODE_BODY_FOREVER,
        MODE_BODY_HUGE,
        MODE_HEADERS_FOREVER,
        MODE_TRICKLE,
        MODE_RESET,
        MODE_WS_GARBAGE,
        MODE_WS_HUGE_FRAME,
        MODE_WS_101_TRICKLE,
        MODE_WS_STREAM,
        MODE_WS_DATA_PONG,
        MODE_SILENT,
        _MODE_MAX,
};

static const char *const mode_names[_MODE_MAX] = {
        [MODE_BODY_FOREVER] = "body-forever",
        [MODE_BODY_HUGE] = "body-huge",
        [MODE_HEADERS_FOREVER] = "headers-forever",
        [MODE_TRICKLE] = "trickle",
        [MODE_RESET] = "reset",
        [MODE_WS_GARBAGE] = "ws-garbage",
        [MODE_WS_HUGE_FRAME] = "ws-huge-frame",
        [MODE_WS_101_TRICKLE] = "ws-101-trickle",
        [MODE_WS_STREAM] = "ws-stream",
        [MODE_WS_DATA_PONG] = "ws-data-pong",
        [MODE_SILENT] = "silent",
};

static enum mode mode;
static char flood[STREAM_CHUNK];

struct conn {
        int fd;
        char head[HEAD_MAX + 1];
        size_t head_len;
};

static int send_all(int fd, const void *buf, size_t n)
{
        const char *p = buf;

        while (n > 0) {
                ssize_t w = send(fd, p, n, MSG_NOSIGNAL);

                if (w < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                p += w;
                n -= (size_t) w;
        }
        return 0;
}

static void sleep_ms(long ms)
{
        struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L };

        while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
                ;
}

/* Reads until the end of the request head, HEAD_MAX, or EOF. 0, or -1 on EOF/error. */
static int read_head(struct conn *c)
{
        while (c->head_len < HEAD_MAX) {
                ssize_t r = recv(c->fd, c->head + c->head_len, HEAD_MAX - c->head_len, 0);

                if (r < 0 && errno == EINTR)
                        continue;
                if (r <= 0)
                        return -1;
                c->head_len += (size_t) r;
                c->head[c->head_len] = '\0';
                if (strstr(c->head, "\r\n\r\n"))
                        return 0;
        }
        return 0;
}

/* Sec-WebSocket-Accept for the request's Sec-WebSocket-Key (empty key if none). */
static void ws_accept(const char *head, char out[64])
{
        unsigned char sha[EVP_MAX_MD_SIZE];
        unsigned int sha_len = 0;
        char key[128] = "", buf[256];
        const char *p = head;

        while ((p = strstr(p, "\r\n"))) {
                p += 2;
                if (strncasecmp(p, "Sec-WebSocket-Key:", 18) == 0) {
                        size_t n = 0;

                        p += 18;
                        while (*p == ' ' || *p == '\t')
                                p++;
                        while (p[n] && p[n] != '\r' && p[n] != ' ' && n < sizeof(key) - 1)
                                n++;
                        memcpy(key, p, n);
                        key[n] = '\0';
                        break;
                }
        }
        (void) snprintf(buf, sizeof(buf), "%s%s", key, WS_GUID);
        if (EVP_Digest(buf, strlen(buf), sha, &sha_len, EVP_sha1(), NULL) != 1)
                sha_len = 0;
        (void) EVP_EncodeBlock((unsigned char *) out, sha, (int) sha_len);
}

static int ws_handshake_text(const struct conn *c, char *out, size_t n)
{
        char accept[64];

        ws_accept(c->head, accept);
        return snprintf(out, n,
                        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                        "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n",
                        accept);
}

static int trickle(int fd, const char *s, size_t n)
{
        for (size_t i = 0; i < n; i++) {
                if (send_all(fd, s + i, 1) < 0)
                        return -1;
                if (i + 1 < n)
                        sleep_ms(1000);
        }
        return 0;
}

/* Reads exactly n bytes. 0, or -1 on EOF/error. */
static int recv_all(int fd, void *buf, size_t n)
{
        char *p = buf;

        while (n > 0) {
                ssize_t r = recv(fd, p, n, 0);

                if (r < 0 && errno == EINTR)
                        continue;
                if (r <= 0)
                        return -1;
                p += r;
                n -= (size_t) r;
        }
        return 0;
}

/* Reads one masked client frame with a payload of at most 125 bytes (the probe's ping),
 * unmasked into payload. Its length, or -1. */
static int ws_read_small_frame(int fd, unsigned char payload[125])
{
        unsigned char h[2], mask[4];
        size_t len;

        if (recv_all(fd, h, 2) < 0 || (h[1] & 0x7F) > 125 || recv_all(fd, mask, 4) < 0)
                return -1;
        len = h[1] & 0x7F;
        if (recv_all(fd, payload, len) < 0)
                return -1;
        for (size_t i = 0; i < len; i++)
                payload[i] ^= mask[i % 4];
        return (int) len;
}

static void run_mode(struct conn *c)
{
        /* FIN + binary, 126 = 16-bit length, 16384, unmasked (server frame) */
        static const unsigned char frame16k[] = { 0x82, 126, STREAM_CHUNK >> 8, STREAM_CHUNK & 0xFF };
        char buf[1024];
        int n;

        switch (mode) {
        case MODE_BODY_FOREVER: {
                static const char head[] = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
                char size[16];

                if (send_all(c->fd, head, sizeof(head) - 1) < 0)
                        return;
                n = snprintf(size, sizeof(size), "%x\r\n", STREAM_CHUNK);
                for (;;)
                        if (send_all(c->fd, size, (size_t) n) < 0 || send_all(c->fd, flood, sizeof(flood)) < 0 ||
                            send_all(c->fd, "\r\n", 2) < 0)
                                return;
        }
        case MODE_BODY_HUGE: {
                static const char head[] = "HTTP/1.1 200 OK\r\nContent-Length: 1000000000000000\r\n\r\n";

                if (send_all(c->fd, head, sizeof(head) - 1) < 0)
                        return;
                for (;;)
                        if (send_all(c->fd, flood, sizeof(flood)) < 0)
                                return;
        }
        case MODE_HEADERS_FOREVER: {
                static const char head[] = "HTTP/1.1 200 OK\r\n";
                unsigned long i = 0;

                if (send_all(c->fd, head, sizeof(head) - 1) < 0)
                        return;
                for (;; i++) {
                        n = snprintf(buf, sizeof(buf), "X-Pad-%lu: %.900s\r\n", i, flood);
                        if (send_all(c->fd, buf, (size_t) n) < 0)
                                return;
                }
        }
        case MODE_TRICKLE: {
                static const char resp[] = "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n";

                (void) trickle(c->fd, resp, sizeof(resp) - 1);
                return;
        }
        case MODE_RESET: {
                static const char resp[] = "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nhalf of the bo";
                struct linger lg = { .l_onoff = 1, .l_linger = 0 };

                (void) send_all(c->fd, resp, sizeof(resp) - 1);
                /* Let the partial answer reach the peer before the RST. */
                sleep_ms(50);
                (void) setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
                return;
        }
        case MODE_WS_GARBAGE: {
                char rnd[4096];

                n = ws_handshake_text(c, buf, sizeof(buf));
                if (send_all(c->fd, buf, (size_t) n) < 0)
                        return;
                for (;;) {
                        if (getrandom(rnd, sizeof(rnd), 0) < 0)
                                memset(rnd, 0xFF, sizeof(rnd));
                        if (send_all(c->fd, rnd, sizeof(rnd)) < 0)
                                return;
                }
        }
        case MODE_WS_HUGE_FRAME: {
                /* FIN + binary, 127 = 64-bit length, 2^62, unmasked (server frame). */
                static const unsigned char frame[] = { 0x82, 0x7F, 0x40, 0, 0, 0, 0, 0, 0, 0 };

                n = ws_handshake_text(c, buf, sizeof(buf));
                if (send_all(c->fd, buf, (size_t) n) < 0 || send_all(c->fd, frame, sizeof(frame)) < 0)
                        return;
                for (;;)
                        if (send_all(c->fd, flood, sizeof(flood)) < 0)
                                return;
        }
        case MODE_WS_101_TRICKLE:
                n = ws_handshake_text(c, buf, sizeof(buf));
                (void) trickle(c->fd, buf, (size_t) n);
                return;
        case MODE_WS_STREAM:
                n = ws_handshake_text(c, buf, sizeof(buf));
                if (send_all(c->fd, buf, (size_t) n) < 0)
                        return;
                for (;;)
                        if (send_all(c->fd, frame16k, sizeof(frame16k)) < 0 || send_all(c->fd, flood, sizeof(flood)) < 0)
                                return;
        case MODE_WS_DATA_PONG: {
                unsigned char ping[125], pong[2 + 125];
                int len;

                n = ws_handshake_text(c, buf, sizeof(buf));
                if (send_all(c->fd, buf, (size_t) n) < 0 || (len = ws_read_small_frame(c->fd, ping)) < 0)
                        return;
                for (int i = 0; i < 3; i++)
                        if (send_all(c->fd, frame16k, sizeof(frame16k)) < 0 || send_all(c->fd, flood, sizeof(flood)) < 0)
                                return;
                pong[0] = 0x8A; /* FIN + pong */
                pong[1] = (unsigned char) len;
                memcpy(pong + 2, ping, (size_t) len);
                if (send_all(c->fd, pong, 2 + (size_t) len) < 0)
                        return;
                while (recv(c->fd, buf, sizeof(buf), 0) > 0) /* until the probe closes */
                        ;
                return;
        }
        case MODE_SILENT:
                while (recv(c->fd, buf, sizeof(buf), 0) > 0)
                        ;
                return;
        case _MODE_MAX:
                break;
        }
}

static void *conn_main(void *arg)
{
        struct conn *c = arg;

        if (read_head(c) == 0)
                run_mode(c);
        (void) close(c->fd);
        free(c);
        return NULL;
}

static int usage(void)
{
        fprintf(stderr, "usage: hostile [--port N] [--addr A] MODE\nmodes:");
        for (int i = 0; i < _MODE_MAX; i++)
                fprintf(stderr, " %s", mode_names[i]);
        fprintf(stderr, "\n");
        return 2;
}

int main(int argc, char **argv)
{
        const char *addr = "127.0.0.1", *mode_name = NULL;
        struct sockaddr_in sa = { .sin_family = AF_INET };
        socklen_t sl = sizeof(sa);
        int port = 0, one = 1, lfd, i;

        for (i = 1; i < argc; i++) {
                if (strcmp(argv[i], "--port") == 0 && i + 1 < argc)
                        port = atoi(argv[++i]);
                else if (strcmp(argv[i], "--addr") == 0 && i + 1 < argc)
                        addr = argv[++i];
                else if (!mode_name && argv[i][0] != '-')
                        mode_name = argv[i];
                else
                        return usage();
        }
        if (!mode_name)
                return usage();
        for (i = 0; i < _MODE_MAX; i++)
                if (strcmp(mode_name, mode_names[i]) == 0)
                        break;
        if (i == _MODE_MAX)
                return usage();
        mode = (enum mode) i;
        memset(flood, 'x', sizeof(flood));
        (void) signal(SIGPIPE, SIG_IGN);

        lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (lfd < 0 || setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0) {
                perror("hostile: socket");
                return 1;
        }
        sa.sin_port = htons((uint16_t) port);
        if (inet_pton(AF_INET, addr, &sa.sin_addr) != 1) {
                fprintf(stderr, "hostile: bad address %s\n", addr);
                return 2;
        }
        if (bind(lfd, (struct sockaddr *) &sa, sizeof(sa)) < 0 || listen(lfd, 128) < 0 ||
            getsockname(lfd, (struct sockaddr *) &sa, &sl) < 0) {
                perror("hostile: bind");
                return 1;
        }
        printf("PORT %d\n", ntohs(sa.sin_port));
        (void) fflush(stdout);

        for (;;) {
                struct conn *c;
                pthread_attr_t attr;
                pthread_t t;
                int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);

                if (fd < 0) {
                        if (errno == EINTR || errno == ECONNABORTED || errno == EMFILE || errno == ENFILE)
                                continue;
                        perror("hostile: accept");
                        return 1;
                }
                c = calloc(1, sizeof(*c));
                if (!c) {
                        (void) close(fd);
                        continue;
                }
                c->fd = fd;
                (void) pthread_attr_init(&attr);
                (void) pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
                (void) pthread_attr_setstacksize(&attr, 128 * 1024);
                if (pthread_create(&t, &attr, conn_main, c) != 0) {
                        (void) close(fd);
                        free(c);
                }
                (void) pthread_attr_destroy(&attr);
        }
}
