"""The ``decontam`` stage: datatrove's normalisation and words, drop and remove with exact outputs, evaluation sets
as JSONL, Parquet, Arrow and text, counts per set, the index built once and part of the job's identity, errors in
one line, determinism, and datatrove's NGramsDecontFilter's decisions on the same inputs."""

from __future__ import annotations

import itertools
import json
from types import SimpleNamespace

import numpy as np
import pytest

from pipelines import cli
from pipelines.filter import FilterConfig, fingerprint, run
from schemas import manifest as m
from schemas.documents import iter_documents
from tests.conftest import write_jsonl
from transforms.filter.chain import make_engine
from transforms.filter import decontam_index
from transforms.filter.decontam_index import NgramHasher, normalize
from transforms.filter.registry import STAGES
from transforms.filter.stages import decontam
from transforms.output.guard import claim_output
from transforms.read.demo_corpus import demo_records
from transforms.recipe.errors import RecipeError
from transforms.recipe.recipes import load_recipe, parse_recipe

TOWER = "The Eiffel Tower, completed in 1889, is 330 metres tall and stands on the Champ de Mars in Paris."
GREEK = "alpha beta gamma delta epsilon"


def _recipe(eval_sets, **params):
    return parse_recipe({"filters": [{"name": "decontam", "params": {"eval_sets": eval_sets, **params}}]}, "t.yaml")


def _decide(recipe, texts):
    return make_engine(recipe).apply(texts, [str(i) for i in range(len(texts))])


@pytest.fixture
def towers(tmp_path):
    return [{"name": "towers", "path": write_jsonl(tmp_path / "towers.jsonl", [{"text": TOWER}])}]


def test_words_are_datatroves_normalised_words(ml_texts, code_texts):
    from datatrove.utils.text import simplify_text
    from datatrove.utils.word_tokenizers import load_word_tokenizer

    tokenizer = load_word_tokenizer("eng")
    hasher = NgramHasher(13, "eng")
    edge = ["İstanbul ΟΔΟΣ. Café naïve 3.14 1,000 ½ ² Ⅻ cannot gonna", "a\u0301 \u0301b  x\u00a0y\x0bz", "",
            " 1.2.3 ", "ｆｕｌｌ ｗｉｄｔｈ and ﬁ ligatures stay (no NFKC, as in datatrove)"]
    for text in ml_texts + code_texts + edge:
        assert normalize(text).split() == simplify_text(text).split()
    for text in ml_texts[::8] + code_texts[:4] + edge:
        assert [hasher.splitter.vocabulary[i] for i in hasher.word_ids(text).tolist()] == \
            tokenizer.word_tokenize(simplify_text(text))


def test_case_punctuation_whitespace_accents_and_numbers_still_match(towers):
    variants = [
        TOWER.upper(),
        "the eiffel-tower;\n\ncompleted   in 1889 -- is 330 metres\ttall and stands on the champ de mars",
        "The Eiffel Tówer completed in 1889 is 330 métres tall and ständs on the Champ de Mars",
        "The Eiffel Tower, completed in 1901, is 412.5 metres tall and stands on the Champ de Mars",
        "The Eiffel Tower — completed in 1889 — is 330 metres tall «and» stands on the Champ de Mars!",
    ]
    changed = "The Eiffel Tower, finished in 1889, is 330 metres high and stands on the Champ de Mars in Paris."
    decisions = _decide(_recipe(towers), variants + [changed, "The Eiffel Tower is tall."])
    assert [d.keep for d in decisions] == [False] * len(variants) + [True, True]
    assert all(d.reason == "contaminated" for d in decisions[:5])
    assert decisions[1].meta == {m.REJ_CONTAMINATION: {
        "set": "towers", "ngram": "the eiffel tower completed in 0 is 0 metres tall and stands on"}}
    assert decisions[-1].counts is None  # shorter than n: nothing to match


