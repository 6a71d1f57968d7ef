"""Deduplicating against earlier outputs (recipe ``dedup: {against: [PATH, ...]}``): their saved indexes
(``transforms.dedup.index``) read as compact arrays and matched against this run's keys.

Earlier documents are numbered one output after another, in the order the recipe lists them, each output's in its
index's order (its number n = the output's base + its document number). What is decided, on both paths: the graph of
documents joined by the groups of documents sharing a key that hold at least one document of this run (earlier
documents are not compared among themselves) is cut into connected components, resolved as within a run with the
earlier documents read first. A component holding an earlier document keeps none of this run's documents: each
names the component's first earlier document, as ``earlier_exact_duplicate`` when it shares its exact key with that
document, else ``earlier_near_duplicate`` (a document duplicating both an earlier and a current document is
attributed to the earlier one). The other components are resolved as without ``against``.

On one machine (``transforms.dedup.arrays.duplicates_in_files``) each key column of this run is looked up in the
same column of each earlier index by binary search: one earlier column in memory at a time (its rows, 16 bytes per
earlier document, and 8 more for its high parts) beside this run's column, and the pairs found (16 bytes each). On a
remote runner (``transforms.dedup.steps.FindDuplicates``) the earlier keys go through the shuffle with this run's,
read by the workers in chunks of rows, under refs below every ref of this run (number - ``EARLIER_REF``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Iterator

import fsspec
import numpy as np

from schemas import manifest as m
from schemas.shards import join_url
from transforms.dedup.index import BANDS, EXACT, ID_ENDS, IDS, index_identity, read_index_section
from transforms.recipe.errors import RecipeError
from transforms.recipe.recipes import Recipe

EARLIER_REF = 1 << 62  # an earlier document's ref in the shuffle: its number - EARLIER_REF (negative)
CHUNK_ROWS = 1 << 16  # rows of an index read at a time (the remote path's unit of work; ids looked up)
_NONE = np.iinfo(np.int64).max


def _header(url: str) -> tuple[int, tuple[int, ...], np.dtype]:
    """(offset of the data, shape, dtype) of a .npy file."""
    with fsspec.open(url, "rb") as fh:
        version = np.lib.format.read_magic(fh)
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _, dtype = read(fh)
        return fh.tell(), shape, dtype


@dataclass(frozen=True)
class EarlierIndex:
    """One earlier output's index: where it is, how many documents, the first one's number, its key columns."""

    path: str  # as the recipe names it
    documents: int
    base: int
    exact: tuple[int, int, Any] | None  # (data offset, rows, dtype descr) of exact.npy
    bands: tuple[int, int, int, Any] | None  # (data offset, bands, rows per band, dtype descr) of bands.npy

    def url(self, name: str) -> str:
        """The URL of one of its files."""
        return join_url(self.path, f"{m.DEDUP_INDEX_DIR}/{name}")

    def rows(self, band: int | None) -> int:
        """Rows of its exact column (``band`` None) or of one band."""
        if band is None:
            return self.exact[1] if self.exact else 0
        return self.bands[2] if self.bands else 0

    def keys(self, band: int | None, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Rows [start, stop) of its exact keys (``band`` None) or of one band's keys, sorted by key."""
        rows = self.rows(band)
        stop = rows if stop is None else min(stop, rows)
        if band is None:
            offset, _, descr = self.exact
        else:
            offset, _, _, descr = self.bands
            offset += band * rows * np.dtype(descr).itemsize
        dtype = np.dtype(descr)
        out = np.empty(max(stop - start, 0), dtype)
        if out.size:
            with fsspec.open(self.url(EXACT if band is None else BANDS), "rb") as fh:
                fh.seek(offset + start * dtype.itemsize)
                if fh.readinto(memoryview(out.view(np.uint8))) != out.nbytes:
                    raise ValueError(f"{self.path}: its dedup index is shorter than its header says")
        return out

    def ids(self, docs: np.ndarray) -> list[str]:
        """The ids of its documents ``docs`` (ascending): id_ends read a chunk at a time, each id by a seek."""
        offset, _, _ = _header(self.url(ID_ENDS))
        starts = np.zeros(docs.size, np.int64)
        ends = np.zeros(docs.size, np.int64)
        with fsspec.open(self.url(ID_ENDS), "rb") as fh:
            for first in range(0, self.documents, CHUNK_ROWS):
                lo, hi = np.searchsorted(docs, [first, first + CHUNK_ROWS])
                if lo == hi:
                    continue
                fh.seek(offset + max(first - 1, 0) * 8)  # the entry before the chunk: where its first id starts
                count = min(CHUNK_ROWS, self.documents - first) + (first > 0)
                chunk = np.frombuffer(fh.read(count * 8), "<u8").astype(np.int64)
                if first == 0:
                    chunk = np.concatenate(([0], chunk))
                local = docs[lo:hi] - first
                starts[lo:hi], ends[lo:hi] = chunk[local], chunk[local + 1]
        out = []
        with fsspec.open(self.url(IDS), "rb") as fh:
            for start, end in zip(starts.tolist(), ends.tolist()):
                fh.seek(start)
                out.append(fh.read(end - start).decode("utf-8", "surrogatepass"))
        return out


