/* Unit tests for probes/grpcwire.c: the exact bytes of the grpc.health.v1 protocol (request for ""
 * and "foo", responses SERVING / NOT_SERVING / UNKNOWN), unknown fields of every wire
 * type skipped, truncated or trailing input and a huge length prefix rejected, and the
 * grpc-status / grpc-message / HTTP-status helpers. */
#include <check.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "grpcwire.h"

#define MAX_MSG 4096

START_TEST(test_request_empty_service)
{
        const uint8_t want[] = { 0x00, 0x00, 0x00, 0x00, 0x00 };
        uint8_t *buf = NULL;
        size_t n = 0;

        ck_assert_int_eq(grpcwire_request_encode("", &buf, &n), 0);
        ck_assert_uint_eq(n, sizeof(want));
        ck_assert_mem_eq(buf, want, sizeof(want));
        free(buf);
}
END_TEST

START_TEST(test_request_foo)
{
        const uint8_t want[] = { 0x00, 0x00, 0x00, 0x00, 0x05, 0x0A, 0x03, 0x66, 0x6F, 0x6F };
        uint8_t *buf = NULL;
        size_t n = 0;

        ck_assert_int_eq(grpcwire_request_encode("foo", &buf, &n), 0);
        ck_assert_uint_eq(n, sizeof(want));
        ck_assert_mem_eq(buf, want, sizeof(want));
        free(buf);
}
END_TEST

START_TEST(test_request_long_service)
{
        char *service = malloc(GRPCWIRE_SERVICE_MAX + 2);
        uint8_t *buf = NULL;
        size_t n = 0;

        ck_assert_ptr_nonnull(service);
        memset(service, 's', 300);
        service[300] = '\0';
        /* 300 needs a two-byte varint: 0xAC 0x02 */
        ck_assert_int_eq(grpcwire_request_encode(service, &buf, &n), 0);
        ck_assert_uint_eq(n, 5 + 1 + 2 + 300);
        ck_assert_uint_eq(buf[4], 303 & 0xFF);
        ck_assert_uint_eq(buf[3], 303 >> 8);
        ck_assert_uint_eq(buf[5], 0x0A);
        ck_assert_uint_eq(buf[6], 0xAC);
        ck_assert_uint_eq(buf[7], 0x02);
        free(buf);
        memset(service, 's', GRPCWIRE_SERVICE_MAX + 1);
        service[GRPCWIRE_SERVICE_MAX + 1] = '\0';
        ck_assert_int_eq(grpcwire_request_encode(service, &buf, &n), -EINVAL);
        free(service);
}
END_TEST

static const struct {
        uint8_t bytes[40];
        size_t len;
        uint64_t status;
} good[] = {
        { { 0x00, 0x00, 0x00, 0x00, 0x02, 0x08, 0x01 }, 7, GRPC_SERVING_SERVING },
        { { 0x00, 0x00, 0x00, 0x00, 0x02, 0x08, 0x02 }, 7, GRPC_SERVING_NOT_SERVING },
        { { 0x00, 0x00, 0x00, 0x00, 0x00 }, 5, GRPC_SERVING_UNKNOWN },
        { { 0x00, 0x00, 0x00, 0x00, 0x02, 0x08, 0x03 }, 7, GRPC_SERVING_SERVICE_UNKNOWN },
        /* unknown fields of each wire type around the status: varint (field 2),
         * 64-bit (field 3), length-delimited (field 4), 32-bit (field 5) */
        { { 0x00, 0x00, 0x00, 0x00, 0x1A, 0x10, 0x96, 0x01, 0x19, 1, 2, 3, 4, 5,    6,   7,
            8,    0x08, 0x01, 0x22, 0x03, 'a',  'b',  'c',  0x2D, 1, 2, 3, 4, 0x28, 0x00 },
          31,
          GRPC_SERVING_SERVING },
        /* the last occurrence of a field wins, as in protobuf */
        { { 0x00, 0x00, 0x00, 0x00, 0x04, 0x08, 0x01, 0x08, 0x02 }, 9, GRPC_SERVING_NOT_SERVING },
        /* a high field number (2^28) with a 5-byte tag, skipped */
        { { 0x00, 0x00, 0x00, 0x00, 0x08, 0x80, 0x80, 0x80, 0x80, 0x08, 0x05, 0x08, 0x01 }, 13, GRPC_SERVING_SERVING },
        /* a value outside the enum is reported as is */
        { { 0x00, 0x00, 0x00, 0x00, 0x03, 0x08, 0x87, 0x01 }, 8, 135 },
};

