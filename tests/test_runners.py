"""One full prepare (filters, language ID, exact and MinHash dedup, a DSIR scorer and a token budget, best-fit packing,
loss mask, shuffle) gives byte-identical shards, documents and rejections on FnApiRunner, on the portable runner
(the local stand-in for Flink, Spark and Dataflow Runner v2) and on the multi-process direct runner."""

from __future__ import annotations

import json

import pytest

from schemas import manifest as m
from tests.conftest import prepare, shard_bytes, write_jsonl

RECIPE = """\
filters:
  - {{name: language, params: {{languages: null, min_score: 0.0}}}}
  - {{name: gopher_repetition}}
  - {{name: c4_quality, params: {{filter_no_terminal_punct: false}}}}
dedup: {{exact: true, minhash: {{ngram: 5, bands: 14, rows: 8}}}}
scorers:
  - {{name: dsir, params: {{target: '{target}', buckets: 4096}}}}
  - length
ensemble: {{buckets: 4, combine: max}}
select: {{tokens: {budget}}}
"""

PORTABLE = ["--runner=PortableRunner", "--job_endpoint=embed", "--environment_type=LOOPBACK"]
MULTI_PROCESS = ["--runner=DirectRunner", "--direct_num_workers=2", "--direct_running_mode=multi_processing"]


@pytest.fixture(scope="module")
def job(tmp_path_factory, ml_texts, code_texts):
    d = tmp_path_factory.mktemp("runners")
    prose = ["\n".join(ml_texts[i:i + 6]) for i in range(0, 1500, 6)]
    code = [t for t in code_texts if t.strip()][:80]
    docs = prose + code + prose[:20]  # exact duplicates
    half = len(docs) // 2
    files = [write_jsonl(d / "a.jsonl", [{"id": f"a{i}", "text": t} for i, t in enumerate(docs[:half])]),
             write_jsonl(d / "b.jsonl", [{"id": f"b{i}", "text": t} for i, t in enumerate(docs[half:])]
                         + [b'{"id": "broken"\n'])]
    write_jsonl(d / "target.jsonl", [{"id": f"t{i}", "text": "\n".join(ml_texts[i:i + 6])}
                                     for i in range(1500, 2100, 6)])
    recipe = d / "recipe.yaml"
    recipe.write_text(RECIPE.format(target=f"{d}/target*.jsonl", budget=40_000))
    return files, str(recipe)


def _run(job, out, tokenizer_path, beam_args):
    files, recipe = job
    return prepare(files, out, tokenizer_path, seq_len=128, recipe=recipe, stream_bytes=60_000, packing="best-fit",
                   loss_mask="boundaries", shuffle_seed=7, emit_documents=True, beam_args=beam_args)


def _tree(out):
    """Every file under shards/, documents/ and rejected/ with its bytes."""
    return {str(p.relative_to(out)): p.read_bytes() for sub in ("shards", "documents", "rejected")
            for p in sorted((out / sub).rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def baseline(job, tokenizer_path, tmp_path_factory):
    out = tmp_path_factory.mktemp("fnapi") / "out"
    return out, _run(job, out, tokenizer_path, [])


def test_the_recipe_does_real_work(baseline):
    _, manifest = baseline
    c = manifest[m.K_COUNTS]
    assert c["records"] == c["docs_written"] + sum(c["docs_rejected"].values())
    stages = {k.split("/")[0] for k in c["docs_rejected"]}
    assert {"dedup", "select"} <= stages and c["docs_written"] > 50
    assert any(k.startswith(("gopher", "c4")) for k in c["docs_rejected"])  # filter reasons


@pytest.mark.parametrize("runner", ["portable", "multi_process"])
def test_every_runner_writes_identical_bytes(job, baseline, tokenizer_path, tmp_path, runner):
    out, manifest = baseline
    other = _run(job, tmp_path / runner, tokenizer_path, PORTABLE if runner == "portable" else MULTI_PROCESS)
    assert shard_bytes(tmp_path / runner) == shard_bytes(out)
    assert _tree(tmp_path / runner) == _tree(out)
    for key in (m.K_COUNTS, m.K_SOURCES, m.K_SHARDS, m.K_SELECTION, m.K_DEDUP, m.K_PACKING_STATS):
        assert json.dumps(other.get(key), sort_keys=True) == json.dumps(manifest.get(key), sort_keys=True), key
