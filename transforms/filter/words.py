"""datatrove's word splitting (spaCy's blank-language tokenizer, whitespace tokens dropped), made fast.

spaCy splits on whitespace first and applies its prefix/suffix/infix rules and exceptions inside each
whitespace-free chunk, so tokenizing each distinct chunk once and caching it gives the very same words as
``datatrove.utils.text.split_into_words`` (the tests check identity on a multilingual corpus) without building a
spaCy ``Doc`` per document: chunks repeat (Zipf), and a cached chunk costs a dict lookup. A chunk made of letters
only is one word unless it is one of spaCy's special cases ("cannot", "gonna"): none of the English prefix, suffix
or infix rules can match inside letters (the tests prove it from the rules themselves), so such chunks skip spaCy.

Other first-seen chunks are split by a Python port of spaCy's per-chunk algorithm (``Tokenizer._split_affixes`` and
``_attach_tokens``, driven by the tokenizer's own special cases and prefix/suffix/infix/URL regexes), which skips
spaCy's ``Doc`` and lexeme creation, then its final special-case pass (a phrase matcher re-joining tokens that spell a
special case, e.g. "foo:]" -> "foo", ":]", with its filter of overlapping matches). The tests check the port against
spaCy on generated chunks of every affix shape and pin the source of the spaCy functions it follows, so an upgrade
that edits them fails. spaCy's rules are read once into a table (``spacy_rules/<lang>.json``, see ``transforms.filter.spacy_tables``; checked against the
installed spaCy by the tests and used only when that spaCy made it; English ships with tokenmill, other languages'
tables are derived on first use and cached per machine): a process never imports spaCy once its table exists.
"""

from __future__ import annotations

import itertools
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from transforms.filter.spacy_tables import (
    SPACY_LANGUAGES,
    bounded_suffix_search,
    compiled_regex,
    letter_skipping_finditer,
    spacy_rules,
)

_WHITESPACE_RUNS = re.compile(r"(\s+)")

MAX_CACHED_CHUNKS = 2_000_000  # chunks or words: about 200-400 MB at most; cleared (not evicted one by one) when full

@dataclass(frozen=True)
class DocWords:
    """One text's words: ids (equal words, equal ids; in the splitter's vocabulary) and lengths, int32 arrays."""

    ids: np.ndarray
    lens: np.ndarray
    chunks: list[str]  # the whitespace-free chunks the words partition

    def joined(self) -> str:
        """The words concatenated without separator (the chunks are split into words without losing a character)."""
        return "".join(self.chunks)

    def ends(self) -> np.ndarray:
        """The words' end offsets in ``joined()``, after a leading 0 (int64)."""
        ends = np.zeros(self.ids.size + 1, np.int64)
        np.cumsum(self.lens, out=ends[1:])
        return ends


