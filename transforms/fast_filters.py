"""The fast engine: datatrove's filter rules re-implemented over cached, datatrove-identical words.

Each rule keeps datatrove's parameters, order of checks and reason names, so decisions match (tests compare
with the datatrove engine). Stages not re-implemented yet run datatrove's own object (same decisions, its speed).
Shortcuts never change a decision: a count is only skipped where a bound proves its check passes (no n-gram is
more frequent than a shorter one; repeated n-gram characters never exceed those of later occurrences of equal
substring hashes; an n-gram repeats only where the shortest checked n-gram repeats too), and hash matches are
confirmed by exact string comparison.
Known difference: where datatrove would divide by zero (a document without words when ``min_doc_words`` is
disabled), these rules treat the ratio as 0 instead of raising."""

from __future__ import annotations

import itertools
import math
import re

import numpy as np

from transforms.filtering import DatatroveRule, Decision, _datatrove_filter, run_chain
from transforms.recipes import Recipe
from transforms.words import WordSplitter


def _punctuation() -> tuple[frozenset[str], tuple[str, ...]]:
    from datatrove.utils.text import PUNCTUATION_SET, TERMINAL_PUNCTUATION

    return frozenset(PUNCTUATION_SET), tuple(TERMINAL_PUNCTUATION)


class _WordFacts:
    """Per distinct word (cached, filled on first sight): its length if it holds something other than punctuation
    (else 0), whether it does (1/0), whether it holds a letter (1/0); summed over a text by C-level maps."""

    def __init__(self, punctuation: frozenset[str]) -> None:
        self._punct = punctuation
        self.non_symbol_length = _Cached(lambda w: len(w) if any(c not in self._punct for c in w) else 0)
        self.non_symbol = _Cached(lambda w: 1 if self.non_symbol_length[w] else 0)
        self.alpha = _Cached(lambda w: 1 if any(c.isalpha() for c in w) else 0)


class _Cached(dict):
    """A dict computing (and keeping) the value of a missing key; cleared when it grows too large."""

    def __init__(self, compute) -> None:
        super().__init__()
        self._compute = compute

    def __missing__(self, key: str) -> int:
        if len(self) > 2_000_000:
            self.clear()
        value = self[key] = self._compute(key)
        return value


class _TextRule:
    """A rule that only keeps or drops (never changes text), in the chain's rule protocol."""

    def filter(self, text: str) -> tuple[bool, str | None]:  # pragma: no cover - every rule defines it
        raise NotImplementedError

    def run(self, text: str) -> tuple[bool, str | None, str]:
        """(keep, reason, the unchanged text)."""
        return (*self.filter(text), text)


