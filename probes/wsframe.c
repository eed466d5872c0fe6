/* RFC 6455 handshake and framing helpers (see include/wsframe.h).
 *
 * Everything here is pure apart from getrandom(2): the probe (probes/websocket.c)
 * owns the socket and calls these on its buffers, so each rule can be unit-tested on
 * bytes. SHA-1 and base64 come from OpenSSL's libcrypto (linked already for libcurl);
 * only the framing is written here. The decoder is strict where a probe must be
 * (RFC 6455 5.2, 5.5): no RSV bits without extensions, no fragmented or long control
 * frames, minimal length encodings, no masked frames from a server, and a caller-given
 * payload cap, so that hostile input can never make the probe buffer without bound. */
#include <errno.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>

#include "bounds.h"
#include "httpresp.h"
#include "wsframe.h"

#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#define WS_KEY_MAX 64 /* longest key wsframe_accept takes (ours are 24 bytes) */

int wsframe_random(void *buf, size_t n)
{
        uint8_t *p = buf;

        while (n > 0) {
                ssize_t k = getrandom(p, n, GRND_NONBLOCK);

                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        return errno > 0 ? -errno : -EIO;
                }
                p += k;
                n -= (size_t) k;
        }
        return 0;
}

int wsframe_key_new(char ret[WSFRAME_KEY_SIZE])
{
        uint8_t nonce[16];
        int r;

        r = wsframe_random(nonce, sizeof(nonce));
        if (r < 0)
                return r;
        /* EVP_EncodeBlock writes 4 * ceil(16 / 3) = 24 characters and a NUL */
        (void) EVP_EncodeBlock((unsigned char *) ret, nonce, sizeof(nonce));
        return 0;
}

int wsframe_accept(const char *key, char ret[WSFRAME_ACCEPT_SIZE])
{
        char buf[WS_KEY_MAX + sizeof(WS_GUID)];
        unsigned char digest[SHA_DIGEST_LENGTH];
        size_t klen = strlen(key);

        if (klen > WS_KEY_MAX)
                return -EINVAL;
        memcpy(buf, key, klen);
        memcpy(buf + klen, WS_GUID, sizeof(WS_GUID) - 1);
        if (!SHA1((const unsigned char *) buf, klen + sizeof(WS_GUID) - 1, digest))
                return -EIO;
        (void) EVP_EncodeBlock((unsigned char *) ret, digest, sizeof(digest));
        return 0;
}

int wsframe_encode(uint8_t opcode, const void *payload, size_t len, const uint8_t mask[4], uint8_t *out,
                   size_t out_size, size_t *ret_len)
{
        size_t h = 2;

        if (opcode > 0xF || ((opcode & 0x8) && len > WSFRAME_CONTROL_MAX))
                return -EINVAL;
        if (len > 0xFFFF)
                h += 8;
        else if (len > 125)
                h += 2;
        h += 4;
        if (out_size < h || out_size - h < len)
                return -ENOBUFS;

        out[0] = (uint8_t) (0x80 | opcode); /* FIN: probed never fragments */
        if (len > 0xFFFF) {
                out[1] = 0x80 | 127;
                for (int i = 0; i < 8; i++)
                        out[2 + i] = (uint8_t) ((uint64_t) len >> (56 - 8 * i));
        } else if (len > 125) {
                out[1] = 0x80 | 126;
                out[2] = (uint8_t) (len >> 8);
                out[3] = (uint8_t) len;
        } else
                out[1] = (uint8_t) (0x80 | len);
        memcpy(out + h - 4, mask, 4);
        if (len > 0)
                memcpy(out + h, payload, len);
        wsframe_mask(out + h, len, mask, 0);
        *ret_len = h + len;
        return 0;
}

static int decode_fail(const char **why, const char *msg, int r)
{
        if (why)
                *why = msg;
        return r;
}

