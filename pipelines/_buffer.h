/* A growable byte buffer for the C extensions (pipelines/native.py builds them). */
#ifndef PIPELINES_BUFFER_H
#define PIPELINES_BUFFER_H

#include <Python.h>

typedef struct {
    unsigned char *data;
    Py_ssize_t cap;
} Buffer;

/* Grow b to hold at least need bytes (contents not kept). Returns 0, or -1 with MemoryError set. */
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

#endif
