"""``decontam``: benchmark decontamination. A document sharing a word n-gram with an evaluation set is dropped
(``mode: drop``, as GPT-3 did with 13-grams and datatrove's NGramsDecontFilter does) or has the overlapping spans
cut out (``mode: remove``).

Parameters: ``eval_sets``, a list of ``{name, path, fields, format}`` (``transforms.filter.eval_sets``: JSONL,
Parquet or Arrow records, whose ``fields``, default ``[text]``, are read in order as one text; a text file is one
item; local or fsspec paths, globs and folders); ``n``, the n-gram size in words (13, GPT-3's; datatrove's default
is 12); ``mode``; ``max_removed_fraction`` (remove: a document losing more than this share of its characters is
dropped anyway, as is one left without words); ``language``, whose word splitting is used (datatrove's default).
Texts are normalised as datatrove's ``simplify_text`` does (``transforms.filter.decontam_index``).

The index of the evaluation n-grams is built once, when the recipe is loaded at launch (a missing or unreadable
file, or a set without a single n-gram, is a RecipeError naming the set and the file); its sha256 and per set its
items and distinct n-grams join the parameters as ``index``, so a changed evaluation file changes the job's
fingerprint and the manifest records which index was used. ``place_files`` writes it to the job's temp folder on
the output's filesystem; each worker process loads it from there once (memory-mapped where local), or keeps the
launcher's when it runs in the launching process. A document's n-grams are then one ``searchsorted`` over it.

``remove`` cuts whole whitespace-separated pieces: each run of pieces holding a word of a matched n-gram goes, with
the whitespace after it (at the end of the text, the whitespace before it), and the rest is checked again, since
the words on both sides of a cut may meet in an n-gram of the index. A dropped document's rejected record names
the first evaluation set it matched and the n-gram (normalised) under ``contamination``; the manifest counts per
set the documents and n-grams matched, kept or not, as ``decontam/<set>/documents`` and ``decontam/<set>/ngrams``.

Against datatrove (whose indexer reads lighteval tasks): an item's listed fields are all indexed, as with its
``find_query_ngrams=True`` (its default indexes the answer and the n-grams running from the question into it,
not the question alone); a document is checked against every set (datatrove stops at the first n-gram, so its
counts are of first matches); ``remove`` is tokenmill's. Otherwise the drop decisions are datatrove's, which the
tests check on the same inputs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Mapping

from schemas.manifest import REJ_CONTAMINATION
from transforms.filter.eval_sets import DEFAULT_FIELDS, FORMATS, EvalSet, eval_items
from transforms.filter.spacy_tables import SPACY_LANGUAGES
from transforms.filter.stage import KEPT, FilterStage, Stage, StageRule, Verdict
from transforms.recipe.errors import RecipeError

# numpy and the index (numpy, fsspec, the word splitter) are imported by the methods that build, load and match:
# the stage registry imports every stage, for prepare's --help too, which must not wait for them
if TYPE_CHECKING:
    import numpy as np

    from transforms.filter.decontam_index import BuiltIndex, NgramIndex

DROP, REMOVE = "drop", "remove"
CONTAMINATED = "contaminated"  # datatrove's reason
INDEX = "index"  # the parameter recording the index, and the stage's file of it
SET_KEYS = ("name", "path", "fields", "format")
_SET_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")  # it names manifest counts: decontam/<set>/documents
_PIECE = re.compile(r"\S+")

_INDEXES: dict[str, NgramIndex] = {}  # by sha256: built or loaded once per process


@dataclass(frozen=True)
class Found:
    """The n-grams of one text found in the index: their starts (in words), per set how many, the first one."""

    starts: np.ndarray
    per_set: np.ndarray
    example: dict[str, str]  # {"set": ..., "ngram": ...}


class DecontamRule(StageRule):
    """One worker's matcher over the shared index."""

    def __init__(self, index: NgramIndex, params: Mapping[str, Any]) -> None:
        from transforms.filter.decontam_index import NgramHasher

        self.index = index
        self.n = params["n"]
        self.hasher = NgramHasher(self.n, params["language"])
        self.remove = params["mode"] == REMOVE
        self.max_removed = params["max_removed_fraction"]

    def find(self, text: str) -> tuple[int, Found | None]:
        """(the text's words, its n-grams in the index or None)."""
        import numpy as np

        ids = self.hasher.word_ids(text)
        grams = self.hasher.hashes(ids)
        starts = self.index.matched(grams)
        if not starts.size:
            return ids.size, None
        owners = self.index.sets_of(grams[starts])
        per_set = np.bincount(np.concatenate(owners).astype(np.intp), minlength=len(self.index.names))
        example = {"set": self.index.names[int(owners[0][0])], "ngram": self.hasher.ngram(ids, int(starts[0]))}
        return ids.size, Found(starts, per_set, example)

    def check(self, text: str, fields: Mapping[str, Any]) -> Verdict:
        """Kept when no n-gram matches; else dropped, or (remove) the matched pieces cut out."""
        _, found = self.find(text)
        if found is None:
            return KEPT
        if not self.remove:
            return Verdict(False, CONTAMINATED, meta={REJ_CONTAMINATION: found.example},
                           counts=self.counts(found.per_set))
        example, per_set, kept = found.example, found.per_set.copy(), text
        while found is not None:
            spans = [match.span() for match in _PIECE.finditer(kept)]
            words_in = self.hasher.piece_words([kept[a:b] for a, b in spans])
            kept = cut_pieces(kept, spans, words_in, found.starts, self.n)
            words, found = self.find(kept)
            if found is not None:
                per_set += found.per_set
        removed = 1 - len(kept) / len(text)
        if words == 0 or removed > self.max_removed:
            return Verdict(False, CONTAMINATED, meta={REJ_CONTAMINATION: {**example, "removed_fraction":
                                                                          round(removed, 4)}},
                           counts=self.counts(per_set))
        return Verdict(True, text=kept, counts=self.counts(per_set))

    def counts(self, per_set: np.ndarray) -> dict[str, int]:
        """``<set>/documents`` (1) and ``<set>/ngrams`` for each set matched."""
        import numpy as np

        out: dict[str, int] = {}
        for k in np.flatnonzero(per_set).tolist():
            name = self.index.names[k]
            out[f"{name}/documents"] = 1
            out[f"{name}/ngrams"] = int(per_set[k])
        return out


