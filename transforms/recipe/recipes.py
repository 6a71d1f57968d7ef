"""Recipes: which quality filters run, in which order, with which parameters, and how documents are deduplicated.

A recipe is a YAML file (loaded with ``yaml.safe_load``: data only, never code) or a built-in preset name::

    filters:
      - {name: gopher_repetition}
      - {name: gopher_quality, params: {min_doc_words: 50}}
      - {name: c4_quality, params: {filter_no_terminal_punct: false}}
      - {name: fineweb_quality}
    dedup: {exact: true, minhash: {ngram: 5, bands: 14, rows: 8}}
    engine: fast        # or: datatrove

Stage names and parameters are those of datatrove's filters (``GopherQualityFilter(min_doc_words=...)`` is
``{name: gopher_quality, params: {min_doc_words: ...}}``), so a datatrove/FineWeb recipe translates one to one.
Each stage is one module of ``transforms.filter.stages`` (its parameters, checks and implementations), found by
``transforms.filter.registry``.
Everything is checked when the recipe is loaded; a mistake is a ``RecipeError`` that names the valid choices.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass, replace
from typing import Any

import fsspec

from schemas import manifest as m
from transforms.filter.registry import STAGES
from transforms.filter.stage import Stage, is_number
from transforms.recipe.errors import RecipeError
from transforms.recipe.limits import DEFAULT_STAGE_TIMEOUT
from transforms.select.scoring import Selection, parse_selection

FAST = "fast"
DATATROVE = "datatrove"
ENGINES = (FAST, DATATROVE)

PRESETS: dict[str, dict[str, Any]] = {
    # datatrove's FineWeb quality chain, in FineWeb's order (url/extraction/language steps come before it there)
    "fineweb": {
        "filters": [
            {"name": "gopher_repetition"},
            {"name": "gopher_quality"},
            {"name": "c4_quality", "params": {"filter_no_terminal_punct": False}},
            {"name": "fineweb_quality"},
        ],
    },
    "gopher": {"filters": [{"name": "gopher_repetition"}, {"name": "gopher_quality"}]},
    "c4": {"filters": [{"name": "c4_quality"}]},
}

MINHASH_DEFAULTS = {"ngram": 5, "bands": 14, "rows": 8, "seed": 1}
SECTIONS = ("filters", "dedup", "engine", "scorers", "ensemble", "select", "upsample", "stage_timeout")


@dataclass(frozen=True)
class MinHash:
    """MinHash-LSH near-duplicate detection: ``bands`` x ``rows`` hashes of word ``ngram`` shingles."""

    ngram: int = 5
    bands: int = 14
    rows: int = 8
    seed: int = 1

    @property
    def threshold(self) -> float:
        """The Jaccard similarity at which a pair is found with probability 1/2: (1/bands)^(1/rows)."""
        return (1.0 / self.bands) ** (1.0 / self.rows)


@dataclass(frozen=True)
class Dedup:
    """Which deduplication runs."""

    exact: bool = False
    minhash: MinHash | None = None


@dataclass(frozen=True)
class Recipe:
    """A validated recipe."""

    name: str
    filters: tuple[Stage, ...]
    dedup: Dedup = Dedup()
    engine: str = FAST
    selection: Selection | None = None  # scorers, ensemble, select, upsample (None: no scoring)
    stage_timeout: float = DEFAULT_STAGE_TIMEOUT  # seconds a stage may spend on one document (then <stage>/timeout)

    @property
    def scores(self) -> bool:
        """Whether documents are scored."""
        return self.selection is not None and bool(self.selection.scorers)

    def identity(self) -> dict[str, Any]:
        """What of the recipe decides a job's result (not its name, nor the engine: both make the same decisions)."""
        return {k: v for k, v in self.to_dict().items() if k not in (m.R_ENGINE, m.R_NAME)}

    def to_dict(self) -> dict[str, Any]:
        """The recipe as recorded in a manifest (every parameter explicit)."""
        dedup: dict[str, Any] = {m.R_EXACT: self.dedup.exact}
        if self.dedup.minhash is not None:
            mh = self.dedup.minhash
            dedup[m.R_MINHASH] = {m.MH_NGRAM: mh.ngram, m.MH_BANDS: mh.bands, m.MH_ROWS: mh.rows, m.MH_SEED: mh.seed,
                                  m.MH_THRESHOLD: round(mh.threshold, 4)}
        out = {
            m.R_NAME: self.name,
            m.R_ENGINE: self.engine,
            m.R_FILTERS: [{m.R_STAGE_NAME: s.name, m.R_STAGE_PARAMS: _jsonable(s.params)} for s in self.filters],
            m.R_DEDUP: dedup,
        }
        if self.selection is not None:
            out.update(self.selection.to_dict())
        if self.stage_timeout != DEFAULT_STAGE_TIMEOUT:  # the default is left out: earlier results keep their identity
            out[m.R_STAGE_TIMEOUT] = self.stage_timeout
        return out


def load_recipe(spec: str, engine: str | None = None) -> Recipe:
    """A preset name or a YAML file (local or fsspec) as a validated Recipe; ``engine`` overrides the file's."""
    if spec in PRESETS:
        recipe = parse_recipe(PRESETS[spec], spec)
    else:
        try:
            with fsspec.open(spec, "rb") as fh:
                data = fh.read()
        except FileNotFoundError as exc:
            raise RecipeError(
                f"--recipe {spec!r} is neither a preset ({', '.join(PRESETS)}) nor an existing file"
            ) from exc
        except (OSError, ValueError) as exc:
            raise RecipeError(f"--recipe {spec!r}: cannot read it ({exc})") from exc
        import yaml

        try:
            config = yaml.safe_load(data)  # plain data only: no tags that construct objects or run code
        except yaml.YAMLError as exc:
            raise RecipeError(f"--recipe {spec!r} is not valid YAML: {exc}") from exc
        recipe = parse_recipe(config, posixpath.basename(spec))
    if engine is not None:
        if engine not in ENGINES:
            raise RecipeError(f"unknown engine {engine!r}: use one of {', '.join(ENGINES)}")
        recipe = replace(recipe, engine=engine)
    return recipe


