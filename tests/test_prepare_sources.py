"""Per-source counts and per-stage seconds in the manifest: every input file's records, documents, rejections,
tokens, bytes and characters add up to the run's totals and match what its output files hold, whatever the worker
count; seconds are recorded for every stage the job runs."""

from __future__ import annotations

import gzip
import json
from collections import Counter
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.filter import FilterConfig
from pipelines.filter import run as run_filter
from schemas import manifest as m
from schemas.documents import iter_documents
from tests.conftest import hf_ids, prepare, write_jsonl
from tests.test_run_report import FILTER_RECIPE, PREPARE_RECIPE
from transforms.read.demo_corpus import prose_and_code
from transforms.pack.packers import DecomposePacker

LOW, HIGH = 8, 9  # decompose: pieces of 256 and 512 tokens; shorter documents are rejected by packing


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, ml_texts) -> tuple[list[str], dict[str, int]]:
    """Three files (plain JSONL, gzipped JSONL, Parquet) with filtered, duplicated and unreadable records; returns
    their paths and the records each holds."""
    d = tmp_path_factory.mktemp("sources-in")
    prose, _ = prose_and_code(150)
    pages = ["\n".join(prose[i:i + 3]) for i in range(0, 150, 3)]
    conversations = ["\n".join(ml_texts[i:i + 8]) for i in range(100, 420, 8)]  # most fail C4's sentence count
    a = [{"id": f"a{i}", "text": t} for i, t in enumerate(conversations + pages[:20])]
    b = [{"id": f"b{i}", "text": t} for i, t in enumerate(pages[20:40] + pages[:5])]  # 5 copies of a's pages
    c = [{"id": f"c{i}", "text": t} for i, t in enumerate(pages[40:] + pages[20:24] + [None])]  # copies, a null
    path_a = write_jsonl(d / "a.jsonl", a + [b"{not json\n"])
    path_b = d / "b.jsonl.gz"
    path_b.write_bytes(gzip.compress(b"".join(orjson.dumps(r) + b"\n" for r in b)))
    path_c = d / "c.parquet"
    pq.write_table(pa.table({"id": [r["id"] for r in c], "text": [r["text"] for r in c]}), path_c)
    files = [path_a, str(path_b), str(path_c)]
    return files, {path_a: len(a) + 1, str(path_b): len(b), str(path_c): len(c)}


@pytest.fixture(scope="module")
def recipes(tmp_path_factory) -> dict[str, str]:
    d = tmp_path_factory.mktemp("sources-recipes")
    (d / "prepare.yaml").write_text(PREPARE_RECIPE)
    (d / "filter.yaml").write_text(FILTER_RECIPE)
    return {"prepare": str(d / "prepare.yaml"), "filter": str(d / "filter.yaml")}


def _prepare(inputs, recipes, tokenizer_path, out: Path, workers: int) -> dict:
    return prepare(inputs[0], out, tokenizer_path, seq_len=1 << HIGH, recipe=recipes["prepare"],
                   packing="decompose", decompose_range=f"{LOW}:{HIGH}", emit_documents=True, stream_bytes=20_000,
                   workers=workers)


def _filter(inputs, recipes, out: Path, workers: int) -> dict:
    return run_filter(FilterConfig(inputs=inputs[0], output=str(out), recipe=recipes["filter"], stream_bytes=20_000,
                                   workers=workers))


@pytest.fixture(scope="module")
def runs(inputs, recipes, tokenizer_path, tmp_path_factory) -> dict[str, tuple[Path, dict]]:
    """prepare (filters, dedup, selection, decompose packing) and filter (filters, dedup) on one worker."""
    d = tmp_path_factory.mktemp("sources-runs")
    return {"prepare": (d / "prepare", _prepare(inputs, recipes, tokenizer_path, d / "prepare", 1)),
            "filter": (d / "filter", _filter(inputs, recipes, d / "filter", 1))}


def _rejected(out: Path) -> list[dict]:
    return [json.loads(line) for f in sorted((out / "rejected").glob("*.jsonl")) for line in f.open()]


