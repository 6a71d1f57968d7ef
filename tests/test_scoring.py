"""Selection scoring: recipe sections are validated with clear errors; scores land in meta; a min_score selection
drops documents to rejected/ with their scores, and every input document is accounted for."""

from __future__ import annotations

import json

import pytest

from pipelines import cli
from schemas import manifest as m
from schemas.documents import iter_documents
from tests.conftest import write_jsonl
from transforms.recipes import RecipeError, parse_recipe


def _recipe(**sections):
    return parse_recipe({"filters": [], **sections}, "r")


@pytest.mark.parametrize("sections, message", [
    ({"scorers": [{"name": "nope"}]}, "unknown scorer 'nope'; valid scorers: dsir, fasttext, length"),
    ({"scorers": [{"name": "length", "params": {"units": "x"}}]}, "unknown parameter(s) 'units'; valid: unit"),
    ({"scorers": [{"name": "length", "params": {"unit": "pages"}}]}, "'pages' is not one of bytes, chars, words"),
    ({"scorers": [{"name": "fasttext"}]}, "'model' is required"),
    ({"scorers": ["length", "length"]}, "scorer key(s) 'length' used twice"),
    ({"scorers": ["length"], "select": {"tokens": 10, "bytes": 5}}, "select needs exactly one of"),
    ({"scorers": ["length"], "select": {"tokens": 1.5}}, "select.tokens must be a non-negative whole number"),
    ({"scorers": ["length"], "select": {"top_fraction": 2}}, "select.top_fraction must be in (0, 1]"),
    ({"scorers": ["length"], "select": {"min_bucket": 3}}, "selecting on buckets needs an 'ensemble' section"),
    ({"scorers": ["length", {"name": "length", "key": "l2"}], "select": {"min_score": 3}},
     "select.score must name the score to select on (length, l2)"),
    ({"scorers": ["length"], "select": {"min_score": 1, "score": "x"}}, "select.score 'x' is not a scorer key"),
    ({"select": {"min_score": 1}}, "'select' needs at least one scorer"),
    ({"ensemble": {"buckets": 20}}, "'ensemble' needs at least one scorer"),
    ({"scorers": ["length"], "ensemble": {"buckets": 1}}, "ensemble.buckets must be an integer from 2 to 1000"),
    ({"scorers": ["length"], "ensemble": {"weight": "lines"}}, "ensemble.weight 'lines' is not one of"),
    ({"scorers": ["length"], "ensemble": {"combine": "min"}}, "ensemble.combine 'min' is not one of max, mean"),
    ({"scorers": ["length"], "ensemble": {"sample_fraction": 0}}, "sample_fraction must be a number in (0, 1]"),
    ({"scorers": ["length"], "ensemble": {}, "upsample": {20: 2}}, "upsample bucket 20 is not a bucket from 0 to 19"),
    ({"scorers": ["length"], "ensemble": {}, "upsample": {3: 0}}, "upsample factor of bucket 3 must be an integer"),
    ({"scorers": ["length"], "upsample": {3: 2}}, "'upsample' repeats buckets: it needs an 'ensemble' section"),
    ({"scorer": ["length"]}, "unknown key(s) 'scorer'"),
])
def test_bad_sections_are_clear_errors(sections, message):
    with pytest.raises(RecipeError) as err:
        _recipe(**sections)
    assert message in str(err.value)


def test_sections_are_recorded_with_every_default():
    recipe = _recipe(scorers=["length", {"name": "length", "key": "words", "params": {"unit": "words"}}],
                     ensemble={"buckets": 10, "sample_fraction": 0.5}, select={"tokens": 1_000_000},
                     upsample={9: 3, "8": 2})
    d = recipe.to_dict()
    assert d["scorers"] == [{"key": "length", "name": "length", "params": {"unit": "bytes"}},
                            {"key": "words", "name": "length", "params": {"unit": "words"}}]
    assert d["ensemble"] == {"method": "percentile_buckets", "buckets": 10, "sample_fraction": 0.5,
                             "weight": "bytes", "combine": "max", "seed": 0}
    assert d["select"] == {"tokens": 1_000_000, "score": "bucket"} and d["upsample"] == {"8": 2, "9": 3}
    assert recipe.selection.global_pass
    assert not _recipe(scorers=["length"], select={"min_score": 3}).selection.global_pass
    assert recipe.identity() != _recipe(scorers=["length"]).identity()  # scoring changes a job's result


MIN_LENGTH = """\
scorers:
  - {name: length}
  - {name: length, key: words, params: {unit: words}}
select: {min_score: 200, score: length}
"""


def test_min_score_selection_keeps_scores_and_accounts_for_every_document(tmp_path, ml_texts):
    texts = [t for t in ml_texts[:400] if t.strip()]
    path = write_jsonl(tmp_path / "in.jsonl", [{"id": f"d{i}", "text": t} for i, t in enumerate(texts)])
    recipe = tmp_path / "r.yaml"
    recipe.write_text(MIN_LENGTH)
    out = tmp_path / "out"
    assert cli.main(["filter", "-i", path, "-o", str(out), "--recipe", str(recipe), "--no-progress"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    docs = list(iter_documents(str(out)))
    rejected = [json.loads(line) for f in sorted((out / "rejected").glob("*.jsonl")) for line in f.open()]
    by_id = {f"d{i}": t for i, t in enumerate(texts)}
    size = {k: len(t.encode()) for k, t in by_id.items()}
    assert {d["id"] for d in docs} == {k for k, s in size.items() if s >= 200}
    assert all(d["meta"]["scores"] == {"length": size[d["id"]], "words": len(by_id[d["id"]].split())} for d in docs)
    assert {r["id"] for r in rejected} == {k for k, s in size.items() if s < 200}
    assert all(r["stage"] == m.STAGE_SELECT and r["reason"] == m.BELOW_SELECTION_THRESHOLD
               and r["scores"]["length"] == size[r["id"]] for r in rejected)
    counts = manifest[m.K_COUNTS]
    assert counts["records"] == len(texts) == counts["docs_written"] + sum(counts["docs_rejected"].values())
    assert counts["docs_rejected"] == {f"select/{m.BELOW_SELECTION_THRESHOLD}": len(rejected)}
    assert manifest[m.K_RECIPE]["select"] == {"min_score": 200, "score": "length"}
