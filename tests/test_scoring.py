"""Selection scoring: recipe sections are validated with clear errors; scores land in meta; a min_score selection
drops documents to rejected/ with their scores, and every input document is accounted for."""

from __future__ import annotations

import json

import pytest

from pipelines import cli
from schemas import manifest as m
from schemas.documents import iter_documents
from tests.conftest import write_jsonl
from transforms.recipe.errors import RecipeError
from transforms.recipe.recipes import parse_recipe


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
                             "weight": "bytes", "combine": "max", "seed": 0, "partition": False}
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


ENSEMBLE_BUDGET = """\
filters:
  - {name: language, params: {languages: null, min_score: 0.0}}
scorers:
  - {name: length, key: chars, params: {unit: chars}}
  - {name: length, key: words, params: {unit: words}}
ensemble: {buckets: 5, weight: bytes, combine: mean}
select: {bytes: BUDGET}
dedup: {exact: true}
"""


def test_ensemble_buckets_and_byte_budget_end_to_end(tmp_path, ml_texts):
    import numpy as np

    texts = ["\n".join(ml_texts[i:i + 1 + i % 13]) for i in range(0, 2400, 4)]
    texts += texts[:40]  # exact duplicates: never candidates, never counted in the budget
    records = [{"id": f"d{i}", "text": t} for i, t in enumerate(texts)]
    path = write_jsonl(tmp_path / "in.jsonl", records)
    budget = sum(len(t.encode()) for t in texts[:-40]) * 2 // 5
    recipe = tmp_path / "r.yaml"
    recipe.write_text(ENSEMBLE_BUDGET.replace("BUDGET", str(budget)))
    out = tmp_path / "out"
    assert cli.main(["filter", "-i", path, "-o", str(out), "--recipe", str(recipe), "--no-progress"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    docs = list(iter_documents(str(out)))
    rejected = [json.loads(line) for f in sorted((out / "rejected").glob("*.jsonl")) for line in f.open()]
    size = {r["id"]: len(r["text"].encode()) for r in records}
    counts = manifest[m.K_COUNTS]
    assert counts["records"] == len(records) == counts["docs_written"] + sum(counts["docs_rejected"].values())
    selected = [r for r in rejected if r["stage"] == m.STAGE_SELECT]
    assert selected and all(r["reason"] == m.BELOW_SELECTION_THRESHOLD and "bucket" in r["scores"] for r in selected)
    assert 0.95 * budget < sum(size[d["id"]] for d in docs) <= budget
    # candidates: kept + dropped by selection; cut-points are their byte-weighted percentiles per scorer
    candidates = [(d["id"], d["meta"]["scores"], d["meta"]["bucket"]) for d in docs]
    candidates += [(r["id"], r["scores"], r["scores"]["bucket"]) for r in selected]
    report = manifest[m.K_SELECTION]
    for key in ("chars", "words"):
        values = np.array([s[key] for _, s, _ in candidates])
        weights = np.array([size[i] for i, _, _ in candidates])
        expected = np.quantile(values, [0.2, 0.4, 0.6, 0.8], weights=weights, method="inverted_cdf")
        assert report["cut_points"][key] == expected.tolist()
    # exact: every kept document's bucket >= every dropped one's, and the budget is filled to the next document
    assert min(b for _, _, b in candidates[:len(docs)]) >= max(b for _, _, b in candidates[len(docs):])
    assert report["selected"]["bytes"] == sum(size[d["id"]] for d in docs) and report["selection"]["budget"] == budget
    assert report["candidates"]["documents"] == len(candidates)
    assert sum(b["documents"] for b in report["buckets"].values()) == len(candidates)
    # the same run again: the same bytes
    again = tmp_path / "again"
    assert cli.main(["filter", "-i", path, "-o", str(again), "--recipe", str(recipe), "--no-progress"]) == 0
    first = sorted((out / "documents").glob("*.parquet"))
    assert [f.read_bytes() for f in first] == [f.read_bytes() for f in sorted((again / "documents").glob("*.parquet"))]


def test_token_budget_without_a_tokenizer_is_a_clear_error(tmp_path):
    path = write_jsonl(tmp_path / "in.jsonl", [{"id": "a", "text": "x"}])
    recipe = tmp_path / "r.yaml"
    recipe.write_text("scorers: [length]\nselect: {tokens: 100}\n")
    code = cli.main(["filter", "-i", path, "-o", str(tmp_path / "out"), "--recipe", str(recipe), "--no-progress"])
    assert code == 2 and not (tmp_path / "out" / "manifest.json").exists()


@pytest.fixture(scope="module")
def quality_model(tmp_path_factory):
    """A fastText classifier trained on stdlib docstring paragraphs (positive) vs stdlib code (negative)."""
    from transforms.read.demo_corpus import prose_and_code

    prose, code = prose_and_code(1200)
    d = tmp_path_factory.mktemp("quality")
    pos = write_jsonl(d / "pos.jsonl", [{"id": f"p{i}", "text": t} for i, t in enumerate(prose[:600])])
    neg = write_jsonl(d / "neg.jsonl", [{"id": f"n{i}", "text": t} for i, t in enumerate(code[:600])])
    model = d / "quality.bin"
    assert cli.main(["train-classifier", "--positive", pos, "--negative", neg, "--output", str(model),
                     "--bucket", "20000"]) == 0
    return str(model), prose[600:], code[600:]  # unseen documents of both kinds for the pipeline


def test_fasttext_scores_drive_a_token_budget_in_prepare(tmp_path, quality_model, tokenizer_path):
    import pyarrow.parquet as pq

    model, prose, code = quality_model
    texts = [t for pair in zip(prose, code) for t in pair]
    path = write_jsonl(tmp_path / "in.jsonl", [{"id": f"d{i}", "text": t} for i, t in enumerate(texts)])
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"scorers:\n  - {{name: fasttext, params: {{model: {model}, label: __label__hq}}}}\n"
                      "select: {tokens: 20000}\n")
    out = tmp_path / "out"
    code_ = cli.main(["prepare", "-i", path, "-o", str(out), "--tokenizer", tokenizer_path, "--seq-len", "256",
                      "--recipe", str(recipe), "--emit-documents", "--no-progress"])
    assert code_ == 0
    manifest = json.loads((out / "manifest.json").read_text())
    report = manifest[m.K_SELECTION]
    counts = manifest[m.K_COUNTS]
    # pass 1 counted each candidate's tokens (with EOS) as pass 2 tokenizes them: the shards hold exactly those
    assert counts["tokens"] == report["selected"]["tokens"] <= 20000 < report["selected"]["tokens"] + 600
    shard_tokens = sum(pq.read_metadata(out / s["path"]).num_rows for s in manifest[m.K_SHARDS]) * 256
    assert shard_tokens == counts["tokens"] + counts["pad_tokens"]
    docs = list(iter_documents(str(out)))
    kept = {d["text"] for d in docs}
    prose_share = sum(t in kept for t in prose) / max(1, len(kept))
    assert prose_share > 0.9  # the classifier's positives are what the budget buys
    rejected = [json.loads(line) for f in sorted((out / "rejected").glob("*.jsonl")) for line in f.open()]
    worst_kept = min(d["meta"]["scores"]["fasttext"] for d in docs)
    assert all(r["scores"]["fasttext"] <= worst_kept for r in rejected)  # exact: nothing better was dropped
    assert counts["records"] == len(texts) == counts["docs_written"] + sum(counts["docs_rejected"].values())


def test_a_token_budget_tokenizes_each_document_once(tmp_path, ml_texts, tokenizer_path, monkeypatch):
    """Pass 1 counts tokens for the budget and stages the ids; pass 2 packs them without tokenizing again. The
    shards are the bytes a run that tokenizes twice writes."""
    import transforms.output.document_writer as document_writer
    from tests.conftest import shard_bytes
    from transforms.tokenize.tokenizer import GigatokenEncoder, HFEncoder

    texts = ["\n".join(ml_texts[i:i + 1 + i % 7]) for i in range(0, 900, 3)]
    path = write_jsonl(tmp_path / "in.jsonl", [{"id": f"d{i}", "text": t} for i, t in enumerate(texts)])
    recipe = tmp_path / "r.yaml"
    recipe.write_text("scorers: [length]\nselect: {tokens: 15000}\n")
    encoded = []
    for cls in (GigatokenEncoder, HFEncoder):
        original = cls.encode_batch
        monkeypatch.setattr(cls, "encode_batch", lambda self, batch, f=original: encoded.append(len(batch)) or f(
            self, batch))

    def run(name):
        encoded.clear()
        assert cli.main(["prepare", "-i", path, "-o", str(tmp_path / name), "--tokenizer", tokenizer_path,
                         "--seq-len", "128", "--recipe", str(recipe), "--no-progress",
                         "--tokenizer-backend", "hf"]) == 0
        return sum(encoded)

    once = run("once")
    read = document_writer.read_documents
    monkeypatch.setattr(document_writer, "read_documents", lambda url: ((b, None) for b, _ in read(url)))
    monkeypatch.setattr("transforms.stream.staged.read_documents", document_writer.read_documents)
    twice = run("twice")
    kept = json.loads((tmp_path / "once" / "manifest.json").read_text())[m.K_COUNTS]["docs_written"]
    assert once == len(texts) and twice == len(texts) + kept  # pass 2 re-encoded the kept documents only when told
    assert shard_bytes(tmp_path / "once") == shard_bytes(tmp_path / "twice")


def test_upsampled_buckets_are_packed_again_apart_and_counted(tmp_path, ml_texts, tokenizer_path, hf_tokenizer):
    import pyarrow.parquet as pq

    from schemas.shards import INPUT_IDS

    texts = ["\n".join(ml_texts[i:i + 1 + i % 9]) for i in range(0, 1200, 3)]
    path = write_jsonl(tmp_path / "in.jsonl", [{"id": f"d{i}", "text": t} for i, t in enumerate(texts)])
    recipe = tmp_path / "r.yaml"
    recipe.write_text("scorers: [length]\nensemble: {buckets: 4, weight: documents}\nupsample: {3: 3, 2: 2}\n")
    out = tmp_path / "out"
    assert cli.main(["prepare", "-i", path, "-o", str(out), "--tokenizer", tokenizer_path, "--seq-len", "128",
                     "--recipe", str(recipe), "--emit-documents", "--no-progress"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    report, counts = manifest[m.K_SELECTION], manifest[m.K_COUNTS]
    extra = report["upsampled"]
    assert set(extra) == {"2", "3"} and extra["3"]["factor"] == 3
    assert extra["3"]["documents"] == 2 * report["buckets"]["3"]["documents"]
    assert counts["tokens"] == report["selected"]["tokens"] + sum(e["tokens"] for e in extra.values())
    assert counts["docs_written"] == len(texts)  # documents are counted once; their copies are tokens
    docs = {d["id"]: d for d in iter_documents(str(out))}
    top = [d for d in docs.values() if d["meta"]["bucket"] == 3]
    assert top and all(d["meta"]["upsample"] == 3 for d in top)
    assert all("upsample" not in d["meta"] for d in docs.values() if d["meta"]["bucket"] < 2)
    stream = [t for s in manifest[m.K_SHARDS] for row in pq.read_table(out / s["path"])[INPUT_IDS].to_pylist()
              for t in row]
    eos = hf_tokenizer.token_to_id("<|endoftext|>")
    doc = max(top, key=lambda d: len(d["text"]))
    ids = hf_tokenizer.encode(doc["text"], add_special_tokens=False).ids + [eos]
    found = [i for i in range(len(stream) - len(ids) + 1) if stream[i:i + len(ids)] == ids]
    assert len(found) == 3 and min(b - a for a, b in zip(found, found[1:])) > 128  # three copies, in different rows


def test_dsir_scores_favour_the_target_and_match_a_direct_fit(tmp_path, ml_texts, code_texts):
    import numpy as np

    from transforms.select.dsir import DsirFeatures, dsir_weights

    prose = ["\n".join(ml_texts[i:i + 6]) for i in range(0, 1200, 6)]
    code = [t for t in code_texts[:200] if t.strip()]
    raw = [t for pair in zip(prose, code) for t in pair]
    target = ["\n".join(ml_texts[i:i + 6]) for i in range(1200, 1800, 6)]  # more prose of the same kind
    path = write_jsonl(tmp_path / "raw.jsonl", [{"id": f"r{i}", "text": t} for i, t in enumerate(raw)])
    write_jsonl(tmp_path / "target.jsonl", [{"id": f"t{i}", "text": t} for i, t in enumerate(target)])
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"scorers:\n  - {{name: dsir, params: {{target: '{tmp_path}/target*.jsonl', buckets: 4096}}}}\n"
                      "select: {top_fraction: 0.5}\n")
    out = tmp_path / "out"
    for processes in ("1", "2"):
        out = tmp_path / f"out{processes}"
        assert cli.main(["filter", "-i", path, "-o", str(out), "--recipe", str(recipe), "--no-progress",
                         "--recipe-processes", processes]) == 0
    features = DsirFeatures(4096)
    weights = dsir_weights(features.counts(target), features.counts(raw))
    docs = list(iter_documents(str(out)))
    expected = {f"r{i}": float(weights[features.ids(t)].sum()) for i, t in enumerate(raw)}
    assert all(d["meta"]["scores"]["dsir"] == pytest.approx(expected[d["id"]], rel=1e-12) for d in docs)
    prose_set = set(prose)
    by_kind = {kind: [s for i, s in expected.items() if (raw[int(i[1:])] in prose_set) == kind] for kind in (1, 0)}
    assert np.median(by_kind[1]) > np.percentile(by_kind[0], 90)  # the target's kind scores above the rest
    dropped = {r for r in expected} - {d["id"] for d in docs}
    assert dropped and all(raw[int(i[1:])] not in prose_set for i in dropped)  # the top half keeps all the prose
    again = sorted((tmp_path / "out1" / "documents").glob("*.parquet"))
    assert [f.read_bytes() for f in again] == [f.read_bytes() for f in sorted((out / "documents").glob("*.parquet"))]
    assert np.isfinite(weights).all()


def test_partitioned_buckets_get_shards_of_their_own(tmp_path, ml_texts, tokenizer_path):
    import pyarrow.parquet as pq

    texts = ["\n".join(ml_texts[i:i + 1 + i % 9]) for i in range(0, 1500, 3)]
    path = write_jsonl(tmp_path / "in.jsonl", [{"id": f"d{i}", "text": t} for i, t in enumerate(texts)])
    recipe = tmp_path / "r.yaml"
    recipe.write_text("scorers: [length]\nensemble: {buckets: 4, weight: tokens, partition: true}\n"
                      "select: {min_bucket: 1}\nupsample: {3: 2}\n")
    out = tmp_path / "out"
    assert cli.main(["prepare", "-i", path, "-o", str(out), "--tokenizer", tokenizer_path, "--seq-len", "64",
                     "--recipe", str(recipe), "--no-progress"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    report, counts = manifest[m.K_SELECTION], manifest[m.K_COUNTS]
    shards = manifest[m.K_SHARDS]
    assert {s["bucket"] for s in shards} == {1, 2, 3}
    assert all(s["path"].startswith(f"shards/bucket={s['bucket']:02d}/part-") for s in shards)
    for bucket in (1, 2, 3):
        rows = [s for s in shards if s["bucket"] == bucket]
        tokens = sum(s["tokens"] for s in rows)
        expected = report["buckets"][str(bucket)]["tokens"] * (2 if bucket == 3 else 1)
        assert tokens == expected  # each partition holds exactly its bucket's documents (and their copies)
        assert sum(pq.read_metadata(out / s["path"]).num_rows for s in rows) == sum(s["rows"] for s in rows)
    assert counts["tokens"] == sum(s["tokens"] for s in shards)
    assert counts["records"] == len(texts) == counts["docs_written"] + sum(counts["docs_rejected"].values())
    assert counts["docs_rejected"] == {f"select/{m.BELOW_SELECTION_THRESHOLD}": report["buckets"]["0"]["documents"]}
