/* What a probe checks in an answer beyond its arrival (probes/expect.c; README "Probe
 * kinds"): the byte syntax of tcp's `send` and `expect`, its inverse for last_error, and
 * RFC 6901 JSON pointers for http's `expect_json`. Pure functions, no I/O: the fuzz
 * targets tests/fuzz/fuzz_escape.c and fuzz_jsonptr.c drive them. */
#pragma once
#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>

#define EXPECT_READ_MAX 4096 /* tcp: bytes of the answer read while looking for expect */
#define EXPECT_SHOW_MAX 64   /* bytes of an answer or a value quoted back in last_error */

/* Decodes s: bytes as written, with the escapes \r \n \t \\ and \xHH (two hex digits).
 * On success returns 0 and a malloc'd buffer in *ret (NUL-terminated for convenience;
 * it may hold NULs) of *ret_len bytes. -EINVAL with *why set (static text, e.g.
 * "an unknown escape") and *ret_off the byte offset of
 * the bad escape; -ENOMEM. */
int escape_decode(const char *s, char **ret, size_t *ret_len, size_t *ret_off, const char **why);

/* Writes buf[0..len) in the syntax escape_decode reads (printable ASCII as is, the rest
 * escaped), cut to fit n bytes (NUL included) between two escapes, with "..." when cut.
 * Always NUL-terminated when n > 0. */
void escape_show(const char *buf, size_t len, char *out, size_t n);

/* Is p an RFC 6901 JSON pointer: "" (the whole document), or "/" tokens where '~' is
 * only "~0" ('~') or "~1" ('/')? */
bool json_pointer_valid(const char *p);

/* The value at pointer p in root, or NULL when p names nothing there (or is invalid).
 * An array index is "0" or digits without a leading zero; "-" names nothing. */
const cJSON *json_pointer_get(const cJSON *root, const char *p);

/* Checks a JSON body against want, an object of pointers to the values they must equal
 * (cJSON_Compare, case-sensitive). Returns true when every one matches. Otherwise
 * writes the reason into err (n bytes): "body is not JSON", or each mismatch as
 * "/checks/db is false, want true" / "/x is missing, want 1", joined by "; ". */
bool json_expect_match(const cJSON *want, const char *body, size_t len, char *err, size_t n);