START_TEST(test_response_good)
{
        uint64_t status = 99;
        const char *why = NULL;

        ck_assert_int_eq(grpcwire_response_decode(good[_i].bytes, good[_i].len, MAX_MSG, &status, &why), 0);
        ck_assert_uint_eq(status, good[_i].status);
}
END_TEST

static const struct {
        uint8_t bytes[16];
        size_t len;
        int want;
        const char *why;
} bad[] = {
        { { 0 }, 0, -EBADMSG, "no message" },
        { { 0x00, 0x00, 0x00 }, 3, -EBADMSG, "truncated message prefix" },
        { { 0x00, 0x00, 0x00, 0x00, 0x02, 0x08 }, 6, -EBADMSG, "truncated message" },
        { { 0x01, 0x00, 0x00, 0x00, 0x02, 0x08, 0x01 }, 7, -EBADMSG, "compressed message" },
        { { 0x02, 0x00, 0x00, 0x00, 0x02, 0x08, 0x01 }, 7, -EBADMSG, "bad compressed flag" },
        { { 0x00, 0xFF, 0xFF, 0xFF, 0xFF, 0x08, 0x01 }, 7, -EMSGSIZE, "message too large" },
        { { 0x00, 0x00, 0x00, 0x10, 0x01, 0x08, 0x01 }, 7, -EMSGSIZE, "message too large" },
        { { 0x00, 0x00, 0x00, 0x00, 0x02, 0x08, 0x01, 0x00 }, 8, -EBADMSG, "more than one message" },
        { { 0x00, 0x00, 0x00, 0x00, 0x01, 0x08 }, 6, -EBADMSG, "bad varint" },
        { { 0x00, 0x00, 0x00, 0x00, 0x02, 0x08, 0x81 }, 7, -EBADMSG, "bad varint" },
        { { 0x00, 0x00, 0x00, 0x00, 0x01, 0x80 }, 6, -EBADMSG, "bad field tag" },
        { { 0x00, 0x00, 0x00, 0x00, 0x02, 0x00, 0x01 }, 7, -EBADMSG, "bad field number" },
        { { 0x00, 0x00, 0x00, 0x00, 0x02, 0x0A, 0x00 }, 7, -EBADMSG, "status field is not a varint" },
        { { 0x00, 0x00, 0x00, 0x00, 0x03, 0x22, 0x05, 'a' }, 8, -EBADMSG, "truncated field" },
        { { 0x00, 0x00, 0x00, 0x00, 0x03, 0x19, 1, 2 }, 8, -EBADMSG, "truncated field" },
        { { 0x00, 0x00, 0x00, 0x00, 0x02, 0x2D, 1 }, 7, -EBADMSG, "truncated field" },
        { { 0x00, 0x00, 0x00, 0x00, 0x02, 0x13, 0x14 }, 7, -EBADMSG, "bad wire type" },
        { { 0x00, 0x00, 0x00, 0x00, 0x0B, 0x10, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F },
          16,
          -EBADMSG,
          "bad varint" },
};

START_TEST(test_response_bad)
{
        uint64_t status = 99;
        const char *why = NULL;

        ck_assert_int_eq(grpcwire_response_decode(bad[_i].bytes, bad[_i].len, MAX_MSG, &status, &why), bad[_i].want);
        ck_assert_str_eq(why, bad[_i].why);
        ck_assert_uint_eq(status, 99); /* untouched on failure */
}
END_TEST

