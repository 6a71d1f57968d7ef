"""Deduplication cores: exact keys, MinHash signatures, LSH band keys and duplicate clusters.

Pure numpy/stdlib functions; the Beam graph shuffles only their small outputs (16-byte keys and document ids),
never texts. Everything is deterministic: the same text gives the same keys in every process and on every run.

* exact: a 128-bit hash of the text with Unicode (NFC) and whitespace normalised;
* near duplicates: word ``ngram`` shingles of the simplified text (NFKC, case-folded, punctuation removed),
  ``bands * rows`` MinHash values, one key per band; documents sharing any band key are candidates, and the
  connected components of candidates are clusters whose representative is the smallest id.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
import zlib
from typing import Iterable

import numpy as np

from transforms.recipes import MinHash

_SPACE = re.compile(r"\s+")
_WORD = re.compile(r"\w+")
_MERSENNE = np.uint64((1 << 61) - 1)


def exact_key(text: str) -> bytes:
    """16-byte key of the text after NFC normalisation and collapsing whitespace (case is kept)."""
    norm = _SPACE.sub(" ", unicodedata.normalize("NFC", text)).strip()
    return hashlib.blake2b(norm.encode("utf-8", "surrogatepass"), digest_size=16).digest()


def simplified_words(text: str) -> list[str]:
    """The words MinHash compares: NFKC, case-folded, split on anything that is not a word character."""
    return _WORD.findall(unicodedata.normalize("NFKC", text).casefold())


class MinHasher:
    """MinHash signatures of word n-gram shingles and their LSH band keys, for one MinHash configuration."""

    def __init__(self, config: MinHash) -> None:
        self.config = config
        n = config.bands * config.rows
        rng = np.random.Generator(np.random.PCG64(config.seed))
        # h_i(x) = (a_i * x + b_i) mod (2^61 - 1), a_i != 0: a standard universal family over 61-bit shingle hashes
        self._a = rng.integers(1, int(_MERSENNE), size=n, dtype=np.uint64)
        self._b = rng.integers(0, int(_MERSENNE), size=n, dtype=np.uint64)
        self._word_hashes: dict[str, int] = {}

    def shingles(self, text: str) -> np.ndarray:
        """Distinct 61-bit hashes of the text's word n-grams (a text shorter than n words is one shingle)."""
        words = simplified_words(text)
        if not words:
            return np.zeros(0, np.uint64)
        cache = self._word_hashes
        if len(cache) > 1_000_000:
            cache.clear()
        ids = np.fromiter((cache.get(w) or cache.setdefault(w, zlib.crc32(w.encode("utf-8", "surrogatepass")) + 1)
                           for w in words), np.uint64, len(words))
        k = min(self.config.ngram, len(ids))
        # polynomial rolling combination of k consecutive word hashes, kept below 2^61 - 1
        h = np.zeros(len(ids) - k + 1, np.uint64)
        for j in range(k):
            h = _mod_mersenne(_mulmod(h, np.uint64(1_000_003)) + ids[j : len(ids) - k + 1 + j])
        return np.unique(h)

    def signature(self, text: str) -> np.ndarray:
        """``bands * rows`` MinHash values (uint64); all-max for a text without words."""
        sh = self.shingles(text)
        if sh.size == 0:
            return np.full(self._a.size, np.iinfo(np.uint64).max, np.uint64)
        values = _mod_mersenne(_mulmod(self._a[:, None], sh[None, :]) + self._b[:, None])
        return values.min(axis=1)

    def band_keys(self, text: str) -> list[bytes]:
        """One 16-byte key per band (the band index is part of the key); none for a text without words."""
        sig = self.signature(text)
        if sig[0] == np.iinfo(np.uint64).max:
            return []
        rows = self.config.rows
        return [
            hashlib.blake2b(b.to_bytes(2, "little") + sig[b * rows : (b + 1) * rows].tobytes(), digest_size=16).digest()
            for b in range(self.config.bands)
        ]


def _mulmod(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(a * b) mod (2^61 - 1) for values below 2^61, exactly, in uint64 arithmetic (split into 31/30-bit halves)."""
    a = np.asarray(a, np.uint64)
    b = np.asarray(b, np.uint64)
    a_hi, a_lo = a >> np.uint64(31), a & np.uint64((1 << 31) - 1)
    b_hi, b_lo = b >> np.uint64(31), b & np.uint64((1 << 31) - 1)
    # a*b = a_hi*b_hi*2^62 + (a_hi*b_lo + a_lo*b_hi)*2^31 + a_lo*b_lo ; 2^61 = 1 (mod M) so 2^62 = 2
    hh = _mod_mersenne(a_hi * b_hi * np.uint64(2))
    mid = _mod_mersenne(a_hi * b_lo) + _mod_mersenne(a_lo * b_hi)
    mid = _mod_mersenne(mid)
    mid = _mod_mersenne((mid >> np.uint64(30)) + ((mid & np.uint64((1 << 30) - 1)) << np.uint64(31)))
    lo = _mod_mersenne(a_lo * b_lo)
    return _mod_mersenne(_mod_mersenne(hh + mid) + lo)


def _mod_mersenne(x: np.ndarray) -> np.ndarray:
    """x mod (2^61 - 1) for x < 2^64."""
    x = np.asarray(x, np.uint64)
    x = (x & _MERSENNE) + (x >> np.uint64(61))
    return np.where(x >= _MERSENNE, x - _MERSENNE, x)


def clusters(groups: Iterable[Iterable[str]]) -> dict[str, str]:
    """Duplicate → representative for documents grouped by shared keys (connected components, smallest id wins).

    ``groups`` are the id lists of documents that share one key (an exact key or a band key); representatives
    are not in the result.
    """
    parent: dict[str, str] = {}

    def find(x: str) -> str:
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


def jaccard(a: str, b: str, ngram: int) -> float:
    """Exact Jaccard similarity of two texts' word n-gram sets (for checks and reports)."""
    def grams(t: str) -> set[tuple[str, ...]]:
        w = simplified_words(t)
        k = min(ngram, len(w))
        return {tuple(w[i : i + k]) for i in range(len(w) - k + 1)} if w else set()

    x, y = grams(a), grams(b)
    return len(x & y) / len(x | y) if x or y else 1.0
