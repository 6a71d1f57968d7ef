"""Stages that read input fields: url_filter (datatrove's lists, offline) and c4_badwords (local word lists); the
input fields a user keeps land in the documents' meta."""

from __future__ import annotations

import json

import pytest

from pipelines.filter import FilterConfig, run
from schemas import manifest as m
from schemas.documents import iter_documents
from tests.conftest import write_jsonl
from transforms.filter.chain import DatatroveEngine, run_chain
from transforms.recipe.errors import RecipeError
from transforms.recipe.recipes import parse_recipe

PAGE = "\n".join(f"This is line {i} of a perfectly ordinary page about gardening and tomatoes." for i in range(8))


def test_url_filter_uses_datatroves_lists_and_needs_a_url():
    recipe = parse_recipe({"filters": [{"name": "url_filter", "params": {"extra_domains": ["blocked-site.com"]}}]},
                          "urls")
    metas = [{"url": "https://www.gardening.org/tomatoes"}, {"url": "https://sub.blocked-site.com/page"},
             {"url": "https://pornhub.com/x"}, {}, {"url": "https://example.org/xxx-videos"}]
    got = [(d.keep, d.reason) for d in run_chain(DatatroveEngine(recipe).stages, [PAGE] * 5, metas)]
    assert got[0] == (True, None)
    assert got[1] == (False, "domain") and got[2][0] is False and got[3] == (False, "missing_url")
    assert got[4][0] is False  # a banned word in the URL


def test_c4_badwords_reads_local_lists_by_language(tmp_path):
    (tmp_path / "en").write_text("badword\nworse thing\n")
    (tmp_path / "de").write_text("schlimm\n")
    stage = {"name": "c4_badwords", "params": {"lists_dir": str(tmp_path), "fail_on_missing_language": False}}
    recipe = parse_recipe({"filters": [{"name": "language", "params": {"min_score": 0.0}}, stage]}, "bad")
    texts = ["This page has a badword in it, sadly, and more English words follow here.",
             "Nothing wrong on this page at all: plain English words only, about gardens.",
             "Das ist schlimm, sagte der Mann in der Stadt, und die Leute hörten ihm zu.",
             "Dieser Text über Gärten ist ganz harmlos und enthält kein böses Wort."]
    for engine in ("fast", "datatrove"):
        from transforms.filter.chain import make_engine

        r = parse_recipe({**recipe.to_dict(), "engine": engine, "name": "bad"}, "bad")
        got = [(d.keep, d.reason) for d in make_engine(r).apply(texts, ["a", "b", "c", "d"])]
        assert got == [(False, "document_removed_with_badwords"), (True, None),
                       (False, "document_removed_with_badwords"), (True, None)], engine
    with pytest.raises(RecipeError, match="lists_dir"):
        parse_recipe({"filters": ["c4_badwords"]}, "x")


def test_c4_badwords_keep_fraction_is_deterministic(tmp_path):
    (tmp_path / "en").write_text("badword\n")
    params = {"lists_dir": str(tmp_path), "keep_fraction": 0.5, "seed": 3}
    recipe = parse_recipe({"filters": [{"name": "c4_badwords", "params": params}]}, "half")
    texts = [f"Page {i} mentions a badword once." for i in range(200)]
    first = [d.keep for d in DatatroveEngine(recipe).apply(texts, [""] * 200)]
    assert first == [d.keep for d in DatatroveEngine(recipe).apply(texts[::-1], [""] * 200)][::-1]
    assert 60 < sum(first) < 140


def test_meta_fields_reach_the_documents_and_feed_the_url_filter(tmp_path):
    records = [{"id": "a", "text": PAGE, "url": "https://garden.example/a", "lang_hint": "en"},
               {"id": "b", "text": PAGE + " b", "url": "https://pornhub.com/b"},
               {"id": "c", "text": PAGE + " c"}]
    path = write_jsonl(tmp_path / "in.jsonl", records)
    recipe = tmp_path / "r.yaml"
    recipe.write_text("filters: [{name: url_filter, params: {use_integrated_lists: false, "
                      "extra_domains: [pornhub.com]}}]\n")
    manifest = run(FilterConfig(inputs=[path], output=str(tmp_path / "out"), recipe=str(recipe),
                                meta_fields=["lang_hint"]))
    docs = list(iter_documents(str(tmp_path / "out")))
    assert [(d["id"], d["meta"]) for d in docs] == [("a", {"lang_hint": "en", "url": "https://garden.example/a"})]
    c = manifest[m.K_COUNTS]
    assert c["docs_rejected"]["url_filter/missing_url"] == 1 and c["docs_written"] == 1
    rejected = [json.loads(x) for f in (tmp_path / "out" / "rejected").glob("*.jsonl") for x in f.open()]
    assert {r["id"] for r in rejected} == {"b", "c"}
