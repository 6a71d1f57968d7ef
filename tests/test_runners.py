"""One full prepare (filters, language ID, exact and MinHash dedup, a DSIR scorer and a token budget, best-fit packing,
loss mask, shuffle) gives byte-identical shards, documents and rejections on FnApiRunner, on the portable runner
(the local stand-in for Flink, Spark and Dataflow Runner v2), on the multi-process direct runner and on a real Dask
cluster (a scheduler and two worker processes on 127.0.0.1; with key files and through the cluster's shuffle)."""

from __future__ import annotations

import json

import pytest

from pipelines.runner import beam_arguments
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


def _runner_args(runner, request):
    """The Beam arguments of a runner of the matrix (dask: the session's real cluster)."""
    if runner.startswith("dask"):
        return ["--runner=dask", f"--dask-address={request.getfixturevalue('dask_address')}"]
    return PORTABLE if runner == "portable" else MULTI_PROCESS


@pytest.mark.parametrize("runner", ["portable", "multi_process", "dask", "dask_shuffle"])
def test_every_runner_writes_identical_bytes(job, baseline, tokenizer_path, tmp_path, runner, request, monkeypatch):
    out, manifest = baseline
    if runner == "dask_shuffle":  # past DASK_FILES_MAX_BYTES: dedup keys and shuffle parts through the cluster
        import pipelines.runner

        monkeypatch.setattr(pipelines.runner, "DASK_FILES_MAX_BYTES", -1)
    other = _run(job, tmp_path / runner, tokenizer_path, beam_arguments(_runner_args(runner, request)))
    assert shard_bytes(tmp_path / runner) == shard_bytes(out)
    assert _tree(tmp_path / runner) == _tree(out)
    for key in (m.K_COUNTS, m.K_SOURCES, m.K_SHARDS, m.K_SELECTION, m.K_DEDUP, m.K_PACKING_STATS):
        assert json.dumps(other.get(key), sort_keys=True) == json.dumps(manifest.get(key), sort_keys=True), key


LINES_RECIPE = "dedup: {exact: true, lines: {min_docs: 3}}\n"


@pytest.fixture(scope="module")
def lines_job(tmp_path_factory, ml_texts):
    """Line dedup with exact dedup: boilerplate lines of several frequencies, exact copies, a page of boilerplate."""
    d = tmp_path_factory.mktemp("lines")
    footers = [f"Footer {k}: about, contact, privacy." for k in range(6)]
    docs = ["\n".join(ml_texts[i:i + 5] + footers[:(i // 5) % 7]) for i in range(0, 1200, 5)]
    docs += docs[:15] + ["\n\n".join(footers)]
    recipe = d / "lines.yaml"
    recipe.write_text(LINES_RECIPE)
    half = len(docs) // 2
    files = [write_jsonl(d / f"{name}.jsonl", [{"id": f"{name}{i}", "text": t} for i, t in enumerate(part)])
             for name, part in (("a", docs[:half]), ("b", docs[half:]))]
    return files, str(recipe)


def _run_lines(job, out, tokenizer_path, beam_args):
    files, recipe = job
    return prepare(files, out, tokenizer_path, seq_len=128, recipe=recipe, stream_bytes=30_000, emit_documents=True,
                   emit_modified=True, beam_args=beam_args)


@pytest.fixture(scope="module")
def lines_baseline(lines_job, tokenizer_path, tmp_path_factory):
    out = tmp_path_factory.mktemp("lines-fnapi") / "out"
    return out, _run_lines(lines_job, out, tokenizer_path, [])


@pytest.mark.parametrize("runner", ["portable"])  # (multi-process: the first job covers it)
def test_line_dedup_writes_identical_bytes_on_every_runner(lines_job, lines_baseline, tokenizer_path, tmp_path,
                                                           runner):
    out, manifest = lines_baseline
    c = manifest[m.K_COUNTS]
    assert manifest[m.K_STREAMS] > 2 and c["lines_removed"] > 100
    assert {"dedup/exact_duplicate", "dedup/lines_empty"} <= set(c["docs_rejected"])
    beam_args = PORTABLE if runner == "portable" else MULTI_PROCESS
    other = _run_lines(lines_job, tmp_path / runner, tokenizer_path, beam_args)
    assert _tree(tmp_path / runner) == _tree(out)
    modified = {p.name: p.read_bytes() for p in sorted((out / "modified").iterdir())}
    assert modified and {p.name: p.read_bytes() for p in sorted((tmp_path / runner / "modified").iterdir())} == modified
    for key in (m.K_COUNTS, m.K_SOURCES, m.K_SHARDS, m.K_DEDUP):
        assert json.dumps(other.get(key), sort_keys=True) == json.dumps(manifest.get(key), sort_keys=True), key


INCREMENTAL = "dedup: {{exact: true, minhash: {{ngram: 5, bands: 14, rows: 8}}, save_index: true{against}}}\n"


@pytest.fixture(scope="module")
def incremental(job, tmp_path_factory):
    """dedup.against: b.jsonl (holding copies of a.jsonl's documents) against a.jsonl's saved index; FnApiRunner's
    result."""
    from pipelines.filter import FilterConfig, run

    files, _ = job
    d = tmp_path_factory.mktemp("incremental")
    (d / "save.yaml").write_text(INCREMENTAL.format(against=""))
    run(FilterConfig(inputs=files[:1], output=str(d / "earlier"), recipe=str(d / "save.yaml")))
    (d / "against.yaml").write_text(INCREMENTAL.format(against=f", against: '{d / 'earlier'}'"))
    config = {"inputs": files[1:], "recipe": str(d / "against.yaml"), "stream_bytes": 30_000}
    return config, d / "fnapi", run(FilterConfig(output=str(d / "fnapi"), **config))


@pytest.mark.parametrize("runner", ["portable"])  # (multi-process: the first job covers it)
def test_incremental_dedup_is_the_same_on_every_runner(incremental, tmp_path, runner):
    from pipelines.filter import FilterConfig, run

    config, out, manifest = incremental
    assert manifest[m.K_DEDUP][m.EARLIER_EXACT_DUPLICATE] >= 20  # b.jsonl's copies of a.jsonl's prose
    other = run(FilterConfig(output=str(tmp_path / runner), **config),
                PORTABLE if runner == "portable" else MULTI_PROCESS)
    assert _tree(tmp_path / runner) == _tree(out)
    index = {p.name: p.read_bytes() for p in sorted((out / "dedup_index").iterdir())}
    assert len(index) == 4 and {p.name: p.read_bytes() for p in (tmp_path / runner / "dedup_index").iterdir()} == index
    for key in (m.K_COUNTS, m.K_DEDUP, m.K_DEDUP_INDEX):
        assert other[key] == manifest[key], key
