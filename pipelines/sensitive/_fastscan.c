/* Compiled candidate search of the sensitive-word filter (see pipelines/sensitive/batch.py).
 *
 * Scanner(entries, word) compiles the lexicon's folded UTF-8 entries (entry i is bytes, ``word`` is a
 * 256-byte table of the word bytes). Scanner.scan(texts, fold) folds each text (ASCII: lower-cased here;
 * ASCII + CJK ideographs: encoded here, they fold to themselves; anything else: ``fold(text)``) and
 * reports every occurrence of every entry that passes the word-boundary rule of ``_scan``: an entry
 * whose first (last) byte is a word byte must not have a word byte before (after) it. The caller picks
 * the leftmost-longest, non-overlapping ones, as ``_scan`` does.
 *
 * How, per folded text, in one pass over its bytes:
 *   - entries made only of word bytes can only match a whole run of word bytes (both neighbours must be
 *     non-word), so each run is looked up in a hash table of those entries;
 *   - every other entry is found by its first 6 bytes (entries of 6 bytes or more) or by its whole bytes
 *     (shorter ones), at positions whose byte can start such an entry (a 256-entry table), through a
 *     256 KiB Bloom filter that rejects almost every position before the hash table is touched.
 * Built by `python -m pipelines.native`; without it batch.py falls back to an Aho-Corasick DFA.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#define PREFIX 6                /* key length of the long "other" entries */
#define BLOOM_BITS (1u << 21)   /* 256 KiB: fits L2 */

static inline uint64_t
mix(uint64_t x)  /* one multiply: the scan hashes every candidate position, latency matters */
{
    x ^= x >> 33;
    x *= 0xd6e8feb86659fd93ULL;
    x ^= x >> 29;
    return x;
}

static inline uint64_t
hash_bytes(const unsigned char *p, Py_ssize_t len)
{
    uint64_t h = (uint64_t)len * 0x9E3779B97F4A7C15ULL;
    while (len >= 8) {
        uint64_t v;
        memcpy(&v, p, 8);
        h = mix(h ^ v);
        p += 8;
        len -= 8;
    }
    if (len) {
        uint64_t v = 0;
        memcpy(&v, p, (size_t)len);
        h = mix(h ^ v ^ 0xff51afd7ed558ccdULL);
    }
    return h;
}

/* Open addressing: a slot holds a key hash and a run [start, start + count) of `ids`. */
typedef struct {
    uint64_t hash;
    int32_t start;
    int32_t count;
} Slot;

typedef struct {
    Slot *slots;
    uint64_t mask;
    int32_t *ids;          /* entry ids grouped by key hash */
    uint64_t *bloom;       /* BLOOM_BITS bits */
    Py_ssize_t size;
} Table;

/* A blocked Bloom filter: both bits of a key in one 64-bit word, so a probe is one memory access. */
static inline uint64_t
bloom_bits(uint64_t h)
{
    return (1ULL << ((h >> 20) & 63)) | (1ULL << ((h >> 26) & 63));
}

static inline int
bloom_has(const uint64_t *bloom, uint64_t h)
{
    uint64_t bits = bloom_bits(h);
    return (bloom[(h >> 32) & (BLOOM_BITS / 64 - 1)] & bits) == bits;
}

static inline void
bloom_add(uint64_t *bloom, uint64_t h)
{
    bloom[(h >> 32) & (BLOOM_BITS / 64 - 1)] |= bloom_bits(h);
}

static inline const Slot *
table_find(const Table *t, uint64_t h)
{
    if (!t->size || !bloom_has(t->bloom, h)) {
        return NULL;
    }
    for (uint64_t i = h & t->mask;; i = (i + 1) & t->mask) {
        const Slot *s = &t->slots[i];
        if (s->count == 0) {
            return NULL;
        }
        if (s->hash == h) {
            return s;
        }
    }
}

typedef struct {
    uint64_t hash;
    int32_t id;
} Keyed;

