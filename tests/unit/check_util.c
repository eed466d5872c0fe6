/* Unit tests for daemon/util.c (clocks, RFC 3339, durations) and daemon/log.c (JSON and
 * text lines, escaping, levels, truncation). Log tests capture stderr into a temp file
 * inside the forked test, then parse the line back with cJSON. */
#include <check.h>
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bounds.h"
#include "log.h"
#include "util.h"

/* ---- durations ------------------------------------------------------------------ */

static const struct {
        const char *s;
        uint64_t ms;
} valid_durations[] = {
        { "0s", 0 },
        { "0ms", 0 },
        { "1ms", 1 },
        { "500ms", 500 },
        { "1s", 1000 },
        { "2s", 2000 },
        { "90s", 90000 },
        { "1m", 60000 },
        { "1m30s", 90000 },
        { "1h", 3600000 },
        { "1s500ms", 1500 },
        { "1h2m3s500ms", 3723500 },
        { "0h0m1s", 1000 },
        { "007s", 7000 },
        { "24h", 86400000 },
        { "1m5ms", 60005 },
        { "5124095h", 5124095ULL * 3600000ULL },
        { "18446744073709ms", 18446744073709ULL }, /* UINT64_MAX ns, in ms */
};

START_TEST(test_duration_valid)
{
        uint64_t ms = 12345;

        ck_assert_msg(duration_parse(valid_durations[_i].s, &ms) == 0, "rejected \"%s\"", valid_durations[_i].s);
        ck_assert_uint_eq(ms, valid_durations[_i].ms);
}
END_TEST

static const struct {
        const char *s;
        int r;
} invalid_durations[] = {
        { "", -EINVAL },
        { "5", -EINVAL },
        { "-1s", -EINVAL },
        { "+1s", -EINVAL },
        { "5x", -EINVAL },
        { "1d", -EINVAL },
        { "1.5s", -EINVAL },
        { " 1s", -EINVAL },
        { "1s ", -EINVAL },
        { "1 s", -EINVAL },
        { "s", -EINVAL },
        { "ms", -EINVAL },
        { "1S", -EINVAL },
        { "1sm", -EINVAL },
        { "30s1m", -EINVAL }, /* units in decreasing order only */
        { "1s1s", -EINVAL },  /* each unit once */
        { "1ms1s", -EINVAL },
        { "1h5", -EINVAL },
        { "0x10s", -EINVAL },
        { "1e3ms", -EINVAL },
        { "18446744073710ms", -ERANGE },
        { "5124096h", -ERANGE },
        { "99999999999999999999s", -ERANGE },
        { "18446744073709551616ms", -ERANGE },
        { "5124095h1h", -EINVAL }, /* syntax wins over size */
        { "5124095h60m", -ERANGE },
};

START_TEST(test_duration_invalid)
{
        uint64_t ms = 4242;

        ck_assert_msg(duration_parse(invalid_durations[_i].s, &ms) == invalid_durations[_i].r,
                      "\"%s\": got %d, want %d", invalid_durations[_i].s, duration_parse(invalid_durations[_i].s, &ms),
                      invalid_durations[_i].r);
        ck_assert_uint_eq(ms, 4242); /* never written on failure */
}
END_TEST

START_TEST(test_duration_null)
{
        uint64_t ms = 1;

        ck_assert_int_eq(duration_parse(NULL, &ms), -EINVAL);
        ck_assert_uint_eq(ms, 1);
}
END_TEST

static const struct {
        uint64_t ms;
        const char *s;
} formats[] = {
        { 0, "0s" },         { 1, "1ms" },         { 500, "500ms" }, { 1000, "1s" },    { 1500, "1s500ms" },
        { 60000, "1m" },     { 90000, "1m30s" },   { 300000, "5m" }, { 3600000, "1h" }, { 3723500, "1h2m3s500ms" },
        { 86400000, "24h" }, { 3600001, "1h1ms" },
};

