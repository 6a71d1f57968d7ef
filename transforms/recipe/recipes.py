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
Everything is checked when the recipe is loaded; a mistake is a ``RecipeError`` that names the valid choices.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass, field, replace
from typing import Any

import fsspec

from transforms.recipe.limits import DEFAULT_STAGE_TIMEOUT
from transforms.errors import TokenmillError

FAST = "fast"
DATATROVE = "datatrove"
ENGINES = (FAST, DATATROVE)

_PAIRS = "pairs"  # a list of [n, fraction] pairs (Gopher n-gram thresholds)
_STRINGS = "strings"  # a list of strings
_INT = "int"  # an integer whose default is None


@dataclass(frozen=True)
class StageSpec:
    """A filter stage tokenmill knows: its datatrove class and its parameters with their defaults."""

    name: str
    datatrove_class: str
    params: dict[str, Any]
    kinds: dict[str, str] = field(default_factory=dict)  # parameters whose values are lists: _PAIRS or _STRINGS
    doc: str = ""
    own_params: tuple[str, ...] = ()  # tokenmill's parameters beside datatrove's (not passed to its class)


# Defaults are datatrove's own (checked against its constructors by the tests).
STAGES: dict[str, StageSpec] = {
    s.name: s
    for s in (
        StageSpec(
            "gopher_repetition",
            "datatrove.pipeline.filters.GopherRepetitionFilter",
            {
                "dup_line_frac": 0.3,
                "dup_para_frac": 0.3,
                "dup_line_char_frac": 0.2,
                "dup_para_char_frac": 0.2,
                "top_n_grams": ((2, 0.2), (3, 0.18), (4, 0.16)),
                "dup_n_grams": ((5, 0.15), (6, 0.14), (7, 0.13), (8, 0.12), (9, 0.11), (10, 0.1)),
                "language": "eng",
            },
            {"top_n_grams": _PAIRS, "dup_n_grams": _PAIRS},
            "duplicated lines, paragraphs and n-grams (Gopher, Rae et al. 2021)",
        ),
        StageSpec(
            "gopher_quality",
            "datatrove.pipeline.filters.GopherQualityFilter",
            {
                "min_doc_words": 50,
                "max_doc_words": 100000,
                "min_avg_word_length": 3,
                "max_avg_word_length": 10,
                "max_symbol_word_ratio": 0.1,
                "max_bullet_lines_ratio": 0.9,
                "max_ellipsis_lines_ratio": 0.3,
                "max_non_alpha_words_ratio": 0.8,
                "min_stop_words": 2,
                "stop_words": None,
                "language": "eng",
            },
            {"stop_words": _STRINGS},
            "word counts and lengths, symbols, bullets, ellipses, stop words (Gopher)",
        ),
        StageSpec(
            "c4_quality",
            "datatrove.pipeline.filters.C4QualityFilter",
            {
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
            },
            {},
            "C4 line rules (removes lines: it modifies text) and document rules (Raffel et al. 2020)",
        ),
        StageSpec(
            "fineweb_quality",
            "datatrove.pipeline.filters.FineWebQualityFilter",
            {
                "line_punct_thr": 0.12,
                "line_punct_exclude_zero": False,
                "stop_chars": None,
                "short_line_thr": 0.67,
                "short_line_length": 30,
                "char_duplicates_ratio": 0.01,
                "new_line_ratio": 0.3,
                "language": "eng",
            },
            {"stop_chars": _STRINGS},
            "line punctuation, short lines, duplicated lines (FineWeb, Penedo et al. 2024)",
        ),
        StageSpec(
            "language",
            "",  # datatrove's LanguageFilter downloads a fastText model: tokenmill's offline identifier instead
            {"languages": None, "min_score": 0.65},
            {"languages": _STRINGS},
            "keep documents in these languages (ISO 639-1 codes) identified with at least min_score",
        ),
        StageSpec(
            "url_filter",
            "datatrove.pipeline.filters.URLFilter",
            {
                "soft_word_threshold": 2,
                "extra_domains": None,
                "extra_urls": None,
                "banned_words": None,
                "banned_subwords": None,
                "soft_banned_words": None,
                "use_integrated_lists": True,
                "url_field": "url",
            },
            {k: _STRINGS for k in ("extra_domains", "extra_urls", "banned_words", "banned_subwords",
                                    "soft_banned_words")},
            "block listed domains, URLs and words in the document's URL (its input field url_field; datatrove's "
            "lists ship inside datatrove)",
            own_params=("url_field",),
        ),
        StageSpec(
            "c4_badwords",
            "datatrove.pipeline.filters.C4BadWordsFilter",
            {
                "keep_fraction": 0.0,
                "fail_on_missing_language": True,
                "seed": None,
                "default_language": "en",
                "lists_dir": None,
            },
            {"seed": _INT},
            "C4's bad-words rule with the LDNOOBW lists from lists_dir (one file per language code, e.g. en, de: "
            "datatrove downloads them, tokenmill reads local copies)",
            own_params=("lists_dir",),
        ),
        StageSpec(
            "regex",
            "datatrove.pipeline.filters.RegexFilter",
            {"regex_exp": None},
            {},
            "drop documents matching a regular expression",
        ),
    )
}

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


