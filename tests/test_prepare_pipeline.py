"""End-to-end prepare on FnApiRunner: nothing lost, rows consistent, counts add up, byte-identical reruns."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pyarrow.parquet as pq
import pytest

from schemas import manifest as m
from schemas.shards import CU_SEQLENS, INPUT_IDS, NUM_PAD, SHARD_SCHEMA, iter_packed_rows
from tests.conftest import documents_from_shards, eos_of, hf_ids, prepare, shard_bytes, write_jsonl

SEQ = 64


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, ml_texts, code_texts):
    """Multilingual + code documents over three JSONL files (one gzipped), ids present on some records only."""
    import gzip

    d = tmp_path_factory.mktemp("corpus")
    texts = ml_texts + code_texts
    parts = [texts[0::3], texts[1::3], texts[2::3]]
    write_jsonl(d / "a.jsonl", [{"id": f"a{i}", "text": t} for i, t in enumerate(parts[0])])
    write_jsonl(d / "b.jsonl", [{"text": t, "meta": {"n": i}} for i, t in enumerate(parts[1])])
    with gzip.open(d / "c.jsonl.gz", "wb") as fh:
        for t in parts[2]:
            fh.write(json.dumps({"text": t}).encode() + b"\n")
    return d, parts[0] + parts[1] + parts[2]


@pytest.fixture(scope="module")
def baseline(tmp_path_factory, corpus, tokenizer_path):
    d, _ = corpus
    out = tmp_path_factory.mktemp("out") / "run1"
    # small streams and shards so the run has several of each
    manifest = prepare([str(d / "*.jsonl*")], out, tokenizer_path, SEQ, shard_rows=500, stream_bytes=200_000)
    return out, manifest


def test_round_trip_multiset_equals_hf(baseline, corpus, tokenizer_path, hf_tokenizer):
    out, manifest = baseline
    _, texts = corpus
    got = Counter(map(tuple, documents_from_shards(out, eos_of(tokenizer_path))))
    expected = Counter(map(tuple, hf_ids(hf_tokenizer, texts)))
    assert got == expected
    assert manifest[m.K_COUNTS]["docs_written"] == len(texts)


def test_rows_are_exact_and_consistent(baseline):
    out, manifest = baseline
    rows = list(iter_packed_rows(str(out)))
    assert len(rows) == manifest[m.K_COUNTS]["sequences"]
    for r in rows:
        assert r.input_ids.shape == (SEQ,)
        assert r.cu_seqlens[0] == 0
        assert r.cu_seqlens[-1] == SEQ - r.num_pad
        assert np.all(np.diff(r.cu_seqlens) > 0)
        if r.num_pad:
            assert np.all(r.input_ids[SEQ - r.num_pad :] == manifest[m.K_TOKENIZER]["pad_id"])


def test_segments_follow_documents(baseline, tokenizer_path):
    """Every interior segment boundary sits right after an EOS; every EOS ends a segment."""
    out, _ = baseline
    eos = eos_of(tokenizer_path)
    for r in iter_packed_rows(str(out)):
        real = r.input_ids[: SEQ - r.num_pad]
        eos_ends = set((np.flatnonzero(real == eos) + 1).tolist())
        inner = set(r.cu_seqlens[1:-1].tolist())
        assert inner <= eos_ends
        assert eos_ends - {len(real)} <= inner


def test_manifest_counts_match_shards(baseline):
    out, manifest = baseline
    c = manifest[m.K_COUNTS]
    assert c["records"] == c["docs_written"] + sum(c["docs_rejected"].values())
    rows = list(iter_packed_rows(str(out)))
    assert c["pad_tokens"] == sum(r.num_pad for r in rows)
    assert c["tokens"] == sum(SEQ - r.num_pad for r in rows)
    assert len(manifest[m.K_SHARDS]) > 1 and manifest[m.K_STREAMS] > 1
    total = 0
    for shard in manifest[m.K_SHARDS]:
        pf = pq.ParquetFile(out / shard["path"])
        assert pf.schema_arrow == SHARD_SCHEMA
        assert pf.metadata.num_rows == shard["rows"] <= 500
        total += shard["rows"]
    assert total == c["sequences"]
    assert {p.name for p in (out / "shards").iterdir()} == {s["path"].split("/")[-1] for s in manifest[m.K_SHARDS]}
    assert manifest[m.K_TOKENIZER]["backend"] == "gigatoken"


def test_shards_load_with_datasets(baseline):
    import datasets

    out, manifest = baseline
    ds = datasets.load_dataset("parquet", data_files=str(out / "shards" / "*.parquet"), split="train")
    assert len(ds) == manifest[m.K_COUNTS]["sequences"]
    assert set(ds.column_names) == {INPUT_IDS, CU_SEQLENS, NUM_PAD}
    assert len(ds[0][INPUT_IDS]) == SEQ


def test_rerun_is_byte_identical_and_leaves_nothing_stale(baseline, corpus, tokenizer_path):
    out, manifest = baseline
    d, _ = corpus
    before = shard_bytes(out)
    # left by a commit killed half-way: a placed file its journal lists, and a temp file of a stream
    (out / "shards" / "part-99999.parquet").write_bytes(b"stale")
    (out / "_tokenmill_tmp").mkdir(exist_ok=True)
    (out / "_tokenmill_tmp" / "commit.json").write_text('{"files": ["shards/part-99999.parquet"]}')
    (out / "_tokenmill_tmp" / "s00001-p-0123456789ab-0000.parquet").write_bytes(b"stale")
    again = prepare([str(d / "*.jsonl*")], out, tokenizer_path, SEQ, shard_rows=500, stream_bytes=200_000)
    assert shard_bytes(out) == before
    assert [s["sha256"] for s in again[m.K_SHARDS]] == [s["sha256"] for s in manifest[m.K_SHARDS]]
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", m.REPORT_HTML, "shards"]


def test_two_workers_give_identical_shards(baseline, corpus, tokenizer_path, tmp_path):
    out, _ = baseline
    d, _ = corpus
    prepare([str(d / "*.jsonl*")], tmp_path / "w2", tokenizer_path, SEQ, shard_rows=500, stream_bytes=200_000,
            workers=2)
    assert shard_bytes(tmp_path / "w2") == shard_bytes(out)


def test_portable_loopback_runner_gives_identical_shards(baseline, corpus, tokenizer_path, tmp_path):
    out, _ = baseline
    d, _ = corpus
    prepare([str(d / "*.jsonl*")], tmp_path / "portable", tokenizer_path, SEQ, shard_rows=500,
            stream_bytes=200_000,
            beam_args=["--runner=PortableRunner", "--job_endpoint=embed", "--environment_type=LOOPBACK"])
    assert shard_bytes(tmp_path / "portable") == shard_bytes(out)


def test_hf_backend_gives_identical_shards(baseline, corpus, tokenizer_path, tmp_path):
    out, _ = baseline
    d, _ = corpus
    manifest = prepare([str(d / "*.jsonl*")], tmp_path / "hf", tokenizer_path, SEQ, shard_rows=500,
                       stream_bytes=200_000, tokenizer_backend="hf")
    assert manifest[m.K_TOKENIZER]["backend"] == "hf"
    assert shard_bytes(tmp_path / "hf") == shard_bytes(out)


def test_planning_on_the_workers_gives_identical_shards(baseline, corpus, tokenizer_path, tmp_path, monkeypatch):
    """Big inputs are planned by the workers (a shuffle more), small ones by the launcher: same plan, same bytes."""
    import pipelines.stream_graph as prep

    out, manifest = baseline
    d, _ = corpus
    monkeypatch.setattr(prep, "PLAN_IN_PARALLEL_BYTES", 0)
    for label, workers in (("planned-by-workers", 1), ("planned-by-workers-w2", 2)):
        again = prepare([str(d / "*.jsonl*")], tmp_path / label, tokenizer_path, SEQ, shard_rows=500,
                        stream_bytes=200_000, workers=workers)
        assert shard_bytes(tmp_path / label) == shard_bytes(out)
        assert again[m.K_COUNTS] == manifest[m.K_COUNTS]
