/* Word n-gram repetition counts for the Gopher repetition rules, in C (transforms/ngrams.py has the same functions
 * in Python, used where this module was not built, and documents what they compute).
 *
 * top_ngram(ids, lens, n) -> (count, chars)
 *     ids: int32 buffer of word ids (equal words <=> equal ids), lens: int32 buffer of the words' lengths.
 *     The most frequent n-gram of ids (the first occurring among equals, as collections.Counter.most_common does)
 *     as (its count, the length of its words joined by single spaces); (0, 0) when there are fewer than n words.
 * duplicate_chars(joined, ends, n) -> int
 *     joined: the words concatenated, ends: int64 buffer of the words' end offsets in joined with a leading 0.
 *     datatrove's find_all_duplicate: walking the n-grams (their words joined without separator) in order, a
 *     string seen before adds its length and skips its n words, a new one is remembered and the walk moves one word.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

static int get_buffer(PyObject *obj, Py_buffer *view, Py_ssize_t itemsize, const char *name) {
    if (PyObject_GetBuffer(obj, view, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) return -1;
    if (view->itemsize != itemsize) {
        PyErr_Format(PyExc_TypeError, "%s: expected items of %zd bytes, got %zd", name, itemsize, view->itemsize);
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

static Py_ssize_t table_size(Py_ssize_t items) {
    Py_ssize_t size = 16;
    while (size < 2 * items) size <<= 1;
    return size;
}

static inline uint64_t mix(uint64_t h) {
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ULL;
    h ^= h >> 33;
    return h;
}

static PyObject *top_ngram(PyObject *self, PyObject *args) {
    PyObject *ids_obj, *lens_obj;
    Py_ssize_t n;
    if (!PyArg_ParseTuple(args, "OOn:top_ngram", &ids_obj, &lens_obj, &n)) return NULL;
    if (n < 1) return PyErr_Format(PyExc_ValueError, "top_ngram: n must be >= 1, got %zd", n);
    Py_buffer ids_view, lens_view;
    if (get_buffer(ids_obj, &ids_view, 4, "ids") < 0) return NULL;
    if (get_buffer(lens_obj, &lens_view, 4, "lens") < 0) {
        PyBuffer_Release(&ids_view);
        return NULL;
    }
    const int32_t *ids = (const int32_t *)ids_view.buf;
    const int32_t *lens = (const int32_t *)lens_view.buf;
    Py_ssize_t words = ids_view.len / 4;
    if (lens_view.len / 4 != words) {
        PyBuffer_Release(&ids_view);
        PyBuffer_Release(&lens_view);
        return PyErr_Format(PyExc_ValueError, "top_ngram: %zd ids but %zd lengths", words, lens_view.len / 4);
    }
    long long best_count = 0, best_chars = 0;
    if (words >= n) {
        Py_ssize_t grams = words - n + 1, size = table_size(grams), mask = size - 1, best_start = -1;
        int32_t *starts = PyMem_Malloc(sizeof(int32_t) * size);
        int32_t *counts = PyMem_Malloc(sizeof(int32_t) * size);
        if (starts == NULL || counts == NULL) {
            PyMem_Free(starts);
            PyMem_Free(counts);
            PyBuffer_Release(&ids_view);
            PyBuffer_Release(&lens_view);
            return PyErr_NoMemory();
        }
        memset(starts, 0xff, sizeof(int32_t) * size);
        for (Py_ssize_t i = 0; i < grams; i++) {
            uint64_t h = (uint64_t)n;
            for (Py_ssize_t k = 0; k < n; k++) h = mix(h ^ ((uint64_t)(uint32_t)ids[i + k] + 0x9e3779b97f4a7c15ULL));
            Py_ssize_t slot = (Py_ssize_t)(h & (uint64_t)mask);
            while (starts[slot] >= 0 && memcmp(ids + starts[slot], ids + i, sizeof(int32_t) * n) != 0)
                slot = (slot + 1) & mask;
            if (starts[slot] < 0) {
                starts[slot] = (int32_t)i;
                counts[slot] = 0;
            }
            int32_t count = ++counts[slot];
            /* the first occurring among equals: the smaller first position wins a tie */
            if (count > best_count || (count == best_count && starts[slot] < best_start)) {
                best_count = count;
                best_start = starts[slot];
            }
        }
        best_chars = n - 1;
        for (Py_ssize_t k = 0; k < n; k++) best_chars += lens[best_start + k];
        PyMem_Free(starts);
        PyMem_Free(counts);
    }
    PyBuffer_Release(&ids_view);
    PyBuffer_Release(&lens_view);
    return Py_BuildValue("(LL)", best_count, best_chars);
}