class RecipeError(TokenmillError, ValueError):
    """A recipe that cannot be used, with what would be valid."""


@dataclass(frozen=True)
class Stage:
    """One configured filter: its name and every parameter (defaults filled in)."""

    name: str
    params: dict[str, Any]

    def datatrove_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for the datatrove filter class (without tokenmill's own parameters)."""
        own = STAGES[self.name].own_params
        return {k: v for k, v in self.params.items() if k not in own}


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
    selection: Any = None  # transforms.select.scoring.Selection: scorers, ensemble, select, upsample (None: no scoring)
    stage_timeout: float = DEFAULT_STAGE_TIMEOUT  # seconds a stage may spend on one document (then <stage>/timeout)

    @property
    def scores(self) -> bool:
        """Whether documents are scored."""
        return self.selection is not None and bool(self.selection.scorers)

    def identity(self) -> dict[str, Any]:
        """What of the recipe decides a job's result (not its name, nor the engine: both make the same decisions)."""
        return {k: v for k, v in self.to_dict().items() if k not in ("engine", "name")}

    def to_dict(self) -> dict[str, Any]:
        """The recipe as recorded in a manifest (every parameter explicit)."""
        dedup: dict[str, Any] = {"exact": self.dedup.exact}
        if self.dedup.minhash is not None:
            mh = self.dedup.minhash
            dedup["minhash"] = {"ngram": mh.ngram, "bands": mh.bands, "rows": mh.rows, "seed": mh.seed,
                                "threshold": round(mh.threshold, 4)}
        out = {
            "name": self.name,
            "engine": self.engine,
            "filters": [{"name": s.name, "params": _jsonable(s.params)} for s in self.filters],
            "dedup": dedup,
        }
        if self.selection is not None:
            out.update(self.selection.to_dict())
        if self.stage_timeout != DEFAULT_STAGE_TIMEOUT:  # the default is left out: earlier results keep their identity
            out["stage_timeout"] = self.stage_timeout
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
        from transforms.select.scoring import parse_selection

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
    given = item.get("params") or {}
    if not isinstance(given, dict):
        raise RecipeError(f"{where} ({spec.name}): 'params' must be a mapping")
    unknown = sorted(set(given) - set(spec.params))
    if unknown:
        raise RecipeError(
            f"{where} ({spec.name}): unknown parameter(s) {', '.join(map(repr, unknown))}; "
            f"valid: {', '.join(sorted(spec.params))}"
        )
    params = dict(spec.params)
    for key, value in given.items():
        params[key] = _value(value, spec.params[key], spec.kinds.get(key), f"{where} ({spec.name}.{key})")
    if spec.name == "c4_badwords" and not isinstance(params["lists_dir"], str):
        raise RecipeError(f"{where} (c4_badwords): 'lists_dir' is required: a local or fsspec directory holding the "
                          "LDNOOBW word lists named by language code (en, de, ...); nothing is downloaded")
    if spec.name == "regex" and not isinstance(params["regex_exp"], str):
        raise RecipeError(f"{where} (regex): 'regex_exp' (a regular expression) is required")
    if spec.name == "regex":
        import re

        try:
            re.compile(params["regex_exp"])
        except re.error as exc:
            raise RecipeError(f"{where} (regex): 'regex_exp' is not a valid regular expression ({exc})") from exc
    return Stage(spec.name, params)


def _value(value: Any, default: Any, kind: str | None, where: str) -> Any:
    """Check a parameter value against its default's type (lists by kind); ints are accepted for floats."""
    if value is None:
        return None
    if kind == _PAIRS:
        ok = isinstance(value, (list, tuple)) and all(
            isinstance(p, (list, tuple)) and len(p) == 2 and isinstance(p[0], int) and _is_number(p[1])
            for p in value
        )
        if not ok:
            raise RecipeError(f"{where}: expected a list of [n, fraction] pairs, got {value!r}")
        return tuple((int(n), float(f)) for n, f in value)
    if kind == _INT:
        if isinstance(value, bool) or not isinstance(value, int):
            raise RecipeError(f"{where}: expected an integer, got {value!r}")
        return value
    if kind == _STRINGS:
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
        if not _is_number(value):
            raise RecipeError(f"{where}: expected a number, got {value!r}")
        return float(value)
    raise RecipeError(f"{where}: unsupported value {value!r}")  # pragma: no cover - every default is covered above


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


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
        if not _is_number(t) or not 0 < t < 1:
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
