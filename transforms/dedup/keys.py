"""Deduplication cores: exact keys, MinHash signatures, LSH band keys and duplicate resolution.

Pure numpy/stdlib functions; the Beam graph shuffles only their small outputs (keys, document refs and ids),
never texts. Everything is deterministic: the same text gives the same keys in every process and on every run.

* exact: a 128-bit hash of the text with Unicode (NFC) and whitespace normalised;
* near duplicates: word ``ngram`` shingles of the simplified text (NFKC, case-folded, punctuation removed), hashed
  to 32 bits, ``bands * rows`` MinHash values from the multiply-add-shift family ``((a*x + b) mod 2^64) >> 32``
  (2-independent for 32-bit keys, three vector operations per value), one key per band; documents sharing any band
  key are candidates;
* resolution: connected components of exact groups and band groups; the representative is the document read
  first (smallest ref), every other member names it.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from typing import Iterable

import numpy as np

from schemas.manifest import EXACT_DUPLICATE, NEAR_DUPLICATE
from transforms.hashing import mix64
from transforms.recipe.recipes import MinHash

_WORD = re.compile(r"\w+")
_SHINGLE_CHUNK = 4096  # shingles per signature block: bounds the (hashes x shingles) temporary to ~4 MB
_EMPTY = np.iinfo(np.uint64).max

REF_BITS = 32  # a document ref is (stream index << 32) | ordinal of the document in its stream


def make_ref(stream: int, ordinal: int) -> int:
    """The ref of a stream's ``ordinal``-th document (refs order documents as they were read)."""
    return (stream << REF_BITS) | ordinal


def split_ref(ref: int) -> tuple[int, int]:
    """(stream index, ordinal) of a ref."""
    return ref >> REF_BITS, ref & ((1 << REF_BITS) - 1)


def exact_key(text: str) -> bytes:
    """16-byte key of the text after NFC normalisation and collapsing whitespace (case is kept)."""
    norm = unicodedata.normalize("NFC", text)
    if len(norm) <= _LONG_TEXT:
        norm = " ".join(norm.split())  # str.split splits where the regex \s would
    else:  # the same string without a list of every word (millions of small objects the allocator may keep)
        norm = _SPACES.sub(" ", norm).strip(" ")
    return hashlib.blake2b(norm.encode("utf-8", "surrogatepass"), digest_size=16).digest()


_LONG_TEXT = 1 << 16
_SPACES = re.compile(r"\s+")


def simplified_words(text: str) -> list[str]:
    """The words MinHash compares: NFKC, case-folded, split on anything that is not a word character."""
    return _WORD.findall(unicodedata.normalize("NFKC", text).casefold())


