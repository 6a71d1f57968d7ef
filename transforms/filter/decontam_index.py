"""Benchmark decontamination's core: texts normalised and cut into word n-grams as datatrove's n-gram
decontamination does, the n-grams hashed, and the index of the evaluation sets' n-grams, built once per job.

Normalisation is datatrove's ``simplify_text`` with its default ``TextNormConfig``: lower-case; every run of digits,
with one decimal part ("3.14", "1,000"), becomes "0"; datatrove's punctuation (ASCII and Unicode punctuation,
control characters) becomes a space; NFD with the combining marks (category Mn) dropped, so "Café" is "cafe". Not
NFKC, as in datatrove: full-width letters and ligatures stay as they are. Whitespace runs are left as they are:
the words are the same. The words are datatrove's (spaCy's blank-language tokenizer on the normalised text, here
``transforms.filter.words``); the tests check them against ``word_tokenize(simplify_text(text))``. A pure-ASCII
text (most are) takes a bytes path that gives the same text several times faster.

An n-gram is ``n`` consecutive words of one text. Its hash: each word's 64-bit BLAKE2b (``stable_hash64``, once per
distinct word, kept as a per-word fact of the splitter), combined as a polynomial in an odd base modulo 2**64
(``sum(word[j] * B**(n-1-j))``: two n-grams differing in one word never collide) and finished with SplitMix64's
mixer. A text's n-gram hashes are a rolling hash over prefix sums: a few numpy passes over its word hashes, whatever
``n`` and its length, the same on any machine. (datatrove hashes the n-gram's text with xxhash64: only equal or not
matters, so the decisions agree; the tests compare them.)

The index is one uint64 array of shape (2, N): row 0 the hashes, sorted, row 1 the evaluation set each comes from
((hash, set) pairs unique, sorted by hash then set), so a document's n-grams are looked up once
(``searchsorted``), whatever the number of sets. It is saved as a ``.npy`` file (memory-mapped where it is local);
its sha256, over the settings and the array, identifies it.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import posixpath
import re
import sys
import unicodedata
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

from transforms.filter.words import WordSplitter
from transforms.hashing import mix64, stable_hash64
from transforms.output.location import is_local

HASHING = "blake2b64-words-polynomial64-mix64"  # in the index's identity: another hashing makes another index
INDEX_FILE = "decontam-{}.npy"  # in the job's temp folder, by the index's sha256
_ASCII_NUMBERS = re.compile(rb"[0-9]+(?:[.,][0-9]+)?")  # datatrove's NUMBERS_PATTERN on ASCII text
_HIGH, _LOW = "decontam_hash_high", "decontam_hash_low"  # the splitter's per-word facts: the halves of a word's hash
_BASE = 0x9E3779B97F4A7C15  # odd, so invertible modulo 2**64
_POWERS = (np.ones(1, np.uint64), np.ones(1, np.uint64))  # B**t and B**-t (mod 2**64) for t < their size, grown


@functools.lru_cache(maxsize=1)
def _tables() -> tuple[object, bytes, np.ndarray, np.ndarray]:
    """datatrove's number pattern; its punctuation as a table for ASCII bytes and as a mask by code point; the
    combining marks (category Mn, unicodedata's, as datatrove checks them) as a mask by code point."""
    from datatrove.utils.text import NUMBERS_PATTERN, PUNCTUATION_TRANS

    ascii_punctuation = bytes(cp for cp in PUNCTUATION_TRANS if cp < 0x80)
    punctuation = np.zeros(sys.maxunicode + 1, bool)
    punctuation[list(PUNCTUATION_TRANS)] = True
    marks = np.zeros(sys.maxunicode + 1, bool)
    marks[[cp for cp in range(sys.maxunicode + 1) if unicodedata.category(chr(cp)) == "Mn"]] = True
    return (NUMBERS_PATTERN, bytes.maketrans(ascii_punctuation, b" " * len(ascii_punctuation)), punctuation,
            marks)


def _code_points(text: str) -> np.ndarray:
    return np.frombuffer(text.encode("utf-32-le", "surrogatepass"), np.uint32)


def _text(codes: np.ndarray) -> str:
    return codes.tobytes().decode("utf-32-le", "surrogatepass")


def normalize(text: str) -> str:
    """The text as datatrove's ``simplify_text`` makes it, but for whitespace runs (kept: the words are the same)."""
    numbers, ascii_punctuation, punctuation, marks = _tables()
    if text.isascii():
        return _ASCII_NUMBERS.sub(b"0", text.encode("ascii").lower()).translate(ascii_punctuation).decode("ascii")
    codes = _code_points(numbers.sub("0", text.lower())).copy()
    codes[punctuation[codes]] = 0x20  # str.translate would do the same, several times slower
    codes = _code_points(unicodedata.normalize("NFD", _text(codes)))
    return _text(codes[~marks[codes]])


def _signed_half(shift: int):
    """The 32 bits of a word's hash from bit ``shift`` on, as a signed int32 (the splitter's facts are int32)."""

    def half(word: str) -> int:
        value = (stable_hash64(word) >> shift) & 0xFFFFFFFF
        return value - (1 << 32) if value >= 1 << 31 else value

    return half


def _powers(size: int) -> tuple[np.ndarray, np.ndarray]:
    """B**t and B**-t modulo 2**64 for t < size at least (uint64 arithmetic wraps around: exact modulo 2**64)."""
    global _POWERS
    powers = _POWERS
    if powers[0].size < size:
        size = max(size, 2 * powers[0].size, 1024)
        grown = []
        for base in (_BASE, pow(_BASE, -1, 1 << 64)):
            grown.append(np.empty(size, np.uint64))
            grown[-1][0] = 1
            np.cumprod(np.full(size - 1, base, np.uint64), out=grown[-1][1:])
        powers = _POWERS = (grown[0], grown[1])  # one assignment: a reader never sees one table grown alone
    return powers


def ngram_hashes(words: np.ndarray, n: int) -> np.ndarray:
    """The hash of each run of ``n`` consecutive word hashes (uint64), by its first word; none below ``n`` words."""
    count = words.size - n + 1
    if count <= 0:
        return np.empty(0, np.uint64)
    up, down = _powers(words.size)
    prefix = np.zeros(words.size + 1, np.uint64)  # prefix[k] = sum(words[t] * B**-t for t < k)
    np.cumsum(words * down[:words.size], out=prefix[1:])
    return mix64((prefix[n:] - prefix[:count]) * up[n - 1:words.size])  # times B**(i+n-1): sum(w[i+j] * B**(n-1-j))


class NgramHasher:
    """Words of normalised texts and their n-gram hashes; one per worker (its splitter caches the words)."""

    def __init__(self, n: int, language: str) -> None:
        self.n = n
        self.splitter = WordSplitter(language)
        self._high, self._low = _signed_half(32), _signed_half(0)

    def word_ids(self, text: str) -> np.ndarray:
        """The ids of the normalised text's words (valid until the next text)."""
        return self.splitter.words_of(normalize(text)).ids

    def word_hashes(self, ids: np.ndarray) -> np.ndarray:
        """Each word's 64-bit hash (uint64), for ids of the last text."""
        high = self.splitter.fact(_HIGH, self._high)[ids].astype(np.uint32).astype(np.uint64)
        low = self.splitter.fact(_LOW, self._low)[ids].astype(np.uint32).astype(np.uint64)
        return (high << np.uint64(32)) | low

    def hashes(self, ids: np.ndarray) -> np.ndarray:
        """The hash of every n-gram of the words, by position."""
        return ngram_hashes(self.word_hashes(ids), self.n)

    def piece_words(self, pieces: list[str]) -> list[int]:
        """How many words each whitespace-free piece of a text has (in order, the text's words). The pieces are
        normalised joined by newlines, which normalisation keeps (and makes of nothing else)."""
        chunk_ids = self.splitter.chunk_ids
        return [sum(len(chunk_ids(chunk)) for chunk in piece.split())
                for piece in normalize("\n".join(pieces)).split("\n")]

    def ngram(self, ids: np.ndarray, start: int) -> str:
        """The normalised words of the n-gram at ``start``, joined by spaces."""
        vocabulary = self.splitter.vocabulary
        return " ".join(vocabulary[i] for i in ids[start:start + self.n].tolist())


class NgramIndex:
    """The evaluation sets' n-grams: ``table`` row 0 the sorted hashes, row 1 the set (index into ``names``)."""

    def __init__(self, names: Sequence[str], table: np.ndarray) -> None:
        self.names = tuple(names)
        self.table = table
        self.hashes, self.sets = table[0], table[1]

    def matched(self, grams: np.ndarray) -> np.ndarray:
        """Positions of the n-gram hashes that are in the index."""
        if not grams.size or not self.hashes.size:
            return np.empty(0, np.intp)
        at = np.minimum(np.searchsorted(self.hashes, grams), self.hashes.size - 1)
        return np.flatnonzero(self.hashes[at] == grams)

    def sets_of(self, grams: np.ndarray) -> list[np.ndarray]:
        """For each n-gram hash in the index, the sets holding it (ascending)."""
        left = np.searchsorted(self.hashes, grams, "left").tolist()
        right = np.searchsorted(self.hashes, grams, "right").tolist()
        return [self.sets[a:b] for a, b in zip(left, right)]


@dataclass(frozen=True)
class BuiltIndex:
    """An index as built from the evaluation sets: the index, its sha256, per set its items and n-grams."""

    index: NgramIndex
    sha256: str
    sets: dict[str, dict[str, int]]  # name -> {"items": ..., "ngrams": ...} (distinct n-grams)


def build_index(sets: Sequence[tuple[str, Iterable[list[str]]]], n: int, language: str) -> BuiltIndex:
    """The index of the sets' n-grams; ``sets`` (one at least): (name, the texts of each item). An item's texts
    follow each other, so its n-grams run across them (a question into its answer, as datatrove's overlap n-grams
    do)."""
    hasher = NgramHasher(n, language)
    per_set: list[np.ndarray] = []
    stats: dict[str, dict[str, int]] = {}
    for name, items in sets:
        found: list[np.ndarray] = []
        count = 0
        for texts in items:
            count += 1
            words = [hasher.word_hashes(hasher.word_ids(text)) for text in texts]
            grams = ngram_hashes(np.concatenate(words), n) if words else np.empty(0, np.uint64)
            if grams.size:
                found.append(grams)
        unique = np.unique(np.concatenate(found)) if found else np.empty(0, np.uint64)
        stats[name] = {"items": count, "ngrams": int(unique.size)}
        per_set.append(unique)
    hashes = np.concatenate(per_set)
    owners = np.concatenate([np.full(u.size, k, np.uint64) for k, u in enumerate(per_set)])
    order = np.lexsort((owners, hashes))
    table = np.stack([hashes[order], owners[order]])
    names = [name for name, _ in sets]
    return BuiltIndex(NgramIndex(names, table), index_sha256(names, n, language, table), stats)


def index_sha256(names: Sequence[str], n: int, language: str, table: np.ndarray) -> str:
    """sha256 hex of an index: its settings and sets' names, then its array (little-endian uint64)."""
    head = json.dumps({"hashing": HASHING, "n": n, "language": language, "sets": list(names)}, sort_keys=True)
    digest = hashlib.sha256(head.encode("utf-8"))
    digest.update(np.ascontiguousarray(table, "<u8").tobytes())
    return digest.hexdigest()


def save_index(index: NgramIndex, url: str) -> None:
    """Write the index's array as a ``.npy`` file at ``url`` (any fsspec URL)."""
    import fsspec

    fs, path = fsspec.core.url_to_fs(url)
    fs.makedirs(posixpath.dirname(path), exist_ok=True)
    with fs.open(path, "wb") as fh:
        np.save(fh, np.ascontiguousarray(index.table, "<u8"), allow_pickle=False)


def load_index(url: str, names: Sequence[str]) -> NgramIndex:
    """The index saved at ``url``: memory-mapped when the file is local, read whole otherwise."""
    import fsspec

    fs, path = fsspec.core.url_to_fs(url)
    if is_local(fs):
        table = np.load(path, mmap_mode="r", allow_pickle=False)
    else:
        table = np.load(io.BytesIO(fs.cat_file(path)), allow_pickle=False)
    return NgramIndex(names, table)
