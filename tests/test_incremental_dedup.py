"""Incremental dedup: a run saves the keys of the documents it kept (dedup.save_index), a later run drops what
duplicates them (dedup.against), naming the earlier document and output; the same decisions on the key-file and
the shuffle path; a mismatched configuration or an output without an index is one clear error."""

from __future__ import annotations

import json
import random
import shutil

import numpy as np
import pytest

from pipelines import cli
from pipelines.filter import FilterConfig, fingerprint
from pipelines.filter import run as run_filter
from schemas import manifest as m
from tests.conftest import write_jsonl
from tests.test_dedup import _edit
from transforms.dedup.earlier import open_earlier
from transforms.dedup.index import resolve_against
from transforms.dedup.keys import MinHasher, exact_key, jaccard
from transforms.inspection.output import open_output
from transforms.inspection.verify import verify_output
from transforms.recipe.errors import RecipeError
from transforms.recipe.recipes import load_recipe
from transforms.report.summary import summary_table

MINHASH = "minhash: {ngram: 5, bands: 14, rows: 8}"
INDEX_FILES = ["ids.bin", "id_ends.npy", "exact.npy", "bands.npy"]


def _distinct(ml_texts: list[str], n: int) -> list[str]:
    out: list[str] = []
    for i in range(0, len(ml_texts), 12):
        t = "\n".join(ml_texts[i:i + 12])
        if len(t.split()) >= 60 and all(jaccard(t, b, 5) < 0.3 for b in out):
            out.append(t)
            if len(out) == n:
                break
    return out


def _near(text: str, rng: random.Random) -> str:
    edited = _edit(text, rng, 0.015)
    while jaccard(edited, text, 5) < 0.9:  # found by 14x8 LSH with probability > 0.999
        edited = _edit(text, rng, 0.015)
    return edited


@pytest.fixture(scope="module")
def corpora(ml_texts, tmp_path_factory):
    """Run 1's corpus (with a within-run copy) and run 2's: new documents, exact and near copies of run 1's, a copy
    of a document run 1 dropped, a near copy of one of run 2's own copies, and a within-run copy."""
    rng = random.Random(5)
    texts = _distinct(ml_texts, 90)
    old, new = texts[:60], texts[60:]
    d = tmp_path_factory.mktemp("incremental")
    first = [{"id": f"d{i:02d}", "text": t} for i, t in enumerate(old)]
    first.append({"id": "d_copy", "text": old[7] + "  "})  # dropped by run 1 itself (exact copy of d07)
    second = [{"id": f"n{i:02d}", "text": t} for i, t in enumerate(new)]
    expected = {}  # run 2: dropped id -> (reason, earlier id)
    for i in (3, 11, 20):
        second.append({"id": f"x{i:02d}", "text": old[i].replace("\n", " \n")})
        expected[f"x{i:02d}"] = (m.EARLIER_EXACT_DUPLICATE, f"d{i:02d}")
    for i in (5, 30, 44):
        second.append({"id": f"e{i:02d}", "text": _near(old[i], rng)})
        expected[f"e{i:02d}"] = (m.EARLIER_NEAR_DUPLICATE, f"d{i:02d}")
    second.append({"id": "again", "text": old[7] + "  "})  # what run 1 dropped duplicates what it kept
    expected["again"] = (m.EARLIER_EXACT_DUPLICATE, "d07")
    x03 = next(r["text"] for r in second if r["id"] == "x03")
    second.append({"id": "x03_near", "text": _near(x03, rng)})  # of x03 and (through it) of d03
    expected["x03_near"] = (m.EARLIER_NEAR_DUPLICATE, "d03")
    second.append({"id": "n00_copy", "text": new[0] + " "})  # within run 2
    expected["n00_copy"] = (m.EXACT_DUPLICATE, "n00")
    files1 = [write_jsonl(d / "one.jsonl", first)]
    files2 = [write_jsonl(d / "two_a.jsonl", second[:20]), write_jsonl(d / "two_b.jsonl", second[20:])]
    fresh = [write_jsonl(d / "fresh.jsonl", second[:30])]  # run 2's new documents alone
    return d, files1, files2, fresh, first, second, expected


def _recipe(d, name: str, body: str) -> str:
    path = d / f"{name}.yaml"
    path.write_text(body)
    return str(path)


def _filter(files, out, recipe, **kwargs) -> dict:
    return run_filter(FilterConfig(inputs=files, output=str(out), recipe=recipe, stream_bytes=20_000, **kwargs))


def _rejected(out) -> list[dict]:
    return [json.loads(line) for f in sorted((out / "rejected").glob("*.jsonl")) for line in f.open()]


@pytest.fixture(scope="module")
def run1(corpora):
    d, files1, *_ = corpora
    recipe = _recipe(d, "save", f"dedup: {{exact: true, {MINHASH}, save_index: true}}\n")
    out = d / "run1"
    return out, _filter(files1, out, recipe)