START_TEST(test_duration_format)
{
        char buf[64];
        uint64_t back = 0;

        duration_format(formats[_i].ms, buf, sizeof(buf));
        ck_assert_str_eq(buf, formats[_i].s);
        ck_assert_int_eq(duration_parse(buf, &back), 0);
        ck_assert_uint_eq(back, formats[_i].ms);
}
END_TEST

START_TEST(test_duration_round_trip)
{
        /* parse(format(x)) == x over a spread of values, up to the largest accepted */
        const uint64_t max = UINT64_MAX / NSEC_PER_MSEC;
        uint64_t x = 0;
        char buf[64];

        for (int i = 0; i < 2000; i++) {
                uint64_t back = 0;

                duration_format(x, buf, sizeof(buf));
                ck_assert_msg(duration_parse(buf, &back) == 0, "format(%llu) = \"%s\" does not parse",
                              (unsigned long long) x, buf);
                ck_assert_uint_eq(back, x);
                x = x * 3 + 7 + (uint64_t) i;
                if (x > max)
                        x %= max;
        }
        duration_format(max, buf, sizeof(buf));
        {
                uint64_t back = 0;

                ck_assert_int_eq(duration_parse(buf, &back), 0);
                ck_assert_uint_eq(back, max);
        }
        /* and format(parse(s)) == s for canonical strings from the valid table */
        for (size_t i = 0; i < ELEMENTSOF(formats); i++) {
                uint64_t ms = 0;

                ck_assert_int_eq(duration_parse(formats[i].s, &ms), 0);
                duration_format(ms, buf, sizeof(buf));
                ck_assert_str_eq(buf, formats[i].s);
        }
}
END_TEST

START_TEST(test_duration_format_small_buffer)
{
        char buf[4] = "xxx";

        duration_format(3723500, buf, sizeof(buf));
        ck_assert_uint_lt(strlen(buf), sizeof(buf)); /* terminated, never overrun */
        duration_format(0, buf, 0);                  /* n == 0: writes nothing */
        ck_assert_uint_lt(strlen(buf), sizeof(buf));
}
END_TEST

/* ---- clocks and timestamps ------------------------------------------------------ */

START_TEST(test_rfc3339_known)
{
        char buf[32];

        format_rfc3339(1795901292123456789ULL, buf, sizeof(buf));
        ck_assert_str_eq(buf, "2026-11-28T21:28:12.123Z");
        format_rfc3339(0, buf, sizeof(buf));
        ck_assert_str_eq(buf, "1970-01-01T00:00:00.000Z");
        format_rfc3339(999999999ULL, buf, sizeof(buf));
        ck_assert_str_eq(buf, "1970-01-01T00:00:00.999Z");
}
END_TEST

START_TEST(test_rfc3339_shape)
{
        const char *shape = "dddd-dd-ddTdd:dd:dd.dddZ";
        char buf[32];

        format_rfc3339(wall_ns(), buf, sizeof(buf));
        ck_assert_uint_eq(strlen(buf), strlen(shape));
        for (size_t i = 0; shape[i]; i++) {
                if (shape[i] == 'd')
                        ck_assert_msg(buf[i] >= '0' && buf[i] <= '9', "%s: char %zu", buf, i);
                else
                        ck_assert_msg(buf[i] == shape[i], "%s: char %zu", buf, i);
        }
        ck_assert_msg(strncmp(buf, "2020", 4) > 0, "clock before 2021: %s", buf);
}
END_TEST

START_TEST(test_clocks)
{
        uint64_t a = now_ns(), b = now_ns();

        ck_assert_uint_gt(a, 0);
        ck_assert_uint_ge(b, a);
        ck_assert_uint_gt(wall_ns(), 1600000000ULL * NSEC_PER_SEC);
}
END_TEST

