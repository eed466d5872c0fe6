/* Shared libcurl setup for probe kinds; see include/probe_curl.h. */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <string.h>
#include <sys/socket.h>

#include <openssl/x509.h>

#include "bounds.h"
#include "loop.h"
#include "probe_curl.h"
#include "resolver.h"

/* No libcurl time limit of its own: the lifecycle's deadline ends every attempt and
 * counts only awake time, while libcurl's clock would run on through a freeze (README,
 * "Freezes and CPU throttling"). Its connect limit cannot be switched off: a day. */
#define CURL_CONNECT_LIMIT_MS (24L * 3600 * 1000)

static int sockopt_linger0(void *clientp, curl_socket_t fd, curlsocktype purpose)
{
        const struct linger lg = { .l_onoff = 1, .l_linger = 0 };

        (void) clientp;
        (void) purpose;
        /* Abortive close: probed never holds TIME_WAIT (README "Probe kinds", 1,000 probes/s). */
        (void) setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
        return CURL_SOCKOPT_OK;
}

static curl_socket_t opensocket_record_errno(void *clientp, curlsocktype purpose, struct curl_sockaddr *a)
{
        int *ret_errno = clientp;
        curl_socket_t fd;

        (void) purpose;
        fd = socket(a->family, a->socktype | SOCK_CLOEXEC, a->protocol);
        if (fd == CURL_SOCKET_BAD && ret_errno)
                *ret_errno = errno;
        return fd;
}

/* Idle easy handles kept for the next attempts: an attempt then costs no handle
 * allocation (libcurl keeps its buffers in the handle). The loop is the only user. */
static CURL *pool[CURL_POOL_MAX];
static size_t pool_len;

void probe_curl_free(CURL *e)
{
        if (!e)
                return;
        if (pool_len == CURL_POOL_MAX) {
                curl_easy_cleanup(e);
                return;
        }
        curl_easy_reset(e);
        pool[pool_len++] = e;
}

void probe_curl_pool_drain(void)
{
        while (pool_len > 0)
                curl_easy_cleanup(pool[--pool_len]);
}

CURL *probe_curl_new(const char *url, int *ret_socket_errno)
{
        CURL *e = pool_len > 0 ? pool[--pool_len] : curl_easy_init();

        if (!e)
                return NULL;
        if (curl_easy_setopt(e, CURLOPT_URL, url) != CURLE_OK)
                goto fail;
        curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(e, CURLOPT_PROXY, "");
        curl_easy_setopt(e, CURLOPT_NOPROXY, "*");
        curl_easy_setopt(e, CURLOPT_FORBID_REUSE, 1L);
        curl_easy_setopt(e, CURLOPT_FRESH_CONNECT, 1L);
        curl_easy_setopt(e, CURLOPT_SOCKOPTFUNCTION, sockopt_linger0);
        curl_easy_setopt(e, CURLOPT_OPENSOCKETFUNCTION, opensocket_record_errno);
        curl_easy_setopt(e, CURLOPT_OPENSOCKETDATA, ret_socket_errno);
        curl_easy_setopt(e, CURLOPT_USERAGENT, "probed/" PROBED_VERSION);
        curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, 0L);
        curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, CURL_CONNECT_LIMIT_MS);
        /* unverified, as kubelet; a probe's TLS keys change it (probe_tls_apply) */
        curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 0L);
        curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 0L);
        curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
        /* a probe reads a few KB at most: 4 KB instead of libcurl's 16 KB per handle */
        curl_easy_setopt(e, CURLOPT_BUFFERSIZE, (long) CURL_BUFFER_BYTES);
        return e;
fail:
        probe_curl_free(e);
        return NULL;
}

/* Why the server's certificate was refused (README "Probe kinds", TLS): OpenSSL's verify
 * result ("certificate has expired", "unable to get local issuer certificate"). libcurl
 * (7.88) checks the name first and leaves the result at its initial !X509_V_OK (1,
 * X509_V_ERR_UNSPECIFIED) when the certificate does not name the server. */
