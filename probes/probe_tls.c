/* TLS keys of the libcurl-based kinds; see include/probe_tls.h. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "config.h"
#include "probe_net.h"
#include "probe_tls.h"
#include "util.h"

#define TLS_CA_CACHE_S 60 /* seconds libcurl keeps a parsed ca_file */

/* No passphrase is ever asked: an encrypted key fails to load. */
static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
        (void) buf;
        (void) size;
        (void) rwflag;
        (void) u;
        return -1;
}

/* Opens file for key, or sets *reterr ("config: probes[0].ca_file: cannot read
 * "/x.pem": no such file or directory"). Only a regular file of at most
 * MAX_CONFIG_BYTES: a FIFO would block the load, /dev/zero would never end. */
static FILE *tls_open(const char *path, const char *key, const char *file, int *r, char **reterr)
{
        int fd = open(file, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
        struct stat st;
        char msg[96];
        FILE *f;

        if (fd < 0 || fstat(fd, &st) < 0) {
                probe_strerror(errno, msg, sizeof(msg));
                if (fd >= 0)
                        close(fd);
                *r = cfg_error(reterr, path, key, "cannot read \"%s\": %s", file, msg);
                return NULL;
        }
        if (!S_ISREG(st.st_mode) || st.st_size > (off_t) MAX_CONFIG_BYTES) {
                close(fd);
                *r = cfg_error(reterr, path, key, "\"%s\" is not a regular file of at most %u bytes", file,
                               MAX_CONFIG_BYTES);
                return NULL;
        }
        f = fdopen(fd, "r");
        if (!f) {
                close(fd);
                *r = -ENOMEM;
        }
        return f;
}

/* Counts the certificates of a PEM file (ca_file); the first one into *ret_first when
 * asked (cert_file). Returns the count (0: none), or -errno when reading failed. */
static int pem_certs(FILE *f, X509 **ret_first)
{
        X509 *x;
        int n = 0;

        while ((x = PEM_read_X509(f, NULL, no_passphrase, NULL))) {
                if (n++ == 0 && ret_first)
                        *ret_first = x;
                else
                        X509_free(x);
        }
        if (ferror(f))
                return -EIO;
        ERR_clear_error(); /* the end of the file reads as an error */
        return n;
}

/* Reads and checks the files; r < 0 with *reterr on the first problem. */
static int tls_check_files(const char *path, const struct probe_tls *t, char **reterr)
{
        X509 *cert = NULL;
        EVP_PKEY *pkey = NULL;
        FILE *f;
        int r = 0, n;

        if (t->ca_file) {
                if (!(f = tls_open(path, "ca_file", t->ca_file, &r, reterr)))
                        return r;
                n = pem_certs(f, NULL);
                fclose(f);
                if (n <= 0)
                        return cfg_error(reterr, path, "ca_file", "\"%s\" holds no PEM certificate", t->ca_file);
        }
        if (!t->cert_file)
                return 0;
        if (!(f = tls_open(path, "cert_file", t->cert_file, &r, reterr)))
                return r;
        n = pem_certs(f, &cert);
        fclose(f);
        if (n <= 0)
                return cfg_error(reterr, path, "cert_file", "\"%s\" holds no PEM certificate", t->cert_file);
        if (!(f = tls_open(path, "key_file", t->key_file, &r, reterr))) {
                X509_free(cert);
                return r;
        }
        pkey = PEM_read_PrivateKey(f, NULL, no_passphrase, NULL);
        fclose(f);
        ERR_clear_error();
        if (!pkey)
                r = cfg_error(reterr, path, "key_file", "\"%s\" holds no unencrypted PEM private key", t->key_file);
        else if (X509_check_private_key(cert, pkey) != 1)
                r = cfg_error(reterr, path, "key_file", "\"%s\" is not the key of cert_file \"%s\"", t->key_file,
                              t->cert_file);
        ERR_clear_error();
        EVP_PKEY_free(pkey);
        X509_free(cert);
        return r;
}

/* A DNS name for SNI: letters, digits, '-', '.', '_'; no empty label. */
static bool server_name_valid(const char *s)
{
        size_t label = 0, n = strlen(s);

        if (n == 0 || n > 253)
                return false;
        for (const char *c = s; *c; c++) {
                if (*c == '.') {
                        if (label == 0)
                                return false;
                        label = 0;
                } else if ((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') ||
                           *c == '-' || *c == '_')
                        label++;
                else
                        return false;
                if (label > 63)
                        return false;
        }
        return true;
}

/* "::HOST:" for url's host: any host and port of a URL goes to HOST, same port. */
static struct curl_slist *connect_to_new(const char *url)
{
        CURLU *u = curl_url();
        char *host = NULL, *entry = NULL;
        struct curl_slist *l = NULL;

        if (u && curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
            curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK && (entry = strdup_printf("::%s:", host)))
                l = curl_slist_append(NULL, entry);
        free(entry);
        curl_free(host);
        curl_url_cleanup(u);
        return l;
}

int probe_tls_parse(cJSON *obj, const char *path, bool tls, const char *url, struct probe_tls **ret, char **reterr)
{
        struct probe_tls *t = NULL;
        static const char *const file_keys[] = { "ca_file", "cert_file", "key_file", "server_name" };
        const char *ca = NULL, *cert = NULL, *key = NULL, *name = NULL;
        bool verify = false, verify_set = cJSON_HasObjectItem(obj, "tls_verify");
        int r;

        *ret = NULL;
        if ((r = cfg_bool(obj, "tls_verify", path, &verify, reterr)) < 0 ||
            (r = cfg_string(obj, "ca_file", path, false, &ca, reterr)) < 0 ||
            (r = cfg_string(obj, "cert_file", path, false, &cert, reterr)) < 0 ||
            (r = cfg_string(obj, "key_file", path, false, &key, reterr)) < 0 ||
            (r = cfg_string(obj, "server_name", path, false, &name, reterr)) < 0)
                return r;
        if (!tls)
                for (size_t i = 0; i < ELEMENTSOF(file_keys); i++)
                        if (cJSON_HasObjectItem(obj, file_keys[i]))
                                return cfg_error(reterr, path, file_keys[i],
                                                 "applies to TLS only (https://, wss://, grpc with \"tls\": true)");
        if (ca && verify_set && !verify)
                return cfg_error(reterr, path, "tls_verify",
                                 "false contradicts ca_file (a CA bundle is for verifying)");
        if (key && !cert)
                return cfg_error(reterr, path, "key_file", "needs cert_file");
        if (name && !server_name_valid(name))
                return cfg_error(reterr, path, "server_name", "\"%s\" is not a DNS name", name);
        if (ca && !verify_set && !cJSON_AddBoolToObject(obj, "tls_verify", true))
                return -ENOMEM;
        if (!cJSON_HasObjectItem(obj, "tls_verify") && !cJSON_AddBoolToObject(obj, "tls_verify", false))
                return -ENOMEM;
        if (!verify && !ca && !cert && !name)
                return 0; /* nothing asked: no struct */
        t = calloc(1, sizeof(*t));
        if (!t)
                return -ENOMEM;
        t->verify = verify || ca;
        if ((ca && !(t->ca_file = strdup(ca))) || (cert && !(t->cert_file = strdup(cert))) ||
            (cert && !(t->key_file = strdup(key ? key : cert))) || (name && !(t->server_name = strdup(name))))
                goto oom;
        if ((r = tls_check_files(path, t, reterr)) < 0) {
                probe_tls_free(t);
                return r;
        }
        if (name && !(t->connect_to = connect_to_new(url)))
                goto oom;
        *ret = t;
        return 0;
oom:
        probe_tls_free(t);
        return -ENOMEM;
}

void probe_tls_free(struct probe_tls *t)
{
        if (!t)
                return;
        free(t->ca_file);
        free(t->cert_file);
        free(t->key_file);
        free(t->server_name);
        curl_slist_free_all(t->connect_to);
        free(t);
}

int probe_tls_apply(CURL *e, const struct probe_tls *t, const char *url)
{
        if (!t)
                return 0; /* probe_curl_new's settings: unverified */
        curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, t->verify ? 1L : 0L);
        curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, t->verify ? 2L : 0L);
        /* a resumed session skips the certificate: each attempt sees the server's own */
        curl_easy_setopt(e, CURLOPT_SSL_SESSIONID_CACHE, 0L);
        if (t->ca_file) {
                curl_easy_setopt(e, CURLOPT_CAINFO, t->ca_file);
                curl_easy_setopt(e, CURLOPT_CAPATH, NULL); /* only the bundle is trusted */
                /* libcurl keeps a parsed bundle for 24 h by default: a renewed one is
                 * read again within a minute */
                curl_easy_setopt(e, CURLOPT_CA_CACHE_TIMEOUT, (long) TLS_CA_CACHE_S);
        }
        if (t->cert_file) {
                curl_easy_setopt(e, CURLOPT_SSLCERT, t->cert_file);
                curl_easy_setopt(e, CURLOPT_SSLKEY, t->key_file);
        }
        if (t->server_name) {
                CURLU *u = curl_url();
                char *named = NULL;
                CURLcode rc = CURLE_OUT_OF_MEMORY;

                if (u && curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
                    curl_url_set(u, CURLUPART_HOST, t->server_name, 0) == CURLUE_OK &&
                    curl_url_get(u, CURLUPART_URL, &named, 0) == CURLUE_OK)
                        rc = curl_easy_setopt(e, CURLOPT_URL, named);
                curl_free(named);
                curl_url_cleanup(u);
                if (rc != CURLE_OK)
                        return -ENOMEM;
                curl_easy_setopt(e, CURLOPT_CONNECT_TO, t->connect_to);
        }
        return 0;
}
