"""The ``stats.json`` document written by ``tokenmill stats``: its format name and every key (the single source).

Layout (format ``tokenmill.stats/1``)::

    {"format", "tokenmill_version", "inputs": [url], "config": {...}, "seconds", "mb_per_second",
     "totals": {"documents", "bytes", "characters", "words", "lines", "tokens"?, "records", "rejected": {reason: n}},
     "distributions": {name: DIST},          # doc_bytes, doc_words, doc_lines, doc_tokens?, and the quality signals
     "groups": {field: {value: GROUP}},      # --by fields; at most --max-groups values each, the rest as "(other)"
     "duplicates": {"exact_duplicate_documents", "exact_duplicate_rate", "distinct_documents",
                    "distinct_documents_approx", "approx_relative_error"},
     "top_lines": {"k", "lines_counted", "max_undercount", "lines": [{"line", "count"}]},
     "funnel": [{"stage", "documents"}]?     # when the input is a prepare/filter output (from its manifest)
    }

    DIST  = {"count", "sum", "mean", "min", "max", "quantiles": {"p01", ..., "p99"}, "error", "error_kind",
             "histogram": {"edges": [...], "counts": [...]}}   # display histogram (edges: len(counts) + 1)
    GROUP = {"documents", "bytes", "characters", "words", "lines", "tokens"?, "doc_bytes": DIST, "doc_tokens": DIST?}

Quantiles come from fixed-bin sketches: lengths in logarithmic bins (relative error at most ``error``, about 1%),
ratios in linear bins of width 0.001 (absolute error at most ``error`` = 0.0005). Counts, sums, means, minima and
maxima are exact. ``distinct_documents`` is exact (hashes of the texts are counted); ``distinct_documents_approx`` is
a HyperLogLog estimate (relative standard error ``approx_relative_error``). ``top_lines`` are Misra-Gries heavy
hitters: each count is a lower bound of the true count, short by at most ``max_undercount``; which lines make the
list, and their counts within that bound, may differ with how the corpus was split among workers (every other
number is exact or sketched identically on any split). ``lines`` counts stripped non-empty lines.
"""

from __future__ import annotations

STATS_FORMAT = "tokenmill.stats/1"
STATS_JSON = "stats.json"
REPORT_HTML = "report.html"

K_FORMAT = "format"
K_VERSION = "tokenmill_version"
K_INPUTS = "inputs"
K_CONFIG = "config"
K_SECONDS = "seconds"
K_MB_PER_SECOND = "mb_per_second"
K_TOTALS = "totals"
K_DISTRIBUTIONS = "distributions"
K_GROUPS = "groups"
K_DUPLICATES = "duplicates"
K_TOP_LINES = "top_lines"
K_FUNNEL = "funnel"

# totals and per-group counts
DOCUMENTS = "documents"
BYTES = "bytes"
CHARACTERS = "characters"
WORDS = "words"
LINES = "lines"
TOKENS = "tokens"
RECORDS = "records"
REJECTED = "rejected"
COUNT_FIELDS = (DOCUMENTS, BYTES, CHARACTERS, WORDS, LINES, TOKENS)

# distributions: document lengths (logarithmic bins) ...
DOC_BYTES = "doc_bytes"
DOC_WORDS = "doc_words"
DOC_LINES = "doc_lines"
DOC_TOKENS = "doc_tokens"
MEAN_WORD_LENGTH = "mean_word_length"
LOG_DISTRIBUTIONS = (DOC_BYTES, DOC_WORDS, DOC_LINES, DOC_TOKENS, MEAN_WORD_LENGTH)
# ... and quality signals, the measures the filters use (ratios in [0, 1], linear bins)
FRAC_LINES_END_PUNCT = "frac_lines_end_punctuation"  # FineWeb / C4: lines ending in terminal punctuation
FRAC_SHORT_LINES = "frac_short_lines"  # FineWeb: lines of at most 30 characters
FRAC_DUP_LINES = "frac_duplicate_lines"  # Gopher: lines that repeat an earlier line of the document
FRAC_BULLET_LINES = "frac_bullet_lines"  # Gopher: lines starting with a bullet
FRAC_ELLIPSIS_LINES = "frac_ellipsis_lines"  # Gopher: lines ending in an ellipsis
FRAC_ALPHA_WORDS = "frac_alpha_words"  # Gopher: words with at least one letter
SYMBOL_WORD_RATIO = "symbol_word_ratio"  # Gopher: (# and ellipses) per word, capped at 1
FRAC_UPPERCASE = "frac_uppercase"  # uppercase letters per character
FRAC_DIGITS = "frac_digits"  # digits per character
RATIO_DISTRIBUTIONS = (FRAC_LINES_END_PUNCT, FRAC_SHORT_LINES, FRAC_DUP_LINES, FRAC_BULLET_LINES,
                       FRAC_ELLIPSIS_LINES, FRAC_ALPHA_WORDS, SYMBOL_WORD_RATIO, FRAC_UPPERCASE, FRAC_DIGITS)

# a distribution
D_COUNT = "count"
D_SUM = "sum"
D_MEAN = "mean"
D_MIN = "min"
D_MAX = "max"
D_QUANTILES = "quantiles"
D_ERROR = "error"
D_ERROR_KIND = "error_kind"  # "relative" (lengths) or "absolute" (ratios)
D_HISTOGRAM = "histogram"
QUANTILES = {"p01": 0.01, "p05": 0.05, "p10": 0.10, "p25": 0.25, "p50": 0.50, "p75": 0.75, "p90": 0.90,
             "p95": 0.95, "p99": 0.99}

# duplicates
EXACT_DUPLICATES = "exact_duplicate_documents"
EXACT_DUPLICATE_RATE = "exact_duplicate_rate"
DISTINCT = "distinct_documents"
DISTINCT_APPROX = "distinct_documents_approx"
APPROX_ERROR = "approx_relative_error"

OTHER_GROUP = "(other)"
MISSING_VALUE = "(missing)"