def parse_recipe(config: Any, name: str) -> Recipe:
    """Validate a recipe's data (as loaded from YAML) into a Recipe; raises RecipeError naming what is wrong."""
    where = f"recipe {name!r}"
    if config is None:
        config = {}
    if not isinstance(config, dict):
        kind = type(config).__name__
        raise RecipeError(f"{where}: expected a mapping with keys {', '.join(SECTIONS)}; got a {kind}")
    unknown = sorted(set(config) - set(SECTIONS) - {"name"})
    if unknown:
        raise RecipeError(f"{where}: unknown key(s) {', '.join(map(repr, unknown))}; valid: {', '.join(SECTIONS)}")
    engine = config.get("engine", FAST)
    if engine not in ENGINES:
        raise RecipeError(f"{where}: unknown engine {engine!r}; valid: {', '.join(ENGINES)}")
    raw_filters = config.get("filters") or []
    if not isinstance(raw_filters, list):
        raise RecipeError(f"{where}: 'filters' must be a list of {{name: ..., params: {{...}}}}")
    filters = tuple(_stage(item, f"{where}, filter {i + 1}") for i, item in enumerate(raw_filters))
    selection = None
    if any(config.get(k) is not None for k in ("scorers", "ensemble", "select", "upsample")):
        selection = parse_selection(config, where)
    timeout = config.get("stage_timeout", DEFAULT_STAGE_TIMEOUT)
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 < timeout <= 86400:
        raise RecipeError(f"{where}: 'stage_timeout' must be a number of seconds above 0 (the time one stage may "
                          f"spend on one document), got {timeout!r}")
    return Recipe(str(config.get("name", name)), filters, _dedup(config.get("dedup"), where), engine, selection,
                  float(timeout))


def _stage(item: Any, where: str) -> Stage:
    if isinstance(item, str):
        item = {"name": item}
    if not isinstance(item, dict) or "name" not in item:
        raise RecipeError(f"{where}: expected {{name: <stage>, params: {{...}}}}, got {item!r}")
    extra = sorted(set(item) - {"name", "params"})
    if extra:
        raise RecipeError(f"{where}: unknown key(s) {', '.join(map(repr, extra))}; valid: name, params")
    spec = STAGES.get(item["name"])
    if spec is None:
        raise RecipeError(f"{where}: unknown stage {item['name']!r}; valid stages: {', '.join(sorted(STAGES))}")
    return spec.configure(item.get("params") or {}, where)


def _dedup(config: Any, where: str) -> Dedup:
    if config is None:
        return Dedup()
    if not isinstance(config, dict):
        raise RecipeError(f"{where}: 'dedup' must be a mapping with keys exact, minhash")
    unknown = sorted(set(config) - {"exact", "minhash"})
    if unknown:
        raise RecipeError(f"{where}: dedup has unknown key(s) {', '.join(map(repr, unknown))}; valid: exact, minhash")
    exact = config.get("exact", False)
    if not isinstance(exact, bool):
        raise RecipeError(f"{where}: dedup.exact must be true or false")
    mh_config = config.get("minhash")
    if mh_config is None or mh_config is False:
        return Dedup(exact, None)
    if mh_config is True:
        mh_config = {}
    if not isinstance(mh_config, dict):
        raise RecipeError(f"{where}: dedup.minhash must be true or a mapping of {', '.join(MINHASH_DEFAULTS)}")
    unknown = sorted(set(mh_config) - set(MINHASH_DEFAULTS) - {"threshold"})
    if unknown:
        raise RecipeError(
            f"{where}: dedup.minhash has unknown key(s) {', '.join(map(repr, unknown))}; "
            f"valid: {', '.join(MINHASH_DEFAULTS)}, threshold"
        )
    values = dict(MINHASH_DEFAULTS)
    for key in MINHASH_DEFAULTS:
        if key in mh_config:
            v = mh_config[key]
            if isinstance(v, bool) or not isinstance(v, int) or v < (0 if key == "seed" else 1):
                raise RecipeError(f"{where}: dedup.minhash.{key} must be a positive integer, got {v!r}")
            values[key] = v
    minhash = MinHash(**values)
    if "threshold" in mh_config:  # informational in LSH; must agree with bands and rows to avoid surprises
        t = mh_config["threshold"]
        if not is_number(t) or not 0 < t < 1:
            raise RecipeError(f"{where}: dedup.minhash.threshold must be a number between 0 and 1")
        if abs(t - minhash.threshold) > 0.1:
            raise RecipeError(
                f"{where}: dedup.minhash.threshold {t} does not match bands={minhash.bands}, rows={minhash.rows} "
                f"(their threshold is {minhash.threshold:.2f}); change bands/rows or drop threshold"
            )
    return Dedup(exact, minhash)


def _jsonable(params: dict[str, Any]) -> dict[str, Any]:
    return {k: [list(p) if isinstance(p, tuple) else p for p in v] if isinstance(v, tuple) else v
            for k, v in params.items()}