@pytest.fixture(scope="module")
def run2(corpora, run1):
    d, _, files2, *_ = corpora
    recipe = _recipe(d, "against", f"dedup: {{exact: true, {MINHASH}, against: '{run1[0]}', save_index: true}}\n")
    out = d / "run2"
    return out, _filter(files2, out, recipe), recipe


def test_saved_index_holds_the_kept_documents_keys_listed_and_verified(corpora, run1, tmp_path):
    d, files1, _, _, first, _, _ = corpora
    out, manifest = run1
    index = manifest[m.K_DEDUP_INDEX]
    assert [f[m.E_PATH] for f in index[m.DI_FILES]] == [f"dedup_index/{n}" for n in INDEX_FILES]
    assert index[m.DI_MINHASH] == {"ngram": 5, "bands": 14, "rows": 8, "seed": 1} and index[m.DI_EXACT] is True
    kept = [r for r in first if r["id"] != "d_copy"]
    assert index[m.DI_DOCUMENTS] == manifest[m.K_COUNTS]["docs_written"] == len(kept)
    assert verify_output(open_output(str(out))) == []
    folder = out / "dedup_index"
    ends = np.load(folder / "id_ends.npy")
    blob = (folder / "ids.bin").read_bytes()
    assert [blob[a:b].decode() for a, b in zip([0, *ends[:-1]], ends)] == [r["id"] for r in kept]
    exact = np.load(folder / "exact.npy")
    keys = [exact_key(kept[doc]["text"]) for doc in exact["doc"]]
    assert keys == [np.array([(h, lo)], [("hi", "<u8"), ("lo", "<u8")]).tobytes() for h, lo in
                    zip(exact["hi"].tolist(), exact["lo"].tolist())]
    assert np.all(np.diff(exact["hi"].astype(np.float64)) >= 0)  # sorted by key
    bands = np.load(folder / "bands.npy")
    hasher = MinHasher(load_recipe(_recipe(d, "mh", f"dedup: {{{MINHASH}}}\n")).dedup.minhash)
    assert bands.shape == (14, len(kept))
    for b in (0, 13):
        found = {int(doc): np.array([(h, lo)], [("hi", "<u8"), ("lo", "<u4")]).tobytes()
                 for doc, h, lo in zip(bands[b]["doc"], bands[b]["hi"].tolist(), bands[b]["lo"].tolist())}
        assert found == {i: hasher.band_keys(r["text"])[b] for i, r in enumerate(kept)}
    again = tmp_path / "again"
    _filter(files1, again, str(d / "save.yaml"), workers=2)
    assert {n: (again / "dedup_index" / n).read_bytes() for n in INDEX_FILES} == \
        {n: (folder / n).read_bytes() for n in INDEX_FILES}


def test_against_drops_the_copies_of_earlier_documents_naming_them(corpora, run1, run2):
    _, _, _, _, _, second, expected = corpora
    out, manifest, _ = run2
    rejected = _rejected(out)
    assert {r["id"]: (r["reason"], r[m.REJ_DUPLICATE_OF]) for r in rejected} == expected
    for r in rejected:
        earlier = r["reason"].startswith("earlier_")
        assert r["detail"] == f"duplicate of {r[m.REJ_DUPLICATE_OF]}" + (f" in {run1[0]}" if earlier else "")
    c = manifest[m.K_COUNTS]
    assert c["records"] == len(second) == c["docs_written"] + len(expected)
    dedup = manifest[m.K_DEDUP]
    assert (dedup[m.EARLIER_EXACT_DUPLICATE], dedup[m.EARLIER_NEAR_DUPLICATE]) == (4, 4)
    assert (dedup[m.EXACT_DUPLICATE], dedup[m.NEAR_DUPLICATE]) == (1, 0)
    assert dedup[m.DEDUP_RATE] == round(len(expected) / len(second), 6)
    against = manifest[m.K_RECIPE][m.R_DEDUP][m.R_AGAINST]
    assert against[0][m.AG_PATH] == str(run1[0]) and len(against[0][m.AG_INDEX_SHA256]) == 64
    assert manifest[m.K_DEDUP_INDEX][m.DI_DOCUMENTS] == c["docs_written"]  # its own index: what it kept
    assert verify_output(open_output(str(out))) == []
    table = summary_table(manifest, str(out))
    assert "  of earlier outputs" in table and "8 (4 exact, 4 near)" in table


def test_without_copies_every_document_is_kept(corpora, run1, tmp_path):
    d, _, _, fresh, *_ = corpora
    recipe = _recipe(d, "fresh", f"dedup: {{exact: true, {MINHASH}, against: ['{run1[0]}']}}\n")
    manifest = _filter(fresh, tmp_path / "fresh", recipe)
    c = manifest[m.K_COUNTS]
    assert c["docs_rejected"] == {} and c["docs_written"] == c["records"] == 30
    assert manifest[m.K_DEDUP][m.EARLIER_EXACT_DUPLICATE] == manifest[m.K_DEDUP][m.EARLIER_NEAR_DUPLICATE] == 0
    assert m.K_DEDUP_INDEX not in manifest


