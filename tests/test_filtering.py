"""The datatrove engine: our wrapper makes exactly datatrove's decisions (run directly) and keeps every one."""

from __future__ import annotations

import itertools

import pytest

from transforms.read.demo_corpus import demo_records
from transforms.filter.chain import DatatroveEngine
from transforms.recipe.recipes import load_recipe, parse_recipe


@pytest.fixture(scope="module")
def varied_corpus(ml_texts):
    """Short multilingual dialogues, joined multilingual pages, Python docstrings and sources, and edge cases."""
    docs = list(ml_texts[:60])
    docs += ["\n\n".join(ml_texts[i:i + 25]) for i in range(100, 400, 25)]  # longer pages, several languages
    docs += [r["text"] for r in itertools.islice(demo_records(), 80) if len(r["text"]) < 6000][:40]
    lines = [f"This is sentence number {i} of a plain English page, and it ends properly." for i in range(12)]
    docs += [
        "\n".join(lines),  # passes C4
        "\n".join(lines[:3] + ["Read our privacy policy here."] + lines[3:]),  # C4 removes the policy line
        "\n".join(lines) + "\nlorem ipsum dolor sit amet",  # lorem ipsum
        "\n".join(lines + ["{"]),  # curly bracket
        "", " ", "\n\n\n", "x" * 5000, "word " * 2000,
    ]
    return docs


def _datatrove_directly(recipe, texts):
    """datatrove's own pipeline steps chained on the documents (not our wrapper): the kept documents."""
    from datatrove.data import Document

    from transforms.filter.registry import datatrove_filter

    data = (Document(text=t, id=str(i)) for i, t in enumerate(texts))
    for stage in recipe.filters:
        data = datatrove_filter(stage).run(data, rank=0, world_size=1)
    return {d.id: d.text for d in data}


@pytest.mark.parametrize("preset", ["fineweb", "gopher", "c4"])
def test_datatrove_engine_agrees_100_percent_with_datatrove(preset, varied_corpus):
    recipe = load_recipe(preset, engine="datatrove")
    ids = [str(i) for i in range(len(varied_corpus))]
    decisions = DatatroveEngine(recipe).apply(varied_corpus, ids)
    assert len(decisions) == len(varied_corpus)
    kept = {i: d.text for i, d in zip(ids, decisions) if d.keep}
    assert kept == _datatrove_directly(recipe, varied_corpus)  # same documents kept, same (modified) text
    for d in decisions:
        if not d.keep:
            assert d.stage in {s.name for s in recipe.filters} and d.reason
    assert 0 < len(kept) < len(varied_corpus)  # the corpus exercises both outcomes


def test_c4_line_removal_is_reported_as_a_modification(varied_corpus):
    recipe = parse_recipe({"filters": [{"name": "c4_quality", "params": {"filter_no_terminal_punct": False}}]}, "c4")
    text = varied_corpus[-8]
    (decision,) = DatatroveEngine(recipe).apply([text], ["p"])
    assert decision.keep and decision.modified_by == ("c4_quality",)
    assert "privacy policy" not in decision.text and decision.text.count("\n") == text.count("\n") - 1


def test_first_dropping_stage_ends_the_chain():
    recipe = parse_recipe({"filters": ["gopher_quality", "c4_quality"]}, "two")
    (decision,) = DatatroveEngine(recipe).apply(["too short"], ["s"])
    assert (decision.keep, decision.stage, decision.reason) == (False, "gopher_quality", "gopher_short_doc")


@pytest.mark.parametrize("preset", ["fineweb", "gopher", "c4"])
def test_fast_engine_makes_the_same_decisions_and_text_as_datatrove(preset, varied_corpus):
    from transforms.filter.chain import FastEngine

    recipe = load_recipe(preset)
    ids = [str(i) for i in range(len(varied_corpus))]
    reference = DatatroveEngine(recipe).apply(varied_corpus, ids)
    engine = FastEngine(recipe)
    for attempt in range(2):  # cold and warm caches
        fast = engine.apply(varied_corpus, ids)
        assert fast == reference, [(i, a, b) for i, (a, b) in enumerate(zip(fast, reference)) if a != b][:3]