@dataclass(frozen=True)
class EarlierCorpus:
    """The earlier outputs a run deduplicates against, their documents numbered one output after another."""

    indexes: tuple[EarlierIndex, ...]

    def index_of(self, number: int) -> EarlierIndex:
        """The index holding the earlier document ``number``."""
        for index in self.indexes:
            if number < index.base + index.documents:
                return index
        raise ValueError(f"no earlier document {number}")

    def lookup(self, band: int | None, nodes: np.ndarray, hi: np.ndarray, lo: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray]:
        """(nodes, earlier numbers) of every key of this run's column (exact keys, ``band`` None, or one band's)
        that an earlier document of the same column has, by binary search in each index (of this run's keys in
        order: sorted queries walk the index forwards, several times faster)."""
        found_nodes, found_numbers = [], []
        order = np.argsort(hi)
        high_sorted = hi[order]
        for index in self.indexes:
            if not hi.size or not index.rows(band):
                continue
            table = index.keys(band)
            high = np.ascontiguousarray(table["hi"])
            left = np.searchsorted(high, high_sorted, "left")
            hit = np.flatnonzero(left < high.size)
            hit = hit[high[left[hit]] == high_sorted[hit]]  # an earlier key with the same high part: check the rest
            if not hit.size:
                continue
            count = np.searchsorted(high, high_sorted[hit], "right") - left[hit]
            who = np.repeat(hit, count)  # each earlier key with that high part (one but for a 64-bit collision)
            at = np.repeat(left[hit], count) + np.arange(who.size) - np.repeat(np.cumsum(count) - count, count)
            mine = order[who]
            same = table["lo"][at] == lo[mine]
            found_nodes.append(nodes[mine[same]])
            found_numbers.append(table["doc"][at[same]].astype(np.int64) + index.base)
        if not found_nodes:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        return np.concatenate(found_nodes), np.concatenate(found_numbers)

    def ids(self, numbers: np.ndarray) -> dict[int, str]:
        """number → id of the earlier documents ``numbers``."""
        numbers = np.unique(numbers)
        out: dict[int, str] = {}
        for index in self.indexes:
            mine = numbers[(numbers >= index.base) & (numbers < index.base + index.documents)]
            if mine.size:
                out.update(zip(mine.tolist(), index.ids(mine - index.base)))
        return out

    def chunks(self) -> list[tuple[int, int | None, int]]:
        """(index position, band or None for exact keys, first row) of every chunk of keys (the remote path's)."""
        out = []
        for i, index in enumerate(self.indexes):
            bands = index.bands[1] if index.bands else 0
            for band in [None, *range(bands)]:
                out += [(i, band, start) for start in range(0, index.rows(band), CHUNK_ROWS)]
        return out

    def items(self, chunk: tuple[int, int | None, int]) -> Iterator[tuple[bytes, tuple[int, str]]]:
        """A chunk's keys as the shuffle carries this run's: (key, (ref, id)), the id left empty (the ids of the
        earlier documents that are kept are looked up once clustering is done: ``ids_of_refs``)."""
        i, band, start = chunk
        index = self.indexes[i]
        table = index.keys(band, start, start + CHUNK_ROWS)
        parts = np.empty(table.size, [(n, table.dtype[n]) for n in ("hi", "lo")])
        parts["hi"], parts["lo"] = table["hi"], table["lo"]
        raw, width = parts.tobytes(), parts.dtype.itemsize
        refs = (table["doc"].astype(np.int64) + (index.base - EARLIER_REF)).tolist()
        for k, ref in enumerate(refs):
            yield raw[k * width : (k + 1) * width], (ref, "")

    def ids_of_refs(self, refs: list[int]) -> Iterator[tuple[int, str]]:
        """(ref, id) of earlier documents given by their refs in the shuffle."""
        ids = self.ids(np.array(refs, np.int64) + EARLIER_REF)
        for ref in refs:
            yield ref, ids[ref + EARLIER_REF]

    def path_of_ref(self, ref: int) -> str:
        """The earlier output holding the document of this (earlier) ref."""
        return self.index_of(ref + EARLIER_REF).path


