"""``gopher_quality``: word counts and lengths, symbols, bullets, ellipses, stop words (datatrove's
GopherQualityFilter)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from transforms.filter.stage import STRINGS, FilterStage, Stage, StageRule, TextRule

if TYPE_CHECKING:
    from transforms.filter.fast import FastTools, WordFacts
    from transforms.filter.words import WordSplitter


class GopherQuality(TextRule):
    """Gopher quality rules (datatrove's GopherQualityFilter)."""

    def __init__(self, params: dict, words: WordSplitter, facts: WordFacts) -> None:
        self.p = params
        self.words = words
        self.facts = facts
        self.stop_words = frozenset(params["stop_words"]) if params["stop_words"] is not None else frozenset(
            ("the", "be", "to", "of", "and", "that", "have", "with"))
        self._stop_fact = "stop:" + "\0".join(sorted(self.stop_words))

    def filter(self, text: str) -> tuple[bool, str | None]:
        """(keep, reason)."""
        import numpy as np  # here, not above: the stage registry behind prepare's --help imports this module

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


class GopherQualityStage(FilterStage):
    """The ``gopher_quality`` stage."""

    name = "gopher_quality"
    datatrove_class = "datatrove.pipeline.filters.GopherQualityFilter"
    params = {
        "min_doc_words": 50,
        "max_doc_words": 100000,
        "min_avg_word_length": 3,
        "max_avg_word_length": 10,
        "max_symbol_word_ratio": 0.1,
        "max_bullet_lines_ratio": 0.9,
        "max_ellipsis_lines_ratio": 0.3,
        "max_non_alpha_words_ratio": 0.8,
        "min_stop_words": 2,
        "stop_words": None,
        "language": "eng",
    }
    kinds = {"stop_words": STRINGS}
    doc = "word counts and lengths, symbols, bullets, ellipses, stop words (Gopher)"
    listed = 2

    def fast(self, stage: Stage, tools: FastTools) -> StageRule | None:
        """The rules over the language's cached words and per-word facts."""
        words = tools.splitter(stage.params["language"])
        return GopherQuality(stage.params, words, tools.facts) if words is not None else None


STAGE = GopherQualityStage()
