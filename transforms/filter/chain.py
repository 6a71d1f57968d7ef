"""Quality filtering cores: apply a recipe's filter chain to a batch of documents, keeping every decision.

``DatatroveEngine`` is the reference: datatrove's own filter classes, built once (per worker), applied in recipe
order. A filter may drop a document (with datatrove's reason) or modify its text (C4 removes lines); the first
drop ends the chain for that document. Every document gets a ``Decision``, so nothing is lost.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from schemas.documents import META_LANG, META_LANG_SCORE
from transforms.recipe.recipes import DATATROVE, FAST, Recipe, RecipeError, Stage
from transforms.recipe.limits import DEFAULT_STAGE_TIMEOUT, TIMEOUT, StageClock, StageTimeout, compile_search


@dataclass(frozen=True)
class Decision:
    """What the chain did to one document: kept (maybe with modified text) or dropped by a stage, with why."""

    keep: bool
    text: str
    stage: str | None = None
    reason: str | None = None
    modified_by: tuple[str, ...] = ()
    meta: dict | None = None  # signals a stage measured (the language stage: lang, lang_score)


class LanguageStage:
    """The ``language`` stage (both engines): keep documents in wanted languages with a high enough score."""

    def __init__(self, languages: tuple[str, ...] | None, min_score: float) -> None:
        from transforms.filter.langid import LanguageIdentifier

        self.identifier = LanguageIdentifier()
        self.languages = frozenset(languages) if languages else None
        self.min_score = min_score

    def check(self, text: str) -> tuple[bool, str | None, dict]:
        """(keep, reason, {lang, lang_score})."""
        lang, score = self.identifier.identify(text)
        meta = {META_LANG: lang, META_LANG_SCORE: round(score, 4)}
        if self.languages is not None and lang not in self.languages:
            return False, "language_not_wanted", meta
        if score < self.min_score:
            return False, "language_score_too_low", meta
        return True, None, meta

    def filter(self, doc) -> bool | tuple[bool, str]:
        """datatrove's filter protocol (the language lands in ``doc.metadata`` as datatrove's own filter does)."""
        keep, reason, meta = self.check(doc.text)
        doc.metadata.update({"language": meta[META_LANG], "language_score": meta[META_LANG_SCORE]})
        return True if keep else (False, reason)

    def run(self, text: str) -> tuple[bool, str | None, str, dict]:
        """The chain's rule protocol (see run_chain), with the measured language."""
        keep, reason, meta = self.check(text)
        return keep, reason, text, meta


class UrlStage:
    """The ``url_filter`` stage (both engines): datatrove's URLFilter on the URL field the reader kept in meta.

    Its lists ship inside datatrove; the public-suffix list is tldextract's bundled snapshot (never fetched).
    A document without a URL is dropped with reason ``missing_url`` (datatrove would stop on an assertion).
    """

    wants_meta = True

    def __init__(self, stage: Stage) -> None:
        from datatrove.data import Document
        from datatrove.pipeline.filters import URLFilter
        from tldextract import TLDExtract

        self.field = stage.params["url_field"]
        self._filter = URLFilter(**stage.datatrove_kwargs())
        self._filter.tldextractor = TLDExtract(suffix_list_urls=(), cache_dir=None)
        self._document = Document

    def run(self, text: str, meta: dict | None = None) -> tuple[bool, str | None, str]:
        """(keep, reason, text)."""
        url = (meta or {}).get(self.field)
        if not isinstance(url, str) or not url:
            return False, "missing_url", text
        result = self._filter.filter(self._document(text=text, id="", metadata={"url": url}))
        return (True, None, text) if result is True else (False, result[1], text)


class C4BadWordsStage:
    """The ``c4_badwords`` stage (both engines): datatrove's C4BadWordsFilter reading the LDNOOBW lists from a
    local directory instead of downloading them.

    The document's language is ``meta.lang`` from an earlier language stage (else ``default_language``). With
    ``keep_fraction``, which documents with bad words are kept is decided by a hash of the text and ``seed``
    (datatrove draws from a random generator, which would depend on the order documents reach each worker).
    """

    wants_meta = True

    def __init__(self, stage: Stage) -> None:
        from datatrove.data import Document
        from datatrove.pipeline.filters import C4BadWordsFilter

        lists_dir = stage.params["lists_dir"].rstrip("/")
        params = stage.datatrove_kwargs()

        class LocalLists(C4BadWordsFilter):
            def _get_badwords(self, lang: str):
                if lang not in self._badwords_regex:
                    self._badwords_regex[lang] = _badwords_regex(lists_dir, lang, self.fail_on_missing_language)
                return self._badwords_regex[lang]

        self._filter = LocalLists(**{**params, "keep_fraction": 0.0})
        self.keep_fraction = params["keep_fraction"]
        self.seed = params["seed"] or 0
        self._document = Document

    def run(self, text: str, meta: dict | None = None) -> tuple[bool, str | None, str]:
        """(keep, reason, text)."""
        lang = (meta or {}).get(META_LANG)
        doc = self._document(text=text, id="", metadata={"language": lang} if lang else {})
        result = self._filter.filter(doc)
        if result is True:
            return True, None, text
        if self.keep_fraction > 0 and _unit_hash(text, self.seed) < self.keep_fraction:
            return True, None, text
        return False, result[1], text


