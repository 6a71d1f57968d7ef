"""Dedup in the pipeline: planted exact and edited copies are found across files and streams and name the kept
document; distinct documents are kept; counts add up; results are identical on every run and worker count."""

from __future__ import annotations

import json
import random
from collections import Counter

import pytest

from pipelines.filter import FilterConfig
from pipelines.filter import run as run_filter
from schemas import manifest as m
from schemas.documents import iter_documents
from schemas.manifest import Counts
from tests.conftest import documents_from_shards, eos_of, hf_ids, prepare, shard_bytes, write_jsonl
from tests.test_dedup import _edit
from transforms.output.commit import dedup_summary
from transforms.dedup.keys import jaccard
from transforms.inspection.output import open_output
from transforms.inspection.verify import verify_output

RECIPE = "dedup: {exact: true, minhash: {ngram: 5, bands: 14, rows: 8}}\n"


@pytest.fixture(scope="module")
def planted(ml_texts, tmp_path_factory):
    """Two JSONL files of distinct documents with exact and edited copies planted after their originals."""
    rng = random.Random(11)
    base: list[str] = []
    for i in range(0, 3600, 12):
        t = "\n".join(ml_texts[i:i + 12])
        if len(t.split()) >= 60 and all(jaccard(t, b, 5) < 0.3 for b in base):
            base.append(t)
    base = base[:90]
    records, expected = [], {}  # expected: duplicate id -> (reason, original id)
    for i, text in enumerate(base):
        records.append({"id": f"d{i:03d}", "text": text})
    for i in range(0, len(base), 3):  # copies come later in the input than their originals
        records.append({"id": f"x{i:03d}", "text": base[i].replace("\n", "  \n")})  # whitespace differs only
        expected[f"x{i:03d}"] = (m.EXACT_DUPLICATE, f"d{i:03d}")
        edited = _edit(base[i], rng, 0.015)
        while jaccard(edited, base[i], 5) < 0.9:  # a near copy: found by 14x8 LSH with probability > 0.999
            edited = _edit(base[i], rng, 0.015)
        records.append({"id": f"e{i:03d}", "text": edited})
        expected[f"e{i:03d}"] = (m.NEAR_DUPLICATE, f"d{i:03d}")
    d = tmp_path_factory.mktemp("planted")
    half = len(records) // 2
    files = [write_jsonl(d / "a.jsonl", records[:half]), write_jsonl(d / "b.jsonl", records[half:])]
    recipe = d / "dedup.yaml"
    recipe.write_text(RECIPE)
    return files, str(recipe), records, expected


def _rejected(out) -> list[dict]:
    return [json.loads(line) for f in sorted((out / "rejected").glob("*.jsonl")) for line in f.open()]


@pytest.fixture(scope="module")
def deduped(planted, tokenizer_path, tmp_path_factory):
    files, recipe, _, _ = planted
    out = tmp_path_factory.mktemp("dedup") / "out"
    # small streams: documents and their copies land in different streams (and files)
    return out, prepare(files, out, tokenizer_path, recipe=recipe, stream_bytes=40_000, emit_documents=True)


