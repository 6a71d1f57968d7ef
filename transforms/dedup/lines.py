"""Line and paragraph dedup (``dedup.lines``): the units of a text, their keys, and removing the frequent ones.

Across the whole corpus, a unit (a line, or a paragraph) whose normalised form is in at least ``min_docs`` distinct
documents is removed from every document that has it; with ``keep_first``, but from the first-read of them (the
smallest ref, ``transforms.dedup.keys.make_ref``). What the settings mean is ``transforms.recipe.line_dedup``'s
docstring; here, what counts and how it runs:

* which documents count: those the filters (and a ``min_score`` selection) kept, less the document duplicates of
  the same recipe's exact/MinHash dedup: five copies of a page would otherwise make each of its lines frequent
  and the one copy kept would lose them all. A document counts a unit once however often it has it. Selection by
  budget, fraction or bucket comes after (its documents count; its token and byte sizes are those before removal);
* keys: the unit's normalised form hashed to 64 bits (``stable_hash64``); two different units sharing a key (about
  one pair in 2^64) count as one;
* pass 1 writes each kept document's distinct keys with its ref (``transforms.dedup.line_files`` on one machine,
  a combine on remote runners: ``transforms.dedup.line_steps``); the count gives the ``FrequentLines`` (the
  frequent keys, ascending, with each one's first ref) to pass 2, which removes those units from the staged text
  (``LineEditor``) before tokenizing. The text is cut at ``\\n`` and put together again without the removed
  lines: a line goes with one line break (the one after it; the last line's, the one before), a paragraph with the
  blank lines after it too; other blank lines stay. A text left with nothing but whitespace is rejected
  (``lines_empty``).
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

import numpy as np
from fsspec.core import url_to_fs

from transforms.hashing import stable_hashes64
from transforms.recipe.line_dedup import LINE, LineDedup

Unit = tuple[int, int, str]  # the text's lines [first, end) that removing the unit takes out, and its normalised form


def normalise(line: str) -> str:
    """A line as it is compared: NFC, stripped, every run of whitespace one space (case and punctuation kept)."""
    return " ".join((line if line.isascii() else unicodedata.normalize("NFC", line)).split())


def unit_forms(text: str, unit: str) -> list[str]:
    """The normalised forms of the text's ``units`` in order (for lines, without building the units)."""
    if unit == LINE:
        return [form for form in map(normalise, text.split("\n")) if form]
    return [form for _, _, form in units(text.split("\n"), unit)]


def units(lines: list[str], unit: str) -> list[Unit]:
    """The non-blank lines (``unit: line``) or paragraphs of a text cut at ``\n`` into ``lines``, in order, each
    with the lines its removal takes out: a line, itself; a paragraph (a run of non-blank lines; its form: their
    forms joined by ``\n``), itself and the blank lines after it. Blank lines before the first stay."""
    forms = [normalise(line) for line in lines]
    if unit == LINE:
        return [(i, i + 1, form) for i, form in enumerate(forms) if form]
    paragraphs: list[Unit] = []
    first, parts, inside = 0, [], False
    for i, form in enumerate(forms):
        if form and not inside and parts:  # a paragraph starts: the one before ends here, its blank lines with it
            paragraphs.append((first, i, "\n".join(parts)))
            parts = []
        if form:
            if not parts:
                first = i
            parts.append(form)
        inside = bool(form)
    if parts:
        paragraphs.append((first, len(forms), "\n".join(parts)))
    return paragraphs


def unit_keys(forms: list[str]) -> np.ndarray:
    """The 64-bit key of each normalised form (``stable_hash64``)."""
    return stable_hashes64(forms)


def batch_keys(texts: list[str], unit: str, first: int) -> tuple[np.ndarray, np.ndarray]:
    """(keys, ordinals): each text's distinct unit keys beside its ordinal (``first`` + its index), in text order."""
    keys = [np.unique(unit_keys(unit_forms(text, unit))) for text in texts]
    ordinals = np.repeat(np.arange(first, first + len(texts), dtype=np.uint32), [k.size for k in keys])
    return (np.concatenate(keys) if keys else np.zeros(0, np.uint64)), ordinals


@dataclass(frozen=True, eq=False)
class FrequentLines:
    """The keys found in at least ``min_docs`` documents (``size`` of them, ascending) and, with ``keep_first``,
    each one's first ref: in raw little-endian uint64 files (a local runner's count, ``*_url``), or held here."""

    size: int
    keys_url: str | None = None
    firsts_url: str | None = None
    keys: np.ndarray | None = None
    firsts: np.ndarray | None = None

    def arrays(self) -> tuple[np.ndarray, np.ndarray | None]:
        """(keys, first refs or None), the files mapped into memory when local (else read)."""
        if self.keys_url is None:
            return (self.keys if self.keys is not None else np.zeros(0, np.uint64)), self.firsts
        firsts = _load(self.firsts_url, self.size) if self.firsts_url else None
        return _load(self.keys_url, self.size), firsts


_LOADED: dict[str, np.ndarray] = {}  # this process's mapped files (one job's two at a time)


def _load(url: str, size: int) -> np.ndarray:
    if size == 0:
        return np.zeros(0, np.uint64)
    if url not in _LOADED:
        fs, path = url_to_fs(url)
        if "file" in fs.protocol:  # one copy in the page cache, shared by every process of the machine
            array = np.memmap(path, dtype="<u8", mode="r", shape=(size,))
        else:
            with fs.open(path, "rb") as fh:
                array = np.frombuffer(fh.read(), "<u8")
        if len(_LOADED) >= 2:
            _LOADED.pop(next(iter(_LOADED)))
        _LOADED[url] = array
    return _LOADED[url]


class LineEditor:
    """Pass 2: removes a document's frequent units (but those of the document counted first, with keep_first)."""

    def __init__(self, config: LineDedup, frequent: FrequentLines) -> None:
        self.config = config
        self.unit = config.unit
        self.keep_first = config.keep_first
        self.keys, self.firsts = frequent.arrays()

    def edit(self, text: str, ref: int) -> tuple[str, int] | None:
        """(the text without its frequent units, how many were removed), or None when none is."""
        if not self.keys.size:
            return None
        lines = text.split("\n")
        found = units(lines, self.unit)
        if not found:
            return None
        keys = unit_keys([form for _, _, form in found])
        at = np.minimum(np.searchsorted(self.keys, keys), self.keys.size - 1)
        remove = self.keys[at] == keys
        if self.keep_first:
            remove &= self.firsts[at] != np.uint64(ref)
        if not remove.any():
            return None
        kept = [True] * len(lines)
        for (first, end, _), gone in zip(found, remove.tolist()):
            if gone:
                kept[first:end] = [False] * (end - first)
        return "\n".join([line for line, keep in zip(lines, kept) if keep]), int(remove.sum())