def cut_pieces(text: str, spans: list[tuple[int, int]], words_in: list[int], starts: np.ndarray, n: int) -> str:
    """The text without its whitespace-separated pieces (``spans``, holding ``words_in`` words each) that hold a
    word of the n-grams at ``starts`` (word positions), each run of them with the whitespace after it (the last run:
    with the whitespace before it)."""
    import numpy as np

    piece_of_word = np.repeat(np.arange(len(spans)), words_in)
    marks = np.zeros(len(spans) + 1, np.int64)
    np.add.at(marks, piece_of_word[starts], 1)
    np.add.at(marks, piece_of_word[starts + n - 1] + 1, -1)
    edges = np.diff(np.concatenate([[0], (np.cumsum(marks[:-1]) > 0).astype(np.int8), [0]]))
    out: list[str] = []
    pos = 0
    for first, last in zip(np.flatnonzero(edges == 1).tolist(), (np.flatnonzero(edges == -1) - 1).tolist()):
        if last + 1 < len(spans):
            cut_from, cut_to = spans[first][0], spans[last + 1][0]
        else:
            cut_from, cut_to = (spans[first - 1][1] if first > 0 else 0), len(text)
        out.append(text[pos:cut_from])
        pos = cut_to
    out.append(text[pos:])
    return "".join(out)


def eval_sets_of(value: Any, where: str) -> tuple[EvalSet, ...]:
    """The ``eval_sets`` parameter checked: a non-empty list of {name, path, fields, format}, names unique."""
    option = f"{where} (decontam.eval_sets)"
    if not isinstance(value, list) or not value:
        raise RecipeError(f"{option}: required: a list of {{name: ..., path: ..., fields: [...]}}, one per "
                          "evaluation set whose n-grams are removed")
    sets: list[EvalSet] = []
    for i, item in enumerate(value):
        at = f"{where} (decontam.eval_sets[{i}]"  # closed by the message: "...[0]): " or "...[0].path): "
        if not isinstance(item, dict):
            raise RecipeError(f"{at}): expected {{name: ..., path: ..., fields: [...]}}, got {item!r}")
        unknown = sorted(set(item) - set(SET_KEYS))
        if unknown:
            raise RecipeError(f"{at}): unknown key(s) {', '.join(map(repr, unknown))}; valid: {', '.join(SET_KEYS)}")
        name, path = item.get("name"), item.get("path")
        fields, fmt = item.get("fields", list(DEFAULT_FIELDS)), item.get("format")
        if not isinstance(name, str) or not _SET_NAME.fullmatch(name):
            raise RecipeError(f"{at}.name): expected a name of letters, digits, '_', '.' and '-', got {name!r}")
        if any(s.name == name for s in sets):
            raise RecipeError(f"{at}.name): {name!r} names two evaluation sets")
        if not isinstance(path, str) or not path:
            raise RecipeError(f"{at}.path): expected a file, glob or folder (local or fsspec URL), got {path!r}")
        if not (isinstance(fields, list) and fields and all(isinstance(f, str) and f for f in fields)):
            raise RecipeError(f"{at}.fields): expected a non-empty list of field names, got {fields!r}")
        if fmt is not None and fmt not in FORMATS:
            raise RecipeError(f"{at}.format): expected one of {', '.join(FORMATS)}, got {fmt!r}")
        sets.append(EvalSet(name, path, tuple(fields), fmt))
    return tuple(sets)