static void tls_verify_error(CURL *easy, char *buf, size_t n)
{
        long v = X509_V_OK;

        (void) curl_easy_getinfo(easy, CURLINFO_SSL_VERIFYRESULT, &v);
        snprintf(buf, n, "certificate verify failed: %s",
                 v != X509_V_OK && v != X509_V_ERR_UNSPECIFIED ? X509_verify_cert_error_string(v)
                                                               : "the certificate does not name the server");
}

enum outcome probe_curl_error(CURL *easy, CURLcode rc, int socket_errno, char *buf, size_t n)
{
        long os_errno = 0;

        if (socket_errno && rc == CURLE_COULDNT_CONNECT) {
                char msg[96];
                probe_strerror(socket_errno, msg, sizeof(msg));
                snprintf(buf, n, "cannot open socket: %s", msg);
                return probe_errno_is_local(socket_errno) ? OUTCOME_ERROR : OUTCOME_FAILURE;
        }
        (void) curl_easy_getinfo(easy, CURLINFO_OS_ERRNO, &os_errno);
        switch (rc) {
        case CURLE_COULDNT_CONNECT:
        case CURLE_RECV_ERROR:
        case CURLE_SEND_ERROR:
                if (os_errno > 0) {
                        probe_strerror((int) os_errno, buf, n);
                        return OUTCOME_FAILURE;
                }
                break;
        case CURLE_GOT_NOTHING:
                snprintf(buf, n, "empty reply from server");
                return OUTCOME_FAILURE;
        case CURLE_PEER_FAILED_VERIFICATION:
                tls_verify_error(easy, buf, n);
                return OUTCOME_FAILURE;
        case CURLE_OUT_OF_MEMORY: {
                long code = 0;

                /* libcurl 7.88 refuses a header line past its own 100 KB limit as "out of
                 * memory": after a status line, that is what happened (the http probe's words) */
                (void) curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &code);
                if (code > 0) {
                        snprintf(buf, n, "response headers too large");
                        return OUTCOME_FAILURE;
                }
                break;
        }
        default:
                break;
        }
        snprintf(buf, n, "%s", curl_easy_strerror(rc)); /* as libcurl spells it: "URL using ...", "SSL ..." */
        return OUTCOME_FAILURE;
}

int probe_curl_pin(CURL *easy, const char *host, const struct addr_list *addrs, struct curl_slist **pin)
{
        char line[300 + ADDR_LIST_MAX * (INET6_ADDRSTRLEN + 3)];
        union sockaddr_any lit;
        socklen_t lit_len;
        size_t off;

        curl_slist_free_all(*pin);
        *pin = NULL;
        if (addrs->n == 0 || resolver_literal(host, 0, &lit, &lit_len))
                return 0;
        off = (size_t) snprintf(line, sizeof(line), "%.255s:%u:", host,
                                (unsigned) ntohs(addrs->a[0].sa.sa_family == AF_INET6 ? addrs->a[0].in6.sin6_port
                                                                                      : addrs->a[0].in4.sin_port));
        for (unsigned i = 0; i < addrs->n; i++) {
                char ip[INET6_ADDRSTRLEN];
                bool v6 = addrs->a[i].sa.sa_family == AF_INET6;

                if (!inet_ntop(addrs->a[i].sa.sa_family,
                               v6 ? (const void *) &addrs->a[i].in6.sin6_addr
                                  : (const void *) &addrs->a[i].in4.sin_addr,
                               ip, sizeof(ip)))
                        continue;
                off += (size_t) snprintf(line + off, sizeof(line) - off, "%s%s%s%s",
                                         off && line[off - 1] != ':' ? "," : "", v6 ? "[" : "", ip, v6 ? "]" : "");
        }
        *pin = curl_slist_append(NULL, line);
        if (!*pin)
                return -ENOMEM;
        curl_easy_setopt(easy, CURLOPT_RESOLVE, *pin);
        return 0;
}