def open_earlier(recipe: Recipe | None) -> EarlierCorpus | None:
    """The recipe's ``dedup.against`` outputs as an EarlierCorpus (None without); RecipeError when an output's
    index is no longer the one the job started with (its identity is in the fingerprint)."""
    if recipe is None or not recipe.dedup.against:
        return None
    indexes = []
    base = 0
    for earlier in recipe.dedup.against:
        section = read_index_section(earlier.path, recipe)
        if index_identity(section) != earlier.index_sha256:
            raise RecipeError(f"recipe {recipe.name!r}: dedup.against {earlier.path!r}: its dedup index changed since "
                              "this job started; run the job again")
        index = EarlierIndex(earlier.path, int(section[m.DI_DOCUMENTS]), base, None, None)
        if section[m.DI_EXACT]:
            offset, shape, dtype = _header(index.url(EXACT))
            index = replace(index, exact=(offset, shape[0], np.lib.format.dtype_to_descr(dtype)))
        if section[m.DI_MINHASH]:
            offset, shape, dtype = _header(index.url(BANDS))
            index = replace(index, bands=(offset, shape[0], shape[1], np.lib.format.dtype_to_descr(dtype)))
        indexes.append(index)
        base += index.documents
    return EarlierCorpus(tuple(indexes))


class EarlierMatches:
    """What one resolution on one machine found of an earlier corpus: the pairs (this run's document, earlier
    number) sharing a key, collected as each key column is read (the protocol ``duplicates_in_files`` uses)."""

    def __init__(self, corpus: EarlierCorpus) -> None:
        self.corpus = corpus
        self.exact: list[tuple[np.ndarray, np.ndarray]] = []
        self.near: list[tuple[np.ndarray, np.ndarray]] = []

    def match(self, band: int | None, nodes: np.ndarray, hi: np.ndarray, lo: np.ndarray) -> None:
        """Look up one key column of this run (exact keys, ``band`` None, or one band's)."""
        (self.exact if band is None else self.near).append(self.corpus.lookup(band, nodes, hi, lo))

    def _pairs(self, which: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
        if not which:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        return np.concatenate([n for n, _ in which]), np.concatenate([e for _, e in which])

    def joins(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(first, member) pairs joining this run's documents that share an earlier document (read after every
        column was matched): each with the first of them."""
        nodes, numbers = self._pairs(self.exact + self.near)
        if nodes.size:
            order = np.lexsort((nodes, numbers))
            nodes, numbers = nodes[order], numbers[order]
            starts = np.ones(nodes.size, bool)
            starts[1:] = numbers[1:] != numbers[:-1]
            first = nodes[np.flatnonzero(starts)][np.cumsum(starts) - 1]
            member = first != nodes
            yield first[member], nodes[member]

    def attribute(self, dups: np.ndarray, reps: np.ndarray, is_exact: np.ndarray, size: int
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[np.ndarray, list[tuple[Any, ...]]]]:
        """Split a resolution's (duplicates, representatives, exact flags) of documents 0..size-1: those of the
        components without an earlier document, and (documents, (reason, earlier id, earlier output)) for every
        document of a component with one (its first earlier document named)."""
        nodes, numbers = self._pairs(self.exact + self.near)
        if not nodes.size:
            return dups, reps, is_exact, (np.zeros(0, np.int64), [])
        root = np.arange(size, dtype=np.int64)
        root[dups] = reps
        first = np.full(size, _NONE, np.int64)
        np.minimum.at(first, root[nodes], numbers)
        hit = np.flatnonzero(first[root] != _NONE)
        named = first[root[hit]]
        exact_nodes, exact_numbers = self._pairs(self.exact)
        exact_first = np.full(size, _NONE, np.int64)
        np.minimum.at(exact_first, exact_nodes, exact_numbers)
        ids = self.corpus.ids(named)
        labels = [(m.EARLIER_EXACT_DUPLICATE if e else m.EARLIER_NEAR_DUPLICATE, ids[n],
                   self.corpus.index_of(n).path) for n, e in zip(named.tolist(), (exact_first[hit] == named).tolist())]
        rest = first[root[dups]] == _NONE
        return dups[rest], reps[rest], is_exact[rest], (hit, labels)