class MinHasher:
    """MinHash signatures of word n-gram shingles and their LSH band keys, for one MinHash configuration."""

    def __init__(self, config: MinHash) -> None:
        self.config = config
        n = config.bands * config.rows
        rng = np.random.Generator(np.random.PCG64(config.seed))
        self._a = (rng.integers(0, 1 << 63, size=n, dtype=np.uint64) << np.uint64(1)) | np.uint64(1)  # odd
        self._b = rng.integers(0, 1 << 63, size=n, dtype=np.uint64)
        self._a_col, self._b_col = self._a[:, None], self._b[:, None]
        # one keyed-by-band hasher per band, copied per document (cheaper than building one per key)
        self._band_hashers = [hashlib.blake2b(digest_size=12, person=b.to_bytes(2, "little"))
                              for b in range(config.bands)]

    def shingles(self, text: str) -> np.ndarray:
        """Distinct 32-bit hashes of the text's word n-grams (a text shorter than n words is one shingle)."""
        return np.unique(self._shingle_hashes(text))

    def _shingle_hashes(self, text: str) -> np.ndarray:
        """The 32-bit hash of every word n-gram, in order (repeats included).

        Words are found and hashed with vector operations over the code points (the same words as
        ``simplified_words``), so no Python code runs per word.
        """
        words = word_hashes(text)
        if not words.size:
            return np.zeros(0, np.uint64)
        k = min(self.config.ngram, words.size)
        count = words.size - k + 1
        h = words[:count].copy()
        for j in range(1, k):  # polynomial combination of k consecutive word hashes, wrapping mod 2^64
            h *= _SHINGLE_BASE
            h += words[j : count + j]
        return mix64(h) >> _U32

    def signature(self, text: str) -> np.ndarray:
        """``bands * rows`` MinHash values (uint64 below 2^32); all-max for a text without words."""
        sh = self._shingle_hashes(text)
        if sh.size == 0:
            return np.full(self._a.size, _EMPTY, np.uint64)
        if sh.size <= _SHINGLE_CHUNK:  # one block: no running minimum to keep
            out = self._a_col * sh
            out += self._b_col
            sig = out.min(axis=1)
        else:
            sig = np.full(self._a.size, _EMPTY, np.uint64)
            block = np.empty((self._a.size, _SHINGLE_CHUNK), np.uint64)
            for start in range(0, sh.size, _SHINGLE_CHUNK):
                part = sh[None, start : start + _SHINGLE_CHUNK]
                out = block[:, : part.shape[1]]
                np.multiply(self._a_col, part, out=out)
                out += self._b_col
                np.minimum(sig, out.min(axis=1), out=sig)
        # (v >> 32) is monotonic in v, so the minimum can be shifted once instead of every value
        sig >>= _U32
        return sig

    def band_keys(self, text: str) -> list[bytes]:
        """One 12-byte key per band (the band index is hashed in); none for a text without words."""
        sig = self.signature(text)
        if sig[0] == _EMPTY:
            return []
        width = self.config.rows * 4
        raw = sig.astype("<u4").tobytes()
        keys = []
        for b, hasher in enumerate(self._band_hashers):
            h = hasher.copy()
            h.update(raw[b * width : (b + 1) * width])
            keys.append(h.digest())
        return keys


_BASE = np.uint64(0x9E3779B97F4A7C15)  # odd: invertible modulo 2^64
_WORD_CHARS: np.ndarray | None = None
_POWERS = np.ones(1, np.uint64)
_INVERSE_POWERS = np.ones(1, np.uint64)


def _word_chars() -> np.ndarray:
    """For every code point, whether the regex \\w matches it (built once per process from the regex itself)."""
    global _WORD_CHARS
    if _WORD_CHARS is None:
        table = np.zeros(0x110000, bool)
        every = "".join(map(chr, range(0x110000)))
        for match in _WORD.finditer(every):
            table[match.start() : match.end()] = True
        _WORD_CHARS = table
    return _WORD_CHARS


def _powers(n: int) -> tuple[np.ndarray, np.ndarray]:
    """B^0..B^(n-1) and their inverses modulo 2^64 (cached, grown by doubling)."""
    global _POWERS, _INVERSE_POWERS
    if _POWERS.size < n:
        size = max(n, min(2 * _POWERS.size, _WORD_WINDOW + 1), 1 << 16)  # windows bound it (but for giant words)
        inverse = np.uint64(pow(int(_BASE), -1, 1 << 64))
        _POWERS = np.concatenate(([np.uint64(1)], np.cumprod(np.full(size - 1, _BASE, np.uint64))))
        _INVERSE_POWERS = np.concatenate(([np.uint64(1)], np.cumprod(np.full(size - 1, inverse, np.uint64))))
    return _POWERS[:n], _INVERSE_POWERS[:n]


def word_hashes(text: str) -> np.ndarray:
    """One 64-bit hash per word of ``simplified_words(text)``, in order: equal words, equal hashes."""
    norm = unicodedata.normalize("NFKC", text).casefold()
    if len(norm) <= _WORD_WINDOW:
        return _window_word_hashes(_code_points(norm))
    parts = []
    start = 0
    while start < len(norm):  # a long text a window at a time, cut between words: the same hashes, bounded memory
        stop = min(start + _WORD_WINDOW, len(norm))
        codes = _code_points(norm[start:stop])
        if stop < len(norm):
            outside = np.flatnonzero(~_word_chars()[codes])
            if outside.size:
                stop = start + int(outside[-1]) + 1
                codes = codes[: stop - start]
            else:  # the whole window is inside one word: take the rest of that word too
                gap = _NON_WORD.search(norm, stop)
                stop = gap.start() if gap else len(norm)
                codes = _code_points(norm[start:stop])
        parts.append(_window_word_hashes(codes))
        start = stop
    return np.concatenate(parts)