def test_drop_mode_counts_per_set(tmp_path):
    a = write_jsonl(tmp_path / "a.jsonl", [{"text": GREEK + " zeta eta"}, {"text": "one two three four five"}])
    b = write_jsonl(tmp_path / "b.jsonl", [{"text": "beta gamma delta epsilon zeta"}])
    recipe = _recipe([{"name": "a", "path": a}, {"name": "b", "path": b}], n=5)
    texts = ["x alpha beta gamma delta epsilon zeta eta y", "one two three four five", "one two three four",
             "alpha beta gamma delta epsilon zeta"]
    got = [(d.keep, d.counts, (d.meta or {}).get(m.REJ_CONTAMINATION)) for d in _decide(recipe, texts)]
    assert got == [
        (False, {"decontam/a/documents": 1, "decontam/a/ngrams": 3, "decontam/b/documents": 1,
                 "decontam/b/ngrams": 1}, {"set": "a", "ngram": GREEK}),
        (False, {"decontam/a/documents": 1, "decontam/a/ngrams": 1}, {"set": "a", "ngram": "one two three four five"}),
        (True, None, None),
        (False, {"decontam/a/documents": 1, "decontam/a/ngrams": 2, "decontam/b/documents": 1,
                 "decontam/b/ngrams": 1}, {"set": "a", "ngram": GREEK}),
    ]
    assert recipe.filters[0].params["index"]["sets"] == {"a": {"items": 2, "ngrams": 4}, "b": {"items": 1, "ngrams": 1}}


def test_remove_mode_cuts_the_shared_pieces(tmp_path):
    fox = "the quick brown fox jumps over the lazy dog"
    path = write_jsonl(tmp_path / "e.jsonl", [{"text": fox}, {"text": GREEK}, {"text": "pi rho sigma tau phi"}])
    cases = {
        "Start here. The Quick, brown fox jumps over the LAZY dog! End of story, with several more words to keep.":
            "Start here. End of story, with several more words to keep.",
        "The quick brown fox jumps over the lazy dog.\nAnd then a story follows with many words in it, so much.":
            "And then a story follows with many words in it, so much.",
        "Some words first and then the quick brown fox jumps over the lazy dog.": "Some words first and then",
        "A the quick brown fox jumps over B C D E F the quick brown fox jumps": "A B C D E F",
        # the cut joins "pi rho" and "sigma tau phi" into an n-gram of the index: cut again
        "k pi rho alpha beta gamma delta epsilon sigma tau phi " + "w " * 20: "k " + "w " * 20,
        "no shared words at all here": "no shared words at all here",
    }
    recipe = _recipe([{"name": "e", "path": path}], n=5, mode="remove", max_removed_fraction=0.9)
    decisions = _decide(recipe, list(cases) + ["x,the quick brown fox jumps"])
    assert [d.text for d in decisions[:len(cases)]] == list(cases.values())
    assert all(d.keep for d in decisions[:len(cases)])
    assert [d.modified_by for d in decisions[:len(cases)]] == [("decontam",)] * (len(cases) - 1) + [()]
    assert decisions[4].counts == {"decontam/e/documents": 1, "decontam/e/ngrams": 2}
    nothing_left = decisions[-1]  # a piece holding a matched word goes whole ("x,the"): nothing is left
    assert not nothing_left.keep and nothing_left.reason == "contaminated"
    assert nothing_left.meta[m.REJ_CONTAMINATION] == {"set": "e", "ngram": "the quick brown fox jumps",
                                                      "removed_fraction": 1.0}
    too_much = "Only this: alpha beta gamma delta epsilon."
    strict = _decide(_recipe([{"name": "e", "path": path}], n=5, mode="remove"), list(cases)[:3] + [too_much])
    assert [d.keep for d in strict] == [True, True, False, False]  # 0.45 and 0.44 of the text go, then 0.64
    assert strict[-1].meta[m.REJ_CONTAMINATION] == {"set": "e", "ngram": GREEK, "removed_fraction": 0.7619}
    assert strict[-1].text == too_much  # a dropped document is rejected as it came


def test_pieces_hold_the_words_of_the_whole_text(ml_texts, code_texts):
    hasher = NgramHasher(13, "eng")
    for text in ml_texts[:3000] + code_texts[:20] + ["ΟΔΟΣ\tΣ. 1.5\n2,0 ﹖x a\u0301\u0301 \u0301"]:
        pieces = text.split()
        counts = hasher.piece_words(pieces)
        assert counts == [hasher.word_ids(piece).size for piece in pieces]
        assert sum(counts) == hasher.word_ids(text).size


