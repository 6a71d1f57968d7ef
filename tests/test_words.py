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


def _can_match_only_non_letters(item) -> bool:
    """Whether one parsed regex item (re's parser output) needs a character that is not a letter."""
    from re import _constants as c

    op, av = item
    if op is c.LITERAL:
        return not chr(av).isalpha()
    if op is c.IN:
        for kind, value in av:
            if kind is c.NEGATE or kind is c.CATEGORY:
                return False  # too broad to enumerate: say it may match a letter
            chars = range(value[0], value[1] + 1) if kind is c.RANGE else [value]
            if any(chr(x).isalpha() for x in chars):
                return False
        return True
    if op is c.SUBPATTERN:
        return _requires_non_letter(av[-1])
    if op is c.BRANCH:
        return all(_requires_non_letter(branch) for branch in av[1])
    if op in (c.MAX_REPEAT, c.MIN_REPEAT):
        return av[0] >= 1 and _requires_non_letter(av[2])
    if op is c.ASSERT:
        return av[0] < 0 and _requires_non_letter(av[1])  # a lookbehind reads characters of the chunk (or none)
    return False


def _requires_non_letter(pattern) -> bool:
    """Whether every match of the (parsed) pattern, lookbehinds included, contains a character that is not a letter."""
    return any(_can_match_only_non_letters(item) for item in pattern)


def test_affix_rules_never_match_inside_letters():
    """Why a chunk of letters only is one word unless it is a special case (the splitter's shortcut)."""
    import re._parser as sre_parse

    import spacy

    tokenizer = spacy.blank("en").tokenizer
    for search in (tokenizer.prefix_search, tokenizer.suffix_search, tokenizer.infix_finditer):
        pattern = search.__self__.pattern
        assert _requires_non_letter(sre_parse.parse(pattern)), pattern[:200]
    assert not _requires_non_letter(sre_parse.parse(r"(?<=[0-9])\.|[a-z]+"))  # the check can say no
    assert tokenizer.token_match is None  # url_match may match: it keeps a chunk whole, as the shortcut does


def test_letter_chunks_and_special_cases_split_like_spacy():
    from datatrove.utils.text import split_into_words

    splitter = WordSplitter("eng")
    for chunk in ("cannot", "Gonna", "word", "Straße", "ñandú", "日本語", "слово", "lemme", "xD", "km"):
        assert splitter.chunk_words(chunk) == split_into_words(chunk, "eng"), chunk
    assert splitter.chunk_words("cannot") == ["can", "not"]