_WORD_WINDOW = 1 << 20  # code points hashed at a time (~30 bytes of temporaries each)
_NON_WORD = re.compile(r"\W")


def _code_points(text: str) -> np.ndarray:
    return np.frombuffer(text.encode("utf-32-le", "surrogatepass"), np.uint32)


def _window_word_hashes(codes: np.ndarray) -> np.ndarray:
    """The hashes of the words in ``codes``, code points holding whole words (none cut at either end)."""
    in_word = np.zeros(codes.size + 2, np.int8)
    in_word[1:-1] = _word_chars()[codes]
    edges = in_word[1:] - in_word[:-1]
    bounds = np.flatnonzero(edges)  # alternately a word's start and its end
    if not bounds.size:
        return np.zeros(0, np.uint64)
    starts, ends = bounds[0::2], bounds[1::2]
    powers, inverse = _powers(codes.size + 1)
    # prefix sums of c_j * B^j: a word's polynomial is the difference of two, shifted back to position 0
    prefix = np.zeros(codes.size + 1, np.uint64)
    terms = codes.astype(np.uint64)
    terms += _ONE
    terms *= powers[: codes.size]
    np.cumsum(terms, out=prefix[1:])
    return mix64((prefix[ends] - prefix[starts]) * inverse[starts])


_ONE, _U32 = np.uint64(1), np.uint64(32)
_SHINGLE_BASE = np.uint64(0x100000001B3)


def clusters(groups: Iterable[Iterable]) -> dict:
    """Duplicate → representative for documents grouped by shared keys (connected components, smallest wins).

    ``groups`` are the ids (or refs) of documents that share one key; representatives are not in the result.
    """
    parent: dict = {}

    def find(x):
        root = x
        while parent.get(root, root) != root:
            root = parent[root]
        while parent.get(x, x) != root:  # path compression
            parent[x], x = root, parent[x]
        return root

    for group in groups:
        ids = sorted(set(group))
        if len(ids) < 2:
            continue
        roots = sorted({find(i) for i in ids})
        for r in roots[1:]:
            parent[r] = roots[0]
        for i in ids:
            parent.setdefault(i, roots[0])
    out = {}
    for doc in parent:
        root = find(doc)
        if root != doc:
            out[doc] = root
    return out


def resolve_duplicates(
    exact_groups: Iterable[list[tuple[int, str]]], near_groups: Iterable[list[tuple[int, str]]]
) -> dict[int, tuple[str, str]]:
    """ref → (reason, representative's id) for every duplicate, from groups of (ref, id) sharing a key.

    Groups are joined into connected components whose first-read document (smallest ref) is kept; a member is an
    ``exact_duplicate`` when it shares its exact key with that representative, else a ``near_duplicate``.
    """
    ids: dict[int, str] = {}
    exact_first: dict[int, int] = {}  # ref → smallest ref of its exact group
    groups: list[list[int]] = []
    for group in exact_groups:
        refs = sorted({ref for ref, _ in group})
        for ref, doc_id in group:
            ids[ref] = doc_id
            exact_first[ref] = refs[0]
        groups.append(refs)
    for group in near_groups:
        for ref, doc_id in group:
            ids[ref] = doc_id
        groups.append([ref for ref, _ in group])
    out = {}
    for dup, rep in clusters(groups).items():
        reason = EXACT_DUPLICATE if exact_first.get(dup) == rep else NEAR_DUPLICATE
        out[dup] = (reason, ids[rep])
    return out


def jaccard(a: str, b: str, ngram: int) -> float:
    """Exact Jaccard similarity of two texts' word n-gram sets (for checks and reports)."""
    def grams(t: str) -> set[tuple[str, ...]]:
        w = simplified_words(t)
        k = min(ngram, len(w))
        return {tuple(w[i : i + k]) for i in range(len(w) - k + 1)} if w else set()

    x, y = grams(a), grams(b)
    return len(x & y) / len(x | y) if x or y else 1.0