START_TEST(test_response_every_truncation)
{
        const uint8_t *full = good[4].bytes;
        uint64_t status;
        const char *why;

        /* every strict prefix of a valid reply is rejected, never read past */
        for (size_t k = 0; k < good[4].len; k++) {
                uint8_t *copy = malloc(k + 1);

                ck_assert_ptr_nonnull(copy);
                memcpy(copy, full, k);
                ck_assert_int_lt(grpcwire_response_decode(copy, k, MAX_MSG, &status, &why), 0);
                free(copy);
        }
}
END_TEST

START_TEST(test_status_parse)
{
        long code = -1;

        ck_assert_int_eq(grpcwire_status_parse("0", 1, &code), 0);
        ck_assert_int_eq(code, 0);
        ck_assert_int_eq(grpcwire_status_parse(" 12\r\n", 5, &code), 0);
        ck_assert_int_eq(code, 12);
        ck_assert_int_eq(grpcwire_status_parse("", 0, &code), -EINVAL);
        ck_assert_int_eq(grpcwire_status_parse("x", 1, &code), -EINVAL);
        ck_assert_int_eq(grpcwire_status_parse("5x", 2, &code), -EINVAL);
        ck_assert_int_eq(grpcwire_status_parse("123", 3, &code), -EINVAL);
        ck_assert_int_eq(grpcwire_status_parse("-1", 2, &code), -EINVAL);
        ck_assert_int_eq(code, 12);
}
END_TEST

START_TEST(test_message_decode)
{
        char out[16];

        grpcwire_message_decode("unknown%20service", 17, out, sizeof(out));
        ck_assert_str_eq(out, "unknown service");
        grpcwire_message_decode("a%0Ab%zz%", 9, out, sizeof(out));
        ck_assert_str_eq(out, "a?b%zz%");
        grpcwire_message_decode("ok\r\n", 4, out, sizeof(out));
        ck_assert_str_eq(out, "ok");
        grpcwire_message_decode("%C3%A9t%C3%A9", 13, out, sizeof(out));
        ck_assert_str_eq(out, "??t??");
        grpcwire_message_decode("0123456789abcdefghij", 20, out, 8);
        ck_assert_str_eq(out, "0123456");
}
END_TEST

START_TEST(test_names)
{
        ck_assert_str_eq(grpc_code_to_string(0), "OK");
        ck_assert_str_eq(grpc_code_to_string(5), "NOT_FOUND");
        ck_assert_str_eq(grpc_code_to_string(12), "UNIMPLEMENTED");
        ck_assert_str_eq(grpc_code_to_string(16), "UNAUTHENTICATED");
        ck_assert_ptr_null(grpc_code_to_string(17));
        ck_assert_ptr_null(grpc_code_to_string(-1));
        ck_assert_str_eq(grpc_serving_status_to_string(1), "SERVING");
        ck_assert_str_eq(grpc_serving_status_to_string(2), "NOT_SERVING");
        ck_assert_ptr_null(grpc_serving_status_to_string(4));
        ck_assert_int_eq(grpcwire_code_from_http(404), 12);
        ck_assert_int_eq(grpcwire_code_from_http(503), 14);
        ck_assert_int_eq(grpcwire_code_from_http(200), 2);
        ck_assert_int_eq(grpcwire_code_from_http(401), 16);
}
END_TEST

/* The server side: what grpcwire_request_encode writes decodes back to its service;
 * unknown fields are skipped, the last service wins, a varint service and trailing bytes
 * are refused; response_encode writes the exact bytes of the protocol. */
