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
from transforms.recipes import MinHash

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
    norm = " ".join(unicodedata.normalize("NFC", text).split())  # str.split splits where the regex \s would
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
        self._a = (rng.integers(0, 1 << 63, size=n, dtype=np.uint64) << np.uint64(1)) | np.uint64(1)  # odd
        self._b = rng.integers(0, 1 << 63, size=n, dtype=np.uint64)

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
        h = np.zeros(words.size - k + 1, np.uint64)
        for j in range(k):  # polynomial combination of k consecutive word hashes, wrapping mod 2^64
            h = h * np.uint64(0x100000001B3) + words[j : words.size - k + 1 + j]
        return _mix64(h) >> np.uint64(32)

    def signature(self, text: str) -> np.ndarray:
        """``bands * rows`` MinHash values (uint64 below 2^32); all-max for a text without words."""
        sh = self._shingle_hashes(text)
        sig = np.full(self._a.size, _EMPTY, np.uint64)
        if sh.size == 0:
            return sig
        a, b = self._a[:, None], self._b[:, None]
        block = np.empty((self._a.size, min(sh.size, _SHINGLE_CHUNK)), np.uint64)
        for start in range(0, sh.size, _SHINGLE_CHUNK):
            part = sh[None, start : start + _SHINGLE_CHUNK]
            out = block[:, : part.shape[1]]
            np.multiply(a, part, out=out)
            out += b
            np.minimum(sig, out.min(axis=1), out=sig)
        # (v >> 32) is monotonic in v, so the minimum can be shifted once instead of every value
        return sig >> np.uint64(32)

    def band_keys(self, text: str) -> list[bytes]:
        """One 12-byte key per band (the band index is hashed in); none for a text without words."""
        sig = self.signature(text)
        if sig[0] == _EMPTY:
            return []
        rows = self.config.rows
        raw = sig.astype("<u4").tobytes()
        return [
            hashlib.blake2b(raw[b * rows * 4 : (b + 1) * rows * 4], digest_size=12, person=b.to_bytes(2, "little"))
            .digest()
            for b in range(self.config.bands)
        ]


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
        size = max(n, 2 * _POWERS.size, 1 << 16)
        inverse = np.uint64(pow(int(_BASE), -1, 1 << 64))
        _POWERS = np.concatenate(([np.uint64(1)], np.cumprod(np.full(size - 1, _BASE, np.uint64))))
        _INVERSE_POWERS = np.concatenate(([np.uint64(1)], np.cumprod(np.full(size - 1, inverse, np.uint64))))
    return _POWERS[:n], _INVERSE_POWERS[:n]


def word_hashes(text: str) -> np.ndarray:
    """One 64-bit hash per word of ``simplified_words(text)``, in order: equal words, equal hashes."""
    norm = unicodedata.normalize("NFKC", text).casefold()
    codes = np.frombuffer(norm.encode("utf-32-le", "surrogatepass"), np.uint32)
    in_word = np.zeros(codes.size + 2, np.int8)
    in_word[1:-1] = _word_chars()[codes]
    edges = np.diff(in_word)
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    if not starts.size:
        return np.zeros(0, np.uint64)
    powers, inverse = _powers(codes.size + 1)
    # prefix sums of c_j * B^j: a word's polynomial is the difference of two, shifted back to position 0
    prefix = np.zeros(codes.size + 1, np.uint64)
    np.cumsum((codes.astype(np.uint64) + np.uint64(1)) * powers[: codes.size], out=prefix[1:])
    return _mix64((prefix[ends] - prefix[starts]) * inverse[starts])


def _mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: every input bit affects every output bit (so the top 32 bits are a good hash)."""
    x = x ^ (x >> np.uint64(30))
    x = x * np.uint64(0xBF58476D1CE4E5B9)
    x = x ^ (x >> np.uint64(27))
    x = x * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


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