static int
cmp_keyed(const void *a, const void *b)
{
    const Keyed *x = a, *y = b;
    if (x->hash != y->hash) {
        return x->hash < y->hash ? -1 : 1;
    }
    return x->id < y->id ? -1 : (x->id > y->id);
}

/* Build a table from (hash, id) pairs; `keyed` is sorted in place. */
static int
table_build(Table *t, Keyed *keyed, Py_ssize_t n)
{
    memset(t, 0, sizeof(*t));
    t->bloom = PyMem_Calloc(BLOOM_BITS / 64, sizeof(uint64_t));
    if (!t->bloom) {
        return -1;
    }
    if (n == 0) {
        return 0;
    }
    qsort(keyed, (size_t)n, sizeof(Keyed), cmp_keyed);
    uint64_t cap = 16;
    while (cap < (uint64_t)n * 2) {
        cap <<= 1;
    }
    t->slots = PyMem_Calloc(cap, sizeof(Slot));
    t->ids = PyMem_Malloc((size_t)n * sizeof(int32_t));
    if (!t->slots || !t->ids) {
        return -1;
    }
    t->mask = cap - 1;
    t->size = n;
    for (Py_ssize_t k = 0; k < n;) {
        Py_ssize_t end = k;
        while (end < n && keyed[end].hash == keyed[k].hash) {
            t->ids[end] = keyed[end].id;
            end++;
        }
        uint64_t i = keyed[k].hash & t->mask;
        while (t->slots[i].count) {
            i = (i + 1) & t->mask;
        }
        t->slots[i].hash = keyed[k].hash;
        t->slots[i].start = (int32_t)k;
        t->slots[i].count = (int32_t)(end - k);
        bloom_add(t->bloom, keyed[k].hash);
        k = end;
    }
    return 0;
}

static void
table_free(Table *t)
{
    PyMem_Free(t->slots);
    PyMem_Free(t->ids);
    PyMem_Free(t->bloom);
}

typedef struct {
    PyObject_HEAD
    PyObject *entries;              /* list of bytes, kept alive: the tables point into them */
    const unsigned char **data;
    Py_ssize_t *len;
    Py_ssize_t count;
    unsigned char word[256];
    unsigned char starts_other[256]; /* byte can start an entry that is not all word bytes */
    unsigned char *right_flag;       /* entry's last byte is a word byte */
    Table whole;                     /* entries of word bytes only, by their whole bytes */
    Table longer;                    /* other entries of >= PREFIX bytes, by their first PREFIX bytes */
    Table shorter;                   /* other entries of < PREFIX bytes, by their whole bytes */
    unsigned short_lengths;          /* bit L set: some short other entry has L bytes */
    uint64_t whole_lengths;          /* bit L set: some word-bytes-only entry has L bytes (L < 64) */
    Py_ssize_t max_whole;
} Scanner;