START_TEST(test_strdup_printf)
{
        char *s = strdup_printf("%s-%d-%05.1f", "x", 42, 3.14159);

        ck_assert_ptr_nonnull(s);
        ck_assert_str_eq(s, "x-42-003.1");
        free(s);
}
END_TEST

/* ---- log ------------------------------------------------------------------------ */

/* stderr goes to a temp file for the rest of the (forked) test. */
static FILE *capture;

static void capture_start(void)
{
        capture = tmpfile();
        ck_assert_ptr_nonnull(capture);
        ck_assert_int_ge(dup2(fileno(capture), STDERR_FILENO), 0);
}

/* Everything written since capture_start (or the last capture_read). malloc'd. */
static char *capture_read(void)
{
        long n;
        char *s;

        fflush(stderr);
        n = (long) lseek(fileno(capture), 0, SEEK_END);
        ck_assert_int_ge(n, 0);
        s = calloc(1, (size_t) n + 1);
        ck_assert_ptr_nonnull(s);
        ck_assert_int_eq(pread(fileno(capture), s, (size_t) n, 0), n);
        ck_assert_int_eq(ftruncate(fileno(capture), 0), 0);
        ck_assert_int_eq(lseek(fileno(capture), 0, SEEK_SET), 0);
        return s;
}

/* Exactly one line, newline-terminated, parsed as JSON. */
static cJSON *one_json_line(char *text)
{
        size_t len = strlen(text);
        cJSON *j;

        ck_assert_msg(len > 0 && text[len - 1] == '\n', "no newline: %s", text);
        ck_assert_msg(strchr(text, '\n') == text + len - 1, "more than one line: %s", text);
        j = cJSON_ParseWithLength(text, len);
        ck_assert_msg(j != NULL, "not JSON: %s", text);
        return j;
}

static const char *jstr(const cJSON *j, const char *key)
{
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);

        ck_assert_msg(cJSON_IsString(v), "%s is not a string", key);
        return v->valuestring;
}

START_TEST(test_log_levels_strings)
{
        ck_assert_int_eq(log_level_from_string("debug"), LOG_LEVEL_DEBUG);
        ck_assert_int_eq(log_level_from_string("info"), LOG_LEVEL_INFO);
        ck_assert_int_eq(log_level_from_string("warn"), LOG_LEVEL_WARNING);
        ck_assert_int_eq(log_level_from_string("warning"), LOG_LEVEL_WARNING);
        ck_assert_int_eq(log_level_from_string("error"), LOG_LEVEL_ERROR);
        ck_assert_int_eq(log_level_from_string("INFO"), _LOG_LEVEL_INVALID);
        ck_assert_int_eq(log_level_from_string(""), _LOG_LEVEL_INVALID);
        ck_assert_int_eq(log_level_from_string(NULL), _LOG_LEVEL_INVALID);
        ck_assert_int_eq(log_format_from_string("json"), LOG_FORMAT_JSON);
        ck_assert_int_eq(log_format_from_string("text"), LOG_FORMAT_TEXT);
        ck_assert_int_eq(log_format_from_string("yaml"), _LOG_FORMAT_INVALID);
        for (int l = 0; l < _LOG_LEVEL_MAX; l++)
                ck_assert_int_eq(log_level_from_string(log_level_to_string(l)), l);
        ck_assert_ptr_null(log_level_to_string(_LOG_LEVEL_MAX));
}
END_TEST

START_TEST(test_log_json_fields)
{
        cJSON *j, *c;
        char *out;
        const char *order[] = { "severity", "message", "time", "probe", "event", "error" };
        size_t i = 0;

        capture_start();
        log_kv(LOG_LEVEL_WARNING, "Probe failed", "probe", "api", "event", "unhealthy", "error", NULL, NULL);
        out = capture_read();
        j = one_json_line(out);
        ck_assert_str_eq(jstr(j, "severity"), "WARNING");
        ck_assert_str_eq(jstr(j, "message"), "Probe failed");
        ck_assert_uint_eq(strlen(jstr(j, "time")), strlen("2026-11-28T21:28:12.123Z"));
        ck_assert_str_eq(jstr(j, "probe"), "api");
        ck_assert_str_eq(jstr(j, "event"), "unhealthy");
        ck_assert(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(j, "error")));
        cJSON_ArrayForEach(c, j)
        {
                ck_assert_uint_lt(i, ELEMENTSOF(order));
                ck_assert_str_eq(c->string, order[i++]);
        }
        ck_assert_uint_eq(i, ELEMENTSOF(order));
        cJSON_Delete(j);
        free(out);
}
END_TEST

