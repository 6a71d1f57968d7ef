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
that edits them fails. spaCy's rules are read once into a table (``spacy_rules/<lang>.json``, checked against the
installed spaCy by the tests and used only when that spaCy made it; English ships with tokenmill, other languages'
tables are derived on first use and cached per machine): a process never imports spaCy once its table exists.
"""

from __future__ import annotations

import itertools
import json
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

_WHITESPACE_RUNS = re.compile(r"(\s+)")

MAX_CACHED_CHUNKS = 2_000_000  # chunks or words: about 200-400 MB at most; cleared (not evicted one by one) when full

# datatrove language code (ISO 639-3 as in its tokenizer_assignment.csv, or 639-1) -> spaCy language: languages
# datatrove splits with spaCy's blank tokenizer and whose affix rules never match inside letters (the tests check
# that, the port against spaCy, and the words against datatrove's on a multilingual corpus, for each of them)
_SPACY_LANGUAGES = {
    code: spacy for spacy, iso3 in (
        ("en", "eng"), ("de", "deu"), ("fr", "fra"), ("es", "spa"), ("it", "ita"), ("pt", "por"), ("nl", "nld"),
        ("ru", "rus"), ("pl", "pol"), ("sv", "swe"), ("da", "dan"), ("nb", "nob"), ("fi", "fin"), ("cs", "ces"),
        ("sk", "slk"), ("sl", "slv"), ("hr", "hrv"), ("ro", "ron"), ("hu", "hun"), ("tr", "tur"), ("uk", "ukr"),
        ("bg", "bul"), ("el", "ell"), ("ca", "cat"), ("lt", "lit"), ("lv", "lav"), ("et", "est"))
    for code in (spacy, iso3)
}


def _alternatives(pattern: re.Pattern) -> list | None:
    """The top-level alternatives of a compiled pattern, parsed (None if it is not one alternation)."""
    from re import _constants, _parser

    parsed = _parser.parse(pattern.pattern, pattern.flags)
    if len(parsed.data) == 1 and parsed.data[0][0] is _constants.BRANCH:
        return list(parsed.data[0][1][1])
    return [parsed] if parsed.data else None


def bounded_suffix_search(search: Callable | None) -> Callable | None:
    """``search`` (a compiled suffix regex's ``search``: alternatives each ending at ``$``) looking only at the end
    of the string: a match of an alternative at most W characters wide starts within the last W characters, so
    the search starts there (lookbehinds still see the characters before, as ``re`` does), and only the
    alternatives of unbounded width are searched over the whole string first. Same match, not O(length) scans.
    Returns ``search`` itself where the pattern does not have this shape."""
    from re import _constants, _parser

    pattern = getattr(search, "__self__", None)
    if not isinstance(pattern, re.Pattern) or getattr(search, "__name__", "") != "search":
        return search
    alternatives = _alternatives(pattern)
    if not alternatives or any(not alt.data or alt.data[-1] != (_constants.AT, _constants.AT_END)
                               for alt in alternatives):
        return search
    widths = [alt.getwidth()[1] for alt in alternatives]
    bounded = [w for w in widths if w < _constants.MAXREPEAT]
    width = max(bounded, default=0)
    # the unbounded alternatives, in their order, as a pattern of their own: their source text
    pieces = _top_level_alternatives(pattern.pattern)
    if len(pieces) != len(alternatives) or any(
        _parser.parse(piece, pattern.flags).getwidth()[1] != w for piece, w in zip(pieces, widths)
    ):
        return search
    unbounded_pieces = [piece for piece, w in zip(pieces, widths) if w >= _constants.MAXREPEAT]
    unbounded = re.compile("|".join(unbounded_pieces), pattern.flags).search if unbounded_pieces else None
    full = pattern.search

    def suffix_search(string: str) -> re.Match | None:
        start = len(string) - width
        if start <= 0:
            return full(string)
        if unbounded is not None:
            match = unbounded(string)
            if match is not None and match.start() < start:
                return match  # only an unbounded alternative can match that far from the end: the leftmost match
        return full(string, start)

    suffix_search.bounded_width = width  # type: ignore[attr-defined]
    return suffix_search


def _top_level_alternatives(source: str) -> list[str]:
    """A regex source split at its top-level ``|`` (outside groups and character classes)."""
    pieces, depth, start, i, in_class = [], 0, 0, 0, False
    while i < len(source):
        char = source[i]
        if char == "\\":
            i += 2
            continue
        if in_class:
            in_class = char != "]"
        elif char == "[":
            in_class = True
            i += 1
            if source[i : i + 1] == "^":
                i += 1
            if source[i : i + 1] == "]":
                i += 1  # a "]" first in a class is a literal
            continue
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        elif char == "|" and depth == 0:
            pieces.append(source[start:i])
            start = i + 1
        i += 1
    pieces.append(source[start:])
    return pieces


def letter_skipping_finditer(finditer: Callable | None) -> Callable | None:
    """``finditer`` of a compiled infix regex whose every alternative starts by consuming a character that is not
    an ASCII letter: no match starts on such a letter, so the scan starts at the first other character (the same
    matches). Returns ``finditer`` itself where the pattern does not have this shape."""
    from re import _constants

    pattern = getattr(finditer, "__self__", None)
    if not isinstance(pattern, re.Pattern) or getattr(finditer, "__name__", "") != "finditer":
        return finditer
    alternatives = _alternatives(pattern)
    if not alternatives:
        return finditer
    for alt in alternatives:
        consumed = [item for item in alt.data if item[0] not in (_constants.ASSERT, _constants.ASSERT_NOT)]
        if not consumed or not _never_ascii_letter(consumed[0]):
            return finditer
    letters = re.compile("[A-Za-z]*").match

    def infix_finditer(string: str):
        return pattern.finditer(string, letters(string).end())

    infix_finditer.skips_letters = True  # type: ignore[attr-defined]
    return infix_finditer


def _never_ascii_letter(item: tuple) -> bool:
    """Whether one parsed regex item can only start with a character that is not an ASCII letter."""
    from re import _constants

    op, av = item
    if op is _constants.LITERAL:
        return not (chr(av).isascii() and chr(av).isalpha())
    if op is _constants.IN:
        for kind, value in av:
            if kind is _constants.LITERAL:
                if chr(value).isascii() and chr(value).isalpha():
                    return False
            elif kind is _constants.RANGE:
                if any(chr(x).isascii() and chr(x).isalpha() for x in range(value[0], min(value[1], 127) + 1)):
                    return False
            else:
                return False  # negations, categories: may match a letter
        return True
    if op is _constants.BRANCH:
        return all(branch.data and _never_ascii_letter(branch.data[0]) for branch in av[1])
    if op is _constants.SUBPATTERN:
        return bool(av[-1].data) and _never_ascii_letter(av[-1].data[0])
    if op in (_constants.MAX_REPEAT, _constants.MIN_REPEAT):
        return av[0] >= 1 and bool(av[2].data) and _never_ascii_letter(av[2].data[0])
    return False


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
        if language not in _SPACY_LANGUAGES:
            raise ValueError(f"no fast word splitter for language {language!r} yet (known: {sorted(_SPACY_LANGUAGES)})")
        self._language = _SPACY_LANGUAGES[language]
        rules = spacy_rules(self._language)
        self._rules: dict[str, tuple[str, ...]] = {chunk: tuple(orths) for chunk, orths in rules["rules"].items()}
        self._special_cases = frozenset(self._rules)
        self._prefix_search = _compiled(rules["prefix_search"])
        self._suffix_search = bounded_suffix_search(_compiled(rules["suffix_search"]))
        self._infix_finditer = letter_skipping_finditer(_compiled(rules["infix_finditer"]))
        self._token_match = _compiled(rules["token_match"])
        self._url_match = _compiled(rules["url_match"])
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


def _blank_tokenizer(language: str):
    """spaCy's tokenizer of a blank pipeline for the language, without lexical attributes (which never change
    where words split)."""
    import spacy

    nlp = spacy.blank(language)
    nlp.vocab.lex_attr_getters = {}
    return nlp.tokenizer


def _regex_spec(method: Callable | None) -> list | None:
    """[method name, pattern, flags] of a compiled regex's bound method (None stays None)."""
    if method is None:
        return None
    return [method.__name__, method.__self__.pattern, method.__self__.flags]


