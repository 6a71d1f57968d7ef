"""Selection scoring: the recipe's ``scorers``, ``ensemble``, ``select`` and ``upsample`` sections, and the scorers.

::

    scorers:
      - {name: fasttext, params: {model: quality.bin, label: __label__hq}}
      - {name: dsir, params: {target: 'wiki/*.jsonl', buckets: 10000}}
      - {name: length}                      # any per-document signal can be a score
    ensemble: {method: percentile_buckets, buckets: 20, sample_fraction: 0.01, weight: bytes, combine: max}
    select:   {tokens: 2_000_000_000}       # or {bytes: N}, {top_fraction: 0.3}, {min_score: x}, {min_bucket: 12}
    upsample: {19: 3, 18: 2}                # repeat documents of high buckets

A scorer is one module of ``transforms.select.scorers`` (the contract: ``transforms.select.scorer``); each
document's scores go to ``meta.scores`` under the scorer's ``key`` (its name unless given). The
sections are validated when the recipe is loaded: a mistake is a ``RecipeError`` that names the valid choices.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from schemas import manifest as m
from transforms.recipe.errors import RecipeError
from transforms.select.registry import SCORERS
from transforms.select.scorer import BUCKET, Scorer, ScorerConfig

PERCENTILE_BUCKETS = "percentile_buckets"
ENSEMBLE_DEFAULTS = {"method": PERCENTILE_BUCKETS, "buckets": 20, "sample_fraction": 1.0, "weight": "bytes",
                     "combine": "max", "seed": 0, "partition": False}
WEIGHTS = ("bytes", "tokens", "documents")
COMBINES = ("max", "mean")
BUDGETS = ("tokens", "bytes")  # keep the best documents until this much
MIN_SCORE = "min_score"  # the one criterion decided per document as it is scored (pass 1, before dedup)
CRITERIA = BUDGETS + ("top_fraction", MIN_SCORE, "min_bucket")


@dataclass(frozen=True)
class Ensemble:
    """Per scorer, byte-weighted (by default) percentile cut-points over the corpus or a deterministic sample;
    each score becomes a bucket 0..buckets-1 and the buckets combine by max or mean into ``meta.bucket``."""

    method: str = PERCENTILE_BUCKETS
    buckets: int = 20
    sample_fraction: float = 1.0
    weight: str = "bytes"
    combine: str = "max"
    seed: int = 0
    partition: bool = False  # prepare: each bucket's documents packed into shards of their own (shards/bucket=NN/)

    def fractions(self) -> list[float]:
        """The cumulative fractions of the cut-points: 1/B, 2/B, ..., (B-1)/B."""
        return [b / self.buckets for b in range(1, self.buckets)]


@dataclass(frozen=True)
class Select:
    """Which documents are kept: one criterion (see ``CRITERIA``) on ``score`` (a scorer key or ``bucket``)."""

    criterion: str
    value: float
    score: str


@dataclass(frozen=True)
class Selection:
    """The recipe's scoring and selection sections (all empty: no scoring)."""

    scorers: tuple[ScorerConfig, ...] = ()
    ensemble: Ensemble | None = None
    select: Select | None = None
    upsample: tuple[tuple[int, int], ...] = ()

    @property
    def global_pass(self) -> bool:
        """Whether decisions need the whole corpus first (cut-points or a budget): a second pass."""
        return self.ensemble is not None or (self.select is not None and self.select.criterion in
                                             BUDGETS + ("top_fraction",))

    def to_dict(self) -> dict[str, Any]:
        """As recorded in a manifest (every parameter explicit); empty when nothing is scored."""
        out: dict[str, Any] = {}
        if self.scorers:
            out[m.R_SCORERS] = [{m.R_SCORER_KEY: s.key, m.R_STAGE_NAME: s.name, m.R_STAGE_PARAMS: dict(s.params)}
                                for s in self.scorers]
        if self.ensemble is not None:
            e = self.ensemble
            out[m.R_ENSEMBLE] = {m.EN_METHOD: e.method, m.EN_BUCKETS: e.buckets,
                                 m.EN_SAMPLE_FRACTION: e.sample_fraction, m.EN_WEIGHT: e.weight,
                                 m.EN_COMBINE: e.combine, m.EN_SEED: e.seed, m.EN_PARTITION: e.partition}
        if self.select is not None:
            value = self.select.value
            out[m.R_SELECT] = {self.select.criterion: int(value) if float(value).is_integer() else value,
                               m.R_SELECT_SCORE: self.select.score}
        if self.upsample:
            out[m.R_UPSAMPLE] = {str(b): f for b, f in self.upsample}
        return out