static void
Scanner_dealloc(Scanner *self)
{
    table_free(&self->whole);
    table_free(&self->longer);
    table_free(&self->shorter);
    PyMem_Free(self->data);
    PyMem_Free(self->len);
    PyMem_Free(self->right_flag);
    Py_XDECREF(self->entries);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int
Scanner_init(Scanner *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"entries", "word", NULL};
    PyObject *entries;
    Py_buffer word;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O!y*:Scanner", kwlist, &PyList_Type, &entries, &word)) {
        return -1;
    }
    if (word.len != 256) {
        PyBuffer_Release(&word);
        PyErr_SetString(PyExc_ValueError, "Scanner: word must be a 256-byte table");
        return -1;
    }
    memcpy(self->word, word.buf, 256);
    PyBuffer_Release(&word);
    if (self->entries) {
        PyErr_SetString(PyExc_RuntimeError, "Scanner: already initialised");
        return -1;
    }
    Py_INCREF(entries);
    self->entries = entries;
    Py_ssize_t n = PyList_GET_SIZE(entries);
    self->count = n;
    self->data = PyMem_Calloc((size_t)n + 1, sizeof(*self->data));
    self->len = PyMem_Calloc((size_t)n + 1, sizeof(*self->len));
    self->right_flag = PyMem_Calloc((size_t)n + 1, 1);
    Keyed *whole = PyMem_Malloc(((size_t)n + 1) * sizeof(Keyed));
    Keyed *longer = PyMem_Malloc(((size_t)n + 1) * sizeof(Keyed));
    Keyed *shorter = PyMem_Malloc(((size_t)n + 1) * sizeof(Keyed));
    Py_ssize_t nw = 0, nl = 0, ns = 0;
    int rc = -1;
    if (!self->data || !self->len || !self->right_flag || !whole || !longer || !shorter) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *e = PyList_GET_ITEM(entries, i);
        if (!PyBytes_Check(e) || PyBytes_GET_SIZE(e) == 0) {
            PyErr_Format(PyExc_TypeError, "Scanner: entry %zd is not non-empty bytes", i);
            goto done;
        }
        const unsigned char *p = (const unsigned char *)PyBytes_AS_STRING(e);
        Py_ssize_t len = PyBytes_GET_SIZE(e);
        self->data[i] = p;
        self->len[i] = len;
        self->right_flag[i] = self->word[p[len - 1]];
        int all_word = 1;
        for (Py_ssize_t k = 0; k < len; k++) {
            all_word &= self->word[p[k]];
        }
        if (all_word) {
            whole[nw].hash = hash_bytes(p, len);
            whole[nw++].id = (int32_t)i;
            if (len > self->max_whole) {
                self->max_whole = len;
            }
            self->whole_lengths |= len < 64 ? 1ULL << len : 0;
            continue;
        }
        self->starts_other[p[0]] = 1;
        if (len >= PREFIX) {
            longer[nl].hash = hash_bytes(p, PREFIX);
            longer[nl++].id = (int32_t)i;
        }
        else {
            shorter[ns].hash = hash_bytes(p, len);
            shorter[ns++].id = (int32_t)i;
            self->short_lengths |= 1u << len;
        }
    }
    if (table_build(&self->whole, whole, nw) < 0 || table_build(&self->longer, longer, nl) < 0
        || table_build(&self->shorter, shorter, ns) < 0) {
        PyErr_NoMemory();
        goto done;
    }
    rc = 0;
done:
    PyMem_Free(whole);
    PyMem_Free(longer);
    PyMem_Free(shorter);
    return rc;
}

/* ------------------------------------------------------------------ hits */
typedef struct {
    int64_t *data;   /* text, begin, end, entry: 4 per hit */
    Py_ssize_t count, cap;
} Hits;

static int
hit(Hits *h, int64_t text, int64_t begin, int64_t end, int64_t entry)
{
    if (h->count == h->cap) {
        Py_ssize_t cap = h->cap ? h->cap * 2 : 1024;
        int64_t *data = PyMem_Realloc(h->data, (size_t)cap * 4 * sizeof(int64_t));
        if (!data) {
            PyErr_NoMemory();
            return -1;
        }
        h->data = data;
        h->cap = cap;
    }
    int64_t *row = h->data + h->count * 4;
    row[0] = text;
    row[1] = begin;
    row[2] = end;
    row[3] = entry;
    h->count++;
    return 0;
}

/* Entries of `slot` that match s at i (their key already matched by hash), right boundary checked. */
static int
verify(const Scanner *self, const Table *t, const Slot *slot, const unsigned char *s, Py_ssize_t n,
       Py_ssize_t i, Py_ssize_t text, Hits *hits)
{
    for (int32_t k = slot->start; k < slot->start + slot->count; k++) {
        int32_t id = t->ids[k];
        Py_ssize_t len = self->len[id];
        if (i + len > n || memcmp(s + i, self->data[id], (size_t)len) != 0) {
            continue;
        }
        if (self->right_flag[id] && i + len < n && self->word[s[i + len]]) {
            continue;
        }
        if (hit(hits, text, i, i + len, id) < 0) {
            return -1;
        }
    }
    return 0;
}