def _compiled(spec: list | None) -> Callable | None:
    """The bound method a ``_regex_spec`` describes."""
    return None if spec is None else getattr(re.compile(spec[1], spec[2]), spec[0])


def extract_spacy_rules(language: str) -> dict:
    """What the splitter needs of spaCy's tokenizer for a language, read from the installed spaCy: special cases,
    affix/infix/URL regexes, the token runs its special-case pass re-joins, and the Sentencizer's final marks."""
    import importlib.metadata

    from spacy.attrs import ORTH, intify_attrs
    from spacy.pipeline import Sentencizer
    from spacy.tokenizer import Tokenizer

    tokenizer = _blank_tokenizer(language)
    rules = {chunk: [intify_attrs(spec, _do_deprecated=True)[ORTH] for spec in specs]
             for chunk, specs in sorted(tokenizer.rules.items())}
    # spaCy's last pass retokenizes runs of tokens that spell a special case (its tokens without special cases),
    # for the special cases its faster_heuristics keep: the same patterns, from a tokenizer without rules
    bare = Tokenizer(tokenizer.vocab, rules={}, prefix_search=tokenizer.prefix_search,
                     suffix_search=tokenizer.suffix_search, infix_finditer=tokenizer.infix_finditer,
                     token_match=tokenizer.token_match, url_match=tokenizer.url_match)
    patterns = {
        tuple(token.text for token in bare(chunk)) for chunk in rules
        if not tokenizer.faster_heuristics or tokenizer.find_prefix(chunk) or tokenizer.find_infix(chunk)
        or tokenizer.find_suffix(chunk) or " " in chunk
    }
    return {
        "spacy": importlib.metadata.version("spacy"),
        "language": language,
        "rules": rules,
        "prefix_search": _regex_spec(tokenizer.prefix_search),
        "suffix_search": _regex_spec(tokenizer.suffix_search),
        "infix_finditer": _regex_spec(tokenizer.infix_finditer),
        "token_match": _regex_spec(tokenizer.token_match),
        "url_match": _regex_spec(tokenizer.url_match),
        "special_patterns": sorted(map(list, patterns)),
        "sentence_final": sorted(Sentencizer.default_punct_chars),
    }