START_TEST(test_log_json_escaping)
{
        const char *nasty = "q\"b\\s/n\nt\tr\rc\x01\x1f del\x7f utf8:\xc3\xa9\xe2\x82\xac";
        cJSON *j;
        char *out;

        capture_start();
        log_kv(LOG_LEVEL_ERROR, "m\"\n", "k\"ey", nasty, NULL);
        out = capture_read();
        ck_assert_msg(strstr(out, "\\u0001") && strstr(out, "\\u001f") && strstr(out, "\\u007f"),
                      "control chars not \\u00XX: %s", out);
        ck_assert_msg(strstr(out, "\xc3\xa9\xe2\x82\xac") != NULL, "UTF-8 not kept as-is: %s", out);
        j = one_json_line(out);
        ck_assert_str_eq(jstr(j, "severity"), "ERROR");
        ck_assert_str_eq(jstr(j, "message"), "m\"\n");
        ck_assert_str_eq(jstr(j, "k\"ey"), nasty);
        cJSON_Delete(j);
        free(out);
}
END_TEST

/* Bytes that are not UTF-8 become U+FFFD, as in /status (include/json.h): the line
 * stays valid JSON. */
START_TEST(test_log_invalid_utf8)
{
        cJSON *j;
        char *out;

        capture_start();
        log_kv(LOG_LEVEL_ERROR, "bad \xff", "output", "a\xc3(b\xed\xa0\x80|\xe2\x82", NULL);
        out = capture_read();
        ck_assert_msg(!strchr(out, '\xff') && !strstr(out, "\xed\xa0"), "invalid UTF-8 passed through: %s", out);
        j = one_json_line(out);
        ck_assert_str_eq(jstr(j, "message"), "bad \xef\xbf\xbd");
        ck_assert_str_eq(jstr(j, "output"), "a\xef\xbf\xbd(b\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd|"
                                            "\xef\xbf\xbd\xef\xbf\xbd");
        cJSON_Delete(j);
        free(out);
}
END_TEST

START_TEST(test_log_level_filter)
{
        char *out;
        cJSON *j;

        capture_start();
        /* default before log_setup: info */
        ck_assert(!log_enabled(LOG_LEVEL_DEBUG));
        ck_assert(log_enabled(LOG_LEVEL_INFO));
        log_kv(LOG_LEVEL_DEBUG, "hidden", NULL);
        out = capture_read();
        ck_assert_str_eq(out, "");
        free(out);

        log_setup(LOG_LEVEL_DEBUG, LOG_FORMAT_JSON);
        ck_assert(log_enabled(LOG_LEVEL_DEBUG));
        log_kv(LOG_LEVEL_DEBUG, "shown", NULL);
        out = capture_read();
        j = one_json_line(out);
        ck_assert_str_eq(jstr(j, "severity"), "DEBUG");
        cJSON_Delete(j);
        free(out);

        log_setup(LOG_LEVEL_ERROR, LOG_FORMAT_JSON);
        ck_assert(!log_enabled(LOG_LEVEL_WARNING));
        ck_assert(log_enabled(LOG_LEVEL_ERROR));
        log_kv(LOG_LEVEL_WARNING, "hidden", NULL);
        out = capture_read();
        ck_assert_str_eq(out, "");
        free(out);
        ck_assert(!log_enabled(_LOG_LEVEL_MAX));
}
END_TEST

