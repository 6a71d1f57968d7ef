"""Dedup on one machine over compact arrays: pass 1 writes each stream's keys to a file, one step sorts them.

The shuffle path (``transforms.dedup.steps.FindDuplicates``) moves 1 + bands Python tuples of (key, (ref, id)) per document;
a local runner holds every one of them in memory. Here a stream's keys go to a file as it is read instead, and the
step that finds the duplicates holds only a few numbers per document at a time:

* key file: one fixed-width row per kept document, in stream order (row = ordinal): the end of its id in the id
  file, which keys it has, its 16-byte exact key and its ``bands`` 12-byte band keys (193 bytes with 14 bands);
* id file: the documents' ids, UTF-8 one after another (only the kept documents' ids are read back);
* resolution: documents are numbered in read order over all streams (the order of refs); exact keys, then each
  band's keys in turn, are sorted (``np.lexsort``), runs of equal keys join their members to the run's first
  document in a union-find over one integer per document (roots are always the smallest number), and every
  document whose root is not itself names its root. The result is ``resolve_duplicates``' on the same groups:
  connected components, the first-read document kept, ``exact_duplicate`` when a document shares its exact key
  with the one kept. With ``dedup.against`` each column is also looked up in the earlier outputs' indexes
  (``transforms.dedup.earlier``).
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import chain
from typing import Any, Iterator

import fsspec
import numpy as np

from schemas.manifest import EXACT_DUPLICATE, NEAR_DUPLICATE

HAS_EXACT, HAS_BANDS = 1, 2  # row flags: which keys a document has
_CHUNK_ROWS = 1 << 16  # rows read at a time (~12 MB with 14 bands): a file is never read whole


def row_dtype(bands: int) -> np.dtype:
    """The packed row of a key file with ``bands`` band keys per document (keys split into 8- and 4-byte parts)."""
    return np.dtype([("id_end", "<u8"), ("flags", "u1"), ("exact_hi", "<u8"), ("exact_lo", "<u8"),
                     ("band_hi", "<u8", (bands,)), ("band_lo", "<u4", (bands,))])


_EXACT_PARTS = np.dtype([("hi", "<u8"), ("lo", "<u8")])
_BAND_PARTS = np.dtype([("hi", "<u8"), ("lo", "<u4")])


@dataclass(frozen=True)
class KeyFile:
    """One stream's key and id files (what pass 1 hands on instead of its keys)."""

    stream: int
    keys_url: str | None  # None: the stream kept no document
    ids_url: str | None
    docs: int
    bands: int


class KeyFileWriter:
    """Writes a stream's documents' dedup keys and ids, batch by batch, to ``<prefix>-keys.bin`` and ``-ids.bin``."""

    def __init__(self, prefix: str, stream: int, bands: int) -> None:
        self.prefix = prefix
        self.stream = stream
        self.bands = bands
        self.dtype = row_dtype(bands)
        self.docs = 0
        self._id_end = 0
        self._keys: Any = None
        self._ids: Any = None

    def add(self, ids: list[str], keys: list[tuple[bytes | None, list[bytes]] | None]) -> None:
        """Append documents (the next ordinals of the stream): their ids and (exact key or None, band keys) or None."""
        if not ids:
            return
        if self._keys is None:  # opened on the first document: a stream that keeps none leaves no files
            self._keys = fsspec.open(f"{self.prefix}-keys.bin", "wb").open()
            self._ids = fsspec.open(f"{self.prefix}-ids.bin", "wb").open()
        rows = np.zeros(len(ids), self.dtype)
        encoded = [i.encode("utf-8", "surrogatepass") for i in ids]
        rows["id_end"] = self._id_end + np.cumsum([len(e) for e in encoded], dtype=np.uint64)
        self._id_end = int(rows["id_end"][-1])
        exact = [i for i, k in enumerate(keys) if k is not None and k[0] is not None]
        if exact:
            parts = np.frombuffer(b"".join([keys[i][0] for i in exact]), _EXACT_PARTS)
            rows["exact_hi"][exact], rows["exact_lo"][exact] = parts["hi"], parts["lo"]
            rows["flags"][exact] |= HAS_EXACT
        banded = [i for i, k in enumerate(keys) if k is not None and k[1]]
        if banded:
            if any(len(keys[i][1]) != self.bands for i in banded):
                raise ValueError(f"expected {self.bands} band keys per document")
            joined = b"".join(chain.from_iterable(keys[i][1] for i in banded))
            parts = np.frombuffer(joined, _BAND_PARTS).reshape(-1, self.bands)
            rows["band_hi"][banded], rows["band_lo"][banded] = parts["hi"], parts["lo"]
            rows["flags"][banded] |= HAS_BANDS
        self._keys.write(rows.tobytes())
        self._ids.write(b"".join(encoded))
        self.docs += len(ids)

    def close(self) -> KeyFile:
        """Close the files and describe them."""
        if self._keys is None:
            return KeyFile(self.stream, None, None, 0, self.bands)
        self._keys.close()
        self._ids.close()
        return KeyFile(self.stream, f"{self.prefix}-keys.bin", f"{self.prefix}-ids.bin", self.docs, self.bands)


