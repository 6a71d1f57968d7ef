/* The per-document measures of ``tokenmill stats`` in C (transforms/stats/measures.py has the same definitions in
 * Python, used where this module was not built, and the tests check that both agree on any text).
 *
 * word_counts(text) -> (words, letters, alpha_words)
 *     words: len(text.split()) (words are runs of non-whitespace, Py_UNICODE_ISSPACE as str.split sees it);
 *     letters: the characters of those words (sum of their lengths);
 *     alpha_words: the words that are all letters (str.isalpha) or hold a character that the regular expression
 *     [^\W\d_] matches: a word character (alphanumeric, as re sees it) that is neither a decimal digit nor "_".
 *
 * measure_texts(texts, hash, terminal, bullets, short_line) -> (columns, line_counts, lines)
 *     One pass over each text's code points for everything measures.measure_python computes per document:
 *     columns: bytes holding int64 arrays of len(texts) values each, in the order of COLUMNS below (the hash
 *     column holds the uint64 bits of hash(UTF-8 bytes, surrogates passed));
 *     line_counts: a dict of the batch's stripped non-empty lines (str.splitlines, then str.strip) with their
 *     counts, in order of first occurrence (what Counter(lines) holds); lines: how many there are.
 *     terminal / bullets: the characters a line may end / start with to count as ending in punctuation / a bullet;
 *     short_line: a line of at most this many characters is short.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

enum {  /* the columns of measure_texts, as measures.COLUMNS names them */
    C_BYTES, C_CHARS, C_WORDS, C_LETTERS, C_ALPHA_WORDS, C_SYMBOLS, C_UPPER, C_DIGITS, C_LINES, C_UNIQUE_LINES,
    C_END_PUNCT, C_SHORT, C_BULLET, C_ELLIPSIS, C_HASH, N_COLUMNS
};

#define F_SPACE 1   /* Py_UNICODE_ISSPACE: splits words, stripped from lines */
#define F_LETTER 2  /* letter-like: [^\W\d_] */
#define F_BREAK 4   /* Py_UNICODE_ISLINEBREAK: ends a line (str.splitlines) */

static unsigned char BMP[0x10000];  /* the flags of every code point below 0x10000, filled at import */

static inline int letter_like(Py_UCS4 c) {
    /* re's [^\W\d_] on str: \w is alnum (alpha, decimal, digit, numeric) or "_"; \d is decimal */
    return (Py_UNICODE_ISALPHA(c) || Py_UNICODE_ISDIGIT(c) || Py_UNICODE_ISNUMERIC(c)) && !Py_UNICODE_ISDECIMAL(c);
}

static inline unsigned char flags_of(Py_UCS4 c) {
    return (unsigned char)((Py_UNICODE_ISSPACE(c) ? F_SPACE : 0) | (letter_like(c) ? F_LETTER : 0)
                           | (Py_UNICODE_ISLINEBREAK(c) ? F_BREAK : 0));
}

static inline unsigned char flags(Py_UCS4 c) { return c < 0x10000 ? BMP[c] : flags_of(c); }

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
    while (i < n) {
        unsigned char f = flags(PyUnicode_READ(kind, data, i));
        if (f & F_SPACE) { i++; continue; }
        Py_ssize_t start = i;
        int has_letter = 0;  /* an all-letter word holds a letter: has_letter alone decides */
        while (i < n) {
            f = flags(PyUnicode_READ(kind, data, i));
            if (f & F_SPACE) break;
            has_letter |= f & F_LETTER;
            i++;
        }
        words++;
        letters += i - start;
        alpha_words += has_letter != 0;
    }
    return Py_BuildValue("(LLL)", words, letters, alpha_words);
}

/* The state of one batch while its texts are measured. */
typedef struct {
    PyObject *counts;             /* line -> count, the batch's */
    Py_ssize_t lines;             /* the batch's stripped non-empty lines */
    Py_UCS4 terminal[64], bullets[64];
    Py_ssize_t n_terminal, n_bullets, short_line;
} Batch;