int wsframe_decode(const uint8_t *buf, size_t len, bool expect_masked, uint64_t max_payload, struct wsframe *ret,
                   const char **why)
{
        struct wsframe f = { 0 };
        uint8_t op;
        size_t h = 2;

        if (len < 2)
                return 0;
        op = buf[0] & 0x0F;
        if (buf[0] & 0x70)
                return decode_fail(why, "reserved bits set", -EPROTO);
        if (!(op <= WSFRAME_BINARY || (op >= WSFRAME_CLOSE && op <= WSFRAME_PONG)))
                return decode_fail(why, "unknown opcode", -EPROTO);
        f.fin = buf[0] & 0x80;
        f.opcode = op;
        f.masked = buf[1] & 0x80;
        if (f.masked != expect_masked)
                return decode_fail(why, expect_masked ? "unmasked client frame" : "masked server frame", -EPROTO);
        f.payload_len = buf[1] & 0x7F;
        if (f.payload_len == 126) {
                if (len < 4)
                        return 0;
                f.payload_len = (uint64_t) buf[2] << 8 | buf[3];
                if (f.payload_len < 126)
                        return decode_fail(why, "non-minimal length", -EPROTO);
                h = 4;
        } else if (f.payload_len == 127) {
                if (len < 10)
                        return 0;
                if (buf[2] & 0x80)
                        return decode_fail(why, "64-bit length with the top bit set", -EPROTO);
                f.payload_len = 0;
                for (int i = 0; i < 8; i++)
                        f.payload_len = f.payload_len << 8 | buf[2 + i];
                if (f.payload_len <= 0xFFFF)
                        return decode_fail(why, "non-minimal length", -EPROTO);
                h = 10;
        }
        if (op & 0x8) {
                if (!f.fin)
                        return decode_fail(why, "fragmented control frame", -EPROTO);
                if (f.payload_len > WSFRAME_CONTROL_MAX)
                        return decode_fail(why, "control frame longer than 125 bytes", -EPROTO);
        }
        if (f.payload_len > max_payload)
                return decode_fail(why, "frame too large", -EMSGSIZE);
        if (f.masked) {
                if (len < h + 4)
                        return 0;
                memcpy(f.mask, buf + h, 4);
                h += 4;
        }
        f.header_len = h;
        *ret = f;
        return 1;
}

void wsframe_mask(uint8_t *payload, size_t n, const uint8_t mask[4], uint64_t offset)
{
        for (size_t i = 0; i < n; i++)
                payload[i] ^= mask[(offset + i) & 3];
}

/* Does the "Name: value\r\n" block extra set header name? */
static bool extra_has(const char *extra, const char *name)
{
        size_t n = strlen(name);

        for (const char *p = extra; p && *p;) {
                if (strncasecmp(p, name, n) == 0 && p[n] == ':')
                        return true;
                p = strstr(p, "\r\n");
                if (p)
                        p += 2;
        }
        return false;
}

int wsframe_request(const char *target, const char *host, const char *key, const char *subprotocol, const char *extra,
                    char **ret)
{
        bool own_host = !extra_has(extra, "Host"), own_ua = !extra_has(extra, "User-Agent");
        char *s = NULL;

        if (asprintf(&s,
                     "GET %s HTTP/1.1\r\n"
                     "%s%s%s"
                     "Upgrade: websocket\r\n"
                     "Connection: Upgrade\r\n"
                     "Sec-WebSocket-Key: %s\r\n"
                     "Sec-WebSocket-Version: 13\r\n"
                     "%s%s%s"
                     "%s"
                     "%s"
                     "\r\n",
                     target, own_host ? "Host: " : "", own_host ? host : "", own_host ? "\r\n" : "", key,
                     subprotocol ? "Sec-WebSocket-Protocol: " : "", subprotocol ? subprotocol : "",
                     subprotocol ? "\r\n" : "", own_ua ? "User-Agent: probed/" PROBED_VERSION "\r\n" : "",
                     extra ? extra : "") < 0)
                return -ENOMEM;
        *ret = s;
        return 0;
}

size_t wsframe_response_end(const char *buf, size_t len)
{
        const char *p = memmem(buf, len, "\r\n\r\n", 4);

        return p ? (size_t) (p - buf) + 4 : 0;
}

/* Copies at most 40 bytes of a server-controlled value, control bytes replaced, so it
 * can go into last_error. */
static void printable(char *dst, size_t n, const char *src, size_t len)
{
        size_t i;

        if (len > 40)
                len = 40;
        for (i = 0; i < len && i + 1 < n; i++)
                dst[i] = (src[i] >= 0x20 && src[i] < 0x7F) ? src[i] : '?';
        dst[i] = '\0';
}

