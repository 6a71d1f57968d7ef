"""Quality filtering cores: apply a recipe's filter chain to a batch of documents, keeping every decision.

``DatatroveEngine`` is the reference: datatrove's own filter classes, built once (per worker), applied in recipe
order. A filter may drop a document (with datatrove's reason) or modify its text (C4 removes lines); the first
drop ends the chain for that document. Every document gets a ``Decision``, so nothing is lost.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from transforms.recipes import DATATROVE, FAST, Recipe, RecipeError, Stage


@dataclass(frozen=True)
class Decision:
    """What the chain did to one document: kept (maybe with modified text) or dropped by a stage, with why."""

    keep: bool
    text: str
    stage: str | None = None
    reason: str | None = None
    modified_by: tuple[str, ...] = ()


def _datatrove_filter(stage: Stage):
    module, cls = STAGE_CLASSES[stage.name].rsplit(".", 1)
    return getattr(importlib.import_module(module), cls)(**stage.datatrove_kwargs())


def _stage_classes() -> dict[str, str]:
    from transforms.recipes import STAGES

    return {name: spec.datatrove_class for name, spec in STAGES.items()}


STAGE_CLASSES = _stage_classes()


class DatatroveEngine:
    """The recipe's filters as datatrove objects, applied document by document (datatrove's own decisions)."""

    name = "datatrove"

    def __init__(self, recipe: Recipe) -> None:
        self.recipe = recipe
        self.stages = [(stage.name, _datatrove_filter(stage)) for stage in recipe.filters]

    def apply(self, texts: list[str], ids: list[str]) -> list[Decision]:
        """One Decision per document, in order."""
        from datatrove.data import Document

        out: list[Decision] = []
        for text, doc_id in zip(texts, ids):
            doc = Document(text=text, id=doc_id)
            decision = None
            modified: list[str] = []
            for name, filt in self.stages:
                before = doc.text
                result = filt.filter(doc)
                keep, reason = result if isinstance(result, tuple) else (result, None)
                if doc.text != before:
                    modified.append(name)
                if not keep:
                    decision = Decision(False, doc.text, name, reason or name, tuple(modified))
                    break
            out.append(decision or Decision(True, doc.text, modified_by=tuple(modified)))
        return out


def make_engine(recipe: Recipe):
    """The engine a recipe asks for, built (once per worker)."""
    if recipe.engine == DATATROVE:
        return DatatroveEngine(recipe)
    if recipe.engine == FAST:
        from transforms.fast_filters import FastEngine

        return FastEngine(recipe)
    raise RecipeError(f"recipe {recipe.name!r}: unknown engine {recipe.engine!r}")