static int
probe_other(const Scanner *self, const unsigned char *s, Py_ssize_t n, Py_ssize_t i, Py_ssize_t text, Hits *hits)
{
    if (i + PREFIX <= n) {
        const Slot *slot = table_find(&self->longer, hash_bytes(s + i, PREFIX));
        if (slot && verify(self, &self->longer, slot, s, n, i, text, hits) < 0) {
            return -1;
        }
    }
    for (unsigned lengths = self->short_lengths; lengths;) {
        unsigned len = (unsigned)__builtin_ctz(lengths);
        lengths &= lengths - 1;
        if (i + (Py_ssize_t)len > n) {
            break;
        }
        const Slot *slot = table_find(&self->shorter, hash_bytes(s + i, len));
        if (slot && verify(self, &self->shorter, slot, s, n, i, text, hits) < 0) {
            return -1;
        }
    }
    return 0;
}

static int
scan_text(const Scanner *self, const unsigned char *s, Py_ssize_t n, Py_ssize_t text, Hits *hits)
{
    const unsigned char *word = self->word, *starts_other = self->starts_other;
    Py_ssize_t i = 0;
    while (i < n) {
        unsigned char c = s[i];
        if (starts_other[c] && probe_other(self, s, n, i, text, hits) < 0) {
            return -1;
        }
        if (!word[c]) {
            i++;
            continue;
        }
        /* A run of word bytes: entries of word bytes only match it whole. Entries that start with a
         * word byte need a non-word byte before them, so they start only here (probed above). */
        Py_ssize_t j = i + 1;
        while (j < n && word[s[j]]) {
            j++;
        }
        Py_ssize_t run = j - i;
        if (run >= 64 ? run <= self->max_whole : (self->whole_lengths >> run) & 1) {
            const Slot *slot = table_find(&self->whole, hash_bytes(s + i, j - i));
            if (slot) {
                for (int32_t k = slot->start; k < slot->start + slot->count; k++) {
                    int32_t id = self->whole.ids[k];
                    if (self->len[id] == j - i && memcmp(s + i, self->data[id], (size_t)(j - i)) == 0
                        && hit(hits, text, i, j, id) < 0) {
                        return -1;
                    }
                }
            }
        }
        /* Entries starting with a non-word byte inside the run cannot exist (the run has none). */
        i = j;
    }
    return 0;
}

/* ------------------------------------------------------------------ folding */
#include "../_buffer.h" /* Buffer, reserve */

/* CJK Unified Ideographs and Extension A fold to themselves (no case, NFKC-stable). */
static inline int
folds_to_itself(Py_UCS4 ch)
{
    return (ch >= 0x4E00 && ch <= 0x9FFF) || (ch >= 0x3400 && ch <= 0x4DBF);
}

/* Fold text into b (UTF-8). Returns the length, or -2 when `fold` must be called instead. */
static Py_ssize_t
fold_fast(PyObject *text, Buffer *b)
{
    Py_ssize_t n = PyUnicode_GET_LENGTH(text);
    if (PyUnicode_IS_ASCII(text)) {
        if (reserve(b, n + 1) < 0) {
            return -1;
        }
        const unsigned char *s = PyUnicode_1BYTE_DATA(text);
        for (Py_ssize_t i = 0; i < n; i++) {
            unsigned char c = s[i];
            b->data[i] = (c >= 'A' && c <= 'Z') ? (unsigned char)(c + 32) : c;
        }
        return n;
    }
    if (PyUnicode_KIND(text) != PyUnicode_2BYTE_KIND) {
        return -2;
    }
    if (reserve(b, n * 3 + 1) < 0) {
        return -1;
    }
    const Py_UCS2 *d = PyUnicode_2BYTE_DATA(text);
    Py_ssize_t o = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_UCS2 ch = d[i];
        if (ch < 0x80) {
            b->data[o++] = (ch >= 'A' && ch <= 'Z') ? (unsigned char)(ch + 32) : (unsigned char)ch;
        }
        else if (folds_to_itself(ch)) {
            b->data[o++] = (unsigned char)(0xE0 | (ch >> 12));
            b->data[o++] = (unsigned char)(0x80 | ((ch >> 6) & 0x3F));
            b->data[o++] = (unsigned char)(0x80 | (ch & 0x3F));
        }
        else {
            return -2;
        }
    }
    return o;
}

