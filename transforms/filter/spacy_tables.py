"""spaCy's tokenizer rules as data: which languages the fast splitter serves, the table of each language's special
cases and affix/infix/URL regexes (shipped for English, derived once per machine for the others), and the two regex
speed-ups the splitter applies to them.

The tables spare each process importing spaCy; ``transforms.filter.words`` splits text with them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

# datatrove language code (ISO 639-3 as in its tokenizer_assignment.csv, or 639-1) -> spaCy language: languages
# datatrove splits with spaCy's blank tokenizer and whose affix rules never match inside letters (the tests check
# that, the port against spaCy, and the words against datatrove's on a multilingual corpus, for each of them)
SPACY_LANGUAGES = {
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


def _blank_tokenizer(language: str):
    """spaCy's tokenizer of a blank pipeline for the language, without lexical attributes (which never change
    where words split)."""
    import spacy

    nlp = spacy.blank(language)
    nlp.vocab.lex_attr_getters = {}
    return nlp.tokenizer


def regex_spec(method: Callable | None) -> list | None:
    """[method name, pattern, flags] of a compiled regex's bound method (None stays None)."""
    if method is None:
        return None
    return [method.__name__, method.__self__.pattern, method.__self__.flags]


def compiled_regex(spec: list | None) -> Callable | None:
    """The bound method a ``regex_spec`` describes."""
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
        "prefix_search": regex_spec(tokenizer.prefix_search),
        "suffix_search": regex_spec(tokenizer.suffix_search),
        "infix_finditer": regex_spec(tokenizer.infix_finditer),
        "token_match": regex_spec(tokenizer.token_match),
        "url_match": regex_spec(tokenizer.url_match),
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


if __name__ == "__main__":  # python -m transforms.filter.spacy_tables [--cache-all]: the shipped tables, or every language's cache
    import sys

    if "--cache-all" in sys.argv[1:]:  # e.g. when building a worker image: no process derives a table at run time
        for spacy_language in sorted(set(SPACY_LANGUAGES.values())):
            spacy_rules(spacy_language)
        print(f"cached in {rules_cache_dir()}")
    else:
        RULES_DIR.mkdir(exist_ok=True)
        for spacy_language in SHIPPED_LANGUAGES:
            target = RULES_DIR / f"{spacy_language}.json"
            target.write_text(json.dumps(extract_spacy_rules(spacy_language), ensure_ascii=False, indent=0) + "\n",
                              encoding="utf-8")
            print(f"wrote {target}")