@pytest.mark.parametrize("kind", ["prepare", "filter"])
def test_sources_add_up_to_the_totals(runs, inputs, kind):
    _, manifest = runs[kind]
    c, sources = manifest[m.K_COUNTS], manifest[m.K_SOURCES]
    assert list(sources) == [f["url"] for f in manifest[m.K_INPUTS]] and len(sources) == 3
    stages = Counter(k.partition("/")[0] if "/" in k else m.STAGE_READ for k in c["docs_rejected"])
    assert {m.STAGE_READ, "c4_quality", m.STAGE_DEDUP} <= set(stages), "the corpus must reject at these stages"
    totals = {f: c[f] for f in m.SOURCE_FIELDS if f != "docs_rejected"}
    totals["docs_rejected"] = sum(c["docs_rejected"].values())
    for field in m.SOURCE_FIELDS:
        assert sum(row[field] for row in sources.values()) == totals[field], field
    for url, row in sources.items():
        assert set(row) == set(m.SOURCE_FIELDS)
        assert row["records"] == row["docs_written"] + row["docs_rejected"] > 0, url
    assert all(row["tokens"] > 0 for row in sources.values()) if kind == "prepare" else \
        all(row["tokens"] == 0 for row in sources.values())
    assert {u: row["records"] for u, row in sources.items()} == inputs[1]  # keyed by the input URLs


def test_sources_match_the_output_files(runs, tokenizer_path, hf_tokenizer):
    """Each source's rejections, documents, characters and tokens, recounted from rejected/, documents/ and the
    tokenizer (a document of n tokens with EOS leaves n - remainder tokens in the decompose rows)."""
    out, manifest = runs["prepare"]
    sources = manifest[m.K_SOURCES]
    rejected = _rejected(out)
    assert Counter(r["source"] for r in rejected) == {u: row["docs_rejected"] for u, row in sources.items()}
    packed_out = Counter(r["source"] for r in rejected if r["stage"] == m.STAGE_PACK)
    assert packed_out, "the corpus must have documents too short for the shortest piece"
    docs = list(iter_documents(str(out)))
    packer = DecomposePacker(LOW, HIGH, 0)
    written, chars, tokens = Counter(), Counter(), Counter()
    for doc, ids in zip(docs, hf_ids(hf_tokenizer, [d["text"] for d in docs])):
        n = len(ids) + 1  # EOS
        written[doc["source"]] += 1
        chars[doc["source"]] += len(doc["text"])
        tokens[doc["source"]] += n - packer.remainder(n)
    assert {u: row["docs_written"] for u, row in sources.items()} == {u: written[u] - packed_out[u] for u in sources}
    assert {u: row["text_chars"] for u, row in sources.items()} == {u: chars[u] for u in sources}
    assert {u: row["tokens"] for u, row in sources.items()} == {u: tokens[u] for u in sources}
    plain = next(u for u in sources if u.endswith("a.jsonl"))
    assert sources[plain]["bytes_read"] == Path(plain).stat().st_size


@pytest.mark.parametrize("kind", ["prepare", "filter"])
def test_two_workers_give_the_same_sources(runs, inputs, recipes, tokenizer_path, tmp_path, kind):
    _, manifest = runs[kind]
    out = tmp_path / "w2"
    again = _prepare(inputs, recipes, tokenizer_path, out, 2) if kind == "prepare" else \
        _filter(inputs, recipes, out, 2)
    assert again[m.K_SOURCES] == manifest[m.K_SOURCES]
    assert again[m.K_COUNTS] == manifest[m.K_COUNTS]
    assert set(again[m.K_STAGE_SECONDS]) == set(manifest[m.K_STAGE_SECONDS])


@pytest.mark.parametrize("kind, stages", [
    ("prepare", {m.TIME_READ, m.TIME_RECIPE, m.TIME_TOKENIZE, m.TIME_PACK, m.TIME_WRITE}),
    ("filter", {m.TIME_READ, m.TIME_RECIPE, m.TIME_WRITE}),
])
def test_stage_seconds_are_recorded_apart_from_the_counts(runs, kind, stages):
    _, manifest = runs[kind]
    seconds = manifest[m.K_STAGE_SECONDS]
    assert set(seconds) == stages
    assert all(isinstance(v, float) and v >= 0 for v in seconds.values())
    assert list(seconds) == [s for s in m.TIMED_STAGES if s in seconds]
    assert not {"sources", "stage_seconds"} & set(manifest[m.K_COUNTS])
