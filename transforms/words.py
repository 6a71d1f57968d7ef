"""datatrove's word splitting (spaCy's blank-language tokenizer, whitespace tokens dropped), made fast.

spaCy splits on whitespace first and applies its prefix/suffix/infix rules and exceptions inside each
whitespace-free chunk, so tokenizing each distinct chunk once and caching it gives the very same words as
``datatrove.utils.text.split_into_words`` (the tests check identity on a multilingual corpus) without building a
spaCy ``Doc`` per document: chunks repeat (Zipf), and a cached chunk costs a dict lookup. A chunk made of letters
only is one word unless it is one of spaCy's special cases ("cannot", "gonna"): none of the English prefix, suffix
or infix rules can match inside letters (the tests prove it from the rules themselves), so such chunks skip spaCy.
"""

from __future__ import annotations

import itertools
import re
import unicodedata

_WHITESPACE_RUNS = re.compile(r"(\s+)")

MAX_CACHED_CHUNKS = 2_000_000  # about 200-400 MB at most; cleared (not evicted one by one) when full

# datatrove language code (its tokenizer_assignment.csv) -> spaCy language, for the languages we cache so far
_SPACY_LANGUAGES = {"eng": "en", "en": "en"}


class WordSplitter:
    """``split(text)`` == datatrove's ``split_into_words(text, language)``, with a per-process chunk cache."""

    def __init__(self, language: str = "eng") -> None:
        import spacy

        if language not in _SPACY_LANGUAGES:
            raise ValueError(f"no fast word splitter for language {language!r} yet (known: {sorted(_SPACY_LANGUAGES)})")
        nlp = spacy.blank(_SPACY_LANGUAGES[language])
        nlp.vocab.lex_attr_getters = {}  # lexical attributes (shape, like_num...) never change where words split
        self._tokenizer = nlp.tokenizer
        self._special_cases = frozenset(self._tokenizer.rules)
        self._cache: dict[str, list[str]] = {}
        self._last_text: str | None = None
        self._last_words: list[str] = []

    def chunk_words(self, chunk: str) -> list[str]:
        """The words of one whitespace-free chunk (cached)."""
        words = self._cache.get(chunk)
        if words is None:
            if len(self._cache) >= MAX_CACHED_CHUNKS:
                self._cache.clear()
            if chunk.isalpha() and chunk not in self._special_cases:
                words = [chunk]
            else:
                words = [w for w in (t.text.strip() for t in self._tokenizer(chunk)) if w]
            self._cache[chunk] = words
        return words

    def split(self, text: str) -> list[str]:
        """Every word of the text, in order (the last text's words are kept: filters in a row share them)."""
        if text is self._last_text:
            return self._last_words
        chunks = text.split()
        parts = list(map(self._cache.get, chunks))  # C-level lookups; the misses are filled below
        if None in parts:
            parts = [words if words is not None else self.chunk_words(chunk) for words, chunk in zip(parts, chunks)]
        out = list(itertools.chain.from_iterable(parts))
        self._last_text, self._last_words = text, out
        return out

    def sentence_count(self, text: str) -> int:
        """Sentences spaCy's Sentencizer finds in the text (datatrove's ``len(split_into_sentences(text))``).

        Rebuilt from spaCy's tokens: whitespace runs other than one space are tokens of their own (neither
        punctuation nor sentence-final), and a new sentence starts at the first such or non-punctuation token after
        a sentence-final character.
        """
        count = 0
        seen_final = False
        first = True
        for part in _WHITESPACE_RUNS.split(text):
            if not part:
                continue
            if part.isspace():
                if part == " " and not first:
                    continue  # a single space belongs to the token before it
                tokens: list[str | None] = [None]
            else:
                tokens = self.chunk_words(part)
            for token in tokens:
                if first:
                    count, first = 1, False
                final = token is not None and token in _SENTENCE_FINAL
                if seen_final and not final and not (token is not None and _is_punct(token)):
                    count += 1
                    seen_final = False
                elif final:
                    seen_final = True
        return max(count, 1)  # datatrove's split_into_sentences gives [""] for a text without tokens


def _sentence_final() -> frozenset[str]:
    from spacy.pipeline import Sentencizer

    return frozenset(Sentencizer.default_punct_chars)


_SENTENCE_FINAL = _sentence_final()
_PUNCT_CACHE: dict[str, bool] = {}


def _is_punct(token: str) -> bool:
    """spaCy's IS_PUNCT: every character is Unicode punctuation (category P*)."""
    value = _PUNCT_CACHE.get(token)
    if value is None:
        value = _PUNCT_CACHE[token] = all(unicodedata.category(c).startswith("P") for c in token)
    return value
