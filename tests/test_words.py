"""The fast word splitter gives exactly datatrove's words (spaCy), on real multilingual text and code."""

from __future__ import annotations

import itertools

import pytest

from transforms.read.demo_corpus import demo_records
from transforms.filter.spacy_tables import SPACY_LANGUAGES as _SPACY_LANGUAGES
from transforms.filter.words import WordSplitter

SPACY_LANGUAGES = sorted(set(_SPACY_LANGUAGES.values()))  # en, de, es, ...
OTHER_LANGUAGES = [code for code, lang in sorted(_SPACY_LANGUAGES.items()) if len(code) == 3 and lang != "en"]


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
    for doc in docs:  # the words partition the whitespace-free chunks: the n-gram rules rely on it
        words = splitter.words_of(doc)
        assert "".join(splitter.split(doc)) == words.joined() == "".join(doc.split())
        assert words.lens.tolist() == [len(w) for w in splitter.split(doc)]
        assert words.ends()[-1] == len(words.joined())


def test_cache_reset_keeps_words_and_facts_right(monkeypatch):
    import transforms.filter.words as words_module

    monkeypatch.setattr(words_module, "MAX_CACHED_CHUNKS", 5)
    splitter = WordSplitter("eng")
    texts = ["the cat sat on the mat.", "a dog, a frog (and) a log!", "the cat sat on the mat."] * 3
    for text in texts:
        words = splitter.split(text)
        lengths = splitter.fact("length", len)[splitter.words_of(text).ids]
        assert lengths.tolist() == [len(w) for w in words]
        assert words == [w for w in text.replace(".", " .").replace(",", " ,").replace("(", "( ").replace(
            ")", " )").replace("!", " !").split()]
    assert len(splitter.vocabulary) <= 5 + 8  # cleared when full (between texts: plus one text's words)


def test_unknown_language_is_a_clear_error():
    with pytest.raises(ValueError, match="no fast word splitter for language 'zxx'"):
        WordSplitter("zxx")


@pytest.mark.parametrize("language", OTHER_LANGUAGES)
def test_identical_to_datatrove_in_other_languages(ml_texts, language):
    """Every language with a fast splitter gives datatrove's words (and sentence counts) for that language."""
    from datatrove.utils.text import split_into_sentences, split_into_words

    docs = ["\n\n".join(ml_texts[i:i + 10]) for i in range(0, 1500, 25)]
    docs += ["«Ça va?» — sí, señor: 3,5 km… 1.000,50 € (z. B. usw.) d'accord l'homme e-mail http://x.org/a?b=1",
             "aujourd'hui, c'est-à-dire qu'il y a peut-être 2 km ; Türkiye'de, İstanbul'da 3'ü"]
    splitter = WordSplitter(language)
    for doc in docs:
        assert splitter.split(doc) == split_into_words(doc, language), doc[:80]
    lines = [line.strip() for t in ml_texts[:300] for line in t.splitlines() if line.strip()]
    for line in lines:
        assert splitter.sentence_count(line) == len(split_into_sentences(line, language)), line


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


@pytest.mark.parametrize("language", SPACY_LANGUAGES)
def test_affix_rules_never_match_inside_letters(language):
    """Why letters alone are one word unless a special case (a shortcut for chunks and for what affixes leave)."""
    import re._parser as sre_parse

    import spacy

    tokenizer = spacy.blank(language).tokenizer
    for search in (tokenizer.prefix_search, tokenizer.suffix_search, tokenizer.infix_finditer):
        pattern = search.__self__.pattern
        assert _requires_non_letter(sre_parse.parse(pattern)), pattern[:200]
    assert not _requires_non_letter(sre_parse.parse(r"(?<=[0-9])\.|[a-z]+"))  # the check can say no
    # token_match and url_match (French, Turkish, Hungarian have a token_match) can only keep a chunk whole, as the
    # shortcut does


def test_letter_chunks_and_special_cases_split_like_spacy():
    from datatrove.utils.text import split_into_words

    splitter = WordSplitter("eng")
    for chunk in ("cannot", "Gonna", "word", "Straße", "ñandú", "日本語", "слово", "lemme", "xD", "km"):
        assert splitter.chunk_words(chunk) == split_into_words(chunk, "eng"), chunk
    assert splitter.chunk_words("cannot") == ["can", "not"]


_PUNCTUATION = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~" + "«»‘’‚“”„…–—¡¿·•′″、。，！？：；（）【】「」¨´°§¶©®™€£¥"
_CORES = ("word", "Word", "WORD", "a", "I", "x", "s", "U", "Straße", "ñandú", "слово", "Слово", "日本語", "λόγος",
          "كلمة", "3", "42", "3.5", "1,000", "10km", "5pm", "2nd", "1990s", "v2", "e-mail", "don't", "o'clock",
          "http://x.org/a")


