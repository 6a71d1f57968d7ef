"""``c4_quality``: C4's line rules (removes lines: it modifies text) and document rules (datatrove's
C4QualityFilter)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping

from transforms.filter.stage import FilterStage, Stage, StageRule, Verdict

if TYPE_CHECKING:
    from transforms.filter.fast import FastTools
    from transforms.filter.words import WordSplitter


class C4Quality(StageRule):
    """C4 quality rules (datatrove's C4QualityFilter with ``split_paragraph``): removes lines, may drop the page."""

    def __init__(self, params: dict, words: WordSplitter) -> None:
        from transforms.filter.reference import reference_constants

        self.p = params
        self.words = words
        citation, ellipsis, end_punct, policy = reference_constants(
            "datatrove.pipeline.filters.c4_filters", "CITATION_REGEX", "ELLIPSIS", "END_PUNCTUATION",
            "POLICY_SUBSTRINGS")
        self.citation, self.ellipsis, self.end_punct, self.policy = citation, ellipsis, tuple(end_punct), tuple(policy)

    def check(self, text: str, fields: Mapping[str, Any]) -> Verdict:
        """The page's verdict, kept with the lines that pass."""
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
                return Verdict(False, "lorem_ipsum")
            if p["filter_javascript"] and "javascript" in lower:
                continue
            if p["filter_curly_bracket"] and "{" in line:
                return Verdict(False, "curly_bracket")
            if p["filter_policy"] and any(s in lower for s in self.policy):
                continue
            if needed != -1 and sentences < needed:
                sentences += self.words.sentence_count(line)
            kept.append(line)
        if sentences < p["min_num_sentences"]:
            return Verdict(False, "too_few_sentences")
        return Verdict(True, None, "\n".join(kept).strip())


class C4QualityStage(FilterStage):
    """The ``c4_quality`` stage."""

    name = "c4_quality"
    datatrove_class = "datatrove.pipeline.filters.C4QualityFilter"
    params = {
        "split_paragraph": True,
        "remove_citations": True,
        "filter_no_terminal_punct": True,
        "min_num_sentences": 5,
        "min_words_per_line": 3,
        "max_word_length": 1000,
        "filter_lorem_ipsum": True,
        "filter_javascript": True,
        "filter_curly_bracket": True,
        "filter_policy": True,
        "language": "eng",
    }
    doc = "C4 line rules (removes lines: it modifies text) and document rules (Raffel et al. 2020)"
    listed = 3

    def fast(self, stage: Stage, tools: FastTools) -> StageRule | None:
        """The rules over the language's sentence splitter (by lines only: ``split_paragraph``)."""
        words = tools.splitter(stage.params["language"])
        return C4Quality(stage.params, words) if words is not None and stage.params["split_paragraph"] else None


STAGE = C4QualityStage()
