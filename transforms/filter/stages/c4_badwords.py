"""``c4_badwords``: datatrove's C4BadWordsFilter reading the LDNOOBW lists from a local directory instead of
downloading them."""

from __future__ import annotations

from typing import Any, Mapping

from schemas.documents import META_LANG
from transforms.filter.stage import INT, KEPT, FilterStage, Stage, StageRule, Verdict
from transforms.recipe.errors import RecipeError


class BadWordsRule(StageRule):
    """datatrove's C4BadWordsFilter on a document. Its language is ``meta.lang`` from an earlier language stage
    (else ``default_language``). With ``keep_fraction``, which documents with bad words are kept is decided by a
    hash of the text and ``seed`` (datatrove draws from a random generator, which would depend on the order
    documents reach each worker)."""

    def __init__(self, badwords_filter: Any, keep_fraction: float, seed: int) -> None:
        from datatrove.data import Document

        from transforms.hashing import unit_hash  # (numpy: not for the stage registry behind prepare's --help)

        self._filter = badwords_filter
        self.keep_fraction = keep_fraction
        self.seed = seed
        self._document = Document
        self._unit_hash = unit_hash

    def check(self, text: str, fields: Mapping[str, Any]) -> Verdict:
        """datatrove's verdict, with the seeded keep_fraction of the documents it would drop kept."""
        lang = fields.get(META_LANG)
        doc = self._document(text=text, id="", metadata={"language": lang} if lang else {})
        result = self._filter.filter(doc)
        if result is True:
            return KEPT
        if self.keep_fraction > 0 and self._unit_hash(text, self.seed) < self.keep_fraction:
            return KEPT
        return Verdict(False, result[1])


def _badwords_regex(lists_dir: str, lang: str, fail_on_missing: bool):
    """C4's bad-words pattern for one language from ``lists_dir/<lang>`` (datatrove's construction: whole words,
    except in Japanese, Thai and Chinese; its allow-listed subwords removed)."""
    import re

    import fsspec
    from transforms.filter.reference import reference_constants

    (allowlist,) = reference_constants("datatrove.pipeline.filters.c4_filters", "_BADWORDS_ALLOWLIST")
    try:
        with fsspec.open(f"{lists_dir}/{lang}", "rt", encoding="utf-8") as fh:
            words = {line.strip() for line in fh if line.strip()}
    except FileNotFoundError:
        if fail_on_missing:
            raise RecipeError(f"c4_badwords: no word list for language {lang!r} in {lists_dir!r} (expected a file "
                              f"named {lang!r}); add it or set fail_on_missing_language: false") from None
        return None
    for allowed in allowlist.values():
        words -= allowed
    alternatives = "|".join(re.escape(w) for w in sorted(words))
    if lang in ("ja", "th", "zh"):
        return re.compile(alternatives)
    return re.compile(r"(?:\W|^)({})(?:\W|$)".format(alternatives))


class C4BadWordsStage(FilterStage):
    """The ``c4_badwords`` stage (both engines run datatrove's filter)."""

    name = "c4_badwords"
    datatrove_class = "datatrove.pipeline.filters.C4BadWordsFilter"
    params = {
        "keep_fraction": 0.0,
        "fail_on_missing_language": True,
        "seed": None,
        "default_language": "en",
        "lists_dir": None,
    }
    kinds = {"seed": INT}
    own_params = ("lists_dir",)
    doc = ("C4's bad-words rule with the LDNOOBW lists from lists_dir (one file per language code, e.g. en, de: "
           "datatrove downloads them, tokenmill reads local copies)")
    listed = 7

    def validate(self, params: dict[str, Any], where: str) -> None:
        """The lists' folder is required: nothing is downloaded."""
        if not isinstance(params["lists_dir"], str):
            raise RecipeError(f"{where} (c4_badwords): 'lists_dir' is required: a local or fsspec directory holding "
                              "the LDNOOBW word lists named by language code (en, de, ...); nothing is downloaded")

    def check_files(self, stage: Stage) -> None:
        """``lists_dir`` is a folder holding the default language's word list."""
        import posixpath

        import fsspec

        lists_dir, language = stage.params["lists_dir"], stage.params["default_language"]
        where = "c4_badwords.lists_dir"
        try:
            fs, path = fsspec.core.url_to_fs(lists_dir)
            is_dir = fs.isdir(path)
            has_default = is_dir and bool(language) and fs.isfile(posixpath.join(path.rstrip("/"), language))
        except (OSError, ValueError) as exc:
            raise RecipeError(f"{where}: cannot open {lists_dir!r} ({exc})") from exc
        if not is_dir:
            raise RecipeError(f"{where}: {lists_dir!r} is not a folder (it should hold the LDNOOBW lists named by "
                              "language code: en, de, ...)")
        if language and not has_default:
            raise RecipeError(f"{where}: {lists_dir!r} has no list for the default language {language!r} (a file "
                              f"named {language})")

    def datatrove_filter(self, stage: Stage) -> Any:
        """datatrove's C4BadWordsFilter reading ``lists_dir`` (and never dropping at random: keep_fraction 0)."""
        from datatrove.pipeline.filters import C4BadWordsFilter

        lists_dir = stage.params["lists_dir"].rstrip("/")

        class LocalLists(C4BadWordsFilter):
            def _get_badwords(self, lang: str):
                if lang not in self._badwords_regex:
                    self._badwords_regex[lang] = _badwords_regex(lists_dir, lang, self.fail_on_missing_language)
                return self._badwords_regex[lang]

        return LocalLists(**{**self.datatrove_kwargs(stage.params), "keep_fraction": 0.0})

    def reference(self, stage: Stage, limit: float) -> StageRule:
        """The filter with a seeded, order-independent keep_fraction."""
        return BadWordsRule(self.datatrove_filter(stage), stage.params["keep_fraction"], stage.params["seed"] or 0)


STAGE = C4BadWordsStage()
