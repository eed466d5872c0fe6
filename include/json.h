/* JSON string escaping (daemon/json.c): one policy for /status (daemon/snapshot.c) and
 * the log lines (daemon/log.c), so that both are always valid JSON in valid UTF-8:
 *   '"' and '\' are escaped; \n \r \t as such; other control bytes (< 0x20) and DEL
 *   as \u00XX; valid UTF-8 goes out as is; every byte of an invalid sequence (a stray
 *   continuation byte, an overlong form, a surrogate, a code point above U+10FFFF, a
 *   sequence cut short) becomes U+FFFD.
 * A writer alternates json_plain_len (a run to copy unchanged) and json_escape_byte
 * (what the byte the run stopped at becomes), which lets it cut a string between two
 * characters, never inside an escape or a sequence. */
#pragma once
#include <stddef.h>

#define JSON_ESCAPE_MAX 6 /* the longest replacement of one byte: "\u001f" */

/* How many bytes at the start of s go out unchanged: whole characters only. */
size_t json_plain_len(const char *s);

/* What the byte c, at which json_plain_len stopped (not NUL), becomes: written into out
 * (not NUL-terminated); returns its length. It stands for that one byte of the input. */
size_t json_escape_byte(unsigned char c, char out[JSON_ESCAPE_MAX]);

/* Length of the valid UTF-8 sequence at p (lead byte >= 0x80), or 0 when it is not one.
 * Reads stop at a NUL (it fails every continuation test). */
size_t utf8_valid_len(const unsigned char *p);