def test_the_shuffle_path_decides_the_same(corpora, run1, run2, tmp_path, monkeypatch):
    """On a remote runner the earlier keys go through the shuffle (FindDuplicates, spread): the same bytes."""
    import pipelines.stream_graph as graph
    from transforms.dedup.steps import FindDuplicates

    _, _, files2, *_ = corpora
    out, manifest, recipe = run2
    made = []

    def recording(**kwargs):
        made.append(FindDuplicates(**kwargs))
        return made[-1]

    monkeypatch.setattr(graph, "is_local", lambda args: False)
    monkeypatch.setattr(graph, "shares_files", lambda args, input_bytes: False)
    monkeypatch.setattr(graph, "FindDuplicates", recording)
    spread = tmp_path / "spread"
    again = _filter(files2, spread, recipe)
    assert [(f.spread, f.earlier is not None) for f in made] == [(True, True)]
    for sub in ("documents", "rejected", "dedup_index"):
        assert {p.name: p.read_bytes() for p in (spread / sub).iterdir()} == \
            {p.name: p.read_bytes() for p in (out / sub).iterdir()}, sub
    for key in (m.K_COUNTS, m.K_DEDUP, m.K_DEDUP_INDEX, m.K_RECIPE):
        assert again[key] == manifest[key], key


def test_the_earlier_index_is_in_the_fingerprint(corpora, run1, tmp_path):
    d, *_ = corpora
    copy = tmp_path / "copy"
    shutil.copytree(run1[0], copy)
    recipes = [resolve_against(load_recipe(_recipe(d, f"fp{i}", f"dedup: {{exact: true, {MINHASH}, against: "
                                                                f"'{where}'}}\n")), "elsewhere")
               for i, where in enumerate((run1[0], copy))]
    cfg = FilterConfig(inputs=["x.jsonl"], output="elsewhere")
    sha = [r.dedup.against[0].index_sha256 for r in recipes]
    assert sha[0] == sha[1]  # the same index, wherever it is
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest[m.K_DEDUP_INDEX][m.DI_FILES][0][m.E_SHA256] = "0" * 64  # as if the earlier output had been redone
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(RecipeError, match="changed since this job started"):
        open_earlier(recipes[1])
    changed = resolve_against(recipes[1], "elsewhere")
    assert changed.dedup.against[0].index_sha256 != sha[1]
    assert fingerprint(cfg, changed) != fingerprint(cfg, recipes[1])


@pytest.mark.parametrize("case", ["minhash", "exact", "no_index", "missing", "own_output"])
def test_a_bad_earlier_output_is_one_clear_line(corpora, run1, run2, tmp_path, capsys, case):
    d, files1, *_ = corpora
    other = {"minhash": f"dedup: {{exact: true, minhash: {{bands: 20, rows: 5}}, against: '{run1[0]}'}}",
             "exact": f"dedup: {{{MINHASH}, against: '{run1[0]}'}}",
             "no_index": f"dedup: {{exact: true, {MINHASH}, against: '{d / 'fresh_out'}'}}",
             "missing": f"dedup: {{exact: true, {MINHASH}, against: '{tmp_path / 'nowhere'}'}}",
             "own_output": f"dedup: {{exact: true, {MINHASH}, against: '{tmp_path / 'out'}'}}"}[case]
    if case == "no_index":
        _filter(files1, d / "fresh_out", _recipe(d, "plain", f"dedup: {{exact: true, {MINHASH}}}\n"))
    recipe = _recipe(tmp_path, case, other + "\n")
    code = cli.main(["filter", "-i", files1[0], "-o", str(tmp_path / "out"), "--recipe", recipe])
    err = capsys.readouterr().err.strip()
    assert code != 0 and "\n" not in err and err.startswith("tokenmill: error: recipe ")
    expected = {
        "minhash": "its index was made with dedup {exact: true, minhash: {ngram: 5, bands: 14, rows: 8, seed: 1}}, "
                   "this recipe has {exact: true, minhash: {ngram: 5, bands: 20, rows: 5, seed: 1}}",
        "exact": "this recipe has {exact: false, minhash: {ngram: 5, bands: 14, rows: 8, seed: 1}}",
        "no_index": f"{str(d / 'fresh_out')!r} has no dedup index",
        "missing": f"{str(tmp_path / 'nowhere')!r} does not exist",
        "own_output": "is this job's --output",
    }[case]
    assert expected in err
    assert not (tmp_path / "out" / "manifest.json").exists()


def test_against_and_save_index_need_keys(tmp_path):
    with pytest.raises(RecipeError, match="need dedup keys"):
        load_recipe(_recipe(tmp_path, "r", "dedup: {save_index: true}\n"))
    with pytest.raises(RecipeError, match="dedup.against must be an earlier output folder"):
        load_recipe(_recipe(tmp_path, "r", "dedup: {exact: true, against: [3]}\n"))
