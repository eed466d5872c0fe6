/* Fuzz target: RFC 6901 JSON pointers and expect_json (include/expect.h).
 *
 * The input's first line is a pointer, the rest a JSON document (a response body).
 * Properties (abort() on violation):
 *   - json_pointer_get returns NULL for a pointer json_pointer_valid refuses;
 *   - for a valid pointer into a document that parses, what it returns is a node of that
 *     document (or NULL), and expect_json {pointer: a copy of it} matches the body
 *     (unless cJSON_Compare cannot find the copy equal: a non-finite number);
 *   - every member of an object found is reached again by the pointer extended with its
 *     key (escaped ~0 ~1), and every element of an array by its index;
 *   - json_expect_match's reason stays inside its buffer and is NUL-terminated, for any
 *     buffer size from 1 to 64, and (from 2 bytes on) is empty exactly when it matches.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "expect.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fail(const char *what, const char *ptr)
{
        fprintf(stderr, "fuzz_jsonptr: %s (pointer \"%s\")\n", what, ptr);
        abort();
}

static bool in_tree(const cJSON *root, const cJSON *node)
{
        const cJSON *c;

        if (root == node)
                return true;
        for (c = root ? root->child : NULL; c; c = c->next)
                if (in_tree(c, node))
                        return true;
        return false;
}

/* pointer + "/" + key escaped */
static char *extend(const char *ptr, const char *key)
{
        size_t n = strlen(ptr), k = strlen(key), o = n + 1;
        char *s = malloc(n + 2 * k + 2);

        if (!s)
                return NULL;
        memcpy(s, ptr, n);
        s[n] = '/';
        for (const char *c = key; *c; c++) {
                if (*c == '~' || *c == '/') {
                        s[o++] = '~';
                        s[o++] = *c == '~' ? '0' : '1';
                } else
                        s[o++] = *c;
        }
        s[o] = '\0';
        return s;
}

static void check_match(const char *ptr, const cJSON *value, const char *body, size_t len)
{
        cJSON *want = cJSON_CreateObject(), *copy = cJSON_Duplicate(value, true);
        char err[160];

        /* cJSON_Compare never finds a non-finite number (1e999) equal to itself: not ours */
        if (!want || !copy || !cJSON_Compare(value, copy, true) || !cJSON_AddItemToObject(want, ptr, copy)) {
                cJSON_Delete(want);
                cJSON_Delete(copy);
                return;
        }
        if (!json_expect_match(want, body, len, err, sizeof(err)))
                fail(err, ptr);
        if (err[0] != '\0')
                fail("a match left a reason", ptr);
        cJSON_Delete(want);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        const uint8_t *nl = memchr(data, '\n', size);
        size_t plen = nl ? (size_t) (nl - data) : size, blen = nl ? size - plen - 1 : 0;
        char *ptr = strndup((const char *) data, plen), err[72];
        const char *body = nl ? (const char *) nl + 1 : "";
        cJSON *doc, *want;
        const cJSON *got, *c;
        bool valid;
        int i = 0;

        if (!ptr)
                return 0;
        valid = json_pointer_valid(ptr);
        doc = cJSON_ParseWithLength(body, blen);
        got = json_pointer_get(doc, ptr);
        if (!valid && got)
                fail("an invalid pointer found a value", ptr);
        if (got && !in_tree(doc, got))
                fail("the value found is not in the document", ptr);
        /* a random expectation: never crashes, reason bounded */
        want = cJSON_CreateObject();
        if (want && cJSON_AddNullToObject(want, ptr)) {
                for (size_t n = 1; n <= 64; n++) {
                        memset(err, 'X', sizeof(err));
                        bool ok = json_expect_match(want, body, blen, err, n);
                        if (strnlen(err, n) >= n || (n < sizeof(err) && err[n] != 'X'))
                                fail("reason past its buffer", ptr);
                        if (n > 1 && ok != (err[0] == '\0'))
                                fail("reason empty exactly when matching broken", ptr);
                }
        }
        cJSON_Delete(want);
        if (got && json_pointer_valid(ptr)) {
                const char *end = NULL;
                cJSON *strict = cJSON_ParseWithLengthOpts(body, blen, &end, false);
                bool whole = strict && end;
                while (whole && end < body + blen && (*end == ' ' || *end == '\t' || *end == '\r' || *end == '\n'))
                        end++;
                if (whole && end == body + blen)
                        check_match(ptr, got, body, blen);
                cJSON_Delete(strict);
                cJSON_ArrayForEach(c, got)
                {
                        char idx[16], *sub;
                        if (cJSON_IsObject(got) && !c->string)
                                continue;
                        if (cJSON_IsArray(got))
                                snprintf(idx, sizeof(idx), "%d", i++);
                        sub = extend(ptr, cJSON_IsObject(got) ? c->string : idx);
                        if (!sub)
                                continue;
                        /* a key repeated in the object finds its first occurrence */
                        const cJSON *again = json_pointer_get(doc, sub);
                        if (!again || (!cJSON_IsObject(got) && again != c))
                                fail("a member is not reached by its pointer", sub);
                        free(sub);
                }
        }
        cJSON_Delete(doc);
        free(ptr);
        return 0;
}
