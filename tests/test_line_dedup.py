"""Line and paragraph dedup (``dedup.lines``): exact outputs on a small corpus (boilerplate removed, rarer lines kept,
keep_first, paragraphs, documents left empty rejected), counts that add up, the combination with exact and MinHash
dedup, and the same decisions for any stream size and on both counting paths (key files, Beam combine)."""

from __future__ import annotations

import json
import random
import re
from collections import Counter, defaultdict

import numpy as np
import pytest

from pipelines.filter import FilterConfig
from pipelines.filter import run as run_filter
from schemas import manifest as m
from schemas.documents import iter_documents
from tests.conftest import documents_from_shards, eos_of, hf_ids, prepare, write_jsonl
from transforms.dedup import line_files
from transforms.dedup.keys import make_ref
from transforms.dedup.line_files import LineKeyWriter, frequent_lines_in_files
from transforms.dedup.lines import LineEditor, batch_keys, unit_forms, units
from transforms.dedup.line_steps import CountLines, CountLinesInFiles
from transforms.hashing import utf8
from transforms.recipe.errors import RecipeError
from transforms.recipe.line_dedup import LineDedup
from transforms.recipe.recipes import parse_recipe
from transforms.report.summary import summary_table

FOOTER = "Copyright 2024 Example Corp. All rights reserved."
SHARED = "This line is shared by two documents only."
PARAGRAPH = "Subscribe to our newsletter\nfor the latest updates."


def _docs() -> list[dict]:
    """Eight articles (the first five end with FOOTER; two share SHARED), a page of FOOTER alone, three with
    PARAGRAPH (one of them also has its first line on its own)."""
    docs = []
    for i in range(8):
        text = f"Article {i} opens with a line of its own.\nIts second line, number {i}, is unique too."
        if i in (2, 6):
            text += f"\n{SHARED}"
        if i < 5:
            text += f"\n\n{FOOTER}\n"
        docs.append({"id": f"a{i}", "text": text})
    docs.append({"id": "boilerplate", "text": f"{FOOTER}\n\n   {FOOTER.replace(' ', '  ')}\t\n"})
    for i in range(3):
        docs.append({"id": f"p{i}", "text": f"Post {i} is about gardening.\n\n{PARAGRAPH}\n\n\nPost {i} ends here."})
    docs.append({"id": "lone", "text": "Subscribe to our newsletter\n\nA lone line above, not the paragraph."})
    return docs


def _filter(tmp_path, name, docs, recipe, **kwargs):
    src = tmp_path / f"{name}.jsonl"
    if not src.exists():
        write_jsonl(src, docs)
    (tmp_path / f"{name}.yaml").write_text(recipe)
    out = tmp_path / f"{name}-out"
    manifest = run_filter(FilterConfig(inputs=[str(src)], output=str(out), recipe=str(tmp_path / f"{name}.yaml"),
                                       **kwargs))
    return out, manifest


def _kept(out) -> dict[str, str]:
    return {d["id"]: d["text"] for d in iter_documents(str(out))}


def _files(out, sub) -> list[dict]:
    return [json.loads(line) for f in sorted((out / sub).glob("*.jsonl")) for line in f.open()]


def _tree(out) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for sub in ("shards", "documents", "rejected", "modified")
            for p in sorted((out / sub).rglob("*")) if p.is_file()}


def _content(out) -> tuple:
    """What an output holds, whatever its files: documents in order, rejected and modified records by place."""
    def place(r):
        return r["source"], r["line"]

    return ([(d["id"], d["text"]) for d in iter_documents(str(out))], sorted(_files(out, "rejected"), key=place),
            sorted(_files(out, "modified"), key=place))


def test_units_are_normalised_lines_and_paragraphs_with_what_their_removal_takes():
    text = "\n  Hello,\tworld \r\n\ncafe\u0301\n\n\nB1\nB2\n\n"
    lines = text.split("\n")
    assert units(lines, "line") == [(1, 2, "Hello, world"), (3, 4, "caf\u00e9"), (6, 7, "B1"), (7, 8, "B2")]
    assert units(lines, "paragraph") == [(1, 3, "Hello, world"), (3, 6, "caf\u00e9"), (6, 10, "B1\nB2")]
    assert units(" \n\t\n".split("\n"), "line") == units([""], "paragraph") == []
    for unit in ("line", "paragraph"):
        assert unit_forms(text, unit) == [form for _, _, form in units(lines, unit)]
    keys, ordinals = batch_keys(["x\ny\nx", "y", "\n"], "line", 7)  # a document counts a line once
    assert ordinals.tolist() == [7, 7, 8] and keys[:2].tolist() == sorted(keys[:2].tolist())
    assert keys[2] in keys[:2]