START_TEST(test_log_text)
{
        char *out;
        const char *rest;

        capture_start();
        log_setup(LOG_LEVEL_INFO, LOG_FORMAT_TEXT);
        log_kv(LOG_LEVEL_INFO, "Probe healthy", "probe", "api", "error", "connection refused", "x", "", "n", NULL,
               NULL);
        out = capture_read();
        /* "2026-11-28T21:28:12.123Z INFO message key=value ..." */
        ck_assert_uint_gt(strlen(out), 25);
        ck_assert_int_eq(out[10], 'T');
        ck_assert_int_eq(out[23], 'Z');
        rest = out + 24;
        ck_assert_str_eq(rest, " INFO Probe healthy probe=api error=\"connection refused\" x=\"\" n=null\n");
        free(out);

        log_kv(LOG_LEVEL_WARNING, "two\nlines", "k", "a\"b", NULL);
        out = capture_read();
        ck_assert_str_eq(out + 24, " WARNING two\\nlines k=\"a\\\"b\"\n");
        free(out);
}
END_TEST

/* A cut string must not end inside a UTF-8 sequence. */
static bool utf8_complete(const char *s)
{
        for (const unsigned char *p = (const unsigned char *) s; *p;) {
                size_t n = *p >= 0xf0 ? 4 : *p >= 0xe0 ? 3 : *p >= 0xc0 ? 2 : 1;

                for (size_t i = 1; i < n; i++)
                        if ((p[i] & 0xc0) != 0x80)
                                return false;
                p += n;
        }
        return true;
}

START_TEST(test_log_truncation)
{
        /* _i: 0 huge message, 1 huge field value (UTF-8), 2 many fields, 3 escapes */
        size_t big = 3 * LOG_LINE_MAX;
        char *s = malloc(big + 1), *out;
        char keybuf[64][16];
        cJSON *j;

        ck_assert_ptr_nonnull(s);
        for (size_t i = 0; i < big; i++)
                s[i] = "abcdefgh"[i % 8];
        if (_i == 1)
                for (size_t i = 0; i + 3 <= big; i += 3)
                        memcpy(s + i, "\xe2\x82\xac", 3);
        if (_i == 3)
                memset(s, '"', big);
        s[big] = '\0';

        capture_start();
        if (_i == 0)
                log_kv(LOG_LEVEL_INFO, s, "probe", "api", NULL);
        else if (_i == 1 || _i == 3)
                log_kv(LOG_LEVEL_INFO, "big field", "probe", "api", "output", s, "after", "x", NULL);
        else {
                char val[200];

                memset(val, 'v', sizeof(val) - 1);
                val[sizeof(val) - 1] = '\0';
                for (int k = 0; k < 64; k++)
                        snprintf(keybuf[k], sizeof(keybuf[k]), "key%d", k);
                log_kv(LOG_LEVEL_INFO, "many", keybuf[0], val, keybuf[1], val, keybuf[2], val, keybuf[3], val,
                       keybuf[4], val, keybuf[5], val, keybuf[6], val, keybuf[7], val, keybuf[8], val, keybuf[9], val,
                       keybuf[10], val, keybuf[11], val, keybuf[12], val, keybuf[13], val, keybuf[14], val, keybuf[15],
                       val, keybuf[16], val, keybuf[17], val, keybuf[18], val, keybuf[19], val, keybuf[20], val,
                       keybuf[21], val, keybuf[22], val, keybuf[23], val, keybuf[24], val, keybuf[25], val, keybuf[26],
                       val, keybuf[27], val, keybuf[28], val, keybuf[29], val, keybuf[30], val, keybuf[31], val,
                       keybuf[32], val, keybuf[33], val, keybuf[34], val, keybuf[35], val, keybuf[36], val, keybuf[37],
                       val, keybuf[38], val, keybuf[39], val, keybuf[40], val, keybuf[41], val, keybuf[42], val,
                       keybuf[43], val, keybuf[44], val, keybuf[45], val, keybuf[46], val, keybuf[47], val, NULL);
        }
        out = capture_read();
        ck_assert_uint_le(strlen(out), LOG_LINE_MAX);
        j = one_json_line(out);
        ck_assert(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "truncated")));
        ck_assert_str_eq(jstr(j, "severity"), "INFO");
        ck_assert_uint_eq(strlen(jstr(j, "time")), 24);
        if (_i == 1) {
                ck_assert_str_eq(jstr(j, "probe"), "api");
                ck_assert(utf8_complete(jstr(j, "output")));
                ck_assert_uint_gt(strlen(jstr(j, "output")), LOG_LINE_MAX / 2);
                ck_assert_ptr_null(cJSON_GetObjectItemCaseSensitive(j, "after"));
        }
        if (_i == 0)
                ck_assert_uint_gt(strlen(jstr(j, "message")), LOG_LINE_MAX / 2);
        cJSON_Delete(j);
        free(out);
        free(s);
}
END_TEST

