"""datatrove's word splitting (spaCy's blank-language tokenizer, whitespace tokens dropped), made fast.

spaCy splits on whitespace first and applies its prefix/suffix/infix rules and exceptions inside each
whitespace-free chunk, so tokenizing each distinct chunk once and caching it gives the very same words as
``datatrove.utils.text.split_into_words`` (the tests check identity on a multilingual corpus) without building a
spaCy ``Doc`` per document: chunks repeat (Zipf), and a cached chunk costs a dict lookup. A chunk made of letters
only is one word unless it is one of spaCy's special cases ("cannot", "gonna"): none of the English prefix, suffix
or infix rules can match inside letters (the tests prove it from the rules themselves), so such chunks skip spaCy.

Other first-seen chunks are split by a Python port of spaCy's per-chunk algorithm (``Tokenizer._split_affixes`` and
``_attach_tokens``, driven by the tokenizer's own special cases and compiled prefix/suffix/infix/URL regexes), which
skips spaCy's ``Doc`` and lexeme creation; spaCy's final special-case pass (a phrase matcher re-joining tokens that
spell a special case, e.g. "foo:]" -> "foo", ":]") is replayed where a single match cannot overlap another, and the
rare chunks with several matches go to spaCy itself. The tests check the port against spaCy on generated chunks of
every affix shape and pin the source of the spaCy functions it follows, so an upgrade that edits them fails.
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
        from spacy.attrs import ORTH, intify_attrs
        from spacy.tokenizer import Tokenizer

        if language not in _SPACY_LANGUAGES:
            raise ValueError(f"no fast word splitter for language {language!r} yet (known: {sorted(_SPACY_LANGUAGES)})")
        nlp = spacy.blank(_SPACY_LANGUAGES[language])
        nlp.vocab.lex_attr_getters = {}  # lexical attributes (shape, like_num...) never change where words split
        tokenizer = self._tokenizer = nlp.tokenizer
        self._rules: dict[str, tuple[str, ...]] = {
            chunk: tuple(intify_attrs(spec, _do_deprecated=True)[ORTH] for spec in specs)
            for chunk, specs in tokenizer.rules.items()
        }
        self._special_cases = frozenset(self._rules)
        self._prefix_search = tokenizer.prefix_search
        self._suffix_search = tokenizer.suffix_search
        self._infix_finditer = tokenizer.infix_finditer
        self._token_match = tokenizer.token_match
        self._url_match = tokenizer.url_match
        # spaCy's last pass retokenizes runs of tokens that spell a special case (its tokens without special cases),
        # for the special cases its faster_heuristics keep: the same patterns, from a tokenizer without rules
        bare = Tokenizer(nlp.vocab, rules={}, prefix_search=tokenizer.prefix_search,
                         suffix_search=tokenizer.suffix_search, infix_finditer=tokenizer.infix_finditer,
                         token_match=tokenizer.token_match, url_match=tokenizer.url_match)
        patterns = {
            tuple(token.text for token in bare(chunk)) for chunk in self._rules
            if not tokenizer.faster_heuristics or tokenizer.find_prefix(chunk) or tokenizer.find_infix(chunk)
            or tokenizer.find_suffix(chunk) or " " in chunk
        }
        self._special_patterns = frozenset(patterns)
        # spaCy retokenizes a match into the special case its text spells: giving back the same tokens changes nothing
        self._changing_patterns = frozenset(p for p in patterns if self._rules.get("".join(p), p) != p)
        self._pattern_starts = frozenset(pattern[0] for pattern in patterns if pattern)
        self._longest_pattern = max(map(len, patterns), default=0)
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
                tokens = self.chunk_tokens(chunk)
                if tokens is None:
                    tokens = [token.text for token in self._tokenizer(chunk)]
                words = [w for w in (t.strip() for t in tokens) if w]
            self._cache[chunk] = words
        return words

    def chunk_tokens(self, chunk: str) -> list[str] | None:
        """spaCy's tokens of one whitespace-free chunk, or None where its special-case pass would retokenize them.

        Follows ``Tokenizer._tokenize`` step by step (``_split_affixes`` then ``_attach_tokens``) with the
        tokenizer's own rules and regex callables; spaCy's per-chunk cache only replays these same results.
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
            return tokens
        if len(matches) == 1:  # nothing for spaCy's overlap filter to choose between: the match is retokenized
            i, j = matches[0]
            return tokens[:i] + list(rules["".join(tokens[i:j])]) + tokens[j:]  # changing, so a special case
        return None

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