static uint64_t substring_hash(int kind, const void *data, Py_ssize_t start, Py_ssize_t stop) {
    uint64_t h = 0x84222325cbf29ce4ULL;
    for (Py_ssize_t i = start; i < stop; i++) h = (h ^ (uint64_t)PyUnicode_READ(kind, data, i)) * 0x100000001b3ULL;
    return mix(h ^ (uint64_t)(stop - start));
}

static PyObject *duplicate_chars(PyObject *self, PyObject *args) {
    PyObject *joined, *ends_obj;
    Py_ssize_t n;
    if (!PyArg_ParseTuple(args, "UOn:duplicate_chars", &joined, &ends_obj, &n)) return NULL;
    if (n < 1) return PyErr_Format(PyExc_ValueError, "duplicate_chars: n must be >= 1, got %zd", n);
    Py_buffer ends_view;
    if (get_buffer(ends_obj, &ends_view, 8, "ends") < 0) return NULL;
    const int64_t *ends = (const int64_t *)ends_view.buf;
    Py_ssize_t words = ends_view.len / 8 - 1;
    int kind = PyUnicode_KIND(joined);
    const void *data = PyUnicode_DATA(joined);
    Py_ssize_t length = PyUnicode_GET_LENGTH(joined);
    if (words < 0 || (words >= 0 && ends[words] > length)) {
        PyBuffer_Release(&ends_view);
        return PyErr_Format(PyExc_ValueError, "duplicate_chars: ends run past the text (%zd characters)", length);
    }
    long long repeated = 0;
    if (words >= n) {
        Py_ssize_t grams = words - n + 1, size = table_size(grams), mask = size - 1;
        int32_t *starts = PyMem_Malloc(sizeof(int32_t) * size);
        if (starts == NULL) {
            PyBuffer_Release(&ends_view);
            return PyErr_NoMemory();
        }
        memset(starts, 0xff, sizeof(int32_t) * size);
        Py_ssize_t i = 0;
        while (i < grams) {
            Py_ssize_t a = (Py_ssize_t)ends[i], b = (Py_ssize_t)ends[i + n], len = b - a;
            Py_ssize_t slot = (Py_ssize_t)(substring_hash(kind, data, a, b) & (uint64_t)mask);
            int found = 0;
            while (starts[slot] >= 0) {
                Py_ssize_t other = (Py_ssize_t)ends[starts[slot]];
                if ((Py_ssize_t)ends[starts[slot] + n] - other == len &&
                    memcmp((const char *)data + a * kind, (const char *)data + other * kind, (size_t)(len * kind)) == 0) {
                    found = 1;
                    break;
                }
                slot = (slot + 1) & mask;
            }
            if (found) {
                repeated += len;
                i += n;
            } else {
                starts[slot] = (int32_t)i;
                i += 1;
            }
        }
        PyMem_Free(starts);
    }
    PyBuffer_Release(&ends_view);
    return PyLong_FromLongLong(repeated);
}

static PyMethodDef methods[] = {
    {"top_ngram", top_ngram, METH_VARARGS, "(count, chars) of the most frequent word n-gram (first among equals)."},
    {"duplicate_chars", duplicate_chars, METH_VARARGS, "datatrove's find_all_duplicate over joined words."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_ngrams", "Word n-gram repetition counts.", -1, methods};

PyMODINIT_FUNC PyInit__ngrams(void) { return PyModule_Create(&module); }
