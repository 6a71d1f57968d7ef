"""The combinable sketches of ``tokenmill stats``: ``Dist`` (exact count, sum, min, max; quantiles from fixed bins),
``HyperLogLog`` (approximate distinct count) and ``HeavyHitters`` (Misra-Gries summary of frequent lines).

Merging each is associative and commutative, so a result does not depend on how the corpus was split among workers.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from schemas import stats as s

try:
    from transforms.stats._words import add_counts
except ImportError:  # not built here: Counter.update
    add_counts = None

LOG_GAMMA = 1.02  # logarithmic bins: [g^(i-1), g^i); a bin's estimate is within (g-1)/(g+1) of every value in it
LOG_BINS = 2048  # bin 0 holds 0; bins 1..2047 cover 1 .. 1.02^2046 (about 4e17)
LOG_ERROR = (LOG_GAMMA - 1) / (LOG_GAMMA + 1)
RATIO_BINS = 1000  # [i/1000, (i+1)/1000), the last bin closed
RATIO_ERROR = 0.5 / RATIO_BINS


class Dist:
    """A combinable distribution: exact count/sum/min/max and a fixed-bin histogram for quantiles."""

    __slots__ = ("kind", "bins", "count", "total", "low", "high")

    def __init__(self, kind: str) -> None:
        self.kind = kind  # "log" (non-negative lengths) or "ratio" (values in [0, 1])
        self.bins = np.zeros(LOG_BINS if kind == "log" else RATIO_BINS, np.int64)
        self.count = 0
        self.total = 0.0
        self.low = math.inf
        self.high = -math.inf

    def add(self, values: np.ndarray) -> None:
        """Add an array of values."""
        if len(values) == 0:
            return
        values = np.asarray(values, np.float64)
        self.count += len(values)
        self.total += float(values.sum())
        self.low = min(self.low, float(values.min()))
        self.high = max(self.high, float(values.max()))
        self.bins += np.bincount(self.bin_of(values), minlength=len(self.bins))

    def bin_of(self, values: np.ndarray) -> np.ndarray:
        """The bin of each value."""
        if self.kind == "log":
            with np.errstate(divide="ignore"):
                idx = np.floor(np.log(np.maximum(values, 1.0)) / math.log(LOG_GAMMA)).astype(np.int64) + 1
            idx[values <= 0] = 0
            return np.clip(idx, 0, LOG_BINS - 1)
        return np.clip((values * RATIO_BINS).astype(np.int64), 0, RATIO_BINS - 1)

    def merge(self, other: "Dist") -> "Dist":
        """Add ``other`` into this one; returns self."""
        self.bins += other.bins
        self.count += other.count
        self.total += other.total
        self.low, self.high = min(self.low, other.low), max(self.high, other.high)
        return self

    def _estimate(self, i: int) -> float:
        if self.kind == "log":
            if i == 0:
                return 0.0
            lo, hi = LOG_GAMMA ** (i - 1), LOG_GAMMA ** i
            value = 2 * lo * hi / (lo + hi)
        else:
            value = (i + 0.5) / RATIO_BINS
        return min(max(value, self.low), self.high)

    def quantile(self, q: float) -> float:
        """The q-quantile (inverted CDF: the smallest value with at least q of the count at or below it), within
        the sketch's error."""
        if self.count == 0:
            return math.nan
        rank = max(1, math.ceil(q * self.count))
        if rank == 1 or rank >= self.count:  # the extremes are known exactly
            return self.low if rank == 1 else self.high
        i = int(np.searchsorted(np.cumsum(self.bins), rank))
        return self._estimate(i)

    def display_histogram(self) -> dict[str, list]:
        """A coarse histogram for charts: powers of 2^(1/2) for lengths, twentieths for ratios."""
        if self.kind == "ratio":
            counts = self.bins.reshape(20, RATIO_BINS // 20).sum(axis=1)
            return {"edges": [round(k / 20, 2) for k in range(21)], "counts": counts.tolist()}
        if self.count == 0:
            return {"edges": [], "counts": []}
        # fine bin i covers [g^(i-1), g^i): group by the power of sqrt(2) its lower edge falls in
        step = math.log(2) / 2
        lows = np.array([0.0] + [LOG_GAMMA ** (i - 1) for i in range(1, LOG_BINS)])
        coarse = np.where(lows > 0, np.floor(np.log(np.maximum(lows, 1.0)) / step + 1e-9).astype(np.int64) + 1, 0)
        used = np.flatnonzero(self.bins)
        first, last = int(coarse[used[0]]), int(coarse[used[-1]])
        counts = np.bincount(coarse[used] - first, weights=self.bins[used], minlength=last - first + 1)
        edges = [0.0 if k == 0 else round(math.exp((k - 1) * step), 3) for k in range(first, last + 2)]
        if first == 0:
            edges[1] = 1.0
        return {"edges": edges, "counts": counts.astype(np.int64).tolist()}

    def to_dict(self) -> dict[str, Any]:
        """The stats.json form."""
        empty = self.count == 0
        return {
            s.D_COUNT: self.count,
            s.D_SUM: round(self.total, 6),
            s.D_MEAN: None if empty else round(self.total / self.count, 6),
            s.D_MIN: None if empty else self.low,
            s.D_MAX: None if empty else self.high,
            s.D_QUANTILES: {name: (None if empty else round(self.quantile(q), 6)) for name, q in s.QUANTILES.items()},
            s.D_ERROR: LOG_ERROR if self.kind == "log" else RATIO_ERROR,
            s.D_ERROR_KIND: "relative" if self.kind == "log" else "absolute",
            s.D_HISTOGRAM: self.display_histogram(),
        }


class HyperLogLog:
    """HyperLogLog over 64-bit hashes (2^14 registers: relative standard error about 0.8%)."""

    P = 14
    M = 1 << P
    RELATIVE_ERROR = 1.04 / math.sqrt(M)

    def __init__(self) -> None:
        self.registers = np.zeros(self.M, np.uint8)

    def add(self, hashes: np.ndarray) -> None:
        """Add an array of uint64 hashes."""
        if len(hashes) == 0:
            return
        h = np.asarray(hashes, np.uint64)
        idx = (h >> np.uint64(64 - self.P)).astype(np.int64)
        rest = h & np.uint64((1 << (64 - self.P)) - 1)
        x = rest.copy()  # bit length of rest: smear the highest bit down, then count the ones
        for shift in (1, 2, 4, 8, 16, 32):
            x |= x >> np.uint64(shift)
        rank = (64 - self.P) - np.bitwise_count(x).astype(np.int64) + 1
        np.maximum.at(self.registers, idx, rank.astype(np.uint8))

    def merge(self, other: "HyperLogLog") -> "HyperLogLog":
        """Register-wise maximum; returns self."""
        np.maximum(self.registers, other.registers, out=self.registers)
        return self

    def estimate(self) -> int:
        """The estimated number of distinct hashes added."""
        m = self.M
        alpha = 0.7213 / (1 + 1.079 / m)
        raw = alpha * m * m / float(np.sum(np.power(2.0, -self.registers.astype(np.float64))))
        zeros = int(np.count_nonzero(self.registers == 0))
        if raw <= 2.5 * m and zeros:
            return round(m * math.log(m / zeros))  # linear counting for small cardinalities
        return round(raw)


@dataclass
class HeavyHitters:
    """Misra-Gries summary of line frequencies (mergeable): counts are lower bounds, short by at most ``undercount``."""

    k: int = 1000
    counts: Counter = field(default_factory=Counter)
    undercount: int = 0
    total: int = 0

    def add(self, lines: list[str]) -> None:
        """Count lines (exactly, until the summary grows past 16k lines: then it keeps the k largest)."""
        self.counts.update(lines)
        self.total += len(lines)
        if len(self.counts) > 16 * self.k:
            self.prune(self.k)

    def update(self, counts: dict[str, int], total: int) -> None:
        """Add exact counts of ``total`` lines (e.g. a batch's Counter)."""
        if add_counts is not None and type(counts) is dict:
            add_counts(self.counts, counts)  # what Counter.update does, without its loop in Python
        else:
            self.counts.update(counts)
        self.total += total
        if len(self.counts) > 16 * self.k:
            self.prune(self.k)

    def merge(self, other: "HeavyHitters") -> "HeavyHitters":
        """Add another summary; returns self."""
        self.counts.update(other.counts)
        self.undercount += other.undercount
        self.total += other.total
        self.prune(self.k)
        return self

    def prune(self, limit: int) -> None:
        """Keep at most ``limit`` lines: subtract the (limit+1)-th largest count from all, drop what reaches 0."""
        if len(self.counts) <= limit:
            return
        cut = int(np.partition(np.fromiter(self.counts.values(), np.int64, len(self.counts)),
                               len(self.counts) - limit - 1)[len(self.counts) - limit - 1])
        self.counts = Counter({line: n - cut for line, n in self.counts.items() if n > cut})
        self.undercount += cut

    def top(self, n: int) -> list[tuple[str, int]]:
        """The n most frequent lines (ties by line), with their lower-bound counts."""
        return sorted(self.counts.items(), key=lambda kv: (-kv[1], kv[0]))[:n]
