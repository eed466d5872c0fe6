/* Fuzz target: config text (and probe flags) -> config_load.
 *
 * Input layout: when the first byte is 0x01, the lines that follow, up to the first
 * empty line, are probe flags written "KIND ARG" ("tcp app=127.0.0.1:80"); the rest
 * is the config file text. Otherwise the whole input is the config text. An input
 * that holds a NUL byte is cut there (config_load takes a C string).
 *
 * Properties checked (abort() on violation, which libFuzzer and the replay main both
 * report as a crash):
 *   - config_load returns 0 with a config, or a negative errno with an error string
 *     that starts with "config: " (file) or "--" (flag), and never both;
 *   - a loaded config round-trips: config_to_json -> text -> config_load succeeds and
 *     gives the same JSON, the same probe count and probe_config_equal probes.
 *     Exception: the daemon documents no escape for a literal "${", so a config whose
 *     effective values contain "${" (from the environment, a default such as
 *     "${A:-${B}", or a probe flag, which is not expanded) is not a fixed point; the
 *     round trip is skipped for it.
 *
 * The environment is fixed at the first call so that runs are reproducible.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_MAX_FLAGS 8

static void fuzz_env(void)
{
        static int done;

        if (done)
                return;
        done = 1;
        (void) setenv("FUZZ_PORT", "8080", 1);
        (void) setenv("FUZZ_EMPTY", "", 1);
        (void) setenv("FUZZ_DUR", "1m30s", 1);
        (void) setenv("FUZZ_DOLLAR", "${X}", 1);
        (void) unsetenv("FUZZ_UNSET");
        (void) unsetenv("PROBED_TARGET_PORT");
}

static void fail(const char *what, const char *detail)
{
        fprintf(stderr, "fuzz_config: %s%s%s\n", what, detail ? ": " : "", detail ? detail : "");
        abort();
}

static void check_error(int r, struct config *c, char *err)
{
        if (r >= 0)
                fail("negative return expected with an error", NULL);
        if (c)
                fail("config returned with an error", err);
        if (!err) {
                if (r == -ENOMEM)
                        return;
                fail("error without a message", NULL);
        }
        if (strncmp(err, "config: ", 8) != 0 && strncmp(err, "--", 2) != 0)
                fail("error does not start with \"config: \" or \"--\"", err);
}

static void check_round_trip(const struct config *c)
{
        struct config *c2 = NULL;
        char *text, *text2 = NULL, *err = NULL;
        cJSON *j, *j2 = NULL;
        int r;

        j = config_to_json(c);
        if (!j)
                return; /* ENOMEM */
        text = cJSON_PrintUnformatted(j);
        if (!text)
                goto out;
        /* No escape exists for a literal "${" (documented in daemon/config.c), so an
         * effective config holding one (from the environment, a "${A:-${B}" default, or
         * a probe flag, which is never expanded) means something else when loaded
         * again: not a fixed point, nothing to compare. */
        if (strstr(text, "${"))
                goto out;
        r = config_load(text, NULL, 0, &c2, &err);
        if (r < 0) {
                check_error(r, c2, err);
                fprintf(stderr, "effective config: %s\nreload error: %s\n", text, err ? err : "(null)");
                fail("effective config does not load again", NULL);
        }
        if (!c2 || err)
                fail("success without a config, or with an error", err);
        j2 = config_to_json(c2);
        if (!j2)
                goto out;
        /* the printed text, not cJSON_Compare: that finds an object with a repeated key
         * (two "headers" of one name) unequal to itself, as it looks each key up by name */
        text2 = cJSON_PrintUnformatted(j2);
        if (text2 && strcmp(text, text2) != 0) {
                fprintf(stderr, "first:  %s\nsecond: %s\n", text, text2);
                fail("config_to_json differs after a round trip", NULL);
        }
        if (c->n_probes != c2->n_probes)
                fail("probe count differs after a round trip", NULL);
        for (size_t i = 0; i < c->n_probes; i++)
                if (!probe_config_equal(&c->probes[i], &c2->probes[i]))
                        fail("probe differs after a round trip", c->probes[i].name);
out:
        free(text2);
        cJSON_Delete(j2);
        config_free(c2);
        free(err);
        cJSON_free(text);
        cJSON_Delete(j);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        struct probe_flag flags[FUZZ_MAX_FLAGS];
        struct config *c = NULL;
        char *buf, *text, *err = NULL;
        size_t n_flags = 0;
        int r;

        if (size == 0)
                return 0;
        fuzz_env();
        buf = malloc(size + 1);
        if (!buf)
                return 0;
        memcpy(buf, data, size);
        buf[size] = '\0';
        text = buf;

        if (buf[0] == 0x01) {
                char *p = buf + 1;

                /* "KIND ARG\n" lines until an empty line or the end. */
                while (*p && *p != '\n' && n_flags < FUZZ_MAX_FLAGS) {
                        char *eol = strchr(p, '\n'), *sp;

                        if (eol)
                                *eol = '\0';
                        sp = strchr(p, ' ');
                        if (sp)
                                *sp = '\0';
                        flags[n_flags].kind = p;
                        flags[n_flags].arg = sp ? sp + 1 : "";
                        n_flags++;
                        p = eol ? eol + 1 : p + strlen(p);
                }
                if (*p == '\n')
                        p++;
                text = p;
        }

        r = config_load(*text || n_flags == 0 ? text : NULL, flags, n_flags, &c, &err);
        if (r < 0)
                check_error(r, c, err);
        else if (!c || err)
                fail("success without a config, or with an error", err);
        else
                check_round_trip(c);

        config_free(c);
        free(err);
        free(buf);
        return 0;
}