START_TEST(test_server_side)
{
        const char *names[] = { "", "liveness", "a-probe.name_1" };
        const uint8_t extra[] = { 0,    0,    0,   0,   15,  0x10, 0x07, 0x0A, 0x01, 'x',
                                  0x0A, 0x03, 'a', 'p', 'i', 0x15, 0,    0,    0,    0 };
        const uint8_t varint[] = { 0, 0, 0, 0, 2, 0x08, 0x01 };
        const uint8_t serving[] = { 0, 0, 0, 0, 2, 0x08, 0x01 }, not_serving[] = { 0, 0, 0, 0, 2, 0x08, 0x02 },
                      unknown[] = { 0, 0, 0, 0, 0 };
        uint8_t out[GRPCWIRE_RESPONSE_MAX];
        const uint8_t *svc;
        const char *why;
        size_t len;

        for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
                uint8_t *buf = NULL;
                size_t n = 0;
                ck_assert_int_eq(grpcwire_request_encode(names[i], &buf, &n), 0);
                ck_assert_int_eq(grpcwire_request_decode(buf, n, 512, &svc, &len, &why), 0);
                ck_assert_uint_eq(len, strlen(names[i]));
                ck_assert_int_eq(memcmp(svc, names[i], len), 0);
                ck_assert_int_eq(grpcwire_request_decode(buf, n - (n > 5), 512, &svc, &len, &why),
                                 n > 5 ? -EBADMSG : 0);
                free(buf);
        }
        /* field 2 varint, service "x" then "api", a 32-bit field 2 */
        ck_assert_int_eq(grpcwire_request_decode(extra, sizeof(extra), 512, &svc, &len, &why), 0);
        ck_assert_uint_eq(len, 3);
        ck_assert_int_eq(memcmp(svc, "api", 3), 0);
        ck_assert_int_eq(grpcwire_request_decode(varint, sizeof(varint), 512, &svc, &len, &why), -EBADMSG);
        ck_assert_str_eq(why, "service field is not a string");
        ck_assert_int_eq(grpcwire_request_decode(varint, sizeof(varint), 1, &svc, &len, &why), -EMSGSIZE);

        ck_assert_uint_eq(grpcwire_response_encode(GRPC_SERVING_SERVING, out), sizeof(serving));
        ck_assert_mem_eq(out, serving, sizeof(serving));
        ck_assert_uint_eq(grpcwire_response_encode(GRPC_SERVING_NOT_SERVING, out), sizeof(not_serving));
        ck_assert_mem_eq(out, not_serving, sizeof(not_serving));
        ck_assert_uint_eq(grpcwire_response_encode(GRPC_SERVING_UNKNOWN, out), sizeof(unknown));
        ck_assert_mem_eq(out, unknown, sizeof(unknown));
}
END_TEST

static Suite *grpcwire_suite(void)
{
        Suite *s = suite_create("grpcwire");
        TCase *tc;

        tc = tcase_create("request");
        tcase_set_timeout(tc, 5);
        tcase_add_test(tc, test_request_empty_service);
        tcase_add_test(tc, test_request_foo);
        tcase_add_test(tc, test_request_long_service);
        tcase_add_test(tc, test_server_side);
        suite_add_tcase(s, tc);

        tc = tcase_create("response");
        tcase_set_timeout(tc, 5);
        tcase_add_loop_test(tc, test_response_good, 0, sizeof(good) / sizeof(good[0]));
        tcase_add_loop_test(tc, test_response_bad, 0, sizeof(bad) / sizeof(bad[0]));
        tcase_add_test(tc, test_response_every_truncation);
        suite_add_tcase(s, tc);

        tc = tcase_create("status");
        tcase_set_timeout(tc, 5);
        tcase_add_test(tc, test_status_parse);
        tcase_add_test(tc, test_message_decode);
        tcase_add_test(tc, test_names);
        suite_add_tcase(s, tc);
        return s;
}

int main(void)
{
        SRunner *sr = srunner_create(grpcwire_suite());
        int failed;

        srunner_run_all(sr, CK_NORMAL);
        failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
