"""The fast engine: datatrove's filter rules re-implemented over cached, datatrove-identical words.

Each rule keeps datatrove's parameters, order of checks and reason names, so decisions match (tests compare
with the datatrove engine). Stages not re-implemented yet run datatrove's own object (same decisions, its speed).
A text's words are int32 ids from the splitter's vocabulary: per-word facts are arrays indexed by id, and the
Gopher n-gram counts run over the ids (and the words joined, for datatrove's separator-less duplicate n-grams) in
C (``transforms.filter.ngrams``); every count is exact, no shortcut changes a decision.
Known difference: where datatrove would divide by zero (a document without words when ``min_doc_words`` is
disabled), these rules treat the ratio as 0 instead of raising."""

from __future__ import annotations

import math
import re

import numpy as np

from transforms.filter.chain import DatatroveRule, Decision, _datatrove_filter, run_chain
from transforms.filter.ngrams import duplicate_chars, top_ngram
from transforms.recipe.recipes import Recipe
from transforms.filter.words import WordSplitter


def _punctuation() -> tuple[frozenset[str], tuple[str, ...]]:
    from datatrove.utils.text import PUNCTUATION_SET, TERMINAL_PUNCTUATION

    return frozenset(PUNCTUATION_SET), tuple(TERMINAL_PUNCTUATION)


class _WordFacts:
    """Per-word facts as arrays indexed by word id (computed once per distinct word), summed over a text's ids:
    the word's length if it holds something other than punctuation (else 0), whether it holds a letter."""

    def __init__(self, punctuation: frozenset[str]) -> None:
        chars = "".join(sorted(punctuation))
        if any(c.isalpha() for c in chars) or any(len(c) != 1 for c in punctuation):
            raise ValueError("punctuation must be single characters that are not letters")
        # a word holds a character that is not punctuation iff stripping punctuation leaves something (C-level)
        self._non_symbol_length = lambda w: len(w) if w.isalpha() or w.strip(chars) else 0

    def non_symbol_length(self, words: WordSplitter) -> np.ndarray:
        """By word id: its length if any character is not punctuation, else 0."""
        return words.fact("non_symbol_length", self._non_symbol_length)

    @staticmethod
    def alpha(words: WordSplitter) -> np.ndarray:
        """By word id: 1 if any character is a letter."""
        return words.fact("alpha", lambda w: w.isalpha() or any(c.isalpha() for c in w))


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
        self._stop_fact = "stop:" + "\0".join(sorted(self.stop_words))

    def filter(self, text: str) -> tuple[bool, str | None]:
        p = self.p
        ids = self.words.words_of(text).ids
        n_words = ids.size
        lengths = self.facts.non_symbol_length(self.words)[ids]  # 0 for punctuation-only words
        n_non_symbol = int(np.count_nonzero(lengths))
        if p["min_doc_words"] and n_non_symbol < p["min_doc_words"]:
            return False, "gopher_short_doc"
        if p["max_doc_words"] and n_non_symbol > p["max_doc_words"]:
            return False, "gopher_long_doc"
        # np.mean's pairwise float sum of the lengths equals the exact integer sum here (well below 2^53)
        avg = int(lengths.sum()) / n_non_symbol if n_non_symbol else math.nan
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
        alpha_ratio = int(self.facts.alpha(self.words)[ids].sum()) / n
        if p["max_non_alpha_words_ratio"] and alpha_ratio < p["max_non_alpha_words_ratio"]:
            return False, "gopher_below_alpha_threshold"
        if p["min_stop_words"]:
            stop = self.words.fact(self._stop_fact, self.stop_words.__contains__)
            if len(set(ids[stop[ids] != 0].tolist())) < p["min_stop_words"]:
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
        doc = self.words.words_of(text)
        if not doc.ids.size:
            return True, None
        for n, frac in p["top_n_grams"] or ():
            count, chars = top_ngram(doc.ids, doc.lens, n)
            if count and chars * count / size > frac:  # datatrove: len(top n-gram) * its count / len(text)
                return False, f"top_{n}_gram"
        if p["dup_n_grams"]:
            repeated = duplicate_chars(doc.joined(), doc.ends(), tuple(n for n, _ in p["dup_n_grams"]))
            for (n, frac), chars in zip(p["dup_n_grams"], repeated):
                if chars / size > frac:
                    return False, f"duplicated_{n}_n_grams"
        return True, None


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
        n_words = self.words.words_of(text).ids.size
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
                self.stages.append((stage.name, DatatroveRule(stage, recipe.stage_timeout)))

    def apply(self, texts: list[str], ids: list[str]) -> list[Decision]:
        """One Decision per document, in order (no rule uses the ids)."""
        return run_chain(self.stages, texts)
