/* Unit tests for probes/expect.c: the escape syntax of tcp's send/expect (every escape,
 * every error and its offset), escape_show (escapes, cutting with "..."), RFC 6901
 * pointers (the RFC's own examples, ~0/~1, array indexes, invalid pointers) and
 * expect_json's verdicts and reasons. */
#include <check.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "expect.h"

START_TEST(test_escape_decode)
{
        char *out = NULL;
        size_t len = 0, off = 0;
        const char *why = NULL;

        ck_assert_int_eq(escape_decode("PING\\r\\n\\t\\\\\\x00\\xFf", &out, &len, &off, &why), 0);
        ck_assert_uint_eq(len, 10);
        ck_assert_mem_eq(out, "PING\r\n\t\\\0\xff", 10);
        free(out);
        ck_assert_int_eq(escape_decode("", &out, &len, &off, &why), 0);
        ck_assert_uint_eq(len, 0);
        free(out);
        ck_assert_int_eq(escape_decode("ab\\q", &out, &len, &off, &why), -EINVAL);
        ck_assert_uint_eq(off, 2);
        ck_assert_str_eq(why, "an unknown escape");
        ck_assert_int_eq(escape_decode("\\x4", &out, &len, &off, &why), -EINVAL);
        ck_assert_uint_eq(off, 0);
        ck_assert_str_eq(why, "\\x without two hex digits");
        ck_assert_int_eq(escape_decode("\\xg0", &out, &len, &off, &why), -EINVAL);
        ck_assert_int_eq(escape_decode("x\\", &out, &len, &off, &why), -EINVAL);
        ck_assert_uint_eq(off, 1);
        ck_assert_str_eq(why, "a lone \\");
}
END_TEST

START_TEST(test_escape_show)
{
        char out[64];

        escape_show("+PONG\r\n", 7, out, sizeof(out));
        ck_assert_str_eq(out, "+PONG\\r\\n");
        escape_show("a\0\xe9\\\t", 5, out, sizeof(out));
        ck_assert_str_eq(out, "a\\x00\\xe9\\\\\\t");
        escape_show("abcdefghij", 10, out, 8);
        ck_assert_str_eq(out, "abcd...");
        escape_show("abcdefg", 7, out, 8);
        ck_assert_str_eq(out, "abcdefg");
        escape_show("\r\r\r\r", 4, out, 8); /* never half an escape */
        ck_assert_str_eq(out, "\\r\\r...");
}
END_TEST

/* RFC 6901 section 5's document and pointers */
static const char rfc_doc[] = "{\"foo\": [\"bar\", \"baz\"], \"\": 0, \"a/b\": 1, \"c%d\": 2, \"e^f\": 3, \"g|h\": 4,"
                              " \"i\\\\j\": 5, \"k\\\"l\": 6, \" \": 7, \"m~n\": 8}";

START_TEST(test_pointer_rfc_examples)
{
        cJSON *doc = cJSON_Parse(rfc_doc);
        const struct {
                const char *p;
                int want; /* number at p, or -1 for the array, -2 for the document */
        } cases[] = {
                { "", -2 },    { "/foo", -1 }, { "/", 0 },     { "/a~1b", 1 }, { "/c%d", 2 },  { "/e^f", 3 },
                { "/g|h", 4 }, { "/i\\j", 5 }, { "/k\"l", 6 }, { "/ ", 7 },    { "/m~0n", 8 },
        };

        ck_assert_ptr_nonnull(doc);
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                const cJSON *v = json_pointer_get(doc, cases[i].p);
                ck_assert_msg(v != NULL, "pointer \"%s\" found nothing", cases[i].p);
                if (cases[i].want == -2)
                        ck_assert_ptr_eq(v, doc);
                else if (cases[i].want == -1)
                        ck_assert(cJSON_IsArray(v));
                else
                        ck_assert_int_eq(v->valueint, cases[i].want);
        }
        ck_assert_str_eq(json_pointer_get(doc, "/foo/0")->valuestring, "bar");
        ck_assert_str_eq(json_pointer_get(doc, "/foo/1")->valuestring, "baz");
        ck_assert_ptr_null(json_pointer_get(doc, "/foo/2"));
        ck_assert_ptr_null(json_pointer_get(doc, "/foo/-"));
        ck_assert_ptr_null(json_pointer_get(doc, "/foo/01"));
        ck_assert_ptr_null(json_pointer_get(doc, "/foo/0/x"));
        ck_assert_ptr_null(json_pointer_get(doc, "/FOO")); /* case-sensitive */
        cJSON_Delete(doc);
}
END_TEST

