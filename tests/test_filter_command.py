"""``tokenmill filter``: the kept documents are datatrove's own decisions (run directly), with the text C4 leaves;
every input document is either kept or rejected with a reason; the recipe processes do not change a byte."""

from __future__ import annotations

import json

import pytest

from pipelines import cli
from pipelines.filter import FilterConfig, run
from schemas import manifest as m
from schemas.documents import iter_documents
from tests.conftest import write_jsonl
from tests.test_filtering import _datatrove_directly, varied_corpus  # noqa: F401  (a fixture)
from transforms.recipe.recipes import load_recipe

LANGUAGE_AND_FINEWEB = """\
filters:
  - {name: language, params: {languages: null, min_score: 0.0}}
  - {name: gopher_repetition}
  - {name: gopher_quality}
  - {name: c4_quality, params: {filter_no_terminal_punct: false}}
  - {name: fineweb_quality}
"""


@pytest.fixture(scope="module")
def corpus_file(varied_corpus, tmp_path_factory):  # noqa: F811
    d = tmp_path_factory.mktemp("filter-in")
    records = [{"id": f"doc{i}", "text": t} for i, t in enumerate(varied_corpus) if t]
    return write_jsonl(d / "in.jsonl", records + [b"{broken\n"]), records


@pytest.fixture(scope="module")
def filtered(corpus_file, tmp_path_factory):
    path, _ = corpus_file
    d = tmp_path_factory.mktemp("filter-out")
    recipe = d / "recipe.yaml"
    recipe.write_text(LANGUAGE_AND_FINEWEB)
    out = d / "out"
    code = cli.main(["filter", "-i", path, "-o", str(out), "--recipe", str(recipe), "--no-progress"])
    assert code == 0
    return out, json.loads((out / "manifest.json").read_text()), str(recipe)


def _rejected(out) -> list[dict]:
    return [json.loads(line) for f in sorted((out / "rejected").glob("*.jsonl")) for line in f.open()]


def test_kept_documents_are_datatroves_own_decisions_with_modified_text(filtered, corpus_file):
    out, manifest, _ = filtered
    _, records = corpus_file
    texts = [r["text"] for r in records]
    expected = _datatrove_directly(load_recipe("fineweb"), texts)  # datatrove's pipeline steps, not our wrapper
    docs = list(iter_documents(str(out)))
    assert {int(d["id"][3:]): d["text"] for d in docs} == {int(k): v for k, v in expected.items()}
    assert 0 < len(docs) < len(records)
    assert all(d["meta"]["lang"] and 0 <= d["meta"]["lang_score"] <= 1 for d in docs)
    assert manifest[m.K_FORMAT] == m.DOCUMENTS_FORMAT and m.K_SHARDS not in manifest
    assert manifest[m.K_DOCUMENTS][0]["rows"] == len(docs)


def test_every_document_is_kept_or_rejected_with_a_reason(filtered, corpus_file):
    out, manifest, _ = filtered
    _, records = corpus_file
    kept = {d["id"] for d in iter_documents(str(out))}
    rejected = _rejected(out)
    dropped = {r["id"] for r in rejected if r["stage"] == m.STAGE_FILTER}
    assert kept.isdisjoint(dropped) and kept | dropped == {r["id"] for r in records}
    c = manifest[m.K_COUNTS]
    assert c["records"] == len(records) + 1 == c["docs_written"] + sum(c["docs_rejected"].values())
    assert c["docs_rejected"][m.MALFORMED_JSON] == 1
    stages = {"gopher_repetition", "gopher_quality", "c4_quality", "fineweb_quality"}
    for r in rejected:
        if r["stage"] == m.STAGE_FILTER:
            assert r["detail"].split("/")[0] in stages and r["detail"].endswith("/" + r["reason"])
    assert c["docs_modified"].get("c4_quality", 0) >= 1


def test_recipe_processes_and_engine_change_no_byte(filtered, corpus_file, tmp_path):
    out, manifest, recipe = filtered
    path, _ = corpus_file
    for name, kwargs in (("pool", {"recipe_processes": 2}), ("datatrove", {"filter_engine": "datatrove"})):
        other = tmp_path / name
        got = run(FilterConfig(inputs=[path], output=str(other), recipe=recipe, **kwargs))
        assert got[m.K_COUNTS] == manifest[m.K_COUNTS]
        for sub in ("documents", "rejected"):
            assert {p.name: p.read_bytes() for p in (other / sub).iterdir()} == \
                {p.name: p.read_bytes() for p in (out / sub).iterdir()}


def test_filter_needs_a_recipe_and_reports_recipe_errors(corpus_file, tmp_path, capsys):
    path, _ = corpus_file
    with pytest.raises(SystemExit) as exc:
        cli.main(["filter", "-i", path, "-o", str(tmp_path / "a")])
    assert exc.value.code == 2 and "--recipe" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text("filters: [{name: gopher_quality, params: {min_words: 3}}]\n")
    assert cli.main(["filter", "-i", path, "-o", str(tmp_path / "b"), "--recipe", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert "unknown parameter(s) 'min_words'" in err and "min_doc_words" in err and len(err.splitlines()) == 1


def test_emit_modified_keeps_the_original_text_of_changed_documents(corpus_file, tmp_path):
    path, records = corpus_file
    texts = {r["id"]: r["text"] for r in records}
    manifest = run(FilterConfig(inputs=[path], output=str(tmp_path / "out"), recipe="c4", emit_modified=True))
    kept = {d["id"]: d["text"] for d in iter_documents(str(tmp_path / "out"))}
    modified = [json.loads(x) for f in sorted((tmp_path / "out" / "modified").glob("*.jsonl")) for x in f.open()]
    assert len(modified) == manifest[m.K_COUNTS]["docs_modified"]["c4_quality"] >= 1
    assert sum(f["records"] for f in manifest[m.K_MODIFIED]) == len(modified)
    for rec in modified:
        assert rec["stages"] == ["c4_quality"] and rec["original_text"] == texts[rec["id"]]
        assert kept[rec["id"]] != rec["original_text"] and rec["line"] == int(rec["id"][3:]) + 1
    unchanged = set(kept) - {rec["id"] for rec in modified}
    assert all(kept[i] == texts[i] for i in unchanged)
