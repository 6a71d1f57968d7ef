"""Corpus statistics: per-document measures and the combinable sketches ``tokenmill stats`` sums across workers.

Everything here is pure and mergeable: ``Dist`` (exact count, sum, min, max; quantiles from fixed bins),
``HyperLogLog`` (approximate distinct count), ``HeavyHitters`` (Misra-Gries summary of frequent lines) and
``Partial`` (all of them for one part of the corpus, per group). Merging is associative and commutative, so the
result does not depend on how the corpus was split among workers.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from itertools import filterfalse
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

import numpy as np

from schemas import stats as s

LOG_GAMMA = 1.02  # logarithmic bins: [g^(i-1), g^i); a bin's estimate is within (g-1)/(g+1) of every value in it
LOG_BINS = 2048  # bin 0 holds 0; bins 1..2047 cover 1 .. 1.02^2046 (about 4e17)
LOG_ERROR = (LOG_GAMMA - 1) / (LOG_GAMMA + 1)
RATIO_BINS = 1000  # [i/1000, (i+1)/1000), the last bin closed
RATIO_ERROR = 0.5 / RATIO_BINS
TERMINAL_PUNCTUATION = (".", "!", "?", '"', "'", "”", "’", "…", ":", ";", ")", "。", "！", "？", "।", "؟")
BULLETS = ("•", "●", "○", "▪", "◦", "■", "□", "-", "*", "–", "—", "‣", "⁃")
ELLIPSES = ("...", "…")
SHORT_LINE = 30
_HAS_LETTER = re.compile(r"[^\W\d_]").search
_ASCII_UPPER = bytes(range(ord("A"), ord("Z") + 1))
_ASCII_DIGITS = b"0123456789"
_TERMINAL_CODES = np.array([ord(c) for c in TERMINAL_PUNCTUATION], np.uint32)
_BULLET_CODES = np.array([ord(c) for c in BULLETS], np.uint32)


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


def new_dists(with_tokens: bool) -> dict[str, Dist]:
    """The overall distributions: lengths (log bins) and quality signals (ratios)."""
    names = [d for d in s.LOG_DISTRIBUTIONS if with_tokens or d != s.DOC_TOKENS]
    return {**{d: Dist("log") for d in names}, **{d: Dist("ratio") for d in s.RATIO_DISTRIBUTIONS}}


@dataclass
class GroupStats:
    """Counts and length distributions of one group (a value of a --by field)."""

    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(s.COUNT_FIELDS, 0))
    doc_bytes: Dist = field(default_factory=lambda: Dist("log"))
    doc_tokens: Dist = field(default_factory=lambda: Dist("log"))

    def merge(self, other: "GroupStats") -> "GroupStats":
        """Add ``other``; returns self."""
        for key, value in other.counts.items():
            self.counts[key] = self.counts.get(key, 0) + value
        self.doc_bytes.merge(other.doc_bytes)
        self.doc_tokens.merge(other.doc_tokens)
        return self

    def to_dict(self, with_tokens: bool) -> dict[str, Any]:
        """The stats.json form."""
        out: dict[str, Any] = {k: v for k, v in self.counts.items() if with_tokens or k != s.TOKENS}
        out[s.DOC_BYTES] = self.doc_bytes.to_dict()
        if with_tokens:
            out[s.DOC_TOKENS] = self.doc_tokens.to_dict()
        return out


@dataclass
class Measures:
    """Per-document measures of a batch (numpy arrays, one value per document) and its lines."""

    bytes: np.ndarray
    chars: np.ndarray
    words: np.ndarray
    lines: np.ndarray
    signals: dict[str, np.ndarray]
    hashes: np.ndarray  # uint64 xxh3 of each text's UTF-8 bytes (exact duplicates share it)
    lines_list: list[str]  # the batch's stripped non-empty lines, for the frequent-lines summary
    nonempty_lines: int


def _per_doc(flags: np.ndarray, offsets: np.ndarray, lines: np.ndarray) -> np.ndarray:
    """Per document, the share of its lines with the flag (0 for documents without lines)."""
    sums = np.add.reduceat(np.append(flags.astype(np.int64), 0), offsets[:-1]) if len(offsets) > 1 else np.zeros(0)
    sums = np.where(lines > 0, sums, 0)
    return np.divide(sums, lines, out=np.zeros(len(lines)), where=lines > 0)


def measure(texts: Sequence[str]) -> Measures:
    """The measures of each text (UTF-8 bytes, characters, words, lines, quality signals, hash) and the batch's line
    counts (stripped, non-empty lines) for the frequent-lines summary."""
    from xxhash import xxh3_64_intdigest

    n = len(texts)
    hashes = np.empty(n, np.uint64)
    nbytes = np.empty(n, np.int64)
    chars = np.empty(n, np.int64)
    words = np.empty(n, np.int64)
    lines_n = np.empty(n, np.int64)
    letters = np.zeros(n, np.int64)
    alpha_words = np.zeros(n, np.int64)
    symbols = np.zeros(n, np.int64)
    upper = np.zeros(n, np.int64)
    digits = np.zeros(n, np.int64)
    dup = np.zeros(n, np.float64)
    batch_lines: list[str] = []
    for i, text in enumerate(texts):
        raw = text.encode("utf-8", "surrogatepass")
        nbytes[i] = len(raw)
        hashes[i] = xxh3_64_intdigest(raw)
        chars[i] = len(text)
        upper[i] = len(raw) - len(raw.translate(None, _ASCII_UPPER))
        digits[i] = len(raw) - len(raw.translate(None, _ASCII_DIGITS))
        split = text.split()
        words[i] = len(split)
        if split:
            letters[i] = sum(map(len, split))
            rest = list(filterfalse(str.isalpha, split))  # all-letter words need no regex
            alpha_words[i] = len(split) - len(rest) + len(list(filter(_HAS_LETTER, rest)))
            symbols[i] = text.count("#") + text.count("...") + text.count("…")
        lines = list(filter(None, map(str.strip, text.splitlines())))
        lines_n[i] = len(lines)
        if lines:
            dup[i] = 1 - len(set(lines)) / len(lines)
            batch_lines.extend(lines)
    offsets = np.zeros(n + 1, np.int64)
    np.cumsum(lines_n, out=offsets[1:])
    m = len(batch_lines)
    # every line's first and last characters and length at once: the lines joined, as code points
    cps = np.frombuffer("\n".join(batch_lines).encode("utf-32-le", "surrogatepass"), np.uint32)
    breaks = np.flatnonzero(cps == 10)
    ends = np.append(breaks, len(cps)) if m else np.zeros(0, np.int64)
    starts = np.insert(breaks + 1, 0, 0) if m else np.zeros(0, np.int64)
    last = cps[ends - 1] if m else np.zeros(0, np.uint32)
    lengths = ends - starts
    dots = (lengths >= 3) & (last == 46)
    dots[dots] = (cps[ends[dots] - 2] == 46) & (cps[ends[dots] - 3] == 46)
    sig = {
        s.FRAC_LINES_END_PUNCT: _per_doc(np.isin(last, _TERMINAL_CODES), offsets, lines_n),
        s.FRAC_SHORT_LINES: _per_doc(lengths <= SHORT_LINE, offsets, lines_n),
        s.FRAC_BULLET_LINES: _per_doc(np.isin(cps[starts], _BULLET_CODES), offsets, lines_n),
        s.FRAC_ELLIPSIS_LINES: _per_doc(dots | (last == 0x2026), offsets, lines_n),
        s.FRAC_DUP_LINES: dup,
    }
    with_words = words > 0
    sig[s.FRAC_ALPHA_WORDS] = np.divide(alpha_words, words, out=np.zeros(n), where=with_words)
    sig[s.SYMBOL_WORD_RATIO] = np.minimum(1.0, np.divide(symbols, words, out=np.zeros(n), where=with_words))
    sig[s.FRAC_UPPERCASE] = np.divide(upper, chars, out=np.zeros(n), where=chars > 0)
    sig[s.FRAC_DIGITS] = np.divide(digits, chars, out=np.zeros(n), where=chars > 0)
    sig[s.MEAN_WORD_LENGTH] = np.divide(letters, words, out=np.zeros(n), where=with_words)
    return Measures(nbytes, chars, words, lines_n, sig, hashes, batch_lines, m)


@dataclass
class Partial:
    """The statistics of part of a corpus; merge() of all parts gives the corpus's."""

    with_tokens: bool = False
    top_k: int = 1000
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys((*s.COUNT_FIELDS, s.RECORDS), 0))
    rejected: dict[str, int] = field(default_factory=dict)
    dists: dict[str, Dist] = field(default_factory=dict)
    groups: dict[str, dict[str, GroupStats]] = field(default_factory=dict)
    hll: HyperLogLog = field(default_factory=HyperLogLog)
    lines: HeavyHitters | None = None

    def __post_init__(self) -> None:
        if not self.dists:
            self.dists = new_dists(self.with_tokens)
        if self.lines is None:
            self.lines = HeavyHitters(self.top_k)

    def add(self, m: Measures, tokens: np.ndarray | None, hashes: np.ndarray,
            group_values: dict[str, list[str]]) -> None:
        """Add a batch: its measures, token counts (or None), text hashes and, per --by field, each document's
        value."""
        for key, arr in ((s.DOCUMENTS, None), (s.BYTES, m.bytes), (s.CHARACTERS, m.chars), (s.WORDS, m.words),
                         (s.LINES, m.lines), (s.TOKENS, tokens)):
            self.counts[key] += len(m.bytes) if key == s.DOCUMENTS else (0 if arr is None else int(arr.sum()))
        d = self.dists
        d[s.DOC_BYTES].add(m.bytes)
        d[s.DOC_WORDS].add(m.words)
        d[s.DOC_LINES].add(m.lines)
        if tokens is not None:
            d[s.DOC_TOKENS].add(tokens)
        with_words = m.words > 0
        d[s.MEAN_WORD_LENGTH].add(m.signals[s.MEAN_WORD_LENGTH][with_words])
        with_lines, with_chars = m.lines > 0, m.chars > 0
        for name in s.RATIO_DISTRIBUTIONS:
            mask = with_words if name in (s.FRAC_ALPHA_WORDS, s.SYMBOL_WORD_RATIO) else (
                with_chars if name in (s.FRAC_UPPERCASE, s.FRAC_DIGITS) else with_lines)
            d[name].add(m.signals[name][mask])
        self.hll.add(hashes)
        if m.lines_list:
            self.lines.add(m.lines_list)
        for by, values in group_values.items():
            table = self.groups.setdefault(by, {})
            order = np.argsort(np.array(values, dtype=object), kind="stable") if len(set(values)) > 1 else None
            if order is None:
                self._add_group(table, values[0], m, tokens, slice(None))
                continue
            sorted_values = [values[j] for j in order]
            start = 0
            for j in range(1, len(order) + 1):
                if j == len(order) or sorted_values[j] != sorted_values[start]:
                    self._add_group(table, sorted_values[start], m, tokens, order[start:j])
                    start = j

    def _add_group(self, table: dict[str, GroupStats], value: str, m: Measures, tokens: np.ndarray | None,
                   where: Any) -> None:
        g = table.setdefault(value, GroupStats())
        c = g.counts
        b = m.bytes[where]
        c[s.DOCUMENTS] += len(b)
        c[s.BYTES] += int(b.sum())
        c[s.CHARACTERS] += int(m.chars[where].sum())
        c[s.WORDS] += int(m.words[where].sum())
        c[s.LINES] += int(m.lines[where].sum())
        g.doc_bytes.add(b)
        if tokens is not None:
            c[s.TOKENS] += int(tokens[where].sum())
            g.doc_tokens.add(tokens[where])

    def reject(self, reason: str, n: int = 1) -> None:
        """Count records that could not be read as documents."""
        self.rejected[reason] = self.rejected.get(reason, 0) + n

    def merge(self, other: "Partial") -> "Partial":
        """Add ``other`` into this one; returns self."""
        for key, value in other.counts.items():
            self.counts[key] = self.counts.get(key, 0) + value
        for key, value in other.rejected.items():
            self.rejected[key] = self.rejected.get(key, 0) + value
        for name, dist in other.dists.items():
            self.dists[name].merge(dist)
        for by, table in other.groups.items():
            mine = self.groups.setdefault(by, {})
            for value, g in table.items():
                if value in mine:
                    mine[value].merge(g)
                else:
                    mine[value] = g
        self.hll.merge(other.hll)
        self.lines.merge(other.lines)
        return self


