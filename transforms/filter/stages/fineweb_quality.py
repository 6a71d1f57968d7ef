"""``fineweb_quality``: line punctuation, short lines, duplicated lines (datatrove's FineWebQualityFilter)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from transforms.filter.stage import STRINGS, FilterStage, Stage, StageRule, TextRule

if TYPE_CHECKING:
    from transforms.filter.fast import FastTools
    from transforms.filter.words import WordSplitter


class FineWebQuality(TextRule):
    """FineWeb quality rules (datatrove's FineWebQualityFilter)."""

    def __init__(self, params: dict, words: WordSplitter, terminal: tuple[str, ...]) -> None:
        self.p = params
        self.words = words
        self.stop_chars = tuple(params["stop_chars"]) if params["stop_chars"] is not None else terminal

    def filter(self, text: str) -> tuple[bool, str | None]:
        """(keep, reason)."""
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


class FineWebQualityStage(FilterStage):
    """The ``fineweb_quality`` stage."""

    name = "fineweb_quality"
    datatrove_class = "datatrove.pipeline.filters.FineWebQualityFilter"
    params = {
        "line_punct_thr": 0.12,
        "line_punct_exclude_zero": False,
        "stop_chars": None,
        "short_line_thr": 0.67,
        "short_line_length": 30,
        "char_duplicates_ratio": 0.01,
        "new_line_ratio": 0.3,
        "language": "eng",
    }
    kinds = {"stop_chars": STRINGS}
    doc = "line punctuation, short lines, duplicated lines (FineWeb, Penedo et al. 2024)"
    listed = 4

    def fast(self, stage: Stage, tools: FastTools) -> StageRule | None:
        """The rules over the language's cached words and datatrove's terminal punctuation."""
        words = tools.splitter(stage.params["language"])
        return FineWebQuality(stage.params, words, tools.terminal) if words is not None else None


STAGE = FineWebQualityStage()