START_TEST(test_pointer_validity)
{
        ck_assert(json_pointer_valid(""));
        ck_assert(json_pointer_valid("/"));
        ck_assert(json_pointer_valid("/a~0~1"));
        ck_assert(!json_pointer_valid("a"));
        ck_assert(!json_pointer_valid("/a~"));
        ck_assert(!json_pointer_valid("/a~2"));
        cJSON *doc = cJSON_Parse("{}");

        ck_assert_ptr_null(json_pointer_get(doc, "x")); /* not a pointer: not found */
        cJSON_Delete(doc);
}
END_TEST

static bool match(const char *want_json, const char *body, char *err, size_t n)
{
        cJSON *want = cJSON_Parse(want_json);
        bool ok;

        ck_assert_ptr_nonnull(want);
        ok = json_expect_match(want, body, strlen(body), err, n);
        cJSON_Delete(want);
        return ok;
}

START_TEST(test_expect_json)
{
        const char *body = "{\"status\": \"ok\", \"checks\": {\"db\": false}, \"n\": 2.0, \"l\": [1, {\"x\": null}]}\n";
        char err[160];

        ck_assert(match("{\"/status\": \"ok\", \"/n\": 2, \"/l/1\": {\"x\": null}}", body, err, sizeof(err)));
        ck_assert_str_eq(err, "");
        ck_assert(!match("{\"/checks/db\": true}", body, err, sizeof(err)));
        ck_assert_str_eq(err, "/checks/db is false, want true");
        ck_assert(!match("{\"/status\": \"OK\", \"/gone\": [1]}", body, err, sizeof(err)));
        ck_assert_str_eq(err, "/status is \"ok\", want \"OK\"; /gone is missing, want [1]");
        ck_assert(!match("{}", "{\"a\": 1} trailing", err, sizeof(err)));
        ck_assert_str_eq(err, "body is not JSON");
        ck_assert(!match("{}", "", err, sizeof(err)));
        ck_assert_str_eq(err, "body is not JSON");
        ck_assert(match("{\"\": [1, 2]}", " [1,2] ", err, sizeof(err)));
        ck_assert(match("{\"/x\": 1e999}", "{\"x\": 1e999}", err, sizeof(err)));
        ck_assert(!match("{\"/checks/db\": true}", body, err, 12)); /* cut to its buffer */
        ck_assert_str_eq(err, "/checks/db ");
}
END_TEST

static Suite *expect_suite(void)
{
        Suite *s = suite_create("expect");
        TCase *tc = tcase_create("escape");

        tcase_set_timeout(tc, 5);
        tcase_add_test(tc, test_escape_decode);
        tcase_add_test(tc, test_escape_show);
        suite_add_tcase(s, tc);

        tc = tcase_create("json");
        tcase_set_timeout(tc, 5);
        tcase_add_test(tc, test_pointer_rfc_examples);
        tcase_add_test(tc, test_pointer_validity);
        tcase_add_test(tc, test_expect_json);
        suite_add_tcase(s, tc);
        return s;
}

int main(void)
{
        SRunner *sr = srunner_create(expect_suite());
        int failed;

        srunner_run_all(sr, CK_NORMAL);
        failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