static PyObject *
as_bytes_array(Hits *h)
{
    return PyBytes_FromStringAndSize((const char *)h->data, h->count * 4 * (Py_ssize_t)sizeof(int64_t));
}

static PyObject *
Scanner_scan(Scanner *self, PyObject *args)
{
    PyObject *texts, *fold;
    if (!PyArg_ParseTuple(args, "OO:scan", &texts, &fold)) {
        return NULL;
    }
    PyObject *seq = PySequence_Fast(texts, "scan: texts must be a sequence of str");
    if (!seq) {
        return NULL;
    }
    Buffer buf = {NULL, 0};
    Hits hits = {NULL, 0, 0};
    PyObject *result = NULL;
    Py_ssize_t count = PySequence_Fast_GET_SIZE(seq);
    PyObject **items = PySequence_Fast_ITEMS(seq);
    for (Py_ssize_t k = 0; k < count; k++) {
        PyObject *text = items[k];
        if (!PyUnicode_Check(text)) {
            PyErr_Format(PyExc_TypeError, "scan: item %zd is %.100s, not str", k, Py_TYPE(text)->tp_name);
            goto done;
        }
        Py_ssize_t n = fold_fast(text, &buf);
        if (n == -1) {
            goto done;
        }
        if (n == -2) {
            PyObject *folded = PyObject_CallOneArg(fold, text);
            if (!folded) {
                goto done;
            }
            Py_ssize_t size;
            const char *utf8 = PyUnicode_Check(folded) ? PyUnicode_AsUTF8AndSize(folded, &size) : NULL;
            if (!utf8) {
                if (!PyErr_Occurred()) {
                    PyErr_SetString(PyExc_TypeError, "scan: fold returned a non-str");
                }
                Py_DECREF(folded);
                goto done;
            }
            int rc = scan_text(self, (const unsigned char *)utf8, size, k, &hits);
            Py_DECREF(folded);
            if (rc < 0) {
                goto done;
            }
            continue;
        }
        if (scan_text(self, buf.data, n, k, &hits) < 0) {
            goto done;
        }
    }
    result = as_bytes_array(&hits);
done:
    PyMem_Free(buf.data);
    PyMem_Free(hits.data);
    Py_DECREF(seq);
    return result;
}

static PyMethodDef Scanner_methods[] = {
    {"scan", (PyCFunction)Scanner_scan, METH_VARARGS,
     "scan(texts, fold) -> bytes: int64 rows (text, begin, end, entry) of every candidate hit passing the "
     "word-boundary rule, byte offsets in each text's folded UTF-8, in text order."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject ScannerType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "pipelines.sensitive._fastscan.Scanner",
    .tp_basicsize = sizeof(Scanner),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Scanner(entries: list[bytes], word: bytes) -- the lexicon compiled for candidate search.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Scanner_init,
    .tp_dealloc = (destructor)Scanner_dealloc,
    .tp_methods = Scanner_methods,
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_fastscan", "Compiled candidate search of the sensitive-word filter.", -1, NULL,
};

PyMODINIT_FUNC
PyInit__fastscan(void)
{
    if (PyType_Ready(&ScannerType) < 0) {
        return NULL;
    }
    PyObject *m = PyModule_Create(&module);
    if (!m) {
        return NULL;
    }
    Py_INCREF(&ScannerType);
    if (PyModule_AddObject(m, "Scanner", (PyObject *)&ScannerType) < 0) {
        Py_DECREF(&ScannerType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