def _random_chunks(rng, specials: list[str], count: int) -> list[str]:
    """Chunks of the shapes the port meets: affixes of any punctuation around letters, digits and special cases."""
    chunks = []
    for _ in range(count):
        core = rng.choice(specials) if rng.random() < 0.3 else rng.choice(_CORES)
        if rng.random() < 0.2:
            core += rng.choice(_PUNCTUATION) + rng.choice(_CORES + tuple(specials[:50]))
        prefix = "".join(rng.choice(_PUNCTUATION) for _ in range(rng.choice((0, 0, 1, 1, 2, 3))))
        suffix = "".join(rng.choice(_PUNCTUATION + ".,") for _ in range(rng.choice((0, 1, 1, 2, 3))))
        suffix += rng.choice(("", "", "'s", "n't", "’s", ".", "..."))
        chunks.append(prefix + core + suffix)
    return chunks


@pytest.mark.parametrize("language", SPACY_LANGUAGES)
def test_python_affix_splitting_gives_spacys_tokens(language):
    """The splitter's port of spaCy's per-chunk algorithm, checked against spaCy on random and exhaustive chunks."""
    import random

    import spacy

    tokenizer = spacy.blank(language).tokenizer
    splitter = WordSplitter(language)
    specials = sorted(k for k in tokenizer.rules if not any(c.isspace() for c in k))
    chunks = list(specials) + [p + s for p in _PUNCTUATION for s in specials if len(s) <= 3]
    chunks += [c + p + q for c in _CORES for p in _PUNCTUATION for q in ("", ".", ",", ")", '"', "'")]
    chunks += [p + q + c for c in _CORES[:8] for p in _PUNCTUATION for q in ("", "(", '"', "'")]
    chunks += _random_chunks(random.Random(0), specials, 20_000 if language == "en" else 2_000)
    overlapping = 0
    for chunk in chunks:
        expected = [token.text for token in tokenizer(chunk)]
        assert splitter.chunk_tokens(chunk) == expected, chunk
        assert splitter.chunk_words(chunk) == expected, chunk
        tokens = splitter._affix_tokens(chunk) if chunk not in splitter._rules else []
        overlapping += sum(tuple(tokens[i:j]) in splitter._special_patterns
                           for i in range(len(tokens)) for j in range(i + 1, len(tokens) + 1)) > 1
    assert overlapping > 100 or language != "en"  # spaCy's filter of several special-case matches is exercised


def test_special_case_pass_matches_within_chunks(ml_texts):
    """spaCy's last pass re-joins tokens that spell a special case ("foo:]" ends in the emoticon ":]")."""
    import spacy

    tokenizer = spacy.blank("en").tokenizer
    splitter = WordSplitter("eng")
    for chunk in ("foo:]", "f():", "(:", "x)=", "''", "'s'", "(:-)", "'''", ":]:]", "a.b.", "etc.)", "Mr.,", "e.g.:"):
        assert splitter.chunk_words(chunk) == [token.text for token in tokenizer(chunk)], chunk
    assert not any(c.isspace() for k in tokenizer.rules for c in k if not k.isspace())  # no match spans two chunks


def test_ported_spacy_functions_are_unchanged():
    """WordSplitter.chunk_tokens ports these spaCy functions: a spaCy upgrade that edits them must be re-read."""
    import hashlib
    import re
    from pathlib import Path

    import spacy

    source = Path(spacy.__file__).parent / "tokenizer.pyx"
    if not source.exists():
        pytest.skip("this spaCy build ships no tokenizer.pyx")
    text = source.read_text(encoding="utf-8")
    digests = {}
    for name in _PORTED_DIGESTS:
        body = re.search(rf"\n    c?p?def [^\n]*\b{name}\(.*?(?=\n    (?:c?p?def |@))", text, re.S)
        assert body, name
        digests[name] = hashlib.sha256(body.group(0).encode()).hexdigest()[:12]
    assert digests == _PORTED_DIGESTS, digests
    order = re.search(r"\ncdef bint len_start_cmp\(.*?\n\n", text, re.S)  # _filter_special_spans' sort order
    assert order and hashlib.sha256(order.group(0).encode()).hexdigest()[:12] == "7a4d83ff881d", order