def merge_all(parts: Iterable[Partial], with_tokens: bool, top_k: int) -> Partial:
    """The merge of any number of partials (an empty corpus gives empty statistics)."""
    out = Partial(with_tokens, top_k)
    for p in parts:
        out.merge(p)
    return out


def duplicate_summary(documents: int, distinct: int, approx: int) -> dict[str, Any]:
    """The duplicates section from exact and approximate distinct counts."""
    dups = documents - distinct
    return {s.EXACT_DUPLICATES: dups, s.EXACT_DUPLICATE_RATE: round(dups / documents, 6) if documents else 0.0,
            s.DISTINCT: distinct, s.DISTINCT_APPROX: approx, s.APPROX_ERROR: round(HyperLogLog.RELATIVE_ERROR, 6)}


def capped_groups(groups: dict[str, dict[str, GroupStats]], max_groups: int,
                  with_tokens: bool) -> dict[str, dict[str, Any]]:
    """Per --by field, its largest ``max_groups`` values by bytes (ties by value) and the rest merged as (other)."""
    out: dict[str, dict[str, Any]] = {}
    for by, table in sorted(groups.items()):
        ranked = sorted(table.items(), key=lambda kv: (-kv[1].counts[s.BYTES], kv[0]))
        kept = dict(ranked[:max_groups])
        if len(ranked) > max_groups:
            other = GroupStats()
            for _, g in ranked[max_groups:]:
                other.merge(g)
            kept[s.OTHER_GROUP] = other
        out[by] = {value: g.to_dict(with_tokens) for value, g in kept.items()}
    return out
