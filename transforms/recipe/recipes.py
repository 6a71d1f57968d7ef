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

from schemas import manifest as m
from transforms.filter.registry import STAGES
from transforms.filter.stage import Stage, is_number
from transforms.recipe.errors import RecipeError
from transforms.recipe.limits import DEFAULT_STAGE_TIMEOUT
from transforms.recipe.line_dedup import LineDedup, parse_line_dedup
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
    # FineWeb from the raw crawl (WARC): its whole datatrove pipeline in its order and parameters - URL filter,
    # trafilatura, English at 0.65, the quality chain above, MinHash (5-grams, 14 bands x 8 rows, on the text the
    # quality chain passes on) and PII formatting of what is kept
    "fineweb-full": {
        "filters": [
            {"name": "url_filter"},
            {"name": "extract", "params": {"engine": "trafilatura"}},
            {"name": "language", "params": {"languages": ["en"], "min_score": 0.65}},
            {"name": "gopher_repetition"},
            {"name": "gopher_quality"},
            {"name": "c4_quality", "params": {"filter_no_terminal_punct": False}},
            {"name": "fineweb_quality"},
            {"name": "pii"},
        ],
        "dedup": {"minhash": {"ngram": 5, "bands": 14, "rows": 8}, "after": "fineweb_quality"},
    },
    # Dolma's web rules: English (fastText >= 0.5 there), Gopher's rules, C4's NoPunc line rule alone, then
    # exact document dedup and its paragraph dedup (a line seen in an earlier document is removed), PII masked
    "dolma": {
        "filters": [
            {"name": "language", "params": {"languages": ["en"], "min_score": 0.5}},
            {"name": "gopher_repetition"},
            {"name": "gopher_quality"},
            {"name": "c4_quality", "params": {
                "remove_citations": False, "filter_no_terminal_punct": True, "min_num_sentences": -1,
                "min_words_per_line": -1, "max_word_length": -1, "filter_lorem_ipsum": False,
                "filter_javascript": False, "filter_curly_bracket": False, "filter_policy": False}},
            {"name": "pii"},
        ],
        "dedup": {"exact": True, "lines": {"unit": "line", "min_docs": 2, "keep_first": True}, "after": "c4_quality"},
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
class EarlierOutput:
    """An earlier output whose saved dedup index a run deduplicates against (``dedup.against``);
    ``index_sha256``: the identity of that index, filled in when the job starts (``transforms.dedup.index``)."""

    path: str
    index_sha256: str | None = None


@dataclass(frozen=True)
class Dedup:
    """Which deduplication runs; ``save_index``: save the kept documents' keys with the output; ``against``:
    also drop documents that duplicate these earlier outputs' (saved) documents."""

    exact: bool = False
    minhash: MinHash | None = None
    save_index: bool = False
    against: tuple[EarlierOutput, ...] = ()
    lines: LineDedup | None = None  # line/paragraph dedup (transforms.recipe.line_dedup)
    after: str | None = None  # keys of the text this filter stage passes on (None: after the last stage)


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
        if self.dedup.save_index:  # both only when used: earlier results keep their identity
            dedup[m.R_SAVE_INDEX] = True
        if self.dedup.against:
            dedup[m.R_AGAINST] = [{m.AG_PATH: e.path, m.AG_INDEX_SHA256: e.index_sha256} for e in self.dedup.against]
        if self.dedup.lines is not None:  # only when used, like the two above
            dedup[m.R_LINES] = self.dedup.lines.to_dict()
        if self.dedup.after is not None:
            dedup[m.R_KEYS_AFTER] = self.dedup.after
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
        # fsspec is imported here, where a file is read: prepare's and filter's --help list PRESETS without it
        import fsspec

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
    dedup = replace(_dedup(config.get("dedup"), where), lines=parse_line_dedup(config.get("dedup"), where),
                    after=_keys_after(config.get("dedup"), filters, where))
    return Recipe(str(config.get("name", name)), filters, dedup, engine, selection,
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
    unknown = sorted(set(config) - {"exact", "minhash", "save_index", "against", "lines", "after"})
    if unknown:
        raise RecipeError(f"{where}: dedup has unknown key(s) {', '.join(map(repr, unknown))}; valid: exact, minhash, "
                          "save_index, against, lines, after")
    exact = config.get("exact", False)
    if not isinstance(exact, bool):
        raise RecipeError(f"{where}: dedup.exact must be true or false")
    mh_config = config.get("minhash")
    incremental = _incremental(config, where, exact or mh_config not in (None, False))
    if mh_config is None or mh_config is False:
        return Dedup(exact, None, **incremental)
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
    return Dedup(exact, minhash, **incremental)


def _keys_after(config: Any, filters: tuple[Stage, ...], where: str) -> str | None:
    """dedup.after: the filter stage whose output text the exact and MinHash keys are computed on (the stages
    after it still run, as FineWeb's PII formatting after its MinHash); it must name one stage of the recipe."""
    after = config.get("after") if isinstance(config, dict) else None
    if after is None:
        return None
    names = [s.name for s in filters]
    if not isinstance(after, str) or names.count(after) != 1:
        raise RecipeError(f"{where}: dedup.after must name one filter stage of the recipe ({', '.join(names) or 'none'}"
                          f"), got {after!r}")
    if not (config.get("exact") or config.get("minhash")):
        raise RecipeError(f"{where}: dedup.after needs dedup keys: set dedup.exact or dedup.minhash")
    return None if after == names[-1] else after  # after the last stage is the default


def _incremental(config: dict[str, Any], where: str, keys: bool) -> dict[str, Any]:
    """dedup.save_index and dedup.against (an output folder or a list of them) as Dedup fields; ``keys``: whether
    the recipe computes dedup keys (exact or minhash), which both need."""
    save_index = config.get("save_index", False)
    if not isinstance(save_index, bool):
        raise RecipeError(f"{where}: dedup.save_index must be true or false")
    against = config.get("against") or []
    if isinstance(against, str):
        against = [against]
    if not isinstance(against, list) or not all(isinstance(p, str) and p.strip() for p in against):
        raise RecipeError(f"{where}: dedup.against must be an earlier output folder or a list of them, got {against!r}")
    if len(set(against)) != len(against):
        raise RecipeError(f"{where}: dedup.against lists an output twice: {against!r}")
    if (save_index or against) and not keys:
        raise RecipeError(f"{where}: dedup.save_index and dedup.against need dedup keys: set dedup.exact or "
                          "dedup.minhash")
    return {"save_index": save_index, "against": tuple(EarlierOutput(p) for p in against)}


def _jsonable(params: dict[str, Any]) -> dict[str, Any]:
    return {k: [list(p) if isinstance(p, tuple) else p for p in v] if isinstance(v, tuple) else v
            for k, v in params.items()}