class DecontamStage(FilterStage):
    """The ``decontam`` stage (one implementation for both engines: datatrove's filter needs lighteval's tasks)."""

    name = "decontam"
    params = {"eval_sets": None, "n": 13, "mode": DROP, "max_removed_fraction": 0.5, "language": "eng"}
    doc = ("benchmark decontamination: drop documents sharing a word n-gram (n: 13) with an evaluation set "
           "(eval_sets: [{name, path, fields}]), or cut the shared spans out (mode: remove)")
    listed = 10

    def configure(self, given: Any, where: str) -> Stage:
        """The parameters checked, the evaluation sets read and indexed (``index``: the index's sha256 and per set
        its items and n-grams)."""
        if not isinstance(given, dict):
            raise RecipeError(f"{where} ({self.name}): 'params' must be a mapping")
        stage = super().configure({k: v for k, v in given.items() if k != "eval_sets"}, where)
        sets = eval_sets_of(given.get("eval_sets"), where)
        built = self.build(sets, stage.params["n"], stage.params["language"], where)
        recorded = [{"name": s.name, "path": s.path, "fields": list(s.fields), "format": s.format} for s in sets]
        return Stage(self.name, {**stage.params, "eval_sets": recorded,
                                 INDEX: {"sha256": built.sha256, "sets": built.sets}})

    def validate(self, params: dict[str, Any], where: str) -> None:
        """n, mode, the fraction and the language."""
        if params["n"] < 1:
            raise RecipeError(f"{where} (decontam.n): expected a number of words, at least 1, got {params['n']}")
        if params["mode"] not in (DROP, REMOVE):
            raise RecipeError(f"{where} (decontam.mode): expected {DROP} or {REMOVE}, got {params['mode']!r}")
        if not 0 < params["max_removed_fraction"] <= 1:
            raise RecipeError(f"{where} (decontam.max_removed_fraction): expected a fraction above 0 and at most "
                              f"1, got {params['max_removed_fraction']}")
        if params["language"] not in SPACY_LANGUAGES:
            raise RecipeError(f"{where} (decontam.language): no word splitter for {params['language']!r}; known: "
                              f"{', '.join(sorted(SPACY_LANGUAGES))}")

    def build(self, sets: tuple[EvalSet, ...], n: int, language: str, where: str) -> BuiltIndex:
        """The index of the sets (kept for this process); RecipeError for a set without an n-gram."""
        from transforms.filter.decontam_index import build_index

        named = [(s.name, eval_items(s, f"{where} (decontam), eval set {s.name!r}")) for s in sets]
        built = build_index(named, n, language)
        for s in sets:
            if not built.sets[s.name]["ngrams"]:
                raise RecipeError(f"{where} (decontam), eval set {s.name!r}: no item of {s.path!r} has {n} words "
                                  f"or more in its fields ({', '.join(s.fields)}): nothing to match; check the "
                                  "fields, or lower n")
        _INDEXES[built.sha256] = built.index
        return built

    def index(self, stage: Stage) -> NgramIndex:
        """The configured stage's index: this process's, else its file from the launch, else built again (a
        recipe configured in another process and not placed; the files must still give the same index)."""
        from transforms.filter.decontam_index import load_index

        sha = stage.params[INDEX]["sha256"]
        if sha not in _INDEXES:
            names = [s["name"] for s in stage.params["eval_sets"]]
            if INDEX in stage.files:
                _INDEXES[sha] = load_index(stage.files[INDEX], names)
            else:
                sets = eval_sets_of(stage.params["eval_sets"], "decontam")
                built = self.build(sets, stage.params["n"], stage.params["language"], "decontam")
                if built.sha256 != sha:
                    raise RecipeError("decontam: the evaluation files changed since the recipe was loaded (their "
                                      "index differs); run again")
        return _INDEXES[sha]

    def place_files(self, stage: Stage, temp_dir: str) -> Stage:
        """The index written to the job's temp folder, named in ``stage.files`` for the workers."""
        from transforms.filter.decontam_index import INDEX_FILE, save_index

        url = f"{temp_dir.rstrip('/')}/{INDEX_FILE.format(stage.params[INDEX]['sha256'])}"
        save_index(self.index(stage), url)
        return replace(stage, files={INDEX: url})

    def reference(self, stage: Stage, limit: float) -> StageRule:
        """The matcher over the index (loaded once per process)."""
        return DecontamRule(self.index(stage), stage.params)


STAGE = DecontamStage()