static inline int member(const Py_UCS4 *set, Py_ssize_t n, Py_UCS4 c) {
    for (Py_ssize_t i = 0; i < n; i++) if (set[i] == c) return 1;
    return 0;
}

/* Count one stripped non-empty line text[s:e) into the batch and the document's columns; ``seen`` is the
 * document's set of lines (NULL until its second line), ``first`` its first line (borrowed from counts). */
static int emit_line(Batch *b, PyObject *text, int kind, const void *data, Py_ssize_t s, Py_ssize_t e,
                     long long *col, PyObject **first, PyObject **seen) {
    Py_UCS4 head = PyUnicode_READ(kind, data, s), last = PyUnicode_READ(kind, data, e - 1);
    Py_ssize_t len = e - s;
    col[C_LINES]++;
    col[C_END_PUNCT] += member(b->terminal, b->n_terminal, last);
    col[C_SHORT] += len <= b->short_line;
    col[C_BULLET] += member(b->bullets, b->n_bullets, head);
    col[C_ELLIPSIS] += last == 0x2026 || (len >= 3 && last == '.' && PyUnicode_READ(kind, data, e - 2) == '.'
                                           && PyUnicode_READ(kind, data, e - 3) == '.');
    PyObject *line = PyUnicode_Substring(text, s, e);
    if (line == NULL) return -1;
    PyObject *count = PyDict_GetItemWithError(b->counts, line);
    if (count == NULL && PyErr_Occurred()) { Py_DECREF(line); return -1; }
    PyObject *next = PyLong_FromSsize_t(count == NULL ? 1 : PyLong_AsSsize_t(count) + 1);
    if (next == NULL || PyDict_SetItem(b->counts, line, next) < 0) { Py_XDECREF(next); Py_DECREF(line); return -1; }
    Py_DECREF(next);
    b->lines++;
    if (*first == NULL) {  /* the document's first line: unique */
        *first = line;  /* owned until the document is done */
        col[C_UNIQUE_LINES]++;
        return 0;
    }
    if (*seen == NULL) {
        *seen = PySet_New(NULL);
        if (*seen == NULL || PySet_Add(*seen, *first) < 0) { Py_DECREF(line); return -1; }
    }
    Py_ssize_t before = PySet_GET_SIZE(*seen);
    if (PySet_Add(*seen, line) < 0) { Py_DECREF(line); return -1; }
    col[C_UNIQUE_LINES] += PySet_GET_SIZE(*seen) > before;
    Py_DECREF(line);
    return 0;
}

/* The loop over one text's code points, one copy per storage width (the compiler keeps each loop tight): the
 * columns of the text (col: N_COLUMNS values, zeroed by the caller) and its lines into the batch. */
