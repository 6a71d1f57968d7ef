"""Quality filtering cores: apply a recipe's filter chain to a batch of documents, keeping every decision.

``DatatroveEngine`` is the reference: datatrove's own filter classes, built once (per worker), applied in recipe
order. A filter may drop a document (with datatrove's reason) or modify its text (C4 removes lines); the first
drop ends the chain for that document. Every document gets a ``Decision``, so nothing is lost.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from schemas.documents import META_LANG, META_LANG_SCORE
from transforms.recipes import DATATROVE, FAST, Recipe, RecipeError, Stage


@dataclass(frozen=True)
class Decision:
    """What the chain did to one document: kept (maybe with modified text) or dropped by a stage, with why."""

    keep: bool
    text: str
    stage: str | None = None
    reason: str | None = None
    modified_by: tuple[str, ...] = ()
    meta: dict | None = None  # signals a stage measured (the language stage: lang, lang_score)


class LanguageStage:
    """The ``language`` stage (both engines): keep documents in wanted languages with a high enough score."""

    def __init__(self, languages: tuple[str, ...] | None, min_score: float) -> None:
        from transforms.langid import LanguageIdentifier

        self.identifier = LanguageIdentifier()
        self.languages = frozenset(languages) if languages else None
        self.min_score = min_score

    def check(self, text: str) -> tuple[bool, str | None, dict]:
        """(keep, reason, {lang, lang_score})."""
        lang, score = self.identifier.identify(text)
        meta = {META_LANG: lang, META_LANG_SCORE: round(score, 4)}
        if self.languages is not None and lang not in self.languages:
            return False, "language_not_wanted", meta
        if score < self.min_score:
            return False, "language_score_too_low", meta
        return True, None, meta

    def filter(self, doc) -> bool | tuple[bool, str]:
        """datatrove's filter protocol (the language lands in ``doc.metadata`` as datatrove's own filter does)."""
        keep, reason, meta = self.check(doc.text)
        doc.metadata.update({"language": meta[META_LANG], "language_score": meta[META_LANG_SCORE]})
        return True if keep else (False, reason)

    def run(self, text: str) -> tuple[bool, str | None, str, dict]:
        """The chain's rule protocol (see run_chain), with the measured language."""
        keep, reason, meta = self.check(text)
        return keep, reason, text, meta


def _datatrove_filter(stage: Stage):
    if stage.name == "language":
        return LanguageStage(stage.params["languages"], stage.params["min_score"])
    module, cls = STAGE_CLASSES[stage.name].rsplit(".", 1)
    return getattr(importlib.import_module(module), cls)(**stage.datatrove_kwargs())


def _stage_classes() -> dict[str, str]:
    from transforms.recipes import STAGES

    return {name: spec.datatrove_class for name, spec in STAGES.items()}


STAGE_CLASSES = _stage_classes()


class DatatroveRule:
    """One stage as datatrove's own filter object, in the chain's rule protocol."""

    def __init__(self, stage: Stage) -> None:
        from datatrove.data import Document

        self._filter = _datatrove_filter(stage)
        self._document = Document

    def run(self, text: str) -> tuple[bool, str | None, str]:
        """(keep, reason, text after the filter: C4 removes lines)."""
        if isinstance(self._filter, LanguageStage):
            return self._filter.run(text)
        doc = self._document(text=text, id="")
        result = self._filter.filter(doc)
        keep, reason = result if isinstance(result, tuple) else (result, None)
        return keep, reason, doc.text


def run_chain(stages: list[tuple[str, object]], texts: list[str]) -> list[Decision]:
    """One Decision per text: each (name, rule) in order, ``rule.run(text) -> (keep, reason, text[, meta])``; the
    first drop ends the chain, a changed text is passed on and reported as modified by that stage, and the signals
    a rule measured (``meta``) are kept."""
    out: list[Decision] = []
    for text in texts:
        decision = None
        modified: list[str] = []
        meta: dict | None = None
        for name, rule in stages:
            result = rule.run(text)
            keep, reason, new_text = result[:3]
            if len(result) > 3:
                meta = {**(meta or {}), **result[3]}
            if new_text != text:
                modified.append(name)
                text = new_text
            if not keep:
                decision = Decision(False, text, name, reason or name, tuple(modified), meta)
                break
        out.append(decision or Decision(True, text, modified_by=tuple(modified), meta=meta))
    return out


class DatatroveEngine:
    """The recipe's filters as datatrove objects, applied document by document (datatrove's own decisions)."""

    name = "datatrove"

    def __init__(self, recipe: Recipe) -> None:
        self.recipe = recipe
        self.stages = [(stage.name, DatatroveRule(stage)) for stage in recipe.filters]

    def apply(self, texts: list[str], ids: list[str]) -> list[Decision]:
        """One Decision per document, in order (no filter uses the ids)."""
        return run_chain(self.stages, texts)


def make_engine(recipe: Recipe):
    """The engine a recipe asks for, built (once per worker)."""
    if recipe.engine == DATATROVE:
        return DatatroveEngine(recipe)
    if recipe.engine == FAST:
        from transforms.fast_filters import FastEngine

        return FastEngine(recipe)
    raise RecipeError(f"recipe {recipe.name!r}: unknown engine {recipe.engine!r}")
