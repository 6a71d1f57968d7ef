"""Row ranges of a dataset's shards as Rows: a few files kept open, a few decoded row groups cached.

Each file is read through ``schemas.shards.PackedShard``; the token ids of shards laid out as tokenmill writes them
are decoded by ``schemas.loader.pages`` instead (the speed path; see there why), any other layout by pyarrow.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np

from schemas.loader.pages import WideIds, decode_ids, ids_leaf
from schemas.loader.rows import Buffers, Rows, decode_rows
from schemas.shards import PackedShard, open_packed_shard


@dataclass(frozen=True)
class Shard:
    """A shard as the manifest lists it."""

    url: str
    path: str
    rows: int
    seq_len: int
    first_row: int  # global index of the shard's row 0


@dataclass
class _OpenShard:
    shard: PackedShard
    raw: Any  # (filesystem, path) for byte ranges, or an OS file descriptor for a local file
    ids_leaf: int | None  # Parquet column of the token ids when tokenmill decodes them itself, else None
    columns: list[str]  # the columns pyarrow reads
    wide: bool = False  # ids found that do not fit 2 bytes: decode to uint32

    @property
    def starts(self) -> np.ndarray:
        """First row of each row group, and the row count at the end."""
        return self.shard.row_group_starts

    def close(self) -> None:
        self.shard.close()
        if isinstance(self.raw, int):
            import os

            os.close(self.raw)

    def read_bytes(self, start: int, size: int) -> bytes:
        """Bytes start..start + size of the file."""
        if isinstance(self.raw, int):
            import os

            data = os.pread(self.raw, size, start)
        else:
            fs, path = self.raw
            data = fs.cat_file(path, start=start, end=start + size)
        if len(data) != size:
            raise OSError(f"short read: {len(data)} of {size} bytes at {start}")
        return data

    def decode_ids(self, g: int, rows: np.ndarray) -> np.ndarray:
        """The token ids of row group ``g``, decoded by the speed path into ``rows``."""
        return decode_ids(self.shard.parquet.metadata.row_group(g).column(self.ids_leaf), self.read_bytes, rows)


class ShardReader:
    """Reads row ranges of shards, keeping a few files open and a few decoded row groups cached."""

    def __init__(self, shards: list[Shard], storage_options: dict[str, Any], cache_row_groups: int,
                 fast_decode: bool = True, open_files: int = 8) -> None:
        self.shards = shards
        self.storage_options = storage_options
        self.cache_row_groups = cache_row_groups
        self.fast_decode = fast_decode
        self.open_files = open_files
        self._files: OrderedDict[int, _OpenShard] = OrderedDict()
        self._groups: OrderedDict[tuple[int, int], Rows] = OrderedDict()
        self.buffers = Buffers(0)  # for decoded ids; sized by the dataset (the row groups a window holds)
        self.narrow = False  # decode ids below 2**16 to uint16 (set when batches widen the ids anyway)

    def close(self) -> None:
        """Close every open file and drop the cache."""
        for f in self._files.values():
            f.close()
        self._files.clear()
        self._groups.clear()

    def _file(self, s: int) -> _OpenShard:
        if s in self._files:
            self._files.move_to_end(s)
            return self._files[s]
        import os

        from fsspec.implementations.local import LocalFileSystem

        shard = self.shards[s]
        try:
            packed = open_packed_shard(shard.url, self.storage_options)
            local = isinstance(packed.fs, LocalFileSystem) and hasattr(os, "pread")
            raw: Any = os.open(packed.path, os.O_RDONLY) if local else (packed.fs, packed.path)
        except FileNotFoundError:
            raise FileNotFoundError(f"shard {shard.path} listed in the manifest is missing ({shard.url})") from None
        if packed.missing_columns:
            raise ValueError(f"shard {shard.url} has no {packed.missing_columns[0]!r} column: not a tokenmill "
                             f"packed shard")
        if packed.num_rows != shard.rows:
            raise ValueError(f"shard {shard.url} has {packed.num_rows} rows but the manifest says {shard.rows}: "
                             f"the directory was changed after the manifest was written")
        f = _OpenShard(packed, raw, ids_leaf(packed.parquet) if self.fast_decode else None, packed.row_columns)
        self._files[s] = f
        while len(self._files) > self.open_files:
            self._files.popitem(last=False)[1].close()
        return f

    def first_group_rows(self, s: int) -> int:
        """Rows of the first row group of shard ``s`` (the default block size)."""
        starts = self._file(s).starts
        return int(starts[1] - starts[0]) if len(starts) > 1 else 1

    def read(self, s: int, start: int, stop: int) -> Rows:
        """Rows start..stop of shard ``s``."""
        starts = self._file(s).starts
        g0 = int(np.searchsorted(starts, start, side="right")) - 1
        g1 = int(np.searchsorted(starts, stop, side="left"))
        parts = []
        for g in range(g0, g1):
            rows = self._group(s, g)
            a = max(start, int(starts[g])) - int(starts[g])
            b = min(stop, int(starts[g + 1])) - int(starts[g])
            parts.append(rows if (a, b) == (0, len(rows)) else rows.slice(a, b))
        return Rows.concat(parts)

    def _group(self, s: int, g: int) -> Rows:
        key = (s, g)
        if key in self._groups:
            self._groups.move_to_end(key)
            return self._groups[key]
        f = self._file(s)
        shard = self.shards[s]
        n = int(f.starts[g + 1] - f.starts[g])
        ids = None
        if f.ids_leaf is not None:
            try:
                if self.narrow and not f.wide:
                    try:
                        ids = f.decode_ids(g, self.buffers.get((n, shard.seq_len), np.dtype(np.uint16)))
                    except WideIds:
                        f.wide = True  # 4-byte decoding for this file from now on
                if ids is None:
                    ids = f.decode_ids(g, self.buffers.get((n, shard.seq_len), np.dtype(np.uint32)))
            except Exception:  # not the layout the fast path reads: pyarrow reads this file from now on
                f.ids_leaf = None
        columns = f.columns if ids is None else f.columns[1:]
        rows = decode_rows(f.shard.read_row_group(g, columns), shard.url, shard.seq_len, shard.first_row, ids)
        if self.cache_row_groups > 0:
            self._groups[key] = rows
            while len(self._groups) > self.cache_row_groups:
                self._groups.popitem(last=False)
        return rows
