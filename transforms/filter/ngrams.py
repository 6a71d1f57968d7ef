"""Word n-gram repetition counts of the Gopher repetition rules, over word ids instead of word strings.

``top_ngram`` is datatrove's ``find_top_duplicate(get_n_grams(words, n))`` split in its two factors, and
``duplicate_chars`` is its ``find_all_duplicate(words, n)``; both run in C (``transforms/filter/_ngrams.c``, built when the
package is installed) and fall back to the Python definitions below where the extension is missing. The tests
check that both give the same numbers, and the same numbers as datatrove's functions on the words themselves.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # arrays are passed in, never made here: no numpy import (the stage registry, --help, imports this)
    import numpy as np

try:
    from transforms.filter import _ngrams as _compiled
except ImportError:  # no compiler where the package was installed: the Python definitions below
    _compiled = None

COMPILED = _compiled is not None


def top_ngram_python(ids: np.ndarray, lens: np.ndarray, n: int) -> tuple[int, int]:
    """(count, length of its words joined by single spaces) of the most frequent n-gram of ``ids``, the first
    occurring among equals (``Counter.most_common``); (0, 0) with fewer than n words."""
    if len(ids) < n:
        return 0, 0
    keys = list(zip(*(ids[k : len(ids) - n + 1 + k].tolist() for k in range(n))))
    gram, count = Counter(keys).most_common(1)[0]
    start = keys.index(gram)
    return count, int(lens[start : start + n].sum()) + n - 1


def duplicate_chars_python(joined: str, ends: np.ndarray, n: int) -> int:
    """datatrove's ``find_all_duplicate``: characters in n-grams (words joined without separator) seen before,
    a repeat skipping its n words; ``ends`` holds the words' end offsets in ``joined`` after a leading 0."""
    bounds = ends.tolist()
    grams = len(bounds) - n  # words - n + 1
    seen: set[str] = set()
    repeated = i = 0
    while i < grams:
        gram = joined[bounds[i] : bounds[i + n]]
        if gram in seen:
            repeated += len(gram)
            i += n
        else:
            seen.add(gram)
            i += 1
    return repeated


def top_ngram(ids: np.ndarray, lens: np.ndarray, n: int) -> tuple[int, int]:
    """``top_ngram_python`` (int32 ``ids`` and ``lens``), in C where built."""
    if _compiled is not None:
        return _compiled.top_ngram(ids, lens, n)
    return top_ngram_python(ids, lens, n)


def duplicate_chars(joined: str, ends: np.ndarray, ns: tuple[int, ...]) -> tuple[int, ...]:
    """``duplicate_chars_python`` for each n of ``ns`` (int64 ``ends``), in C where built."""
    if _compiled is not None:
        return _compiled.duplicate_chars(joined, ends, ns)
    return tuple(duplicate_chars_python(joined, ends, n) for n in ns)
