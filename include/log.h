/* JSON-lines logging on stderr, as Cloud Logging reads it (README, "Logs").
 * log_kv(level, message, "key", "value", ..., NULL): user-controlled strings go in
 * fields, never in the message. Thread-safe: one write(2) per line. */
#pragma once
#include <errno.h>
#include <stdbool.h>

enum log_level {
        LOG_LEVEL_DEBUG,
        LOG_LEVEL_INFO,
        LOG_LEVEL_WARNING,
        LOG_LEVEL_ERROR,
        _LOG_LEVEL_MAX,
        _LOG_LEVEL_INVALID = -EINVAL,
};

enum log_format {
        LOG_FORMAT_JSON,
        LOG_FORMAT_TEXT,
        _LOG_FORMAT_MAX,
        _LOG_FORMAT_INVALID = -EINVAL,
};

const char *log_level_to_string(enum log_level l);   /* "debug" ... */
enum log_level log_level_from_string(const char *s); /* _LOG_LEVEL_INVALID if unknown */
enum log_format log_format_from_string(const char *s);

void log_setup(enum log_level level, enum log_format format);
bool log_enabled(enum log_level level);
/* Fields are (const char *key, const char *value) pairs ending with NULL;
 * a NULL value is written as JSON null. */
void log_kv(enum log_level level, const char *message, ...) __attribute__((sentinel));
