"""Corpus statistics: per-document measures and ``Partial``, the sketches of ``transforms.stats.sketches`` for one
part of the corpus, per group, that ``tokenmill stats`` sums across workers.

Everything here is pure and mergeable. Merging is associative and commutative, so the
result does not depend on how the corpus was split among workers.
"""

from __future__ import annotations

import re
from collections import Counter
from itertools import filterfalse
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

import numpy as np

from schemas import stats as s
from transforms.stats.sketches import Dist, HeavyHitters, HyperLogLog

TERMINAL_PUNCTUATION = (".", "!", "?", '"', "'", "”", "’", "…", ":", ";", ")", "。", "！", "？", "।", "؟")
BULLETS = ("•", "●", "○", "▪", "◦", "■", "□", "-", "*", "–", "—", "‣", "⁃")
ELLIPSES = ("...", "…")
SHORT_LINE = 30
_HAS_LETTER = re.compile(r"[^\W\d_]").search
_ASCII_UPPER = bytes(range(ord("A"), ord("Z") + 1))
_ASCII_DIGITS = b"0123456789"
try:
    from transforms.stats._words import add_counts, measure_texts, word_counts
except ImportError:  # no compiler where the package was installed: word_counts_python and measure_python below
    add_counts = measure_texts = word_counts = None
# the int64 columns of _words.measure_texts, in its order
COLUMNS = ("bytes", "chars", "words", "letters", "alpha_words", "symbols", "upper", "digits", "lines",
           "unique_lines", "end_punct", "short", "bullet", "ellipsis", "hash")
_TERMINAL_CODES = np.array([ord(c) for c in TERMINAL_PUNCTUATION], np.uint32)
_BULLET_CODES = np.array([ord(c) for c in BULLETS], np.uint32)


def word_counts_python(text: str) -> tuple[int, int, int]:
    """(words, letters, alpha_words) of a text: ``len(text.split())``, the characters of those words, and the words
    that are all letters or hold a letter-like character (``[^\\W\\d_]``). ``_words.c`` computes the same in C."""
    split = text.split()
    if not split:
        return 0, 0, 0
    rest = list(filterfalse(str.isalpha, split))  # all-letter words need no regex
    return len(split), sum(map(len, split)), len(split) - len(rest) + len(list(filter(_HAS_LETTER, rest)))




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
    line_counts: dict[str, int]  # the batch's stripped non-empty lines and their counts (first occurrence first)
    nonempty_lines: int


def _per_doc(flags: np.ndarray, offsets: np.ndarray, lines: np.ndarray) -> np.ndarray:
    """Per document, the share of its lines with the flag (0 for documents without lines)."""
    sums = np.add.reduceat(np.append(flags.astype(np.int64), 0), offsets[:-1]) if len(offsets) > 1 else np.zeros(0)
    sums = np.where(lines > 0, sums, 0)
    return np.divide(sums, lines, out=np.zeros(len(lines)), where=lines > 0)


def measure(texts: Sequence[str]) -> Measures:
    """The measures of each text (UTF-8 bytes, characters, words, lines, quality signals, hash) and the batch's line
    counts (stripped, non-empty lines) for the frequent-lines summary: one pass over each text in C
    (``_words.measure_texts``), or ``measure_python`` where it was not built; both give the same."""
    if measure_texts is None:
        return measure_python(texts)
    from xxhash import xxh3_64_intdigest

    n = len(texts)
    raw, line_counts, m = measure_texts(texts, xxh3_64_intdigest, "".join(TERMINAL_PUNCTUATION), "".join(BULLETS),
                                        SHORT_LINE)
    c = dict(zip(COLUMNS, np.frombuffer(raw, np.int64).reshape(len(COLUMNS), n)))
    lines_n, words, chars = c["lines"], c["words"], c["chars"]
    with_lines, with_words, with_chars = lines_n > 0, words > 0, chars > 0

    def share(counts: np.ndarray, of: np.ndarray, where: np.ndarray) -> np.ndarray:
        return np.divide(counts, of, out=np.zeros(n), where=where)

    sig = {
        s.FRAC_LINES_END_PUNCT: share(c["end_punct"], lines_n, with_lines),
        s.FRAC_SHORT_LINES: share(c["short"], lines_n, with_lines),
        s.FRAC_BULLET_LINES: share(c["bullet"], lines_n, with_lines),
        s.FRAC_ELLIPSIS_LINES: share(c["ellipsis"], lines_n, with_lines),
        s.FRAC_DUP_LINES: np.where(with_lines, 1 - share(c["unique_lines"], lines_n, with_lines), 0.0),
        s.FRAC_ALPHA_WORDS: share(c["alpha_words"], words, with_words),
        s.SYMBOL_WORD_RATIO: np.minimum(1.0, share(c["symbols"], words, with_words)),
        s.FRAC_UPPERCASE: share(c["upper"], chars, with_chars),
        s.FRAC_DIGITS: share(c["digits"], chars, with_chars),
        s.MEAN_WORD_LENGTH: share(c["letters"], words, with_words),
    }
    return Measures(c["bytes"], chars, words, lines_n, sig, c["hash"].view(np.uint64), line_counts, m)


def measure_python(texts: Sequence[str]) -> Measures:
    """``measure`` in Python: the definition ``_words.measure_texts`` computes in one pass (the tests pin both
    equal)."""
    from xxhash import xxh3_64_intdigest

    count_words = word_counts_python
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
        words[i], letters[i], alpha_words[i] = count_words(text)
        if words[i]:
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
    return Measures(nbytes, chars, words, lines_n, sig, hashes, dict(Counter(batch_lines)), m)


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
        if m.nonempty_lines:
            self.lines.update(m.line_counts, m.nonempty_lines)
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