def test_boilerplate_in_five_documents_is_removed_and_a_line_in_two_kept(tmp_path):
    docs = _docs()
    out, manifest = _filter(tmp_path, "c", docs, "dedup: {lines: {min_docs: 3, keep_first: false}}\n",
                            emit_modified=True)
    kept = _kept(out)
    by_id = {d["id"]: d["text"] for d in docs}
    for i in range(5):
        assert kept[f"a{i}"] == by_id[f"a{i}"].replace(f"{FOOTER}\n", "")  # the blank line before it stays
    assert kept["a2"].endswith(SHARED + "\n\n") and kept["a6"].endswith(SHARED)  # in two documents: kept
    for i in range(3):  # each line of the paragraph is in three documents (the lone line makes its first four)
        assert kept[f"p{i}"] == f"Post {i} is about gardening.\n\n\n\nPost {i} ends here."
    assert kept["lone"] == "\nA lone line above, not the paragraph."
    assert "boilerplate" not in kept and list(kept) == [d["id"] for d in docs if d["id"] != "boilerplate"]
    (rejected,) = _files(out, "rejected")
    assert rejected["id"] == "boilerplate" and rejected["reason"] == m.LINES_EMPTY
    assert rejected["stage"] == m.STAGE_DEDUP and rejected["record"] == by_id["boilerplate"]
    c = manifest[m.K_COUNTS]
    changed = [i for i in kept if kept[i] != by_id[i]]
    assert c["docs_rejected"] == {f"{m.STAGE_DEDUP}/{m.LINES_EMPTY}": 1} and c["records"] == len(docs)
    assert c["docs_modified"] == {m.STAGE_DEDUP: len(changed)} and len(changed) == 9
    assert c["lines_removed"] == 5 + 3 * 2 + 1
    assert c["line_bytes_removed"] == sum(len(utf8(by_id[i])) - len(utf8(kept[i])) for i in kept)
    assert c["text_chars"] == sum(len(t) for t in kept.values())
    modified = _files(out, "modified")
    assert [(r["id"], r["original_text"], r["stages"]) for r in modified] == [
        (i, by_id[i], [m.STAGE_DEDUP]) for i in changed]
    assert manifest[m.K_RECIPE][m.R_DEDUP] == {m.R_EXACT: False, m.R_LINES: {
        m.LD_UNIT: "line", m.LD_MIN_DOCS: 3, m.LD_KEEP_FIRST: False}}
    assert m.K_DEDUP not in manifest  # no document dedup: no duplicate rate
    assert re.search(r"\n *lines removed \(dedup\.lines\) +12 \(0\.00 MB\)\n", summary_table(manifest, str(out)))


def test_keep_first_keeps_the_first_occurrence_and_documents_count_once(tmp_path):
    docs = _docs()
    by_id = {d["id"]: d["text"] for d in docs}
    out, manifest = _filter(tmp_path, "k", docs, "dedup: {lines: {min_docs: 6}}\n")  # keep_first: the default
    kept = _kept(out)
    assert kept["a0"] == by_id["a0"]  # FOOTER's first document keeps it (six documents have it)
    assert all(kept[f"a{i}"] == by_id[f"a{i}"].replace(f"{FOOTER}\n", "") for i in range(1, 5))
    assert "boilerplate" not in kept  # it has FOOTER twice (once with other spaces): one document, both removed
    assert [k for k in kept if kept[k] != by_id[k]] == ["a1", "a2", "a3", "a4"]
    assert manifest[m.K_COUNTS]["lines_removed"] == 4
    out, _ = _filter(tmp_path, "k7", docs, "dedup: {lines: {min_docs: 7}}\n")
    assert _kept(out) == by_id  # FOOTER is in six distinct documents, not seven


