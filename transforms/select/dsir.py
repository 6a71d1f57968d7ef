"""DSIR importance weights (Xie et al., 2023): hashed bag-of-ngrams models of a target corpus and of the raw input.

A document's features are its lower-cased words (``\\w+``) and adjacent word pairs, hashed into ``buckets``
(CRC-32 of the word's UTF-8: the same on every machine and process). Each corpus is summarised by its feature counts
(summed by a combine, never collected), and a document's score is its log importance weight

    sum over its features f of  log p_target(f) - log p_raw(f),    p(f) = (count(f) + 1) / (total + buckets)

(add-one smoothing): positive when the document looks more like the target than like the raw input.
"""

from __future__ import annotations

import re
import zlib

import numpy as np

_WORDS = re.compile(r"\w+")
_PAIR = 1_000_003  # mixes a word pair's hashes (both < 2^32: the products stay below 2^63)
MAX_CACHED_WORDS = 1_000_000


class DsirFeatures:
    """Feature ids of texts (unigram and bigram hashes modulo ``buckets``), with a per-process word-hash cache."""

    def __init__(self, buckets: int) -> None:
        if buckets < 1:
            raise ValueError(f"buckets must be positive, got {buckets}")
        self.buckets = buckets
        self._hashes: dict[str, int] = {}

    def _hash(self, word: str) -> int:
        h = self._hashes.get(word)
        if h is None:
            if len(self._hashes) >= MAX_CACHED_WORDS:
                self._hashes.clear()
            h = self._hashes[word] = zlib.crc32(word.encode("utf-8", "surrogatepass"))
        return h

    def ids(self, text: str) -> np.ndarray:
        """The text's feature ids (int64; a feature that occurs twice is there twice)."""
        words = _WORDS.findall(text.lower())
        h = np.fromiter(map(self._hash, words), np.int64, len(words))
        if h.size < 2:
            return h % self.buckets
        return np.concatenate((h % self.buckets, (h[:-1] * _PAIR + h[1:] + 1) % self.buckets))

    def counts(self, texts: list[str]) -> np.ndarray:
        """Summed feature counts of texts (int64, one per bucket)."""
        out = np.zeros(self.buckets, np.int64)
        for text in texts:
            out += np.bincount(self.ids(text), minlength=self.buckets)
        return out


def dsir_weights(target: np.ndarray, raw: np.ndarray) -> np.ndarray:
    """Per feature, log p_target - log p_raw with add-one smoothing (float64)."""
    target = np.asarray(target, np.float64)
    raw = np.asarray(raw, np.float64)
    buckets = target.size
    return np.log((target + 1) / (target.sum() + buckets)) - np.log((raw + 1) / (raw.sum() + buckets))


class DsirScorer:
    """A document's DSIR log importance weight under fitted ``weights``."""

    def __init__(self, params: dict, weights: np.ndarray) -> None:
        self.features = DsirFeatures(int(params["buckets"]))
        self.weights = np.asarray(weights, np.float64)
        if self.weights.size != self.features.buckets:
            raise ValueError(f"dsir: {self.weights.size} fitted weights for {self.features.buckets} buckets")

    def score(self, texts: list[str]) -> list[float]:
        """One log importance weight per text."""
        return [float(self.weights[self.features.ids(t)].sum()) for t in texts]