@pytest.mark.parametrize("language", ["deu", "fra", "spa", "rus", "tur"])
def test_fast_engine_agrees_for_other_languages(varied_corpus, language):
    """Stages set to another language use that language's fast word splitter: still datatrove's decisions."""
    from dataclasses import replace

    from transforms.filter.chain import FastEngine
    from transforms.filter.words import WordSplitter

    recipe = load_recipe("fineweb")
    recipe = replace(recipe, filters=tuple(replace(s, params={**s.params, "language": language})
                                           for s in recipe.filters))
    ids = [str(i) for i in range(len(varied_corpus))]
    engine = FastEngine(recipe)
    assert sum(isinstance(getattr(rule, "words", None), WordSplitter) for _, rule in engine.stages) >= 3
    assert engine.apply(varied_corpus, ids) == DatatroveEngine(recipe).apply(varied_corpus, ids)


def test_fast_engine_with_changed_parameters_agrees_too(varied_corpus):
    from transforms.filter.chain import FastEngine

    recipe = parse_recipe({"filters": [
        {"name": "gopher_repetition", "params": {"top_n_grams": [[2, 0.1]], "dup_n_grams": [[3, 0.05]],
                                                 "dup_line_frac": None}},
        {"name": "gopher_quality", "params": {"min_doc_words": 5, "max_doc_words": 400, "min_stop_words": 0,
                                              "max_non_alpha_words_ratio": 0.5, "stop_words": ["und", "de"]}},
        {"name": "fineweb_quality", "params": {"line_punct_thr": 0.05, "line_punct_exclude_zero": True,
                                               "stop_chars": [".", "!"], "short_line_length": 10}},
    ]}, "custom")
    ids = [str(i) for i in range(len(varied_corpus))]
    assert FastEngine(recipe).apply(varied_corpus, ids) == DatatroveEngine(recipe).apply(varied_corpus, ids)


def test_ngram_counts_match_datatrove_in_c_and_python():
    """top_ngram / duplicate_chars (compiled and Python) == datatrove's find_top_duplicate / find_all_duplicate,
    on words that join into each other ("a b" / "ab") and on 1-, 2- and 4-byte characters."""
    import random

    import numpy as np
    from datatrove.pipeline.filters.gopher_repetition_filter import find_all_duplicate, find_top_duplicate, get_n_grams

    from transforms.filter import ngrams

    rng = random.Random(5)
    alphabets = (["a", "ab", "b", "ba", "abb"], ["é", "éa", "a", "ß"], ["€", "a€", "😀", "😀€", "x"])
    implementations = [(ngrams.top_ngram_python, ngrams.duplicate_chars_python)]
    if ngrams.COMPILED:
        implementations.append((ngrams._compiled.top_ngram, lambda j, e, n: ngrams._compiled.duplicate_chars(j, e, (n,))[0]))
    cases = 0
    for _ in range(400):
        vocab = rng.choice(alphabets)
        words = [rng.choice(vocab) for _ in range(rng.randint(0, 60))]
        index: dict[str, int] = {}
        ids = np.array([index.setdefault(w, len(index)) for w in words], np.int32)
        lens = np.array([len(w) for w in words], np.int32)
        ends = np.concatenate(([0], np.cumsum(lens))).astype(np.int64)
        joined = "".join(words)
        for n in (1, 2, 3, 5, 8):
            grams = get_n_grams(words, n)
            top = find_top_duplicate(grams) if grams else 0
            for top_ngram, duplicate_chars in implementations:
                count, chars = top_ngram(ids, lens, n)
                assert count * chars == top and (count == 0) == (not grams), (words, n)
                assert duplicate_chars(joined, ends, n) == find_all_duplicate(words, n), (words, n)
            cases += 1
        expected = tuple(find_all_duplicate(words, n) for n in (5, 1, 3))
        assert ngrams.duplicate_chars(joined, ends, (5, 1, 3)) == expected
    assert cases == 2000


def test_ngram_core_is_compiled_where_a_compiler_is():
    """The package build compiles transforms/filter/_ngrams.c; only a machine without a C compiler runs the Python."""
    import shutil
    import sysconfig

    from transforms.filter import ngrams

    if not (shutil.which("cc") or shutil.which("gcc")) or not sysconfig.get_paths().get("include"):
        pytest.skip("no C compiler here: the Python definitions are used")
    assert ngrams.COMPILED