#define DEFINE_SCAN(NAME, T)                                                                                      \
static int NAME(Batch *b, PyObject *text, int kind, const T *p, Py_ssize_t n, long long *col, PyObject **first,   \
                PyObject **seen) {                                                                                \
    long long words = 0, letters = 0, alpha_words = 0, upper = 0, digits = 0, symbols = 0;                        \
    Py_ssize_t dots = 0, word_start = -1, line_start = -1, line_end = 0;                                          \
    int has_letter = 0;                                                                                           \
    for (Py_ssize_t i = 0; i < n; i++) {                                                                          \
        Py_UCS4 c = p[i];                                                                                         \
        unsigned char f = flags(c);                                                                               \
        if (c < 0x80) {                                                                                           \
            upper += (c - 'A') < 26u;                                                                             \
            digits += (c - '0') < 10u;                                                                            \
            symbols += c == '#';                                                                                  \
        } else {                                                                                                  \
            symbols += c == 0x2026;                                                                               \
        }                                                                                                         \
        if (c == '.') dots++;                                                                                     \
        else if (dots) { symbols += dots / 3; dots = 0; }                                                         \
        if (f & F_SPACE) {                                                                                        \
            if (word_start >= 0) {                                                                                \
                words++; letters += i - word_start; alpha_words += has_letter != 0; word_start = -1;              \
            }                                                                                                     \
            if ((f & F_BREAK) && line_start >= 0) {                                                               \
                if (emit_line(b, text, kind, p, line_start, line_end, col, first, seen) < 0) return -1;           \
                line_start = -1;                                                                                  \
            }                                                                                                     \
        } else {                                                                                                  \
            if (word_start < 0) { word_start = i; has_letter = 0; }                                               \
            has_letter |= f & F_LETTER;                                                                           \
            if (line_start < 0) line_start = i;                                                                   \
            line_end = i + 1;                                                                                     \
        }                                                                                                         \
    }                                                                                                             \
    symbols += dots / 3;                                                                                          \
    if (word_start >= 0) { words++; letters += n - word_start; alpha_words += has_letter != 0; }                 \
    if (line_start >= 0 && emit_line(b, text, kind, p, line_start, line_end, col, first, seen) < 0) return -1;  \
    col[C_CHARS] = n; col[C_WORDS] = words; col[C_LETTERS] = letters; col[C_ALPHA_WORDS] = alpha_words;          \
    col[C_SYMBOLS] = words ? symbols : 0; col[C_UPPER] = upper; col[C_DIGITS] = digits;                           \
    return 0;                                                                                                     \
}

DEFINE_SCAN(scan_ucs1, Py_UCS1)
DEFINE_SCAN(scan_ucs2, Py_UCS2)
DEFINE_SCAN(scan_ucs4, Py_UCS4)

/* The columns of one text (col: N_COLUMNS values, zeroed by the caller) and its lines into the batch. */
static int measure_one(Batch *b, PyObject *text, PyObject *hash, long long *col) {
    if (!PyUnicode_Check(text)) {
        PyErr_Format(PyExc_TypeError, "measure_texts: expected str, got %s", Py_TYPE(text)->tp_name);
        return -1;
    }
    if (PyUnicode_READY(text) < 0) return -1;
    const int kind = PyUnicode_KIND(text);
    const void *data = PyUnicode_DATA(text);
    const Py_ssize_t n = PyUnicode_GET_LENGTH(text);
    PyObject *first = NULL, *seen = NULL;
    int rc = kind == PyUnicode_1BYTE_KIND ? scan_ucs1(b, text, kind, data, n, col, &first, &seen)
           : kind == PyUnicode_2BYTE_KIND ? scan_ucs2(b, text, kind, data, n, col, &first, &seen)
           : scan_ucs4(b, text, kind, data, n, col, &first, &seen);
    Py_XDECREF(first);
    Py_XDECREF(seen);
    if (rc < 0) return -1;
    /* the hash of the UTF-8 bytes: the str's own UTF-8 form when it has one (no copy for ASCII), else encoded with
     * surrogates passed, as text.encode("utf-8", "surrogatepass") */
    Py_ssize_t size;
    const char *raw = PyUnicode_AsUTF8AndSize(text, &size);
    PyObject *buffer;
    if (raw != NULL) {
        buffer = PyMemoryView_FromMemory((char *)raw, size, PyBUF_READ);
    } else {
        PyErr_Clear();
        buffer = PyUnicode_AsEncodedString(text, "utf-8", "surrogatepass");
        if (buffer != NULL) size = PyBytes_GET_SIZE(buffer);
    }
    if (buffer == NULL) return -1;
    PyObject *h = PyObject_CallOneArg(hash, buffer);
    Py_DECREF(buffer);
    if (h == NULL) return -1;
    unsigned long long bits = PyLong_AsUnsignedLongLong(h);
    Py_DECREF(h);
    if (bits == (unsigned long long)-1 && PyErr_Occurred()) return -1;
    col[C_BYTES] = size;
    memcpy(&col[C_HASH], &bits, sizeof bits);
    return 0;
}