def test_paragraph_unit_removes_whole_paragraphs_only(tmp_path):
    docs = _docs()
    by_id = {d["id"]: d["text"] for d in docs}
    out, manifest = _filter(tmp_path, "p", docs, "dedup: {lines: {unit: paragraph, min_docs: 3, keep_first: false}}\n")
    kept = _kept(out)
    for i in range(3):  # the paragraph goes with the blank lines after it
        assert kept[f"p{i}"] == f"Post {i} is about gardening.\n\nPost {i} ends here."
    assert kept["lone"] == by_id["lone"]  # its line alone is another paragraph, in one document
    assert all(kept[f"a{i}"] == by_id[f"a{i}"].removesuffix(f"\n{FOOTER}\n") for i in range(5))
    assert "boilerplate" not in kept
    assert manifest[m.K_COUNTS]["lines_removed"] == 3 + 5  # not those of the document rejected
    assert "paragraphs removed (dedup.lines)" in summary_table(manifest, str(out))


def test_with_exact_and_minhash_dedup_copies_do_not_count(tmp_path, ml_texts):
    """A document's exact and near copies are rejected as such and do not make its lines frequent."""
    body = "\n".join(ml_texts[:12])
    assert len(body.split()) > 60
    docs = [{"id": "orig", "text": f"{body}\n{FOOTER}"}, {"id": "exact", "text": f"{body}  \n{FOOTER}"},
            {"id": "near", "text": f"{body}\nOne more line.\n{FOOTER}"}]
    docs += [{"id": f"o{i}", "text": f"Another page, number {i}.\n{FOOTER}"} for i in range(3)]
    recipe = "dedup: {exact: true, minhash: {ngram: 5, bands: 14, rows: 8}, lines: {min_docs: 3}}\n"
    out, manifest = _filter(tmp_path, "x", docs, recipe)
    kept = _kept(out)
    assert kept == {"orig": docs[0]["text"], **{f"o{i}": f"Another page, number {i}." for i in range(3)}}
    reasons = {r["id"]: r["reason"] for r in _files(out, "rejected")}
    assert reasons == {"exact": m.EXACT_DUPLICATE, "near": m.NEAR_DUPLICATE}
    c = manifest[m.K_COUNTS]
    assert c["lines_removed"] == 3 and c["docs_modified"] == {m.STAGE_DEDUP: 3}
    assert manifest[m.K_DEDUP][m.EXACT_DUPLICATE] == 1 and manifest[m.K_DEDUP][m.NEAR_DUPLICATE] == 1
    out, _ = _filter(tmp_path, "x2", docs, "dedup: {lines: {min_docs: 3}}\n")  # without it, copies count
    others = {k: kept[k] for k in kept if k != "orig"}
    assert _kept(out) == {"orig": docs[0]["text"], "near": "One more line.", **others}
    assert {r["id"]: r["reason"] for r in _files(out, "rejected")} == {"exact": m.LINES_EMPTY}


@pytest.fixture(scope="module")
def corpus(ml_texts, tmp_path_factory):
    """Four hundred documents of real text with boilerplate lines of many frequencies, paragraphs and copies."""
    rng = random.Random(5)
    pool = [f"Boilerplate line {k}: menu, share, print." for k in range(30)]
    records = []
    for i in range(400):
        lines = ml_texts[(7 * i) % 2000:(7 * i) % 2000 + rng.randint(2, 6)]
        extra = [pool[min(int(rng.paretovariate(1.2)) - 1, 29)] for _ in range(rng.randint(0, 3))]
        text = "\n".join(lines + extra) + ("\n\n" + PARAGRAPH if i % 7 == 0 else "")
        records.append({"id": f"r{i}", "text": text})
    records += [{"id": f"copy{i}", "text": records[i]["text"]} for i in range(0, 60, 6)]
    d = tmp_path_factory.mktemp("corpus")
    files = [write_jsonl(d / "a.jsonl", records[:200]), write_jsonl(d / "b.jsonl", records[200:])]
    return files, d


RECIPE = "dedup: {exact: true, lines: {min_docs: 4, keep_first: true}}\n"


def _filter_files(files, out, recipe_path, **kwargs):
    return run_filter(FilterConfig(inputs=files, output=str(out), recipe=str(recipe_path), emit_modified=True,
                                   **kwargs))


@pytest.fixture(scope="module")
def one_stream(corpus):
    files, d = corpus
    (d / "r.yaml").write_text(RECIPE)
    return d / "one", _filter_files(files, d / "one", d / "r.yaml")


