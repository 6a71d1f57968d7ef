"""Line dedup on one machine: pass 1 writes each stream's line keys to a file, one step counts them bucket by bucket.

A local runner would hold a shuffle of every (key, document) pair in memory; here a stream's pairs go to a file as
it is read, and the count holds only a slice of them at a time:

* key file: 12-byte rows (key, ordinal of the document in its stream), written in runs of up to ``RUN_ROWS`` rows
  sorted by key; the index file beside it holds, per run, where each of the ``BUCKETS`` buckets (the keys' top 10
  bits) starts: a run's rows of a range of buckets are one contiguous read;
* count: consecutive buckets are taken together up to ``group_rows`` rows (or one bucket when it is larger); for
  each such group, every run's slice is read, the rows of document duplicates dropped, equal keys of a slice
  (sorted already) merged into (key, documents, first ref), the group's merged rows sorted by key (stably: runs
  come in ref order, so the first row of a key holds its first ref), and the keys in at least ``min_docs``
  documents appended to the result files. Decisions are those of the combine of ``transforms.dedup.line_steps``.

Memory bound of the count: about 40 bytes per row of the largest group (its merged rows: 8-byte key, 4-byte count,
8-byte first ref, the sort's 8-byte order and one 8-byte copy at a time) plus ~30 bytes per row of one run's slice
(read, filtered, merged; a slice is at most the group), so at most ~70 B x max(``group_rows``, largest bucket);
plus the document duplicates' refs (8 bytes each), the indexes (8 KB per run) and ~2 MB. With the defaults (2M-row
groups, 1M-row runs), at most ~115 MB for any corpus up to 2^31 line keys (a bucket is 1/1024 of them); keys shared
by many documents (boilerplate) shrink a group's merged rows, never grow them. Pass 1's writer holds one run and its
sorted copy (<= ~45 MB). ``benchmarks/line_dedup_memory.py`` measures both.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import fsspec
import numpy as np

from transforms.dedup.keys import REF_BITS
from transforms.dedup.lines import FrequentLines

ROW = np.dtype([("key", "<u8"), ("ordinal", "<u4")])  # 12 bytes, packed
BUCKET_BITS = 10
BUCKETS = 1 << BUCKET_BITS
RUN_ROWS = 1 << 20  # rows sorted and written at a time by pass 1 (12 MB)
GROUP_ROWS = 1 << 21  # rows counted at a time (~90 MB)
_STARTS = np.arange(BUCKETS, dtype=np.uint64) << np.uint64(64 - BUCKET_BITS)  # the first key of each bucket


@dataclass(frozen=True)
class LineKeyFile:
    """One stream's line key file and its index (what pass 1 hands on instead of its keys)."""

    stream: int
    keys_url: str | None  # None: no line keys
    index_url: str | None
    rows: int
    runs: int


class LineKeyWriter:
    """Writes a stream's (line key, ordinal) rows to ``<prefix>-lines.bin`` in sorted runs, and their index."""

    def __init__(self, prefix: str, stream: int) -> None:
        self.prefix = prefix
        self.stream = stream
        self.rows = 0
        self._pending: list[np.ndarray] = []
        self._pending_rows = 0
        self._offsets: list[np.ndarray] = []  # per run: where each bucket starts, and the run's end (file rows)
        self._fh: Any = None

    def add(self, keys: np.ndarray, ordinals: np.ndarray) -> None:
        """Append rows (each document's keys distinct; documents in stream order)."""
        if not keys.size:
            return
        rows = np.empty(keys.size, ROW)
        rows["key"], rows["ordinal"] = keys, ordinals
        self._pending.append(rows)
        self._pending_rows += rows.size
        if self._pending_rows >= RUN_ROWS:
            self._write_run()

    def _write_run(self) -> None:
        rows = np.concatenate(self._pending)
        self._pending, self._pending_rows = [], 0
        rows = rows[np.argsort(rows["key"], kind="stable")]  # stable: ordinals stay ascending within a key
        starts = np.searchsorted(rows["key"], _STARTS)
        self._offsets.append(np.concatenate((starts, [rows.size])).astype(np.uint64) + np.uint64(self.rows))
        if self._fh is None:  # opened on the first run: a stream without lines leaves no file
            self._fh = fsspec.open(f"{self.prefix}-lines.bin", "wb").open()
        self._fh.write(rows.tobytes())
        self.rows += rows.size

    def close(self) -> LineKeyFile:
        """Write the last run and the index; describe the files."""
        if self._pending:
            self._write_run()
        if self._fh is None:
            return LineKeyFile(self.stream, None, None, 0, 0)
        self._fh.close()
        index_url = f"{self.prefix}-lines-index.bin"
        with fsspec.open(index_url, "wb") as fh:
            fh.write(np.stack(self._offsets).astype("<u8").tobytes())
        return LineKeyFile(self.stream, f"{self.prefix}-lines.bin", index_url, self.rows, len(self._offsets))


def read_index(key_file: LineKeyFile) -> np.ndarray:
    """(runs, BUCKETS + 1) file rows where each run's buckets start (the last column: the run's end)."""
    with fsspec.open(key_file.index_url, "rb") as fh:
        return np.frombuffer(fh.read(), "<u8").reshape(key_file.runs, BUCKETS + 1).astype(np.int64)


