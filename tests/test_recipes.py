"""Recipes: presets, YAML files, and clear errors for every mistake; defaults are datatrove's own."""

from __future__ import annotations

import importlib
import inspect
import json

import pytest

from transforms.filter.registry import STAGES
from transforms.recipe.errors import RecipeError
from transforms.recipe.recipes import DATATROVE, FAST, PRESETS, MinHash, load_recipe, parse_recipe


@pytest.mark.parametrize("name", sorted(n for n, spec in STAGES.items() if spec.datatrove_class))
def test_stage_parameters_and_defaults_are_datatroves(name):
    spec = STAGES[name]
    module, cls = spec.datatrove_class.rsplit(".", 1)
    signature = inspect.signature(getattr(importlib.import_module(module), cls).__init__)
    theirs = {k: p.default for k, p in signature.parameters.items()
              if k not in ("self", "exclusion_writer") and p.kind is not p.VAR_KEYWORD}  # **kwargs: not a parameter
    assert set(spec.params) - set(spec.own_params) == set(theirs)
    for key, default in theirs.items():
        ours = spec.params[key]
        if default is inspect.Parameter.empty:
            assert ours is None, key  # required there, required here
        else:
            assert ours == default, key


def test_presets_load_and_fineweb_has_datatroves_order():
    for name in PRESETS:
        assert load_recipe(name).filters
    fineweb = load_recipe("fineweb")
    assert [s.name for s in fineweb.filters] == ["gopher_repetition", "gopher_quality", "c4_quality", "fineweb_quality"]
    assert fineweb.filters[2].params["filter_no_terminal_punct"] is False
    assert fineweb.engine == FAST and load_recipe("fineweb", engine=DATATROVE).engine == DATATROVE
    json.dumps(fineweb.to_dict())  # recorded in manifests


def test_yaml_file_with_every_kind_of_setting(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text(
        "filters:\n"
        "  - {name: gopher_repetition, params: {top_n_grams: [[2, 0.25], [3, 0.2]]}}\n"
        "  - {name: gopher_quality, params: {min_doc_words: 20, max_symbol_word_ratio: 1, stop_words: [the, und]}}\n"
        "  - c4_quality\n"
        "  - {name: regex, params: {regex_exp: 'lorem\\s+ipsum'}}\n"
        "dedup: {exact: true, minhash: {ngram: 5, bands: 14, rows: 8, threshold: 0.8}}\n"
        "engine: datatrove\n"
    )
    r = load_recipe(str(path))
    assert r.name == "r.yaml" and r.engine == DATATROVE
    assert r.filters[0].params["top_n_grams"] == ((2, 0.25), (3, 0.2))
    assert r.filters[1].params["min_doc_words"] == 20 and r.filters[1].params["max_symbol_word_ratio"] == 1.0
    assert r.filters[1].params["stop_words"] == ("the", "und")
    assert r.dedup.exact and r.dedup.minhash == MinHash(5, 14, 8, 1)
    assert abs(r.dedup.minhash.threshold - 0.719) < 0.01


@pytest.mark.parametrize("config, words", [
    ({"filters": [{"name": "gopher_qualty"}]}, ["unknown stage 'gopher_qualty'", "gopher_quality", "c4_quality"]),
    ({"filters": [{"name": "gopher_quality", "params": {"min_words": 3}}]},
     ["unknown parameter(s) 'min_words'", "min_doc_words"]),
    ({"filters": [{"name": "gopher_quality", "params": {"min_doc_words": "many"}}]}, ["expected an integer"]),
    ({"filters": [{"name": "c4_quality", "params": {"filter_policy": "yes"}}]}, ["expected true or false"]),
    ({"filters": [{"name": "gopher_repetition", "params": {"top_n_grams": [2, 0.2]}}]}, ["[n, fraction] pairs"]),
    ({"filters": [{"name": "regex"}]}, ["'regex_exp'", "required"]),
    ({"filters": [{"name": "regex", "params": {"regex_exp": "(unclosed"}}]}, ["not a valid regular expression"]),
    ({"filters": [{"name": "c4_quality", "param": {}}]}, ["unknown key(s) 'param'", "name, params"]),
    ({"filter": []}, ["unknown key(s) 'filter'", "filters, dedup, engine"]),
    ({"engine": "turbo"}, ["unknown engine 'turbo'", "fast, datatrove"]),
    ({"dedup": {"minhash": {"bands": 0}}}, ["dedup.minhash.bands must be a positive integer"]),
    ({"dedup": {"minhash": {"bands": 20, "rows": 2, "threshold": 0.9}}}, ["does not match bands=20, rows=2"]),
    ({"dedup": {"fuzzy": True}}, ["unknown key(s) 'fuzzy'", "exact, minhash"]),
    (["gopher_quality"], ["expected a mapping"]),
])
def test_mistakes_are_errors_naming_the_valid_choices(config, words):
    with pytest.raises(RecipeError) as exc:
        parse_recipe(config, "mine.yaml")
    for word in words:
        assert word in str(exc.value), str(exc.value)


def test_recipe_files_are_data_only(tmp_path):
    marker = tmp_path / "ran"
    path = tmp_path / "evil.yaml"
    path.write_text(f"filters: !!python/object/apply:os.system ['touch {marker}']\n")
    with pytest.raises(RecipeError, match="not valid YAML"):
        load_recipe(str(path))
    assert not marker.exists()


def test_missing_recipe_names_the_presets(tmp_path):
    with pytest.raises(RecipeError, match="neither a preset .*fineweb.* nor an existing file"):
        load_recipe(str(tmp_path / "nope.yaml"))
    with pytest.raises(RecipeError, match="unknown engine"):
        load_recipe("fineweb", engine="gpu")