static int code_points(PyObject *chars, Py_UCS4 *out, Py_ssize_t *n, const char *what) {
    if (!PyUnicode_Check(chars) || PyUnicode_GET_LENGTH(chars) > 64) {
        PyErr_Format(PyExc_ValueError, "measure_texts: %s must be a str of at most 64 characters", what);
        return -1;
    }
    *n = PyUnicode_GET_LENGTH(chars);
    for (Py_ssize_t i = 0; i < *n; i++) out[i] = PyUnicode_READ_CHAR(chars, i);
    return 0;
}

static PyObject *measure_texts(PyObject *self, PyObject *args) {
    PyObject *texts, *hash, *terminal, *bullets;
    Py_ssize_t short_line;
    if (!PyArg_ParseTuple(args, "OOUUn:measure_texts", &texts, &hash, &terminal, &bullets, &short_line)) return NULL;
    PyObject *seq = PySequence_Fast(texts, "measure_texts: texts must be a sequence of str");
    if (seq == NULL) return NULL;
    Batch b = {.lines = 0, .short_line = short_line};
    if (code_points(terminal, b.terminal, &b.n_terminal, "terminal") < 0
        || code_points(bullets, b.bullets, &b.n_bullets, "bullets") < 0) { Py_DECREF(seq); return NULL; }
    const Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    PyObject *columns = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)(N_COLUMNS * n * sizeof(long long)));
    b.counts = PyDict_New();
    if (columns == NULL || b.counts == NULL) goto fail;
    long long *out = (long long *)PyBytes_AS_STRING(columns);
    long long col[N_COLUMNS];
    for (Py_ssize_t i = 0; i < n; i++) {
        memset(col, 0, sizeof col);
        if (measure_one(&b, PySequence_Fast_GET_ITEM(seq, i), hash, col) < 0) goto fail;
        for (int k = 0; k < N_COLUMNS; k++) out[(Py_ssize_t)k * n + i] = col[k];
    }
    Py_DECREF(seq);
    PyObject *result = Py_BuildValue("(NNn)", columns, b.counts, b.lines);
    return result;
fail:
    Py_DECREF(seq);
    Py_XDECREF(columns);
    Py_XDECREF(b.counts);
    return NULL;
}

static PyObject *add_counts(PyObject *self, PyObject *args) {
    /* target[k] = target.get(k, 0) + v for every (k, v) of source, in source's order (Counter.update(source)) */
    PyObject *target, *source, *key, *value;
    if (!PyArg_ParseTuple(args, "O!O!:add_counts", &PyDict_Type, &target, &PyDict_Type, &source)) return NULL;
    Py_ssize_t pos = 0;
    while (PyDict_Next(source, &pos, &key, &value)) {
        PyObject *have = PyDict_GetItemWithError(target, key);
        if (have == NULL && PyErr_Occurred()) return NULL;
        PyObject *sum = have == NULL ? Py_NewRef(value) : PyNumber_Add(have, value);
        if (sum == NULL) return NULL;
        int rc = PyDict_SetItem(target, key, sum);
        Py_DECREF(sum);
        if (rc < 0) return NULL;
    }
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"word_counts", word_counts, METH_O, "(words, letters, alpha_words) of a text, as measures.word_counts_python."},
    {"measure_texts", measure_texts, METH_VARARGS,
     "(columns, line_counts, lines) of a batch of texts, as measures.measure_python computes them."},
    {"add_counts", add_counts, METH_VARARGS, "Add the counts of one dict into another, as Counter.update."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_words", "Per-document measures of tokenmill stats.", -1,
                                    methods};

PyMODINIT_FUNC PyInit__words(void) {
    for (Py_UCS4 c = 0; c < 0x10000; c++) BMP[c] = flags_of(c);
    return PyModule_Create(&module);
}