RULES_DIR = Path(__file__).with_name("spacy_rules")
SHIPPED_LANGUAGES = ("en",)  # tables in RULES_DIR; other languages' are derived once per machine and cached


def rules_cache_dir() -> Path:
    """Where tables of languages not shipped are kept once derived: $TOKENMILL_CACHE_DIR, else the user's cache."""
    import os

    root = os.environ.get("TOKENMILL_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "tokenmill")
    return Path(root) / "spacy_rules"


def spacy_rules(language: str) -> dict:
    """``extract_spacy_rules(language)``: from the table shipped in ``RULES_DIR`` or cached in ``rules_cache_dir()``
    when the installed spaCy made it (no spaCy import: a process starts in milliseconds instead of a second), else
    from spaCy itself, then cached for the next process (a cache that cannot be written is skipped)."""
    import importlib.metadata
    import os

    version = importlib.metadata.version("spacy")
    cached = rules_cache_dir() / version / f"{language}.json"
    for path in (RULES_DIR / f"{language}.json", cached):
        if path.exists():
            table = json.loads(path.read_text(encoding="utf-8"))
            if table.get("spacy") == version and table.get("language") == language:
                return table
    text = json.dumps(extract_spacy_rules(language), ensure_ascii=False)
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        temp = cached.with_suffix(f".{os.getpid()}.tmp")
        temp.write_text(text, encoding="utf-8")
        os.replace(temp, cached)  # whole or absent, also with several processes deriving it at once
    except OSError:
        pass
    return json.loads(text)


_PUNCT_CACHE: dict[str, bool] = {}


def _is_punct(token: str) -> bool:
    """spaCy's IS_PUNCT: every character is Unicode punctuation (category P*)."""
    value = _PUNCT_CACHE.get(token)
    if value is None:
        value = _PUNCT_CACHE[token] = all(unicodedata.category(c).startswith("P") for c in token)
    return value


if __name__ == "__main__":  # python -m transforms.filter.words [--cache-all]: the shipped tables, or every language's cache
    import sys

    if "--cache-all" in sys.argv[1:]:  # e.g. when building a worker image: no process derives a table at run time
        for spacy_language in sorted(set(_SPACY_LANGUAGES.values())):
            spacy_rules(spacy_language)
        print(f"cached in {rules_cache_dir()}")
    else:
        RULES_DIR.mkdir(exist_ok=True)
        for spacy_language in SHIPPED_LANGUAGES:
            target = RULES_DIR / f"{spacy_language}.json"
            target.write_text(json.dumps(extract_spacy_rules(spacy_language), ensure_ascii=False, indent=0) + "\n",
                              encoding="utf-8")
            print(f"wrote {target}")
