/* Word n-gram repetition counts for the Gopher repetition rules, in C (transforms/filter/ngrams.py has the same functions
 * in Python, used where this module was not built, and documents what they compute).
 *
 * top_ngram(ids, lens, n) -> (count, chars)
 *     ids: int32 buffer of word ids (equal words <=> equal ids), lens: int32 buffer of the words' lengths.
 *     The most frequent n-gram of ids (the first occurring among equals, as collections.Counter.most_common does)
 *     as (its count, the length of its words joined by single spaces); (0, 0) when there are fewer than n words.
 * duplicate_chars(joined, ends, ns) -> tuple[int, ...]
 *     joined: the words concatenated, ends: int64 buffer of the words' end offsets in joined with a leading 0;
 *     for each n of ns, datatrove's find_all_duplicate: walking the n-grams (their words joined without
 *     separator) in order, a string seen before adds its length and skips its n words, a new one is remembered
 *     and the walk moves one word. Substrings are compared through polynomial prefix hashes (one pass over the
 *     text for every n), and equal hashes are confirmed by comparing the characters.
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

#define HASH_BASE 0x100000001b3ULL /* odd: arithmetic modulo 2^64 */

static long long walk_duplicates(int kind, const void *data, const int64_t *ends, Py_ssize_t words, Py_ssize_t n,
                                 const uint64_t *prefix, const uint64_t *powers, int32_t *starts, Py_ssize_t mask) {
    /* one find_all_duplicate walk; starts: a table of mask + 1 slots (emptied here) */
    memset(starts, 0xff, sizeof(int32_t) * (mask + 1));
    long long repeated = 0;
    Py_ssize_t grams = words - n + 1, i = 0;
    while (i < grams) {
        Py_ssize_t a = (Py_ssize_t)ends[i], b = (Py_ssize_t)ends[i + n], len = b - a;
        uint64_t h = mix(prefix[b] - prefix[a] * powers[len]);
        Py_ssize_t slot = (Py_ssize_t)(h & (uint64_t)mask);
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
    return repeated;
}

static PyObject *duplicate_chars(PyObject *self, PyObject *args) {
    PyObject *joined, *ends_obj, *ns_obj;
    if (!PyArg_ParseTuple(args, "UOO:duplicate_chars", &joined, &ends_obj, &ns_obj)) return NULL;
    PyObject *ns = PySequence_Fast(ns_obj, "duplicate_chars: ns must be a sequence of ints");
    if (ns == NULL) return NULL;
    Py_ssize_t count = PySequence_Fast_GET_SIZE(ns);
    Py_buffer ends_view;
    if (get_buffer(ends_obj, &ends_view, 8, "ends") < 0) {
        Py_DECREF(ns);
        return NULL;
    }
    const int64_t *ends = (const int64_t *)ends_view.buf;
    Py_ssize_t words = ends_view.len / 8 - 1;
    int kind = PyUnicode_KIND(joined);
    const void *data = PyUnicode_DATA(joined);
    Py_ssize_t length = PyUnicode_GET_LENGTH(joined);
    PyObject *result = NULL;
    uint64_t *prefix = NULL, *powers = NULL;
    int32_t *starts = NULL;
    if (words < 0 || ends[0] != 0 || ends[words] > length) {
        PyErr_Format(PyExc_ValueError, "duplicate_chars: ends run past the text (%zd characters)", length);
        goto done;
    }
    for (Py_ssize_t w = 0; w < words; w++) {
        if (ends[w + 1] < ends[w]) {
            PyErr_SetString(PyExc_ValueError, "duplicate_chars: ends must not decrease");
            goto done;
        }
    }
    result = PyTuple_New(count);
    if (result == NULL) goto done;
    Py_ssize_t mask = table_size(words > 0 ? words : 1) - 1;
    prefix = PyMem_Malloc(sizeof(uint64_t) * (length + 1));
    powers = PyMem_Malloc(sizeof(uint64_t) * (length + 1));
    starts = PyMem_Malloc(sizeof(int32_t) * (mask + 1));
    if (prefix == NULL || powers == NULL || starts == NULL) {
        PyErr_NoMemory();
        Py_CLEAR(result);
        goto done;
    }
    prefix[0] = 0;
    powers[0] = 1;
    for (Py_ssize_t c = 0; c < length; c++) {
        prefix[c + 1] = prefix[c] * HASH_BASE + (uint64_t)PyUnicode_READ(kind, data, c) + 1;
        powers[c + 1] = powers[c] * HASH_BASE;
    }
    for (Py_ssize_t k = 0; k < count; k++) {
        Py_ssize_t n = PyLong_AsSsize_t(PySequence_Fast_GET_ITEM(ns, k));
        if (n == -1 && PyErr_Occurred()) {
            Py_CLEAR(result);
            goto done;
        }
        if (n < 1) {
            PyErr_Format(PyExc_ValueError, "duplicate_chars: n must be >= 1, got %zd", n);
            Py_CLEAR(result);
            goto done;
        }
        long long repeated = words >= n ? walk_duplicates(kind, data, ends, words, n, prefix, powers, starts, mask) : 0;
        PyTuple_SET_ITEM(result, k, PyLong_FromLongLong(repeated));
    }
done:
    PyMem_Free(prefix);
    PyMem_Free(powers);
    PyMem_Free(starts);
    PyBuffer_Release(&ends_view);
    Py_DECREF(ns);
    return result;
}

static PyMethodDef methods[] = {
    {"top_ngram", top_ngram, METH_VARARGS, "(count, chars) of the most frequent word n-gram (first among equals)."},
    {"duplicate_chars", duplicate_chars, METH_VARARGS, "datatrove's find_all_duplicate over joined words, for each n."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_ngrams", "Word n-gram repetition counts.", -1, methods};

PyMODINIT_FUNC PyInit__ngrams(void) { return PyModule_Create(&module); }
