/* RFC 6455 pieces the websocket probe needs, pure and unit-testable (no I/O except
 * getrandom): the opening handshake (key, accept value, request text, response check)
 * and framing (client frames are always masked; server frames never are).
 * Used by probes/websocket.c; tested by tests/unit/check_wsframe.c. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define WSFRAME_KEY_SIZE 25     /* base64 of 16 bytes + NUL */
#define WSFRAME_ACCEPT_SIZE 29  /* base64 of a 20-byte SHA-1 + NUL */
#define WSFRAME_CONTROL_MAX 125 /* control frame payload bytes (RFC 6455 5.5) */
#define WSFRAME_HEADER_MAX 14   /* 2 + 8 (64-bit length) + 4 (mask) */

enum wsframe_opcode {
        WSFRAME_CONTINUATION = 0x0,
        WSFRAME_TEXT = 0x1,
        WSFRAME_BINARY = 0x2,
        WSFRAME_CLOSE = 0x8,
        WSFRAME_PING = 0x9,
        WSFRAME_PONG = 0xA,
};

/* A decoded frame header. The payload starts at buf + header_len. */
struct wsframe {
        bool fin;
        uint8_t opcode; /* enum wsframe_opcode */
        bool masked;
        uint8_t mask[4]; /* valid when masked */
        uint64_t payload_len;
        size_t header_len;
};

/* n bytes from getrandom(2), never blocking: 0, or -EAGAIN before the kernel's pool is
 * initialized, or another negative errno. */
int wsframe_random(void *buf, size_t n);

/* A fresh Sec-WebSocket-Key (base64 of 16 random bytes) into ret. 0 or negative errno. */
int wsframe_key_new(char ret[WSFRAME_KEY_SIZE]);

/* The Sec-WebSocket-Accept the server must answer for key:
 * base64(SHA-1(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11")). 0, or -EINVAL when key
 * is too long (more than 64 bytes), or -EIO when libcrypto fails. */
int wsframe_accept(const char *key, char ret[WSFRAME_ACCEPT_SIZE]);

/* Encodes one final (FIN) client frame, masked with mask, into out (out_size bytes):
 * header then payload XOR mask. Control frames (opcode >= 0x8) carry at most
 * WSFRAME_CONTROL_MAX bytes (-EINVAL otherwise). -ENOBUFS when out is too small.
 * On success *ret_len is the frame length. */
int wsframe_encode(uint8_t opcode, const void *payload, size_t len, const uint8_t mask[4], uint8_t *out,
                   size_t out_size, size_t *ret_len);

/* Parses the frame header at buf (len bytes available). Returns 1 with *ret filled when a
 * whole header is there, 0 when more bytes are needed (ret untouched), or:
 *   -EPROTO     RSV bits set, unknown opcode, a control frame that is fragmented or
 *               longer than 125 bytes, a 64-bit length with its top bit set, a
 *               non-minimal length encoding, or a mask bit that differs from
 *               expect_masked (servers never mask, clients always do);
 *   -EMSGSIZE   payload_len > max_payload.
 * "why" (may be NULL) receives a static description on error. */
int wsframe_decode(const uint8_t *buf, size_t len, bool expect_masked, uint64_t max_payload, struct wsframe *ret,
                   const char **why);

/* XORs n bytes of payload in place with mask, as if they started at payload offset
 * offset (so a payload can be unmasked in pieces). */
void wsframe_mask(uint8_t *payload, size_t n, const uint8_t mask[4], uint64_t offset);

/* The opening handshake request into a malloc'd string (*ret, caller frees):
 *   GET <target> HTTP/1.1, Host (unless extra has one), Upgrade, Connection,
 *   Sec-WebSocket-Key, Sec-WebSocket-Version: 13, Sec-WebSocket-Protocol when
 *   subprotocol is non-NULL, User-Agent probed/<version> (unless extra has one), then
 *   extra ("Name: value\r\n" lines, may be NULL) and the empty line.
 * 0 or -ENOMEM. */
int wsframe_request(const char *target, const char *host, const char *key, const char *subprotocol, const char *extra,
                    char **ret);

/* Looks for the end of the response head ("\r\n\r\n") in buf: its length including the
 * blank line, or 0 when not complete yet. */
size_t wsframe_response_end(const char *buf, size_t len);

/* Checks a complete response head (len bytes, as wsframe_response_end measured) against
 * the key sent and the subprotocol asked (NULL: none). Returns 0 when the handshake is
 * accepted, or -EPROTO with a reason (at most n bytes, NUL-terminated) such as
 * "handshake: status 503", "bad Sec-WebSocket-Accept". *ret_status gets the HTTP
 * status (0 when the status line is unreadable). */
int wsframe_response_check(const char *buf, size_t len, const char *key, const char *subprotocol, int *ret_status,
                           char *reason, size_t n);