def test_planted_duplicates_are_found_and_name_the_kept_document(planted, deduped):
    _, _, records, expected = planted
    out, manifest = deduped
    assert manifest[m.K_STREAMS] > 3
    rejected = _rejected(out)
    found = {r["id"]: (r["reason"], r[m.REJ_DUPLICATE_OF]) for r in rejected}
    assert found == expected
    assert all(r["stage"] == m.STAGE_DEDUP and r["detail"] == f"duplicate of {r[m.REJ_DUPLICATE_OF]}"
               for r in rejected)
    c = manifest[m.K_COUNTS]
    assert c["records"] == len(records) == c["docs_written"] + sum(c["docs_rejected"].values())
    n_exact = sum(1 for r, _ in expected.values() if r == m.EXACT_DUPLICATE)
    assert c["docs_rejected"] == {"dedup/exact_duplicate": n_exact, "dedup/near_duplicate": len(expected) - n_exact}
    dedup = dict(manifest[m.K_DEDUP])
    clusters = dedup.pop(m.DEDUP_CLUSTERS)
    assert dedup == {
        m.EXACT_DUPLICATE: n_exact, m.NEAR_DUPLICATE: len(expected) - n_exact,
        "documents_considered": len(records), "duplicate_rate": round(len(expected) / len(records), 6),
    }
    # the largest clusters, from the rejected records: size (kept one included), then kept id; first members
    by_kept: dict[str, list[dict]] = {}
    for r in rejected:  # rejected/ files are in stream order, each in read order
        by_kept.setdefault(r[m.REJ_DUPLICATE_OF], []).append(r)
    largest = sorted(by_kept.items(), key=lambda kv: (-len(kv[1]), kv[0]))[:10]
    assert [(c[m.CL_KEPT], c[m.CL_DOCUMENTS]) for c in clusters] == [(k, len(v) + 1) for k, v in largest]
    texts = {r["id"]: r["text"] for r in records}
    for cluster, (_, members) in zip(clusters, largest):
        assert [(s[m.CL_ID], s[m.CL_REASON]) for s in cluster[m.CL_MEMBERS]] == [
            (r["id"], r["reason"]) for r in members[:3]]
        assert all(" ".join(texts[s[m.CL_ID]].split()).startswith(s[m.CL_EXCERPT]) and s[m.CL_EXCERPT]
                   for s in cluster[m.CL_MEMBERS])
    page = (out / "report.html").read_text()
    assert "Largest duplicate clusters" in page and clusters[0][m.CL_KEPT] in page


def test_kept_documents_are_the_originals_in_order_and_are_what_was_packed(planted, deduped, tokenizer_path,
                                                                           hf_tokenizer):
    _, _, records, expected = planted
    out, _ = deduped
    kept = [r for r in records if r["id"] not in expected]
    docs = list(iter_documents(str(out)))
    assert [(d["id"], d["text"]) for d in docs] == [(r["id"], r["text"]) for r in kept]
    assert all(d["source"].endswith(("a.jsonl", "b.jsonl")) and d["line"] >= 1 for d in docs)
    got = Counter(map(tuple, documents_from_shards(out, eos_of(tokenizer_path))))
    assert got == Counter(map(tuple, hf_ids(hf_tokenizer, [r["text"] for r in kept])))


def test_reruns_and_two_workers_give_identical_bytes(planted, deduped, tokenizer_path, tmp_path):
    files, recipe, _, _ = planted
    out, manifest = deduped
    again = tmp_path / "again"
    prepare(files, again, tokenizer_path, recipe=recipe, stream_bytes=40_000, emit_documents=True, workers=2,
            recipe_processes=2)
    assert shard_bytes(again) == shard_bytes(out)
    for sub in ("documents", "rejected"):
        a = {p.name: p.read_bytes() for p in sorted((again / sub).iterdir())}
        assert a == {p.name: p.read_bytes() for p in sorted((out / sub).iterdir())}
    assert json.loads((again / "manifest.json").read_text())[m.K_COUNTS] == manifest[m.K_COUNTS]


def test_clusters_joined_over_the_workers_give_identical_bytes(planted, deduped, tokenizer_path, tmp_path,
                                                                monkeypatch):
    """On remote runners MinHash clusters are joined by SpreadClusters, not in one place: the same output."""
    import pipelines.stream_graph as prepare_module
    from transforms.dedup.steps import FindDuplicates

    files, recipe, _, _ = planted
    out, manifest = deduped
    made = []

    def recording(**kwargs):
        made.append(FindDuplicates(**kwargs))
        return made[-1]

    monkeypatch.setattr(prepare_module, "is_local", lambda args: False)  # as on a remote runner
    monkeypatch.setattr(prepare_module, "shares_files", lambda args, input_bytes: False)
    monkeypatch.setattr(prepare_module, "FindDuplicates", recording)
    spread = tmp_path / "spread"
    again = prepare(files, spread, tokenizer_path, recipe=recipe, stream_bytes=40_000, emit_documents=True)
    assert [(f.near, f.spread) for f in made] == [(True, True)]
    assert shard_bytes(spread) == shard_bytes(out)
    for sub in ("documents", "rejected"):
        assert {p.name: p.read_bytes() for p in (spread / sub).iterdir()} == \
            {p.name: p.read_bytes() for p in (out / sub).iterdir()}
    assert again[m.K_COUNTS] == manifest[m.K_COUNTS] and again[m.K_DEDUP] == manifest[m.K_DEDUP]


