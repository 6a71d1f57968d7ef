"""``gopher_repetition``: duplicated lines, paragraphs and n-grams (datatrove's GopherRepetitionFilter)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from transforms.filter.ngrams import duplicate_chars, top_ngram
from transforms.filter.stage import PAIRS, FilterStage, Stage, StageRule, TextRule

if TYPE_CHECKING:
    from transforms.filter.fast import FastTools
    from transforms.filter.words import WordSplitter

_PARAGRAPHS = re.compile(r"\n{2,}")
_LINES = re.compile("\n+")


def _duplicates(items: list[str]) -> tuple[int, int]:
    """(repeated items, characters in repeated items), counting every occurrence after the first."""
    distinct = set(items)
    if len(distinct) == len(items):
        return 0, 0
    return len(items) - len(distinct), sum(map(len, items)) - sum(map(len, distinct))


class GopherRepetition(TextRule):
    """Gopher repetition rules (datatrove's GopherRepetitionFilter)."""

    def __init__(self, params: dict, words: WordSplitter) -> None:
        self.p = params
        self.words = words

    def filter(self, text: str) -> tuple[bool, str | None]:
        """(keep, reason)."""
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


class GopherRepetitionStage(FilterStage):
    """The ``gopher_repetition`` stage."""

    name = "gopher_repetition"
    datatrove_class = "datatrove.pipeline.filters.GopherRepetitionFilter"
    params = {
        "dup_line_frac": 0.3,
        "dup_para_frac": 0.3,
        "dup_line_char_frac": 0.2,
        "dup_para_char_frac": 0.2,
        "top_n_grams": ((2, 0.2), (3, 0.18), (4, 0.16)),
        "dup_n_grams": ((5, 0.15), (6, 0.14), (7, 0.13), (8, 0.12), (9, 0.11), (10, 0.1)),
        "language": "eng",
    }
    kinds = {"top_n_grams": PAIRS, "dup_n_grams": PAIRS}
    doc = "duplicated lines, paragraphs and n-grams (Gopher, Rae et al. 2021)"
    listed = 1

    def fast(self, stage: Stage, tools: FastTools) -> StageRule | None:
        """The rules over the language's cached words."""
        words = tools.splitter(stage.params["language"])
        return GopherRepetition(stage.params, words) if words is not None else None


STAGE = GopherRepetitionStage()