def key_rows(key_file: KeyFile, dtype: np.dtype) -> Iterator[tuple[int, np.ndarray]]:
    """(first row, rows) of a key file, ``_CHUNK_ROWS`` at a time, read into one buffer (each chunk is a view of it,
    valid until the next: many big short-lived allocations would leave the heap fragmented)."""
    buffer = np.empty(min(_CHUNK_ROWS, key_file.docs), dtype)
    with fsspec.open(key_file.keys_url, "rb") as fh:
        first = 0
        while first < key_file.docs:
            rows = buffer[: min(_CHUNK_ROWS, key_file.docs - first)]
            if fh.readinto(memoryview(rows.view(np.uint8))) != rows.nbytes:
                raise ValueError(f"{key_file.keys_url} is shorter than its {key_file.docs} rows")
            yield first, rows
            first += rows.size


def _column(files: list[KeyFile], offsets: np.ndarray, dtype: np.dtype, flag: int,
            band: int | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(document numbers, key high parts, key low parts) of every document with ``flag``, over all files: exact
    keys (``band`` None) or one band's keys, in document order."""
    size = sum(f.docs for f in files)
    nodes = np.empty(size, np.int64)
    hi = np.empty(size, np.uint64)
    lo = np.empty(size, np.uint64 if band is None else np.uint32)
    filled = 0
    for key_file, offset in zip(files, offsets):
        for first, rows in key_rows(key_file, dtype):
            has = np.flatnonzero(rows["flags"] & flag)
            end = filled + has.size
            nodes[filled:end] = has + (offset + first)
            if band is None:
                hi[filled:end], lo[filled:end] = rows["exact_hi"][has], rows["exact_lo"][has]
            else:
                hi[filled:end], lo[filled:end] = rows["band_hi"][has, band], rows["band_lo"][has, band]
            filled = end
    return nodes[:filled], hi[:filled], lo[:filled]


def shared_key_runs(nodes: np.ndarray, hi: np.ndarray, lo: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(first, member) pairs for documents sharing a key: each member of a run of equal keys (two or more
    documents) with the run's smallest document number; ``nodes`` ascending, one key per document."""
    order = np.argsort(hi)  # one 8-byte sort (several times faster than lexsort) finds every possible run
    high = hi[order]
    shared = high[1:] == high[:-1]
    in_run = np.zeros(high.size, bool)
    in_run[1:] = shared
    in_run[:-1] |= shared
    pick = order[in_run]
    pick = pick[np.lexsort((pick, lo[pick], hi[pick]))]  # equal keys together, documents ascending in each run
    hi, lo, nodes = hi[pick], lo[pick], nodes[pick]
    starts = np.ones(nodes.size, bool)
    starts[1:] = (hi[1:] != hi[:-1]) | (lo[1:] != lo[:-1])
    run = np.cumsum(starts) - 1
    first = nodes[np.flatnonzero(starts)][run]
    member = first != nodes
    return first[member], nodes[member]


def join(parent: np.ndarray, a: np.ndarray, b: np.ndarray) -> None:
    """Union-find over ``parent``, whose entries point straight at their roots (each root is the smallest number of
    its component): join a[i] with b[i] and leave it so again."""
    while a.size:
        ra, rb = parent[a], parent[b]
        apart = ra != rb
        if not apart.any():
            return
        a, b, ra, rb = a[apart], b[apart], ra[apart], rb[apart]
        np.minimum.at(parent, np.maximum(ra, rb), np.minimum(ra, rb))  # the larger root hangs under the smaller
        compress(parent)


def compress(parent: np.ndarray) -> None:
    """Point every entry straight at its root (pointer jumping: each pass halves the longest path)."""
    while True:
        up = parent[parent]
        if np.array_equal(up, parent):
            return
        parent[:] = up


def resolve_arrays(exact_runs: tuple[np.ndarray, np.ndarray], near_runs: Iterator[tuple[np.ndarray, np.ndarray]],
                   size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(duplicates, their representatives, exact flags) of documents 0..size-1 from (first, member) pairs of exact
    runs and of each band's runs: connected components, the smallest kept, exact when a duplicate's exact run
    starts with its representative (``resolve_duplicates`` on numbers)."""
    dtype = np.int32 if size < 2**31 else np.int64
    parent = np.arange(size, dtype=dtype)
    exact_first = np.full(size, -1, dtype)
    first, member = exact_runs
    exact_first[member] = first
    join(parent, first.astype(dtype), member.astype(dtype))
    for first, member in near_runs:
        join(parent, first.astype(dtype), member.astype(dtype))
    dups = np.flatnonzero(parent != np.arange(size, dtype=dtype))
    reps = parent[dups].astype(np.int64)
    return dups, reps, exact_first[dups] == reps


def read_ids(key_file: KeyFile, ordinals: np.ndarray) -> list[str]:
    """The ids of a stream's documents at ``ordinals`` (ascending), read from its id file."""
    dtype = row_dtype(key_file.bands)
    starts = np.zeros(ordinals.size, np.int64)
    ends = np.zeros(ordinals.size, np.int64)
    previous_end = 0  # a row's id starts where the row before it (perhaps in the chunk before) ends
    for first, rows in key_rows(key_file, dtype):
        id_end = rows["id_end"].astype(np.int64)
        lo, hi = np.searchsorted(ordinals, [first, first + rows.size])
        local = ordinals[lo:hi] - first
        ends[lo:hi] = id_end[local]
        starts[lo:hi] = np.concatenate(([previous_end], id_end[:-1]))[local]
        previous_end = int(id_end[-1])
    out = []
    with fsspec.open(key_file.ids_url, "rb") as fh:
        for start, end in zip(starts.tolist(), ends.tolist()):
            fh.seek(start)
            out.append(fh.read(end - start).decode("utf-8", "surrogatepass"))
    return out


def duplicates_in_files(files: list[KeyFile], earlier: Any = None) -> Iterator[tuple[int, list[tuple]]]:
    """(stream index, [(ordinal, reason, kept id), ...]) for every stream holding duplicates, in stream order: the
    decisions of ``transforms.dedup.keys.resolve_duplicates`` over the groups of documents sharing a key in ``files``.

    ``earlier``: an ``EarlierMatches`` (``transforms.dedup.earlier``), which looks each key column up in earlier
    outputs' indexes as it is read (``match``), joins this run's documents sharing an earlier one (``joins``) and
    names the earlier document of every component holding one (``attribute``): (ordinal, reason, earlier id,
    earlier output) for those."""
    files = sorted((f for f in files if f.docs), key=lambda f: f.stream)
    if len({f.stream for f in files}) != len(files):
        raise ValueError("a stream's keys were handed on twice")
    if not files:
        return
    bands = files[0].bands
    dtype = row_dtype(bands)
    sizes = np.array([f.docs for f in files], np.int64)
    offsets = np.concatenate(([0], np.cumsum(sizes)[:-1]))  # document number = offset of its stream + ordinal
    size = int(sizes.sum())

    def column(flag: int, band: int | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        found = _column(files, offsets, dtype, flag, band)
        if earlier is not None:
            earlier.match(band, *found)
        return found

    exact = shared_key_runs(*column(HAS_EXACT, None))
    near: Iterator = (shared_key_runs(*column(HAS_BANDS, b)) for b in range(bands))
    if earlier is not None:
        near = chain(near, earlier.joins())  # a generator: run once every column was matched
    dups, reps, is_exact = resolve_arrays(exact, near, size)
    del exact
    labelled, labels = np.zeros(0, np.int64), []
    if earlier is not None:
        dups, reps, is_exact, (labelled, labels) = earlier.attribute(dups, reps, is_exact, size)
    rep_streams = np.searchsorted(offsets, reps, side="right") - 1
    kept_ids: dict[int, str] = {}
    for s in np.unique(rep_streams).tolist():
        numbers = np.unique(reps[rep_streams == s])
        kept_ids.update(zip(numbers.tolist(), read_ids(files[s], numbers - offsets[s])))
    decisions = [(EXACT_DUPLICATE if e else NEAR_DUPLICATE, kept_ids[r])
                 for e, r in zip(is_exact.tolist(), reps.tolist())] + labels
    numbers = np.concatenate((dups, labelled))
    order = np.argsort(numbers, kind="stable")
    streams = np.searchsorted(offsets, numbers[order], side="right") - 1
    for s in np.unique(streams).tolist():
        where = order[streams == s]
        ordinals = (numbers[where] - offsets[s]).tolist()
        yield files[s].stream, [(o, *decisions[i]) for o, i in zip(ordinals, where.tolist())]