class WordSplitter:
    """``split(text)`` == datatrove's ``split_into_words(text, language)``, with a per-process chunk cache."""

    def __init__(self, language: str = "eng") -> None:
        if language not in SPACY_LANGUAGES:
            raise ValueError(f"no fast word splitter for language {language!r} yet (known: {sorted(SPACY_LANGUAGES)})")
        self._language = SPACY_LANGUAGES[language]
        rules = spacy_rules(self._language)
        self._rules: dict[str, tuple[str, ...]] = {chunk: tuple(orths) for chunk, orths in rules["rules"].items()}
        self._special_cases = frozenset(self._rules)
        self._prefix_search = compiled_regex(rules["prefix_search"])
        self._suffix_search = bounded_suffix_search(compiled_regex(rules["suffix_search"]))
        self._infix_finditer = letter_skipping_finditer(compiled_regex(rules["infix_finditer"]))
        self._token_match = compiled_regex(rules["token_match"])
        self._url_match = compiled_regex(rules["url_match"])
        self._sentence_final = frozenset(rules["sentence_final"])
        patterns = {tuple(pattern) for pattern in rules["special_patterns"]}
        self._special_patterns = frozenset(patterns)
        # spaCy retokenizes a match into the special case its text spells: giving back the same tokens changes nothing
        self._changing_patterns = frozenset(p for p in patterns if self._rules.get("".join(p), p) != p)
        self._pattern_starts = frozenset(pattern[0] for pattern in patterns if pattern)
        self._longest_pattern = max(map(len, patterns), default=0)
        self._chunk_ids: dict[str, tuple[int, ...]] = {}
        self._word_ids: dict[str, int] = {}
        self.vocabulary: list[str] = []  # word id -> word
        self._facts: dict[str, tuple[np.ndarray, int]] = {}  # name -> (values by word id, how many are filled)
        self._last_text: str | None = None
        self._last_doc: DocWords | None = None

    def chunk_ids(self, chunk: str) -> tuple[int, ...]:
        """The word ids of one whitespace-free chunk (cached)."""
        self._make_room()
        return self._ids_of_chunk(chunk)

    def _ids_of_chunk(self, chunk: str) -> tuple[int, ...]:
        """``chunk_ids`` without making room: ids given out for the same text stay valid."""
        ids = self._chunk_ids.get(chunk)
        if ids is None:
            if chunk.isalpha() and chunk not in self._special_cases:
                words = [chunk]
            else:
                words = self.chunk_tokens(chunk)  # substrings of a whitespace-free chunk: nothing to strip
            word_ids, vocabulary = self._word_ids, self.vocabulary
            for word in words:
                if word not in word_ids:
                    word_ids[word] = len(vocabulary)
                    vocabulary.append(word)
            ids = self._chunk_ids[chunk] = tuple(word_ids[w] for w in words)
        return ids

    def chunk_words(self, chunk: str) -> list[str]:
        """The words of one whitespace-free chunk (cached)."""
        vocabulary = self.vocabulary
        return [vocabulary[i] for i in self.chunk_ids(chunk)]

    def _make_room(self) -> None:
        """Forget every chunk and word when the caches are full (between texts, never within one): ids start again
        from 0 and facts are recomputed."""
        if len(self._chunk_ids) < MAX_CACHED_CHUNKS and len(self.vocabulary) < MAX_CACHED_CHUNKS:
            return
        self._chunk_ids.clear()
        self._word_ids.clear()
        self.vocabulary.clear()
        self._facts.clear()
        self._last_text, self._last_doc = None, None

    def fact(self, name: str, compute: Callable[[str], int]) -> np.ndarray:
        """``compute(word)`` for every word id so far, as an int32 array indexed by id (computed once per word;
        ``name`` identifies the fact)."""
        values, filled = self._facts.get(name, (None, 0))
        size = len(self.vocabulary)
        if values is None or filled < size:
            if values is None or values.size < size:
                grown = np.zeros(max(size, 2 * (values.size if values is not None else 0), 1024), np.int32)
                if values is not None:
                    grown[:filled] = values[:filled]
                values = grown
            values[filled:size] = np.fromiter(map(compute, self.vocabulary[filled:size]), np.int32, size - filled)
            self._facts[name] = (values, size)
        return values

    def chunk_tokens(self, chunk: str) -> list[str]:
        """spaCy's tokens of one whitespace-free chunk.

        Follows ``Tokenizer._tokenize`` step by step (``_split_affixes`` then ``_attach_tokens``) with the
        tokenizer's own rules and regex callables, then its special-case pass (``_apply_special_cases``): spaCy's
        per-chunk cache only replays these same results.
        """
        rules = self._rules
        special = rules.get(chunk)
        tokens = list(special) if special is not None else self._affix_tokens(chunk)
        starts = self._pattern_starts
        if starts.isdisjoint(tokens):
            return tokens
        patterns, n, longest = self._special_patterns, len(tokens), self._longest_pattern
        matches = [(i, j) for i in range(n) if tokens[i] in starts
                   for j in range(i + 1, min(n, i + longest) + 1) if tuple(tokens[i:j]) in patterns]
        if not any(tuple(tokens[i:j]) in self._changing_patterns for i, j in matches):
            return tokens  # retokenizing these matches would give back the same tokens
        # _filter_special_spans: longest first, leftmost among equals (its len_start_cmp order, walked from the
        # end); a match is kept when neither its first nor its last token is covered by one visited before, and
        # every visited match covers its tokens whether kept or not
        covered: set[int] = set()
        kept: list[tuple[int, int]] = []
        for i, j in sorted(matches, key=lambda m: (m[0] - m[1], m[0])):
            if i not in covered and j - 1 not in covered:
                kept.append((i, j))
            covered.update(range(i, j))
        # _retokenize_special_spans: each kept match becomes the tokens of the special case its text spells
        out: list[str] = []
        done = 0
        for i, j in sorted(kept):
            out += tokens[done:i]
            out += rules["".join(tokens[i:j])]
            done = j
        out += tokens[done:]
        return out

    def _affix_tokens(self, string: str) -> list[str]:
        """``Tokenizer._split_affixes`` and ``_attach_tokens`` on a chunk that is not a special case."""
        rules, token_match = self._rules, self._token_match
        prefix_search, suffix_search = self._prefix_search, self._suffix_search
        prefixes: list[str] = []
        suffixes: list[str] = []
        last_size = 0
        while string and len(string) != last_size:
            if token_match is not None and token_match(string):
                break
            if string in rules or string.isalpha():
                break  # a special case, or letters: no affix rule can match (the tests prove it), so no more affixes
            last_size = len(string)
            match = prefix_search(string)
            pre_len = match.end() - match.start() if match is not None else 0
            if pre_len:
                minus_pre = string[pre_len:]
                if minus_pre and minus_pre in rules:
                    prefixes.append(string[:pre_len])
                    string = minus_pre
                    break
            match = suffix_search(string[pre_len:])
            suf_len = match.end() - match.start() if match is not None else 0
            if suf_len:
                minus_suf = string[:-suf_len]
                if minus_suf and minus_suf in rules:
                    suffixes.append(string[-suf_len:])
                    string = minus_suf
                    break
            if pre_len and suf_len and pre_len + suf_len <= len(string):
                prefixes.append(string[:pre_len])
                suffixes.append(string[-suf_len:])
                string = string[pre_len:-suf_len]
            elif pre_len:
                prefixes.append(string[:pre_len])
                string = minus_pre
            elif suf_len:
                suffixes.append(string[-suf_len:])
                string = minus_suf
        tokens = prefixes
        if string:
            special = rules.get(string)
            if special is not None:
                tokens.extend(special)
            elif string.isalpha():
                tokens.append(string)  # no infix rule matches inside letters either
            elif (token_match is not None and token_match(string)) or (
                self._url_match is not None and self._url_match(string)
            ):
                tokens.append(string)
            else:
                start = 0
                for match in self._infix_finditer(string) if self._infix_finditer is not None else ():
                    infix_start, infix_end = match.span()
                    if infix_start == 0:
                        continue  # spaCy skips an infix at the very start
                    if infix_start != start:
                        tokens.append(string[start:infix_start])
                    if infix_start != infix_end:
                        tokens.append(string[infix_start:infix_end])
                    start = infix_end
                if start < len(string):
                    tokens.append(string[start:])
        tokens.extend(reversed(suffixes))
        return tokens

    def words_of(self, text: str) -> DocWords:
        """The text's words as ids (the last text's are kept: filters in a row share them)."""
        if text is self._last_text:
            return self._last_doc
        self._make_room()
        chunks = text.split()
        parts = list(map(self._chunk_ids.get, chunks))  # C-level lookups; the misses are filled below
        try:
            ids = np.fromiter(itertools.chain.from_iterable(parts), np.int32)
        except TypeError:  # a chunk met for the first time (None is not iterable): fill the misses
            parts = [ids if ids is not None else self._ids_of_chunk(chunk) for ids, chunk in zip(parts, chunks)]
            ids = np.fromiter(itertools.chain.from_iterable(parts), np.int32)
        doc = DocWords(ids, self.fact("length", len)[ids], chunks)
        self._last_text, self._last_doc = text, doc
        return doc

    def split(self, text: str) -> list[str]:
        """Every word of the text, in order: datatrove's ``split_into_words``."""
        vocabulary = self.vocabulary
        return [vocabulary[i] for i in self.words_of(text).ids.tolist()]

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
                final = token is not None and token in self._sentence_final
                if seen_final and not final and not (token is not None and _is_punct(token)):
                    count += 1
                    seen_final = False
                elif final:
                    seen_final = True
        return max(count, 1)  # datatrove's split_into_sentences gives [""] for a text without tokens


_PUNCT_CACHE: dict[str, bool] = {}


def _is_punct(token: str) -> bool:
    """spaCy's IS_PUNCT: every character is Unicode punctuation (category P*)."""
    value = _PUNCT_CACHE.get(token)
    if value is None:
        value = _PUNCT_CACHE[token] = all(unicodedata.category(c).startswith("P") for c in token)
    return value