def _badwords_regex(lists_dir: str, lang: str, fail_on_missing: bool):
    """C4's bad-words pattern for one language from ``lists_dir/<lang>`` (datatrove's construction: whole words,
    except in Japanese, Thai and Chinese; its allow-listed subwords removed)."""
    import re

    import fsspec
    from datatrove.pipeline.filters.c4_filters import _BADWORDS_ALLOWLIST

    try:
        with fsspec.open(f"{lists_dir}/{lang}", "rt", encoding="utf-8") as fh:
            words = {line.strip() for line in fh if line.strip()}
    except FileNotFoundError:
        if fail_on_missing:
            raise RecipeError(f"c4_badwords: no word list for language {lang!r} in {lists_dir!r} (expected a file "
                              f"named {lang!r}); add it or set fail_on_missing_language: false") from None
        return None
    for allowed in _BADWORDS_ALLOWLIST.values():
        words -= allowed
    alternatives = "|".join(re.escape(w) for w in sorted(words))
    if lang in ("ja", "th", "zh"):
        return re.compile(alternatives)
    return re.compile(r"(?:\W|^)({})(?:\W|$)".format(alternatives))


def _unit_hash(text: str, seed: int) -> float:
    """A stable number in [0, 1) for a text."""
    import hashlib

    digest = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8, key=seed.to_bytes(8, "little"))
    return int.from_bytes(digest.digest(), "little") / 2**64


_OWN_STAGES = {"url_filter": UrlStage, "c4_badwords": C4BadWordsStage}


def _datatrove_filter(stage: Stage):
    if stage.name == "language":
        return LanguageStage(stage.params["languages"], stage.params["min_score"])
    if stage.name in _OWN_STAGES:
        return _OWN_STAGES[stage.name](stage)
    module, cls = STAGE_CLASSES[stage.name].rsplit(".", 1)
    return getattr(importlib.import_module(module), cls)(**stage.datatrove_kwargs())


def _stage_classes() -> dict[str, str]:
    from transforms.recipe.recipes import STAGES

    return {name: spec.datatrove_class for name, spec in STAGES.items()}


STAGE_CLASSES = _stage_classes()


class DatatroveRule:
    """One stage as datatrove's own filter object, in the chain's rule protocol."""

    def __init__(self, stage: Stage, limit: float = DEFAULT_STAGE_TIMEOUT) -> None:
        from datatrove.data import Document

        self._filter = _datatrove_filter(stage)
        self._document = Document
        self.regex_engine = None
        if stage.name == "regex":  # datatrove's RegexFilter tests `self.regex.search(text)`: RE2 where it can
            self.regex_engine, self._filter.regex = compile_search(stage.params["regex_exp"], limit)
        # re's search runs in a helper process that enforces the limit itself (the clock cannot stop a C call)
        self.own_limit = self.regex_engine == "re"

    wants_meta = True

    def run(self, text: str, meta: dict | None = None) -> tuple:
        """(keep, reason, text after the filter: C4 removes lines[, measured meta])."""
        if isinstance(self._filter, LanguageStage):
            return self._filter.run(text)
        if getattr(self._filter, "wants_meta", False):
            return self._filter.run(text, meta)
        doc = self._document(text=text, id="")
        result = self._filter.filter(doc)
        keep, reason = result if isinstance(result, tuple) else (result, None)
        return keep, reason, doc.text


def run_chain(stages: list[tuple[str, object]], texts: list[str],
              metas: list[dict | None] | None = None, clock: StageClock | None = None) -> list[Decision]:
    """One Decision per text: each (name, rule) in order, ``rule.run(text) -> (keep, reason, text[, meta])``; the
    first drop ends the chain, a changed text is passed on and reported as modified by that stage, and the signals
    a rule measured (``meta``) are kept. Rules with ``wants_meta`` get ``run(text, meta)``: the document's input
    fields (``metas``) with what earlier stages measured. With a ``clock``, a stage that runs past its limit on a
    document drops it with reason ``timeout``."""
    out: list[Decision] = []
    for i, text in enumerate(texts):
        decision = None
        modified: list[str] = []
        meta: dict | None = None
        given = metas[i] if metas else None
        for name, rule in stages:
            args = (text, {**(given or {}), **(meta or {})}) if getattr(rule, "wants_meta", False) else (text,)
            try:
                timed = clock is not None and not getattr(rule, "own_limit", False)
                result = clock.call(rule.run, *args) if timed else rule.run(*args)
            except StageTimeout:
                decision = Decision(False, text, name, TIMEOUT, tuple(modified), meta)
                break
            keep, reason, new_text = result[:3]
            if len(result) > 3:
                meta = {**(meta or {}), **result[3]}
            if new_text != text:
                modified.append(name)
                text = new_text
            if not keep:
                decision = Decision(False, text, name, reason or name, tuple(modified), meta)
                break
        out.append(decision or Decision(True, text, modified_by=tuple(modified), meta=meta))
    return out


class DatatroveEngine:
    """The recipe's filters as datatrove objects, applied document by document (datatrove's own decisions)."""

    name = "datatrove"

    def __init__(self, recipe: Recipe) -> None:
        self.recipe = recipe
        self.stages = [(stage.name, DatatroveRule(stage, recipe.stage_timeout)) for stage in recipe.filters]

    def apply(self, texts: list[str], ids: list[str]) -> list[Decision]:
        """One Decision per document, in order (no filter uses the ids)."""
        return run_chain(self.stages, texts)


def make_engine(recipe: Recipe):
    """The engine a recipe asks for, built (once per worker)."""
    if recipe.engine == DATATROVE:
        return DatatroveEngine(recipe)
    if recipe.engine == FAST:
        from transforms.filter.fast import FastEngine

        return FastEngine(recipe)
    raise RecipeError(f"recipe {recipe.name!r}: unknown engine {recipe.engine!r}")
