/* Compiled core of pipelines.dedup.normalize: normalize + SHA-256 of many texts in one call.
 *
 * hash_texts(texts, strip_tokens, normalize) -> bytes of 32 * len(texts)
 *   strip_tokens: normalize.strip_token_numbers; normalize: unicodedata.normalize
 *
 * Each digest equals pipelines.dedup.normalize.content_hash(text) (the pure-Python definition; a test
 * compares both on every code point and on random text):
 *   1. PII token numbers dropped: "[PHONE_2]" -> "[PHONE]" (leftmost, non-overlapping, like re.sub);
 *   2. NFKC (ASCII is already NFKC; otherwise unicodedata.normalize, which returns its argument when
 *      its quick check passes);
 *   3. whitespace folded: runs of str.isspace() characters become one space, ends stripped;
 *   4. SHA-256 over the UTF-8 bytes.
 * ASCII text (the common case) takes one pass of 1 and 3 over its bytes, no Python objects made.
 * Other text runs 1 and 2 through the Python callables given (C functions of re and unicodedata, so
 * the definition stays in one place), then 3 and the UTF-8 encoding here.
 *
 * Built by `python -m pipelines.dedup.build` (scripts/bootstrap.sh runs it); without it the module
 * falls back to the pure-Python path, with identical results.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>
#include <openssl/evp.h>

#define DIGEST 32

static EVP_MD *sha256_md;

/* ------------------------------------------------------------------ whitespace (str.isspace) */
static inline int
is_space(Py_UCS4 ch)
{
    if (ch > 0x3000) {  /* the last whitespace character is U+3000 */
        return 0;
    }
    if (ch < 128) {
        return ch == ' ' || (ch >= 0x09 && ch <= 0x0D) || (ch >= 0x1C && ch <= 0x1F);
    }
    switch (ch) {
    case 0x85: case 0xA0: case 0x1680: case 0x2028: case 0x2029: case 0x202F: case 0x205F: case 0x3000:
        return 1;
    default:
        return ch >= 0x2000 && ch <= 0x200A;
    }
}

/* ------------------------------------------------------------------ PII tokens */
static const char *const TOKEN_NAMES[] = {"EMAIL", "PHONE", "ID", "CARD", "ADDR"};

/* If s[i..n) starts with "[NAME_<digits>]", return the length of that match and set *name_len. */
static Py_ssize_t
token_at(const unsigned char *s, Py_ssize_t i, Py_ssize_t n, Py_ssize_t *name_len)
{
    for (size_t t = 0; t < sizeof(TOKEN_NAMES) / sizeof(TOKEN_NAMES[0]); t++) {
        Py_ssize_t len = (Py_ssize_t)strlen(TOKEN_NAMES[t]);
        Py_ssize_t j = i + 1;
        if (j + len > n || memcmp(s + j, TOKEN_NAMES[t], (size_t)len) != 0) {
            continue;
        }
        j += len;
        if (j >= n || s[j] != '_') {
            continue;
        }
        j++;
        Py_ssize_t digits = j;
        while (j < n && s[j] >= '0' && s[j] <= '9') {
            j++;
        }
        if (j == digits || j >= n || s[j] != ']') {
            continue;
        }
        *name_len = len;
        return j + 1 - i;
    }
    return 0;
}

/* ------------------------------------------------------------------ buffer */
typedef struct {
    unsigned char *data;
    Py_ssize_t cap;
} Buffer;

static int
reserve(Buffer *b, Py_ssize_t need)
{
    if (need <= b->cap) {
        return 0;
    }
    Py_ssize_t cap = b->cap ? b->cap : 4096;
    while (cap < need) {
        cap *= 2;
    }
    unsigned char *data = PyMem_Realloc(b->data, (size_t)cap);
    if (!data) {
        PyErr_NoMemory();
        return -1;
    }
    b->data = data;
    b->cap = cap;
    return 0;
}

/* ASCII scanning, 16 bytes at a time (GCC vector extensions: SSE2 on x86-64, NEON on arm64).
 * A byte is "special" when folding or token stripping may change it: a control byte (all ASCII
 * whitespace but ' ' is one), '[', or a space followed by another space. Most text has none once
 * its ends are stripped, and is hashed in place with no copy. */
typedef unsigned char v16 __attribute__((vector_size(16)));