def test_many_streams_give_the_result_of_one(corpus, one_stream, tmp_path):
    files, d = corpus
    out, manifest = one_stream
    c = manifest[m.K_COUNTS]
    assert c["lines_removed"] > 100 and c["docs_rejected"][f"{m.STAGE_DEDUP}/{m.EXACT_DUPLICATE}"] >= 10
    many = _filter_files(files, tmp_path / "many", d / "r.yaml", stream_bytes=6_000)
    assert many[m.K_STREAMS] > 8
    assert _content(tmp_path / "many") == _content(out)
    assert many[m.K_COUNTS] == c
    two = _filter_files(files, tmp_path / "two", d / "r.yaml", workers=2)  # the same streams in two processes
    assert _tree(tmp_path / "two") == _tree(out) and two[m.K_COUNTS] == c


def test_the_combine_of_remote_runners_gives_the_same_bytes(corpus, one_stream, tmp_path, monkeypatch):
    import pipelines.stream_graph as graph

    files, d = corpus
    out, manifest = one_stream
    made = []

    def recording(config):
        made.append(config)
        return CountLines(config)

    monkeypatch.setattr(graph, "is_local", lambda args: False)  # as on a remote runner: no key files
    monkeypatch.setattr(graph, "shares_files", lambda args, input_bytes: False)
    monkeypatch.setattr(graph, "CountLines", recording)
    spread = _filter_files(files, tmp_path / "spread", d / "r.yaml")
    assert made == [LineDedup("line", 4, True)]
    assert _tree(tmp_path / "spread") == _tree(out) and spread[m.K_COUNTS] == manifest[m.K_COUNTS]


def _random_keys(rng: np.random.Generator, streams: int, docs: int) -> dict[int, list[np.ndarray]]:
    """Per stream, each document's distinct keys: a few heavy hitters, a tail of rarer keys, most unique."""
    common = rng.integers(0, 2**64, 40, dtype=np.uint64)
    out = {}
    for s in range(streams):
        per_doc = []
        for _ in range(docs):
            picked = np.concatenate((common[rng.zipf(1.5, 4) % 40], rng.integers(0, 2**64, 3, dtype=np.uint64),
                                     common[:1] + np.uint64(rng.integers(0, 300))))
            per_doc.append(np.unique(picked))
        out[s] = per_doc
    return out


def test_key_files_and_the_combine_agree_with_a_plain_count(tmp_path, monkeypatch):
    import apache_beam as beam
    from apache_beam.testing.test_pipeline import TestPipeline
    from apache_beam.testing.util import assert_that, equal_to

    monkeypatch.setattr(line_files, "RUN_ROWS", 500)  # several runs per stream
    rng = np.random.default_rng(3)
    keys = _random_keys(rng, 4, 300)
    duplicates = [(1, [(5, m.EXACT_DUPLICATE, "x"), (9, m.NEAR_DUPLICATE, "y")]), (3, [(0, m.EXACT_DUPLICATE, "z")])]
    skip = {make_ref(s, o) for s, found in duplicates for o, _, _ in found}
    docs = defaultdict(set)  # the plain count
    for s, per_doc in keys.items():
        for o, k in enumerate(per_doc):
            if make_ref(s, o) not in skip:
                for key in k.tolist():
                    docs[key].add(make_ref(s, o))
    files, chunks = [], []
    for s, per_doc in keys.items():
        writer = LineKeyWriter(str(tmp_path / f"s{s}"), s)
        for start in range(0, len(per_doc), 64):  # batches, as pass 1 hands them on
            part = per_doc[start:start + 64]
            k = np.concatenate(part)
            o = np.repeat(np.arange(start, start + len(part), dtype=np.uint32), [p.size for p in part])
            writer.add(k, o)
            chunks.append((s, (k, o)))
        files.append(writer.close())
    assert all(f.runs > 1 for f in files)
    for min_docs in (2, 5):
        want = sorted((key, min(refs)) for key, refs in docs.items() if len(refs) >= min_docs)
        for group_rows in (1000, 1 << 21):  # many bucket groups, or one
            got = frequent_lines_in_files(files, np.array(sorted(skip), np.uint64), min_docs, True,
                                          str(tmp_path / "f"), group_rows)
            k, f = got.arrays()
            assert list(zip(k.tolist(), f.tolist())) == want
        config = LineDedup("line", min_docs, True)
        with TestPipeline(runner="FnApiRunner") as p:
            dups = p | "D" >> beam.Create(duplicates)
            combined = (p | "L" >> beam.Create(chunks), dups) | "C" >> CountLines(config)
            in_files = (p | "F" >> beam.Create(files), dups) | "I" >> CountLinesInFiles(config, str(tmp_path / "g"))
            result = (combined, in_files) | beam.Flatten() | beam.Map(
                lambda fl: list(zip(*(a.tolist() for a in fl.arrays())))) | beam.combiners.ToList()
            assert_that(result, equal_to([[want, want]]))