def parse_selection(config: dict[str, Any], where: str) -> Selection:
    """The scoring sections of a recipe's data (``scorers``, ``ensemble``, ``select``, ``upsample``)."""
    scorers = tuple(_scorer(item, f"{where}, scorer {i + 1}")
                    for i, item in enumerate(_list(config.get("scorers"), f"{where}: 'scorers'")))
    keys = [s.key for s in scorers]
    repeated = sorted({k for k in keys if keys.count(k) > 1})
    if repeated:
        raise RecipeError(f"{where}: scorer key(s) {', '.join(map(repr, repeated))} used twice; give each a "
                          "distinct 'key'")
    ensemble = _ensemble(config.get("ensemble"), where) if config.get("ensemble") is not None else None
    if ensemble is not None and not scorers:
        raise RecipeError(f"{where}: 'ensemble' needs at least one scorer under 'scorers'")
    select = _select(config.get("select"), where, keys, ensemble) if config.get("select") is not None else None
    upsample = _upsample(config.get("upsample"), where, ensemble) if config.get("upsample") is not None else ()
    return Selection(scorers, ensemble, select, upsample)


def _list(value: Any, what: str) -> list:
    if value is None:
        return []
    if not isinstance(value, list):
        raise RecipeError(f"{what} must be a list of {{name: ..., params: {{...}}}}")
    return value


def _scorer(item: Any, where: str) -> ScorerConfig:
    if isinstance(item, str):
        item = {"name": item}
    if not isinstance(item, dict) or "name" not in item:
        raise RecipeError(f"{where}: expected {{name: <scorer>, params: {{...}}}}, got {item!r}")
    extra = sorted(set(item) - {"name", "params", "key"})
    if extra:
        raise RecipeError(f"{where}: unknown key(s) {', '.join(map(repr, extra))}; valid: name, key, params")
    spec = SCORERS.get(item["name"])
    if spec is None:
        raise RecipeError(f"{where}: unknown scorer {item['name']!r}; valid scorers: {', '.join(sorted(SCORERS))}")
    return spec.configure(item, where)


def _ensemble(config: Any, where: str) -> Ensemble:
    if not isinstance(config, dict):
        raise RecipeError(f"{where}: 'ensemble' must be a mapping of {', '.join(ENSEMBLE_DEFAULTS)}")
    unknown = sorted(set(config) - set(ENSEMBLE_DEFAULTS))
    if unknown:
        raise RecipeError(f"{where}: ensemble has unknown key(s) {', '.join(map(repr, unknown))}; "
                          f"valid: {', '.join(ENSEMBLE_DEFAULTS)}")
    values = {**ENSEMBLE_DEFAULTS, **config}
    if values["method"] != PERCENTILE_BUCKETS:
        raise RecipeError(f"{where}: ensemble.method {values['method']!r} is not known; valid: {PERCENTILE_BUCKETS}")
    b = values["buckets"]
    if isinstance(b, bool) or not isinstance(b, int) or not 2 <= b <= 1000:
        raise RecipeError(f"{where}: ensemble.buckets must be an integer from 2 to 1000, got {b!r}")
    f = values["sample_fraction"]
    if isinstance(f, bool) or not isinstance(f, (int, float)) or not 0 < f <= 1:
        raise RecipeError(f"{where}: ensemble.sample_fraction must be a number in (0, 1], got {f!r}")
    if values["weight"] not in WEIGHTS:
        raise RecipeError(f"{where}: ensemble.weight {values['weight']!r} is not one of {', '.join(WEIGHTS)}")
    if values["combine"] not in COMBINES:
        raise RecipeError(f"{where}: ensemble.combine {values['combine']!r} is not one of {', '.join(COMBINES)}")
    seed = values["seed"]
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise RecipeError(f"{where}: ensemble.seed must be a non-negative integer, got {seed!r}")
    if not isinstance(values["partition"], bool):
        raise RecipeError(f"{where}: ensemble.partition must be true or false, got {values['partition']!r}")
    return Ensemble(PERCENTILE_BUCKETS, b, float(f), values["weight"], values["combine"], seed, values["partition"])


