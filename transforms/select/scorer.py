"""The scorer contract: what every scorer of a recipe's ``scorers`` section is, and what a built one does.

A scorer is one module of ``transforms.select.scorers`` defining ``SCORER``, an instance of a ``ScorerStage``
subclass: its name, parameters with their defaults (None: required), the files it needs checked before a run
(``check_files``) and ``build``, which makes the object that scores texts (``score(texts) -> list[float]``).
Checking a recipe's values lives here, in the base, so a scorer module holds only what is its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Mapping, Protocol

from transforms.recipe.errors import RecipeError

BUCKET = "bucket"  # select.score: the ensemble bucket (never a scorer key)


@dataclass(frozen=True)
class ScorerConfig:
    """One configured scorer: where its score goes (``key``), which scorer, every parameter."""

    key: str
    name: str
    params: dict[str, Any]


class Scorer(Protocol):
    """A built scorer."""

    def score(self, texts: list[str]) -> list[float]:
        """One score per text."""


class ScorerStage:
    """A scorer tokenmill knows: its parameters and defaults, how a recipe's values are checked, how it is built.
    Subclasses set the class attributes and override ``build`` (and ``check_files`` where it names files)."""

    name: str = ""
    params: Mapping[str, Any] = MappingProxyType({})  # every parameter with its default (None: none)
    doc: str = ""  # one line for ``--help``
    required: tuple[str, ...] = ()  # parameters that must be given (a path or glob)
    choices: Mapping[str, tuple[str, ...]] = MappingProxyType({})  # parameters with a closed set of values
    fitted: bool = False  # it learns from the corpus before scoring (a first pass fits it)
    listed: int = 0  # where ``--help`` lists it (and the registry orders it)

    def configure(self, item: dict[str, Any], where: str) -> ScorerConfig:
        """The scorer with a recipe item's ``key`` and ``params`` checked and the defaults filled in."""
        key = item.get("key", self.name)
        if not isinstance(key, str) or not key or key == BUCKET:
            raise RecipeError(f"{where} ({self.name}): 'key' must be a non-empty name other than {BUCKET!r}")
        given = item.get("params") or {}
        if not isinstance(given, dict):
            raise RecipeError(f"{where} ({self.name}): 'params' must be a mapping")
        unknown = sorted(set(given) - set(self.params))
        if unknown:
            raise RecipeError(f"{where} ({self.name}): unknown parameter(s) {', '.join(map(repr, unknown))}; "
                              f"valid: {', '.join(sorted(self.params))}")
        params = {**self.params, **given}
        for name in self.required:
            if not isinstance(params[name], str) or not params[name]:
                raise RecipeError(f"{where} ({self.name}): '{name}' is required (a path or glob)")
        for name, default in self.params.items():
            value = params[name]
            if isinstance(default, int) and not isinstance(default, bool):
                if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                    raise RecipeError(f"{where} ({self.name}.{name}): expected a positive integer, got {value!r}")
            elif value is not None and not isinstance(value, str):
                raise RecipeError(f"{where} ({self.name}.{name}): expected a string, got {value!r}")
            if name in self.choices and value not in self.choices[name]:
                raise RecipeError(f"{where} ({self.name}.{name}): {value!r} is not one of "
                                  f"{', '.join(self.choices[name])}")
        return ScorerConfig(key, self.name, params)

    def check_files(self, config: ScorerConfig, where: str) -> None:
        """Raise RecipeError if a file the configured scorer names cannot be used; none by default."""

    def build(self, config: ScorerConfig, fitted: Any | None) -> Scorer:
        """The scorer object; ``fitted``: what fitting learned for this scorer (None unless ``fitted``)."""
        raise NotImplementedError  # pragma: no cover - every scorer defines it
