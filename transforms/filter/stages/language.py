"""``language``: keep documents in wanted languages, identified offline (datatrove's LanguageFilter downloads a
fastText model: tokenmill's identifier instead, in both engines)."""

from __future__ import annotations

from typing import Any, Mapping

from schemas.documents import META_LANG, META_LANG_SCORE
from transforms.filter.stage import STRINGS, FilterStage, Stage, StageRule, Verdict


class LanguageRule(StageRule):
    """Keep documents in wanted languages with a high enough score; the language lands in the document's meta."""

    def __init__(self, languages: tuple[str, ...] | None, min_score: float) -> None:
        from transforms.filter.langid import LanguageIdentifier

        self.identifier = LanguageIdentifier()
        self.languages = frozenset(languages) if languages else None
        self.min_score = min_score

    def check(self, text: str, fields: Mapping[str, Any]) -> Verdict:
        """The verdict, with the measured ``lang`` and ``lang_score``."""
        lang, score = self.identifier.identify(text)
        meta = {META_LANG: lang, META_LANG_SCORE: round(score, 4)}
        if self.languages is not None and lang not in self.languages:
            return Verdict(False, "language_not_wanted", meta=meta)
        if score < self.min_score:
            return Verdict(False, "language_score_too_low", meta=meta)
        return Verdict(True, meta=meta)


class LanguageStage(FilterStage):
    """The ``language`` stage (tokenmill's own: the same rule in both engines, as there is no fast one)."""

    name = "language"
    params = {"languages": None, "min_score": 0.65}
    kinds = {"languages": STRINGS}
    doc = "keep documents in these languages (ISO 639-1 codes) identified with at least min_score"
    listed = 5

    def reference(self, stage: Stage, limit: float) -> StageRule:
        """The offline identifier's rule."""
        return LanguageRule(stage.params["languages"], stage.params["min_score"])


STAGE = LanguageStage()