def _select(config: Any, where: str, keys: list[str], ensemble: Ensemble | None) -> Select:
    if not isinstance(config, dict):
        raise RecipeError(f"{where}: 'select' must be a mapping with one of {', '.join(CRITERIA)} (and 'score')")
    unknown = sorted(set(config) - set(CRITERIA) - {"score"})
    if unknown:
        raise RecipeError(f"{where}: select has unknown key(s) {', '.join(map(repr, unknown))}; "
                          f"valid: {', '.join(CRITERIA)}, score")
    given = [c for c in CRITERIA if c in config]
    if len(given) != 1:
        raise RecipeError(f"{where}: select needs exactly one of {', '.join(CRITERIA)}; got "
                          f"{', '.join(given) or 'none'}")
    criterion = given[0]
    value = config[criterion]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise RecipeError(f"{where}: select.{criterion} must be a number, got {value!r}")
    if criterion in BUDGETS and (not float(value).is_integer() or value < 0):
        raise RecipeError(f"{where}: select.{criterion} must be a non-negative whole number, got {value!r}")
    if criterion == "top_fraction" and not 0 < value <= 1:
        raise RecipeError(f"{where}: select.top_fraction must be in (0, 1], got {value!r}")
    if not keys:
        raise RecipeError(f"{where}: 'select' needs at least one scorer under 'scorers'")
    score = config.get("score")
    if score is None:
        if ensemble is not None:
            score = BUCKET
        elif len(keys) == 1:
            score = keys[0]
        else:
            raise RecipeError(f"{where}: select.score must name the score to select on ({', '.join(keys)}) when "
                              "several scorers run without an ensemble")
    if score != BUCKET and score not in keys:
        raise RecipeError(f"{where}: select.score {score!r} is not a scorer key; valid: {', '.join(keys + [BUCKET])}")
    if (score == BUCKET or criterion == "min_bucket") and ensemble is None:
        raise RecipeError(f"{where}: selecting on buckets needs an 'ensemble' section")
    if criterion == "min_bucket":
        if not float(value).is_integer() or not 0 <= value < ensemble.buckets:
            raise RecipeError(f"{where}: select.min_bucket must be a bucket from 0 to {ensemble.buckets - 1}")
        score = BUCKET
    if criterion in BUDGETS:
        value = int(value)
    return Select(criterion, value, score)


def _upsample(config: Any, where: str, ensemble: Ensemble | None) -> tuple[tuple[int, int], ...]:
    if ensemble is None:
        raise RecipeError(f"{where}: 'upsample' repeats buckets: it needs an 'ensemble' section")
    if not isinstance(config, dict):
        raise RecipeError(f"{where}: 'upsample' must map buckets to repeat factors, e.g. {{19: 3, 18: 2}}")
    out = []
    for bucket, factor in config.items():
        try:
            b = int(bucket)
        except (TypeError, ValueError):
            b = -1
        if str(b) != str(bucket).strip() or not 0 <= b < ensemble.buckets:
            raise RecipeError(f"{where}: upsample bucket {bucket!r} is not a bucket from 0 to {ensemble.buckets - 1}")
        if isinstance(factor, bool) or not isinstance(factor, int) or not 1 <= factor <= 100:
            raise RecipeError(f"{where}: upsample factor of bucket {b} must be an integer from 1 to 100, "
                              f"got {factor!r}")
        out.append((b, factor))
    return tuple(sorted(out))


def make_scorers(selection: Selection, fitted: dict[str, Any] | None = None) -> list[tuple[str, Scorer]]:
    """(key, scorer) for each configured scorer; ``fitted``: the state of scorers fitted on the corpus (dsir)."""
    return [(s.key, SCORERS[s.name].build(s, (fitted or {}).get(s.key))) for s in selection.scorers]


def needs_fitting(selection: Selection | None) -> bool:
    """Whether some scorer learns from the corpus before scoring (dsir)."""
    return selection is not None and any(SCORERS[s.name].fitted for s in selection.scorers)


def bucket_of(score: float, cuts: list[float]) -> int:
    """The bucket of a score: how many cut-points lie strictly below it (a score equal to a cut-point is in the
    lower bucket, so bucket 0 holds at least 1/B of the weight)."""
    import bisect

    return bisect.bisect_left(cuts, score)


def combine_buckets(buckets: list[int], how: str) -> int:
    """The document's bucket from its buckets per scorer: the max, or the mean rounded down."""
    if how == "max":
        return max(buckets)
    return math.floor(sum(buckets) / len(buckets))  # (math, not numpy: the recipe's --help imports this module)
