/* Unit tests for probes/wsframe.c: RFC 6455 accept computation (the RFC's own example),
 * key generation, frame encoding (masking, the three length forms at 125/126/65536 and
 * the RFC 5.7 example bytes), strict decoding (fragmented control frames, oversized
 * frames, RSV bits, masked server frames rejected; incomplete headers wait), and the
 * handshake request/response checks. Also the websocket kind's max_skip key (default
 * filled in, bounds, errors naming the JSON path). */
#include <check.h>
#include <errno.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>

#include "probe.h"
#include "registry.h"
#include "wsframe.h"

static const uint8_t rfc_mask[4] = { 0x37, 0xfa, 0x21, 0x3d };

START_TEST(test_accept_rfc_example)
{
        char acc[WSFRAME_ACCEPT_SIZE];

        ck_assert_int_eq(wsframe_accept("dGhlIHNhbXBsZSBub25jZQ==", acc), 0);
        ck_assert_str_eq(acc, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
}
END_TEST

START_TEST(test_accept_rejects_long_key)
{
        char key[100], acc[WSFRAME_ACCEPT_SIZE];

        memset(key, 'A', sizeof(key) - 1);
        key[sizeof(key) - 1] = '\0';
        ck_assert_int_eq(wsframe_accept(key, acc), -EINVAL);
}
END_TEST

START_TEST(test_key_new)
{
        char k1[WSFRAME_KEY_SIZE], k2[WSFRAME_KEY_SIZE];
        unsigned char raw[32];

        ck_assert_int_eq(wsframe_key_new(k1), 0);
        ck_assert_int_eq(wsframe_key_new(k2), 0);
        ck_assert_uint_eq(strlen(k1), 24);
        ck_assert_str_ne(k1, k2);
        /* 24 base64 characters ending in "==" decode to 16 bytes (+2 padding) */
        ck_assert_int_eq(EVP_DecodeBlock(raw, (const unsigned char *) k1, 24), 18);
        ck_assert(k1[22] == '=' && k1[23] == '=');
}
END_TEST

START_TEST(test_encode_rfc_masked_hello)
{
        const uint8_t want[] = { 0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58 };
        uint8_t out[32];
        size_t n = 0;

        ck_assert_int_eq(wsframe_encode(WSFRAME_TEXT, "Hello", 5, rfc_mask, out, sizeof(out), &n), 0);
        ck_assert_uint_eq(n, sizeof(want));
        ck_assert_mem_eq(out, want, sizeof(want));
        /* the masked pong of the RFC's ping example */
        ck_assert_int_eq(wsframe_encode(WSFRAME_PONG, "Hello", 5, rfc_mask, out, sizeof(out), &n), 0);
        ck_assert_uint_eq(out[0], 0x8a);
        ck_assert_mem_eq(out + 1, want + 1, sizeof(want) - 1);
}
END_TEST

/* Encodes len bytes, checks the header form, then decodes as a server would and
 * unmasks the payload back to the original. */
static void roundtrip(size_t len, size_t want_header, uint8_t want_len7)
{
        uint8_t *payload = malloc(len + 1), *out = malloc(len + WSFRAME_HEADER_MAX);
        const uint8_t mask[4] = { 0xde, 0xad, 0xbe, 0xef };
        struct wsframe f;
        const char *why = NULL;
        size_t n = 0;

        ck_assert_ptr_nonnull(payload);
        ck_assert_ptr_nonnull(out);
        for (size_t i = 0; i < len; i++)
                payload[i] = (uint8_t) (i * 7 + 1);
        ck_assert_int_eq(wsframe_encode(WSFRAME_BINARY, payload, len, mask, out, len + WSFRAME_HEADER_MAX, &n), 0);
        ck_assert_uint_eq(n, want_header + len);
        ck_assert_uint_eq(out[0], 0x82);
        ck_assert_uint_eq(out[1], 0x80 | want_len7);
        ck_assert_mem_eq(out + want_header - 4, mask, 4);
        if (len > 0)
                ck_assert_int_eq(out[want_header] ^ mask[0], payload[0]);
        /* every strict prefix of the header is "need more" */
        for (size_t k = 0; k < want_header; k++)
                ck_assert_int_eq(wsframe_decode(out, k, true, UINT64_MAX, &f, &why), 0);
        ck_assert_int_eq(wsframe_decode(out, n, true, UINT64_MAX, &f, &why), 1);
        ck_assert(f.fin);
        ck_assert(f.masked);
        ck_assert_uint_eq(f.opcode, WSFRAME_BINARY);
        ck_assert_uint_eq(f.payload_len, len);
        ck_assert_uint_eq(f.header_len, want_header);
        /* unmask in two pieces: offsets must carry over */
        wsframe_mask(out + f.header_len, len / 3, f.mask, 0);
        wsframe_mask(out + f.header_len + len / 3, len - len / 3, f.mask, len / 3);
        ck_assert_mem_eq(out + f.header_len, payload, len);
        /* a cap below the length is -EMSGSIZE */
        if (len > 0)
                ck_assert_int_eq(wsframe_decode(out, n, true, len - 1, &f, &why), -EMSGSIZE);
        free(payload);
        free(out);
}

START_TEST(test_encode_lengths)
{
        roundtrip(0, 6, 0);
        roundtrip(125, 6, 125);
        roundtrip(126, 8, 126);
        roundtrip(65535, 8, 126);
        roundtrip(65536, 14, 127);
}
END_TEST

START_TEST(test_encode_limits)
{
        uint8_t out[256], payload[200] = { 0 };
        size_t n = 0;

        ck_assert_int_eq(wsframe_encode(WSFRAME_PING, payload, 126, rfc_mask, out, sizeof(out), &n), -EINVAL);
        ck_assert_int_eq(wsframe_encode(WSFRAME_CLOSE, payload, 125, rfc_mask, out, sizeof(out), &n), 0);
        ck_assert_int_eq(wsframe_encode(WSFRAME_BINARY, payload, 200, rfc_mask, out, 203, &n), -ENOBUFS);
        ck_assert_int_eq(wsframe_encode(WSFRAME_BINARY, payload, 0, rfc_mask, out, 5, &n), -ENOBUFS);
}
END_TEST

START_TEST(test_decode_server_frames)
{
        const uint8_t hello[] = { 0x81, 0x05, 'H', 'e', 'l', 'l', 'o' };
        const uint8_t b256[] = { 0x82, 0x7E, 0x01, 0x00 };
        const uint8_t b64k[] = { 0x82, 0x7F, 0, 0, 0, 0, 0, 1, 0, 0 };
        const uint8_t frag[] = { 0x01, 0x03, 'H', 'e', 'l' }; /* data frames may be fragmented */
        struct wsframe f;

        ck_assert_int_eq(wsframe_decode(hello, sizeof(hello), false, 1 << 20, &f, NULL), 1);
        ck_assert_uint_eq(f.payload_len, 5);
        ck_assert_uint_eq(f.header_len, 2);
        ck_assert(!f.masked);
        ck_assert_int_eq(wsframe_decode(b256, sizeof(b256), false, 1 << 20, &f, NULL), 1);
        ck_assert_uint_eq(f.payload_len, 256);
        ck_assert_uint_eq(f.header_len, 4);
        ck_assert_int_eq(wsframe_decode(b64k, sizeof(b64k), false, 1 << 20, &f, NULL), 1);
        ck_assert_uint_eq(f.payload_len, 65536);
        ck_assert_uint_eq(f.header_len, 10);
        ck_assert_int_eq(wsframe_decode(frag, sizeof(frag), false, 1 << 20, &f, NULL), 1);
        ck_assert(!f.fin);
        ck_assert_uint_eq(f.opcode, WSFRAME_TEXT);
}
END_TEST

static const struct {
        uint8_t bytes[10];
        size_t len;
        int want;
        const char *why;
} bad_frames[] = {
        { { 0x89, 0x85, 1, 2, 3, 4, 0 }, 7, -EPROTO, "masked server frame" },
        { { 0xC1, 0x00 }, 2, -EPROTO, "reserved bits set" },
        { { 0xA1, 0x00 }, 2, -EPROTO, "reserved bits set" },
        { { 0x09, 0x00 }, 2, -EPROTO, "fragmented control frame" }, /* ping without FIN */
        { { 0x08, 0x02, 0x03, 0xe8 }, 4, -EPROTO, "fragmented control frame" },
        { { 0x8A, 0x7E, 0x00, 0x7E }, 4, -EPROTO, "control frame longer than 125 bytes" },
        { { 0x83, 0x00 }, 2, -EPROTO, "unknown opcode" },
        { { 0x8B, 0x00 }, 2, -EPROTO, "unknown opcode" },
        { { 0x82, 0x7F, 0x80, 0, 0, 0, 0, 0, 0, 1 }, 10, -EPROTO, "64-bit length with the top bit set" },
        { { 0x82, 0x7E, 0x00, 0x05 }, 4, -EPROTO, "non-minimal length" },
        { { 0x82, 0x7F, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF }, 10, -EPROTO, "non-minimal length" },
        { { 0x82, 0x7F, 0x7F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF }, 10, -EMSGSIZE, "frame too large" },
};

START_TEST(test_decode_rejects)
{
        struct wsframe f;
        const char *why = NULL;

        ck_assert_int_eq(wsframe_decode(bad_frames[_i].bytes, bad_frames[_i].len, false, 1 << 20, &f, &why),
                         bad_frames[_i].want);
        ck_assert_str_eq(why, bad_frames[_i].why);
}
END_TEST

START_TEST(test_decode_unmasked_client_frame)
{
        const uint8_t hello[] = { 0x81, 0x05, 'H', 'e', 'l', 'l', 'o' };
        struct wsframe f;
        const char *why = NULL;

        ck_assert_int_eq(wsframe_decode(hello, sizeof(hello), true, 1 << 20, &f, &why), -EPROTO);
        ck_assert_str_eq(why, "unmasked client frame");
}
END_TEST

START_TEST(test_request)
{
        char *req = NULL;

        ck_assert_int_eq(wsframe_request("/ws?x=1", "127.0.0.1:8080", "dGhlIHNhbXBsZSBub25jZQ==", "chat",
                                         "Origin: http://a\r\n", &req),
                         0);
        ck_assert(strncmp(req, "GET /ws?x=1 HTTP/1.1\r\n", 22) == 0);
        ck_assert_ptr_nonnull(strstr(req, "\r\nHost: 127.0.0.1:8080\r\n"));
        ck_assert_ptr_nonnull(strstr(req, "\r\nUpgrade: websocket\r\n"));
        ck_assert_ptr_nonnull(strstr(req, "\r\nConnection: Upgrade\r\n"));
        ck_assert_ptr_nonnull(strstr(req, "\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"));
        ck_assert_ptr_nonnull(strstr(req, "\r\nSec-WebSocket-Version: 13\r\n"));
        ck_assert_ptr_nonnull(strstr(req, "\r\nSec-WebSocket-Protocol: chat\r\n"));
        ck_assert_ptr_nonnull(strstr(req, "\r\nUser-Agent: probed/"));
        ck_assert_ptr_nonnull(strstr(req, "\r\nOrigin: http://a\r\n\r\n"));
        ck_assert_uint_eq(wsframe_response_end(req, strlen(req)), strlen(req));
        free(req);

        /* a Host or User-Agent from the user replaces ours; no subprotocol, no header */
        ck_assert_int_eq(wsframe_request("/", "h", "k", NULL, "host: other\r\nUser-Agent: me\r\n", &req), 0);
        ck_assert_ptr_null(strstr(req, "Host: h"));
        ck_assert_ptr_null(strstr(req, "probed/"));
        ck_assert_ptr_null(strstr(req, "Sec-WebSocket-Protocol"));
        free(req);
}
END_TEST

#define KEY "dGhlIHNhbXBsZSBub25jZQ=="
#define ACCEPT "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
#define OK_HEAD "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"

static const struct {
        const char *head;
        const char *subprotocol;
        int want_status;
        const char *want; /* NULL: accepted */
} responses[] = {
        { OK_HEAD "Sec-WebSocket-Accept: " ACCEPT "\r\n\r\n", NULL, 101, NULL },
        { "HTTP/1.1 101 OK\r\nupgrade: WebSocket\r\nconnection: keep-alive, upgrade\r\n"
          "sec-websocket-accept:  " ACCEPT " \r\n\r\n",
          NULL, 101, NULL },
        { "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n", NULL, 503, "handshake: status 503" },
        { "HTTP/1.1 200 OK\r\n\r\n", NULL, 200, "handshake: status 200" },
        { "HTTP/1.0 101\r\n\r\n", NULL, 101, "handshake: missing Upgrade: websocket" },
        { "ICY 200 OK\r\n\r\n", NULL, 0, "handshake: malformed status line" },
        { "HTTP/1.1 1010 x\r\n\r\n", NULL, 0, "handshake: malformed status line" },
        { "HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n", NULL, 101,
          "handshake: missing Upgrade: websocket" },
        { "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n", NULL, 101,
          "handshake: missing Connection: Upgrade" },
        { OK_HEAD "\r\n", NULL, 101, "handshake: missing Sec-WebSocket-Accept" },
        { OK_HEAD "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo\r\n\r\n", NULL, 101, "bad Sec-WebSocket-Accept" },
        { OK_HEAD "Sec-WebSocket-Accept: " ACCEPT "\r\nSec-WebSocket-Accept: " ACCEPT "\r\n\r\n", NULL, 101,
          "bad Sec-WebSocket-Accept" },
        { OK_HEAD "Sec-WebSocket-Accept: " ACCEPT "\r\nSec-WebSocket-Protocol: chat\r\n\r\n", "chat", 101, NULL },
        { OK_HEAD "Sec-WebSocket-Accept: " ACCEPT "\r\n\r\n", "chat", 101,
          "handshake: no subprotocol (asked \"chat\")" },
        { OK_HEAD "Sec-WebSocket-Accept: " ACCEPT "\r\nSec-WebSocket-Protocol: mqtt\r\n\r\n", "chat", 101,
          "handshake: subprotocol \"mqtt\" (asked \"chat\")" },
        { OK_HEAD "Sec-WebSocket-Accept: " ACCEPT "\r\nSec-WebSocket-Protocol: chat\r\n\r\n", NULL, 101,
          "handshake: unrequested subprotocol \"chat\"" },
        { OK_HEAD "Sec-WebSocket-Accept: " ACCEPT "\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\n", NULL, 101,
          "handshake: unrequested extension \"permessage-deflate\"" },
        { OK_HEAD "Sec-WebSocket-Accept: " ACCEPT "\r\nSec-WebSocket-Protocol: \x01\x7f\r\n\r\n", "chat", 101,
          "handshake: subprotocol \"??\" (asked \"chat\")" },
};

START_TEST(test_response_check)
{
        const char *head = responses[_i].head;
        char reason[160];
        int status = -1;
        size_t end = wsframe_response_end(head, strlen(head));

        ck_assert_uint_eq(end, strlen(head));
        ck_assert_int_eq(
                wsframe_response_check(head, end, KEY, responses[_i].subprotocol, &status, reason, sizeof(reason)),
                responses[_i].want ? -EPROTO : 0);
        ck_assert_int_eq(status, responses[_i].want_status);
        if (responses[_i].want)
                ck_assert_str_eq(reason, responses[_i].want);
}
END_TEST

START_TEST(test_response_end)
{
        const char *partial = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n";
        const char with_frame[] = "HTTP/1.1 101 X\r\n\r\n\x89\x00"; /* head + an empty ping */

        ck_assert_uint_eq(wsframe_response_end(partial, strlen(partial)), 0);
        ck_assert_uint_eq(wsframe_response_end(with_frame, sizeof(with_frame) - 1), sizeof(with_frame) - 3);
}
END_TEST

/* Parses a websocket probe object with the kind's own parse; 0 or its error. */
static int ws_parse_json(const char *json, cJSON **ret_obj, char **reterr)
{
        const struct probe_ops *ops = probe_ops_find("websocket");
        void *spec = NULL;
        char *target = NULL;
        int r;

        ck_assert_ptr_nonnull(ops);
        *ret_obj = cJSON_Parse(json);
        ck_assert_ptr_nonnull(*ret_obj);
        r = ops->parse(*ret_obj, "probes[0]", &spec, &target, reterr);
        if (r == 0) {
                ck_assert_str_eq(target, "ws://127.0.0.1:1/");
                ops->free_spec(spec);
                free(target);
        }
        return r;
}

START_TEST(test_max_skip_default)
{
        cJSON *obj;
        char *err = NULL;

        ck_assert_int_eq(ws_parse_json("{\"url\": \"ws://127.0.0.1:1/\"}", &obj, &err), 0);
        ck_assert_int_eq(cJSON_GetObjectItem(obj, "max_skip")->valuedouble, WS_MAX_SKIP_DEFAULT);
        ck_assert_int_eq(WS_MAX_SKIP_DEFAULT, 65536);
        cJSON_Delete(obj);
        ck_assert_int_eq(ws_parse_json("{\"url\": \"ws://127.0.0.1:1/\", \"max_skip\": 0}", &obj, &err), 0);
        ck_assert_int_eq(cJSON_GetObjectItem(obj, "max_skip")->valuedouble, 0);
        cJSON_Delete(obj);
        ck_assert_int_eq(ws_parse_json("{\"url\": \"ws://127.0.0.1:1/\", \"max_skip\": 1073741824}", &obj, &err), 0);
        cJSON_Delete(obj);
        ck_assert_ptr_null(err);
}
END_TEST

static const char *const bad_max_skip[] = { "-1", "1.5", "\"64k\"", "1073741825", "true", "null" };

START_TEST(test_max_skip_rejects)
{
        char json[128], *err = NULL;
        cJSON *obj;

        snprintf(json, sizeof(json), "{\"url\": \"ws://127.0.0.1:1/\", \"max_skip\": %s}", bad_max_skip[_i]);
        ck_assert_int_lt(ws_parse_json(json, &obj, &err), 0);
        ck_assert_ptr_nonnull(err);
        ck_assert_msg(strstr(err, "probes[0].max_skip"), "error does not name the path: %s", err);
        free(err);
        cJSON_Delete(obj);
}
END_TEST

static Suite *wsframe_suite(void)
{
        Suite *s = suite_create("wsframe");
        TCase *tc;

        tc = tcase_create("handshake");
        tcase_set_timeout(tc, 5);
        tcase_add_test(tc, test_accept_rfc_example);
        tcase_add_test(tc, test_accept_rejects_long_key);
        tcase_add_test(tc, test_key_new);
        tcase_add_test(tc, test_request);
        tcase_add_loop_test(tc, test_response_check, 0, sizeof(responses) / sizeof(responses[0]));
        tcase_add_test(tc, test_response_end);
        suite_add_tcase(s, tc);

        tc = tcase_create("framing");
        tcase_set_timeout(tc, 5);
        tcase_add_test(tc, test_encode_rfc_masked_hello);
        tcase_add_test(tc, test_encode_lengths);
        tcase_add_test(tc, test_encode_limits);
        tcase_add_test(tc, test_decode_server_frames);
        tcase_add_loop_test(tc, test_decode_rejects, 0, sizeof(bad_frames) / sizeof(bad_frames[0]));
        tcase_add_test(tc, test_decode_unmasked_client_frame);
        suite_add_tcase(s, tc);

        tc = tcase_create("max_skip");
        tcase_set_timeout(tc, 5);
        tcase_add_test(tc, test_max_skip_default);
        tcase_add_loop_test(tc, test_max_skip_rejects, 0, sizeof(bad_max_skip) / sizeof(bad_max_skip[0]));
        suite_add_tcase(s, tc);
        return s;
}

int main(void)
{
        SRunner *sr = srunner_create(wsframe_suite());
        int failed;

        srunner_run_all(sr, CK_NORMAL);
        failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