class GopherQuality(_TextRule):
    """Gopher quality rules (datatrove's GopherQualityFilter)."""

    def __init__(self, params: dict, words: WordSplitter, facts: _WordFacts) -> None:
        self.p = params
        self.words = words
        self.facts = facts
        self.stop_words = frozenset(params["stop_words"]) if params["stop_words"] is not None else frozenset(
            ("the", "be", "to", "of", "and", "that", "have", "with"))

    def filter(self, text: str) -> tuple[bool, str | None]:
        p = self.p
        words = self.words.split(text)
        n_words = len(words)
        n_non_symbol = sum(map(self.facts.non_symbol.__getitem__, words))
        if p["min_doc_words"] and n_non_symbol < p["min_doc_words"]:
            return False, "gopher_short_doc"
        if p["max_doc_words"] and n_non_symbol > p["max_doc_words"]:
            return False, "gopher_long_doc"
        # np.mean's pairwise float sum of the lengths equals the exact integer sum here (well below 2^53)
        avg = sum(map(self.facts.non_symbol_length.__getitem__, words)) / n_non_symbol if n_non_symbol else math.nan
        if p["min_avg_word_length"] and avg < p["min_avg_word_length"]:
            return False, "gopher_below_avg_threshold"
        if p["max_avg_word_length"] and avg > p["max_avg_word_length"]:
            return False, "gopher_above_avg_threshold"
        # divisions as datatrove writes them (x / n, not x * (1 / n)): the same floats at the thresholds
        n = n_words or 1  # datatrove would divide by zero here; with no words every count is 0 anyway
        if p["max_symbol_word_ratio"] and text.count("#") / n > p["max_symbol_word_ratio"]:
            return False, "gopher_too_many_hashes"
        if p["max_symbol_word_ratio"] and (text.count("...") + text.count("…")) / n > p["max_symbol_word_ratio"]:
            return False, "gopher_too_many_ellipsis"
        lines = text.splitlines()
        if p["max_bullet_lines_ratio"] and lines and sum(
            s.lstrip().startswith(("•", "-")) for s in lines
        ) / len(lines) > p["max_bullet_lines_ratio"]:
            return False, "gopher_too_many_bullets"
        if p["max_ellipsis_lines_ratio"] and lines and sum(
            s.rstrip().endswith(("...", "…")) for s in lines
        ) / len(lines) > p["max_ellipsis_lines_ratio"]:
            return False, "gopher_too_many_end_ellipsis"
        alpha_ratio = sum(map(self.facts.alpha.__getitem__, words)) / n
        if p["max_non_alpha_words_ratio"] and alpha_ratio < p["max_non_alpha_words_ratio"]:
            return False, "gopher_below_alpha_threshold"
        if p["min_stop_words"] and len(self.stop_words.intersection(words)) < p["min_stop_words"]:
            return False, "gopher_enough_stop_words"
        return True, None


_PARAGRAPHS = re.compile(r"\n{2,}")
_LINES = re.compile("\n+")


def _duplicates(items: list[str]) -> tuple[int, int]:
    """(repeated items, characters in repeated items), counting every occurrence after the first."""
    distinct = set(items)
    if len(distinct) == len(items):
        return 0, 0
    return len(items) - len(distinct), sum(map(len, items)) - sum(map(len, distinct))


def _top_gram(ids: np.ndarray, n: int) -> tuple[int, int]:
    """(count, position of its first occurrence) of the most frequent word n-gram, the first seen among equals
    (as ``Counter.most_common``); ``ids`` are per-text word ids smaller than the number of words."""
    grams = np.lib.stride_tricks.sliding_window_view(ids, n)
    vocab = int(ids.max()) + 1
    if vocab ** n < 2**62:  # one exact integer per n-gram: a fast 1-d sort
        keys = grams @ (vocab ** np.arange(n, dtype=np.int64))
        order = np.argsort(keys, kind="stable")  # stable: each run of equal keys starts at its first occurrence
        starts = np.flatnonzero(np.concatenate(([True], keys[order[1:]] != keys[order[:-1]])))
        counts = np.diff(np.append(starts, keys.size))
        best = int(counts.max())
        return best, int(order[starts[counts == best]].min())
    _, first, counts = np.unique(grams, axis=0, return_index=True, return_counts=True)
    best = int(counts.max())
    return best, int(first[counts == best].min())


