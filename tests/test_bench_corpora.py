"""The pure parts of benchmarks/corpora.py: interleaving, script classification, troff to text, writing and checking
a corpus by hash. Nothing is downloaded: the corpora are fake documents written by the module's own writer."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

import corpora  # noqa: E402  (a benchmark script, not a package)


def docs(prefix: str, n: int, size: int = 10, lang: str = "en") -> list[corpora.Doc]:
    """n documents of ``size`` bytes each."""
    return [corpora.make_doc(f"{prefix}{i}", prefix[0] * size, "fake", lang) for i in range(n)]


def ids(stream) -> list[str]:
    return [d.id for d in stream]


def test_interleave_is_a_round_robin_for_equal_weights():
    streams = {"a": docs("a", 3), "b": docs("b", 2), "c": docs("c", 1)}
    order = ids(corpora.interleave(streams, {"a": 1, "b": 1, "c": 1}))
    assert order == ["a0", "b0", "c0", "a1", "b1", "a2"]
    assert ids(corpora.interleave(streams, {"a": 1, "b": 1, "c": 1})) == order  # deterministic


def test_interleave_by_bytes_keeps_every_prefix_proportional():
    big, small = docs("x", 200), docs("y", 50, size=40)  # 2000 and 2000 bytes
    merged = list(corpora.interleave_lists({"big": big, "small": small}))
    assert sorted(ids(merged)) == sorted(ids(big) + ids(small))  # nothing lost, nothing repeated
    for cut in (20, 60, 125):
        prefix = merged[:cut]
        x = sum(d.size for d in prefix if d.id.startswith("x"))
        y = sum(d.size for d in prefix if d.id.startswith("y"))
        assert abs(x - y) <= 40  # the same share of bytes, within one document
    # and a longer document in a stream makes that stream wait accordingly
    assert ids(corpora.interleave({"a": docs("a", 2, size=30), "b": docs("b", 4)}, {"a": 1, "b": 1})) == \
        ["a0", "b0", "b1", "b2", "a1", "b3"]


def test_interleave_streams_iterators_lazily():
    def gen():
        yield from docs("g", 3)
        raise AssertionError("read past what was taken")

    merged = corpora.interleave({"g": gen(), "h": docs("h", 3)}, {"g": 1, "h": 1})
    assert ids(next(merged) for _ in range(4)) == ["g0", "h0", "g1", "h1"]


@pytest.mark.parametrize("text, script", [
    ("Съешь же ещё этих мягких французских булок, да выпей чаю (tea).", "Cyrillic"),
    ("日本語のテキストです。English 少し.", "CJK"),
    ("한국어 문장입니다", "CJK"),
    ("中文文本，包含一些 ASCII。", "CJK"),
    ("Grüße aus Köln, señor: ça va?", "Latin"),
    ("int main(void) { return 0; }", "Latin"),
    ("Ελληνικά κείμενα", "other"),
    ("1234 + 5678 = 6912", "other"),
    ("", "other"),
])
def test_script_of(text, script):
    assert corpora.script_of(text) == script


def test_man_text_keeps_words_drops_markup():
    page = "\n".join([
        '.\\" a comment',
        '.TH CAT 1 "2022" "GNU coreutils"',
        ".SH ИМЯ",
        "cat \\- объединяет файлы",
        ".SH СИНТАКСИС",
        "\\fBcat\\fP [\\fI\\,ПАРАМЕТР\\/\\fP]... \\(em \\[u0436]",
        ".TP",
        ".BR ls (1),",
        '.B "two words"',
    ])
    text = corpora.man_text(page)
    assert "ИМЯ" in text and "cat - объединяет файлы" in text
    assert "cat [ПАРАМЕТР]... — ж" in text
    assert "ls(1)," in text and "two words" in text
    assert "\\" not in text and ".TH" not in text and "comment" not in text


def test_html_text_skips_navigation():
    html = ("<html><body><header>Site header</header><nav>menu</nav><h1>Title</h1><p>Body text here.</p>"
            "<img alt='an icon'><footer><div id='DEBUG'>debug info</div></footer></body></html>")
    text = corpora.prose_text(html, "html")
    assert "Title" in text and "Body text here." in text
    assert not any(word in text for word in ("Site header", "menu", "an icon", "debug"))


def fake_docs() -> list[corpora.Doc]:
    return [
        corpora.make_doc("ru/1", "Привет, мир! " * 30, "pkg-ru", "ru"),
        corpora.make_doc("ja/1", "こんにちは世界。" * 30, "pkg-ja", "ja"),
        corpora.make_doc("en/1", "Hello, world! " * 30, "pkg-en", "en"),
        corpora.make_doc("en/2", "Line one\u2028still one\nline two " * 20, "pkg-en", "en"),
    ]


PACKAGES = {"pkg-en": {"version": "1.0-1", "deb": "pkg-en_1.0-1_all.deb", "sha256": "0" * 64}}


def test_write_then_verify_and_detect_a_changed_file(tmp_path):
    directory = tmp_path / "fake"
    meta = corpora.write_corpus(directory, "fake", fake_docs(), PACKAGES, file_bytes=1500)
    assert len(meta["files"]) > 1  # split at the file size limit
    assert all(f["bytes"] <= 1500 for f in meta["files"])
    assert meta["documents"] == 4
    assert meta["by_script"]["Cyrillic"]["documents"] == 1
    assert meta["by_script"]["CJK"]["documents"] == 1
    assert meta["by_script"]["Latin"]["documents"] == 2
    assert meta["by_lang"]["en"]["text_bytes"] == sum(d.size for d in fake_docs() if d.lang == "en")
    assert meta["fingerprint"] == corpora.fingerprint(meta["files"])

    checked, why = corpora.verify_corpus(directory)
    assert checked == meta and why == ""
    # the records read back as written (a U+2028 inside a text does not split a line)
    assert list(corpora.read_docs(str(directory / f["name"]) for f in meta["files"])) == fake_docs()

    # the same documents give byte-identical files
    again = corpora.write_corpus(tmp_path / "again", "fake", fake_docs(), PACKAGES, file_bytes=1500)
    assert again["fingerprint"] == meta["fingerprint"]

    # one byte less in one file: detected
    victim = directory / meta["files"][1]["name"]
    victim.write_bytes(victim.read_bytes()[:-1])
    checked, why = corpora.verify_corpus(directory)
    assert checked is None and meta["files"][1]["name"] in why

    # the same size but another byte: detected by the sha256
    corpora.write_corpus(directory, "fake", fake_docs(), PACKAGES, file_bytes=1500)
    data = bytearray(victim.read_bytes())
    data[5] ^= 1
    victim.write_bytes(bytes(data))
    checked, why = corpora.verify_corpus(directory)
    assert checked is None and "sha256" in why


def test_verify_rejects_another_builder_version_and_a_missing_file(tmp_path):
    directory = tmp_path / "fake"
    corpora.write_corpus(directory, "fake", fake_docs(), PACKAGES)
    meta_path = directory / "corpus.json"
    meta = json.loads(meta_path.read_text())
    meta_path.write_text(json.dumps(meta | {"builder_version": corpora.BUILDER_VERSION + 1}))
    assert "builder version" in corpora.verify_corpus(directory)[1]
    meta_path.write_text(json.dumps(meta))
    assert corpora.verify_corpus(directory)[1] == ""
    (directory / "part-0000.jsonl").unlink()
    assert "missing" in corpora.verify_corpus(directory)[1]
    assert corpora.verify_corpus(tmp_path / "nothing")[1] == "not built yet"


def test_slice_files_takes_a_prefix_and_reuses_it(tmp_path):
    directory = tmp_path / "fake"
    meta = corpora.write_corpus(directory, "fake", fake_docs(), PACKAGES)
    corpus = corpora.corpus_of(directory, meta)
    first = fake_docs()[0].size
    files = corpora.slice_files(corpus, first / corpora.MB, tmp_path / "slice")
    assert [d.id for d in corpora.read_docs(files)] == ["ru/1"]
    mtime = Path(files[0]).stat().st_mtime_ns
    assert corpora.slice_files(corpus, first / corpora.MB, tmp_path / "slice") == files
    assert Path(files[0]).stat().st_mtime_ns == mtime  # reused, not written again
    assert "fake: 0.0 MB, 4 docs" in corpus.describe()


def test_cache_dir_precedence(tmp_path, monkeypatch):
    monkeypatch.delenv(corpora.CACHE_ENV, raising=False)
    assert corpora.cache_dir() == corpora.DEFAULT_CACHE
    monkeypatch.setenv(corpora.CACHE_ENV, str(tmp_path / "env"))
    assert corpora.cache_dir() == tmp_path / "env"
    assert corpora.cache_dir(tmp_path / "arg") == tmp_path / "arg"


# ---------------------------------------------------------------------------------------------------------------
# the benchmarks' corpus options: real corpora by default, the generated corpus on request
# ---------------------------------------------------------------------------------------------------------------


def test_corpus_arguments_default_to_the_multilingual_corpus():
    import argparse

    import prepare_throughput as pt

    ap = argparse.ArgumentParser()
    pt.corpus_arguments(ap, 75)
    args = ap.parse_args([])
    assert args.corpus == pt.DEFAULT_CORPUS == "multilingual" and args.corpus in pt.REAL_CORPORA
    assert args.slice_mb is None and args.size_mb == 75
    assert ap.parse_args(["--corpus", pt.GENERATED]).corpus == "generated"
    no_size = argparse.ArgumentParser()
    pt.corpus_arguments(no_size, None, default="mix", slice_mb=20)
    args = no_size.parse_args([])
    assert (args.corpus, args.slice_mb, args.size_mb) == ("mix", 20, None)


@pytest.mark.parametrize("module, corpus, slice_mb", [
    ("prepare_throughput", "multilingual", None),
    ("filter_throughput", "multilingual", None),
    ("scoring_overhead", "multilingual", None),
    ("packing", "multilingual", None),
    ("runners", "multilingual", 20),
    ("scale", "mix", None),
])
def test_benchmarks_default_to_a_real_corpus(module, corpus, slice_mb):
    import importlib

    args = importlib.import_module(module).parse_args([])
    assert (args.corpus, args.slice_mb) == (corpus, slice_mb)


def test_fixed_cost_defaults_to_the_multilingual_corpus():
    import fixed_cost

    assert fixed_cost.parse_args([]).corpus == "multilingual"


def test_named_corpus_builds_and_slices(tmp_path, monkeypatch):
    import prepare_throughput as pt

    meta = corpora.write_corpus(tmp_path / "fake", "fake", fake_docs(), PACKAGES)
    corpus = corpora.corpus_of(tmp_path / "fake", meta)
    built = []
    monkeypatch.setattr(corpora, "build", lambda name, cache=None: built.append(name) or corpus)
    files, description = pt.named_corpus("multilingual", None, tmp_path)
    assert files == corpus.files and description.startswith("real: fake:") and built == ["multilingual"]
    assert pt.named_corpus("multilingual", 0, tmp_path)[0] == corpus.files  # 0: the whole corpus
    first = fake_docs()[0].size
    files, description = pt.named_corpus("multilingual", first / corpora.MB, tmp_path)
    assert [d.id for d in corpora.read_docs(files)] == ["ru/1"] and "the first" in description
    files, description = pt.named_corpus("multilingual", 1.0, tmp_path)  # more than the corpus holds: all of it
    assert files == corpus.files and "the whole corpus" in description
