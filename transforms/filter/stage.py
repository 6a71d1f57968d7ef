"""The stage contract: what every filter stage of a recipe is, and what running one on a document returns.

A stage is one module of ``transforms.filter.stages`` defining ``STAGE``, an instance of a ``FilterStage``
subclass: its name, datatrove's class and parameters with datatrove's defaults, checks beyond a value's type
(``validate``), and its implementations, built once per worker: ``reference`` (datatrove's own object, by default)
and ``fast`` (a re-implementation making the same decisions, or None). Both are ``StageRule``s: one method,
``check(text, fields) -> Verdict``. Parameter checking, datatrove's keyword arguments and the wrapping of a
datatrove filter live here, in the base, so that a stage module holds only what is its own.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Mapping

from transforms.recipe.errors import RecipeError

if TYPE_CHECKING:
    from transforms.filter.fast import FastTools

PAIRS = "pairs"  # a list of [n, fraction] pairs (Gopher n-gram thresholds)
STRINGS = "strings"  # a list of strings
INT = "int"  # an integer whose default is None

NO_FIELDS: Mapping[str, Any] = MappingProxyType({})  # a document without input fields or measured signals


@dataclass(frozen=True)
class Stage:
    """One configured filter: its name and every parameter (defaults filled in); ``files``: what the launcher
    wrote for the workers (``FilterStage.place_files``), not part of the recipe (nor of its identity)."""

    name: str
    params: dict[str, Any]
    files: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Verdict:
    """What one stage decided about one document: kept or dropped (with datatrove's reason), the text after the
    stage (None: unchanged), the signals it measured (None: none) and what it found, by kind (None: nothing; summed
    into the manifest's ``counts.stage_counts`` as ``<stage>/<kind>``, e.g. ``pii/email``)."""

    keep: bool
    reason: str | None = None
    text: str | None = None
    meta: dict[str, Any] | None = None
    counts: Mapping[str, int] | None = None


KEPT = Verdict(True)  # kept, text unchanged, nothing measured: shared, as most verdicts are this one


class StageRule:
    """One stage's implementation, built once per worker."""

    own_limit: bool = False  # it enforces the stage time limit itself (a helper process), not the chain's clock

    def check(self, text: str, fields: Mapping[str, Any]) -> Verdict:
        """The verdict on one document; ``fields``: its input fields with what earlier stages measured."""
        raise NotImplementedError  # pragma: no cover - every rule defines it

    batched: bool = False  # the chain hands it a batch's documents at once (check_many; own_limit too)

    def check_many(self, texts: list[str], fields: list[Mapping[str, Any]]) -> list[Verdict]:
        """The verdicts on several documents, in order (the chain calls it for ``batched`` rules)."""
        return [self.check(text, f) for text, f in zip(texts, fields)]


class TextRule(StageRule):
    """A rule that keeps or drops a document by its text alone, never changing it (datatrove's ``filter``)."""

    def filter(self, text: str) -> tuple[bool, str | None]:
        """(keep, reason)."""
        raise NotImplementedError  # pragma: no cover - every rule defines it

    def check(self, text: str, fields: Mapping[str, Any]) -> Verdict:
        """The verdict of ``filter``."""
        keep, reason = self.filter(text)
        return KEPT if keep else Verdict(False, reason)


class DatatroveRule(StageRule):
    """A stage run as datatrove's own filter object: its decisions, and its text changes (C4 removes lines)."""

    def __init__(self, datatrove_filter: Any) -> None:
        from datatrove.data import Document

        self.datatrove = datatrove_filter
        self._document = Document

    def check(self, text: str, fields: Mapping[str, Any]) -> Verdict:
        """datatrove's decision on the text (no datatrove filter here reads input fields)."""
        doc = self._document(text=text, id="")
        result = self.datatrove.filter(doc)
        keep, reason = result if isinstance(result, tuple) else (result, None)
        return Verdict(keep, reason, doc.text)


class FilterStage:
    """A filter stage tokenmill knows: its datatrove class and its parameters with their defaults, how a recipe's
    values are checked, and its implementations. Subclasses set the class attributes and override what differs."""

    name: str = ""
    datatrove_class: str = ""  # empty: tokenmill's own stage, with no datatrove class to build
    params: Mapping[str, Any] = MappingProxyType({})  # every parameter with its default (datatrove's, checked by the tests)
    kinds: Mapping[str, str] = MappingProxyType({})  # parameters whose values are lists (PAIRS, STRINGS) or INT
    own_params: tuple[str, ...] = ()  # tokenmill's parameters beside datatrove's (not passed to its class)
    doc: str = ""  # one line for ``--help``
    listed: int = 0  # where ``--help`` lists the stage (and the registry orders it)

    def configure(self, given: Any, where: str) -> Stage:
        """The stage with a recipe's parameter values checked and the defaults filled in; RecipeError otherwise."""
        if not isinstance(given, dict):
            raise RecipeError(f"{where} ({self.name}): 'params' must be a mapping")
        unknown = sorted(set(given) - set(self.params))
        if unknown:
            raise RecipeError(
                f"{where} ({self.name}): unknown parameter(s) {', '.join(map(repr, unknown))}; "
                f"valid: {', '.join(sorted(self.params))}"
            )
        params = dict(self.params)
        for key, value in given.items():
            params[key] = check_value(value, self.params[key], self.kinds.get(key), f"{where} ({self.name}.{key})")
        self.validate(params, where)
        return Stage(self.name, params)

    def validate(self, params: dict[str, Any], where: str) -> None:
        """Checks beyond each value's type (a required value, a pattern that compiles); RecipeError if one fails."""

    def check_files(self, stage: Stage) -> None:
        """Raise RecipeError if a file the configured stage names cannot be used (checked before the output is
        touched); none by default."""

    def place_files(self, stage: Stage, temp_dir: str) -> Stage:
        """The stage as the workers get it, with what it builds once per job written under ``temp_dir`` (the job's
        temp folder on the output's filesystem, once the output is claimed) and named in ``files``; the stage itself
        by default."""
        return stage

    def datatrove_kwargs(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """Keyword arguments for the datatrove filter class (without tokenmill's own parameters)."""
        return {k: v for k, v in params.items() if k not in self.own_params}

    def datatrove_filter(self, stage: Stage) -> Any:
        """datatrove's filter object for the configured stage (a datatrove pipeline step)."""
        if not self.datatrove_class:
            raise NotImplementedError(f"stage {self.name!r} is tokenmill's own: it has no datatrove filter")
        module, cls = self.datatrove_class.rsplit(".", 1)
        return getattr(importlib.import_module(module), cls)(**self.datatrove_kwargs(stage.params))

    def reference(self, stage: Stage, limit: float) -> StageRule:
        """The reference implementation (datatrove's object); ``limit``: seconds the stage may spend on a document."""
        return DatatroveRule(self.datatrove_filter(stage))

    def fast(self, stage: Stage, tools: FastTools) -> StageRule | None:
        """The fast implementation (same decisions as the reference), or None where there is none."""
        return None


def check_value(value: Any, default: Any, kind: str | None, where: str) -> Any:
    """Check a parameter value against its default's type (lists by kind); ints are accepted for floats."""
    if value is None:
        return None
    if kind == PAIRS:
        ok = isinstance(value, (list, tuple)) and all(
            isinstance(p, (list, tuple)) and len(p) == 2 and isinstance(p[0], int) and is_number(p[1])
            for p in value
        )
        if not ok:
            raise RecipeError(f"{where}: expected a list of [n, fraction] pairs, got {value!r}")
        return tuple((int(n), float(f)) for n, f in value)
    if kind == INT:
        if isinstance(value, bool) or not isinstance(value, int):
            raise RecipeError(f"{where}: expected an integer, got {value!r}")
        return value
    if kind == STRINGS:
        if not (isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value)):
            raise RecipeError(f"{where}: expected a list of strings, got {value!r}")
        return tuple(value)
    if default is None or isinstance(default, str):
        if not isinstance(value, str):
            raise RecipeError(f"{where}: expected a string, got {value!r}")
        return value
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise RecipeError(f"{where}: expected true or false, got {value!r}")
        return value
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            raise RecipeError(f"{where}: expected an integer, got {value!r}")
        return value
    if isinstance(default, float):
        if not is_number(value):
            raise RecipeError(f"{where}: expected a number, got {value!r}")
        return float(value)
    raise RecipeError(f"{where}: unsupported value {value!r}")  # pragma: no cover - every default is covered above


def is_number(value: Any) -> bool:
    """An int or float, not a bool."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)