class GopherRepetition(_TextRule):
    """Gopher repetition rules (datatrove's GopherRepetitionFilter)."""

    def __init__(self, params: dict, words: WordSplitter) -> None:
        self.p = params
        self.words = words

    def filter(self, text: str) -> tuple[bool, str | None]:
        p = self.p
        if not text:
            return False, "empty"
        size = len(text)
        paragraphs = _PARAGRAPHS.split(text.strip())
        dups, chars = _duplicates(paragraphs)
        if p["dup_para_frac"] and dups / len(paragraphs) > p["dup_para_frac"]:
            return False, "dup_para_frac"
        if p["dup_para_char_frac"] and chars / size > p["dup_para_char_frac"]:
            return False, "dup_para_char_frac"
        lines = _LINES.split(text)
        dups, chars = _duplicates(lines)
        if p["dup_line_frac"] and dups / len(lines) > p["dup_line_frac"]:
            return False, "dup_line_frac"
        if p["dup_line_char_frac"] and chars / size > p["dup_line_char_frac"]:
            return False, "dup_line_char_frac"
        words = self.words.split(text)
        if not words:
            return True, None
        ends = np.zeros(len(words) + 1, np.int64)  # character offsets of the words, joined without spaces
        np.cumsum(np.fromiter(map(len, words), np.int64, len(words)), out=ends[1:])
        reason = self._top_grams(words, ends, size) if p["top_n_grams"] else None
        if reason is None and p["dup_n_grams"]:
            reason = self._duplicated_grams(words, ends, size)
        return (False, reason) if reason else (True, None)

    def _top_grams(self, words: list[str], ends: np.ndarray, size: int) -> str | None:
        """The first failing top n-gram reason, if any."""
        index: dict[str, int] = {}
        ids = np.fromiter(map(index.setdefault, words, itertools.count()), np.int64, len(words))
        counted: dict[int, int] = {}  # n -> count of the most frequent n-gram, for the shorter ones computed
        for n, frac in self.p["top_n_grams"]:
            if len(words) < n:
                continue
            # no n-gram occurs more often than the most frequent shorter one: when even the longest n-gram at that
            # count stays under the threshold, the exact count is not needed
            bound = min((c for m, c in counted.items() if m < n), default=None)
            if bound is not None and bound * int((ends[n:] - ends[:-n]).max() + n - 1) / size <= frac:
                continue
            best, at = _top_gram(ids, n)
            counted[n] = best
            if (int(ends[at + n] - ends[at]) + n - 1) * best / size > frac:
                return f"top_{n}_gram"
        return None

    def _duplicated_grams(self, words: list[str], ends: np.ndarray, size: int) -> str | None:
        """The first failing duplicated n-gram reason, if any."""
        hashes = _SubstringHashes("".join(words))
        shortest = min(n for n, _ in self.p["dup_n_grams"])
        # where an n-gram repeats, the shortest checked n-gram repeats too: only positions whose shortest n-gram
        # key occurs twice can hold a repeated n-gram of any n, so longer n-grams are keyed and sorted there alone
        positions = np.arange(max(0, len(words) - shortest + 1))
        later, earlier = _later_repeats(hashes, ends, positions, shortest)
        positions = np.unique(np.concatenate((later, earlier)))
        for n, frac in self.p["dup_n_grams"]:
            at = positions[positions <= len(words) - n]
            if n != shortest:
                later, earlier = _later_repeats(hashes, ends, at, n)
            # every counted repeat is a later occurrence of an equal key: their lengths bound the repeated chars
            if not later.size or int((ends[later + n] - ends[later]).sum()) / size <= frac:
                continue
            # n-grams joined without separator; a repeat skips its n words (datatrove's find_all_duplicate). Only
            # positions whose substring hash occurs twice can repeat (equal strings have equal hashes).
            candidates = np.unique(np.concatenate((later, earlier))).tolist()
            if _find_all_duplicate(hashes.text, ends, candidates, n) / size > frac:
                return f"duplicated_{n}_n_grams"
        return None


def _later_repeats(hashes: "_SubstringHashes", ends: np.ndarray, positions: np.ndarray,
                   n: int) -> tuple[np.ndarray, np.ndarray]:
    """Among ``positions`` (ascending), (those whose word n-gram key equals that of an earlier one, the positions
    just before them in key order): every repeated n-gram's later occurrences, and the occurrences they may repeat."""
    if positions.size < 2:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    keys = hashes.keys(ends[positions], ends[positions + n])
    order = np.argsort(keys, kind="stable")  # stable: equal keys keep their positions' order
    again = np.flatnonzero(keys[order[1:]] == keys[order[:-1]])
    return positions[order[again + 1]], positions[order[again]]


def _find_all_duplicate(joined: str, ends: np.ndarray, candidates: list[int], n: int) -> int:
    """datatrove's find_all_duplicate (characters in repeated n-grams, a repeat skipping its n words), visiting only
    the positions that can repeat, in order."""
    bounds = ends.tolist()
    seen: set[str] = set()
    repeated = 0
    i = 0
    for c in candidates:
        if c < i:
            continue  # inside a repeat that was skipped
        gram = joined[bounds[c] : bounds[c + n]]
        if gram in seen:
            repeated += len(gram)
            i = c + n
        else:
            seen.add(gram)
            i = c + 1
    return repeated