def test_the_editor_removes_only_frequent_lines_of_later_documents():
    from transforms.dedup.lines import FrequentLines, unit_keys
    from transforms.hashing import stable_hash64

    key = unit_keys(["Footer"])
    assert key.tolist() == [stable_hash64("Footer")]
    frequent = FrequentLines(1, keys=key, firsts=np.array([make_ref(0, 2)], np.uint64))
    editor = LineEditor(LineDedup("line", 2, True), frequent)
    assert editor.edit("a\n Footer \nb", make_ref(0, 2)) is None  # the first document keeps it
    assert editor.edit("a\n Footer \nb\nFooter", make_ref(1, 0)) == ("a\nb", 2)
    assert LineEditor(LineDedup("line", 2, False), FrequentLines(0)).edit("Footer", 0) is None


def test_prepare_with_a_token_budget_packs_the_text_left(corpus, tokenizer_path, hf_tokenizer, tmp_path):
    """Pass 1 tokenizes for the budget; a changed document is tokenized again: shards hold the documents' text."""
    files, d = corpus
    (d / "budget.yaml").write_text("dedup: {lines: {min_docs: 3, keep_first: false}}\nscorers: [length]\n"
                                   "select: {tokens: 15000}\n")
    out = tmp_path / "out"
    manifest = prepare(files, out, tokenizer_path, recipe=str(d / "budget.yaml"), emit_documents=True)
    c = manifest[m.K_COUNTS]
    assert c["lines_removed"] > 100 and f"{m.STAGE_SELECT}/{m.BELOW_SELECTION_THRESHOLD}" in c["docs_rejected"]
    texts = [doc["text"] for doc in iter_documents(str(out))]
    assert not any(line.strip() == PARAGRAPH.split("\n")[0] for t in texts for line in t.split("\n"))
    packed = Counter(map(tuple, documents_from_shards(out, eos_of(tokenizer_path))))
    assert packed == Counter(map(tuple, hf_ids(hf_tokenizer, texts)))


@pytest.mark.parametrize("lines, message", [
    ("{unit: word}", "dedup.lines.unit must be one of line, paragraph, got 'word'"),
    ("{min_docs: 1}", "dedup.lines.min_docs must be an integer of at least 2"),
    ("{min_docs: 2.5}", "dedup.lines.min_docs must be an integer"),
    ("{keep_first: 'yes'}", "dedup.lines.keep_first must be true or false"),
    ("{min_doc: 3}", "dedup.lines has unknown key(s) 'min_doc'; valid: unit, min_docs, keep_first"),
    ("[line]", "dedup.lines must be true or a mapping of unit, min_docs, keep_first"),
])
def test_bad_settings_name_the_option(lines, message):
    import yaml

    with pytest.raises(RecipeError) as exc:
        parse_recipe(yaml.safe_load(f"dedup: {{lines: {lines}}}"), "r.yaml")
    assert message in str(exc.value) and "recipe 'r.yaml'" in str(exc.value)


def test_settings_are_recorded_only_when_used():
    plain = parse_recipe({"dedup": {"exact": True}}, "r")
    assert plain.dedup.lines is None and m.R_LINES not in plain.to_dict()[m.R_DEDUP]
    default = parse_recipe({"dedup": {"lines": True}}, "r")
    assert default.dedup.lines == LineDedup("line", 2, True)
    assert default.to_dict()[m.R_DEDUP][m.R_LINES] == {m.LD_UNIT: "line", m.LD_MIN_DOCS: 2, m.LD_KEEP_FIRST: True}
    assert parse_recipe({"dedup": {"lines": False}}, "r").identity() == parse_recipe({}, "r").identity()
    assert default.identity() != parse_recipe({"dedup": {"lines": {"keep_first": False}}}, "r").identity()
    assert m.K_COUNTS and "lines_removed" not in m.Counts().to_dict()
