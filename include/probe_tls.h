/* TLS settings of the libcurl-based kinds (https, wss, grpc with `tls`; README "Probe
 * kinds", TLS): one parser for their keys and one place that hands them to libcurl
 * (probes/probe_tls.c). */
#pragma once
#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <stdbool.h>

/* The TLS keys of a probe, as probe_tls_parse validated them (strings owned). */
struct probe_tls {
        bool verify;       /* tls_verify, or implied by ca_file */
        char *ca_file;     /* PEM bundle: the only trusted CAs (NULL: the system's) */
        char *cert_file;   /* client certificate (mTLS), or NULL */
        char *key_file;    /* its private key (cert_file when not given) */
        char *server_name; /* SNI and the name verified, or NULL: the URL's host */
        /* with server_name: libcurl connects to the URL's own host and port ("::HOST:"),
         * while the URL it is given names server_name */
        struct curl_slist *connect_to;
};

/* The keys, for a kind's keys list: "tls_verify", "ca_file", "cert_file", "key_file",
 * "server_name". */
#define PROBE_TLS_KEYS "tls_verify", "ca_file", "cert_file", "key_file", "server_name"

/* Reads the TLS keys of obj (path: its JSON path) into *ret: a malloc'd struct, or NULL when
 * no key asks for anything (no verification, no file, no name: 10,000 plain probes carry
 * one pointer). tls: whether the target uses TLS
 * (https://, wss://, grpc's tls): without it a TLS key other than tls_verify is an error.
 * Each file is read now (never at an attempt's start), and must hold what it stands for:
 * a certificate (ca_file, cert_file), an unencrypted private key that belongs to
 * cert_file's certificate. Fills tls_verify into obj (true with ca_file) for
 * --check-config. url: the URL libcurl is to fetch (http(s)://), whose host connect_to keeps.
 * Returns 0, or -EINVAL with *reterr naming the key and the file, or -ENOMEM. */
int probe_tls_parse(cJSON *obj, const char *path, bool tls, const char *url, struct probe_tls **ret, char **reterr);

/* Frees what probe_tls_parse returned (NULL-safe). */
void probe_tls_free(struct probe_tls *t);

/* Sets the TLS options of t (nothing for NULL) on a handle from probe_curl_new (verification, CA bundle,
 * client certificate, no TLS session reuse: each attempt sees the certificate the server
 * has now). With server_name, url (the URL the handle is to fetch) is given to libcurl
 * with server_name as its host, and connect_to sends the connection to the URL's own
 * host. Returns 0 or -ENOMEM. */
int probe_tls_apply(CURL *e, const struct probe_tls *t, const char *url);
