"""Quality filtering cores: apply a recipe's filter chain to a batch of documents, keeping every decision.

Each stage of the recipe becomes one ``StageRule`` (see ``transforms.filter.stage``), built once per worker from
the registry: ``DatatroveEngine`` takes every stage's reference (datatrove's own filter objects, applied in recipe
order), ``FastEngine`` its fast implementation where there is one (the same decisions). A rule may drop a document
(with datatrove's reason) or modify its text (C4 removes lines); the first drop ends the chain for that document.
Every document gets a ``Decision``, so nothing is lost.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from transforms.filter.fast import FastTools
from transforms.filter.registry import STAGES
from transforms.filter.stage import NO_FIELDS, FilterStage, Stage, StageRule, Verdict
from transforms.recipe.errors import RecipeError
from transforms.recipe.limits import TIMEOUT, StageClock, StageTimeout
from transforms.recipe.recipes import DATATROVE, FAST, Recipe


@dataclass(frozen=True)
class Decision:
    """What the chain did to one document: kept (maybe with modified text) or dropped by a stage, with why."""

    keep: bool
    text: str
    stage: str | None = None
    reason: str | None = None
    modified_by: tuple[str, ...] = ()
    meta: dict | None = None  # signals a stage measured (the language stage: lang, lang_score)
    counts: dict[str, int] | None = None  # "<stage>/<kind>": what stages found (pii: addresses replaced)
    marked: str | None = None  # with run_chain's ``mark``: the text as the first ``mark`` stages passed it on


def run_chain(stages: Sequence[tuple[str, StageRule]], texts: list[str],
              metas: list[dict | None] | None = None, clock: StageClock | None = None,
              mark: int | None = None) -> list[Decision]:
    """One Decision per text: each (name, rule) in order, ``rule.check(text, fields) -> Verdict``; the first drop
    ends the chain, a changed text is passed on and reported as modified by that stage, and the signals a rule
    measured (``Verdict.meta``) and found (``Verdict.counts``) are kept. ``fields`` are the document's input fields
    (``metas``) with what earlier stages measured. With a ``clock``, a stage that runs past its limit on a document
    drops it with reason ``timeout``. With ``mark``, a kept document's Decision also holds its text after the first
    ``mark`` stages. Stage by stage over the batch (each document still meets the stages in order): a ``batched``
    rule's ``check_many`` takes all the documents left at once (the extract stage's helper process, fed without a round
    trip per document)."""
    docs = [_Doc(text, metas[i] if metas else None) for i, text in enumerate(texts)]
    live = docs
    for done, (name, rule) in enumerate(stages):
        if not live:
            break
        if done == mark:
            for doc in live:
                doc.marked = doc.text
        if rule.batched:
            verdicts: list[Verdict | None] = list(rule.check_many([d.text for d in live], [d.fields for d in live]))
        else:
            verdicts = [_check(rule, d, clock) for d in live]
        for doc, verdict in zip(live, verdicts):
            doc.apply(name, verdict)
        live = [d for d in live if d.decision is None]
    return [d.decision or Decision(True, d.text, modified_by=tuple(d.modified), meta=d.meta, counts=d.found,
                                   marked=d.marked) for d in docs]


def _check(rule: StageRule, doc: "_Doc", clock: StageClock | None) -> Verdict | None:
    """One document's verdict; None when the stage ran past its limit."""
    try:
        if clock is not None and not rule.own_limit:
            return clock.call(rule.check, doc.text, doc.fields)
        return rule.check(doc.text, doc.fields)
    except StageTimeout:
        return None


class _Doc:
    """One document on its way through the chain."""

    __slots__ = ("text", "given", "fields", "meta", "found", "modified", "marked", "decision")

    def __init__(self, text: str, given: dict | None) -> None:
        self.text = text
        self.given = given
        self.fields: Mapping[str, Any] = given or NO_FIELDS
        self.meta: dict | None = None
        self.found: dict[str, int] | None = None
        self.modified: list[str] = []
        self.marked: str | None = None
        self.decision: Decision | None = None

    def apply(self, name: str, verdict: Verdict | None) -> None:
        """Stage ``name``'s verdict (None: it ran past its limit)."""
        if verdict is None:
            self.decision = Decision(False, self.text, name, TIMEOUT, tuple(self.modified), self.meta, self.found)
            return
        if verdict.counts:
            found = dict(self.found or {})
            for kind, n in verdict.counts.items():
                found[f"{name}/{kind}"] = found.get(f"{name}/{kind}", 0) + n
            self.found = found
        if verdict.meta is not None:
            self.meta = {**(self.meta or {}), **verdict.meta}
            self.fields = {**(self.given or {}), **self.meta}
        if verdict.text is not None and verdict.text != self.text:
            self.modified.append(name)
            self.text = verdict.text
        if not verdict.keep:
            self.decision = Decision(False, self.text, name, verdict.reason or name, tuple(self.modified),
                                     self.meta, self.found)


class FilterEngine:
    """The recipe's filters as one rule per stage (built once per worker), applied document by document."""

    name = ""

    def __init__(self, recipe: Recipe) -> None:
        self.recipe = recipe
        self.stages: list[tuple[str, StageRule]] = [(s.name, self.rule(STAGES[s.name], s)) for s in recipe.filters]

    def rule(self, kind: FilterStage, stage: Stage) -> StageRule:
        """The implementation of one configured stage this engine runs."""
        raise NotImplementedError  # pragma: no cover - every engine defines it

    def apply(self, texts: list[str], ids: list[str]) -> list[Decision]:
        """One Decision per document, in order (no rule uses the ids)."""
        return run_chain(self.stages, texts)


class DatatroveEngine(FilterEngine):
    """Every stage's reference implementation: datatrove's own decisions."""

    name = DATATROVE

    def rule(self, kind: FilterStage, stage: Stage) -> StageRule:
        """The stage's reference (datatrove's object)."""
        return kind.reference(stage, self.recipe.stage_timeout)


class FastEngine(FilterEngine):
    """Every stage's fast implementation where it has one, its reference elsewhere; the same Decisions."""

    name = FAST

    def __init__(self, recipe: Recipe) -> None:
        self.tools = FastTools()
        super().__init__(recipe)

    def rule(self, kind: FilterStage, stage: Stage) -> StageRule:
        """The stage's fast rule, or its reference (datatrove's speed) where there is none."""
        return kind.fast(stage, self.tools) or kind.reference(stage, self.recipe.stage_timeout)


ENGINE_CLASSES: dict[str, type[FilterEngine]] = {DATATROVE: DatatroveEngine, FAST: FastEngine}


def make_engine(recipe: Recipe) -> FilterEngine:
    """The engine a recipe asks for, built (once per worker)."""
    engine = ENGINE_CLASSES.get(recipe.engine)
    if engine is None:
        raise RecipeError(f"recipe {recipe.name!r}: unknown engine {recipe.engine!r}")
    return engine(recipe)