def test_ngram_core_rejects_wrong_buffers():
    import numpy as np

    from transforms.filter import ngrams

    if not ngrams.COMPILED:
        pytest.skip("the C module is not built here")
    with pytest.raises(TypeError, match="ids: expected items of 4 bytes"):
        ngrams.top_ngram(np.zeros(3, np.int64), np.zeros(3, np.int32), 2)
    with pytest.raises(ValueError, match="3 ids but 2 lengths"):
        ngrams.top_ngram(np.zeros(3, np.int32), np.zeros(2, np.int32), 2)
    with pytest.raises(ValueError, match="ends run past the text"):
        ngrams.duplicate_chars("ab", np.array([0, 1, 5], np.int64), (1,))
    with pytest.raises(ValueError, match="must not decrease"):
        ngrams.duplicate_chars("ab", np.array([0, 2, 1], np.int64), (1,))
    with pytest.raises(ValueError, match="n must be >= 1"):
        ngrams.duplicate_chars("ab", np.array([0, 1, 2], np.int64), (2, 0))


def test_language_stage_keeps_wanted_languages_in_both_engines(ml_texts):
    from transforms.filter.chain import FastEngine

    german = "Das ist ein deutscher Text über das Wetter, die Berge und die Menschen in der Stadt. " * 3
    french = "Ceci est un texte français sur le temps, les montagnes et les gens de la ville. " * 3
    english = "This is an English text about the weather, the mountains and the people of the city. " * 3
    recipe = parse_recipe({"filters": [{"name": "language", "params": {"languages": ["de", "en"],
                                                                       "min_score": 0.5}}]}, "lang")
    texts = [german, french, english, "12345 678"]
    for engine in (DatatroveEngine(recipe), FastEngine(recipe)):
        got = [(d.keep, d.reason) for d in engine.apply(texts, ["a", "b", "c", "d"])]
        assert got == [(True, None), (False, "language_not_wanted"), (True, None), (False, "language_not_wanted")]


def test_fast_gopher_repetition_agrees_on_random_repetitive_texts(monkeypatch):
    """Phrases repeated among random words of a tiny vocabulary (words that join into each other: "a b" / "ab")."""
    import random

    from datatrove.data import Document
    from datatrove.pipeline.filters import GopherRepetitionFilter

    from transforms.filter import ngrams
    from transforms.filter.registry import STAGES
    from transforms.filter.stages.gopher_repetition import GopherRepetition
    from transforms.filter.words import WordSplitter

    rng = random.Random(11)
    vocab = ["a", "ab", "b", "ba", "the", "cat", "sat", "on", "mat", "of", "and"]
    default = dict(STAGES["gopher_repetition"].params)
    loose = dict(default, top_n_grams=())  # every text reaches the duplicated n-grams
    splitter = WordSplitter("eng")
    reasons = set()
    for params, compiled in ((default, True), (loose, True), (default, False), (loose, False)):
        if not compiled:
            monkeypatch.setattr(ngrams, "_compiled", None)  # the Python definitions decide the same
        rng = random.Random(11)
        fast = GopherRepetition(params, splitter)
        reference = GopherRepetitionFilter(**params)
        for _ in range(300):
            phrases = [[rng.choice(vocab) for _ in range(rng.randint(2, 8))] for _ in range(rng.randint(1, 6))]
            repeat, size = rng.random(), rng.randint(1, 150)
            words: list[str] = []
            while len(words) < size:
                words += rng.choice(phrases) if rng.random() < repeat else [rng.choice(vocab)]
            text = " ".join(words) + rng.choice(["", ".", "\n\nmore text here"])
            expected = reference.filter(Document(text=text, id=""))
            expected = (True, None) if expected is True else expected
            assert fast.filter(text) == expected, text
            reasons.add(expected[1])
    assert {"top_2_gram", "duplicated_5_n_grams", None} <= reasons and len(reasons) >= 6  # many checks decided


def test_fast_engine_never_imports_spacy():
    """A recipe process starts in a fraction of a second: spaCy's rules come from the shipped table."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from transforms.recipe.recipes import load_recipe\n"
        "from transforms.filter.chain import make_engine\n"
        "from transforms.read.demo_corpus import demo_records\n"
        "texts = [r['text'] for r, _ in zip(demo_records(), range(200))] + ['foo:] (:-) e.g.: x)= :]:]']\n"
        "make_engine(load_recipe('fineweb')).apply(texts, [str(i) for i in range(len(texts))])\n"
        "print('spacy' in sys.modules)\n"
    )
    import importlib.metadata
    import json

    from transforms.filter.spacy_tables import RULES_DIR

    if json.loads((RULES_DIR / "en.json").read_text())["spacy"] != importlib.metadata.version("spacy"):
        pytest.skip("the shipped table is for another spaCy: spaCy is read here")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