def bucket_groups(sizes: np.ndarray, group_rows: int) -> list[tuple[int, int]]:
    """[lo, hi) ranges of consecutive buckets of at most ``group_rows`` rows (or one bucket, when larger)."""
    groups: list[tuple[int, int]] = []
    lo, rows = 0, 0
    for b, n in enumerate(sizes.tolist()):
        if b > lo and rows + n > group_rows:
            groups.append((lo, b))
            lo, rows = b, 0
        rows += n
    groups.append((lo, len(sizes)))
    return groups


def merged_slice(rows: np.ndarray, stream: int, excluded: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(keys, documents, first refs) of a run's slice (sorted by key) without the ``excluded`` ordinals: one row per
    distinct key."""
    if excluded.size:
        at = np.minimum(np.searchsorted(excluded, rows["ordinal"]), excluded.size - 1)
        rows = rows[excluded[at] != rows["ordinal"]]
    keys = rows["key"]
    starts = np.flatnonzero(np.concatenate(([True], keys[1:] != keys[:-1]))) if keys.size else np.zeros(0, np.int64)
    counts = np.diff(np.append(starts, keys.size)).astype(np.uint32)
    firsts = rows["ordinal"][starts].astype(np.uint64) | np.uint64(stream << REF_BITS)
    return keys[starts], counts, firsts


def excluded_ordinals(excluded_refs: np.ndarray, stream: int) -> np.ndarray:
    """The ordinals of one stream's refs among ``excluded_refs`` (ascending refs)."""
    lo, hi = np.searchsorted(excluded_refs, [stream << REF_BITS, (stream + 1) << REF_BITS])
    return (excluded_refs[lo:hi] & np.uint64((1 << REF_BITS) - 1)).astype(np.uint32)


def frequent_lines_in_files(files: list[LineKeyFile], excluded_refs: np.ndarray, min_docs: int, keep_first: bool,
                            prefix: str, group_rows: int = GROUP_ROWS) -> FrequentLines:
    """The keys of ``files`` in at least ``min_docs`` documents not in ``excluded_refs`` (ascending uint64), with
    each one's first ref when ``keep_first``, written to ``<prefix>-<random>-frequent*.bin``."""
    files = sorted((f for f in files if f.rows), key=lambda f: f.stream)
    if len({f.stream for f in files}) != len(files):
        raise ValueError("a stream's line keys were handed on twice")
    indexes = [read_index(f) for f in files]
    sizes = sum((np.diff(ix, axis=1).sum(axis=0) for ix in indexes), np.zeros(BUCKETS, np.int64))
    refs = np.sort(excluded_refs.astype(np.uint64))
    excluded = [excluded_ordinals(refs, f.stream) for f in files]
    name = f"{prefix}-{uuid.uuid4().hex[:12]}-frequent"
    size = 0
    with fsspec.open(f"{name}-keys.bin", "wb") as keys_out, fsspec.open(f"{name}-firsts.bin", "wb") as firsts_out:
        for lo, hi in bucket_groups(sizes, group_rows):
            keys, firsts = _count_group(files, indexes, excluded, lo, hi, int(sizes[lo:hi].sum()), min_docs)
            keys_out.write(keys.astype("<u8").tobytes())
            if keep_first:
                firsts_out.write(firsts.astype("<u8").tobytes())
            size += keys.size
    return FrequentLines(size, f"{name}-keys.bin", f"{name}-firsts.bin" if keep_first else None)


def _count_group(files: list[LineKeyFile], indexes: list[np.ndarray], excluded: list[np.ndarray], lo: int, hi: int,
                 rows: int, min_docs: int) -> tuple[np.ndarray, np.ndarray]:
    """(keys, first refs) of buckets [lo, hi) in at least ``min_docs`` documents, ascending keys."""
    keys = np.empty(rows, np.uint64)
    counts = np.empty(rows, np.uint32)
    firsts = np.empty(rows, np.uint64)
    filled = 0
    for key_file, index, skip in zip(files, indexes, excluded):
        with fsspec.open(key_file.keys_url, "rb") as fh:
            for start, stop in zip(index[:, lo].tolist(), index[:, hi].tolist()):
                if stop == start:
                    continue
                part = np.empty(stop - start, ROW)
                fh.seek(start * ROW.itemsize)
                if fh.readinto(memoryview(part.view(np.uint8))) != part.nbytes:
                    raise ValueError(f"{key_file.keys_url} is shorter than its index says")
                k, c, f = merged_slice(part, key_file.stream, skip)
                end = filled + k.size
                keys[filled:end], counts[filled:end], firsts[filled:end] = k, c, f
                filled = end
    keys, counts, firsts = keys[:filled], counts[:filled], firsts[:filled]
    order = np.argsort(keys, kind="stable")  # runs came in ref order: a key's first row holds its first ref
    keys = keys[order]
    counts = counts[order]
    firsts = firsts[order]
    del order
    starts = np.flatnonzero(np.concatenate(([True], keys[1:] != keys[:-1]))) if keys.size else np.zeros(0, np.int64)
    docs = np.add.reduceat(counts, starts, dtype=np.int64) if keys.size else np.zeros(0, np.int64)
    frequent = starts[docs >= min_docs]
    return keys[frequent], firsts[frequent]
