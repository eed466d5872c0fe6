/* Logging: one line per event on stderr, JSON as Cloud Logging reads it (README
 * "Logs"), or
 * "TIME SEVERITY message key=value ..." with --log-format text.
 *
 * Every line is built in a stack buffer of LOG_LINE_MAX bytes and written with one
 * write(2), so lines from the loop thread and the status server's threads never
 * interleave (a write of at most PIPE_BUF is atomic on a pipe; beyond that, one call
 * is still the best a writer can do). No lock, no allocation: logging works when
 * malloc does not.
 *
 * A line that would exceed LOG_LINE_MAX is cut at a character boundary inside the
 * string being written, and stays valid JSON: the open string is closed, fields that
 * no longer fit are dropped, and "truncated":true is appended. Room for the closing
 * part is reserved up front, and the time field is reserved while the message is
 * written, so a huge message never pushes out the timestamp.
 *
 * Level and format are atomics: log_setup() may run again (config reload) while the
 * server threads log.
 */
#include <stdarg.h>
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>

#include "bounds.h"
#include "json.h"
#include "log.h"
#include "util.h"

static _Atomic int log_max_level = LOG_LEVEL_INFO;
static _Atomic int log_format = LOG_FORMAT_JSON;

static const char *const level_names[_LOG_LEVEL_MAX] = {
        [LOG_LEVEL_DEBUG] = "debug",
        [LOG_LEVEL_INFO] = "info",
        [LOG_LEVEL_WARNING] = "warn",
        [LOG_LEVEL_ERROR] = "error",
};

static const char *const severity_names[_LOG_LEVEL_MAX] = {
        [LOG_LEVEL_DEBUG] = "DEBUG",
        [LOG_LEVEL_INFO] = "INFO",
        [LOG_LEVEL_WARNING] = "WARNING",
        [LOG_LEVEL_ERROR] = "ERROR",
};

const char *log_level_to_string(enum log_level l)
{
        if ((int) l < 0 || l >= _LOG_LEVEL_MAX)
                return NULL;
        return level_names[l];
}

enum log_level log_level_from_string(const char *s)
{
        if (!s)
                return _LOG_LEVEL_INVALID;
        if (strcmp(s, "warning") == 0) /* the severity's spelling, accepted too */
                return LOG_LEVEL_WARNING;
        for (int l = 0; l < _LOG_LEVEL_MAX; l++)
                if (strcmp(s, level_names[l]) == 0)
                        return (enum log_level) l;
        return _LOG_LEVEL_INVALID;
}

enum log_format log_format_from_string(const char *s)
{
        if (!s)
                return _LOG_FORMAT_INVALID;
        if (strcmp(s, "json") == 0)
                return LOG_FORMAT_JSON;
        if (strcmp(s, "text") == 0)
                return LOG_FORMAT_TEXT;
        return _LOG_FORMAT_INVALID;
}

void log_setup(enum log_level level, enum log_format format)
{
        if ((int) level >= 0 && level < _LOG_LEVEL_MAX)
                atomic_store_explicit(&log_max_level, level, memory_order_relaxed);
        if ((int) format >= 0 && format < _LOG_FORMAT_MAX)
                atomic_store_explicit(&log_format, format, memory_order_relaxed);
}

bool log_enabled(enum log_level level)
{
        if ((int) level < 0 || level >= _LOG_LEVEL_MAX)
                return false;
        return (int) level >= atomic_load_explicit(&log_max_level, memory_order_relaxed);
}

/* ---- line builder ------------------------------------------------------------- */

/* What is reserved at the end: `","truncated":true}` plus '\n' (JSON), or "\n" (text). */
#define TRUNC_TAIL ",\"truncated\":true}\n"

struct line {
        char buf[LOG_LINE_MAX];
        size_t len;
        size_t limit; /* content may not grow past this (room for the tail) */
        bool truncated;
};

/* Appends raw bytes if all of them fit below max; otherwise marks truncation. */
static bool line_put(struct line *l, const char *s, size_t n, size_t max)
{
        if (l->truncated || l->len + n > max) {
                l->truncated = true;
                return false;
        }
        memcpy(l->buf + l->len, s, n);
        l->len += n;
        return true;
}

static bool line_puts(struct line *l, const char *s, size_t max)
{
        return line_put(l, s, strlen(s), max);
}

/* Escapes s as the inside of a JSON string (without quotes; the policy of
 * include/json.h), stopping cleanly at max: never half an escape, never half of a
 * UTF-8 sequence. The text format uses the same escaping, so a value never spans
 * lines. */
static bool line_put_escaped(struct line *l, const char *s, size_t max)
{
        while (*s) {
                size_t n = json_plain_len(s);
                char esc[JSON_ESCAPE_MAX];

                if (n == 0) {
                        if (!line_put(l, esc, json_escape_byte((unsigned char) *s, esc), max))
                                return false;
                        s++;
                        continue;
                }
                if (!l->truncated && l->len + n > max) {
                        /* the part that fits, cut between two characters */
                        n = max - l->len;
                        while (n > 0 && ((unsigned char) s[n] & 0xC0) == 0x80)
                                n--;
                        (void) line_put(l, s, n, max);
                        l->truncated = true;
                        return false;
                }
                if (!line_put(l, s, n, max))
                        return false;
                s += n;
        }
        return true;
}

/* A JSON string: the closing quote is always written, even after truncation, because
 * max leaves room for it (max is at most limit - 1 here). */