/* Is token (case-insensitive) in the comma-separated list v[0..len)? */
static bool list_has_token(const char *v, size_t len, const char *token)
{
        size_t tlen = strlen(token);
        size_t i = 0;

        while (i < len) {
                size_t s, e;

                while (i < len && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
                        i++;
                s = i;
                while (i < len && v[i] != ',')
                        i++;
                e = i;
                while (e > s && (v[e - 1] == ' ' || v[e - 1] == '\t'))
                        e--;
                if (e - s == tlen && strncasecmp(v + s, token, tlen) == 0)
                        return true;
        }
        return false;
}

struct head_value {
        const char *v;
        size_t len;
        unsigned count;
};

/* The response headers the handshake looks at. */
struct handshake_heads {
        struct head_value upgrade, accept, protocol, extensions;
        bool upgrade_ok, connection_ok;
};

/* Collects the headers of the lines after the status line, p[..end), up to the blank line. */
static void handshake_scan(const char *p, const char *end, struct handshake_heads *h)
{
        for (const char *eol; p < end; p = eol + 2) {
                const char *v;
                size_t nlen, vlen;
                struct head_value *hv = NULL;

                eol = memmem(p, (size_t) (end - p), "\r\n", 2);
                if (!eol || eol == p)
                        break;
                if (!http_header_split(p, (size_t) (eol - p), &nlen, &v, &vlen))
                        continue;
#define NAME_IS(s) (nlen == sizeof(s) - 1 && strncasecmp(p, s, sizeof(s) - 1) == 0)
                if (NAME_IS("Upgrade")) {
                        hv = &h->upgrade;
                        h->upgrade_ok = h->upgrade_ok || list_has_token(v, vlen, "websocket");
                } else if (NAME_IS("Connection"))
                        h->connection_ok = h->connection_ok || list_has_token(v, vlen, "upgrade");
                else if (NAME_IS("Sec-WebSocket-Accept"))
                        hv = &h->accept;
                else if (NAME_IS("Sec-WebSocket-Protocol"))
                        hv = &h->protocol;
                else if (NAME_IS("Sec-WebSocket-Extensions"))
                        hv = &h->extensions;
#undef NAME_IS
                if (hv) {
                        hv->v = v;
                        hv->len = vlen;
                        hv->count++;
                }
        }
}

/* The subprotocol the server chose against the one asked for (NULL: none). 0, or
 * -EPROTO with the reason. */
static int handshake_subprotocol(const struct head_value *protocol, const char *subprotocol, char *reason, size_t n)
{
        char shown[48], asked[48];

        if (subprotocol) {
                printable(asked, sizeof(asked), subprotocol, strlen(subprotocol));
                if (protocol->count == 0) {
                        snprintf(reason, n, "handshake: no subprotocol (asked \"%s\")", asked);
                        return -EPROTO;
                }
                if (protocol->count > 1 || protocol->len != strlen(subprotocol) ||
                    memcmp(protocol->v, subprotocol, protocol->len) != 0) {
                        printable(shown, sizeof(shown), protocol->v, protocol->len);
                        snprintf(reason, n, "handshake: subprotocol \"%s\" (asked \"%s\")", shown, asked);
                        return -EPROTO;
                }
        } else if (protocol->count > 0) {
                printable(shown, sizeof(shown), protocol->v, protocol->len);
                snprintf(reason, n, "handshake: unrequested subprotocol \"%s\"", shown);
                return -EPROTO;
        }
        return 0;
}

int wsframe_response_check(const char *buf, size_t len, const char *key, const char *subprotocol, int *ret_status,
                           char *reason, size_t n)
{
        struct handshake_heads h = { 0 };
        char expected[WSFRAME_ACCEPT_SIZE], shown[48];
        const char *end = buf + len, *eol;
        int status;

        *ret_status = 0;
        /* status line: HTTP/1.x SP 3DIGIT */
        eol = memmem(buf, len, "\r\n", 2);
        if (!eol || (status = http_status_line(buf, (size_t) (eol - buf))) < 0) {
                snprintf(reason, n, "handshake: malformed status line");
                return -EPROTO;
        }
        *ret_status = status;
        if (status != 101) {
                snprintf(reason, n, "handshake: status %d", status);
                return -EPROTO;
        }
        handshake_scan(eol + 2, end, &h);
        if (!h.upgrade_ok) {
                snprintf(reason, n, "handshake: missing Upgrade: websocket");
                return -EPROTO;
        }
        if (!h.connection_ok) {
                snprintf(reason, n, "handshake: missing Connection: Upgrade");
                return -EPROTO;
        }
        if (h.accept.count == 0) {
                snprintf(reason, n, "handshake: missing Sec-WebSocket-Accept");
                return -EPROTO;
        }
        if (wsframe_accept(key, expected) < 0 || h.accept.count > 1 || h.accept.len != strlen(expected) ||
            memcmp(h.accept.v, expected, h.accept.len) != 0) {
                snprintf(reason, n, "bad Sec-WebSocket-Accept");
                return -EPROTO;
        }
        if (handshake_subprotocol(&h.protocol, subprotocol, reason, n) < 0)
                return -EPROTO;
        if (h.extensions.count > 0 && h.extensions.len > 0) {
                printable(shown, sizeof(shown), h.extensions.v, h.extensions.len);
                snprintf(reason, n, "handshake: unrequested extension \"%s\"", shown);
                return -EPROTO;
        }
        if (n > 0)
                reason[0] = '\0';
        return 0;
}
