/* Regression replay for the fuzz targets without libFuzzer (built with gcc):
 *   replay_<name> FILE|DIR...
 * feeds each file named, and every regular file of each directory named (not
 * recursively, in name order), to LLVMFuzzerTestOneInput, one call per file, and
 * prints "replay: N inputs". A target that finds a violation aborts, so a failing input
 * is the last one printed with -v. Exits 1 when a file cannot be read, 0 otherwise.
 * (systemd's src/fuzz/fuzz-main.c does the same for oss-fuzz targets.)
 */
#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int verbose;

static int replay_file(const char *path)
{
        uint8_t *buf = NULL;
        size_t len = 0, cap = 0;
        FILE *f;
        int r = 0;

        f = fopen(path, "rb");
        if (!f) {
                fprintf(stderr, "replay: %s: %s\n", path, strerror(errno));
                return -errno;
        }
        for (;;) {
                size_t got;

                if (len == cap) {
                        uint8_t *nb;

                        cap = cap ? cap * 2 : 4096;
                        nb = realloc(buf, cap);
                        if (!nb) {
                                r = -ENOMEM;
                                goto out;
                        }
                        buf = nb;
                }
                got = fread(buf + len, 1, cap - len, f);
                len += got;
                if (got == 0)
                        break;
        }
        if (ferror(f)) {
                fprintf(stderr, "replay: %s: read error\n", path);
                r = -EIO;
                goto out;
        }
        if (verbose)
                fprintf(stderr, "replay: %s (%zu bytes)\n", path, len);
        /* Exactly len bytes (a fresh allocation), as libFuzzer passes them. */
        {
                uint8_t *exact = malloc(len ? len : 1);

                if (!exact) {
                        r = -ENOMEM;
                        goto out;
                }
                memcpy(exact, buf, len);
                (void) LLVMFuzzerTestOneInput(exact, len);
                free(exact);
        }
out:
        free(buf);
        (void) fclose(f);
        return r;
}

static int cmp_names(const void *a, const void *b)
{
        return strcmp(*(char *const *) a, *(char *const *) b);
}

int main(int argc, char **argv)
{
        unsigned long count = 0;
        int failed = 0;

        for (int i = 1; i < argc; i++) {
                struct stat st;

                if (strcmp(argv[i], "-v") == 0) {
                        verbose = 1;
                        continue;
                }
                if (stat(argv[i], &st) < 0) {
                        fprintf(stderr, "replay: %s: %s\n", argv[i], strerror(errno));
                        failed = 1;
                        continue;
                }
                if (S_ISDIR(st.st_mode)) {
                        DIR *d = opendir(argv[i]);
                        size_t n = 0, cap = 0;
                        struct dirent *e;

                        if (!d) {
                                fprintf(stderr, "replay: %s: %s\n", argv[i], strerror(errno));
                                failed = 1;
                                continue;
                        }
                        /* Collect names first so the order is stable. */
                        char **list = NULL;
                        while ((e = readdir(d))) {
                                char *p;
                                struct stat fst;

                                if (e->d_name[0] == '.')
                                        continue;
                                if (asprintf(&p, "%s/%s", argv[i], e->d_name) < 0) {
                                        failed = 1;
                                        break;
                                }
                                if (stat(p, &fst) < 0 || !S_ISREG(fst.st_mode)) {
                                        free(p);
                                        continue;
                                }
                                if (n == cap) {
                                        char **nl = realloc(list, (cap = cap ? cap * 2 : 64) * sizeof(*list));

                                        if (!nl) {
                                                free(p);
                                                failed = 1;
                                                break;
                                        }
                                        list = nl;
                                }
                                list[n++] = p;
                        }
                        (void) closedir(d);
                        if (n)
                                qsort(list, n, sizeof(*list), cmp_names);
                        for (size_t k = 0; k < n; k++) {
                                if (replay_file(list[k]) < 0)
                                        failed = 1;
                                else
                                        count++;
                                free(list[k]);
                        }
                        free(list);
                } else {
                        if (replay_file(argv[i]) < 0)
                                failed = 1;
                        else
                                count++;
                }
        }
        printf("replay: %lu inputs\n", count);
        return failed;
}