static Py_ssize_t
find_special(const unsigned char *s, Py_ssize_t i, Py_ssize_t n)
{
    const v16 space = {' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' '};
    const v16 bracket = {'[', '[', '[', '[', '[', '[', '[', '[', '[', '[', '[', '[', '[', '[', '[', '['};
    for (; i + 17 <= n; i += 16) {
        v16 a, b;
        memcpy(&a, s + i, 16);
        memcpy(&b, s + i + 1, 16);
        v16 bad = (a < space) | (a == bracket) | ((a == space) & (b == space));
        unsigned long long lanes[2];
        memcpy(lanes, &bad, 16);
        if (lanes[0]) {
            return i + (__builtin_ctzll(lanes[0]) >> 3);
        }
        if (lanes[1]) {
            return i + 8 + (__builtin_ctzll(lanes[1]) >> 3);
        }
    }
    for (; i < n; i++) {
        unsigned char c = s[i];
        if (c < ' ' || c == '[' || (c == ' ' && i + 1 < n && s[i + 1] == ' ')) {
            return i;
        }
    }
    return n;
}

/* ASCII: token numbers dropped and whitespace folded. Either points *start at the normalized text
 * inside s (nothing to change but its ends) or writes it to out and points *start there. */
static Py_ssize_t
fold_ascii(const unsigned char *s, Py_ssize_t n, unsigned char *out, const unsigned char **start)
{
    Py_ssize_t i = 0, o = 0;
    while (i < n && is_space(s[i])) {
        i++;
    }
    while (n > i && is_space(s[n - 1])) {
        n--;
    }
    Py_ssize_t p = find_special(s, i, n);
    if (p == n) {
        *start = s + i;
        return n - i;
    }
    *start = out;
    for (;;) {
        memcpy(out + o, s + i, (size_t)(p - i));
        o += p - i;
        i = p;
        if (i == n) {
            return o;
        }
        unsigned char c = s[i];
        if (is_space(c)) {  /* a run inside the text (the ends are stripped): one space */
            while (i < n && is_space(s[i])) {
                i++;
            }
            if (out[o - 1] != ' ') {  /* a span may end with the run's first space */
                out[o++] = ' ';
            }
        }
        else if (c == '[') {
            Py_ssize_t name_len = 0, len = token_at(s, i, n, &name_len);
            if (len) {
                out[o++] = '[';
                memcpy(out + o, s + i + 1, (size_t)name_len);
                o += name_len;
                out[o++] = ']';
                i += len;
            }
            else {
                out[o++] = '[';
                i++;
            }
        }
        else {  /* a control byte that is not whitespace: kept */
            out[o++] = c;
            i++;
        }
        p = find_special(s, i, n);
    }
}

/* Any str: whitespace folded and UTF-8 encoded. Returns the output length, or -1 on a surrogate. */
#define FOLD_UTF8(TYPE)                                                              \
    do {                                                                             \
        const TYPE *d = (const TYPE *)data;                                          \
        for (Py_ssize_t i = 0; i < n; i++) {                                         \
            Py_UCS4 ch = d[i];                                                       \
            if (is_space(ch)) {                                                      \
                pending_space = o > 0;                                               \
                continue;                                                            \
            }                                                                        \
            if (pending_space) {                                                     \
                out[o++] = ' ';                                                      \
                pending_space = 0;                                                   \
            }                                                                        \
            if (ch < 0x80) {                                                         \
                out[o++] = (unsigned char)ch;                                        \
            }                                                                        \
            else if (ch < 0x800) {                                                   \
                out[o++] = (unsigned char)(0xC0 | (ch >> 6));                        \
                out[o++] = (unsigned char)(0x80 | (ch & 0x3F));                      \
            }                                                                        \
            else if (ch < 0x10000) {                                                 \
                if (ch >= 0xD800 && ch <= 0xDFFF) {                                  \
                    return -1;                                                       \
                }                                                                    \
                out[o++] = (unsigned char)(0xE0 | (ch >> 12));                       \
                out[o++] = (unsigned char)(0x80 | ((ch >> 6) & 0x3F));               \
                out[o++] = (unsigned char)(0x80 | (ch & 0x3F));                      \
            }                                                                        \
            else {                                                                   \
                out[o++] = (unsigned char)(0xF0 | (ch >> 18));                       \
                out[o++] = (unsigned char)(0x80 | ((ch >> 12) & 0x3F));              \
                out[o++] = (unsigned char)(0x80 | ((ch >> 6) & 0x3F));               \
                out[o++] = (unsigned char)(0x80 | (ch & 0x3F));                      \
            }                                                                        \
        }                                                                            \
    } while (0)

static Py_ssize_t
fold_utf8(PyObject *text, unsigned char *out)
{
    int kind = PyUnicode_KIND(text);
    const void *data = PyUnicode_DATA(text);
    Py_ssize_t n = PyUnicode_GET_LENGTH(text), o = 0;
    int pending_space = 0;
    if (kind == PyUnicode_1BYTE_KIND) {
        FOLD_UTF8(Py_UCS1);
    }
    else if (kind == PyUnicode_2BYTE_KIND) {
        FOLD_UTF8(Py_UCS2);
    }
    else {
        FOLD_UTF8(Py_UCS4);
    }
    return o;
}

static int
digest(EVP_MD_CTX *ctx, const unsigned char *data, Py_ssize_t n, unsigned char *out)
{
    unsigned int len = 0;
    if (!EVP_DigestInit_ex(ctx, sha256_md, NULL) || !EVP_DigestUpdate(ctx, data, (size_t)n)
        || !EVP_DigestFinal_ex(ctx, out, &len) || len != DIGEST) {
        PyErr_SetString(PyExc_RuntimeError, "OpenSSL SHA-256 failed");
        return -1;
    }
    return 0;
}

static PyObject *NFKC; /* "NFKC" */

/* Steps 1 and 2 for non-ASCII text, through the Python callables. Returns a new reference.
 * unicodedata.normalize returns its argument when the quick check says it is already normalized. */
static PyObject *
prepare_unicode(PyObject *text, PyObject *strip_tokens, PyObject *normalize)
{
    PyObject *t;
    if (PyUnicode_FindChar(text, '[', 0, PyUnicode_GET_LENGTH(text), 1) >= 0) {
        t = PyObject_CallOneArg(strip_tokens, text);
        if (!t) {
            return NULL;
        }
    }
    else {
        Py_INCREF(text);
        t = text;
    }
    PyObject *args[2] = {NFKC, t};
    PyObject *normalized = PyObject_Vectorcall(normalize, args, 2, NULL);
    Py_DECREF(t);
    if (normalized && !PyUnicode_Check(normalized)) {
        PyErr_SetString(PyExc_TypeError, "hash_texts: normalize returned a non-str");
        Py_CLEAR(normalized);
    }
    return normalized;
}

static PyObject *
hash_texts(PyObject *self, PyObject *args)
{
    PyObject *texts, *strip_tokens, *normalize;
    if (!PyArg_ParseTuple(args, "OOO:hash_texts", &texts, &strip_tokens, &normalize)) {
        return NULL;
    }
    PyObject *seq = PySequence_Fast(texts, "hash_texts: texts must be a sequence of str");
    if (!seq) {
        return NULL;
    }
    Py_ssize_t count = PySequence_Fast_GET_SIZE(seq);
    PyObject *result = PyBytes_FromStringAndSize(NULL, count * DIGEST);
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    Buffer buf = {NULL, 0};
    if (!result || !ctx) {
        if (!ctx) {
            PyErr_NoMemory();
        }
        goto fail;
    }
    unsigned char *out = (unsigned char *)PyBytes_AS_STRING(result);
    PyObject **items = PySequence_Fast_ITEMS(seq);
    for (Py_ssize_t k = 0; k < count; k++) {
        PyObject *text = items[k];
        if (!PyUnicode_Check(text)) {
            PyErr_Format(PyExc_TypeError, "hash_texts: item %zd is %.100s, not str", k, Py_TYPE(text)->tp_name);
            goto fail;
        }
        Py_ssize_t n;
        const unsigned char *start;
        if (PyUnicode_IS_ASCII(text)) {
            n = PyUnicode_GET_LENGTH(text);
            if (reserve(&buf, n + 1) < 0) {
                goto fail;
            }
            n = fold_ascii(PyUnicode_1BYTE_DATA(text), n, buf.data, &start);
        }
        else {
            PyObject *t = prepare_unicode(text, strip_tokens, normalize);
            if (!t) {
                goto fail;
            }
            if (reserve(&buf, PyUnicode_GET_LENGTH(t) * 4 + 1) < 0) {
                Py_DECREF(t);
                goto fail;
            }
            n = fold_utf8(t, buf.data);
            if (n < 0) {
                PyObject *encoded = PyUnicode_AsUTF8String(t); /* raises UnicodeEncodeError, as str.encode does */
                Py_XDECREF(encoded);
                Py_DECREF(t);
                if (encoded) {
                    PyErr_SetString(PyExc_ValueError, "hash_texts: surrogate accepted by the UTF-8 encoder");
                }
                goto fail;
            }
            Py_DECREF(t);
            start = buf.data;
        }
        if (digest(ctx, start, n, out + k * DIGEST) < 0) {
            goto fail;
        }
    }
    PyMem_Free(buf.data);
    EVP_MD_CTX_free(ctx);
    Py_DECREF(seq);
    return result;

fail:
    PyMem_Free(buf.data);
    if (ctx) {
        EVP_MD_CTX_free(ctx);
    }
    Py_XDECREF(result);
    Py_DECREF(seq);
    return NULL;
}

static PyMethodDef methods[] = {
    {"hash_texts", hash_texts, METH_VARARGS,
     "hash_texts(texts, strip_tokens, normalize) -> bytes: 32-byte SHA-256 of each normalized text, "
     "concatenated (see pipelines.dedup.normalize.content_hash)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_fasthash", "Compiled normalize + SHA-256 for exact dedup.", -1, methods,
};

PyMODINIT_FUNC
PyInit__fasthash(void)
{
    NFKC = PyUnicode_InternFromString("NFKC");
    if (!NFKC) {
        return NULL;
    }
    sha256_md = EVP_MD_fetch(NULL, "SHA256", NULL);
    if (!sha256_md) {
        PyErr_SetString(PyExc_ImportError, "OpenSSL has no SHA256");
        return NULL;
    }
    return PyModule_Create(&module);
}
