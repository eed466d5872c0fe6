/* An incremental HTTP/1.x response parser for the http probe's own client: bytes go in
 * as they arrive, body bytes come out through a callback, nothing is read twice.
 *
 *   HEAD --(blank line)--> 1xx (not 101): next HEAD
 *        |                 HEAD request, 101, 204, 304: DONE
 *        |                 Transfer-Encoding chunked: CHUNKED --(0-size chunk, trailers)--> DONE
 *        |                 Content-Length n: LENGTH --(n bytes)--> DONE
 *        +                 neither: UNTIL_EOF --(connection closed)--> DONE
 *
 * The response heads are bounded by head_max bytes in all (interim 1xx included). A
 * head that arrives in one read is parsed in place; only a head split across reads is
 * copied (into a buffer that grows to at most head_max). Pure: no I/O, no clock. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum {
        HTTP_RESP_ERROR = -1, /* malformed or too large: reason in r->error */
        HTTP_RESP_MORE = 0,   /* feed more bytes (or http_resp_eof) */
        HTTP_RESP_DONE = 1,   /* the response ended */
        HTTP_RESP_ENOUGH = 2, /* the body callback asked to stop reading */
};

/* Body bytes, in order; return false to stop (the rest is not read). */
typedef bool (*http_body_fn)(const char *buf, size_t len, void *data);

struct http_resp {
        /* set by the caller before the first feed */
        bool no_body;    /* the request was HEAD */
        size_t head_max; /* response head bytes accepted */
        /* results */
        unsigned status;   /* of the final response, once its head is parsed */
        char *location;    /* Location of a 3xx (malloc'd) or NULL */
        const char *error; /* static reason after HTTP_RESP_ERROR */
        int err;           /* and its kind: -EPROTO (the response), -ENOMEM (probed's own) */
        /* internal */
        int state, chunk_state;
        bool line_empty;    /* chunked trailers: the current line has no byte yet */
        uint64_t remaining; /* LENGTH: body bytes left; CHUNKED: bytes left of this chunk */
        size_t heads_len;   /* bytes of the heads already parsed */
        char *head;         /* a partial head, when split across feeds */
        size_t head_len, head_cap;
};

/* Feeds len bytes. Returns HTTP_RESP_MORE, DONE, ENOUGH or ERROR; after anything but
 * MORE, further calls return the same. */
int http_resp_feed(struct http_resp *r, const char *buf, size_t len, http_body_fn fn, void *data);
/* The peer closed the connection: DONE when that ends the response, else ERROR
 * ("empty reply from server", "connection closed before the response ended"). */
int http_resp_eof(struct http_resp *r);
/* Frees what the parser holds; r may be fed again after zeroing its settings. */
void http_resp_free(struct http_resp *r);

/* ---- shared with the websocket handshake (probes/wsframe.c) ------------------------ */

/* The status code of a status line "HTTP/1.<digit> <3 digits>[ <reason>]" (line without
 * its CRLF or LF), 100 to 599, or -1 when it is malformed. */
int http_status_line(const char *line, size_t len);
/* Splits a header line (without its line end) at its colon: *ret_name_len bytes of name
 * at line, the value with the white space around it trimmed. false when the line has no
 * colon (such a line is ignored, as most clients do). */
bool http_header_split(const char *line, size_t len, size_t *ret_name_len, const char **ret_value,
                       size_t *ret_value_len);