START_TEST(test_log_text_truncation)
{
        size_t big = 2 * LOG_LINE_MAX;
        char *s = malloc(big + 1), *out;

        ck_assert_ptr_nonnull(s);
        memset(s, 'x', big);
        s[big] = '\0';
        capture_start();
        log_setup(LOG_LEVEL_INFO, LOG_FORMAT_TEXT);
        log_kv(LOG_LEVEL_INFO, "m", "k", s, NULL);
        out = capture_read();
        ck_assert_uint_le(strlen(out), LOG_LINE_MAX);
        ck_assert_int_eq(out[strlen(out) - 1], '\n');
        ck_assert_ptr_eq(strchr(out, '\n'), out + strlen(out) - 1);
        free(out);
        free(s);
}
END_TEST

static Suite *util_suite(void)
{
        Suite *s = suite_create("util");
        TCase *tc;

        tc = tcase_create("duration");
        tcase_set_timeout(tc, 10);
        tcase_add_loop_test(tc, test_duration_valid, 0, ELEMENTSOF(valid_durations));
        tcase_add_loop_test(tc, test_duration_invalid, 0, ELEMENTSOF(invalid_durations));
        tcase_add_test(tc, test_duration_null);
        tcase_add_loop_test(tc, test_duration_format, 0, ELEMENTSOF(formats));
        tcase_add_test(tc, test_duration_round_trip);
        tcase_add_test(tc, test_duration_format_small_buffer);
        suite_add_tcase(s, tc);

        tc = tcase_create("time");
        tcase_set_timeout(tc, 10);
        tcase_add_test(tc, test_rfc3339_known);
        tcase_add_test(tc, test_rfc3339_shape);
        tcase_add_test(tc, test_clocks);
        tcase_add_test(tc, test_strdup_printf);
        suite_add_tcase(s, tc);
        return s;
}

static Suite *log_suite(void)
{
        Suite *s = suite_create("log");
        TCase *tc = tcase_create("lines");

        tcase_set_timeout(tc, 10);
        tcase_add_test(tc, test_log_levels_strings);
        tcase_add_test(tc, test_log_json_fields);
        tcase_add_test(tc, test_log_json_escaping);
        tcase_add_test(tc, test_log_invalid_utf8);
        tcase_add_test(tc, test_log_level_filter);
        tcase_add_test(tc, test_log_text);
        tcase_add_loop_test(tc, test_log_truncation, 0, 4);
        tcase_add_test(tc, test_log_text_truncation);
        suite_add_tcase(s, tc);
        return s;
}

int main(void)
{
        SRunner *sr = srunner_create(util_suite());
        int failed;

        srunner_add_suite(sr, log_suite());
        srunner_set_fork_status(sr, CK_FORK);
        srunner_run_all(sr, CK_NORMAL);
        failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