def test_exact_only_keeps_near_copies(planted, tmp_path):
    files, _, records, expected = planted
    recipe = tmp_path / "exact.yaml"
    recipe.write_text("dedup: {exact: true}\n")
    manifest = run_filter(FilterConfig(inputs=files, output=str(tmp_path / "out"), recipe=str(recipe)))
    exact = {k for k, (reason, _) in expected.items() if reason == m.EXACT_DUPLICATE}
    assert {r["id"] for r in _rejected(tmp_path / "out")} == exact
    assert manifest[m.K_COUNTS]["docs_written"] == len(records) - len(exact)


def test_portable_runner_gives_identical_bytes(planted, deduped, tokenizer_path, tmp_path):
    files, recipe, _, _ = planted
    out, manifest = deduped
    portable = tmp_path / "portable"
    prepare(files, portable, tokenizer_path, recipe=recipe, stream_bytes=40_000, emit_documents=True,
            beam_args=["--runner=PortableRunner", "--job_endpoint=embed", "--environment_type=LOOPBACK"])
    assert shard_bytes(portable) == shard_bytes(out)
    for sub in ("documents", "rejected"):
        assert {p.name: p.read_bytes() for p in (portable / sub).iterdir()} == \
            {p.name: p.read_bytes() for p in (out / sub).iterdir()}


@pytest.mark.parametrize("after_dedup", [True, False])
def test_documents_considered_are_those_that_reached_dedup(planted, tmp_path, after_dedup):
    """Documents considered by dedup are those no earlier stage rejected (reading, the filters, and a min_score
    selection, decided as each document is scored); a selection by fraction comes after dedup and does not lower
    them. Recounted from the stages of the rejected/ records."""
    files, _, records, _ = planted
    repeated = [{"id": f"r{i}", "text": "\n".join([f"the same line {i} again and again"] * 20)} for i in range(7)]
    extra = write_jsonl(tmp_path / "extra.jsonl", repeated + [b"{not json\n"])
    median = sorted(len(r["text"].encode()) for r in records)[len(records) // 2]
    select = "{top_fraction: 0.5}" if after_dedup else f"{{min_score: {median}}}"
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(f"filters: [{{name: gopher_repetition}}]\n{RECIPE}scorers: [length]\nselect: {select}\n")
    out = tmp_path / "out"
    manifest = run_filter(FilterConfig(inputs=files + [extra], output=str(out), recipe=str(recipe)))
    stages = Counter(r["stage"] for r in _rejected(out))
    assert all(stages[s] for s in (m.STAGE_READ, m.STAGE_FILTER, m.STAGE_DEDUP, m.STAGE_SELECT)), stages
    c = manifest[m.K_COUNTS]
    earlier = stages[m.STAGE_READ] + stages[m.STAGE_FILTER] + (0 if after_dedup else stages[m.STAGE_SELECT])
    considered = c["records"] - earlier
    assert manifest[m.K_DEDUP][m.DEDUP_CONSIDERED] == considered
    assert manifest[m.K_DEDUP][m.DEDUP_RATE] == round(stages[m.STAGE_DEDUP] / considered, 6)
    later = stages[m.STAGE_SELECT] if after_dedup else 0
    assert considered == c["docs_written"] + stages[m.STAGE_DEDUP] + later
    assert verify_output(open_output(str(out))) == []  # inspect --verify recomputes the same number


def test_dedup_summary_counts_what_reached_dedup():
    counts = Counts(records=100, docs_written=50, docs_rejected={
        m.MALFORMED_JSON: 5, "c4_quality/too_few_sentences": 15, "dedup/exact_duplicate": 8,
        "dedup/near_duplicate": 2, "select/below_selection_threshold": 15, "pack/shorter_than_shortest_piece": 5})
    after = dedup_summary(counts, {"select": {"top_fraction": 0.5, "score": "length"}})
    assert after == {m.EXACT_DUPLICATE: 8, m.NEAR_DUPLICATE: 2, m.DEDUP_CONSIDERED: 80, m.DEDUP_RATE: 0.125}
    assert dedup_summary(counts) == after  # no recipe: selection is taken to come after dedup
    before = dedup_summary(counts, {"select": {"min_score": 3.5, "score": "length"}})
    assert before[m.DEDUP_CONSIDERED] == 65 and before[m.DEDUP_RATE] == round(10 / 65, 6)
