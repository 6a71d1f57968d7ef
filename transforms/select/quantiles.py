"""Exact weighted order statistics of (key, weight) pairs, computed by histograms that combine across workers.

Keys are non-negative integers of ``bits`` bits (``float_key`` maps scores onto them in order). Each level looks
at the next ``step`` bits of the keys below the prefixes found so far: a histogram of weights (and counts) per
prefix, summed over all pairs by any combiner, tells in which bin each target's cumulative weight is crossed. After
``bits / step`` levels the prefix is the whole key: the answer is exact, and no worker ever holds more than one
histogram per target. This is what a Beam pipeline runs as a chain of global combines (``RadixCombine``), and
``select_keys`` runs the same levels in memory (tests, small inputs).

A target is crossed at the smallest key whose cumulative weight (all pairs with a key <= it) reaches it:
* ``Fraction(q)``: cumulative / total >= q, as float64 division, like ``numpy.quantile(..., weights=w,
  method="inverted_cdf")`` (the tests compare the two);
* ``Weight(w)``: cumulative >= w, exact integers (weights are integers: bytes, tokens, documents);
* ``Beyond(f)``: cumulative > floor(f * total), the first key past a budget of that share.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass, field
from typing import Iterable

import numpy as np

STEP = 16


@dataclass(frozen=True)
class Fraction:
    """The smallest key with cumulative weight / total >= q (0 < q <= 1)."""

    q: float


@dataclass(frozen=True)
class Weight:
    """The smallest key with cumulative weight >= w (an integer)."""

    w: int


@dataclass(frozen=True)
class Beyond:
    """The smallest key with cumulative weight > floor(f * total): the first key past a budget of that share of
    the total weight (keys below it are the budget's prefix)."""

    f: float


Target = Fraction | Weight | Beyond


def float_key(x: float) -> int:
    """An unsigned 64-bit key ordering floats as numbers (-0.0 == 0.0); NaN is an error."""
    if math.isnan(x):
        raise ValueError("a score is NaN")
    if x == 0.0:
        x = 0.0
    (bits,) = struct.unpack("<Q", struct.pack("<d", x))
    return bits ^ 0xFFFF_FFFF_FFFF_FFFF if bits >> 63 else bits | (1 << 63)


def key_float(key: int) -> float:
    """The float whose ``float_key`` is ``key``."""
    bits = key & ~(1 << 63) if key >> 63 else key ^ 0xFFFF_FFFF_FFFF_FFFF
    return struct.unpack("<d", struct.pack("<Q", bits))[0]


def float_keys(values: np.ndarray) -> np.ndarray:
    """``float_key`` of a float64 array, vectorised (uint64)."""
    values = np.asarray(values, np.float64)
    if np.isnan(values).any():
        raise ValueError("a score is NaN")
    bits = np.where(values == 0.0, 0.0, values).view(np.uint64)
    negative = (bits >> np.uint64(63)).astype(bool)
    return np.where(negative, ~bits, bits | np.uint64(1 << 63))


@dataclass
class Search:
    """Where each target stands: the key prefix found so far (its first ``level * step`` bits) and the weight of
    every pair below that prefix; ``total`` is known after the first level."""

    bits: int
    targets: tuple[Target, ...]
    step: int = STEP
    level: int = 0
    total: int | None = None
    count: int | None = None
    prefixes: list[int | None] = field(default_factory=list)
    below: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        for t in self.targets:
            if isinstance(t, Fraction) and not 0 < t.q <= 1:
                raise ValueError(f"a fraction target must be in (0, 1], got {t.q}")
        if not self.prefixes:
            self.prefixes = [0] * len(self.targets)
            self.below = [0] * len(self.targets)

    @property
    def levels(self) -> int:
        """Histogram levels needed for keys of ``bits`` bits."""
        return -(-self.bits // self.step)

    @property
    def done(self) -> bool:
        """Whether every target's key is known (or known not to exist)."""
        return self.level >= self.levels

    def shift(self, level: int | None = None) -> int:
        """Bits below the digit that ``level`` (default: the current one) looks at."""
        level = self.level if level is None else level
        return max(0, self.bits - (level + 1) * self.step)

    def width(self) -> int:
        """Bits of the current digit."""
        return self.bits - self.level * self.step - self.shift()

    def open_prefixes(self) -> list[int]:
        """The distinct prefixes the current level histograms (those of targets still searching)."""
        return sorted({p for p in self.prefixes if p is not None})

    def keys(self) -> list[int | None]:
        """Per target, its key (None when the total weight never reaches it); only once ``done``."""
        if not self.done:
            raise RuntimeError("the search needs more levels")
        return list(self.prefixes)


class Histograms:
    """One level's accumulator: per open prefix, weights and counts per digit value (merge by adding)."""

    def __init__(self, search: Search) -> None:
        self.shift = search.shift()
        self.prefix_shift = search.bits - search.level * search.step
        size = 1 << search.width()
        self.mask = size - 1
        self.weights = {p: np.zeros(size, np.int64) for p in search.open_prefixes()}
        self.counts = {p: np.zeros(size, np.int64) for p in search.open_prefixes()}

    def add(self, keys: np.ndarray, weights: np.ndarray) -> "Histograms":
        """Count pairs (uint64 or object keys, int64 weights) into the histograms of their prefixes."""
        if not self.weights or len(keys) == 0:
            return self
        keys = np.asarray(keys)
        weights = np.asarray(weights, np.int64)
        if keys.dtype == object or self.prefix_shift > 64:
            prefixes = np.array([k >> self.prefix_shift for k in keys.tolist()], dtype=object)
            digits = np.array([(k >> self.shift) & self.mask for k in keys.tolist()], np.int64)
        else:
            k = keys.astype(np.uint64)
            prefixes = (k >> np.uint64(self.prefix_shift)) if self.prefix_shift < 64 else np.zeros(len(k), np.uint64)
            digits = ((k >> np.uint64(self.shift)) & np.uint64(self.mask)).astype(np.int64)
        for p in self.weights:
            where = prefixes == p
            if where.any():
                self.weights[p] += np.bincount(digits[where], weights[where], minlength=self.mask + 1).astype(np.int64)
                self.counts[p] += np.bincount(digits[where], minlength=self.mask + 1)
        return self

    def __getstate__(self) -> dict:
        """Sparse when pickled (between workers): only the digits some pair has."""
        sparse = {}
        for p in self.weights:
            idx = np.flatnonzero(self.counts[p])
            sparse[p] = (idx.astype(np.int32), self.weights[p][idx], self.counts[p][idx])
        return {"shift": self.shift, "prefix_shift": self.prefix_shift, "mask": self.mask, "sparse": sparse}

    def __setstate__(self, state: dict) -> None:
        self.shift, self.prefix_shift, self.mask = state["shift"], state["prefix_shift"], state["mask"]
        self.weights, self.counts = {}, {}
        for p, (idx, w, c) in state["sparse"].items():
            self.weights[p] = np.zeros(self.mask + 1, np.int64)
            self.counts[p] = np.zeros(self.mask + 1, np.int64)
            self.weights[p][idx] = w
            self.counts[p][idx] = c

    def merge(self, other: "Histograms") -> "Histograms":
        """Add another worker's histograms of the same level."""
        for p in other.weights:
            self.weights[p] += other.weights[p]
            self.counts[p] += other.counts[p]
        return self


def advance(search: Search, hist: Histograms) -> Search:
    """The next level's search: each target's digit, from its prefix's histogram (the level's whole sum)."""
    if search.level == 0:
        search.total = int(hist.weights[0].sum()) if 0 in hist.weights else 0
        search.count = int(hist.counts[0].sum()) if 0 in hist.counts else 0
    total = search.total
    prefixes, below = [], []
    for target, prefix, base in zip(search.targets, search.prefixes, search.below):
        if prefix is None:
            prefixes.append(None)
            below.append(base)
            continue
        weights, counts = hist.weights[prefix], hist.counts[prefix]
        cumulative = base + np.cumsum(weights)
        if isinstance(target, Fraction):
            reached = (cumulative.astype(np.float64) / float(total) >= target.q) if total else np.zeros(len(weights), bool)
        elif isinstance(target, Beyond):
            reached = cumulative > math.floor(target.f * total)
        else:
            reached = cumulative >= target.w
        reached &= counts > 0  # a digit no pair has is never the answer
        hits = np.flatnonzero(reached)
        if not hits.size:
            prefixes.append(None)  # the whole weight never reaches this target
            below.append(base)
            continue
        digit = int(hits[0])
        prefixes.append((prefix << search.width()) | digit)
        below.append(base + int(weights[:digit].sum()))
    return Search(search.bits, search.targets, search.step, search.level + 1, search.total, search.count,
                  prefixes, below)


def advance_all(searches: dict[str, Search], hists: dict[str, Histograms]) -> dict[str, Search]:
    """Every unfinished search one level further (a group no pair reached gets an empty histogram)."""
    return {group: s if s.done else advance(s, hists.get(group) or Histograms(s)) for group, s in searches.items()}


def run_searches(pairs: list[tuple[str, int, int]], searches: dict[str, Search],
                 chunk: int = 1 << 20) -> dict[str, Search]:
    """Finish grouped searches over (group, key, weight) pairs in memory (what the Beam levels compute)."""
    by_group: dict[str, tuple[list, list]] = {}
    for group, key, weight in pairs:
        keys, weights = by_group.setdefault(group, ([], []))
        keys.append(key)
        weights.append(weight)
    arrays = {}
    for group, (keys, weights) in by_group.items():
        if group in searches:
            wide = searches[group].bits > 64
            arrays[group] = (np.array(keys, dtype=object if wide else np.uint64), np.array(weights, np.int64))
    while not all(s.done for s in searches.values()):
        hists = {}
        for group, s in searches.items():
            if s.done or group not in arrays:
                continue
            keys, weights = arrays[group]
            hist = Histograms(s)
            for start in range(0, len(keys), chunk):
                hist.merge(Histograms(s).add(keys[start:start + chunk], weights[start:start + chunk]))
            hists[group] = hist
        searches = advance_all(searches, hists)
    return searches


def select_keys(keys: Iterable[int] | np.ndarray, weights: Iterable[int] | np.ndarray, targets: list[Target],
                bits: int = 64, step: int = STEP, chunk: int = 1 << 20) -> tuple[list[int | None], int]:
    """(per target, its key or None; the total weight), running every level over the pairs in memory, in chunks
    of ``chunk`` pairs as a distributed combine would see them."""
    keys = np.asarray(list(keys) if not isinstance(keys, np.ndarray) else keys)
    weights = np.asarray(list(weights) if not isinstance(weights, np.ndarray) else weights, np.int64)
    search = Search(bits, tuple(targets), step)
    while not search.done:
        hist = Histograms(search)
        for start in range(0, max(len(keys), 1), chunk):
            hist.merge(Histograms(search).add(keys[start:start + chunk], weights[start:start + chunk]))
        search = advance(search, hist)
    return search.keys(), search.total or 0