_PORTED_DIGESTS = {  # spaCy 3.8's Tokenizer methods (a prefix of the SHA-256 of their source text)
    "__call__": "ef6c99f7ea49", "_tokenize_affixes": "05689dcc8bf5", "_apply_special_cases": "c23e9c442a9a",
    "_try_specials_and_cache": "898da655dbda", "_tokenize": "8fd4f7649654", "_split_affixes": "9ab0d5e678b2",
    "_attach_tokens": "3c84813e6aec", "_filter_special_spans": "773e63445d31", "_prepare_special_spans": "1edadeac0d92",
    "_retokenize_special_spans": "47fa25e357b4", "find_prefix": "f893df202b72", "find_suffix": "7793d9475e7b",
    "find_infix": "fc2c8404e4bb", "add_special_case": "0061423e6508",
}


def test_bounded_suffix_search_and_letter_skipping_infix_scan_find_the_same_matches():
    """The splitter's suffix search (only the end of the string, unbounded alternatives first) and infix scan (from
    the first non-letter) are active for spaCy's English rules and find exactly what the plain regexes find."""
    import random

    import spacy

    from transforms.filter.spacy_tables import bounded_suffix_search, letter_skipping_finditer

    tokenizer = spacy.blank("en").tokenizer
    splitter = WordSplitter("eng")
    assert getattr(splitter._suffix_search, "bounded_width", 0) >= 1
    assert getattr(splitter._infix_finditer, "skips_letters", False)
    rng = random.Random(3)
    specials = sorted(k for k in tokenizer.rules if not any(c.isspace() for c in k))
    strings = _random_chunks(rng, specials, 20_000)
    strings += ["a" * k + "." * d for k in range(8) for d in range(9)]  # the unbounded "\.\.+$" near and far
    strings += ["".join(rng.choice(_PUNCTUATION + "aZ9é") for _ in range(rng.randint(0, 20))) for _ in range(5_000)]
    for s in strings:
        plain, bounded = tokenizer.suffix_search(s), splitter._suffix_search(s)
        assert (plain and plain.span()) == (bounded and bounded.span()), s
        assert [m.span() for m in tokenizer.infix_finditer(s)] == [m.span() for m in splitter._infix_finditer(s)], s
    # patterns of another shape are left as they are
    import re

    other = re.compile(r"^x|y")
    assert bounded_suffix_search(other.search) == other.search
    assert letter_skipping_finditer(re.compile(r"[a-z]+|\.").finditer) == re.compile(r"[a-z]+|\.").finditer


@pytest.mark.parametrize("language", ["en"])
def test_shipped_spacy_rules_are_what_the_installed_spacy_gives(language):
    """transforms/filter/spacy_rules/<lang>.json spares each process importing spaCy; it must be spaCy's rules exactly
    (regenerate with `python -m transforms.filter.spacy_tables` after changing the pinned spaCy)."""
    import importlib.metadata
    import json

    from transforms.filter.spacy_tables import RULES_DIR, extract_spacy_rules

    shipped = json.loads((RULES_DIR / f"{language}.json").read_text(encoding="utf-8"))
    if shipped["spacy"] != importlib.metadata.version("spacy"):
        pytest.skip(f"table made by spaCy {shipped['spacy']}: the splitter reads spaCy itself here")
    assert shipped == json.loads(json.dumps(extract_spacy_rules(language)))  # JSON turns tuples into lists


def test_rules_of_another_spacy_version_are_not_used(tmp_path, monkeypatch):
    import importlib.metadata
    import json

    import transforms.filter.spacy_tables as words_module

    stale = {"spacy": "0.0.1", "language": "en", "rules": {}, "special_patterns": []}
    (tmp_path / "en.json").write_text(json.dumps(stale))
    monkeypatch.setattr(words_module, "RULES_DIR", tmp_path)
    rules = words_module.spacy_rules("en")
    assert rules["spacy"] == importlib.metadata.version("spacy") and "cannot" in rules["rules"]
    assert WordSplitter("eng").chunk_words("cannot") == ["can", "not"]


def test_tables_of_other_languages_are_derived_once_and_cached(tmp_path, monkeypatch):
    import importlib.metadata
    import json

    import transforms.filter.spacy_tables as words_module

    monkeypatch.setenv("TOKENMILL_CACHE_DIR", str(tmp_path))
    cached = tmp_path / "spacy_rules" / importlib.metadata.version("spacy") / "de.json"
    table = words_module.spacy_rules("de")
    assert json.loads(cached.read_text(encoding="utf-8")) == table == json.loads(
        json.dumps(words_module.extract_spacy_rules("de")))
    monkeypatch.setattr(words_module, "extract_spacy_rules", lambda language: pytest.fail("derived again"))
    assert words_module.spacy_rules("de") == table
    monkeypatch.undo()
    (tmp_path / "a-file").write_text("")
    monkeypatch.setenv("TOKENMILL_CACHE_DIR", str(tmp_path / "a-file" / "cache"))  # cannot be created: skipped
    assert words_module.spacy_rules("es")["language"] == "es"
