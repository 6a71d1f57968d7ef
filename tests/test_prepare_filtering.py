"""prepare with a recipe: filtered documents land in rejected/ with stage and reason, modified text is what gets
tokenized, and the counts still add up."""

from __future__ import annotations

import json
from pathlib import Path
from collections import Counter

import pytest

from schemas import manifest as m
from tests.conftest import documents_from_shards, eos_of, hf_ids, prepare, shard_bytes, write_jsonl
from transforms.filter.chain import DatatroveEngine
from transforms.recipe.recipes import load_recipe


@pytest.fixture(scope="module")
def filter_corpus(ml_texts):
    lines = [f"This is sentence number {i} of a plain English page, and it ends properly." for i in range(12)]
    docs = ["\n\n".join(ml_texts[i:i + 25]) for i in range(100, 700, 25)] + list(ml_texts[:30])
    docs += ["\n".join(lines), "\n".join(lines[:3] + ["Read our privacy policy here."] + lines[3:])]
    return [{"id": f"doc{i}", "text": t} for i, t in enumerate(docs)]


@pytest.fixture(scope="module")
def filtered_run(tmp_path_factory, filter_corpus, tokenizer_path):
    d = tmp_path_factory.mktemp("filter")
    path = write_jsonl(d / "in.jsonl", filter_corpus + [b"{not json\n"])
    return path, prepare(path, d / "out", tokenizer_path, recipe="c4", filter_engine="datatrove"), d / "out"


def test_kept_documents_are_the_engines_with_modified_text(filtered_run, filter_corpus, tokenizer_path,
                                                           hf_tokenizer):
    _, manifest, out = filtered_run
    decisions = DatatroveEngine(load_recipe("c4", "datatrove")).apply(
        [r["text"] for r in filter_corpus], [r["id"] for r in filter_corpus])
    kept = [d.text for d in decisions if d.keep]
    assert 0 < len(kept) < len(filter_corpus)
    got = Counter(map(tuple, documents_from_shards(out, eos_of(tokenizer_path))))
    assert got == Counter(map(tuple, hf_ids(hf_tokenizer, kept)))
    assert manifest[m.K_COUNTS]["docs_modified"] == {"c4_quality": sum(bool(d.modified_by) for d in decisions)}
    assert manifest[m.K_COUNTS]["docs_modified"]["c4_quality"] >= 1


def test_every_dropped_document_is_in_rejected_with_stage_and_reason(filtered_run, filter_corpus):
    path, manifest, out = filtered_run
    c = manifest[m.K_COUNTS]
    rejected = [json.loads(line) for f in sorted((out / "rejected").glob("*.jsonl")) for line in f.open()]
    filtered = [r for r in rejected if r["stage"] == m.STAGE_FILTER]
    assert c["records"] == len(filter_corpus) + 1 == c["docs_written"] + sum(c["docs_rejected"].values())
    assert c["docs_rejected"][m.MALFORMED_JSON] == 1
    by_key = Counter(r["detail"] for r in filtered)
    assert {k: v for k, v in c["docs_rejected"].items() if k.startswith("c4_quality/")} == dict(by_key)
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    for r in filtered:  # the raw input line, as the README promises (not the text the filters saw)
        assert r["source"] == path and lines[r["line"] - 1].startswith(r["record"])
        assert json.loads(lines[r["line"] - 1])["id"] == r["id"]
        assert r["line"] == int(r["id"][3:]) + 1 and r["reason"] == r["detail"].split("/", 1)[1]
    assert manifest[m.K_RECIPE]["name"] == "c4" and manifest[m.K_RECIPE]["engine"] == "datatrove"


def test_fast_engine_gives_byte_identical_shards_and_rejects(filtered_run, tokenizer_path, tmp_path):
    path, manifest, out = filtered_run
    fast = prepare(path, tmp_path / "fast", tokenizer_path, recipe="c4")  # the recipe's default engine: fast
    assert fast[m.K_RECIPE]["engine"] == "fast"
    assert shard_bytes(tmp_path / "fast") == shard_bytes(out)
    assert fast[m.K_COUNTS] == manifest[m.K_COUNTS]
    assert fast[m.K_FINGERPRINT] == manifest[m.K_FINGERPRINT]  # the engine does not change the result
    for a, b in zip(sorted((tmp_path / "fast" / "rejected").glob("*")), sorted((out / "rejected").glob("*"))):
        assert a.read_bytes() == b.read_bytes()


def test_command_line_recipe_and_its_errors(filtered_run, tokenizer_path, tmp_path, capsys):
    from pipelines import cli

    path, manifest, _ = filtered_run
    out = tmp_path / "cli"
    assert cli.main(["prepare", "-i", path, "-t", tokenizer_path, "--seq-len", "64", "-o", str(out),
                     "--recipe", "c4", "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert "c4_quality/" in err and json.loads((out / "manifest.json").read_text())[m.K_COUNTS] == manifest[m.K_COUNTS]
    bad = tmp_path / "bad.yaml"
    bad.write_text("filters: [{name: gopher_qualty}]\n")
    for recipe, words in ((str(bad), "unknown stage 'gopher_qualty'"), ("finweb", "neither a preset")):
        assert cli.main(["prepare", "-i", path, "-t", tokenizer_path, "--seq-len", "64", "-o", str(tmp_path / "x"),
                         "--recipe", recipe]) == 2
        err = capsys.readouterr().err
        assert words in err and len(err.strip().splitlines()) == 1, err