static void line_put_json_string(struct line *l, const char *s, size_t max)
{
        (void) line_puts(l, "\"", max);
        if (l->truncated)
                return;
        (void) line_put_escaped(l, s, max);
        /* Forced: the reserve guarantees the byte. */
        l->buf[l->len++] = '"';
}

/* One `,"key":value` field, or nothing at all when even the start does not fit. */
static void line_put_json_field(struct line *l, const char *key, const char *value)
{
        size_t mark = l->len;

        if (l->truncated)
                return;
        if (!line_puts(l, ",", l->limit - 1))
                return;
        line_put_json_string(l, key ? key : "", l->limit - 1);
        if (l->truncated) {
                l->len = mark; /* a cut key is useless: drop the whole field */
                return;
        }
        if (!line_puts(l, ":", l->limit - 1)) {
                l->len = mark;
                return;
        }
        if (!value) {
                if (!line_puts(l, "null", l->limit))
                        l->len = mark;
                return;
        }
        /* Need at least the two quotes; otherwise drop the field. */
        if (l->len + 2 > l->limit) {
                l->len = mark;
                l->truncated = true;
                return;
        }
        line_put_json_string(l, value, l->limit - 1);
}

static bool text_needs_quotes(const char *s)
{
        if (!*s)
                return true;
        for (const unsigned char *p = (const unsigned char *) s; *p; p++)
                if (*p <= ' ' || *p == '"' || *p == '=' || *p == '\\' || *p == 0x7f)
                        return true;
        return false;
}

static void line_put_text_value(struct line *l, const char *s)
{
        if (!text_needs_quotes(s)) {
                (void) line_put_escaped(l, s, l->limit);
                return;
        }
        if (l->len + 2 > l->limit) {
                l->truncated = true;
                return;
        }
        l->buf[l->len++] = '"';
        (void) line_put_escaped(l, s, l->limit - 1);
        l->buf[l->len++] = '"';
}

/* The key/value pairs after the message, up to the NULL key, each through put. */
static void line_put_fields(struct line *l, va_list ap, void (*put)(struct line *l, const char *key, const char *value))
{
        for (const char *key; (key = va_arg(ap, const char *));) {
                const char *value = va_arg(ap, const char *);

                put(l, key, value);
        }
}

static void log_build_json(struct line *l, enum log_level level, const char *message, const char *time, va_list ap)
{
        /* `,"time":"` + time + `"` is reserved while the message is written. */
        size_t time_field = strlen(",\"time\":\"\"") + strlen(time);
        bool msg_cut;

        l->limit = sizeof(l->buf) - strlen(TRUNC_TAIL);
        (void) line_puts(l, "{\"severity\":\"", l->limit);
        (void) line_puts(l, severity_names[level], l->limit);
        (void) line_puts(l, "\",\"message\":", l->limit);
        line_put_json_string(l, message ? message : "", l->limit - 1 - time_field);
        msg_cut = l->truncated;

        /* The time field always fits: it was reserved above. */
        l->truncated = false;
        (void) line_puts(l, ",\"time\":\"", l->limit);
        (void) line_puts(l, time, l->limit);
        (void) line_puts(l, "\"", l->limit);
        l->truncated = msg_cut; /* a cut message filled the line: no fields follow */

        line_put_fields(l, ap, line_put_json_field);
}

/* One ` key=value` of the text format; nothing once the line is cut. */
static void line_put_text_field(struct line *l, const char *key, const char *value)
{
        if (l->truncated)
                return;
        (void) line_puts(l, " ", l->limit);
        (void) line_put_escaped(l, key, l->limit);
        (void) line_puts(l, "=", l->limit);
        if (!l->truncated)
                line_put_text_value(l, value ? value : "null");
}

static void log_build_text(struct line *l, enum log_level level, const char *message, const char *time, va_list ap)
{
        l->limit = sizeof(l->buf) - 1; /* the '\n' */
        (void) line_puts(l, time, l->limit);
        (void) line_puts(l, " ", l->limit);
        (void) line_puts(l, severity_names[level], l->limit);
        (void) line_puts(l, " ", l->limit);
        (void) line_put_escaped(l, message ? message : "", l->limit);
        line_put_fields(l, ap, line_put_text_field);
}

static void log_write(const char *buf, size_t len)
{
        while (len > 0) {
                ssize_t n = write(STDERR_FILENO, buf, len);

                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return; /* nowhere left to report it */
                }
                buf += n;
                len -= (size_t) n;
        }
}

void log_kv(enum log_level level, const char *message, ...)
{
        struct line l = { .len = 0 };
        char time[40];
        int saved_errno = errno; /* callers log right before reading errno again */
        va_list ap;

        if (!log_enabled(level))
                return;

        format_rfc3339(wall_ns(), time, sizeof(time));
        va_start(ap, message);
        if (atomic_load_explicit(&log_format, memory_order_relaxed) == LOG_FORMAT_TEXT) {
                log_build_text(&l, level, message, time, ap);
                l.buf[l.len++] = '\n';
        } else {
                log_build_json(&l, level, message, time, ap);
                if (l.truncated) {
                        memcpy(l.buf + l.len, TRUNC_TAIL, strlen(TRUNC_TAIL));
                        l.len += strlen(TRUNC_TAIL);
                } else {
                        memcpy(l.buf + l.len, "}\n", 2);
                        l.len += 2;
                }
        }
        va_end(ap);

        log_write(l.buf, l.len);
        errno = saved_errno;
}