class _SubstringHashes:
    """Polynomial hashes of any substring of one string (two moduli), from prefix sums: equal substrings always
    get equal keys; different ones almost never do (and are then told apart by an exact comparison)."""

    _MODS = (np.uint64(2147483647), np.uint64(2147483629))
    _BASE = 1_000_003

    def __init__(self, text: str) -> None:
        self.text = text
        codes = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), np.uint32).astype(np.uint64) + np.uint64(1)
        self._prefix = []
        self._inverse = []
        for mod in self._MODS:
            powers = _powers(self._BASE, len(codes), int(mod))
            inverse = _powers(pow(self._BASE, -1, int(mod)), len(codes) + 1, int(mod))
            terms = (codes * powers) % mod  # each term < 2^31: the prefix sums stay exact in uint64
            self._prefix.append(np.concatenate(([np.uint64(0)], np.cumsum(terms, dtype=np.uint64))))
            self._inverse.append(inverse)

    def keys(self, starts: np.ndarray, stops: np.ndarray) -> np.ndarray:
        """One uint64 key per [start, stop) substring (positions as character offsets)."""
        out = []
        for mod, prefix, inverse in zip(self._MODS, self._prefix, self._inverse):
            h = (prefix[stops] - prefix[starts]) % mod
            out.append((h * inverse[starts]) % mod)  # shift to position 0: comparable across offsets
        return (out[0] << np.uint64(32)) | out[1]


_POWERS: dict[tuple[int, int], np.ndarray] = {}


def _powers(base: int, count: int, mod: int) -> np.ndarray:
    """base^0 .. base^(count-1) mod ``mod`` as uint64 (computed once per process, grown on demand)."""
    table = _POWERS.get((base, mod))
    if table is None or table.size < count:
        table = _POWERS[(base, mod)] = _compute_powers(base, max(count, 2 * (table.size if table is not None else 0),
                                                                  1 << 16), mod)
    return table[:count]


def _compute_powers(base: int, count: int, mod: int) -> np.ndarray:
    """base^0 .. base^(count-1) mod ``mod`` as uint64, vectorised by blocks of 1024."""
    block = 1024
    first = np.empty(min(block, max(count, 1)), np.uint64)
    value = 1
    for i in range(first.size):
        first[i] = value
        value = value * base % mod
    step = pow(base, first.size, mod)
    blocks = []
    scale = 1
    for _ in range(0, count, first.size):
        blocks.append(first * np.uint64(scale) % np.uint64(mod))
        scale = scale * step % mod
    return np.concatenate(blocks)[:count] if blocks else np.empty(0, np.uint64)


class C4Quality:
    """C4 quality rules (datatrove's C4QualityFilter with ``split_paragraph``): removes lines, may drop the page."""

    def __init__(self, params: dict, words: WordSplitter) -> None:
        from datatrove.pipeline.filters.c4_filters import CITATION_REGEX, ELLIPSIS, END_PUNCTUATION, POLICY_SUBSTRINGS

        self.p = params
        self.words = words
        self.citation, self.ellipsis, self.end_punct = CITATION_REGEX, ELLIPSIS, tuple(END_PUNCTUATION)
        self.policy = tuple(POLICY_SUBSTRINGS)

    def run(self, text: str) -> tuple[bool, str | None, str]:
        p = self.p
        sentences = 0
        needed = p["min_num_sentences"]  # once reached, more sentences cannot change the outcome: stop counting
        longest = p["max_word_length"]
        kept: list[str] = []
        for line in text.splitlines():
            line = line.strip()
            words = line.split()
            if longest != -1 and len(line) > longest and any(len(w) > longest for w in words):
                continue
            if p["remove_citations"]:
                line = self.citation.sub("", line)
            if p["filter_no_terminal_punct"] and (not line.endswith(self.end_punct) or line.endswith(self.ellipsis)):
                continue
            if len(words) < p["min_words_per_line"]:
                continue
            lower = line.lower()
            if p["filter_lorem_ipsum"] and "lorem ipsum" in lower:
                return False, "lorem_ipsum", text
            if p["filter_javascript"] and "javascript" in lower:
                continue
            if p["filter_curly_bracket"] and "{" in line:
                return False, "curly_bracket", text
            if p["filter_policy"] and any(s in lower for s in self.policy):
                continue
            if needed != -1 and sentences < needed:
                sentences += self.words.sentence_count(line)
            kept.append(line)
        if sentences < p["min_num_sentences"]:
            return False, "too_few_sentences", text
        return True, None, "\n".join(kept).strip()


