/* Word counts of ``tokenmill stats`` in C (transforms/stats/measures.py has the same function in Python, used where
 * this module was not built, and the tests check that both agree on any text).
 *
 * word_counts(text) -> (words, letters, alpha_words)
 *     words: len(text.split()) (words are runs of non-whitespace, Py_UNICODE_ISSPACE as str.split sees it);
 *     letters: the characters of those words (sum of their lengths);
 *     alpha_words: the words that are all letters (str.isalpha) or hold a character that the regular expression
 *     [^\W\d_] matches: a word character (alphanumeric, as re sees it) that is neither a decimal digit nor "_".
 * One pass over the code points, no word strings built: the Python version spends most of ``measure`` here.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

static inline int letter_like(Py_UCS4 c) {
    /* re's [^\W\d_] on str: \w is alnum (alpha, decimal, digit, numeric) or "_"; \d is decimal */
    return (Py_UNICODE_ISALPHA(c) || Py_UNICODE_ISDIGIT(c) || Py_UNICODE_ISNUMERIC(c)) && !Py_UNICODE_ISDECIMAL(c);
}

static PyObject *word_counts(PyObject *self, PyObject *text) {
    if (!PyUnicode_Check(text)) {
        PyErr_Format(PyExc_TypeError, "word_counts: expected str, got %s", Py_TYPE(text)->tp_name);
        return NULL;
    }
    if (PyUnicode_READY(text) < 0) return NULL;
    const int kind = PyUnicode_KIND(text);
    const void *data = PyUnicode_DATA(text);
    const Py_ssize_t n = PyUnicode_GET_LENGTH(text);
    long long words = 0, letters = 0, alpha_words = 0;
    Py_ssize_t i = 0;
    if (kind == PyUnicode_1BYTE_KIND && PyUnicode_IS_ASCII(text)) {
        /* ASCII: whitespace is \t\n\v\f\r, \x1c-\x1f and space; letters are A-Z, a-z */
        const unsigned char *s = (const unsigned char *)data;
        while (i < n) {
            unsigned char c = s[i];
            if (c == ' ' || (c >= 9 && c <= 13) || (c >= 28 && c <= 31)) { i++; continue; }
            Py_ssize_t start = i;
            int has_letter = 0;
            while (i < n) {
                c = s[i];
                if (c == ' ' || (c >= 9 && c <= 13) || (c >= 28 && c <= 31)) break;
                has_letter |= ((c | 32) >= 'a' && (c | 32) <= 'z');
                i++;
            }
            words++;
            letters += i - start;
            alpha_words += has_letter;
        }
        return Py_BuildValue("(LLL)", words, letters, alpha_words);
    }
    while (i < n) {
        Py_UCS4 c = PyUnicode_READ(kind, data, i);
        if (Py_UNICODE_ISSPACE(c)) { i++; continue; }
        Py_ssize_t start = i;
        int all_alpha = 1, has_letter = 0;
        while (i < n) {
            c = PyUnicode_READ(kind, data, i);
            if (Py_UNICODE_ISSPACE(c)) break;
            if (!Py_UNICODE_ISALPHA(c)) all_alpha = 0;
            if (!has_letter && letter_like(c)) has_letter = 1;
            i++;
        }
        words++;
        letters += i - start;
        alpha_words += (all_alpha || has_letter);
    }
    return Py_BuildValue("(LLL)", words, letters, alpha_words);
}

static PyMethodDef methods[] = {
    {"word_counts", word_counts, METH_O, "(words, letters, alpha_words) of a text, as measures.word_counts_python."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_words", "Word counts of tokenmill stats.", -1, methods};

PyMODINIT_FUNC PyInit__words(void) { return PyModule_Create(&module); }