def test_ngram_hashes_are_the_polynomial_of_the_word_hashes():
    from transforms.filter.decontam_index import _BASE, ngram_hashes
    from transforms.hashing import mix64

    words = np.random.default_rng(7).integers(0, 2**64 - 1, 3000, dtype=np.uint64)
    for n in (1, 5, 13):
        expected = [sum(int(words[i + j]) * pow(_BASE, n - 1 - j, 1 << 64) for j in range(n)) % (1 << 64)
                    for i in range(words.size - n + 1)]
        assert ngram_hashes(words, n).tolist() == mix64(np.array(expected, np.uint64)).tolist()
    assert ngram_hashes(words[:12], 13).size == 0


def test_eval_sets_as_jsonl_parquet_arrow_and_text_with_custom_fields(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    q = "Which planet of the solar system is known as the red planet"
    a = "Mars is called the red planet because of iron oxide on its surface"
    jsonl = write_jsonl(tmp_path / "qa.jsonl", [{"question": q, "answer": a, "text": "unused"}, {"question": None}])
    pq.write_table(pa.table({"prompt": ["Pick the best answer to the question below"],
                             "choices": [["the mitochondria is the powerhouse of the cell as every student knows",
                                          "no"]]}), tmp_path / "mc.parquet")
    with pa.ipc.new_stream(str(tmp_path / "ds.arrow"), pa.schema([("passage", pa.string())])) as writer:
        writer.write_table(pa.table({"passage": ["rivers flow downhill toward the sea carrying sediment and water"]}))
    (tmp_path / "book.txt").write_text("It was the best of times, it was the worst of times,\nit was the age of "
                                       "wisdom, it was the age of foolishness\n")
    sets = [{"name": "qa", "path": jsonl, "fields": ["question", "answer"]},
            {"name": "mc", "path": str(tmp_path / "*.parquet"), "fields": ["choices"]},
            {"name": "ds", "path": str(tmp_path / "ds.arrow"), "fields": ["passage"]},
            {"name": "book", "path": str(tmp_path / "book.txt")}]
    recipe = _recipe(sets, n=8)
    texts = ["The answer: known as the red planet. Mars is called the red planet, they say.",  # question into answer
             "Remember that the mitochondria is the powerhouse of the cell, ok?",
             "Rivers flow downhill toward the sea carrying sediment",
             "the worst of times it was the age of wisdom",  # across the text file's line break
             "Pick the best answer to the question below please"]  # a field not listed
    decisions = _decide(recipe, texts)
    assert [(d.meta or {}).get(m.REJ_CONTAMINATION, {}).get("set") for d in decisions] == \
        ["qa", "mc", "ds", "book", None]
    sets_index = recipe.filters[0].params["index"]["sets"]
    assert {k: v["items"] for k, v in sets_index.items()} == {"qa": 2, "mc": 1, "ds": 1, "book": 1}
    assert sets_index["qa"]["ngrams"] == len((q + " " + a).split()) - 7


def _one_line_error(params: dict) -> str:
    with pytest.raises(RecipeError) as exc:
        parse_recipe({"filters": [{"name": "decontam", "params": params}]}, "r.yaml")
    message = str(exc.value)
    assert "\n" not in message and message.startswith("recipe 'r.yaml', filter 1 (decontam")
    return message


def test_bad_parameters_and_files_are_one_line_errors(tmp_path, capsys):
    good = write_jsonl(tmp_path / "e.jsonl", [{"text": TOWER, "n": 3}])
    short = write_jsonl(tmp_path / "short.jsonl", [{"text": "too short"}])
    broken = tmp_path / "broken.jsonl"
    broken.write_bytes(b'{"text": "fine words"}\n{oops\n')
    notes = tmp_path / "notes.md"
    notes.write_text(TOWER)
    ok = [{"name": "e", "path": good}]
    cases = [
        ({}, "eval_sets): required"),
        ({"eval_sets": ok, "n": 0}, "decontam.n): expected a number of words, at least 1"),
        ({"eval_sets": ok, "mode": "trim"}, "decontam.mode): expected drop or remove"),
        ({"eval_sets": ok, "max_removed_fraction": 1.5}, "max_removed_fraction): expected a fraction"),
        ({"eval_sets": ok, "language": "xx"}, "decontam.language): no word splitter for 'xx'"),
        ({"eval_sets": ok, "index": {}}, "unknown parameter(s) 'index'"),
        ({"eval_sets": [{"name": "a b", "path": good}]}, "eval_sets[0].name): expected a name"),
        ({"eval_sets": ok + ok}, "eval_sets[1].name): 'e' names two evaluation sets"),
        ({"eval_sets": [{"name": "e", "path": good, "split": "test"}]}, "unknown key(s) 'split'"),
        ({"eval_sets": [{"name": "e", "path": good, "fields": []}]}, "eval_sets[0].fields): expected a non-empty"),
        ({"eval_sets": [{"name": "e", "path": str(tmp_path / "nope.jsonl")}]},
         f"eval set 'e': path {str(tmp_path / 'nope.jsonl')!r}: {str(tmp_path / 'nope.jsonl')!r} does not exist"),
        ({"eval_sets": [{"name": "e", "path": str(tmp_path / "nope*.jsonl")}]}, "nope*.jsonl' matches no file"),
        ({"eval_sets": [{"name": "e", "path": str(notes)}]}, "cannot tell the format of input file"),
        ({"eval_sets": [{"name": "e", "path": good, "fields": ["question"]}]},
         f"no item of {good!r} has the field(s) 'question'"),
        ({"eval_sets": [{"name": "e", "path": good, "fields": ["n"]}]}, f"{good}:1: field 'n' is a int"),
        ({"eval_sets": [{"name": "e", "path": str(broken)}]}, f"{broken}:2 is not valid JSON"),
        ({"eval_sets": [{"name": "s", "path": short}]}, f"eval set 's': no item of {short!r} has 13 words or more"),
    ]
    for params, expected in cases:
        assert expected in _one_line_error(params), params
    recipe = tmp_path / "missing.yaml"
    recipe.write_text("filters: [{name: decontam, params: {eval_sets: [{name: mmlu, path: gone.parquet}]}}]\n")
    args = ["filter", "-i", good, "-o", str(tmp_path / "out"), "--recipe", str(recipe), "--no-progress"]
    assert cli.main(args) == 2 and not (tmp_path / "out").exists()  # stopped before the output was touched
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "eval set 'mmlu': path 'gone.parquet'" in err and "does not exist" in err


def _write_inputs(tmp_path, eval_path: str, mode: str = "drop") -> tuple[str, str, list[dict]]:
    """A corpus (Python sources and docstrings) with evaluation items planted in some documents, its recipe."""
    texts = [r["text"] for r in itertools.islice(demo_records(), 300)]
    # paragraphs of other modules' sources and docstrings: the "benchmark"
    items = [p for t in texts[200:] for p in t.split("\n\n") if 20 <= len(p.split()) <= 80][:40]
    write_jsonl(eval_path, [{"id": k, "prompt": item} for k, item in enumerate(items)])
    records = [{"id": f"doc{i}", "text": t} for i, t in enumerate(texts[:200])]
    for k, i in enumerate(range(0, 200, 10)):
        records[i]["text"] += "\n\n" + items[k % len(items)] + "\n\nThe end."
    recipe = tmp_path / "decontam.yaml"
    recipe.write_text("filters:\n  - name: decontam\n    params:\n      mode: " + mode + "\n      eval_sets:\n"
                      f"        - {{name: bench, path: {json.dumps(eval_path)}, fields: [prompt]}}\n")
    return write_jsonl(tmp_path / "in.jsonl", records), str(recipe), records


def test_filter_end_to_end_counts_add_up_report_and_determinism(tmp_path, monkeypatch):
    builds = []
    real_build = decontam_index.build_index  # (the stage imports it when it builds)
    monkeypatch.setattr(decontam_index, "build_index", lambda *a: builds.append(1) or real_build(*a))
    path, recipe, records = _write_inputs(tmp_path, str(tmp_path / "bench.jsonl"))
    assert cli.main(["filter", "-i", path, "-o", str(tmp_path / "out"), "--recipe", recipe, "--no-progress"]) == 0
    assert len(builds) == 1  # at launch, once: not per document, bundle or stream
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    c = manifest[m.K_COUNTS]
    rejected = [json.loads(x) for f in sorted((tmp_path / "out" / "rejected").glob("*.jsonl")) for x in f.open()]
    kept = {d["id"] for d in iter_documents(str(tmp_path / "out"))}
    assert c["records"] == len(records) == c["docs_written"] + sum(c["docs_rejected"].values())
    assert c["docs_rejected"] == {"decontam/contaminated": len(rejected)} and len(rejected) >= 20
    assert c["stage_counts"]["decontam/bench/documents"] == len(rejected)
    assert c["stage_counts"]["decontam/bench/ngrams"] >= 20 * 7
    assert kept.isdisjoint(r["id"] for r in rejected) and len(kept) + len(rejected) == len(records)
    assert {f"doc{i}" for i in range(0, 200, 10)} <= {r["id"] for r in rejected}
    assert all(r["contamination"]["set"] == "bench" and len(r["contamination"]["ngram"].split()) == 13
               and r["detail"] == "decontam/contaminated" for r in rejected)
    report = (tmp_path / "out" / "report.html").read_text(encoding="utf-8")
    assert "<h2>Decontamination</h2>" in report and ">bench<" in report
    assert not list((tmp_path / "out").glob("_tokenmill_tmp*"))  # the index went with the temp folder
    again = run(FilterConfig(inputs=[path], output=str(tmp_path / "again"), recipe=recipe))
    assert again[m.K_FINGERPRINT] == manifest[m.K_FINGERPRINT] and again[m.K_COUNTS] == c
    for sub in ("documents", "rejected"):
        assert {p.name: p.read_bytes() for p in (tmp_path / "again" / sub).iterdir()} == \
            {p.name: p.read_bytes() for p in (tmp_path / "out" / sub).iterdir()}


def test_remove_mode_end_to_end_keeps_the_documents_without_the_items(tmp_path):
    path, recipe, records = _write_inputs(tmp_path, str(tmp_path / "bench.jsonl"), mode="remove")
    manifest = run(FilterConfig(inputs=[path], output=str(tmp_path / "out"), recipe=recipe, emit_modified=True))
    c = manifest[m.K_COUNTS]
    kept = {d["id"]: d["text"] for d in iter_documents(str(tmp_path / "out"))}
    assert c["docs_written"] + c["docs_rejected"].get("decontam/contaminated", 0) == len(records)
    assert c["docs_modified"]["decontam"] + c["docs_rejected"].get("decontam/contaminated", 0) == \
        c["stage_counts"]["decontam/bench/documents"] >= 20
    texts = {r["id"]: r["text"] for r in records}
    items = [json.loads(x)["prompt"] for x in open(tmp_path / "bench.jsonl")]
    for i in range(0, 200, 10):
        if f"doc{i}" in kept:
            assert kept[f"doc{i}"].endswith("The end.") and not any(item in kept[f"doc{i}"] for item in items)
            assert kept[f"doc{i}"].startswith(texts[f"doc{i}"].rsplit("\n\n", 2)[0][:100])


def test_the_index_is_identity_and_workers_load_its_file(tmp_path):
    import fsspec

    eval_url = "memory://decontam-test/bench.jsonl"  # invisible to other processes: they can only load the file
    path, recipe_path, _ = _write_inputs(tmp_path, str(tmp_path / "bench.jsonl"))
    with fsspec.open(eval_url, "wb") as fh:
        fh.write((tmp_path / "bench.jsonl").read_bytes())
    recipe_path = tmp_path / "memory.yaml"
    recipe_path.write_text((tmp_path / "decontam.yaml").read_text().replace(str(tmp_path / "bench.jsonl"), eval_url))
    cfg = FilterConfig(inputs=[path], output=str(tmp_path / "out"), recipe=str(recipe_path))
    first = fingerprint(cfg, load_recipe(str(recipe_path)))
    assert fingerprint(cfg, load_recipe(str(recipe_path))) == first  # deterministic
    manifest = run(FilterConfig(inputs=[path], output=str(tmp_path / "out"), recipe=str(recipe_path),
                                recipe_processes=2))
    assert manifest[m.K_FINGERPRINT] == first and manifest[m.K_COUNTS]["docs_rejected"]["decontam/contaminated"] >= 20
    before = load_recipe(str(recipe_path)).filters[0]
    with fsspec.open(eval_url, "ab") as fh:
        fh.write(b'{"prompt": "a brand new evaluation item with more than thirteen words in it, so it counts"}\n')
    assert fingerprint(cfg, load_recipe(str(recipe_path))) != first  # a changed evaluation file: another job
    decontam._INDEXES.clear()  # as in another process, given the recipe loaded before the change, not placed
    with pytest.raises(RecipeError, match="the evaluation files changed since the recipe was loaded"):
        STAGES["decontam"].index(before)
    stage = load_recipe(str(recipe_path)).filters[0]
    placed = STAGES["decontam"].place_files(stage, str(tmp_path / "tmp"))
    sha = stage.params["index"]["sha256"]
    assert placed.files == {"index": str(tmp_path / "tmp" / f"decontam-{sha}.npy")} and placed.params == stage.params
    fsspec.filesystem("memory").rm(eval_url)
    decontam._INDEXES.clear()  # as in a fresh worker process
    index = STAGES["decontam"].index(placed)
    assert isinstance(index.table, np.memmap) and index.hashes.size == stage.params["index"]["sets"]["bench"]["ngrams"]
    with claim_output(str(tmp_path / "out"), manifest[m.K_FINGERPRINT], overwrite=False):
        (tmp_path / "out" / "_tokenmill_tmp" / f"decontam-{sha}.npy").write_bytes(b"left by a crash")
    with claim_output(str(tmp_path / "out"), manifest[m.K_FINGERPRINT], overwrite=False):
        pass  # a leftover index is the run's own temp file: removed, not refused


def _datatrove_decisions(items: list[tuple[str, str]], texts: list[str], n: int, folder) -> list[bool]:
    """datatrove's NGramsDecontFilter over an index made by its NGramsDecontIndexer.compute_hashes (query then
    label; its run() needs lighteval's task registry, not installed here), with query n-grams on, and sha1 hashes
    (its default xxhash64 is given str, which xxhash 4 refuses)."""
    from datatrove.data import Document
    from datatrove.pipeline.decont.n_grams import NGramsDecontConfig, NGramsDecontFilter, NGramsDecontIndexer
    from datatrove.utils.hashing import HashConfig, create_hash_func
    from datatrove.utils.word_tokenizers import load_word_tokenizer

    config = NGramsDecontConfig(n_grams=n, find_query_ngrams=True, hash_config=HashConfig(hash_fc="sha1"))
    indexer = SimpleNamespace(tokenizer=load_word_tokenizer("eng"), config=config,
                              hash_func=create_hash_func(config.hash_config))
    hashes = set()
    for query, label in items:
        hashes.update(NGramsDecontIndexer.compute_hashes(indexer, label, query))
    np.array(sorted(hashes), dtype=np.uint64).tofile(folder / "bench.index.hashes")
    dt_filter = NGramsDecontFilter(index_folder=str(folder), config=config)
    return [dt_filter.filter(Document(text=t, id=str(i))) is True for i, t in enumerate(texts)]


def test_decisions_equal_datatroves_ngram_filter(ml_texts, tmp_path):
    conversations = [t.split("\n") for t in ml_texts[:1200]]
    items = [(c[0], c[1]) for c in conversations[::5] if len(c) >= 2]  # question, answer
    texts = ml_texts[:1200] + ["\n".join(q.upper() + " " + a for q, a in items[:50])]
    path = write_jsonl(tmp_path / "qa.jsonl", [{"q": q, "a": a} for q, a in items])
    for n in (8, 13):
        recipe = _recipe([{"name": "qa", "path": path, "fields": ["q", "a"]}], n=n)
        ours = [d.keep for d in _decide(recipe, texts)]
        folder = tmp_path / f"dt{n}"
        folder.mkdir()
        assert ours == _datatrove_decisions(items, texts, n, folder)
        assert 100 < ours.count(False) < len(texts) // 4  # found contamination, and not everywhere
