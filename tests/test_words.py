"""The fast word splitter gives exactly datatrove's words (spaCy), on real multilingual text and code."""

from __future__ import annotations

import itertools

import pytest

from transforms.demo_corpus import demo_records
from transforms.words import WordSplitter


def test_identical_to_datatrove_split_into_words(ml_texts):
    from datatrove.utils.text import split_into_words

    docs = ["\n\n".join(ml_texts[i:i + 10]) for i in range(0, 1500, 10)]
    docs += [r["text"] for r in itertools.islice(demo_records(), 30)]
    docs += ["don't can't won't U.S.A. e-mail http://x.org/a?b=1 (see p. 3) «quotes» — dash… $5.00 50% C++ a\u00a0b",
             "tabs\tand\u2003em spaces\r\nand CRLF", "", "   "]
    splitter = WordSplitter("eng")
    for doc in docs:
        assert splitter.split(doc) == split_into_words(doc, "eng"), doc[:80]
    assert all(splitter.split(doc) == split_into_words(doc, "eng") for doc in docs[:20])  # warm cache too


def test_unknown_language_is_a_clear_error():
    with pytest.raises(ValueError, match="no fast word splitter for language 'zxx'"):
        WordSplitter("zxx")


def test_sentence_count_is_datatroves(ml_texts):
    from datatrove.utils.text import split_into_sentences

    lines = [line.strip() for t in ml_texts[:1500] for line in t.splitlines() if line.strip()]
    lines += ["Hello.  World", "A.  !B", "Dr. Smith went home. He slept!", "Wait... what?? Yes!!", "x\tyz. ab",
              "end.\u00a0Next one", "¿Qué? ¡Sí! No.", "一。二！三？", " lead. trail ", ""]
    splitter = WordSplitter("eng")
    for line in lines:
        assert splitter.sentence_count(line) == len(split_into_sentences(line, "eng")), line