class FineWebQuality(_TextRule):
    """FineWeb quality rules (datatrove's FineWebQualityFilter)."""

    def __init__(self, params: dict, words: WordSplitter, terminal: tuple[str, ...]) -> None:
        self.p = params
        self.words = words
        self.stop_chars = tuple(params["stop_chars"]) if params["stop_chars"] is not None else terminal

    def filter(self, text: str) -> tuple[bool, str | None]:
        p = self.p
        lines = [line for line in text.split("\n") if line.strip() != ""]
        if not lines:
            return False, "empty"
        ratio = sum(1 for line in lines if line.endswith(self.stop_chars)) / len(lines)
        if ratio < p["line_punct_thr"] and not (ratio == 0 and p["line_punct_exclude_zero"]):
            return False, "line_punct_ratio"
        if sum(1 for line in lines if len(line) <= p["short_line_length"]) / len(lines) > p["short_line_thr"]:
            return False, "short_line_ratio"
        seen: set[str] = set()
        dup_chars = 0
        for line in lines:
            if line in seen:
                dup_chars += len(line)
            else:
                seen.add(line)
        chars = len(text) - text.count("\n")
        if (dup_chars / chars if chars else 0.0) > p["char_duplicates_ratio"]:
            return False, "char_dup_ratio"
        n_words = len(self.words.split(text))
        if (text.count("\n") / n_words if n_words else 0.0) > p["new_line_ratio"]:
            return False, "list_ratio"
        return True, None


class FastEngine:
    """The recipe's filters, fast where re-implemented, datatrove's objects elsewhere; same Decisions."""

    name = "fast"

    def __init__(self, recipe: Recipe) -> None:
        self.recipe = recipe
        punctuation, terminal = _punctuation()
        facts = _WordFacts(punctuation)
        splitters: dict[str, WordSplitter] = {}

        def splitter(language: str) -> WordSplitter | None:
            try:
                if language not in splitters:
                    splitters[language] = WordSplitter(language)
                return splitters[language]
            except ValueError:  # no fast splitter for this language yet: datatrove's filter instead
                return None

        self.stages: list[tuple[str, object]] = []
        for stage in recipe.filters:
            words = splitter(stage.params.get("language", "eng")) if "language" in stage.params else None
            if stage.name == "language":
                self.stages.append((stage.name, _datatrove_filter(stage)))  # tokenmill's own stage, shared
            elif stage.name == "gopher_repetition" and words is not None:
                self.stages.append((stage.name, GopherRepetition(stage.params, words)))
            elif stage.name == "gopher_quality" and words is not None:
                self.stages.append((stage.name, GopherQuality(stage.params, words, facts)))
            elif stage.name == "c4_quality" and words is not None and stage.params["split_paragraph"]:
                self.stages.append((stage.name, C4Quality(stage.params, words)))
            elif stage.name == "fineweb_quality" and words is not None:
                self.stages.append((stage.name, FineWebQuality(stage.params, words, terminal)))
            else:
                self.stages.append((stage.name, DatatroveRule(stage)))

    def apply(self, texts: list[str], ids: list[str]) -> list[Decision]:
        """One Decision per document, in order (no rule uses the ids)."""
        return run_chain(self.stages, texts)
